"""max_pool2d and avg_pool2d against torch.nn.functional (float64): forward, gradients, ties, indices."""

import random

import pytest
import torch
import torch.nn.functional as F

from cnncourse.layers import avg_pool2d, max_pool2d

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _pool_configs(count: int, seed: int) -> list[dict]:
    """Seeded pooling layers: kernel, stride, padding (<= kernel/2), dilation, ceil mode, input size."""
    rng = random.Random(seed)
    configs = []
    while len(configs) < count:
        kernel = (rng.randint(1, 4), rng.randint(1, 4))
        stride = None if rng.random() < 0.2 else (rng.randint(1, 3), rng.randint(1, 3))
        padding = tuple(rng.randint(0, k // 2) for k in kernel)
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        size = (rng.randint(1, 9), rng.randint(1, 9))
        if any(d * (k - 1) + 1 > s + 2 * p for d, k, s, p in zip(dilation, kernel, size, padding, strict=True)):
            continue
        if any(all(not p <= a * d < p + s for a in range(k)) for d, k, s, p in zip(dilation, kernel, size, padding,
                                                                                  strict=True)):
            continue  # the first window sees only padding: an error (see test_layers_errors.py)
        configs.append(dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation, size=size,
                            ceil_mode=rng.random() < 0.5, n=rng.randint(1, 2), c=rng.randint(1, 3),
                            seed=len(configs)))
    return configs


CONFIGS = _pool_configs(120, seed=7)


def _input(cfg: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(cfg["seed"])
    return torch.randn(cfg["n"], cfg["c"], *cfg["size"], generator=gen, dtype=torch.float64)


def _grads(fn, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(leaf), leaf, grad_out)
    return g


def test_sweep_covers_ceil_mode_padding_and_partial_windows():
    """The sweep contains ceil-mode layers whose last window is partial, padded layers and strided ones."""
    def partial(c):
        stride = c["stride"] or c["kernel"]
        return any((s + 2 * p - d * (k - 1) - 1) % st for s, p, d, k, st in
                   zip(c["size"], c["padding"], c["dilation"], c["kernel"], stride, strict=True))
    assert sum(c["ceil_mode"] and partial(c) for c in CONFIGS) >= 20
    assert sum(max(c["padding"]) > 0 for c in CONFIGS) >= 40
    assert sum(c["stride"] is None for c in CONFIGS) >= 10


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"seed{c['seed']}")
def test_max_pool_matches_torch(cfg):
    """Values, arg-max indices and gradients equal F.max_pool2d's."""
    x = _input(cfg)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"])
    y, idx = max_pool2d(x, *args, cfg["ceil_mode"], dilation=cfg["dilation"], return_indices=True)
    y_ref, idx_ref = F.max_pool2d(x, *args, cfg["dilation"], cfg["ceil_mode"], return_indices=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(idx, idx_ref, rtol=0, atol=0)
    grad_out = torch.randn_like(y_ref)
    ours = _grads(lambda t: max_pool2d(t, *args, cfg["ceil_mode"], dilation=cfg["dilation"]), x, grad_out)
    ref = _grads(lambda t: F.max_pool2d(t, *args, cfg["dilation"], cfg["ceil_mode"]), x, grad_out)
    torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("cfg", CONFIGS[:80], ids=lambda c: f"seed{c['seed']}")
def test_avg_pool_matches_torch(cfg, count_include_pad):
    """Values and gradients equal F.avg_pool2d's, with and without counting the padding."""
    if cfg["dilation"] != (1, 1):
        cfg = {**cfg, "dilation": (1, 1)}  # average pooling has no dilation (as in PyTorch)
    x = _input(cfg)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil_mode"], count_include_pad)
    y_ref = F.avg_pool2d(x, *args)
    torch.testing.assert_close(avg_pool2d(x, *args), y_ref, **TOL)
    grad_out = torch.randn_like(y_ref)
    torch.testing.assert_close(_grads(lambda t: avg_pool2d(t, *args), x, grad_out),
                               _grads(lambda t: F.avg_pool2d(t, *args), x, grad_out), **TOL)


def test_avg_pool_divisor_counts_padding_by_default():
    """A 3x3/1 pool with padding 1 on ones: corners are 4/9 by default (padding counted), 1 without."""
    x = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    y = avg_pool2d(x, 3, 1, 1)
    assert y[0, 0, 0, 0].item() == pytest.approx(4 / 9) and y[0, 0, 0, 1].item() == pytest.approx(6 / 9)
    assert y[0, 0, 1, 1].item() == pytest.approx(1.0)
    torch.testing.assert_close(avg_pool2d(x, 3, 1, 1, count_include_pad=False), torch.ones_like(x))
    torch.testing.assert_close(avg_pool2d(x, 3, 1, 1, divisor_override=2), F.avg_pool2d(x, 3, 1, 1, divisor_override=2))


def test_max_pool_tie_goes_to_first_element_in_row_major_order():
    """Ties: the first maximal element of the window (row-major) gets the whole gradient, as in torch."""
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[0, 0, 1, 1] = 5.0  # three-way tie, (0, 1) comes first
    leaf = x.clone().requires_grad_()
    max_pool2d(leaf, 2).sum().backward()
    expected = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(leaf.grad, expected, rtol=0, atol=0)
    torch.testing.assert_close(leaf.grad, _grads(lambda t: F.max_pool2d(t, 2), x, torch.ones(1, 1, 1, 1,
                               dtype=torch.float64)), rtol=0, atol=0)


def test_max_pool_ties_in_overlapping_windows_accumulate():
    """Constant input, 3x3 windows with stride 1: each window sends its gradient to its own top-left
    element, so exactly the top-left 2x2 block of a 4x4 input receives gradient (1 each)."""
    x = torch.full((1, 1, 4, 4), 2.0, dtype=torch.float64)
    grad = _grads(lambda t: max_pool2d(t, 3, 1), x, torch.ones(1, 1, 2, 2, dtype=torch.float64))
    expected = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    expected[0, 0, :2, :2] = 1.0
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, _grads(lambda t: F.max_pool2d(t, 3, 1), x, torch.ones(1, 1, 2, 2,
                               dtype=torch.float64)), rtol=0, atol=0)
    # One element chosen by all four windows collects the sum of their gradients.
    x[0, 0, 1, 1] = 3.0
    grad = _grads(lambda t: max_pool2d(t, 3, 1), x, torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64))
    assert grad[0, 0, 1, 1].item() == 10.0 and grad.sum().item() == 10.0


def test_max_pool_padding_is_minus_infinity():
    """Negative inputs with padding: the padding (-inf) never wins, unlike zero padding would."""
    x = -torch.arange(1.0, 10.0, dtype=torch.float64).view(1, 1, 3, 3)
    y = max_pool2d(x, 3, 2, 1)
    torch.testing.assert_close(y, F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0)
    assert (y < 0).all()


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_gradcheck(pool):
    """Numerical and hand-written gradients agree (ceil mode, padding, overlapping windows)."""
    gen = torch.Generator().manual_seed(0)
    # Distinct values keep max pooling away from ties, where it is not differentiable.
    x = torch.randperm(2 * 2 * 7 * 6, generator=gen).to(torch.float64).view(2, 2, 7, 6).div(10).requires_grad_()
    if pool == "max":
        assert torch.autograd.gradcheck(lambda t: max_pool2d(t, 3, 2, 1, True, dilation=(1, 2)), (x,))
    else:
        assert torch.autograd.gradcheck(lambda t: avg_pool2d(t, (3, 2), 2, 1, True), (x,))
