"""Inverted dropout: zero each element with probability ``p`` and scale the survivors by ``1 / (1 - p)``.

Scaling at training time keeps ``E[output] = input``, so evaluation is the plain identity (no rescaling
at test time, unlike the original paper's formulation). The gradient is the same mask and scale, so
plain autograd of the multiplication is already the correct backward.
"""

from __future__ import annotations

import torch

__all__ = ["dropout"]


def _check_p(p: object, where: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{where}: p must be a float in [0, 1), got {p!r} ({type(p).__name__}).")
    if not 0.0 <= p < 1.0:
        raise ValueError(
            f"{where}: p is the probability of zeroing an element and must be in [0, 1), got {p}. "
            f"(p=1 would drop everything and divide by 1 - p = 0.)"
        )
    return float(p)


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """Inverted dropout of a tensor of any shape.

    Args:
        x: input, any shape; p: drop probability in ``[0, 1)``;
        training: drop (True) or return ``x`` unchanged (False);
        inplace: overwrite ``x`` with the result (as ``torch.nn.Dropout(inplace=True)``).

    Returns:
        ``x * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)`` elementwise (drawn from torch's generator,
        so ``torch.manual_seed`` makes it reproducible); ``x`` itself in eval mode or when ``p == 0``.
    """
    p = _check_p(p, "dropout")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"dropout: expected a torch.Tensor, got {type(x).__name__}.")
    if not training or p == 0.0:
        return x
    keep = torch.rand_like(x) >= p  # True with probability 1 - p
    scale = keep.to(x.dtype) / (1.0 - p)
    return x.mul_(scale) if inplace else x * scale
