"""batch_norm against F.batch_norm (float64): train/eval forward, running statistics, gradients."""

import random

import pytest
import torch
import torch.nn.functional as F

from cnncourse.layers import batch_norm

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _bn_configs(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    shapes = [lambda: (rng.randint(2, 8), rng.randint(1, 5)),  # (N, C)
              lambda: (rng.randint(1, 4), rng.randint(1, 4), rng.randint(2, 5)),  # (N, C, L)
              lambda: (rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 5), rng.randint(2, 5))]  # (N, C, H, W)
    return [dict(shape=rng.choice(shapes)(), affine=rng.random() < 0.75, momentum=rng.choice([0.1, 0.01, 0.5, 1.0]),
                 eps=rng.choice([1e-5, 1e-3]), seed=i) for i in range(count)]


CONFIGS = _bn_configs(60, seed=5)


def _state(cfg: dict):
    gen = torch.Generator().manual_seed(cfg["seed"])
    c = cfg["shape"][1]
    xs = [torch.randn(cfg["shape"], generator=gen, dtype=torch.float64) * 3 + 1 for _ in range(3)]
    weight = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5 if cfg["affine"] else None
    bias = torch.randn(c, generator=gen, dtype=torch.float64) if cfg["affine"] else None
    mean = torch.randn(c, generator=gen, dtype=torch.float64)
    var = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
    return xs, weight, bias, mean, var


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"seed{c['seed']}-{len(c['shape'])}d")
def test_training_steps_match_torch(cfg):
    """Three training steps: outputs, in-place running statistics and gradients equal torch's; then eval."""
    xs, weight, bias, mean, var = _state(cfg)
    ours_mean, ours_var, ref_mean, ref_var = mean.clone(), var.clone(), mean.clone(), var.clone()
    params = [t for t in (weight, bias) if t is not None]
    for x in xs:
        leaves = [x.clone().requires_grad_(), *(p.clone().requires_grad_() for p in params)]
        refs = [t.detach().clone().requires_grad_() for t in leaves]
        wb = leaves[1:] if params else [None, None]
        wb_ref = refs[1:] if params else [None, None]
        y = batch_norm(leaves[0], ours_mean, ours_var, *wb, True, cfg["momentum"], cfg["eps"])
        y_ref = F.batch_norm(refs[0], ref_mean, ref_var, *wb_ref, True, cfg["momentum"], cfg["eps"])
        torch.testing.assert_close(y, y_ref, **TOL)
        torch.testing.assert_close(ours_mean, ref_mean, **TOL)
        torch.testing.assert_close(ours_var, ref_var, **TOL)
        grad_out = torch.randn_like(y_ref)
        for g, r in zip(torch.autograd.grad(y, leaves, grad_out), torch.autograd.grad(y_ref, refs, grad_out),
                        strict=True):
            torch.testing.assert_close(g, r, **TOL)
    assert not torch.equal(ours_mean, mean)  # the running statistics did move
    # Eval mode uses (and leaves alone) the running statistics.
    x = xs[0].clone().requires_grad_()
    x_ref = xs[0].clone().requires_grad_()
    before = ours_mean.clone(), ours_var.clone()
    y = batch_norm(x, ours_mean, ours_var, weight, bias, False, cfg["momentum"], cfg["eps"])
    y_ref = F.batch_norm(x_ref, ref_mean, ref_var, weight, bias, False, cfg["momentum"], cfg["eps"])
    torch.testing.assert_close(y, y_ref, **TOL)
    assert torch.equal(ours_mean, before[0]) and torch.equal(ours_var, before[1])
    grad_out = torch.randn_like(y_ref)
    torch.testing.assert_close(torch.autograd.grad(y, x, grad_out)[0], torch.autograd.grad(y_ref, x_ref, grad_out)[0],
                               **TOL)


def test_running_variance_is_unbiased_and_normalization_biased():
    """One step with momentum 1 copies the batch statistics: var with M - 1 in the estimate, M in y."""
    x = torch.tensor([[1.0], [2.0], [3.0], [6.0]], dtype=torch.float64)  # mean 3, biased var 3.5, unbiased 14/3
    mean, var = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    y = batch_norm(x, mean, var, training=True, momentum=1.0, eps=0.0)
    assert mean.item() == pytest.approx(3.0) and var.item() == pytest.approx(14 / 3)
    torch.testing.assert_close(y, (x - 3.0) / 3.5**0.5)


def test_batch_statistics_without_running_ones():
    """running_mean=running_var=None in training (track_running_stats=False) normalizes by the batch."""
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(batch_norm(x, None, None, training=True), F.batch_norm(x, None, None, training=True),
                               **TOL)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3, 2)])
def test_gradcheck(shape, training):
    """Numerical and hand-written gradients agree for x, weight and bias, in both modes."""
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    # Training-mode gradcheck must not drift the running statistics between its evaluations: pass None.
    stats = (None, None) if training else (mean, var)
    assert torch.autograd.gradcheck(lambda x, w, b: batch_norm(x, *stats, w, b, training), (x, w, b))
