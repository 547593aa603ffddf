"""The explorers: the plain draw_* functions over sweeps of settings, and the widgets' callbacks."""

import itertools
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cnncourse import explorers
from cnncourse.shapes import ShapeError, conv_output_size


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in [*ax.texts, ax.title, ax.xaxis.label]) + (
        fig._suptitle.get_text() if fig._suptitle else "")


@pytest.mark.parametrize("size, kernel, stride, padding, dilation",
                         [(7, 3, 1, 0, 1), (7, 3, 2, 0, 1), (5, 3, 1, 1, 1), (8, 3, 1, 1, 2), (2, 1, 1, 0, 1)])
def test_draw_conv_shows_the_output_grid_and_its_size(size, kernel, stride, padding, dilation):
    out = conv_output_size(size, kernel, stride, padding, dilation)
    fig = explorers.draw_conv(size, kernel, stride, padding, dilation)
    left, right = fig.axes
    assert left.get_images()[0].get_array().shape == (size + 2 * padding,) * 2
    assert right.get_images()[0].get_array().shape == (out, out)
    assert f"output {out}x{out}" in _texts(fig)
    first = left.patches[0].get_facecolor()[:3]
    blue_taps = [p for p in left.patches if p.get_fill() and p.get_facecolor()[:3] == first]
    assert len(blue_taps) == kernel * kernel


def test_draw_conv_prints_the_shape_error_of_an_invalid_setting():
    """The slide's example: W=10, F=3, S=2, P=0 does not tile; the figure says why (and no output grid)."""
    with pytest.raises(ShapeError) as err:
        conv_output_size(10, 3, 2, 0)
    fig = explorers.draw_conv(10, 3, 2, 0)
    text = _texts(fig).replace("\n", " ")
    assert "ShapeError" in text and "no valid output" in text
    assert " ".join(str(err.value).split()) in " ".join(text.split())
    assert fig.axes[0].get_images() and not fig.axes[1].get_images()
    assert "does not fit" in _texts(explorers.draw_conv(3, 7, 1, 0)).replace("\n", " ")


def test_draw_conv_sweep_never_fails():
    for size, kernel, stride, padding, dilation in [(1, 1, 1, 0, 1), (1, 3, 1, 0, 1), (4, 5, 3, 2, 2), (9, 5, 3, 0, 2),
                                                    (9, 3, 3, 2, 1), (4, 1, 3, 0, 1), (9, 5, 1, 2, 1)]:
        fig = explorers.draw_conv(size, kernel, stride, padding, dilation)
        assert len(fig.axes) == 2
        plt.close(fig)
    with pytest.raises(ValueError, match="stride must be an int"):
        explorers.draw_conv(7, 3, 1.5)


@pytest.mark.parametrize("name", ["box", "gaussian", "sharpen", "diff_x", "sobel_y"])
def test_draw_filter_input_kernel_and_result(name):
    image = torch.rand(3, 20, 30)
    fig = explorers.draw_filter(image, name, sigma=1.5)
    assert [len(ax.get_images()) for ax in fig.axes] == [1, 1, 1]
    assert fig.axes[2].get_images()[0].get_array().shape[:2] == (20, 30)
    kernel_shown = fig.axes[1].get_images()[0].get_array()
    assert kernel_shown.shape == ((11, 11) if name == "gaussian" else (1, 2) if name == "diff_x" else (3, 3))


def _signed_limit(fig: Figure) -> float:
    low, high = fig.axes[2].get_images()[0].get_clim()
    assert low == -high
    return high


@pytest.mark.parametrize("name", ["diff_x", "sobel_x", "sobel_y"])
def test_draw_filter_signed_colour_limit_is_robust_to_a_few_strong_edges(name):
    """One bright dot must not set the scale: the limit is a high percentile of |response|, not its maximum."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 40, 40, generator=g) * 0.2 + 0.4
    image[0, 20, 20] = 50.0  # the outlier: its edge response is about 100 times the rest
    fig = explorers.draw_filter(image, name)
    response = fig.axes[2].get_images()[0].get_array()
    limit = _signed_limit(fig)
    assert limit == pytest.approx(float(np.percentile(np.abs(response), explorers.SIGNED_PERCENTILE)))
    assert limit < float(np.abs(response).max()) / 10
    flat = explorers.draw_filter(torch.zeros(1, 8, 8), name)  # a black image responds 0 everywhere
    assert _signed_limit(flat) == 1.0


def test_draw_filter_gaussian_uses_the_given_size():
    assert fig_kernel(explorers.draw_filter(torch.rand(3, 20, 20), "gaussian", 1.0, 9)).shape == (9, 9)
    assert "gaussian 9x9" in explorers.draw_filter(torch.rand(3, 20, 20), "gaussian", 1.0, 9).axes[1].get_title()


def fig_kernel(fig: Figure):
    return fig.axes[1].get_images()[0].get_array()


def test_draw_init_one_panel_per_layer_and_the_vanishing_it_shows():
    fig = explorers.draw_init("small_normal", depth=4, activation="tanh", width=64)
    assert len(fig.axes) == 8 and all(ax.patches for ax in fig.axes)
    stds = [float(ax.get_title().split("std ")[1].split(",")[0]) for ax in fig.axes[:4]]
    assert stds == sorted(stds, reverse=True) and stds[-1] < stds[0] / 100  # small weights: activations vanish
    he = explorers.draw_init("he_normal", depth=4, activation="relu", width=64)
    stds = [float(ax.get_title().split("std ")[1].split(",")[0]) for ax in he.axes[:4]]
    assert max(stds) < 2 * min(stds)  # He init keeps the scale
    zero = explorers.draw_init("zero", depth=3, width=16)
    assert all("std 0" in ax.get_title() for ax in zero.axes)
    # the standard init U[-1/sqrt(n), 1/sqrt(n)]: n Var(w) = 1/3, and ReLU halves it again: a factor ~0.4 per layer
    standard = explorers.draw_init("standard", depth=4, activation="relu", width=256)
    stds = [float(ax.get_title().split("std ")[1].split(",")[0]) for ax in standard.axes[:4]]
    ratios = [b / a for a, b in zip(stds, stds[1:], strict=False)]
    assert all(0.3 < r < 0.55 for r in ratios), ratios
    with pytest.raises(ValueError, match="unknown scheme"):
        explorers.draw_init("lecun")


def test_draw_init_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    explorers.draw_init(depth=2, width=8)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("batch_size, mode", [(2, "train"), (32, "train"), (32, "eval"), (256, "eval")])
def test_draw_batchnorm_train_mode_depends_on_the_batch_eval_does_not(batch_size, mode):
    fig = explorers.draw_batchnorm(batch_size, mode)
    assert len(fig.axes) == 3
    spread = float(fig.axes[1].get_title().split("std ")[1])
    assert (spread > 0.05) if mode == "train" else (spread == 0.0)
    assert f"B={batch_size}" in fig.axes[0].get_title()


@pytest.mark.parametrize("batch_size", [1, 32])
def test_draw_batchnorm_true_mean_is_drawn_over_the_running_mean(batch_size):
    """At B = 1 the running mean stays at the true mean: the dashed true-mean line must lie on top of it."""
    ax = explorers.draw_batchnorm(batch_size, "eval").axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    true, running = lines["true mean"], lines["running mean"]
    drawn = ax.get_children()
    assert (true.get_zorder(), drawn.index(true)) > (running.get_zorder(), drawn.index(running))
    assert running.get_linewidth() > true.get_linewidth() and true.get_linestyle() == "--"
    if batch_size == 1:
        assert true.get_xdata()[0] == running.get_xdata()[0] == explorers.BN_MEAN


def test_draw_batchnorm_of_one_sample_in_train_mode_shows_the_error():
    text = _texts(explorers.draw_batchnorm(1, "train")).replace("\n", " ")
    assert "Expected more than 1 value per channel" in text


@pytest.fixture
def shown(monkeypatch):
    """What the explorers' callbacks display (the figures they put into their Output)."""
    figures = []
    monkeypatch.setattr("IPython.display.display", lambda obj, *a, **k: figures.append(obj))
    return figures


def _controls(widget):
    import ipywidgets as widgets

    found = []
    for child in widget.children:
        if isinstance(child, widgets.HBox):
            found += [c for c in child.children if isinstance(c, widgets.ValueWidget)]
    return {c.description: c for c in found}


def test_conv_explorer_redraws_and_its_label_follows_the_stride(shown):
    widget = explorers.conv_explorer()
    controls = _controls(widget)
    label = next(c for c in widget.children if "cnncourse-conv-output" in c._dom_classes)
    assert len(shown) == 1 and "output 5 x 5" in label.value
    for stride, size in itertools.product((1, 2, 3, 4), (7, 10)):
        controls["input size"].value = size
        controls["stride"].value = stride
        assert isinstance(shown[-1], Figure)
        assert label.value.count(explorers.conv_output_text(size, 3, stride)) == 1
    controls["input size"].value, controls["stride"].value = 10, 2
    assert "invalid" in label.value and "is not an integer" in label.value
    assert "ShapeError" in _texts(shown[-1])
    controls["dilation"].value, controls["padding"].value, controls["kernel"].value = 2, 3, 7
    assert len(shown) > 10


@pytest.mark.parametrize("size, kernel, padding, dilation", [(6, 3, 0, 3), (5, 5, 0, 2), (4, 7, 1, 3), (3, 7, 0, 1),
                                                             (6, 5, 0, 2)])
def test_conv_explorer_says_which_number_to_change_when_the_kernel_does_not_fit(size, kernel, padding, dilation):
    """The hint names the kernel slider's value (not the dilated extent) and the dilation that fit."""
    text = explorers.conv_output_text(size, kernel, 1, padding, dilation)
    assert text.startswith("invalid") and "does not fit" in text
    largest = int(text.split("kernel_size <= ")[1].split()[0].rstrip(","))
    conv_output_size(size, largest, 1, padding, dilation)
    with pytest.raises(ShapeError):
        conv_output_size(size, largest + 1, 1, padding, dilation)
    if dilation > 1:
        assert f"dilation {dilation} * (kernel_size {kernel} - 1) + 1" in text
        if "dilation <= " in text:
            most = int(text.split("dilation <= ")[1].split()[0].rstrip(","))
            conv_output_size(size, kernel, 1, padding, most)
            with pytest.raises(ShapeError):
                conv_output_size(size, kernel, 1, padding, most + 1)


def test_filter_explorer_size_acts_on_the_gaussian_and_unused_controls_are_disabled(shown):
    controls = _controls(explorers.filter_explorer(torch.rand(3, 24, 24)))
    assert fig_kernel(shown[-1]).shape == (7, 7) and controls["size"].value == 7  # the title matches the slider
    assert "gaussian 7x7" in shown[-1].axes[1].get_title()
    controls["size"].value = 9
    assert fig_kernel(shown[-1]).shape == (9, 9)
    assert not controls["sigma"].disabled and not controls["size"].disabled
    for name, sigma_on, size_on in [("box", False, True), ("sharpen", False, True), ("sobel_x", False, False),
                                    ("diff_y", False, False), ("gaussian", True, True)]:
        controls["filter"].value = name
        assert (controls["sigma"].disabled, controls["size"].disabled) == (not sigma_on, not size_on), name
    controls["filter"].value = "box"
    controls["size"].value = 3
    assert fig_kernel(shown[-1]).shape == (3, 3)


def test_init_explorer_puts_menus_and_sliders_on_two_rows():
    import ipywidgets as widgets

    box = explorers.init_explorer()
    rows = [[c.description for c in row.children] for row in box.children if isinstance(row, widgets.HBox)]
    assert rows == [["scheme", "activation"], ["gain", "depth"]]


def test_the_other_explorers_redraw_over_their_settings(shown):
    filters = explorers.filter_explorer(torch.rand(3, 16, 16))
    controls = _controls(filters)
    controls["size"].value = 9
    for name in controls["filter"].options:
        controls["filter"].value = name
    init = _controls(explorers.init_explorer())
    init["depth"].value = 2
    for scheme in init["scheme"].options:
        init["scheme"].value = scheme
    init["activation"].value, init["gain"].value = "relu", 2.0
    bn = _controls(explorers.batchnorm_explorer())
    for size, mode in [(1, "train"), (1, "eval"), (256, "eval")]:
        bn["batch size"].value, bn["mode"].value = size, mode
    # one picture when built, then one per changed value (setting a control to its current value redraws nothing)
    n_schemes = len(explorers.INIT_SCHEMES)
    assert len(shown) == (1 + 1 + 7) + (1 + 1 + n_schemes + 2) + (1 + 3)
    assert all(isinstance(f, Figure) for f in shown)


def test_figure_draws_the_view_the_controls_show(shown):
    """``figure()`` (the site's static picture) is the view the explorer displays, before and after a move."""
    widget = explorers.conv_explorer()
    assert _texts(widget.figure()) == _texts(shown[-1])
    assert "output 5x5" in _texts(widget.figure())
    _controls(widget)["stride"].value = 2
    assert _texts(widget.figure()) == _texts(shown[-1]) and "output 3x3" in _texts(widget.figure())
    bn = explorers.batchnorm_explorer()
    assert _texts(bn.figure()) == _texts(shown[-1])


def test_core_does_not_import_viz_and_only_widget_builders_import_ipywidgets():
    code = ("import sys, cnncourse.shapes, cnncourse.layers, cnncourse.data.digits, cnncourse.train; "
            "core = sorted(m for m in ('cnncourse.viz', 'ipywidgets') if m in sys.modules); "
            "import cnncourse.explorers; print(core, 'ipywidgets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "False"]
