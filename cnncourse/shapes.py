"""Shape and cost arithmetic for convolutional networks.

Pure functions that answer the questions every CNN lecture asks: what size comes out of a layer, how
many parameters it has, how much it costs, how far it sees. ``layer_table`` runs a real model once and
reports, per leaf module, what the formulas predict.

Sizes may be given as an ``int`` (square) or an ``(h, w)`` pair; a pair in gives a pair out.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "ShapeError",
    "conv_output_size",
    "pool_output_size",
    "conv_params",
    "conv_macs",
    "receptive_field",
    "LayerRow",
    "LayerTable",
    "layer_table",
]

IntOrPair = int | tuple[int, int]


class ShapeError(ValueError):
    """A layer configuration that cannot produce a valid output; the message says what to change."""


def _pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, bool) or not isinstance(value, (int, tuple, list)):
        raise ShapeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r} ({type(value).__name__}).")
    if isinstance(value, int):
        return (value, value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ShapeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}.")
    return (value[0], value[1])


def _check(value: int, name: str, minimum: int) -> None:
    if value < minimum:
        raise ShapeError(f"{name} must be >= {minimum}, got {value}.")


def _unpair(result: tuple[int, int], size: object) -> IntOrPair:
    return result[0] if isinstance(size, int) else result


def _extent(k: int, d: int) -> str:
    """``"9"``, or ``"9 (dilation 3 * (kernel_size 4 - 1) + 1)"`` when dilated: the extent is not the slider value."""
    span = d * (k - 1) + 1
    return str(span) if d == 1 else f"{span} (dilation {d} * (kernel_size {k} - 1) + 1)"


def _smaller_kernel(k: int, d: int, padded: int) -> str:
    """The settings that make a kernel fit ``padded`` cells, named as the caller passes them."""
    largest = (padded - 1) // d + 1  # the largest kernel_size whose extent d*(k-1)+1 is <= padded
    if d == 1:
        return f"kernel_size <= {largest}"
    dilation = (padded - 1) // (k - 1)  # k > 1 here: a 1-wide kernel always fits
    return f"kernel_size <= {largest} at dilation {d}" + (f", or dilation <= {dilation}" if dilation >= 1 else "")


def _conv_1d(size: int, k: int, s: int, p: int, d: int, strict: bool, axis: str) -> int:
    _check(size, f"size{axis}", 1)
    _check(k, f"kernel_size{axis}", 1)
    _check(s, f"stride{axis}", 1)
    _check(p, f"padding{axis}", 0)
    _check(d, f"dilation{axis}", 1)
    span = d * (k - 1) + 1  # the extent of a (dilated) kernel: F
    room = size + 2 * p - span  # W - F + 2P
    if room < 0:
        need = math.ceil((span - size) / 2)
        raise ShapeError(
            f"kernel{axis} of extent {_extent(k, d)} does not fit an input of size {size} padded by {p} "
            f"(padded size {size + 2 * p}). Use {_smaller_kernel(k, d, size + 2 * p)}, or padding >= {need}."
        )
    if strict and room % s:
        pads = [q for q in range(p + 1, p + s + 1) if (size + 2 * q - span) % s == 0][:1]
        strides = [t for t in range(1, room + 1) if room % t == 0 and t != s]
        hint = []
        if pads:
            q = pads[0]
            hint.append(f"padding={q} (gives {(size + 2 * q - span) // s + 1})")
        if strides:
            hint.append("stride in " + str(strides) + f" (stride=1 gives {room + 1})")
        sizes = f"an input of size {size - room % s} or {size + s - room % s}"
        hint.append(sizes)
        raise ShapeError(
            f"(W - F + 2P)/S + 1 = ({size} - {span} + 2*{p})/{s} + 1 = {room / s + 1:g} is not an integer"
            f"{' (' + axis.strip('[]') + ')' if axis else ''}: the kernel does not tile the input. "
            f"Try {', or '.join(hint)}; or pass strict=False to floor like PyTorch (gives {room // s + 1})."
        )
    return room // s + 1


def conv_output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    *,
    strict: bool = True,
) -> IntOrPair:
    """Spatial output size of a convolution: ``(W - F + 2P)/S + 1`` with ``F = D*(K-1) + 1``.

    Args:
        size: input height/width ``W`` (int, or an ``(h, w)`` pair).
        kernel_size, stride, padding, dilation: as for ``torch.nn.Conv2d``.
        strict: if True (default) a non-integer result raises :class:`ShapeError` whose message
            suggests paddings or strides that fit; if False, floor like PyTorch does.

    Returns:
        The output size, an int for an int ``size`` and a pair for a pair.

    >>> conv_output_size(32, 5)
    28
    >>> conv_output_size((7, 7), 3, stride=2)
    (3, 3)
    """
    sizes = _pair(size, "size")
    ks, ss, ps, ds = (_pair(v, n) for v, n in
                      ((kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    axes = ("", "") if isinstance(size, int) else ("[h]", "[w]")
    out = tuple(_conv_1d(sizes[i], ks[i], ss[i], ps[i], ds[i], strict, axes[i]) for i in range(2))
    return _unpair(out, size)  # type: ignore[arg-type]


def _pool_1d(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool, axis: str) -> int:
    _check(size, f"size{axis}", 1)
    _check(k, f"kernel_size{axis}", 1)
    _check(s, f"stride{axis}", 1)
    _check(p, f"padding{axis}", 0)
    _check(d, f"dilation{axis}", 1)
    if 2 * p > k:
        raise ShapeError(
            f"padding{axis}={p} is more than half the kernel size {k}: a pooling window could see only "
            f"padding. Use padding <= {k // 2}."
        )
    span = d * (k - 1) + 1
    room = size + 2 * p - span
    # ceil mode keeps a last, partial window: it may overhang the padded input by up to stride - 1
    out = (room + (s - 1 if ceil_mode else 0)) // s + 1
    if out < 1:
        raise ShapeError(
            f"pooling window{axis} of extent {_extent(k, d)} does not fit an input of size {size} padded by {p}"
            f"{' (even in ceil mode)' if ceil_mode else ''}. "
            f"Use {_smaller_kernel(k, d, size + 2 * p)}, or a larger input."
        )
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window would start in the right padding only: PyTorch drops it
    return out


def pool_output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    *,
    ceil_mode: bool = False,
) -> IntOrPair:
    """Spatial output size of max/average pooling, exactly as ``torch.nn.MaxPool2d`` computes it.

    ``stride`` defaults to ``kernel_size``. Pooling floors by default; ``ceil_mode=True`` rounds up
    (NiN and GoogLeNet's overlapping 3x3/2 pools) but never starts a window in the right padding.

    >>> pool_output_size(4, 2)
    2
    >>> pool_output_size(55, 3, 2)
    27
    """
    sizes = _pair(size, "size")
    ks = _pair(kernel_size, "kernel_size")
    ss = ks if stride is None else _pair(stride, "stride")
    ps, ds = _pair(padding, "padding"), _pair(dilation, "dilation")
    axes = ("", "") if isinstance(size, int) else ("[h]", "[w]")
    out = tuple(_pool_1d(sizes[i], ks[i], ss[i], ps[i], ds[i], ceil_mode, axes[i]) for i in range(2))
    return _unpair(out, size)  # type: ignore[arg-type]


def _channels(in_channels: int, out_channels: int, groups: int) -> None:
    for value, name in ((in_channels, "in_channels"), (out_channels, "out_channels"), (groups, "groups")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeError(f"{name} must be an int, got {value!r}.")
        _check(value, name, 1)
    if in_channels % groups or out_channels % groups:
        raise ShapeError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}; "
            f"use a common divisor such as groups={math.gcd(in_channels, out_channels)}."
        )


def conv_params(
    in_channels: int, out_channels: int, kernel_size: IntOrPair, *, bias: bool = True, groups: int = 1
) -> int:
    """Learnable parameters of a convolution: ``F*F*D1*K + K`` (weights plus one bias per filter).

    With ``groups=g`` each filter sees only ``D1/g`` input channels (``groups=D1`` is depthwise).

    >>> conv_params(3, 96, 11)  # AlexNet conv1
    34944
    """
    _channels(in_channels, out_channels, groups)
    kh, kw = _pair(kernel_size, "kernel_size")
    _check(min(kh, kw), "kernel_size", 1)
    return out_channels * (in_channels // groups) * kh * kw + (out_channels if bias else 0)


def conv_macs(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    output_size: IntOrPair,
    *,
    groups: int = 1,
    batch: int = 1,
) -> int:
    """Multiply-accumulates (MACs) of one convolution layer producing ``output_size`` (per ``batch``).

    Each of the ``K * H2 * W2`` outputs takes ``F*F*D1/groups`` multiply-adds; bias additions are not
    counted (as ``torch.utils.flop_counter`` does not count them). FLOPs = 2 x MACs: one multiply and one
    add. Slides and papers often call MACs "FLOPs" (e.g. "VGG-16 needs 15.5 GFLOPs" is 15.5 G MACs), so
    check which one a number means before comparing.

    >>> conv_macs(3, 64, 3, 224)  # VGG-16 conv1_1
    86704128
    """
    _channels(in_channels, out_channels, groups)
    kh, kw = _pair(kernel_size, "kernel_size")
    oh, ow = _pair(output_size, "output_size")
    _check(min(kh, kw), "kernel_size", 1)
    _check(min(oh, ow), "output_size", 1)
    _check(batch, "batch", 1)
    return batch * out_channels * oh * ow * (in_channels // groups) * kh * kw


def receptive_field(layers: Iterable[Sequence[int]]) -> int:
    """Receptive field (in input pixels, along one axis) of a stack of layers.

    Args:
        layers: ``(kernel, stride)`` or ``(kernel, stride, dilation)`` per layer, input first.
            Pooling layers count too: a 2x2/2 pool is ``(2, 2)``.

    Each layer widens the field by ``dilation * (kernel - 1)`` times the product of the strides below it.

    >>> receptive_field([(3, 1)] * 3)  # three 3x3 convs see as far as one 7x7
    7
    """
    field_, jump = 1, 1
    for i, layer in enumerate(layers):
        if isinstance(layer, (str, bytes)) or not isinstance(layer, Sequence) or len(layer) not in (2, 3):
            raise ShapeError(f"layer {i} must be (kernel, stride) or (kernel, stride, dilation), got {layer!r}.")
        k, s, d = (*layer, 1) if len(layer) == 2 else layer
        for value, name in ((k, "kernel"), (s, "stride"), (d, "dilation")):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ShapeError(f"layer {i}: {name} must be an int, got {value!r}.")
            _check(value, f"layer {i} {name}", 1)
        field_ += d * (k - 1) * jump
        jump *= s
    return field_


# ---------------------------------------------------------------------------------------------------
# layer_table: run the model once and measure every leaf module.


@dataclass
class LayerRow:
    """One leaf module's call: what it produced and what it costs (for the whole input batch)."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    weight_params: int
    bias_params: int
    activations: int  # elements of the output tensor
    bytes: int  # bytes of the output tensor
    macs: int  # multiply-accumulates measured by torch.utils.flop_counter (FLOPs / 2)
    aliases_input: bool = False  # in-place op or view: its output shares memory with its input

    @property
    def params(self) -> int:
        return self.weight_params + self.bias_params


@dataclass
class LayerTable:
    """Per-layer shapes, parameters, activation memory and MACs of one forward pass.

    ``rows[0]`` is the input. Totals count each tensor's memory once: rows whose output aliases their
    input (``ReLU(inplace=True)``, eval-mode ``Dropout``, ``Flatten`` views) are shown but not added.
    """

    rows: list[LayerRow]
    total_params: int  # every parameter of the model, counted once
    input_size: tuple[int, ...]
    columns: tuple[str, ...] = field(
        default=("name", "type", "output_shape", "weights", "biases", "activations", "bytes", "MACs"), repr=False
    )

    @property
    def total_activations(self) -> int:
        return sum(r.activations for r in self.rows if not r.aliases_input)

    @property
    def total_bytes(self) -> int:
        return sum(r.bytes for r in self.rows if not r.aliases_input)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    def __getitem__(self, name: str) -> LayerRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no layer named {name!r}; names are {[r.name for r in self.rows]}")

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def _cells(self) -> list[list[str]]:
        out = []
        for r in self.rows:
            act = f"{r.activations:,}" + (" (shared)" if r.aliases_input else "")
            out.append([r.name, r.type, str(tuple(r.output_shape)), f"{r.weight_params:,}", f"{r.bias_params:,}",
                        act, _human_bytes(r.bytes), f"{r.macs:,}"])
        return out

    def _total_cells(self) -> list[str]:
        weights = sum(r.weight_params for r in self.rows)
        biases = sum(r.bias_params for r in self.rows)
        return ["total", "", "", f"{weights:,}", f"{biases:,}", f"{self.total_activations:,}",
                _human_bytes(self.total_bytes), f"{self.total_macs:,}"]

    def __str__(self) -> str:
        body = [list(self.columns), *self._cells(), self._total_cells()]
        widths = [max(len(row[i]) for row in body) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in body]
        rule = "-" * len(lines[0])
        lines.insert(1, rule)
        lines.insert(-1, rule)
        lines.append(f"parameters: {self.total_params:,}   forward activations: {_human_bytes(self.total_bytes)}"
                     f"   MACs: {self.total_macs:,} (FLOPs = 2 x MACs)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                       for cells in self._cells())
        total = "".join(f"<th>{html.escape(c)}</th>" for c in self._total_cells())
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody><tfoot><tr>{total}</tr></tfoot>"
                f"</table><p>parameters: {self.total_params:,}; forward activations: "
                f"{_human_bytes(self.total_bytes)}; MACs: {self.total_macs:,} (FLOPs = 2 x MACs)</p>")

    def __repr__(self) -> str:
        return str(self)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` is ``b`` or a view of the same memory (in-place ops, views)."""
    if a.is_meta:  # meta tensors have no memory to compare: the same tensor, or views of one base
        return a is b or a._base is b or (b._base is not None and a._base is b._base)
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def layer_table(model: nn.Module, input_size: Sequence[int], *, device: str | torch.device = "cpu") -> LayerTable:
    """Run ``model`` once on zeros of shape ``input_size`` and tabulate every leaf module call.

    Args:
        model: any ``nn.Module``; it is run in eval mode under ``torch.no_grad`` on copies of its parameters
            and buffers on ``device``: the model stays on its device, and every submodule gets its own
            train/eval mode back.
        input_size: the whole input shape including the batch, e.g. ``(1, 3, 224, 224)``.
        device: where to run it; ``"meta"`` measures shapes, parameters and MACs without allocating memory
            (e.g. for a large model).

    Returns:
        A :class:`LayerTable` whose rows hold, per call of a leaf module: name, type, output shape, weight
        and bias parameters, output elements and bytes, and MACs counted by ``torch.utils.flop_counter``.
    """
    if not isinstance(model, nn.Module):
        raise ShapeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if (isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence) or len(input_size) < 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_size)):
        raise ShapeError(
            f"input_size must be the whole input shape with the batch, e.g. (1, 3, 224, 224); got {input_size!r}."
        )
    names = {m: n for n, m in model.named_modules()}
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    x = torch.zeros(tuple(input_size), device=device)
    rows = [LayerRow("input", "Tensor", tuple(x.shape), 0, 0, x.numel(), x.numel() * x.element_size(), 0)]
    calls: dict[nn.Module, int] = {}
    state: dict[str, object] = {}

    def pre_hook(module: nn.Module, args: tuple) -> None:
        # A fresh counter per call: only this leaf's own ops are counted.
        counter = FlopCounterMode(display=False)
        counter.__enter__()
        state["counter"] = counter
        state["input"] = _first_tensor(args)

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        counter: FlopCounterMode = state.pop("counter")  # type: ignore[assignment]
        counter.__exit__(None, None, None)
        out = _first_tensor(output)
        inp = state.pop("input")
        calls[module] = calls.get(module, 0) + 1
        name = names[module] or type(module).__name__
        if calls[module] > 1:
            name = f"{name}#{calls[module]}"
        weight = sum(p.numel() for n, p in module.named_parameters(recurse=False) if n != "bias")
        bias = sum(p.numel() for n, p in module.named_parameters(recurse=False) if n == "bias")
        if calls[module] > 1:
            weight = bias = 0  # shared parameters are counted at their first use only
        shape = tuple(out.shape) if out is not None else ()
        numel = out.numel() if out is not None else 0
        size = numel * out.element_size() if out is not None else 0
        aliased = out is not None and isinstance(inp, torch.Tensor) and _shares_memory(out, inp)
        rows.append(LayerRow(name, type(module).__name__, shape, weight, bias, numel, size,
                             counter.get_total_flops() // 2, aliased))

    handles = []
    for m in leaves:
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(hook))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            # The model itself is not moved: it runs on copies of its parameters and buffers on `device`
            # (on "meta" those hold no data), so it stays where it is, whatever that device.
            on_device = {n: t.to(device) for n, t in (*model.named_parameters(), *model.named_buffers())}
            torch.func.functional_call(model, on_device, (x,))
    except RuntimeError as err:
        raise ShapeError(f"model cannot run on an input of shape {tuple(input_size)}: {err}") from err
    finally:
        leftover = state.pop("counter", None)
        if leftover is not None:  # the model failed inside a leaf: leave the dispatch mode cleanly
            leftover.__exit__(None, None, None)  # type: ignore[attr-defined]
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return LayerTable(rows, sum(p.numel() for p in model.parameters()), tuple(input_size))
