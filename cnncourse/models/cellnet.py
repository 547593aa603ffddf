"""CellNet: the reference classifier of the malaria assignment (A4), a small VGG-style CNN.

Stages of two 3x3 convolution -> batch norm -> ReLU blocks, halving the resolution with a 2x2 max pool
between stages; then global average and max pooling side by side (a parasite is a small local spot,
which max pooling keeps), dropout and one linear layer. At 64 x 64 px with the default widths it has
294,514 parameters and 53.7 M multiply-accumulates per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnncourse.models.common import ConvBNAct, check_input, smallest_input

__all__ = ["CellNet", "cellnet", "TRAIN_SETTINGS"]

# The solution's recipe (``python -m cnncourse train malaria`` defaults; ``fit_tensors`` arguments and the
# model's keyword arguments), chosen on the 90-patient dev data: see the README, "Training and judging a
# malaria model", for what it scores on patients it never saw and how long it takes.
TRAIN_SETTINGS = {
    "size": 64,
    "epochs": 20,
    "batch_size": 128,
    "lr": 3e-3,
    "weight_decay": 5e-4,
    "label_smoothing": 0.1,
    "widths": (16, 32, 64, 128),
    "dropout": 0.2,
}


class CellNet(nn.Module):
    """A small CNN for cell crops: ``x: (N, in_channels, S, S)`` normalised float -> logits ``(N, num_classes)``.

    Args:
        num_classes: output logits (2 for Uninfected/Parasitized).
        in_channels: image channels (3 for RGB).
        widths: channels of each stage; ``len(widths) - 1`` max pools, so ``S`` must be divisible by
            ``2 ** (len(widths) - 1)`` for no pixel to be dropped (64 with four stages: 64, 32, 16, 8).
        dropout: dropout before the classifier.

    Attributes ``in_channels`` and ``min_size`` (``2 ** (len(widths) - 1)``, the smallest side that
    survives the pools) are checked on every input.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128),
        dropout: float = 0.2,
    ):
        super().__init__()
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}.")
        self.in_channels = in_channels
        self.min_size = smallest_input([(2, 2, 0)] * (len(widths) - 1))
        layers: list[nn.Module] = []
        c = in_channels
        for k, w in enumerate(widths):
            if k:
                layers.append(nn.MaxPool2d(2))
            layers += [ConvBNAct(c, w), ConvBNAct(w, w)]
            c = w
        self.features = nn.Sequential(*layers)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, S, S) -> (N, num_classes)."""
        check_input(x, model="CellNet", in_channels=self.in_channels, min_size=self.min_size)
        x = self.features(x)
        return self.head(torch.cat([self.avg(x), self.max(x)], dim=1))


def cellnet(*, num_classes: int = 2, in_channels: int = 3, **kwargs) -> CellNet:
    """The reference malaria model; ``kwargs`` go to :class:`CellNet` (``widths``, ``dropout``).

    294,514 parameters with the defaults (RGB, 2 classes). Inputs of 8x8 and up (64x64 intended).
    """
    return CellNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
