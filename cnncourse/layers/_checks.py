"""Argument checks shared by the from-scratch layers: every message names the shapes involved."""

from __future__ import annotations

import torch

from cnncourse.shapes import ShapeError, _pair

__all__ = ["pair", "check_rank", "check_same_device_dtype"]


def pair(value: object, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``; anything else raises :class:`ShapeError` naming ``name``."""
    if isinstance(value, str):
        raise ShapeError(f"{name}={value!r} is not supported here: give an int or an (h, w) pair of ints.")
    return _pair(value, name)


def check_rank(x: object, ranks: tuple[int, ...], layout: str, where: str) -> None:
    """Raise a clear error unless ``x`` is a tensor with one of ``ranks`` dimensions (``layout`` spells them)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor of shape {layout}, got {type(x).__name__}.")
    if x.dim() not in ranks:
        hint = " Add a batch dimension with x.unsqueeze(0)." if x.dim() == min(ranks) - 1 else ""
        raise ShapeError(
            f"{where}: expected input of shape {layout} ({' or '.join(map(str, ranks))} dimensions), "
            f"got shape {tuple(x.shape)} ({x.dim()} dimensions).{hint}"
        )


def check_same_device_dtype(x: torch.Tensor, other: torch.Tensor | None, name: str, where: str) -> None:
    """``other`` (a weight, bias or running statistic) must live on ``x``'s device with ``x``'s dtype."""
    if other is None:
        return
    if not isinstance(other, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or None, got {type(other).__name__}.")
    if other.device != x.device or other.dtype != x.dtype:
        raise ValueError(
            f"{where}: {name} is {other.dtype} on {other.device} but the input is {x.dtype} on {x.device}; "
            f"move one of them with .to(...)."
        )
