"""Device-agnostic layers: on "meta" tensors everywhere, and on CUDA (equal to torch's) where a GPU is.

The CUDA tests are skipped, with the reason shown, on machines without a CUDA device such as the course's
CPU-only CI. The meta-device test runs everywhere: any tensor the layers created on the CPU behind the
input's back would make it fail with a device mismatch.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision

from cnncourse import layers

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
TOL = {"rtol": 1e-9, "atol": 1e-10}
DEV = "cuda"


def _grads(fn, leaves, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = fn(*leaves)
    return out, torch.autograd.grad(out, leaves, grad_out)


def test_every_layer_stays_on_the_input_device():
    """Forward and backward of every layer on the meta device: nothing is created on the CPU."""
    d = "meta"
    x = torch.randn(2, 4, 9, 8, device=d, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, device=d, requires_grad=True)
    b = torch.randn(6, device=d, requires_grad=True)
    outputs = [
        layers.conv2d(x, w, b, 2, 1, (1, 2), 2),
        layers.conv2d_naive(x[:, :, :4, :4], w, b, groups=2),
        layers.max_pool2d(x, 3, 2, 1, True),
        layers.max_pool2d(x, 2, return_indices=True)[1],
        layers.avg_pool2d(x, 3, 2, 1, True),
        layers.avg_pool2d(x, 3, 2, 1, False, False),
        layers.avg_pool2d(x, 2, divisor_override=3),
        layers.batch_norm(x, torch.zeros(4, device=d), torch.ones(4, device=d), torch.ones(4, device=d),
                          torch.zeros(4, device=d), True),
        layers.dropout(x, 0.3),
        layers.Conv2d(4, 6, 3, device=d)(x),
        layers.BatchNorm2d(4, device=d)(x),
    ]
    for out in outputs:
        assert out.device.type == d
    for out in outputs:
        if out.requires_grad:
            out.sum().backward()
    assert x.grad.device.type == d and w.grad.device.type == d


@cuda
@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), ((2, 1), (0, 2), (1, 2), 2),
                                                               (2, 1, 1, 4)])
def test_conv_on_cuda(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, 8, generator=gen, dtype=torch.float64).to(DEV)
    w = torch.randn(8, 4 // groups, 3, 3, generator=gen, dtype=torch.float64).to(DEV)
    b = torch.randn(8, generator=gen, dtype=torch.float64).to(DEV)
    ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
    g = torch.randn_like(ref)
    ours, grads = _grads(lambda x, w, b: layers.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b), g)
    _, want = _grads(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b), g)
    assert ours.device.type == "cuda"
    torch.testing.assert_close(ours, ref, **TOL)
    for a, r in zip(grads, want, strict=True):
        torch.testing.assert_close(a, r, **TOL)
    torch.testing.assert_close(layers.conv2d_naive(x, w, b, stride, padding, dilation, groups), ref, **TOL)


@cuda
def test_pools_on_cuda():
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, device=DEV)
    y, idx = layers.max_pool2d(x, 3, 2, 1, True, return_indices=True)
    y_ref, idx_ref = F.max_pool2d(x, 3, 2, 1, 1, True, True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(idx, idx_ref, rtol=0, atol=0)
    g = torch.randn_like(y_ref)
    for ours, ref in [(lambda t: layers.max_pool2d(t, 3, 2, 1, True), lambda t: F.max_pool2d(t, 3, 2, 1, 1, True)),
                      (lambda t: layers.avg_pool2d(t, 3, 2, 1, True), lambda t: F.avg_pool2d(t, 3, 2, 1, True))]:
        a, (ga,) = _grads(ours, (x,), g)
        r, (gr,) = _grads(ref, (x,), g)
        torch.testing.assert_close(a, r, **TOL)
        torch.testing.assert_close(ga, gr, **TOL)
    # Tie rule on the GPU too: the first maximum of the window.
    ones = torch.ones(1, 1, 4, 4, dtype=torch.float64, device=DEV)
    _, (ga,) = _grads(lambda t: layers.max_pool2d(t, 2), (ones,), torch.ones(1, 1, 2, 2, dtype=torch.float64,
                                                                               device=DEV))
    _, (gr,) = _grads(lambda t: F.max_pool2d(t, 2), (ones,), torch.ones(1, 1, 2, 2, dtype=torch.float64, device=DEV))
    torch.testing.assert_close(ga, gr, rtol=0, atol=0)


@cuda
def test_batch_norm_and_dropout_on_cuda():
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64, device=DEV)
    w, b = torch.rand(3, dtype=torch.float64, device=DEV) + 0.5, torch.randn(3, dtype=torch.float64, device=DEV)
    mean, var = torch.zeros(3, dtype=torch.float64, device=DEV), torch.ones(3, dtype=torch.float64, device=DEV)
    mean_ref, var_ref = mean.clone(), var.clone()
    g = torch.randn_like(x)
    y, grads = _grads(lambda x, w, b: layers.batch_norm(x, mean, var, w, b, True), (x, w, b), g)
    y_ref, want = _grads(lambda x, w, b: F.batch_norm(x, mean_ref, var_ref, w, b, True), (x, w, b), g)
    torch.testing.assert_close(y, y_ref, **TOL)
    for a, r in zip(grads, want, strict=True):
        torch.testing.assert_close(a, r, **TOL)
    torch.testing.assert_close(mean, mean_ref, **TOL)
    torch.testing.assert_close(var, var_ref, **TOL)
    ones = torch.ones(200_000, dtype=torch.float64, device=DEV)
    out = layers.dropout(ones, 0.5)
    assert out.device.type == "cuda"
    assert abs(out.mean().item() - 1.0) < 6 * (1 / 200_000) ** 0.5
    assert abs((out == 0).double().mean().item() - 0.5) < 6 * (0.25 / 200_000) ** 0.5
    assert layers.dropout(ones, 0.5, training=False) is ones


@cuda
def test_resnet18_swapped_on_cuda():
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=4).double().to(DEV)
    ours = copy.deepcopy(theirs)
    layers.swap_layers(ours)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, device=DEV)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), **TOL)
        torch.testing.assert_close(ours.train()(x), theirs.train()(x), **TOL)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, **TOL)
