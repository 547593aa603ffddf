"""Convolution from scratch, in the order of lecture 02: the slide formula as loops, then im2col + one
matrix product, then the backward pass by hand.

Shapes: ``x: (N, C, H, W)``, ``weight: (K, C/groups, kh, kw)``, ``bias: (K,)``, output ``(N, K, H2, W2)``
with ``H2 = (H - F + 2P)/S + 1`` (floored, as PyTorch does) and ``F = D*(kh - 1) + 1``.

1. :func:`conv2d_naive` loops over every output value and every kernel offset, exactly like
   ``y[l, i, j] = b[l] + sum_d sum_a sum_b x[d, i*s + a, j*s + b] * W[l, d, a, b]``.
2. :func:`im2col` copies every receptive field into one column of a matrix; :func:`col2im` is its
   transpose: it folds columns back into an image, *adding* where receptive fields overlap.
3. :func:`conv2d`: with the columns, the whole convolution is one matrix product
   ``W (K, C*kh*kw) @ cols (C*kh*kw, H2*W2)`` per image (:meth:`Conv2dFunction.forward`).
4. The backward pass, by hand (:meth:`Conv2dFunction.backward`): the weight gradient is ``dL/dy @ cols^T``,
   the input gradient ``W^T @ dL/dy`` folded back by :func:`col2im` (one input pixel feeds several outputs,
   so its gradient is the sum over all of them).

``torch.nn.functional.conv2d`` (oneDNN / cuDNN) computes the same numbers; the tests compare against it.
The input checks come last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cnncourse.layers._checks import check_rank, check_same_device_dtype, pair
from cnncourse.shapes import ShapeError, conv_output_size

__all__ = ["conv2d_naive", "im2col", "col2im", "conv2d", "Conv2dFunction"]

IntOrPair = int | tuple[int, int]
Pair = tuple[int, int]


# ---------------------------------------------------------------------------------------------------
# 1. The formula as loops.


def conv2d_naive(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Convolution as explicit loops over output values and kernel offsets (forward only; slow).

    ``y[n, l, i, j] = b[l] + sum_d sum_a sum_b xp[n, d, i*s + a*D, j*s + b*D] * W[l, d, a, b]`` where ``xp`` is
    ``x`` zero-padded by ``P``, ``D`` the dilation and ``d`` runs over the input channels of filter ``l``'s
    group. Python loops run over the filter ``l``, the output row ``i`` and column ``j`` and the kernel
    offsets ``a`` and ``b``; only the innermost sum over input channels ``d`` is one dot product, done for
    all ``N`` images of the batch at once (``(N, C/groups) @ (C/groups,)``). That keeps the loops readable
    as the formula while the tests stay fast enough; gradients flow through it by plain autograd.

    Args:
        x: ``(N, C, H, W)``; weight: ``(K, C/groups, kh, kw)``; bias: ``(K,)`` or None;
        stride, padding, dilation: int or ``(h, w)``; groups: ``C`` and ``K`` must be divisible by it.

    Returns:
        ``(N, K, H2, W2)``.
    """
    stride_, padding_, dilation_, groups, (oh, ow) = _check_conv(
        x, weight, bias, stride, padding, dilation, groups, "conv2d_naive")
    (sh, sw), (ph, pw), (dh, dw) = stride_, padding_, dilation_
    k, cg, kh, kw = weight.shape
    filters_per_group = k // groups
    xp = F.pad(x, (pw, pw, ph, ph))
    y = x.new_empty((x.shape[0], k, oh, ow))
    for l in range(k):
        g = l // filters_per_group
        d = slice(g * cg, (g + 1) * cg)  # the input channels filter l sees
        for i in range(oh):
            for j in range(ow):
                acc = bias[l].expand(x.shape[0]) if bias is not None else x.new_zeros(x.shape[0])
                for a in range(kh):
                    for b in range(kw):
                        acc = acc + xp[:, d, i * sh + a * dh, j * sw + b * dw] @ weight[l, :, a, b]
                y[:, l, i, j] = acc
    return y


# ---------------------------------------------------------------------------------------------------
# 2. im2col: every receptive field a column; col2im: its transpose (adds where windows overlap).


def im2col(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Copy every (zero-padded) receptive field of ``x: (N, C, H, W)`` into a column.

    Returns:
        ``cols: (N, C*kh*kw, L)`` with ``L = H2*W2`` output positions; row ``(c*kh + a)*kw + b`` holds
        channel ``c`` at kernel offset ``(a, b)``, the same layout as ``torch.nn.functional.unfold``.
    """
    check_rank(x, (4,), "(N, C, H, W)", "im2col")
    kernel, stride_, padding_, dilation_ = _conv_geometry(kernel_size, stride, padding, dilation)
    n, c, h, w = x.shape
    out = _output_size((h, w), kernel, stride_, padding_, dilation_,
                       f"im2col of input {tuple(x.shape)} with kernel {kernel}")
    xp = F.pad(x, (padding_[1], padding_[1], padding_[0], padding_[0])) if any(padding_) else x
    cols = unfold_padded(xp, kernel, stride_, dilation_, out)
    return cols.reshape(n, c * kernel[0] * kernel[1], out[0] * out[1])


def col2im(
    cols: torch.Tensor,
    input_shape: tuple[int, ...] | torch.Size,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Fold columns ``(N, C*kh*kw, L)`` back into an image of ``input_shape = (N, C, H, W)``.

    Overlapping contributions are **added**, not overwritten: col2im is the transpose (adjoint) of
    im2col, which is what backpropagation needs. ``col2im(im2col(x))`` is therefore *not* ``x``: each
    pixel comes back multiplied by the number of windows that contain it.
    """
    check_rank(cols, (3,), "(N, C*kh*kw, L)", "col2im")
    if len(input_shape) != 4:
        raise ShapeError(f"col2im: input_shape must be (N, C, H, W), got {tuple(input_shape)}.")
    kernel, stride_, padding_, dilation_ = _conv_geometry(kernel_size, stride, padding, dilation)
    n, c, h, w = (int(v) for v in input_shape)
    oh, ow = _output_size((h, w), kernel, stride_, padding_, dilation_,
                          f"col2im to input shape {(n, c, h, w)} with kernel {kernel}")
    expected = (n, c * kernel[0] * kernel[1], oh * ow)
    if tuple(cols.shape) != expected:
        raise ShapeError(
            f"col2im: cols has shape {tuple(cols.shape)} but input shape {(n, c, h, w)} with kernel {kernel}, "
            f"stride {stride_}, padding {padding_}, dilation {dilation_} needs {expected}."
        )
    padded = (n, c, h + 2 * padding_[0], w + 2 * padding_[1])
    xp = fold_padded(cols.reshape(n, c, *kernel, oh, ow), padded, stride_, dilation_)
    return xp[:, :, padding_[0]:padding_[0] + h, padding_[1]:padding_[1] + w]


def unfold_padded(xp: torch.Tensor, kernel: Pair, stride: Pair, dilation: Pair, out: Pair) -> torch.Tensor:
    """im2col on an already padded ``xp: (N, C, Hp, Wp)``: returns ``(N, C, kh, kw, H2, W2)`` (a copy).

    ``cols[n, c, a, b, i, j] = xp[n, c, i*sh + a*dh, j*sw + b*dw]``: one strided slice per kernel offset.
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    n, c = xp.shape[:2]
    cols = xp.new_empty((n, c, kh, kw, oh, ow))
    for a in range(kh):
        for b in range(kw):
            cols[:, :, a, b] = xp[:, :, _window(a, dh, sh, oh), _window(b, dw, sw, ow)]
    return cols


def fold_padded(cols: torch.Tensor, padded_shape: tuple[int, ...], stride: Pair, dilation: Pair) -> torch.Tensor:
    """The adjoint of :func:`unfold_padded`: ``cols: (N, C, kh, kw, H2, W2)`` summed into ``padded_shape``."""
    _, _, kh, kw, oh, ow = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = cols.new_zeros(padded_shape)
    for a in range(kh):
        for b in range(kw):
            # "+=": where receptive fields overlap, a pixel collects the contributions of every window.
            xp[:, :, _window(a, dh, sh, oh), _window(b, dw, sw, ow)] += cols[:, :, a, b]
    return xp


def _window(offset: int, dilation: int, stride: int, count: int) -> slice:
    """Positions of a padded axis that kernel offset ``offset`` touches, for all ``count`` outputs at once.

    Output ``i`` reads position ``i*stride + offset*dilation``: a strided slice.
    """
    start = offset * dilation
    return slice(start, start + stride * (count - 1) + 1, stride)



# ---------------------------------------------------------------------------------------------------
# 3. Convolution as one matrix product per image, and 4. its backward pass by hand.


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution (cross-correlation, like ``torch.nn.functional.conv2d``) by im2col and one matmul.

    Args:
        x: ``(N, C, H, W)``; weight: ``(K, C/groups, kh, kw)``; bias: ``(K,)`` or None;
        stride, padding (zeros), dilation: int or ``(h, w)``; groups: ``groups=C`` is depthwise.

    Returns:
        ``(N, K, H2, W2)``, differentiable through :class:`Conv2dFunction`'s hand-written backward.
    """
    stride_, padding_, dilation_, groups, out = _check_conv(
        x, weight, bias, stride, padding, dilation, groups, "conv2d")
    return Conv2dFunction.apply(x, weight, bias, stride_, padding_, dilation_, groups, out)


class Conv2dFunction(torch.autograd.Function):
    """im2col convolution with a hand-written backward (no autograd of any torch convolution)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride: Pair, padding: Pair, dilation: Pair, groups: int, out: Pair):
        n, c, h, w = x.shape
        k, cg, kh, kw = weight.shape
        cols = im2col(x, (kh, kw), stride, padding, dilation)  # (N, C*kh*kw, L)
        # The whole convolution is one product per image: W (K, C*kh*kw) @ cols (C*kh*kw, L) -> (K, L).
        # With groups=g, filter block j (K/g filters) only sees row block j of cols (C/g channels): the same
        # product, done per block. groups=1 is one block.
        rows = cg * kh * kw  # one group's rows of cols
        cols_g = cols.view(n, groups, rows, -1)  # (N, g, rows, L)
        w_g = weight.reshape(groups, k // groups, rows)  # (g, K/g, rows)
        y = torch.matmul(w_g, cols_g)  # (N, g, K/g, L)
        y = y.reshape(n, k, *out)
        if bias is not None:
            y += bias.view(1, k, 1, 1)  # in place: y is our own fresh tensor
        ctx.save_for_backward(cols, weight)
        ctx.geometry = (tuple(x.shape), stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        cols, weight = ctx.saved_tensors
        x_shape, stride, padding, dilation, groups = ctx.geometry
        n = x_shape[0]
        k, cg, kh, kw = weight.shape
        rows = cg * kh * kw
        grad_g = grad_y.reshape(n, groups, k // groups, -1)  # (N, g, K/g, L)
        w_g = weight.reshape(groups, k // groups, rows)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # dL/dcols = W^T dL/dy; each column goes back to the pixels it was copied from (col2im adds).
            grad_cols = torch.matmul(w_g.transpose(1, 2), grad_g)  # (N, g, rows, L)
            grad_x = col2im(grad_cols.reshape(n, groups * rows, -1), x_shape, (kh, kw), stride, padding, dilation)
        if ctx.needs_input_grad[1]:
            # dL/dW = sum over images and positions of dL/dy times the receptive field: dL/dy @ cols^T.
            cols_g = cols.view(n, groups, rows, -1)
            grad_w = torch.matmul(grad_g, cols_g.transpose(2, 3)).sum(0).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 2, 3))  # each bias is added to every position of every image
        return grad_x, grad_w, grad_b, None, None, None, None, None


# ---------------------------------------------------------------------------------------------------
# Plumbing: input checks (groups included) and the output size.


def _check_conv(x, weight, bias, stride, padding, dilation, groups, where):
    """Validate a convolution call; returns ``(stride, padding, dilation, groups, (H2, W2))`` as pairs."""
    check_rank(x, (4,), "(N, C, H, W)", where)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ShapeError(f"{where}: weight must have shape (K, C/groups, kh, kw), got {shape}.")
    check_same_device_dtype(x, weight, "weight", where)
    check_same_device_dtype(x, bias, "bias", where)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ShapeError(f"{where}: groups must be a positive int, got {groups!r}.")
    k, cg, kh, kw = weight.shape
    c = x.shape[1]
    if k % groups:
        raise ShapeError(f"{where}: weight {tuple(weight.shape)} has {k} filters, not divisible by groups={groups}.")
    if c != cg * groups:
        raise ShapeError(
            f"{where}: input {tuple(x.shape)} has {c} channels but weight {tuple(weight.shape)} with "
            f"groups={groups} expects {cg} x {groups} = {cg * groups} input channels."
        )
    if bias is not None and tuple(bias.shape) != (k,):
        raise ShapeError(f"{where}: bias must have shape ({k},) for weight {tuple(weight.shape)}, "
                         f"got {tuple(bias.shape)}.")
    stride_, padding_, dilation_ = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    out = _output_size(tuple(x.shape[2:]), (kh, kw), stride_, padding_, dilation_,
                       f"{where} of input {tuple(x.shape)} with weight {tuple(weight.shape)}")
    return stride_, padding_, dilation_, groups, out


def _output_size(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, what: str) -> Pair:
    try:
        return conv_output_size(hw, kernel, stride, padding, dilation, strict=False)  # type: ignore[return-value]
    except ShapeError as err:
        raise ShapeError(f"{what}: {err}") from None


def _conv_geometry(kernel_size: IntOrPair, stride: IntOrPair, padding: IntOrPair, dilation: IntOrPair):
    return (pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding"),
            pair(dilation, "dilation"))
