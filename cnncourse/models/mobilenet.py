"""MobileNets: depthwise-separable convolutions (V1, Howard et al., 2017) and inverted residuals (V2,
Sandler et al., 2018), plus the squeeze-and-excitation block (Hu et al., 2017).

A depthwise-separable convolution splits a ``k x k`` convolution from ``M`` to ``N`` channels into a
depthwise ``k x k`` convolution (one filter per channel, ``groups=M``) and a pointwise 1x1 convolution;
its cost relative to the full convolution is ``1/N + 1/k^2`` (about 1/8 to 1/9 for 3x3 kernels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnncourse.models.common import ConvBNAct, check_input, he_init, smallest_input

__all__ = ["DepthwiseSeparableConv", "SqueezeExcitation", "InvertedResidual", "MobileNetV1", "MobileNetV2",
           "make_divisible", "mobilenet_v1", "mobilenet_v2"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``divisor`` nor below 90% of
    ``value`` (how MobileNets round channels scaled by a width multiplier).

    >>> make_divisible(32 * 0.35)
    16
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise ``k x k`` convolution (``groups=in_channels``) then pointwise 1x1, each with BN and ReLU.

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of the depthwise convolution.
        kernel_size: of the depthwise convolution.
        norm: batch norm after each convolution (``False``: convolutions with biases).
        activation: after each convolution; ``None`` leaves the bare factorized convolution.

    Parameters (with ``norm=False``): ``M*k*k + M`` (depthwise) ``+ M*N + N`` (pointwise), against
    ``M*N*k*k + N`` for a full convolution.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 norm: bool = True, activation: type[nn.Module] | None = nn.ReLU):
        super().__init__()
        self.depthwise = ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels, norm=norm,
                                   activation=activation)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, norm=norm, activation=activation)


class SqueezeExcitation(nn.Module):
    """Squeeze and excitation: rescale each channel by a gate in (0, 1) computed from all channels' means.

    ``gate = sigmoid(fc2(relu(fc1(mean over H, W of x))))`` with ``fc1: channels -> squeeze_channels`` and
    ``fc2: squeeze_channels -> channels`` (1x1 convolutions); the output is ``x * gate``.

    Shapes: ``x: (N, channels, H, W)`` -> ``(N, channels, H, W)``.
    """

    def __init__(self, channels: int, squeeze_channels: int | None = None):
        super().__init__()
        squeeze_channels = squeeze_channels or max(1, channels // 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.avgpool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand (1x1, ReLU6), depthwise 3x3 (ReLU6), optional SE, project (1x1, linear).

    The block is narrow at its ends and wide inside (the inverse of a ResNet bottleneck); the projection
    has no activation (a ReLU would destroy information in so few channels). The input is added back when
    the shapes allow (stride 1 and ``in_channels == out_channels``).

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of the depthwise convolution.
        expand_ratio: the inside is ``round(in_channels * expand_ratio)`` channels wide (1: no expansion).
        se: add a :class:`SqueezeExcitation` after the depthwise convolution (as in MobileNetV3).

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 6,
                 se: bool = False):
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=nn.ReLU6))
        layers.append(ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6))
        if se:
            layers.append(SqueezeExcitation(hidden, make_divisible(hidden / 4)))
        layers.append(ConvBNAct(hidden, out_channels, 1, activation=None))
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# MobileNetV1: (out_channels, stride) of each depthwise-separable layer after the 3x3/2 stem of 32 channels.
V1_CONFIG: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]
# MobileNetV2: (expand ratio t, channels c, repeats n, stride s of the first) per stage, after a 32-channel stem.
V2_CONFIG: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


class MobileNetV1(nn.Module):
    """MobileNetV1: 3x3/2 conv-BN-ReLU, 13 depthwise-separable layers, average pool, FC.

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        width: multiplies every layer's channels (the paper's alpha: 1.0, 0.75, 0.5, 0.25).
        stem_stride: stride of the first convolution (1 keeps more resolution on 32-64 px inputs).

    All downsampling layers are padded, so any input size runs (224x224 gives 7x7 before the pool).

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, stem_stride: int = 2):
        super().__init__()
        self.in_channels = in_channels
        channels = make_divisible(32 * width)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stem_stride)]
        steps: list[tuple[int, ...]] = [(3, stem_stride, 1)]
        for out, stride in V1_CONFIG:
            out = make_divisible(out * width)
            layers.append(DepthwiseSeparableConv(channels, out, stride))
            steps.append((3, stride, 1))
            channels = out
        self.features = nn.Sequential(*layers)
        self.min_size = smallest_input(steps)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="MobileNetV1", in_channels=self.in_channels, min_size=self.min_size)
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class MobileNetV2(nn.Module):
    """MobileNetV2: 3x3/2 conv, 17 inverted residual blocks, 1x1 conv to 1280, average pool, dropout, FC.

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        width: multiplies every layer's channels (rounded to multiples of 8; the last conv keeps 1280
            for widths below 1).
        stem_stride: stride of the first convolution (1 keeps more resolution on 32-64 px inputs).
        config: ``(t, c, n, s)`` per stage, as in the paper's table.
        dropout: before the FC.
        se: squeeze-and-excitation in every block.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, stem_stride: int = 2,
                 config: Sequence[tuple[int, int, int, int]] = V2_CONFIG, dropout: float = 0.2, se: bool = False):
        super().__init__()
        self.in_channels = in_channels
        channels = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stem_stride, activation=nn.ReLU6)]
        steps: list[tuple[int, ...]] = [(3, stem_stride, 1)]
        for t, c, n, s in config:
            out = make_divisible(c * width)
            for i in range(n):
                stride = s if i == 0 else 1
                layers.append(InvertedResidual(channels, out, stride, t, se=se))
                steps.append((3, stride, 1))
                channels = out
        layers.append(ConvBNAct(channels, last, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.min_size = smallest_input(steps)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="MobileNetV2", in_channels=self.in_channels, min_size=self.min_size)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v1(*, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 stem_stride: int = 2) -> MobileNetV1:
    """MobileNetV1 (width 1.0): 4,231,976 parameters for 1000 classes (4.2M as in the paper).
    Inputs of 1x1 and up (224x224 gives 7x7 before the pool; use ``stem_stride=1`` on 32-64 px images)."""
    return MobileNetV1(num_classes, in_channels, width, stem_stride)


def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 stem_stride: int = 2) -> MobileNetV2:
    """MobileNetV2 (width 1.0): 3,504,872 parameters for 1000 classes, as torchvision's.
    Inputs of 1x1 and up (224x224 gives 7x7 before the pool; use ``stem_stride=1`` on 32-64 px images)."""
    return MobileNetV2(num_classes, in_channels, width, stem_stride)
