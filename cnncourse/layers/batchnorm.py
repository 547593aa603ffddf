"""Batch normalization from scratch, with a hand-written backward and PyTorch's running statistics.

For ``x: (N, C)`` or ``(N, C, H, W)`` (any ``(N, C, ...)``), channel ``c`` is normalized over the
``M = N*H*W`` values it has in the batch:

    mu = mean(x),  var = mean((x - mu)^2)  (biased: divide by M),  x_hat = (x - mu) / sqrt(var + eps),
    y = gamma * x_hat + beta.

In training mode the batch statistics are used and the running estimates are updated **in place**
exactly as ``torch.nn.functional.batch_norm`` does:

    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)

In eval mode the running estimates replace ``mu`` and ``var`` and nothing is updated. ``momentum=None``
(a cumulative average) is a matter of the modules, as in PyTorch: :class:`cnncourse.layers.BatchNorm2d`
then passes ``momentum = 1 / num_batches_tracked``.

Backward (training mode), with ``g = dL/dy * gamma``:

    dL/dx = (1 / sqrt(var + eps)) * (g - mean(g) - x_hat * mean(g * x_hat)),
    dL/dgamma = sum(dL/dy * x_hat),  dL/dbeta = sum(dL/dy)   (sums over all axes but C).

The two subtracted means are the gradient flowing through ``mu`` and ``var``; in eval mode they are
constants and ``dL/dx = g / sqrt(running_var + eps)``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from cnncourse.layers._checks import check_same_device_dtype
from cnncourse.shapes import ShapeError

__all__ = ["batch_norm", "BatchNormFunction"]


def _per_channel(t: torch.Tensor, dims: int) -> torch.Tensor:
    """``(C,) -> (1, C, 1, ...)`` so it broadcasts against an input of ``dims`` dimensions."""
    return t.view(1, -1, *([1] * (dims - 2)))


class BatchNormFunction(torch.autograd.Function):
    """Normalize with given or batch statistics; returns ``(y, mean, biased var)`` (the last two no-grad)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, training: bool, eps: float):
        dims = tuple(d for d in range(x.dim()) if d != 1)  # every axis but the channels
        if training:
            mean = x.mean(dims)
            var = (x - _per_channel(mean, x.dim())).square().mean(dims)  # biased: divide by M
        invstd = torch.rsqrt(var + eps)
        x_hat = (x - _per_channel(mean, x.dim())) * _per_channel(invstd, x.dim())
        y = x_hat
        if weight is not None:
            y = y * _per_channel(weight, x.dim())
        if bias is not None:
            y = y + _per_channel(bias, x.dim())
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.training, ctx.dims = training, dims
        ctx.has_bias = bias is not None
        mean, var = mean.detach().clone(), var.detach().clone()
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        x_hat, invstd, weight = ctx.saved_tensors
        dims, k = ctx.dims, x_hat.dim()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            g = grad_y * _per_channel(weight, k) if weight is not None else grad_y
            if ctx.training:  # mu and var depend on x too
                g = g - g.mean(dims, keepdim=True) - x_hat * (g * x_hat).mean(dims, keepdim=True)
            grad_x = g * _per_channel(invstd, k)
        if weight is not None and ctx.needs_input_grad[1]:
            grad_w = (grad_y * x_hat).sum(dims)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(dims)
        return grad_x, grad_w, grad_b, None, None, None, None


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Batch normalization of ``x: (N, C)`` or ``(N, C, H, W)`` per channel (see the module docstring).

    Args:
        running_mean, running_var: ``(C,)`` estimates, updated in place when ``training``; may be None
            only when ``training`` (then batch statistics are used and nothing is tracked).
        weight, bias: ``gamma`` and ``beta``, ``(C,)`` or None (then 1 and 0).
        training: use batch statistics (and update the running ones) or the running ones.
        momentum: weight of the new batch in the running estimates; eps: added to the variance.

    Returns:
        ``y`` of ``x``'s shape, differentiable wrt ``x``, ``weight`` and ``bias`` by a hand-written backward.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batch_norm: expected a torch.Tensor of shape (N, C) or (N, C, H, W), got {type(x).__name__}.")
    if x.dim() < 2:
        raise ShapeError(f"batch_norm: expected input of shape (N, C) or (N, C, H, W), got shape {tuple(x.shape)}.")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        check_same_device_dtype(x, t, name, "batch_norm")
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"batch_norm: input {tuple(x.shape)} has {c} channels but {name} has shape "
                             f"{tuple(t.shape)}; it must be ({c},).")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither.")
    if not training and running_mean is None:
        raise ValueError("batch_norm: eval mode (training=False) needs running_mean and running_var.")
    if momentum is None or not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"batch_norm: momentum must be a float in [0, 1], got {momentum!r} "
                         f"(momentum=None, a cumulative average, is handled by the BatchNorm modules).")
    m = x.numel() // c if c else 0
    if training and m <= 1:
        raise ShapeError(f"batch_norm: training needs more than one value per channel, but input "
                         f"{tuple(x.shape)} has {m}; use a larger batch or eval mode.")
    y, mean, var = BatchNormFunction.apply(x, weight, bias, running_mean, running_var, bool(training), eps)
    if training and running_mean is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            running_var.mul_(1 - momentum).add_(var * (m / (m - 1)), alpha=momentum)  # unbiased estimate
    return y
