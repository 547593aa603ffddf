"""``torch.nn``-compatible modules around the from-scratch functions.

Each class takes the same constructor arguments as its ``torch.nn`` namesake and has the same parameter
and buffer names (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), so a
``state_dict`` moves between them in both directions with ``strict=True``, and a torchvision model can have
its layers swapped for these (see :func:`swap_layers`). Initialization follows PyTorch's defaults.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnncourse.layers._checks import check_rank, pair
from cnncourse.layers.batchnorm import batch_norm
from cnncourse.layers.conv import conv2d
from cnncourse.layers.dropout import _check_p, dropout
from cnncourse.layers.pool import avg_pool2d, max_pool2d
from cnncourse.shapes import ShapeError

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "swap_layers"]

IntOrPair = int | tuple[int, int]


class Conv2d(nn.Module):
    """2-D convolution by im2col (:func:`cnncourse.layers.conv2d`); ``x: (N, C_in, H, W) -> (N, C_out, H2, W2)``.

    Parameters: ``weight (C_out, C_in/groups, kh, kw)`` and ``bias (C_out,)``, initialized like
    ``torch.nn.Conv2d`` (Kaiming-uniform with ``a=sqrt(5)``; bias uniform in ``+-1/sqrt(fan_in)``).
    Only ``padding_mode="zeros"`` and integer paddings are supported.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for value, name in ((in_channels, "in_channels"), (out_channels, "out_channels"), (groups, "groups")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ShapeError(f"Conv2d: {name} must be a positive int, got {value!r}.")
        if in_channels % groups or out_channels % groups:
            raise ShapeError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}.")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: only padding_mode='zeros' is implemented, got {padding_mode!r}.")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.dilation, self.padding_mode = pair(dilation, "dilation"), padding_mode
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((out_channels, in_channels // groups, *self.kernel_size), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class MaxPool2d(nn.Module):
    """Max pooling (:func:`cnncourse.layers.max_pool2d`); ties send the gradient to the first maximum."""

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: IntOrPair | None = None,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: torch.Tensor):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          dilation=self.dilation, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(nn.Module):
    """Average pooling (:func:`cnncourse.layers.avg_pool2d`), zero padding counted by default."""

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: IntOrPair | None = None,
        padding: IntOrPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _BatchNorm(nn.Module):
    """Shared body of :class:`BatchNorm1d` and :class:`BatchNorm2d` (PyTorch's ``_BatchNorm`` logic)."""

    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ShapeError(f"{type(self).__name__}: num_features must be a positive int, got {num_features!r}.")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum!r}.")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rank(x, self._ranks, self._layout, type(self).__name__)
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}({self.num_features}): input {tuple(x.shape)} has "
                             f"{x.shape[1]} channels, expected {self.num_features}.")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average over all batches seen so far
                momentum = 1.0 / float(self.num_batches_tracked)
        # Batch statistics in training mode, and always when no running statistics are kept.
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of ``(N, C)`` or ``(N, C, L)`` inputs, per channel ``C``."""

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of ``(N, C, H, W)`` inputs, per channel ``C`` (statistics over ``N``, ``H``, ``W``)."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class Dropout(nn.Module):
    """Inverted dropout (:func:`cnncourse.layers.dropout`); the identity in eval mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p, self.inplace = _check_p(p, "Dropout"), inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


def _ours(module: nn.Module) -> nn.Module | None:
    """The from-scratch twin of one torch.nn layer, with the same configuration and state, or None."""
    if type(module) is nn.Conv2d:
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            return None
        twin: nn.Module = Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                 module.padding, module.dilation, module.groups, module.bias is not None,
                                 device=module.weight.device, dtype=module.weight.dtype)
    elif type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        cls = BatchNorm2d if type(module) is nn.BatchNorm2d else BatchNorm1d
        ref = module.weight if module.affine else module.running_mean
        twin = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                   device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
    elif type(module) is nn.MaxPool2d:
        twin = MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                         module.return_indices, module.ceil_mode)
    elif type(module) is nn.AvgPool2d:
        twin = AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                         module.count_include_pad, module.divisor_override)
    elif type(module) is nn.Dropout:
        twin = Dropout(module.p, module.inplace)
    else:
        return None
    twin.load_state_dict(module.state_dict(), strict=True)
    twin.train(module.training)
    return twin


def swap_layers(model: nn.Module) -> int:
    """Replace, in place, every ``torch.nn`` Conv2d, BatchNorm1d/2d, MaxPool2d, AvgPool2d and Dropout of
    ``model`` by its from-scratch twin carrying the same state; returns how many layers were swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            twin = _ours(child)
            if twin is not None:
                setattr(parent, name, twin)
                swapped += 1
    return swapped
