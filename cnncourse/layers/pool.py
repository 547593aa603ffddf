"""Max and average pooling from scratch, with hand-written backward passes.

Both pools cut the (padded) input into windows with the same strided slices as im2col
(:func:`cnncourse.layers.conv.unfold_padded`) and reduce each window:

* **max**: padding is ``-inf`` (it can never win against a real value). The gradient of each output goes
  to the arg-max of its window only. **Tie rule**: when several elements of a window share the maximum,
  the *first* one in row-major window order (smallest row offset, then smallest column offset) gets the
  gradient. This is ``torch.argmax``'s documented rule, and PyTorch's max-pool kernels choose the same
  element: they scan each window row by row and replace the running maximum only on a strictly greater
  value (the tests check ties against ``F.max_pool2d`` on the CPU, and on CUDA where a GPU is present).
  Overlapping windows route their
  gradients independently, and an element chosen by several windows receives the sum. (One corner case
  differs from PyTorch: a window whose real values are all ``-inf`` sends its gradient to the padding,
  i.e. nowhere, while PyTorch picks the first real element.)
* **average**: padding is zero. With ``count_include_pad=True`` (PyTorch's default) the divisor counts the
  padded positions inside the window, but not the extra positions beyond the padding that ``ceil_mode``
  windows may reach, exactly as PyTorch does; ``count_include_pad=False`` counts real pixels only, and
  ``divisor_override`` replaces the divisor. Backward spreads ``grad / divisor`` evenly over the window.

``ceil_mode=True`` rounds the output size up (a last, partial window) but never starts a window in the
right padding; the sizes come from :func:`cnncourse.shapes.pool_output_size`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cnncourse.layers._checks import check_rank, pair
from cnncourse.layers.conv import fold_padded, unfold_padded
from cnncourse.shapes import ShapeError, pool_output_size

__all__ = ["max_pool2d", "avg_pool2d", "MaxPool2dFunction", "AvgPool2dFunction"]

IntOrPair = int | tuple[int, int]
Pair = tuple[int, int]


class _Geometry:
    """Kernel, stride, padding, dilation and output size of one pooling call, plus how far to pad."""

    def __init__(self, x: torch.Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool, where: str):
        check_rank(x, (4,), "(N, C, H, W)", where)
        if not x.is_floating_point():
            raise TypeError(f"{where}: input must be a floating point tensor, got {x.dtype}.")
        self.kernel = pair(kernel_size, "kernel_size")
        self.stride = self.kernel if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.size = tuple(x.shape[2:])
        try:
            self.out: Pair = pool_output_size(self.size, self.kernel, self.stride, self.padding, self.dilation,
                                              ceil_mode=ceil_mode)  # type: ignore[assignment]
        except ShapeError as err:
            raise ShapeError(f"{where} of input {tuple(x.shape)} with kernel_size {self.kernel}: {err}") from None
        for axis, (n, k, st, p, d, o) in enumerate(zip(self.size, self.kernel, self.stride, self.padding,
                                                          self.dilation, self.out, strict=True)):
            for i in range(o):  # with dilation, a window can jump over all real pixels
                if not any(p <= i * st + a * d < p + n for a in range(k)):
                    raise ShapeError(
                        f"{where} of input {tuple(x.shape)} with kernel_size {self.kernel}, stride {self.stride}, "
                        f"padding {self.padding}, dilation {self.dilation}: output {'row' if axis == 0 else 'column'} "
                        f"{i} would see only padding. Use less padding or dilation, or a larger input.")
        # Rows/columns the windows reach, counted from the start of the left/top padding. In ceil mode the
        # last window may run past the right padding: pad a little more so every window is complete.
        self.reach = tuple((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in
                           zip(self.out, self.stride, self.dilation, self.kernel, strict=True))
        self.extra = tuple(max(r - (n + 2 * p), 0) for r, n, p in
                           zip(self.reach, self.size, self.padding, strict=True))

    def pad(self, x: torch.Tensor, value: float) -> torch.Tensor:
        (ph, pw), (eh, ew) = self.padding, self.extra
        return F.pad(x, (pw, pw + ew, ph, ph + eh), value=value)

    def crop(self, xp: torch.Tensor) -> torch.Tensor:
        (ph, pw), (h, w) = self.padding, self.size
        return xp[:, :, ph:ph + h, pw:pw + w]

    def windows(self, xp: torch.Tensor) -> torch.Tensor:
        """``(N, C, kh*kw, H2, W2)``: window element ``a*kw + b`` of output ``(i, j)``."""
        cols = unfold_padded(xp, self.kernel, self.stride, self.dilation, self.out)
        n, c = xp.shape[:2]
        return cols.reshape(n, c, self.kernel[0] * self.kernel[1], *self.out)

    def unwindows(self, cols: torch.Tensor, padded_shape: tuple[int, ...]) -> torch.Tensor:
        """Adjoint of :meth:`windows`: add every window element back where it came from, then crop."""
        n, c = cols.shape[:2]
        cols = cols.reshape(n, c, *self.kernel, *self.out)
        return self.crop(fold_padded(cols, padded_shape, self.stride, self.dilation))


class MaxPool2dFunction(torch.autograd.Function):
    """Max pooling; backward routes each output's gradient to its window's (first) arg-max."""

    @staticmethod
    def forward(ctx, x, geometry: _Geometry):
        xp = geometry.pad(x, -math.inf)
        y, arg = geometry.windows(xp).max(dim=2)  # ties: the first maximal element of the window
        ctx.save_for_backward(arg)
        ctx.geometry = geometry
        ctx.padded_shape = tuple(xp.shape)
        ctx.mark_non_differentiable(arg)
        return y, arg

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, _grad_arg):
        (arg,) = ctx.saved_tensors
        g = ctx.geometry
        n, c = grad_y.shape[:2]
        grad_cols = grad_y.new_zeros((n, c, g.kernel[0] * g.kernel[1], *g.out))
        grad_cols.scatter_(2, arg.unsqueeze(2), grad_y.unsqueeze(2))  # only the arg-max gets the gradient
        return g.unwindows(grad_cols, ctx.padded_shape), None


def max_pool2d(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    *,
    dilation: IntOrPair = 1,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Max pooling of ``x: (N, C, H, W)`` to ``(N, C, H2, W2)``; ``stride`` defaults to ``kernel_size``.

    Padding is ``-inf`` and may be at most half the kernel. With ``return_indices=True`` also returns, like
    PyTorch, the flat index ``h*W + w`` into each input plane of every output's arg-max (first on ties).
    """
    g = _Geometry(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    y, arg = MaxPool2dFunction.apply(x, g)
    if not return_indices:
        return y
    kw = g.kernel[1]
    rows = torch.arange(g.out[0], device=x.device).view(-1, 1) * g.stride[0] - g.padding[0]
    cols = torch.arange(g.out[1], device=x.device).view(1, -1) * g.stride[1] - g.padding[1]
    h = rows + torch.div(arg, kw, rounding_mode="floor") * g.dilation[0]
    w = cols + (arg % kw) * g.dilation[1]
    return y, h * g.size[1] + w


def _counts(kernel: int, stride: int, out: int, lo: int, hi: int, device) -> torch.Tensor:
    """How many positions of each window along one axis lie in ``[lo, hi)`` (padded coordinates)."""
    start = torch.arange(out, device=device) * stride
    return (torch.clamp(start + kernel, max=hi) - torch.clamp(start, min=lo)).clamp(min=0)


class AvgPool2dFunction(torch.autograd.Function):
    """Average pooling; backward spreads ``grad / divisor`` evenly over each window."""

    @staticmethod
    def forward(ctx, x, geometry: _Geometry, divisor: torch.Tensor):
        xp = geometry.pad(x, 0.0)
        y = geometry.windows(xp).sum(dim=2) / divisor
        ctx.geometry, ctx.padded_shape = geometry, tuple(xp.shape)
        ctx.save_for_backward(divisor)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        (divisor,) = ctx.saved_tensors
        g = ctx.geometry
        n, c = grad_y.shape[:2]
        share = (grad_y / divisor).unsqueeze(2).expand(n, c, g.kernel[0] * g.kernel[1], *g.out)
        return g.unwindows(share, ctx.padded_shape), None, None


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> torch.Tensor:
    """Average pooling of ``x: (N, C, H, W)`` to ``(N, C, H2, W2)``, same arguments as PyTorch's.

    Padding is zero. The divisor of each window is (PyTorch's rules): ``divisor_override`` if given; else
    with ``count_include_pad=True`` (default) the window's positions inside the *padded* input (so a corner
    window of a 3x3 pool with padding 1 divides by 9 although it covers 4 pixels); with
    ``count_include_pad=False`` only the real pixels it covers (4 in that example).
    """
    g = _Geometry(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or divisor_override < 1:
            raise ValueError(f"avg_pool2d: divisor_override must be a positive int or None, got {divisor_override!r}.")
        divisor = torch.full(g.out, float(divisor_override), dtype=x.dtype, device=x.device)
    else:
        counts = []
        for axis in range(2):
            size, pad = g.size[axis], g.padding[axis]
            lo, hi = (0, size + 2 * pad) if count_include_pad else (pad, pad + size)
            counts.append(_counts(g.kernel[axis], g.stride[axis], g.out[axis], lo, hi, x.device))
        divisor = (counts[0].view(-1, 1) * counts[1].view(1, -1)).to(x.dtype)
    return AvgPool2dFunction.apply(x, g, divisor)
