"""LeNet-5 (LeCun et al., 1998): two 5x5 convolutions with subsampling, then three fully connected layers.

Shapes on the classic 1x32x32 input::

    conv1 5x5, 6      -> (6, 28, 28)      6*1*5*5 + 6     =    156
    pool1 2x2/2       -> (6, 14, 14)
    conv2 5x5, 16     -> (16, 10, 10)     16*6*5*5 + 16   =  2,416
    pool2 2x2/2       -> (16, 5, 5)
    fc1               -> (120,)           400*120 + 120   = 48,120
    fc2               -> (84,)            120*84 + 84     = 10,164
    fc3               -> (10,)            84*10 + 10      =    850
                                                    total   61,706
"""

from __future__ import annotations

import torch
from torch import nn

from cnncourse.models.common import check_input, smallest_input
from cnncourse.shapes import ShapeError

__all__ = ["LeNet5", "lenet5", "lenet5_modern"]


class LeNet5(nn.Module):
    """LeNet-5, classic (tanh, average pooling) or modern (ReLU, max pooling); same layers and parameters.

    The classic form simplifies the 1998 paper: every conv2 filter sees all six conv1 maps (the paper
    wired each to a subset), subsampling is a plain average (the paper's had a trainable scale and bias),
    and the output is a linear layer (the paper's used radial basis functions).

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images (1 for digits).
        input_size: the side of the square input the net is built for (32 in the paper; 28 for MNIST-size
            images). The first fully connected layer is sized for it, so the net accepts exactly this size.
            At least 16.
        modern: ReLU and max pooling instead of tanh and average pooling.

    Shapes: ``x: (N, in_channels, input_size, input_size)`` -> ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32, modern: bool = False):
        super().__init__()
        steps = [(5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0)]
        if smallest_input(steps) > input_size:
            raise ValueError(f"LeNet-5 needs input_size >= {smallest_input(steps)}, got {input_size}; "
                             "upsample the images (e.g. digits 8x8 to 32x32).")
        self.in_channels, self.input_size, self.min_size = in_channels, input_size, input_size
        act: type[nn.Module] = nn.ReLU if modern else nn.Tanh
        pool: type[nn.Module] = nn.MaxPool2d if modern else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5), act(), pool(2),
            nn.Conv2d(6, 16, kernel_size=5), act(), pool(2),
        )
        side = ((input_size - 4) // 2 - 4) // 2  # 5 for a 32x32 input
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), act(),
            nn.Linear(120, 84), act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="LeNet-5", in_channels=self.in_channels, min_size=1)
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ShapeError(f"this LeNet-5 was built for {self.input_size}x{self.input_size} inputs, got "
                             f"{x.shape[-2]}x{x.shape[-1]}; build it with input_size={x.shape[-1]} "
                             f"(square inputs only) or resize the images.")
        return self.classifier(self.features(x))


def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 32) -> LeNet5:
    """Classic LeNet-5: tanh and 2x2 average pooling. 61,706 parameters on 1x32x32 with 10 classes."""
    return LeNet5(num_classes, in_channels, input_size, modern=False)


def lenet5_modern(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 32) -> LeNet5:
    """Modern LeNet-5: ReLU and 2x2 max pooling. 61,706 parameters on 1x32x32 with 10 classes."""
    return LeNet5(num_classes, in_channels, input_size, modern=True)
