"""ResNet (He, Zhang, Ren, Sun, 2015) and ResNeXt (Xie et al., 2016): blocks that learn a residual.

A residual block outputs ``relu(F(x) + x)``: when ``F`` is zero the block passes its input on, so a deeper
net can always do at least as well as a shallower one, and the gradient has a direct path back.
``plain=True`` drops the ``+ x`` (the "plain" nets of the degradation experiment: 56 layers train worse
than 20). ResNeXt splits the 3x3 convolution of the bottleneck into ``groups`` parallel paths (cardinality).

- :class:`ResNet`: the ImageNet nets (7x7/2 stem, max pool, four stages): :func:`resnet18`, :func:`resnet34`,
  :func:`resnet50`, :func:`resnext50_32x4d`, parameter for parameter as torchvision's.
- :class:`CifarResNet`: the paper's CIFAR nets (3x3 stem, three stages of widths 16-32-64, depth 6n + 2,
  parameter-free zero-padding shortcuts): :func:`resnet20`, :func:`resnet56`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.models.common import check_input, he_init, smallest_input

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "ResNet", "CifarResNet",
           "resnet18", "resnet34", "resnet50", "resnext50_32x4d", "resnet20", "resnet56"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (a batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of the first convolution (2 halves the map).
        downsample: the shortcut when the shape changes (a 1x1 conv-BN, or :class:`ZeroPadShortcut`);
            ``None`` is the identity.
        residual: ``False`` drops the shortcut (a "plain" block).

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, downsample: nn.Module | None = None,
                 residual: bool = True):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand to ``4 * planes``, each with BN, plus the shortcut.

    Args:
        in_channels: channels in.
        planes: the output has ``4 * planes`` channels; the 3x3 layer works on
            ``int(planes * base_width / 64) * groups`` channels (``planes`` for ResNet-50).
        stride: stride of the 3x3 convolution.
        downsample: the shortcut when the shape changes; ``None`` is the identity.
        groups, base_width: ResNeXt's cardinality and width per group (32 and 4 for ResNeXt-50 32x4d).
        residual: ``False`` drops the shortcut.

    A 256 -> 64 -> 64 -> 256 bottleneck costs about 70,000 multiply-adds per pixel; two 3x3 layers on 256
    channels would cost about 1,180,000.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, 4 * planes, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, residual: bool = True):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ZeroPadShortcut(nn.Module):
    """The parameter-free shortcut of the CIFAR ResNets ("option A"): subsample by ``stride``, then append
    zero channels up to ``out_channels``.

    Shapes: ``x: (N, C, H, W)`` -> ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, out_channels: int, stride: int = 2):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


class ResNet(nn.Module):
    """An ImageNet ResNet: 7x7/2 conv-BN-ReLU, 3x3/2 max pool, four stages of blocks, average pool, FC.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        groups, width_per_group: for ResNeXt's bottlenecks.
        plain: drop every shortcut (a plain net of the same depth).

    The stages have 64, 128, 256, 512 (times ``block.expansion``) channels; the last three halve the map.
    Every downsampling layer is padded, so any input size runs (224x224 gives 7x7 before the pool).

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck] = BasicBlock, layers: Sequence[int] = (2, 2, 2, 2),
                 num_classes: int = 1000, in_channels: int = 3, groups: int = 1, width_per_group: int = 64,
                 plain: bool = False):
        super().__init__()
        self.in_channels, self.groups, self.base_width, self.plain = in_channels, groups, width_per_group, plain
        self.min_size = smallest_input([(7, 2, 3), (3, 2, 1)] + [(3, 2, 1)] * 3)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.channels = 64  # channels entering the next stage, updated by _make_layer
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        he_init(self)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        out = planes * block.expansion
        downsample = None
        if (stride != 1 or self.channels != out) and not self.plain:
            downsample = nn.Sequential(conv1x1(self.channels, out, stride), nn.BatchNorm2d(out))
        extra = {"groups": self.groups, "base_width": self.base_width} if block is Bottleneck else {}
        layers = [block(self.channels, planes, stride, downsample, residual=not self.plain, **extra)]
        layers += [block(out, planes, residual=not self.plain, **extra) for _ in range(1, blocks)]
        self.channels = out
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="ResNet", in_channels=self.in_channels, min_size=self.min_size)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarResNet(nn.Module):
    """The CIFAR ResNets of the paper: a 3x3 conv, three stages of ``n`` basic blocks, average pool, FC.

    Depth ``6n + 2`` counts the weight layers: the stem, ``2 * 3n`` block convolutions and the FC.

    Args:
        depth: 20, 32, 44, 56, 110, ... (``6n + 2``).
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        width: channels of the first stage (16 in the paper); the stages have ``width, 2*width, 4*width``.
            Narrow it (e.g. 8) to train on a CPU.
        plain: drop the shortcuts, giving the plain net of the same depth and exactly the same parameters
            (the shortcuts are parameter-free zero padding).

    Every downsampling layer is padded, so any input size runs (32x32 gives 8x8 before the pool).

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 plain: bool = False):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}.")
        n = (depth - 2) // 6
        self.in_channels, self.plain = in_channels, plain
        self.min_size = smallest_input([(3, 2, 1)] * 2)
        self.stem = nn.Sequential(conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.channels = width
        self.layer1 = self._make_layer(width, n)
        self.layer2 = self._make_layer(2 * width, n, stride=2)
        self.layer3 = self._make_layer(4 * width, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        he_init(self)

    def _make_layer(self, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.channels != out_channels:
            downsample = ZeroPadShortcut(out_channels, stride)
        layers = [BasicBlock(self.channels, out_channels, stride, downsample, residual=not self.plain)]
        layers += [BasicBlock(out_channels, out_channels, residual=not self.plain) for _ in range(1, blocks)]
        self.channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="CifarResNet", in_channels=self.in_channels, min_size=self.min_size)
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2), 11,689,512 parameters. Inputs of 1x1 and up."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


def resnet34(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3), 21,797,672 parameters. Inputs of 1x1 and up."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels)


def resnet50(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-50: bottlenecks (3, 4, 6, 3), 25,557,032 parameters. Inputs of 1x1 and up."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)


def resnext50_32x4d(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels in the first stage's 3x3 convolutions
    (width doubling per stage), 25,028,904 parameters. Inputs of 1x1 and up."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, groups=32, width_per_group=4)


def resnet20(*, num_classes: int = 10, in_channels: int = 3, width: int = 16, plain: bool = False) -> CifarResNet:
    """CIFAR ResNet-20 (n = 3): 269,722 parameters with the defaults; ``plain=True`` removes the shortcuts.
    Inputs of 1x1 and up (32x32 gives 8x8 maps before the pool)."""
    return CifarResNet(20, num_classes, in_channels, width, plain)


def resnet56(*, num_classes: int = 10, in_channels: int = 3, width: int = 16, plain: bool = False) -> CifarResNet:
    """CIFAR ResNet-56 (n = 9): 853,018 parameters with the defaults; ``plain=True`` removes the shortcuts.
    Inputs of 1x1 and up (32x32 gives 8x8 maps before the pool)."""
    return CifarResNet(56, num_classes, in_channels, width, plain)
