"""Network in Network (Lin, Chen, Yan, 2013): mlpconv blocks and global average pooling instead of FC layers.

An mlpconv block is one ordinary convolution followed by 1x1 convolutions, each with a ReLU: a 1x1
convolution is a fully connected layer applied at every pixel (96 channels to 96: 96x96 + 96 parameters).
The last block has one channel per class and global average pooling turns each map into a class score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnncourse.models.common import check_input, scaled, smallest_input

__all__ = ["MLPConvSpec", "MLPConv", "NiN", "nin", "nin_cifar"]


@dataclass(frozen=True)
class MLPConvSpec:
    """One mlpconv block and what follows it.

    ``channels`` lists the outputs of the ``kernel x kernel`` convolution and then of each 1x1 convolution;
    ``None`` stands for ``num_classes`` (used in the last block). ``pool`` is ``"max"``, ``"avg"`` or ``None``
    for a 3x3/2 pooling layer (ceil mode) after the block; ``dropout`` adds a dropout layer after that.
    """

    channels: tuple[int | None, ...]
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: str | None = "max"
    dropout: bool = False


class MLPConv(nn.Sequential):
    """``conv kxk - ReLU`` then ``conv 1x1 - ReLU`` per further entry of ``channels``.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, channels[-1], H', W')``, ``H'`` set by kernel/stride/padding.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], kernel: int, stride: int = 1, padding: int = 0):
        layers: list[nn.Module] = []
        for i, out in enumerate(channels):
            k, s, p = (kernel, stride, padding) if i == 0 else (1, 1, 0)
            layers += [nn.Conv2d(in_channels, out, kernel_size=k, stride=s, padding=p), nn.ReLU(inplace=True)]
            in_channels = out
        super().__init__(*layers)


IMAGENET_BLOCKS = (
    MLPConvSpec((96, 96, 96), kernel=11, stride=4),
    MLPConvSpec((256, 256, 256), kernel=5, padding=2),
    MLPConvSpec((384, 384, 384), kernel=3, padding=1, dropout=True),
    MLPConvSpec((None, None, None), kernel=3, padding=1, pool=None),
)
CIFAR_BLOCKS = (
    MLPConvSpec((192, 160, 96), kernel=5, padding=2, dropout=True),
    MLPConvSpec((192, 192, 192), kernel=5, padding=2, pool="avg", dropout=True),
    MLPConvSpec((192, 192, None), kernel=3, padding=1, pool=None),
)


class NiN(nn.Module):
    """A Network in Network: mlpconv blocks (with pooling and dropout between) and global average pooling.

    Args:
        num_classes: channels of the last block, one score map per class.
        in_channels: channels of the input images.
        blocks: the :class:`MLPConvSpec` of each block; the ImageNet form by default.
        dropout: the dropout probability wherever a spec asks for dropout.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``, ``H, W >= self.min_size``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3,
                 blocks: Sequence[MLPConvSpec] = IMAGENET_BLOCKS, dropout: float = 0.5):
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        steps: list[tuple[int, ...]] = []
        channels = in_channels
        for spec in blocks:
            outs = [num_classes if c is None else c for c in spec.channels]
            layers.append(MLPConv(channels, outs, spec.kernel, spec.stride, spec.padding))
            steps.append((spec.kernel, spec.stride, spec.padding))
            if spec.pool is not None:
                pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[spec.pool]
                layers.append(pool(kernel_size=3, stride=2, ceil_mode=True))
                steps.append((3, 2, 0, True))
            if spec.dropout:
                layers.append(nn.Dropout(dropout))
            channels = outs[-1]
        if channels != num_classes:
            raise ValueError(f"the last block must end with num_classes={num_classes} channels (None in its "
                             f"spec), got {channels}.")
        self.min_size = smallest_input(steps)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="NiN", in_channels=self.in_channels, min_size=self.min_size,
                    hint="or use nin_cifar, which runs on 4x4 and up")
        return torch.flatten(self.avgpool(self.features(x)), 1)


def nin(*, num_classes: int = 1000, in_channels: int = 3) -> NiN:
    """NiN for ImageNet: mlpconv blocks of 96 (11x11/4), 256 (5x5), 384 (3x3) and ``num_classes`` (3x3)
    channels, each with two 1x1 layers, 3x3/2 max pools (ceil mode) between, dropout before the last block.
    7,439,608 parameters for 1000 classes. Inputs of 39x39 and up (224x224: maps 54-27-13-6)."""
    return NiN(num_classes, in_channels, IMAGENET_BLOCKS)


def nin_cifar(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> NiN:
    """NiN for 32x32 images, after the paper's CIFAR-10 net: mlpconv 192-160-96 (5x5), max pool,
    192-192-192 (5x5), average pool, 192-192-``num_classes`` (3x3), dropout after each pool.
    966,986 parameters for 10 RGB classes; ``width`` scales the hidden layers. Inputs of 4x4 and up
    (32x32: maps 32-16-8)."""
    blocks = [MLPConvSpec(tuple(c if c is None else scaled(c, width) for c in b.channels), b.kernel, b.stride,
                          b.padding, b.pool, b.dropout) for b in CIFAR_BLOCKS]
    return NiN(num_classes, in_channels, blocks)
