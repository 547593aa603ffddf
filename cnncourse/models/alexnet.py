"""AlexNet (Krizhevsky, Sutskever, Hinton, 2012): five convolutions, overlapping 3x3/2 max pooling, ReLU,
dropout and three fully connected layers that hold almost all of the parameters.

Three builders share one class:

- :func:`alexnet`: the one-tower form torchvision uses (64-192-384-256-256 filters), 61,100,840 parameters.
- :func:`alexnet_2012`: the paper's widths (96-256-384-384-256) merged into one tower, no padding in conv1,
  local response normalization; its 227x227 input gives the famous 55-27-13-6 shape walk.
- :func:`alexnet_cifar`: a small variant for 32x32 inputs (5x5 stride-1 first layer, 3x3 pooled map, narrower
  classifier), no LRN, not split in two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnncourse.models.common import check_input, scaled, smallest_input

__all__ = ["AlexNet", "alexnet", "alexnet_2012", "alexnet_cifar"]


class AlexNet(nn.Module):
    """AlexNet: ``conv-relu-(lrn)-pool, conv-relu-(lrn)-pool, 3 x conv-relu, pool`` then a 3-layer classifier.

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        widths: filters of the five convolutions.
        conv1: ``(kernel, stride, padding)`` of the first convolution; conv2 is 5x5 and conv3-5 are 3x3,
            all size-preserving.
        lrn: add local response normalization after the first two ReLUs (the paper's; outdated).
        pool_size: the feature map is average-pooled to ``pool_size x pool_size`` before the classifier
            (6 on ImageNet), so the classifier's size does not depend on the input size.
        hidden: units of the two hidden fully connected layers.
        dropout: dropout probability before each hidden fully connected layer.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, num_classes)``, with ``H, W >= self.min_size``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 192, 384, 256, 256),
        conv1: tuple[int, int, int] = (11, 4, 2),
        lrn: bool = False,
        pool_size: int = 6,
        hidden: int = 4096,
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths must give the filters of the 5 convolutions, got {tuple(widths)}.")
        c1, c2, c3, c4, c5 = widths
        k, s, p = conv1
        self.in_channels = in_channels
        self.min_size = smallest_input([conv1, (3, 2, 0), (3, 2, 0), (3, 2, 0)])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=k, stride=s, padding=p), nn.ReLU(inplace=True),
            *([nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn else []),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            *([nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn else []),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c5 * pool_size * pool_size, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, model="AlexNet", in_channels=self.in_channels, min_size=self.min_size,
                    hint="or use alexnet_cifar, which runs on 15x15 and up")
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(*, num_classes: int = 1000, in_channels: int = 3) -> AlexNet:
    """AlexNet as torchvision builds it: 61,100,840 parameters for 1000 classes; inputs of 63x63 and up
    (224x224 on ImageNet, where the feature map is 256x6x6)."""
    return AlexNet(num_classes, in_channels)


def alexnet_2012(*, num_classes: int = 1000, in_channels: int = 3, lrn: bool = True) -> AlexNet:
    """The paper's AlexNet in one tower: 96-256-384-384-256 filters, conv1 11x11/4 unpadded, LRN.

    On a 227x227 input: conv1 (96, 55, 55), pool1 (96, 27, 27), conv2 (256, 27, 27), pool2 (256, 13, 13),
    conv3-5 (384/384/256, 13, 13), pool3 (256, 6, 6), fc6 4096, fc7 4096, fc8 1000. 62,378,344 parameters
    (the paper's two towers had fewer: conv2, conv4 and conv5 saw only their own tower's maps).
    Inputs of 67x67 and up.
    """
    return AlexNet(num_classes, in_channels, widths=(96, 256, 384, 384, 256), conv1=(11, 4, 0), lrn=lrn)


def alexnet_cifar(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, hidden: int = 1024) -> AlexNet:
    """AlexNet for 32x32 images: conv1 5x5 stride 1, the same five conv layers, a 256x3x3 map, a
    ``hidden``-unit classifier. 5,871,434 parameters with the defaults (10 classes, RGB); ``width`` scales
    every layer (0.25 for a quick CPU run). Inputs of 15x15 and up (32x32: maps 32-15-7-3)."""
    widths = [scaled(c, width) for c in (64, 192, 384, 256, 256)]
    return AlexNet(num_classes, in_channels, widths=widths, conv1=(5, 1, 2), pool_size=3, hidden=scaled(hidden, width))
