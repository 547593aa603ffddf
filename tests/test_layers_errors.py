"""Bad input raises ShapeError/ValueError naming the shapes, never an obscure error from inside torch."""

import re

import pytest
import torch

from cnncourse import layers
from cnncourse.layers import avg_pool2d, batch_norm, col2im, conv2d, conv2d_naive, im2col, max_pool2d
from cnncourse.shapes import ShapeError

CONVS = [conv2d, conv2d_naive]


def _raises(exc, fn, *needles):
    """fn() raises exc and its message contains every needle (shapes are written as Python tuples)."""
    with pytest.raises(exc) as info:
        fn()
    for needle in needles:
        assert needle in str(info.value), f"{needle!r} not in message {str(info.value)!r}"
    return str(info.value)


@pytest.mark.parametrize("conv", CONVS)
def test_conv_wrong_rank(conv):
    w = torch.randn(4, 3, 3, 3)
    msg = _raises(ShapeError, lambda: conv(torch.randn(3, 8, 8), w), "(3, 8, 8)", "(N, C, H, W)")
    assert "unsqueeze(0)" in msg
    _raises(ShapeError, lambda: conv(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3)), "(4, 3, 3)")


@pytest.mark.parametrize("conv", CONVS)
def test_conv_channel_mismatch(conv):
    _raises(ShapeError, lambda: conv(torch.randn(2, 3, 8, 8), torch.randn(4, 2, 3, 3)),
            "(2, 3, 8, 8)", "(4, 2, 3, 3)", "3 channels")
    _raises(ShapeError, lambda: conv(torch.randn(2, 4, 8, 8), torch.randn(6, 1, 3, 3), groups=3),
            "(2, 4, 8, 8)", "(6, 1, 3, 3)", "groups=3")
    _raises(ShapeError, lambda: conv(torch.randn(2, 4, 8, 8), torch.randn(5, 2, 3, 3), groups=2),
            "(5, 2, 3, 3)", "groups=2")
    _raises(ShapeError, lambda: conv(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(3)),
            "(4, 3, 3, 3)", "(3,)")


@pytest.mark.parametrize("conv", CONVS)
def test_conv_kernel_larger_than_padded_input(conv):
    msg = _raises(ShapeError, lambda: conv(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 7, 7), padding=1),
                  "(1, 1, 4, 4)", "(1, 1, 7, 7)", "padded")
    assert re.search(r"padded size 6", msg)
    # dilation makes the kernel's extent 2*(3-1)+1 = 5 > 4
    _raises(ShapeError, lambda: conv(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3), dilation=2),
            "(1, 1, 4, 4)", "extent 5")


def test_conv_dtype_and_device_mismatch_is_explained():
    _raises(ValueError, lambda: conv2d(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3, dtype=torch.float64)),
            "weight is torch.float64", "input is torch.float32")


def test_conv_module_names_shapes():
    layer = layers.Conv2d(3, 8, 3)
    _raises(ShapeError, lambda: layer(torch.randn(2, 4, 8, 8)), "(2, 4, 8, 8)", "(8, 3, 3, 3)")
    _raises(ShapeError, lambda: layers.Conv2d(4, 6, 3, groups=4), "groups=4")
    _raises(ValueError, lambda: layers.Conv2d(4, 6, 3, padding_mode="reflect"), "padding_mode")
    _raises(ShapeError, lambda: layers.Conv2d(4, 6, 3, padding="same"), "padding='same'")


def test_im2col_col2im_errors():
    _raises(ShapeError, lambda: im2col(torch.randn(8, 8), 3), "(8, 8)")
    _raises(ShapeError, lambda: im2col(torch.randn(1, 1, 2, 2), 3), "(1, 1, 2, 2)", "padded")
    _raises(ShapeError, lambda: col2im(torch.randn(1, 9, 5), (1, 1, 4, 4), 3), "(1, 9, 5)", "(1, 9, 4)")
    _raises(ShapeError, lambda: col2im(torch.randn(1, 9, 4), (4, 4), 3), "(4, 4)")


@pytest.mark.parametrize("pool", [max_pool2d, avg_pool2d])
def test_pool_errors(pool):
    _raises(ShapeError, lambda: pool(torch.randn(3, 8, 8), 2), "(3, 8, 8)", "(N, C, H, W)")
    _raises(ShapeError, lambda: pool(torch.randn(1, 2, 3, 3), 5), "(1, 2, 3, 3)", "does not fit")
    _raises(ShapeError, lambda: pool(torch.randn(1, 2, 8, 8), 2, padding=2), "(1, 2, 8, 8)", "padding[h]=2")


def test_max_pool_window_of_only_padding():
    """A dilated window that jumps over every real pixel is an error, not a silent -inf."""
    _raises(ShapeError, lambda: max_pool2d(torch.randn(1, 1, 1, 8), (2, 1), padding=(1, 0), dilation=(2, 1)),
            "(1, 1, 1, 8)", "only padding")


def test_batch_norm_errors():
    x = torch.randn(4, 3, 5, 5)
    stats = torch.zeros(3), torch.ones(3)
    _raises(ShapeError, lambda: batch_norm(torch.randn(5), *stats, training=True), "(5,)")
    _raises(ShapeError, lambda: batch_norm(x, torch.zeros(4), torch.ones(4)), "(4, 3, 5, 5)", "(4,)", "(3,)")
    _raises(ShapeError, lambda: batch_norm(x, *stats, torch.ones(2), None), "weight", "(2,)")
    _raises(ShapeError, lambda: batch_norm(torch.randn(1, 3), *stats, training=True), "(1, 3)",
            "more than one value per channel")
    _raises(ValueError, lambda: batch_norm(x, None, None, training=False), "eval mode")
    _raises(ShapeError, lambda: layers.BatchNorm2d(3)(torch.randn(4, 3)), "(4, 3)", "(N, C, H, W)")
    _raises(ShapeError, lambda: layers.BatchNorm1d(3)(torch.randn(4, 5)), "(4, 5)", "expected 3")
    _raises(ShapeError, lambda: layers.BatchNorm2d(3)(torch.randn(2, 4, 3, 3)), "(2, 4, 3, 3)", "4 channels")
