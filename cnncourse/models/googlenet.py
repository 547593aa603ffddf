"""GoogLeNet / Inception v1 (Szegedy et al., 2014): inception blocks, an aggressive stem, an average-pool head.

An inception block runs 1x1, 3x3 and 5x5 convolutions and a 3x3 max pool side by side and concatenates
their outputs along the channels. The naive block is expensive (the 3x3 and 5x5 convolutions see every
input channel and the pool passes all of them on); 1x1 "reduce" convolutions in front of the 3x3 and 5x5
branches and behind the pool cut the cost several-fold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnncourse.models.common import ConvBNAct, check_input, he_init, scaled, smallest_input

__all__ = ["InceptionBlock", "InceptionAux", "GoogLeNet", "googlenet", "googlenet_cifar"]


class InceptionBlock(nn.Module):
    """An inception block: four parallel branches concatenated along the channels.

    Args:
        in_channels: channels of the input.
        ch1x1: filters of the 1x1 branch.
        ch3x3_reduce, ch3x3: the 3x3 branch: a 1x1 reduction to ``ch3x3_reduce`` channels, then ``ch3x3``
            3x3 filters. ``ch3x3_reduce=None`` gives the naive branch (3x3 on all input channels).
        ch5x5_reduce, ch5x5: the same for the large-kernel branch.
        pool_proj: filters of the 1x1 after the 3x3/1 max pool; ``None`` passes the pooled input on (naive).
        large_kernel: kernel of the "5x5" branch. 5 as in the paper; torchvision's GoogLeNet uses 3 here (a
            slip kept for its pretrained weights), so :func:`googlenet` does too, to match its parameter count.
        norm: batch norm after each convolution (conv without bias); ``False`` for plain conv + bias + ReLU.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, out_channels, H, W)`` with
    ``out_channels = ch1x1 + ch3x3 + ch5x5 + (pool_proj or in_channels)``.

    >>> InceptionBlock(192, 64, 96, 128, 16, 32, 32).out_channels  # GoogLeNet's 3a
    256
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3_reduce: int | None, ch3x3: int,
                 ch5x5_reduce: int | None, ch5x5: int, pool_proj: int | None, *,
                 large_kernel: int = 5, norm: bool = True):
        super().__init__()

        def branch(reduce: int | None, out: int, kernel: int) -> nn.Sequential:
            if reduce is None:
                return nn.Sequential(ConvBNAct(in_channels, out, kernel, norm=norm))
            return nn.Sequential(ConvBNAct(in_channels, reduce, 1, norm=norm),
                                 ConvBNAct(reduce, out, kernel, norm=norm))

        self.branch1 = ConvBNAct(in_channels, ch1x1, 1, norm=norm)
        self.branch2 = branch(ch3x3_reduce, ch3x3, 3)
        self.branch3 = branch(ch5x5_reduce, ch5x5, large_kernel)
        pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True)
        self.branch4 = nn.Sequential(pool) if pool_proj is None else \
            nn.Sequential(pool, ConvBNAct(in_channels, pool_proj, 1, norm=norm))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + (in_channels if pool_proj is None else pool_proj)

    @classmethod
    def naive(cls, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, *, norm: bool = True) -> InceptionBlock:
        """The naive block: 1x1, 3x3, 5x5 convolutions and a 3x3 pool on the input, no 1x1 reductions."""
        return cls(in_channels, ch1x1, None, ch3x3, None, ch5x5, None, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionAux(nn.Module):
    """GoogLeNet's auxiliary classifier: 4x4 average pool, 1x1 conv to 128, FC 1024, dropout 0.7, FC.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvBNAct(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


# The paper's table: (ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj) per block, "M" a 3x3/2 pool.
INCEPTION_CONFIG: list[tuple[int, ...] | str] = [
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M",  # 3a, 3b
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),  # 4a-4c
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M",  # 4d, 4e
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),  # 5a, 5b
]


class GoogLeNet(nn.Module):
    """GoogLeNet: a stem, nine inception blocks in three stages, global average pooling, dropout, one FC.

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        stem: ``"imagenet"`` (7x7/2 conv, pool, 1x1 and 3x3 convs, pool: 224 -> 28) or ``"cifar"`` (one 3x3
            conv to 192 channels with stride ``stem_stride``: 32 stays 32, or becomes 16 with stride 2).
        aux_logits: add the two auxiliary classifiers (after 4a and 4d); in training mode ``forward`` then
            returns ``(logits, aux1, aux2)``.
        width: multiplies every block's channels (1.0 = the paper's; 0.25 for a quick CPU run).
        large_kernel: kernel of the "5x5" branches (see :class:`InceptionBlock`).
        dropout: before the final FC.
        stem_stride: stride of the ``"cifar"`` stem's convolution (2 makes the net about 4x cheaper).
        config: the blocks, as ``INCEPTION_CONFIG``.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``, ``H, W >= self.min_size``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 aux_logits: bool = False, width: float = 1.0, large_kernel: int = 5, dropout: float = 0.2,
                 config: Sequence[tuple[int, ...] | str] = INCEPTION_CONFIG, stem_stride: int = 1):
        super().__init__()
        self.in_channels = in_channels
        if stem == "imagenet":
            c64, c192 = scaled(64, width), scaled(192, width)
            self.stem = nn.Sequential(
                ConvBNAct(in_channels, c64, 7, stride=2, padding=3),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
                ConvBNAct(c64, c64, 1),
                ConvBNAct(c64, c192, 3),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
            )
            steps: list[tuple[int, ...]] = [(7, 2, 3), (3, 2, 0, True), (3, 2, 0, True)]
        elif stem == "cifar":
            c192 = scaled(192, width)
            self.stem = nn.Sequential(ConvBNAct(in_channels, c192, 3, stride=stem_stride))
            steps = [(3, stem_stride, 1)]
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}.")
        # Build the stages; the auxiliary heads read the outputs of the 3rd and 6th blocks (4a and 4d).
        self.blocks = nn.ModuleList()
        channels, outputs = c192, []  # outputs: (position in self.blocks, channels) of each inception block
        for entry in config:
            if entry == "M":
                self.blocks.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
                steps.append((3, 2, 0, True))
                continue
            block = InceptionBlock(channels, *(scaled(c, width) for c in entry), large_kernel=large_kernel)
            self.blocks.append(block)
            channels = block.out_channels
            outputs.append((len(self.blocks) - 1, channels))
        self.aux_index = (outputs[2][0], outputs[5][0])
        self.aux1 = InceptionAux(outputs[2][1], num_classes) if aux_logits else None
        self.aux2 = InceptionAux(outputs[5][1], num_classes) if aux_logits else None
        self.min_size = smallest_input(steps)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_input(x, model="GoogLeNet", in_channels=self.in_channels, min_size=self.min_size,
                    hint="or use googlenet_cifar, which runs on 4x4 and up")
        x = self.stem(x)
        aux = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.aux1 is not None and self.training and i in self.aux_index:
                aux.append((self.aux1 if i == self.aux_index[0] else self.aux2)(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (x, *aux) if aux else x


def googlenet(*, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False) -> GoogLeNet:
    """GoogLeNet as torchvision builds it (3x3 kernels in the "5x5" branches): 6,624,904 parameters, or
    13,004,888 with the auxiliary classifiers.
    Inputs of 31x31 and up (224x224: 7x7 before the pool)."""
    return GoogLeNet(num_classes, in_channels, aux_logits=aux_logits, large_kernel=3)


def googlenet_cifar(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                    stem_stride: int = 1) -> GoogLeNet:
    """GoogLeNet for 32x32 images: a single 3x3 conv stem (no early pooling), the nine paper-size
    inception blocks (true 5x5 kernels) with two 3x3/2 pools (32 -> 16 -> 8), average pool and FC.
    5,871,914 parameters with the defaults. It is the costliest small variant (1.45 G MACs per 32x32
    image): for a CPU run use ``width=0.25`` (91 M) and ``stem_stride=2`` (about 4x fewer again).
    Inputs of 4x4 and up."""
    return GoogLeNet(num_classes, in_channels, stem="cifar", width=width, large_kernel=5, stem_stride=stem_stride)
