"""Figures the lectures draw again and again: image grids, kernels, feature maps, per-layer histograms,
learning curves and learning-rate schedules; and pictures of ideas drawn with matplotlib patches (the
convolution volume, im2col, and the inception, residual, bottleneck, dense and inverted-residual blocks).

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``. In a notebook,
leave the figure as the cell's last expression or call ``plt.show()``: it is shown once either way
(see :class:`CourseFigure`). Nothing in the core (``shapes``, ``layers``, ``data``) imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnncourse.train.history import History

__all__ = [
    "CourseFigure",
    "new_figure",
    "show_images",
    "plot_kernels",
    "plot_feature_maps",
    "ActivationStats",
    "activation_stats",
    "plot_activation_stats",
    "plot_history",
    "lr_curve",
    "plot_lr_schedule",
    "draw_conv_volume",
    "draw_im2col",
    "BLOCKS",
    "draw_block",
]


class CourseFigure(Figure):
    """A pyplot figure that a notebook shows exactly once.

    Jupyter's inline backend shows every open pyplot figure at the end of a cell, and IPython shows a figure
    that is the cell's last expression: a plain figure returned by a function would appear twice. Whoever
    displays this one first (the cell's result, ``plt.show()``, or the backend at the end of the cell) draws
    it as a PNG and closes it in pyplot, so the backend does not show it again. Displaying it again later
    (``fig`` in another cell) draws it again.
    """

    def _ipython_display_(self) -> None:
        from IPython.core.pylabtools import print_figure
        from IPython.display import Image, display

        plt.close(self)  # shown here: pyplot (and so the inline backend) lets go of it
        png = print_figure(self, "png", bbox_inches="tight")
        if png is not None:
            display(Image(data=png))


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (3.0, 2.4), **kwargs):
    """``plt.subplots`` for the course: a :class:`CourseFigure` of ``nrows x ncols`` panels of ``panel`` inches.

    Returns ``(fig, axes)`` with ``axes`` always a 2-D numpy array.
    """
    kwargs.setdefault("figsize", (panel[0] * ncols, panel[1] * nrows))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, FigureClass=CourseFigure, **kwargs)
    return fig, axes


def _numpy(image: object) -> np.ndarray:
    if isinstance(image, torch.Tensor):  # uint8 stays uint8: matplotlib reads it as 0..255
        image = image.detach().cpu()
        return (image if image.dtype == torch.uint8 else image.float()).numpy()
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.float32)
    return array


def _as_hwc(image: object, index: int) -> np.ndarray:
    """One image as ``(H, W)`` (one channel) or ``(H, W, 3)``; accepts ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)``."""
    a = _numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3):
        return a
    raise ValueError(f"image {index} has shape {tuple(a.shape)}; expected (H, W), (1, H, W) or (3, H, W) "
                     f"(or (H, W, 3)). Show one channel of a multi-channel map with plot_feature_maps.")


def _image_list(images: object) -> list[np.ndarray]:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        batch = _numpy(images)
        if batch.ndim not in (3, 4):
            raise ValueError(f"images must be (N, C, H, W), (N, H, W) or a list of images, got shape "
                             f"{tuple(batch.shape)}; for one image pass [image].")
        items = list(batch)
    elif isinstance(images, Iterable):
        items = list(images)
    else:
        raise ValueError(f"images must be a tensor, an array or a list of images, got {type(images).__name__}.")
    if not items:
        raise ValueError("images is empty: nothing to show.")
    return [_as_hwc(im, i) for i, im in enumerate(items)]


def _grid(n: int, ncols: int) -> tuple[int, int]:
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}.")
    cols = min(ncols, n)
    return math.ceil(n / cols), cols


def _panels(n: int, ncols: int, size: float, aspect: float = 1.0):
    """A figure with exactly ``n`` image panels (unused grid cells removed), axes off."""
    rows, cols = _grid(n, ncols)
    fig, axes = new_figure(rows, cols, panel=(size, size * aspect))
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.remove()
    for ax in flat[:n]:
        ax.set_axis_off()
    return fig, list(flat[:n])


def show_images(
    images: object,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    cmap: str | None = None,
    size: float = 1.6,
    suptitle: str | None = None,
) -> Figure:
    """A grid of images, one panel each.

    Args:
        images: a tensor/array ``(N, C, H, W)`` or ``(N, H, W)``, or a list of ``(C, H, W)`` / ``(H, W)`` images
            (C = 1 or 3). Colour images are uint8 (0..255) or floats clipped to [0, 1], as matplotlib reads
            them; one-channel images are shown with ``cmap`` (default gray), scaled to their own range.
        titles: one string per image.
        ncols: panels per row; size: panel side in inches; suptitle: title over the grid.
    """
    items = _image_list(images)
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"got {len(titles)} titles for {len(items)} images; give one title per image.")
    fig, axes = _panels(len(items), ncols, size)
    for i, (ax, im) in enumerate(zip(axes, items, strict=True)):
        if im.ndim == 3:
            ax.imshow(np.clip(im, 0, 1) if im.dtype.kind == "f" else im)
        else:
            ax.imshow(im, cmap=cmap or "gray")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_kernels(weight: torch.Tensor, *, ncols: int = 8, title: str | None = None,
                 all_channels: bool = False) -> Figure:
    """Convolution kernels ``weight: (K, C, kh, kw)``, one panel per kernel.

    With ``C = 3`` each kernel is shown as a colour image (its values min-max scaled to [0, 1], as the
    AlexNet paper shows its first layer). Otherwise channel 0 of each kernel is shown on a diverging map
    (red positive, blue negative, white 0, one shared scale), or every channel (one row per kernel) when
    ``all_channels=True``.
    """
    w = _numpy(weight)
    if w.ndim != 4:
        raise ValueError(f"weight must be (K, C, kh, kw) like conv.weight, got shape {tuple(w.shape)}.")
    k, c = w.shape[:2]
    if c == 3 and not all_channels:
        fig, axes = _panels(k, ncols, 1.0)
        for ax, kernel in zip(axes, w, strict=True):
            lo, hi = kernel.min(), kernel.max()
            ax.imshow(np.moveaxis((kernel - lo) / (hi - lo + 1e-12), 0, -1))
    else:
        shown = w.reshape(k * c, *w.shape[2:]) if all_channels else w[:, 0]
        fig, axes = _panels(len(shown), c if all_channels else ncols, 1.0)
        vmax = float(np.abs(shown).max()) or 1.0
        for ax, kernel in zip(axes, shown, strict=True):
            ax.imshow(kernel, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_feature_maps(maps: torch.Tensor, *, ncols: int = 8, title: str | None = None) -> Figure:
    """The channels of one feature map ``maps: (C, H, W)`` or ``(1, C, H, W)``, one panel per channel."""
    m = _numpy(maps)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"maps must be (C, H, W) or (1, C, H, W) (one image's feature maps), got shape "
                         f"{tuple(_numpy(maps).shape)}; for a batch pass maps[i].")
    fig, axes = _panels(len(m), ncols, 1.4)
    for i, (ax, channel) in enumerate(zip(axes, m, strict=True)):
        ax.imshow(channel, cmap="viridis")
        ax.set_title(f"{i}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Per-layer activation and gradient statistics.

DEFAULT_LAYER_TYPES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Linear, nn.Conv2d)


@dataclass
class ActivationStats:
    """What each recorded layer produced on one batch, in forward order.

    ``activations[name]``: the layer's output (detached, on the CPU). ``gradients[name]``: the gradient of
    the mean cross-entropy with respect to that output (empty unless labels were given).
    """

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)


def activation_stats(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYER_TYPES,
) -> ActivationStats:
    """Run ``model`` on ``x`` once and record the output of every module of ``layer_types``.

    Args:
        model: run in its current mode (train/eval), on ``x``'s device.
        x: one batch, e.g. ``(N, C, H, W)``.
        y: labels ``(N,)``; when given, the gradients of the cross-entropy with respect to every recorded
            output are recorded too (by ``torch.autograd.grad``: the parameters' ``.grad`` is left alone).
        layer_types: which modules to record; keys are the modules' names in ``model.named_modules()``
            (``"name#2"`` for a second call of the same module).
    """
    names = {m: n for n, m in model.named_modules()}
    outputs: dict[str, torch.Tensor] = {}
    stats = ActivationStats()

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor):
            return
        name = names[module] or type(module).__name__
        key, i = name, 1
        while key in outputs:
            i += 1
            key = f"{name}#{i}"
        outputs[key] = output
        stats.activations[key] = output.detach().to("cpu", copy=True)  # now: an in-place op may change it later

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layer_types)]
    if not handles:
        raise ValueError(f"model has no module of types {[t.__name__ for t in layer_types]}; pass layer_types.")
    try:
        with torch.set_grad_enabled(y is not None):
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if y is not None:
        wanted = {k: t for k, t in outputs.items() if t.requires_grad}
        if wanted:
            loss = nn.functional.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, list(wanted.values()), allow_unused=True)
            for key, g in zip(wanted, grads, strict=True):
                stats.gradients[key] = (torch.zeros_like(wanted[key]) if g is None else g).detach().cpu()
    return stats


def plot_activation_stats(
    stats: ActivationStats | Mapping[str, torch.Tensor],
    which: str = "activations",
    *,
    bins: int = 60,
    title: str | None = None,
) -> Figure:
    """Histograms of each layer's values in one row of panels sharing one x range (so shrinking shows).

    Each panel's title gives the layer name and the standard deviation of all its values. When more than a
    quarter of a layer's values are exactly 0 (ReLU), the zeros are left out of its histogram and their share is
    given in the title. The shared range
    spans the central 99.8 % of one row's values (a few extreme values would squeeze everything else).

    Args:
        stats: an :class:`ActivationStats` or a mapping name -> tensor.
        which: ``"activations"``, ``"gradients"`` or ``"both"`` (two rows; of an :class:`ActivationStats`).
    """
    if which not in ("activations", "gradients", "both"):
        raise ValueError(f"which must be 'activations', 'gradients' or 'both', got {which!r}.")
    if not isinstance(stats, ActivationStats):
        if which != "activations":
            raise ValueError(f"which={which!r} needs an ActivationStats; a mapping is plotted as one row.")
        stats = ActivationStats(activations=dict(stats))
    kinds = ("activations", "gradients") if which == "both" else (which,)
    rows = [getattr(stats, kind) for kind in kinds]
    for kind, values in zip(kinds, rows, strict=True):
        if not values:
            hint = " (pass labels y to activation_stats to record gradients)" if kind == "gradients" else ""
            raise ValueError(f"no {kind} to plot{hint}.")
    fig, axes = new_figure(len(rows), max(len(v) for v in rows), panel=(1.7, 1.6))
    for kind, values, row in zip(kinds, rows, axes, strict=True):
        arrays = {k: _numpy(v).ravel() for k, v in values.items()}
        lo, hi = (float(q) for q in np.percentile(np.concatenate(list(arrays.values())), [0.1, 99.9]))
        if hi - lo < 1e-12:  # all equal (e.g. zero init): widen so the spike shows
            lo, hi = lo - 1.0, hi + 1.0
        for ax in row[len(arrays):]:
            ax.remove()
        for ax, (name, a) in zip(row, arrays.items(), strict=False):
            zeros = float((a == 0).mean())
            hide = 0.25 < zeros < 1.0  # ReLU's many exact zeros would flatten the rest: count them in the title
            ax.hist(a[a != 0] if hide else a, bins=bins, range=(lo, hi),
                    color="tab:blue" if kind == "activations" else "tab:red")
            ax.set_xlim(lo, hi)
            note = f", {zeros:.0%} = 0" if hide else ""
            ax.set_title(f"{name}\nstd {a.std():.2g}{note}", fontsize=8)
            ax.set_yticks([])
            ax.tick_params(axis="x", labelsize=7)
        if len(rows) > 1:
            row[0].set_ylabel(kind, fontsize=9)
    fig.suptitle(title or which)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Training curves and learning-rate schedules.

_METRICS = {"loss": ("train_loss", "val_loss", "loss"), "acc": ("train_acc", "val_acc", "accuracy")}


def plot_history(
    history: History | Mapping[str, History],
    *,
    metrics: Sequence[str] = ("loss", "acc"),
    title: str | None = None,
    log_scale: Sequence[str] = (),
) -> Figure:
    """Learning curves, one panel per metric: train solid, validation dashed, one colour per run.

    Args:
        history: one :class:`~cnncourse.train.History` or a mapping label -> History (several runs compared).
        metrics: any of ``"loss"``, ``"acc"``. A run stopped early gets a dotted line at its best epoch.
        log_scale: the metrics drawn on a log y axis, e.g. ``("loss",)`` when one run's spike would flatten
            every other curve on a linear axis.
    """
    runs = {"": history} if isinstance(history, History) else dict(history)
    if not runs or not all(isinstance(h, History) for h in runs.values()):
        raise ValueError("history must be a History or a non-empty mapping label -> History (what fit returns).")
    for m in metrics:
        if m not in _METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {list(_METRICS)}.")
    if isinstance(log_scale, str) or not set(log_scale) <= set(metrics):
        raise ValueError(f"log_scale must be a sequence of the plotted metrics {list(metrics)}, got {log_scale!r}.")
    fig, axes = new_figure(1, len(metrics), panel=(4.0, 2.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        train_key, val_key, label = _METRICS[metric]
        for i, (name, h) in enumerate(runs.items()):
            color = colors[i % len(colors)]
            prefix = f"{name} " if name else ""
            train, val = getattr(h, train_key), getattr(h, val_key)
            ax.plot(range(1, len(train) + 1), train, color=color, label=f"{prefix}train")
            if val:
                ax.plot(range(1, len(val) + 1), val, color=color, linestyle="--", label=f"{prefix}val")
            if h.stopped_early and h.best_epoch is not None:
                ax.axvline(h.best_epoch + 1, color=color, linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{label} (log scale)" if metric in log_scale else label)
        if metric in log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both" if metric in log_scale else "major")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def lr_curve(
    make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int, base_lr: float = 0.1
) -> list[float]:
    """The learning rate a scheduler gives at each of ``steps`` steps, starting from ``base_lr``.

    ``make_scheduler`` gets an SGD optimizer over one dummy parameter, e.g.
    ``lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau follows a validation metric, so it has no fixed curve; plot fit()'s "
                         "History.lr instead.")
    if not hasattr(scheduler, "step"):
        raise ValueError(f"make_scheduler must return a learning-rate scheduler, got {type(scheduler).__name__}.")
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def plot_lr_schedule(
    schedules: Mapping[str, Callable[[torch.optim.Optimizer], object]],
    steps: int,
    *,
    base_lr: float = 0.1,
    title: str | None = None,
) -> Figure:
    """Learning rate against step for each named scheduler factory (see :func:`lr_curve`), on one axes."""
    if not schedules:
        raise ValueError("schedules is empty; pass a mapping name -> (optimizer -> scheduler).")
    fig, axes = new_figure(1, 1, panel=(5.0, 3.0))
    ax = axes[0, 0]
    for name, make in schedules.items():
        ax.plot(range(steps), lr_curve(make, steps, base_lr), label=name)
    ax.set_xlabel("step (epoch)")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Pictures of ideas: the convolution volume, im2col, and the blocks of lectures 12-14.

_SHADES = {"front": 1.0, "top": 0.8, "side": 0.6}


def _cuboid(ax, x: float, y: float, width: float, height: float, depth: float, color, *, alpha: float = 0.9,
            zorder: float = 1.0, slant: float = 0.5) -> None:
    """A box in oblique projection: front face ``width x height`` at ``(x, y)``, receding ``depth`` up-right."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Polygon

    dx, dy = depth * slant * 0.8, depth * slant * 0.6
    faces = {
        "front": [(x, y), (x + width, y), (x + width, y + height), (x, y + height)],
        "top": [(x, y + height), (x + width, y + height), (x + width + dx, y + height + dy), (x + dx, y + height + dy)],
        "side": [(x + width, y), (x + width + dx, y + dy), (x + width + dx, y + height + dy), (x + width, y + height)],
    }
    rgb = np.array(to_rgb(color))
    for name, points in faces.items():
        ax.add_patch(Polygon(points, closed=True, facecolor=rgb * _SHADES[name], edgecolor="black", linewidth=0.8,
                             alpha=alpha, zorder=zorder))


def _check_ints(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")


def draw_conv_volume(size: int = 7, channels: int = 3, kernel: int = 3, filters: int = 4, stride: int = 1) -> Figure:
    """A convolution layer as volumes: input ``C x H x W``, ``K`` filters ``C x k x k``, output ``K x H2 x W2``.

    One receptive field (``C x k x k``: every channel of one ``k x k`` window) is highlighted in the input;
    each filter's dot product with it gives one number, so the ``K`` filters give the highlighted
    ``K x 1 x 1`` column of the output. No padding: ``H2 = (H - k) // stride + 1``.
    """
    _check_ints(size=size, channels=channels, kernel=kernel, filters=filters, stride=stride)
    if kernel > size:
        raise ValueError(f"kernel ({kernel}) must be at most size ({size}).")
    out = (size - kernel) // stride + 1
    fig, axes = new_figure(1, 1, panel=(10.0, 3.8))
    ax = axes[0, 0]
    unit = 3.0 / size  # the input's front face is 3 units tall
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # input volume, with the receptive field of output (0, 0) drawn in front of it
    _cuboid(ax, 0, 0, size * unit, size * unit, channels * unit * 1.5, "lightgray", alpha=0.5)
    rf_y = (size - kernel) * unit  # top-left window
    _cuboid(ax, 0, rf_y, kernel * unit, kernel * unit, channels * unit * 1.5, colors[1], zorder=2)
    ax.text(size * unit / 2, -0.45, f"input  C x H x W = {channels} x {size} x {size}", ha="center", va="top")
    ax.text(-0.2, rf_y + kernel * unit / 2, f"receptive field\n{channels} x {kernel} x {kernel}",
            ha="right", va="center", color=colors[1])
    # the filter bank
    fx = size * unit + 2.2
    fsize = min(kernel * unit, 4.2 / filters - 0.35)  # the filters, stacked, fit the input's height and depth
    fdepth = fsize / (kernel * unit) * channels * unit * 1.5
    gap = fsize + fdepth * 0.3 + 0.12
    for f in range(filters):
        _cuboid(ax, fx, (filters - 1 - f) * gap, fsize, fsize, fdepth, colors[(2 + f) % len(colors)], zorder=2)
    ax.text(fx + fsize / 2, -0.45, f"K = {filters} filters,\neach C x k x k = {channels} x {kernel} x {kernel}",
            ha="center", va="top")
    # the output volume, one column per output position
    ox = fx + fsize + 2.6
    _cuboid(ax, ox, 0, out * unit, out * unit, filters * unit * 1.5, "lightgray", alpha=0.5)
    col_y = (out - 1) * unit
    for f in range(filters):  # the column of output (0, 0): one value per filter, front to back
        depth_off = f * unit * 1.5 * 0.5
        _cuboid(ax, ox + depth_off * 0.8, col_y + depth_off * 0.6, unit, unit, unit * 1.5,
                colors[(2 + f) % len(colors)], zorder=3 + filters - f)
    ax.text(ox + out * unit / 2, -0.45, f"output  K x H2 x W2 = {filters} x {out} x {out}", ha="center", va="top")
    for x0, x1 in ((kernel * unit + 0.3, fx - 0.2), (fx + fsize + 0.9, ox - 0.2)):
        ax.annotate("", xy=(x1, 1.7), xytext=(x0, 1.7), arrowprops={"arrowstyle": "->", "linewidth": 1.5})
    ax.text((fx + fsize + 0.9 + ox) / 2, 1.85, "dot product\nper filter", ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-2.6, ox + out * unit + filters * unit + 1.0)
    ax.set_ylim(-1.6, max(4.6, filters * gap + 0.4))
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"A convolution layer: every filter spans all {channels} input channels; "
                 f"{filters} filters give {filters} output channels")
    return fig


def draw_im2col(size: int = 4, kernel: int = 2, stride: int = 1) -> Figure:
    """im2col on one ``size x size`` channel whose pixels are numbered 0, 1, 2, ... row by row.

    Left: the image with every ``kernel x kernel`` window (at ``stride``) in its own colour. Right: the
    matrix of columns, ``(k*k, L)`` with ``L`` the number of output positions: column ``t`` holds window
    ``t``'s pixel numbers read row by row, in ``torch.nn.functional.unfold``'s layout.
    """
    _check_ints(size=size, kernel=kernel, stride=stride)
    if kernel > size:
        raise ValueError(f"kernel ({kernel}) must be at most size ({size}).")
    from matplotlib.patches import Rectangle

    out = (size - kernel) // stride + 1
    n_cols = out * out
    image = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    cols = torch.nn.functional.unfold(image, kernel, stride=stride)[0].int()  # (k*k, L)
    cmap = plt.get_cmap("tab20" if n_cols > 10 else "tab10")
    fig, axes = new_figure(1, 2, panel=(4.0, 3.6), gridspec_kw={"width_ratios": [size, max(n_cols, size)]})
    left, right = axes[0]
    for r in range(size):
        for c in range(size):
            left.add_patch(Rectangle((c, size - 1 - r), 1, 1, facecolor="white", edgecolor="black"))
            left.text(c + 0.5, size - 0.5 - r, str(r * size + c), ha="center", va="center")
    for t in range(n_cols):  # each window's outline, inset a little per window so that overlaps show
        i, j = divmod(t, out)
        inset = 0.06 + 0.25 * (t % 3) / 3
        left.add_patch(Rectangle((j * stride + inset, size - (i * stride + kernel) + inset), kernel - 2 * inset,
                                 kernel - 2 * inset, fill=False, edgecolor=cmap(t % cmap.N), linewidth=2))
    left.set_title(f"image {size} x {size}, windows {kernel} x {kernel}, stride {stride}")
    rows = kernel * kernel
    for t in range(n_cols):
        right.add_patch(Rectangle((t, 0), 1, rows, facecolor=cmap(t % cmap.N), alpha=0.35, edgecolor="black"))
        for a in range(rows):
            right.text(t + 0.5, rows - 0.5 - a, str(int(cols[a, t])), ha="center", va="center")
        right.text(t + 0.5, -0.4, str(t), ha="center", va="top", fontsize=8)
    for a in range(rows):
        right.text(-0.15, rows - 0.5 - a, f"offset {divmod(a, kernel)}", ha="right", va="center", fontsize=8)
    right.set_title(f"im2col: {rows} x {n_cols} (one column per output position)")
    right.text(n_cols / 2, -1.3, "output position t", ha="center", va="top", fontsize=8)
    for ax, width, height in ((left, size, size), (right, n_cols, rows)):
        ax.set_xlim(-1.6 if ax is right else -0.1, width + 0.1)
        ax.set_ylim(-2.0 if ax is right else -0.1, height + 0.1)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.tight_layout()
    return fig


@dataclass
class _Node:
    x: float
    y: float
    label: str
    color: str = "#dbe9f6"
    width: float = 2.4


_BLOCK_COLORS = {"conv": "#dbe9f6", "pool": "#fde0c5", "join": "#e4f4d9", "io": "#eeeeee", "act": "#f6dbe9"}


def _block(kind: str) -> tuple[str, dict[str, _Node], list[tuple[str, str, str]]]:
    """Title, nodes and edges ``(from, to, label)`` of one block; an edge label starting "skip" curves round."""
    c = _BLOCK_COLORS
    if kind == "inception":
        xs = (-4.5, -1.5, 1.5, 4.5)
        nodes = {
            "in": _Node(0, 4, "previous layer\n192 x 28 x 28", c["io"], 3.2),
            "b1": _Node(xs[0], 2, "1x1 conv, 64", c["conv"]),
            "b2a": _Node(xs[1], 2.6, "1x1 conv, 96\n(reduce)", c["conv"]),
            "b2": _Node(xs[1], 1.2, "3x3 conv, 128", c["conv"]),
            "b3a": _Node(xs[2], 2.6, "1x1 conv, 16\n(reduce)", c["conv"]),
            "b3": _Node(xs[2], 1.2, "5x5 conv, 32", c["conv"]),
            "b4a": _Node(xs[3], 2.6, "3x3 max pool\nstride 1", c["pool"]),
            "b4": _Node(xs[3], 1.2, "1x1 conv, 32", c["conv"]),
            "out": _Node(0, -0.2, "concatenate channels\n64+128+32+32 = 256 x 28 x 28", c["join"], 4.6),
        }
        edges = [("in", "b1", ""), ("in", "b2a", ""), ("in", "b3a", ""), ("in", "b4a", ""), ("b2a", "b2", ""),
                 ("b3a", "b3", ""), ("b4a", "b4", ""), ("b1", "out", ""), ("b2", "out", ""), ("b3", "out", ""),
                 ("b4", "out", "")]
        return "Inception block (GoogLeNet's 3a): four branches side by side", nodes, edges
    if kind == "residual":
        nodes = {
            "in": _Node(0, 5, "x: 64 x H x W", c["io"]),
            "c1": _Node(0, 3.8, "3x3 conv, 64\nBN, ReLU", c["conv"]),
            "c2": _Node(0, 2.5, "3x3 conv, 64\nBN", c["conv"]),
            "add": _Node(0, 1.3, "+", c["join"], 0.8),
            "out": _Node(0, 0.2, "ReLU -> 64 x H x W", c["act"]),
        }
        edges = [("in", "c1", ""), ("c1", "c2", ""), ("c2", "add", ""),
                 ("in", "add", "skip: identity x"), ("add", "out", "")]
        return "Residual block (ResNet-18/34): $y = \\mathrm{ReLU}(\\mathcal{F}(x) + x)$", nodes, edges
    if kind == "bottleneck":
        nodes = {
            "in": _Node(0, 5, "x: 256 x H x W", c["io"]),
            "c1": _Node(0, 3.9, "1x1 conv, 64 (reduce)\nBN, ReLU", c["conv"], 3.0),
            "c2": _Node(0, 2.8, "3x3 conv, 64\nBN, ReLU", c["conv"], 3.0),
            "c3": _Node(0, 1.7, "1x1 conv, 256 (expand)\nBN", c["conv"], 3.0),
            "add": _Node(0, 0.7, "+", c["join"], 0.8),
            "out": _Node(0, -0.3, "ReLU -> 256 x H x W", c["act"], 3.0),
        }
        edges = [("in", "c1", ""), ("c1", "c2", ""), ("c2", "c3", ""), ("c3", "add", ""),
                 ("in", "add", "skip: identity x"), ("add", "out", "")]
        return "Bottleneck block (ResNet-50+): 1x1 reduce, 3x3, 1x1 expand", nodes, edges
    if kind == "dense":
        k0, k = 64, 32
        nodes = {"x0": _Node(-4.5, 2, f"x0\nk0 = {k0}", c["io"], 1.6)}
        edges = []
        for i in range(1, 4):
            nodes[f"h{i}"] = _Node(-4.5 + 3.4 * i, 2, f"layer {i}: {k0 + (i - 1) * k} channels in\n"
                                   f"BN-ReLU-1x1 conv, 4k\nBN-ReLU-3x3 conv, k\n-> x{i}", c["conv"], 2.9)
        nodes["out"] = _Node(-4.5 + 3.4 * 4, 2, f"concat\n{k0} + 3k\n= {k0 + 3 * k}", c["join"], 1.6)
        names = ["x0", "h1", "h2", "h3", "out"]
        for j in range(1, len(names)):
            for i in range(j):
                edges.append((names[i], names[j], "" if j == i + 1 else "skip: concat"))
        title = f"Dense block (DenseNet, growth rate k = {k}): each layer sees all earlier maps, concatenated"
        return title, nodes, edges
    if kind == "inverted_residual":
        nodes = {
            "in": _Node(0, 5, "x: C = 24 channels, H x W", c["io"], 3.8),
            "c1": _Node(0, 3.9, "1x1 conv, tC = 144\n(expand, t = 6), BN, ReLU6", c["conv"], 4.4),
            "c2": _Node(0, 2.8, "3x3 depthwise conv, 144\nBN, ReLU6", c["conv"], 4.4),
            "c3": _Node(0, 1.7, "1x1 conv, 24 (project)\nBN, no ReLU (linear)", c["conv"], 4.4),
            "add": _Node(0, 0.7, "+", c["join"], 0.8),
            "out": _Node(0, -0.3, "24 x H x W", c["io"], 3.2),
        }
        edges = [("in", "c1", ""), ("c1", "c2", ""), ("c2", "c3", ""), ("c3", "add", ""),
                 ("in", "add", "skip: identity x\n(stride 1, same C)"), ("add", "out", "")]
        return "Inverted residual (MobileNetV2): narrow -> wide -> narrow", nodes, edges
    raise ValueError(f"unknown block {kind!r}; choose one of {', '.join(BLOCKS)}.")


BLOCKS = ("inception", "residual", "bottleneck", "dense", "inverted_residual")
_BRANCHES = {"residual": ("c1", "c2"), "bottleneck": ("c1", "c2", "c3"), "inverted_residual": ("c1", "c2", "c3")}


def draw_block(kind: str) -> Figure:
    """A block diagram of one architecture block: boxes for layers, arrows for the data flow.

    ``kind`` is one of :data:`BLOCKS`: ``"inception"`` (GoogLeNet's four parallel branches, concatenated),
    ``"residual"`` (two 3x3 convs and an identity skip, added), ``"bottleneck"`` (1x1 reduce, 3x3, 1x1
    expand, skip), ``"dense"`` (every layer gets all earlier maps, concatenated) or ``"inverted_residual"``
    (MobileNetV2: 1x1 expand, 3x3 depthwise, linear 1x1 project, skip between the narrow ends). Channel
    counts are the papers' examples. Skip connections are the curved arrows.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if kind not in BLOCKS:
        raise ValueError(f"unknown block {kind!r}; choose one of {', '.join(BLOCKS)}.")
    title, nodes, edges = _block(kind)
    horizontal = kind == "dense"
    fig, axes = new_figure(1, 1, panel=(11.0, 3.6) if horizontal or kind == "inception" else (6.0, 5.2))
    ax = axes[0, 0]
    height = 1.3 if horizontal else 0.8
    for node in nodes.values():
        ax.add_patch(FancyBboxPatch((node.x - node.width / 2, node.y - height / 2), node.width, height,
                                    boxstyle="round,pad=0.05", facecolor=node.color, edgecolor="black", zorder=2))
        ax.text(node.x, node.y, node.label, ha="center", va="center", fontsize=9, zorder=3)
    names = list(nodes)
    right = max(n.x + n.width / 2 for n in nodes.values()) + 0.5  # where vertical skips run down
    if kind in _BRANCHES:  # the residual branch F(x), framed
        from matplotlib.patches import Rectangle

        branch = [nodes[name] for name in _BRANCHES[kind]]
        left = min(n.x - n.width / 2 for n in branch) - 0.25
        top, bottom = max(n.y for n in branch) + height / 2 + 0.12, min(n.y for n in branch) - height / 2 - 0.12
        ax.add_patch(Rectangle((left, bottom), max(n.x + n.width / 2 for n in branch) + 0.25 - left, top - bottom,
                               fill=False, edgecolor="gray", linestyle="--", linewidth=1, zorder=0))
        ax.text(left - 0.15, (top + bottom) / 2, "residual\nbranch\n$\\mathcal{F}(x)$", ha="right", va="center",
                fontsize=9, color="dimgray")
    for n_skip, (src, dst, label) in enumerate(e for e in edges if e[2].startswith("skip")):
        a, b = nodes[src], nodes[dst]
        if horizontal:  # arcs over the row, each leaving and entering its boxes at its own point
            out_shift = 0.25 * (names.index(dst) - names.index(src) - 2)
            in_shift = 0.25 * (names.index(dst) - names.index(src) - 2)
            ax.add_patch(FancyArrowPatch((a.x + 0.2 + out_shift, a.y + height / 2),
                                         (b.x - 0.2 - in_shift, b.y + height / 2),
                                         connectionstyle="arc3,rad=-0.35", arrowstyle="-|>", mutation_scale=12,
                                         color="tab:red", linewidth=1.3, zorder=1))
            if n_skip == 0:
                mid = (min(n.x for n in nodes.values()) + max(n.x for n in nodes.values())) / 2
                ax.text(mid, a.y - height / 2 - 0.3, "red arrows: " + label[len("skip: "):] + " (each layer's output "
                        "goes to every later layer)", color="tab:red", fontsize=9, ha="center", va="top")
            continue
        # right from the source, down the side, left into the target
        ax.plot([a.x + a.width / 2, right, right], [a.y, a.y, b.y], color="tab:red", linewidth=1.3, zorder=1)
        ax.add_patch(FancyArrowPatch((right, b.y), (b.x + b.width / 2, b.y), arrowstyle="-|>", mutation_scale=12,
                                     color="tab:red", linewidth=1.3, zorder=1))
        ax.text(right + 0.15, (a.y + b.y) / 2, label[len("skip: "):], color="tab:red", fontsize=9, va="center")
    for src, dst, label in edges:
        if label.startswith("skip"):
            continue
        a, b = nodes[src], nodes[dst]
        if horizontal:
            start, end = (a.x + a.width / 2, a.y), (b.x - b.width / 2, b.y)
        else:
            start, end = (a.x, a.y - height / 2), (b.x, b.y + height / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="black", zorder=1))
        if label:
            ax.text((start[0] + end[0]) / 2 - 0.15, (start[1] + end[1]) / 2, label, ha="right", va="center",
                    fontsize=9, style="italic")
    xs = [n.x - n.width / 2 for n in nodes.values()] + [n.x + n.width / 2 for n in nodes.values()]
    ys = [n.y for n in nodes.values()]
    wide = horizontal or kind == "inception"  # no skip on the right
    ax.set_xlim(min(xs) - (2.0 if kind in _BRANCHES else 0.6), max(xs) + (0.6 if wide else 3.2))
    ax.set_ylim(min(ys) - (1.4 if horizontal else 0.8), max(ys) + (2.8 if horizontal else 0.8))
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig
