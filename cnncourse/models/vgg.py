"""VGG (Simonyan and Zisserman, 2014): stacks of 3x3 convolutions (padding 1) and 2x2/2 max pooling only.

Two 3x3 layers see 5x5, three see 7x7, with fewer parameters (3 * 9C^2 < 49C^2) and more ReLUs.
The configurations are named by the paper's letters: A = VGG-11, B = VGG-13, D = VGG-16, E = VGG-19;
a number is a 3x3 conv with that many filters, ``"M"`` a 2x2/2 max pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnncourse.models.common import check_input, scaled, smallest_input

__all__ = ["CONFIGS", "VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
           "vgg_cifar"]

CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: Sequence[int | str], in_channels: int = 3, batch_norm: bool = False) -> nn.Sequential:
    """The convolutional part of a VGG: ``conv3x3-(bn)-relu`` per number in ``cfg``, a 2x2/2 max pool per "M"."""
    layers: list[nn.Module] = []
    channels = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG net: ``make_layers(cfg)``, an average pool to ``pool_size x pool_size``, a 3-layer classifier.

    Args:
        cfg: a list like ``CONFIGS["D"]``: filters per 3x3 conv, ``"M"`` per max pool.
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        batch_norm: batch normalization after every convolution (the ``_bn`` variants).
        pool_size: the map is average-pooled to this size before the classifier (7 on ImageNet, where the
            five pools take 224 to 7 anyway; 1 on 32x32 inputs).
        hidden: units of the two hidden fully connected layers.
        dropout: dropout probability after each hidden fully connected layer.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``; ``H, W >= 2 ** (number of pools)``.
    """

    def __init__(
        self,
        cfg: Sequence[int | str] = CONFIGS["D"],
        num_classes: int = 1000,
        in_channels: int = 3,
        batch_norm: bool = False,
        pool_size: int = 7,
        hidden: int = 4096,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.min_size = smallest_input([(2, 2, 0)] * list(cfg).count("M"))
        self.features = make_layers(cfg, in_channels, batch_norm)
        last = [v for v in cfg if v != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(int(last) * pool_size * pool_size, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="VGG", in_channels=self.in_channels, min_size=self.min_size)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int) -> VGG:
    return VGG(CONFIGS[cfg], num_classes, in_channels, batch_norm)


def vgg11(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-11 (config A: 8 conv + 3 FC): 132,863,336 parameters. Inputs of 32x32 and up."""
    return _vgg("A", False, num_classes, in_channels)


def vgg11_bn(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-11 with batch norm: 132,868,840 parameters. Inputs of 32x32 and up."""
    return _vgg("A", True, num_classes, in_channels)


def vgg13(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-13 (config B: 10 conv + 3 FC): 133,047,848 parameters. Inputs of 32x32 and up."""
    return _vgg("B", False, num_classes, in_channels)


def vgg13_bn(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-13 with batch norm: 133,053,736 parameters. Inputs of 32x32 and up."""
    return _vgg("B", True, num_classes, in_channels)


def vgg16(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-16 (config D: 13 conv + 3 FC): 138,357,544 parameters. Inputs of 32x32 and up."""
    return _vgg("D", False, num_classes, in_channels)


def vgg16_bn(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-16 with batch norm: 138,365,992 parameters. Inputs of 32x32 and up."""
    return _vgg("D", True, num_classes, in_channels)


def vgg19(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-19 (config E: 16 conv + 3 FC): 143,667,240 parameters. Inputs of 32x32 and up."""
    return _vgg("E", False, num_classes, in_channels)


def vgg19_bn(*, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-19 with batch norm: 143,678,248 parameters. Inputs of 32x32 and up."""
    return _vgg("E", True, num_classes, in_channels)


def vgg_cifar(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, batch_norm: bool = True) -> VGG:
    """VGG for 32x32 images, 13 weight layers: config B's 10 convolutions (with batch norm) and a
    512-512-``num_classes`` classifier on the 1x1 map left by the five pools. 9,941,322 parameters with the
    defaults; ``width`` scales every layer (0.25 for a quick CPU run). Inputs of 32x32 and up."""
    cfg = [v if v == "M" else scaled(int(v), width) for v in CONFIGS["B"]]
    return VGG(cfg, num_classes, in_channels, batch_norm, pool_size=1, hidden=scaled(512, width))
