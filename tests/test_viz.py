"""Each viz function returns a Figure with the expected panels and images; bad input gets a clear error."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cnncourse import viz
from cnncourse.train import History


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(fig):
    return [len(ax.get_images()) for ax in fig.axes]


def test_show_images_one_panel_per_image_in_any_layout():
    fig = viz.show_images(torch.rand(10, 1, 8, 8), titles=[str(i) for i in range(10)], ncols=4, suptitle="digits")
    assert isinstance(fig, Figure) and _images(fig) == [1] * 10
    assert fig.axes[3].get_title() == "3" and fig._suptitle.get_text() == "digits"
    rgb = viz.show_images([torch.rand(3, 5, 5), torch.rand(5, 5)])
    assert _images(rgb) == [1, 1] and rgb.axes[0].get_images()[0].get_array().shape == (5, 5, 3)
    assert _images(viz.show_images(torch.rand(3, 6, 6))) == [1, 1, 1]  # (N, H, W)


def test_show_images_uint8_colour_as_0_to_255():
    """uint8 images (what load_tensors returns) are drawn like the same images as floats in [0, 1]."""
    images = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    as_bytes = viz.show_images(images).axes[1].get_images()[0].make_image(None, unsampled=True)[0]
    as_floats = viz.show_images(images.float() / 255).axes[1].get_images()[0].make_image(None, unsampled=True)[0]
    assert (as_bytes == as_floats).all() and as_bytes[..., :3].std() > 30  # not clipped to white


def test_show_images_rejects_what_it_cannot_draw():
    with pytest.raises(ValueError, match="one title per image"):
        viz.show_images(torch.rand(2, 4, 4), titles=["a"])
    with pytest.raises(ValueError, match="plot_feature_maps"):
        viz.show_images(torch.rand(2, 5, 4, 4))


def test_kernels_and_feature_maps():
    fig = viz.plot_kernels(torch.randn(12, 3, 5, 5), ncols=6, title="conv1")
    assert _images(fig) == [1] * 12 and fig.axes[0].get_images()[0].get_array().shape == (5, 5, 3)
    assert _images(viz.plot_kernels(torch.randn(4, 6, 3, 3))) == [1] * 4
    assert _images(viz.plot_kernels(torch.randn(4, 6, 3, 3), all_channels=True)) == [1] * 24
    assert _images(viz.plot_feature_maps(torch.rand(1, 6, 7, 7))) == [1] * 6
    with pytest.raises(ValueError, match=r"\(K, C, kh, kw\)"):
        viz.plot_kernels(torch.randn(3, 3))
    with pytest.raises(ValueError, match="maps\\[i\\]"):
        viz.plot_feature_maps(torch.rand(2, 6, 7, 7))


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_activation_stats_records_outputs_and_gradients_in_forward_order():
    model, x, y = _mlp(), torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    stats = viz.activation_stats(model, x, y)
    assert list(stats.activations) == ["1", "2", "3", "4", "5"]
    assert torch.allclose(stats.activations["2"], torch.tanh(stats.activations["1"]))
    assert list(stats.gradients) == list(stats.activations)
    logits = stats.activations["5"].clone().requires_grad_()
    nn.functional.cross_entropy(logits, y).backward()
    assert torch.allclose(stats.gradients["5"], logits.grad)
    assert all(p.grad is None for p in model.parameters())  # the model's .grad is left alone
    only = viz.activation_stats(model, x, layer_types=(nn.Tanh, nn.ReLU))
    assert list(only.activations) == ["2", "4"] and only.gradients == {}


def test_plot_activation_stats_one_panel_per_layer_on_a_shared_range():
    stats = viz.activation_stats(_mlp(), torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1]))
    fig = viz.plot_activation_stats(stats, "gradients", bins=20)
    assert len(fig.axes) == 5 and all(len(ax.patches) == 20 for ax in fig.axes)
    assert len({ax.get_xlim() for ax in fig.axes}) == 1
    assert fig.axes[0].get_title().startswith("1\nstd")
    zeros = viz.plot_activation_stats({"a": torch.zeros(10), "b": torch.zeros(10)})  # all equal still draws
    assert len(zeros.axes) == 2
    with pytest.raises(ValueError, match="pass labels y"):
        viz.plot_activation_stats(viz.ActivationStats({"a": torch.zeros(3)}), "gradients")


def test_plot_history_lines_per_run_and_metric():
    a = History(train_loss=[1.0, 0.5, 0.4], train_acc=[0.5, 0.7, 0.8], val_loss=[1.1, 0.6, 0.7],
                val_acc=[0.4, 0.6, 0.6], best_epoch=1, stopped_early=True)
    b = History(train_loss=[0.9, 0.3], train_acc=[0.6, 0.9])
    fig = viz.plot_history({"a": a, "b": b}, title="runs")
    assert len(fig.axes) == 2
    loss_ax = fig.axes[0]
    styles = [(line.get_label(), line.get_linestyle()) for line in loss_ax.get_lines()]
    assert ("a train", "-") in styles and ("a val", "--") in styles and ("b train", "-") in styles
    assert len(loss_ax.get_lines()) == 4  # a train, a val, a's best-epoch marker, b train
    assert list(loss_ax.get_lines()[0].get_ydata()) == [1.0, 0.5, 0.4]
    assert len(viz.plot_history(b, metrics=("loss",)).axes) == 1
    with pytest.raises(ValueError, match="unknown metric"):
        viz.plot_history(a, metrics=("f1",))
    spiky = History(train_loss=[1.0, 0.5, 0.4], val_loss=[1.1, 42.0, 0.6])
    logged = viz.plot_history(spiky, metrics=("loss",), log_scale=("loss",))
    assert logged.axes[0].get_yscale() == "log" and "log scale" in logged.axes[0].get_ylabel()
    assert viz.plot_history(spiky, metrics=("loss",)).axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="log_scale must be a sequence of the plotted metrics"):
        viz.plot_history(spiky, metrics=("loss",), log_scale="loss")


def test_lr_curves():
    step = viz.lr_curve(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5), 5, base_lr=1.0)
    assert step == [1.0, 1.0, 0.5, 0.5, 0.25]
    fig = viz.plot_lr_schedule({"step": lambda o: torch.optim.lr_scheduler.StepLR(o, 3),
                                "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10)}, 10)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    assert fig.axes[0].get_lines()[1].get_ydata()[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        viz.lr_curve(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o), 3)


def test_figures_are_shown_once_in_a_notebook(monkeypatch):
    """Displaying a figure draws a PNG and closes it in pyplot, so the inline backend does not show it again."""
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    fig = viz.show_images(torch.rand(2, 4, 4))
    assert fig.number in plt.get_fignums()
    fig._ipython_display_()
    assert fig.number not in plt.get_fignums()
    assert len(shown) == 1 and shown[0].data[:4] == b"\x89PNG"
    fig._ipython_display_()  # shown again in a later cell
    assert len(shown) == 2 and shown[1].data == shown[0].data


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_conv_volume_labels_the_three_volumes_with_their_shapes():
    fig = viz.draw_conv_volume(size=7, channels=3, kernel=3, filters=4, stride=2)
    texts = "\n".join(_texts(fig))
    assert "3 x 7 x 7" in texts and "4 x 3 x 3" in texts  # input; output (7 - 3) // 2 + 1 = 3
    assert "K = 4 filters" in texts and "receptive field\n3 x 3 x 3" in texts
    # input, receptive field, 4 filters and 4 output cubes beside the output volume: 3 faces each
    assert len(fig.axes[0].patches) == 3 * (1 + 1 + 4 + 1 + 4)
    with pytest.raises(ValueError, match="kernel \\(9\\) must be at most size \\(7\\)"):
        viz.draw_conv_volume(size=7, kernel=9)
    with pytest.raises(ValueError, match="filters must be a positive int, got 0"):
        viz.draw_conv_volume(filters=0)


def test_im2col_picture_shows_unfold_columns():
    """The numbers in the matrix are F.unfold's columns of the numbered image, one coloured column per window."""
    fig = viz.draw_im2col(size=5, kernel=3, stride=2)
    left, right = fig.axes
    numbers = [int(t.get_text()) for t in right.texts if t.get_text().isdigit() and t.get_fontsize() > 8]
    cols = torch.nn.functional.unfold(torch.arange(25.0).reshape(1, 1, 5, 5), 3, stride=2)[0]  # (9, 4)
    assert numbers == cols.T.flatten().int().tolist()  # drawn column by column
    assert len(left.patches) == 25 + 4  # the pixels and the 4 windows
    with pytest.raises(ValueError, match="kernel"):
        viz.draw_im2col(size=2, kernel=3)


@pytest.mark.parametrize("kind, boxes, words", [
    ("inception", 9, ["1x1 conv, 64", "3x3 max pool", "concatenate"]),
    ("residual", 5, ["3x3 conv, 64", "+", "identity x", "$\\mathcal{F}(x)$"]),
    ("bottleneck", 6, ["1x1 conv, 64 (reduce)", "1x1 conv, 256 (expand)", "identity x", "$\\mathcal{F}(x)$"]),
    ("dense", 5, ["x0", "layer 3: 128 channels in", "BN-ReLU-1x1 conv, 4k", "= 160"]),
    ("inverted_residual", 6, ["depthwise", "(expand, t = 6)", "no ReLU (linear)", "identity x", "$\\mathcal{F}(x)$"]),
])
def test_blocks_draw_their_layers_and_connections(kind, boxes, words):
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    fig = viz.draw_block(kind)
    ax = fig.axes[0]
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == boxes
    texts = "\n".join(_texts(fig))
    assert all(w in texts for w in words), texts
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    skips = [p for p in arrows if p.get_edgecolor()[:3] != (0.0, 0.0, 0.0)]
    expected_skips = {"inception": 0, "dense": 6}.get(kind, 1)  # dense: every later layer from every earlier
    assert len(skips) == expected_skips
    assert len(arrows) - len(skips) == {"inception": 11, "dense": 4}.get(kind, boxes - 1)
    # the residual branch F(x) is framed by one dashed rectangle around its layers (2 or 3 boxes)
    frames = [p for p in ax.patches if type(p) is Rectangle and p.get_linestyle() == "--"]
    assert len(frames) == (0 if kind in ("inception", "dense") else 1)
    if frames:
        inside = [p for p in ax.patches if isinstance(p, FancyBboxPatch)
                  and frames[0].get_y() < p.get_y() < frames[0].get_y() + frames[0].get_height()]
        assert len(inside) == {"residual": 2}.get(kind, 3)


def test_unknown_block_names_the_choices():
    with pytest.raises(ValueError, match="unknown block 'vgg'; choose one of inception, residual"):
        viz.draw_block("vgg")
