"""Interactive explorers for the lectures: move a slider, see the figure change.

Each explorer is a plain ``draw_*`` function that returns a figure (what tests and headless runs call) and
a ``*_explorer()`` that wraps it in ipywidgets (imported only there):

* :func:`draw_conv` / :func:`conv_explorer`: input size, kernel, stride, padding, dilation -> the window on
  the padded grid, the output grid and its size from :func:`cnncourse.shapes.conv_output_size` (or the
  :class:`~cnncourse.shapes.ShapeError` text when the setting does not tile the input);
* :func:`draw_filter` / :func:`filter_explorer`: classic filters on a photo;
* :func:`draw_init` / :func:`init_explorer`: activations and gradients per layer of a deep MLP per init scheme;
* :func:`draw_batchnorm` / :func:`batchnorm_explorer`: batch norm in train and eval mode, per batch size.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections import OrderedDict
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from cnncourse.filters import FILTERS, classic_filter, filter_image, load_photo
from cnncourse.shapes import ShapeError, conv_output_size
from cnncourse.viz import activation_stats, new_figure, plot_activation_stats

__all__ = [
    "draw_conv",
    "conv_explorer",
    "draw_filter",
    "filter_explorer",
    "INIT_SCHEMES",
    "draw_init",
    "init_explorer",
    "draw_batchnorm",
    "batchnorm_explorer",
    "conv_output_text",
]

FIRST, SECOND = "tab:blue", "tab:orange"  # the first output position and its right neighbour


# ---------------------------------------------------------------------------------------------------
# Convolution geometry.


def conv_output_text(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> str:
    """One line for the explorer's label: ``"output 3 x 3"``, or ``"invalid: <ShapeError text>"``."""
    try:
        out = conv_output_size(size, kernel, stride, padding, dilation)
    except ShapeError as err:
        return f"invalid: {err}"
    return f"output {out} x {out}"


def _int_args(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an int, got {v!r}.")


def _taps(ax, row: int, col: int, kernel: int, dilation: int, color: str) -> None:
    """Shade the kernel's taps of the window whose top-left corner is (row, col), and outline its extent."""
    span = dilation * (kernel - 1) + 1
    for a in range(kernel):
        for b in range(kernel):
            ax.add_patch(Rectangle((col + b * dilation - 0.5, row + a * dilation - 0.5), 1, 1, color=color, alpha=0.45))
    ax.add_patch(Rectangle((col - 0.5, row - 0.5), span, span, fill=False, edgecolor=color, linewidth=2.5))


def _grid_axes(ax, n: int) -> None:
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xticks([])  # no major ticks: they would hide the minor ones the cell borders are drawn on
    ax.set_yticks([])
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="0.3", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_aspect("equal")


def draw_conv(size: int = 7, kernel: int = 3, stride: int = 1, padding: int = 0, dilation: int = 1) -> Figure:
    """The convolution's geometry: the padded input with two windows, and the output grid with its size.

    Left: the ``size x size`` input (white) inside its zero padding (grey); blue cells are the kernel taps of
    the first output value, orange those of the next one to the right (``stride`` cells further). Right: the
    output grid, sized by :func:`cnncourse.shapes.conv_output_size` (the slide rule
    ``(W - F + 2P)/S + 1`` with the dilated extent ``F = D(K - 1) + 1``). A setting that does not tile the
    input draws the input and prints the :class:`~cnncourse.shapes.ShapeError` text instead of the output.
    """
    _int_args(size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    try:
        out = conv_output_size(size, kernel, stride, padding, dilation)
        error = None
    except ShapeError as err:
        out, error = None, str(err)
    fig, axes = new_figure(1, 2, panel=(3.4, 3.6))
    left, right = axes[0]
    padded = size + 2 * padding
    if size >= 1 and padding >= 0:
        cells = np.full((padded, padded), 0.82)
        cells[padding:padding + size, padding:padding + size] = 1.0
        left.imshow(cells, cmap="gray", vmin=0, vmax=1)
        _grid_axes(left, padded)
        span = dilation * (kernel - 1) + 1 if kernel >= 1 and dilation >= 1 else padded + 1
        if span <= padded:
            _taps(left, 0, 0, kernel, dilation, FIRST)
            if stride >= 1 and stride + span <= padded:
                _taps(left, 0, stride, kernel, dilation, SECOND)
    left.set_title(f"input {size}x{size}, padding {padding}\n(padded {padded}x{padded})", fontsize=10)
    if out is not None:
        right.imshow(np.ones((out, out)), cmap="gray", vmin=0, vmax=1)
        _grid_axes(right, out)
        right.add_patch(Rectangle((-0.5, -0.5), 1, 1, color=FIRST, alpha=0.6))
        if out > 1:
            right.add_patch(Rectangle((0.5, -0.5), 1, 1, color=SECOND, alpha=0.6))
        span = dilation * (kernel - 1) + 1
        right.set_title(f"output {out}x{out}", fontsize=12, fontweight="bold")
        right.set_xlabel(f"(W - F + 2P)/S + 1\n= ({size} - {span} + 2*{padding})/{stride} + 1 = {out}", fontsize=9)
    else:
        right.set_axis_off()
        right.set_title("no valid output", fontsize=12, fontweight="bold", color="tab:red")
        right.text(0.0, 1.0, "ShapeError:\n" + "\n".join(textwrap.wrap(error, 42)), transform=right.transAxes,
                   va="top", ha="left", fontsize=8, color="tab:red", family="monospace")
    fig.suptitle(f"kernel {kernel}x{kernel}, stride {stride}, padding {padding}, dilation {dilation}", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Classic filters on a photo.

SIGNED = ("diff_x", "diff_y", "sobel_x", "sobel_y")  # their outputs are signed: shown on a diverging map
SIZED = ("box", "gaussian", "sharpen")  # the filters whose window size is a setting (the others have fixed shapes)
SIGNED_PERCENTILE = 99.0  # the colour limit of a signed response: a few strong edges must not wash out the rest


def _photo(image: torch.Tensor | str) -> torch.Tensor:
    if isinstance(image, str):
        return load_photo(image, size=160)
    if not isinstance(image, torch.Tensor) or image.dim() not in (2, 3):
        raise ValueError("image must be a photo name (see cnncourse.filters.PHOTOS) or a float tensor (C, H, W) / "
                         "(H, W), e.g. cnncourse.filters.load_photo('chelsea').")
    return image if image.dim() == 3 else image.unsqueeze(0)


def draw_filter(image: torch.Tensor | str, name: str = "gaussian", sigma: float = 1.0, size: int | None = None
                ) -> Figure:
    """A classic filter, the kernel and what it does to ``image``: original, kernel (values), filtered.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` float in [0, 1], or a photo name (``"chelsea"``).
        name: one of :data:`cnncourse.filters.FILTERS`.
        sigma: the Gaussian's standard deviation (its window is ``2*ceil(3*sigma) + 1`` wide unless ``size``).
        size: window side of box, Gaussian and sharpen filters (odd; default 3, or the Gaussian's 3-sigma window).

    Differences and Sobel filters respond with signed values: they are applied to the grey image and shown
    red (brighter to the right/below), blue (darker) and white (flat), on a symmetric colour scale up to the
    :data:`SIGNED_PERCENTILE` th percentile of ``|response|`` (the strongest edges saturate; scaled to the
    maximum, a few of them would leave the rest of the picture almost white).
    """
    x = _photo(image)
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}.")
    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1 if name == "gaussian" else 3
    kernel = classic_filter(name, size if name in SIZED else 3, sigma)
    fig, axes = new_figure(1, 3, panel=(3.2, 3.0), width_ratios=[1.3, 0.8, 1.3])
    shown = x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()
    axes[0, 0].imshow(shown, cmap=None if x.shape[0] == 3 else "gray")
    axes[0, 0].set_title("input")
    vmax = float(kernel.abs().max())
    axes[0, 1].imshow(kernel.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    if kernel.numel() <= 25:
        for (i, j), v in np.ndenumerate(kernel.numpy()):
            axes[0, 1].text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8)
    axes[0, 1].set_title(f"{name} {tuple(kernel.shape)[0]}x{tuple(kernel.shape)[1]}"
                         + (f", sigma {sigma:g}" if name == "gaussian" else ""))
    if name in SIGNED:
        response = filter_image(x.mean(0), kernel).numpy()
        limit = float(np.percentile(np.abs(response), SIGNED_PERCENTILE)) or float(np.abs(response).max()) or 1.0
        axes[0, 2].imshow(response, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        out = filter_image(x, kernel).clamp(0, 1)
        axes[0, 2].imshow(out.permute(1, 2, 0).numpy() if x.shape[0] == 3 else out[0].numpy(),
                          cmap=None if x.shape[0] == 3 else "gray")
    axes[0, 2].set_title("filtered")
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Weight initialisation in a deep MLP.

INIT_SCHEMES = ("zero", "small_normal", "standard", "xavier_normal", "xavier_uniform", "he_normal")
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def _init_(weight: torch.Tensor, scheme: str, gain: float, activation: str) -> None:
    if scheme == "zero":
        nn.init.zeros_(weight)
    elif scheme == "small_normal":
        nn.init.normal_(weight, std=0.01 * gain)
    elif scheme == "standard":  # U[-1/sqrt(fan_in), 1/sqrt(fan_in)], lecture 04's "standard" initialization
        bound = gain / math.sqrt(weight.shape[1])
        nn.init.uniform_(weight, -bound, bound)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain)
    else:  # he_normal: std = sqrt(2 / fan_in) for ReLU (the gain of the activation over sqrt(fan_in))
        nn.init.kaiming_normal_(weight, nonlinearity="relu" if activation == "relu" else activation)
        weight.mul_(gain)


def draw_init(
    scheme: str = "xavier_normal", gain: float = 1.0, depth: int = 10, activation: str = "tanh", width: int = 256
) -> Figure:
    """Histograms of every layer's activations (top row) and gradients (bottom row) in a deep MLP.

    The network is ``depth`` blocks of ``Linear(width, width)`` + ``activation`` and a ``Linear(width, 10)``
    head, weights drawn by ``scheme`` (one of :data:`INIT_SCHEMES`, scaled by ``gain``), biases zero, fed 256
    standard-normal inputs with random labels (seeded: the same figure every time; the global random state is
    left alone). Panels share one x range per row, so activations that shrink (or saturate) and gradients that
    vanish show layer by layer.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}.")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}.")
    for value, what, lo in ((depth, "depth", 1), (width, "width", 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{what} must be an int >= {lo}, got {value!r}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        blocks = OrderedDict()
        for i in range(1, depth + 1):
            blocks[f"fc{i}"] = nn.Linear(width, width)
            blocks[f"layer {i}"] = ACTIVATIONS[activation]()
            _init_(blocks[f"fc{i}"].weight.data, scheme, gain, activation)
            nn.init.zeros_(blocks[f"fc{i}"].bias)
        blocks["head"] = nn.Linear(width, 10)  # ten classes: the loss the gradients flow back from
        _init_(blocks["head"].weight.data, scheme, gain, activation)
        nn.init.zeros_(blocks["head"].bias)
        model = nn.Sequential(blocks)
        x = torch.randn(256, width)
        y = torch.randint(0, 10, (256,))
    stats = activation_stats(model, x, y, layer_types=(type(blocks["layer 1"]),))
    return plot_activation_stats(stats, "both", bins=40,
                                 title=f"{scheme} (gain {gain:g}), {activation}, depth {depth}, width {width}")


# ---------------------------------------------------------------------------------------------------
# Batch normalisation: train vs eval mode, and the batch size.

BN_MEAN, BN_STD = 3.0, 2.0  # the feature's true statistics


def draw_batchnorm(batch_size: int = 32, mode: str = "train") -> Figure:
    """What batch norm does with one feature ``x ~ N(3, 2^2)`` for a given batch size, in train or eval mode.

    Left: the means of 200 batches, the statistics train mode normalises with: they scatter around the true
    mean by about ``sigma/sqrt(batch_size)``; the running mean that eval mode uses is marked. Middle: one fixed
    input (x = 5) put into 100 different batches: in train mode its output depends on its batch mates, in eval
    mode it is always the same. Right: one batch's outputs with their mean and standard deviation.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
    g = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm1d(1, affine=False)
    batches = torch.randn(200, batch_size, 1, generator=g) * BN_STD + BN_MEAN
    fig, axes = new_figure(1, 3, panel=(3.2, 2.8))
    means = batches.mean(1).flatten()
    if batch_size > 1:
        with torch.no_grad():
            for batch in batches:  # train mode: running statistics follow the batches (momentum 0.1)
                bn(batch)
    else:  # one sample has no batch variance: train mode cannot run, eval keeps the initial statistics
        bn.running_mean.fill_(BN_MEAN)
        bn.running_var.fill_(BN_STD**2)
    ax = axes[0, 0]
    ax.hist(means.numpy(), bins=30, range=(BN_MEAN - 3 * BN_STD, BN_MEAN + 3 * BN_STD), color="0.6")
    # the true mean is drawn over the (wider) running mean: at B = 1 the two are the same line and both show
    ax.axvline(float(bn.running_mean[0]), color="tab:green", linewidth=3.5, label="running mean")
    ax.axvline(BN_MEAN, color="k", linestyle="--", linewidth=1.2, label="true mean")
    ax.set_title(f"batch means, B={batch_size}\nspread {float(means.std()):.2f} "
                 f"(sigma/sqrt(B) = {BN_STD / math.sqrt(batch_size):.2f})", fontsize=9)
    ax.legend(fontsize=7)
    bn.train(mode == "train")
    probe = torch.tensor([[5.0]])
    mates = torch.randn(100, max(batch_size - 1, 0), 1, generator=g) * BN_STD + BN_MEAN
    try:
        with torch.no_grad():
            outs = torch.stack([bn(torch.cat([probe, m]))[0, 0] for m in mates])
            batch_out = bn(batches[0])[:, 0]
        error = None
    except ValueError as err:
        outs = batch_out = None
        error = str(err)
    ax = axes[0, 1]
    if error is None:
        ax.hist(outs.numpy(), bins=30, range=(-3, 3), color="tab:purple")
        ax.set_title(f"output for x = 5 in 100 batches ({mode})\nstd {float(outs.std()):.2f}", fontsize=9)
        ax.axvline((5.0 - BN_MEAN) / BN_STD, color="k", linestyle="--", label="(5 - 3) / 2")
        ax.legend(fontsize=7)
        ax = axes[0, 2]
        ax.hist(batch_out.numpy(), bins=20, range=(-4, 4), color="tab:blue")
        ax.set_title(f"one batch's outputs ({mode})\nmean {float(batch_out.mean()):.2f}, "
                     f"std {float(batch_out.std(unbiased=False)):.2f}", fontsize=9)
    else:
        for ax in axes[0, 1:]:
            ax.set_axis_off()
        axes[0, 1].text(0.0, 0.9, "ValueError:\n" + "\n".join(textwrap.wrap(error, 40)),
                        transform=axes[0, 1].transAxes, va="top", fontsize=8, color="tab:red", family="monospace")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# The widgets (ipywidgets imported only here).


def _toggle_layout():
    """A toggle as wide as its buttons, its label level with them (in JupyterLab it sits above them otherwise)."""
    import ipywidgets as widgets

    return widgets.Layout(display="flex", width="auto", align_items="center")


def _explorer(name: str, draw: Callable[..., Figure], controls: dict, header=None,
              on_change: Callable | None = None, rows: list[list[str]] | None = None):
    """Controls + an Output that re-renders ``draw(**values)`` whenever a control moves.

    ``rows`` groups the controls' names into rows (default: three per row); the box has the CSS classes
    ``cnncourse-explorer`` and ``cnncourse-<name>-explorer``. The returned box's ``figure()`` draws the view its
    controls show now, as a new Matplotlib figure (the course site's static picture of an explorer's default view).
    """
    import ipywidgets as widgets
    from IPython.display import display

    def update(**values):
        if on_change is not None:
            on_change(values)
        fig = draw(**values)
        plt.close(fig)  # not left to the inline backend: the Output gets exactly this one picture
        display(fig)

    out = widgets.interactive_output(update, controls)
    names = list(controls)
    rows = rows or [names[i:i + 3] for i in range(0, len(names), 3)]
    boxes = [widgets.HBox([controls[n] for n in row]) for row in rows]
    box = widgets.VBox([*boxes, *([header] if header is not None else []), out])
    box.add_class("cnncourse-explorer")
    box.add_class(f"cnncourse-{name}-explorer")
    box.figure = lambda: draw(**{key: control.value for key, control in controls.items()})
    return box


def conv_explorer(size: int = 7, kernel: int = 3, stride: int = 1, padding: int = 0, dilation: int = 1):
    """Sliders for input size, kernel, stride, padding and dilation over :func:`draw_conv`.

    The label under the sliders (CSS class ``cnncourse-conv-output``) shows the output size, or ``invalid``
    with the :class:`~cnncourse.shapes.ShapeError` text.
    """
    import ipywidgets as widgets

    style = {"description_width": "70px"}
    controls = {
        "size": widgets.IntSlider(size, 1, 16, description="input size", style=style),
        "kernel": widgets.IntSlider(kernel, 1, 7, description="kernel", style=style),
        "stride": widgets.IntSlider(stride, 1, 4, description="stride", style=style),
        "padding": widgets.IntSlider(padding, 0, 3, description="padding", style=style),
        "dilation": widgets.IntSlider(dilation, 1, 3, description="dilation", style=style),
    }
    label = widgets.HTML()
    label.add_class("cnncourse-conv-output")

    def show_size(values):
        text = html.escape(conv_output_text(**values))
        label.value = (f"<span style='color:#c00'>{text}</span>" if text.startswith("invalid")
                       else f"<b>{text}</b>")

    return _explorer("conv", draw_conv, controls, label, show_size)


def filter_explorer(image: torch.Tensor | str = "chelsea"):
    """A filter menu, a Gaussian sigma and a window size over :func:`draw_filter` on ``image``.

    The size slider sets the window of box, Gaussian and sharpen (it starts at 7, the 3-sigma window of
    sigma 1); a control the chosen filter ignores is disabled (sigma but for the Gaussian, size for the
    fixed-shape differences and Sobel filters).
    """
    import ipywidgets as widgets

    x = _photo(image)
    controls = {
        "name": widgets.Dropdown(options=list(FILTERS), value="gaussian", description="filter"),
        "sigma": widgets.FloatSlider(1.0, min=0.3, max=4.0, step=0.1, description="sigma"),
        "size": widgets.IntSlider(7, 1, 15, step=2, description="size"),
    }

    def enable(values):
        controls["sigma"].disabled = values["name"] != "gaussian"
        controls["size"].disabled = values["name"] not in SIZED

    def draw(name, sigma, size):
        return draw_filter(x, name, sigma, size if name in SIZED else None)

    return _explorer("filter", draw, controls, on_change=enable)


def init_explorer():
    """Init scheme, gain, depth and activation over :func:`draw_init`."""
    import ipywidgets as widgets

    controls = {
        "scheme": widgets.Dropdown(options=list(INIT_SCHEMES), value="xavier_normal", description="scheme"),
        "activation": widgets.ToggleButtons(options=list(ACTIVATIONS), value="tanh", description="activation",
                                            style={"button_width": "76px"}, layout=_toggle_layout()),
        "gain": widgets.FloatSlider(1.0, min=0.25, max=3.0, step=0.25, description="gain"),
        "depth": widgets.IntSlider(6, 1, 10, description="depth"),
    }
    # two rows (menus, then sliders), the toggle as wide as its buttons: in the default 300 px a widget gets, and
    # three to a row, its label and buttons wrapped onto two lines
    return _explorer("init", draw_init, controls, rows=[["scheme", "activation"], ["gain", "depth"]])


def batchnorm_explorer():
    """Batch size and train/eval mode over :func:`draw_batchnorm`."""
    import ipywidgets as widgets

    controls = {
        "batch_size": widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64, 128, 256], value=32,
                                              description="batch size"),
        "mode": widgets.ToggleButtons(options=["train", "eval"], value="train", description="mode",
                                      style={"button_width": "76px"}, layout=_toggle_layout()),
    }
    return _explorer("batchnorm", draw_batchnorm, controls)
