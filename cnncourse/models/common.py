"""Helpers every model family shares: the input check, the smallest input a layer stack accepts, widths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.shapes import ShapeError

__all__ = ["smallest_input", "check_input", "scaled", "he_init", "ConvBNAct"]


def smallest_input(steps: Sequence[tuple[int, ...]], *, limit: int = 4096) -> int:
    """Smallest square input side that a chain of windowed layers maps to at least one pixel.

    Args:
        steps: the layers on the main path that change the spatial size, input first, each as
            ``(kernel, stride, padding)`` or ``(kernel, stride, padding, ceil_mode)``. A convolution and a
            floor-mode pooling layer follow the same formula; ``ceil_mode=True`` is for pooling only.
        limit: give up above this size.

    The sizes come from PyTorch itself (the layers are run on shape-only "meta" tensors), so corner cases
    agree with it exactly; e.g. a ceil-mode 3x3/2 pool accepts a 2x2 map (its one window hangs over the edge).

    >>> smallest_input([(2, 2, 0)] * 5)  # five 2x2 pools, as in VGG
    32
    >>> smallest_input([(3, 2, 1)] * 5)  # padded stride-2 layers run on anything
    1
    """
    for size in range(1, limit + 1):
        x = torch.empty(1, 1, size, size, device="meta")
        try:
            for kernel, stride, padding, *ceil in steps:
                if ceil and ceil[0]:
                    x = F.avg_pool2d(x, kernel, stride, padding, ceil_mode=True)
                else:
                    x = F.conv2d(x, torch.empty(1, 1, kernel, kernel, device="meta"), stride=stride, padding=padding)
        except RuntimeError:
            continue
        return size
    raise ShapeError(f"no input side up to {limit} fits the layers {list(steps)}.")


def check_input(x: torch.Tensor, *, model: str, in_channels: int, min_size: int, hint: str = "") -> None:
    """Raise :class:`~cnncourse.shapes.ShapeError` naming the problem and its fix unless ``x`` suits the model.

    Args:
        x: the batch, ``(N, C, H, W)``.
        model: the model's name for the message, e.g. ``"VGG-16"``.
        in_channels: the ``C`` the model was built for.
        min_size: the smallest ``H`` and ``W`` it runs on.
        hint: an extra suggestion appended to the too-small message (e.g. a smaller variant to use).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{model} expects a batch of images (N, C, H, W), got {shape}. "
                         "Add the batch dimension with x.unsqueeze(0).")
    n, c, h, w = x.shape
    if c != in_channels:
        raise ShapeError(f"{model} was built for in_channels={in_channels} but got an input with {c} channels "
                         f"(shape {tuple(x.shape)}); build it with in_channels={c}.")
    if min(h, w) < min_size:
        fix = f"upsample the images to at least {min_size}x{min_size}, e.g. " \
              f"torch.nn.functional.interpolate(x, size={min_size}, mode='bilinear')"
        raise ShapeError(f"{model} needs inputs of at least {min_size}x{min_size} pixels, got {h}x{w}: "
                         f"{fix}{'; ' + hint if hint else ''}.")


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier ``width``, rounded, at least 1 (narrows a net for the CPU).

    >>> scaled(64, 0.25)
    16
    """
    if not width > 0:
        raise ValueError(f"width must be a positive multiplier such as 0.25 or 1.0, got {width!r}.")
    return max(1, round(channels * width))


def he_init(model: nn.Module) -> nn.Module:
    """He (Kaiming) normal initialization for every convolution (``fan_out``, for ReLU), zero biases, and
    batch norm set to the identity (scale 1, shift 0). Returns ``model``.

    PyTorch's default (a uniform with a smaller spread) is fine for shallow nets; deep plain nets need He.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


class ConvBNAct(nn.Sequential):
    """``Conv2d (no bias) - BatchNorm2d - activation``, the unit most modern nets are built from.

    Args:
        in_channels, out_channels, kernel_size, stride, groups: as for ``nn.Conv2d``.
        padding: defaults to ``kernel_size // 2`` (size-preserving at stride 1).
        norm: ``False`` drops the batch norm and gives the convolution a bias instead.
        activation: a module class such as ``nn.ReLU`` or ``nn.ReLU6``; ``None`` for none.

    Shapes: ``x: (N, in_channels, H, W)`` -> ``(N, out_channels, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1, norm: bool = True,
                 activation: type[nn.Module] | None = nn.ReLU):
        padding = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                             groups=groups, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
