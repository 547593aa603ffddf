"""DenseNet (Huang, Liu, van der Maaten, Weinberger, 2016): every layer sees the maps of all layers before it.

A dense layer (BN-ReLU-1x1 conv to ``bn_size * growth_rate``, BN-ReLU-3x3 conv to ``growth_rate``) adds
``growth_rate`` new channels, concatenated to its input; a dense block of ``L`` layers turns ``C`` channels
into ``C + L * growth_rate``. Transitions between blocks halve the channels (1x1 conv) and the map (2x2
average pool).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnncourse.models.common import check_input, he_init, smallest_input

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet", "densenet121", "densenet_cifar"]


class DenseLayer(nn.Module):
    """``BN-ReLU-conv1x1 (bn_size * growth_rate)``, ``BN-ReLU-conv3x3 (growth_rate)``, optional dropout.

    Returns only the ``growth_rate`` new channels; :class:`DenseBlock` concatenates them to the input.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, growth_rate, H, W)``.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        return self.dropout(self.conv2(self.relu2(self.norm2(out))))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; layer ``i`` sees the input and the outputs of layers ``0..i-1``.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, in_channels + num_layers * growth_rate, H, W)``.

    >>> DenseBlock(4, 64, growth_rate=32).out_channels
    192
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate) for i in range(num_layers)
        )
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv to ``out_channels``, then a 2x2/2 average pool.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, out_channels, H // 2, W // 2)``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )


class DenseNet(nn.Module):
    """A DenseNet-BC: a stem, dense blocks with halving transitions between, BN-ReLU, average pool, FC.

    Args:
        growth_rate: channels each dense layer adds (``k``; 32 for DenseNet-121).
        block_config: layers per dense block.
        num_init_features: channels out of the stem.
        bn_size: the 1x1 "bottleneck" makes ``bn_size * growth_rate`` channels.
        drop_rate: dropout after each dense layer.
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or ``"cifar"`` (one 3x3 conv).

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``, ``H, W >= self.min_size``.
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000,
                 in_channels: int = 3, stem: str = "imagenet"):
        super().__init__()
        self.in_channels = in_channels
        if stem == "imagenet":
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(num_init_features), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            ]
            steps: list[tuple[int, ...]] = [(7, 2, 3), (3, 2, 1)]
        elif stem == "cifar":
            layers = [nn.Conv2d(in_channels, num_init_features, kernel_size=3, padding=1, bias=False)]
            steps = []
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}.")
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate)
            layers.append(block)
            channels = block.out_channels
            if i != len(block_config) - 1:
                layers.append(Transition(channels, channels // 2))
                steps.append((2, 2, 0))
                channels //= 2
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.min_size = smallest_input(steps)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="DenseNet", in_channels=self.in_channels, min_size=self.min_size,
                    hint="or use densenet_cifar, which runs on 4x4 and up")
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def densenet121(*, num_classes: int = 1000, in_channels: int = 3) -> DenseNet:
    """DenseNet-121: growth rate 32, blocks (6, 12, 24, 16), 64 stem channels; 7,978,856 parameters.
    Inputs of 29x29 and up (224x224: 7x7 before the pool)."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, in_channels=in_channels)


def densenet_cifar(*, num_classes: int = 10, in_channels: int = 3, growth_rate: int = 12,
                   block_config: Sequence[int] = (6, 6, 6)) -> DenseNet:
    """A small DenseNet-BC for 32x32 images: a 3x3 stem of ``2 * growth_rate`` channels, three dense blocks
    (6 layers each by default), two transitions (32 -> 16 -> 8). 176,122 parameters with the defaults.
    Inputs of 4x4 and up."""
    return DenseNet(growth_rate, block_config, 2 * growth_rate, num_classes=num_classes, in_channels=in_channels,
                    stem="cifar")
