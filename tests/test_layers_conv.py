"""conv2d_naive, im2col/col2im and conv2d against torch.nn.functional, forward and backward (float64)."""

import random

import pytest
import torch
import torch.nn.functional as F

from cnncourse.layers import col2im, conv2d, conv2d_naive, im2col

TOL = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture(autouse=True)
def _native_reference_kernels():
    """Reference F.conv2d through torch's native CPU kernel instead of oneDNN for these tests.

    oneDNN builds a kernel for every new shape (about 20 ms each); over ~150 distinct tiny float64 shapes
    that set-up would dominate the run. The native kernel is still torch.nn.functional.conv2d. The float32
    test below and the resnet test in test_layers_modules.py compare against oneDNN itself.
    """
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


def _conv_configs(count: int, seed: int) -> list[dict]:
    """Seeded random convolutions: shapes, strides, paddings, dilations, groups (incl. depthwise), bias."""
    rng = random.Random(seed)
    configs = []
    while len(configs) < count:
        kind = rng.choice(["dense", "dense", "grouped", "depthwise"])
        groups = 1 if kind == "dense" else rng.randint(2, 3)
        cin_per_group = 1 if kind == "depthwise" else rng.randint(1, 3)
        filters_per_group = rng.randint(1, 2) if kind == "depthwise" else rng.randint(1, 3)
        kernel = (rng.randint(1, 4), rng.randint(1, 4))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        size = (rng.randint(1, 8), rng.randint(1, 8))
        if any(d * (k - 1) + 1 > s + 2 * p for d, k, s, p in zip(dilation, kernel, size, padding, strict=True)):
            continue  # kernel larger than the padded input: covered by the error tests
        configs.append(dict(n=rng.randint(1, 3), cin=cin_per_group * groups, cout=filters_per_group * groups,
                            kernel=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                            size=size, bias=rng.random() < 0.7, seed=len(configs)))
    return configs


CONFIGS = _conv_configs(150, seed=2024)


def _tensors(cfg: dict, device: str = "cpu"):
    gen = torch.Generator().manual_seed(cfg["seed"])
    x = torch.randn(cfg["n"], cfg["cin"], *cfg["size"], generator=gen, dtype=torch.float64)
    w = torch.randn(cfg["cout"], cfg["cin"] // cfg["groups"], *cfg["kernel"], generator=gen, dtype=torch.float64)
    b = torch.randn(cfg["cout"], generator=gen, dtype=torch.float64) if cfg["bias"] else None
    return x.to(device), w.to(device), None if b is None else b.to(device)


def _kwargs(cfg: dict) -> dict:
    return {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}


def test_sweep_covers_depthwise_grouped_strided_dilated_and_padded():
    """The seeded sweep really contains the cases the issue names."""
    assert sum(c["groups"] == c["cin"] > 1 for c in CONFIGS) >= 10  # depthwise
    assert sum(1 < c["groups"] < c["cin"] for c in CONFIGS) >= 10  # grouped, not depthwise
    assert sum(max(c["stride"]) > 1 for c in CONFIGS) >= 50
    assert sum(max(c["dilation"]) > 1 for c in CONFIGS) >= 50
    assert sum(max(c["padding"]) > 0 for c in CONFIGS) >= 50
    assert sum(not c["bias"] for c in CONFIGS) >= 20


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"seed{c['seed']}")
def test_forward_and_gradients_match_torch(cfg):
    """Naive and im2col forward equal F.conv2d; im2col's hand-written gradients equal torch's."""
    x, w, b = _tensors(cfg)
    expected = F.conv2d(x, w, b, **_kwargs(cfg))
    torch.testing.assert_close(conv2d_naive(x, w, b, **_kwargs(cfg)), expected, **TOL)

    leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    ours = conv2d(leaves[0], leaves[1], leaves[2] if b is not None else None, **_kwargs(cfg))
    torch.testing.assert_close(ours, expected, **TOL)
    grad_out = torch.randn_like(expected)
    got = torch.autograd.grad(ours, leaves, grad_out)
    refs = [t.clone().requires_grad_() for t in leaves]
    want = torch.autograd.grad(F.conv2d(refs[0], refs[1], refs[2] if b is not None else None, **_kwargs(cfg)),
                               refs, grad_out)
    for name, g, r in zip(("input", "weight", "bias"), got, want, strict=False):
        torch.testing.assert_close(g, r, **TOL, msg=lambda m, name=name: f"grad wrt {name}: {m}")


@pytest.mark.parametrize("cfg", CONFIGS[:40], ids=lambda c: f"seed{c['seed']}")
def test_im2col_and_col2im_match_unfold_and_fold(cfg):
    """im2col has F.unfold's layout; col2im is F.fold (which sums overlapping windows)."""
    x, _, _ = _tensors(cfg)
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    cols = im2col(x, cfg["kernel"], **geo)
    torch.testing.assert_close(cols, F.unfold(x, cfg["kernel"], **geo), rtol=0, atol=0)
    noise = torch.randn_like(cols)
    torch.testing.assert_close(col2im(noise, x.shape, cfg["kernel"], **geo),
                               F.fold(noise, x.shape[2:], cfg["kernel"], **geo), **TOL)


def test_col2im_adds_overlapping_windows():
    """col2im(im2col(ones)) counts, per pixel, the windows that contain it: contributions are added."""
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    counts = col2im(im2col(x, 3, padding=1), x.shape, 3, padding=1)
    # A corner pixel lies in 4 of the 16 padded 3x3 windows, an edge pixel in 6, an inner pixel in 9.
    expected = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=torch.float64)
    torch.testing.assert_close(counts[0, 0], expected, rtol=0, atol=0)


def test_im2col_is_adjoint_of_col2im():
    """<im2col(x), c> == <x, col2im(c)>: col2im is exactly the transpose backprop needs."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64)
    geo = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    cols = im2col(x, **geo)
    c = torch.randn(cols.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close((cols * c).sum(), (x * col2im(c, x.shape, **geo)).sum(), **TOL)


@pytest.mark.parametrize("groups, bias", [(1, True), (2, False), (4, True)])
def test_gradcheck(groups, bias):
    """Numerical and hand-written gradients agree (input, weight, bias), incl. depthwise groups=C."""
    gen = torch.Generator().manual_seed(groups)
    x = torch.randn(2, 4, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4 // groups, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, w, b) if bias else (x, w)
    assert torch.autograd.gradcheck(
        lambda x, w, b=None: conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=groups), inputs)


def test_backward_is_the_hand_written_one():
    """conv2d's graph node is our autograd.Function, not autograd of a torch convolution."""
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    y = conv2d(x, w)
    assert "Conv2dFunction" in type(y.grad_fn).__name__
    assert "Convolution" not in type(y.grad_fn).__name__


def test_float32_matches_torch():
    """The layers work in float32 too (the dtype models use), within float32 rounding (oneDNN reference)."""
    torch.backends.mkldnn.enabled = True  # the autouse fixture restores the setting afterwards
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 9, 9, generator=gen)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    b = torch.randn(6, generator=gen)
    expected = F.conv2d(x, w, b, 2, 1, 1, 2)
    torch.testing.assert_close(conv2d(x, w, b, 2, 1, 1, 2), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv2d_naive(x, w, b, 2, 1, 1, 2), expected, rtol=1e-5, atol=1e-5)
