"""cnncourse.grading: assert_close's messages and the from_scratch guard (in-process, fast)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from cnncourse import grading
from cnncourse.grading import LibraryCallError, assert_close, from_scratch


def test_assert_close_passes_within_tolerance():
    """Equal tensors, float32 vs float64, and a tensor vs an expected number or list pass."""
    x = torch.randn(2, 3)
    assert_close(x, x.double() + 1e-9)
    assert_close(torch.tensor(3), 3)
    assert_close(torch.tensor([1.0, 2.0]), [1.0, 2.0])


def test_assert_close_message_names_error_location_and_values():
    """The failure gives the name, mismatch count, max abs error, its index, expected and got."""
    expected = torch.zeros(2, 3, 4)
    actual = expected.clone()
    actual[1, 2, 3] = 0.5
    actual[0, 0, 0] = 0.1
    with pytest.raises(AssertionError) as err:
        assert_close(actual, expected, "conv2d_naive(x, w)")
    msg = str(err.value)
    assert msg.startswith("conv2d_naive(x, w): 2 of 24 elements differ (shape (2, 3, 4))")
    assert "max abs error 0.5 at index (1, 2, 3)" in msg
    assert "expected 0, got 0.5" in msg


def test_assert_close_shape_and_type_messages():
    """Wrong shape and a non-tensor result are reported as such, not as a torch traceback."""
    with pytest.raises(AssertionError, match=r"y: shape \(1, 2\) returned, expected \(2, 1\)"):
        assert_close(torch.zeros(1, 2), torch.zeros(2, 1), "y")
    with pytest.raises(AssertionError, match="the returned value is a NoneType"):
        assert_close(None, torch.zeros(1), "y")


def test_assert_close_nan_is_a_mismatch():
    """A NaN where a number is expected fails (and NaN == NaN passes)."""
    with pytest.raises(AssertionError, match="1 of 2 elements differ"):
        assert_close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    assert_close(torch.tensor([float("nan")]), torch.tensor([float("nan")]))


x4 = torch.randn(1, 2, 6, 6)
w4 = torch.randn(3, 2, 3, 3)

LIBRARY_CALLS = {
    "F.conv2d": lambda: F.conv2d(x4, w4),
    "torch.conv2d": lambda: torch.conv2d(x4, w4),
    "torch.convolution": lambda: torch.convolution(x4, w4, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    "aten.convolution": lambda: torch.ops.aten.convolution.default(x4, w4, None, [1, 1], [0, 0], [1, 1], False,
                                                                    [0, 0], 1),
    "nn.Conv2d": lambda: torch.nn.Conv2d(2, 3, 3)(x4),
    "F.conv_transpose2d": lambda: F.conv_transpose2d(x4, w4.transpose(0, 1)),
    "F.unfold": lambda: F.unfold(x4, 3),
    "torch._C._nn.im2col": lambda: torch._C._nn.im2col(x4, [3, 3], [1, 1], [0, 0], [1, 1]),
    "Tensor.unfold": lambda: x4.unfold(2, 3, 1),
    "F.fold": lambda: F.fold(torch.randn(1, 18, 16), (6, 6), 3),
    "nn.Fold": lambda: torch.nn.Fold((6, 6), 3)(torch.randn(1, 18, 16)),
    "F.max_pool2d": lambda: F.max_pool2d(x4, 2),
    "F.max_pool2d(return_indices)": lambda: F.max_pool2d(x4, 2, return_indices=True),
    "torch.max_pool2d": lambda: torch.max_pool2d(x4, 2),
    "nn.MaxPool2d": lambda: torch.nn.MaxPool2d(2)(x4),
    "F.avg_pool2d": lambda: F.avg_pool2d(x4, 2),
    "torch._C._nn.avg_pool2d": lambda: torch._C._nn.avg_pool2d(x4, 2),
    "F.adaptive_avg_pool2d": lambda: F.adaptive_avg_pool2d(x4, 1),
    "F.adaptive_max_pool2d": lambda: F.adaptive_max_pool2d(x4, 1),
    "F.lp_pool2d": lambda: F.lp_pool2d(x4, 2, 2),
}


@pytest.mark.parametrize("call", LIBRARY_CALLS.values(), ids=LIBRARY_CALLS.keys())
def test_from_scratch_catches_library_calls_and_aliases(call):
    """Every library convolution/unfold/fold/pooling entry point fails inside the guard."""
    with pytest.raises(LibraryCallError, match="my_conv must be implemented from scratch, but it called"):
        with from_scratch("my_conv", forbid="a1"):
            call()
    call()  # and works again afterwards


def test_from_scratch_allows_plain_tensor_code():
    """Slicing, padding, matmul, einsum, reductions, scatter_add_ and autograd (by default) are allowed."""
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    with from_scratch("ok", forbid="a1"):
        p = F.pad(x, (1, 1, 1, 1))
        y = torch.einsum("nchw,c->nhw", p[:, :, ::2, 1::2], torch.ones(3)) @ torch.ones(3, 1)
        z = x.amax(dim=(2, 3)) + x.argmax(dim=1).float().sum()
        torch.zeros(4).scatter_add_(0, torch.tensor([0, 1]), torch.ones(2))
        (y.sum() + z.sum()).backward()
    assert x.grad is not None


def test_from_scratch_without_autograd():
    """With autograd=False, Tensor.backward and torch.autograd.grad are library calls too."""
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(LibraryCallError, match="backward"):
        with from_scratch("grad_fn", forbid="autograd"):
            (x * 2).sum().backward()
    with pytest.raises(LibraryCallError, match="grad"):
        with from_scratch("grad_fn", forbid="autograd"):
            torch.autograd.grad((x * 2).sum(), x)


def test_from_scratch_error_survives_a_swallowing_except():
    """A student who catches the guard's error and falls back still fails when the block ends."""
    def sneaky(x):
        try:
            return F.max_pool2d(x, 2)
        except Exception:
            return x[:, :, ::2, ::2]

    with pytest.raises(LibraryCallError, match="max_pool2d"):
        with from_scratch("sneaky", forbid="a1"):
            sneaky(x4)


@pytest.fixture
def fake_layers(monkeypatch):
    """A stand-in cnncourse.layers module (the real one may not exist yet), matched by module name."""
    module = types.ModuleType("cnncourse.layers")
    exec("import torch\n\ndef conv2d(x, w):\n    return torch.zeros(1) + x.sum()\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "cnncourse.layers", module)
    return module


def test_from_scratch_forbids_cnncourse_layers(fake_layers):
    """Calling cnncourse.layers, through the module or an alias imported earlier, fails in the guard."""
    alias = fake_layers.conv2d  # e.g. `from cnncourse.layers import conv2d` before the test cell ran
    original = fake_layers.conv2d
    with pytest.raises(LibraryCallError, match="cnncourse.layers.conv2d"):
        with from_scratch("conv2d_naive", forbid="a1"):
            fake_layers.conv2d(x4, w4)
    with pytest.raises(LibraryCallError, match="cnncourse.layers.conv2d"):
        with from_scratch("conv2d_naive", forbid="a1"):
            alias(x4, w4)
    assert fake_layers.conv2d is original
    fake_layers.conv2d(x4, w4)  # allowed outside the guard


def test_from_scratch_forbids_model_blocks():
    """forbid="a3": building or running a block of cnncourse.models or torchvision.models fails; nn layers do not."""
    from torch import nn
    from torchvision.models.resnet import BasicBlock as TorchvisionBlock

    from cnncourse.models.resnet import BasicBlock

    class Subclassed(BasicBlock):  # a student's block that inherits the course's forward
        pass

    for build in (lambda: BasicBlock(4, 4), lambda: TorchvisionBlock(4, 4), lambda: Subclassed(4, 4)):
        with pytest.raises(LibraryCallError, match="cnncourse.models|torchvision.models"):
            with from_scratch("BasicBlock", forbid="a3"):
                build()
    block = BasicBlock(4, 4)  # built outside the guard, run inside it
    with pytest.raises(LibraryCallError, match="cnncourse.models.resnet.forward"):
        with from_scratch("BasicBlock", forbid="a3"):
            block(torch.randn(2, 4, 5, 5))
    with from_scratch("BasicBlock", forbid="a3"):
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())(torch.randn(2, 4, 5, 5))


def test_grader_cannot_be_monkeypatched():
    """A student cell cannot replace cnncourse.grading.assert_close (the test cells re-import it)."""
    with pytest.raises(AttributeError, match="cannot be replaced"):
        grading.assert_close = lambda *args, **kwargs: None
    with pytest.raises(AssertionError):
        grading.assert_close(torch.zeros(1), torch.ones(1))
