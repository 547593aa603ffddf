"""Module wrappers: torch.nn's names and state_dicts both ways, and a resnet18 with our layers swapped in."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from cnncourse import layers

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial parameters and running statistics, so that loading them really matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
    return module


CONV_ARGS = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0), bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4),
    dict(in_channels=6, out_channels=4, kernel_size=2, stride=2, groups=2),
]


@pytest.mark.parametrize("kwargs", CONV_ARGS, ids=str)
def test_conv2d_state_dict_moves_both_ways(kwargs):
    """Same parameter names and shapes as nn.Conv2d; strict loading either way gives the same output."""
    torch.manual_seed(0)
    theirs = _randomize_(nn.Conv2d(**kwargs, dtype=torch.float64), 1)
    ours = layers.Conv2d(**kwargs, dtype=torch.float64)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, kwargs["in_channels"], 7, 8, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)
    _randomize_(ours, 2)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_conv2d_initialization_matches_torch():
    """Same default initialization (Kaiming-uniform a=sqrt(5)): same seed, same weights."""
    torch.manual_seed(5)
    theirs = nn.Conv2d(3, 8, 5, groups=1)
    torch.manual_seed(5)
    ours = layers.Conv2d(3, 8, 5, groups=1)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


@pytest.mark.parametrize("cls, shape", [("BatchNorm2d", (4, 3, 5, 5)), ("BatchNorm1d", (6, 3)),
                                        ("BatchNorm1d", (4, 3, 7))])
@pytest.mark.parametrize("options", [dict(), dict(momentum=None), dict(affine=False),
                                     dict(track_running_stats=False)], ids=str)
def test_batchnorm_trains_like_torch_and_state_dict_moves_both_ways(cls, shape, options):
    """Names (incl. num_batches_tracked), outputs and running statistics over train steps and eval."""
    theirs = getattr(nn, cls)(3, **options, dtype=torch.float64)
    ours = getattr(layers, cls)(3, **options, dtype=torch.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _randomize_(theirs, 3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(4)
    for _ in range(4):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
        torch.testing.assert_close(ours(x), theirs(x), **TOL)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"{name}: {m}")
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), **TOL)
    theirs.load_state_dict(ours.state_dict(), strict=True)  # and back


def test_pool_and_dropout_modules_take_torch_arguments():
    """MaxPool2d/AvgPool2d/Dropout accept nn's constructor arguments and compute the same."""
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    pairs = [
        (layers.MaxPool2d(3, 2, 1, 1, False, True), nn.MaxPool2d(3, 2, 1, 1, False, True)),
        (layers.MaxPool2d(kernel_size=2, dilation=2), nn.MaxPool2d(kernel_size=2, dilation=2)),
        (layers.AvgPool2d(3, 2, 1, True, False), nn.AvgPool2d(3, 2, 1, True, False)),
        (layers.AvgPool2d(2, divisor_override=3), nn.AvgPool2d(2, divisor_override=3)),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours(x), theirs(x), **TOL)
        assert ours.state_dict() == theirs.state_dict() == {}
    y, idx = layers.MaxPool2d(2, return_indices=True)(x)
    torch.testing.assert_close(idx, nn.MaxPool2d(2, return_indices=True)(x)[1], rtol=0, atol=0)
    assert layers.Dropout(p=0.2, inplace=False).p == 0.2


def _resnet(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=num_classes).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random BN affine parameters and running statistics, not the trivial 1/0 ones
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return model


def test_resnet18_with_our_layers_gives_the_same_logits_gradients_and_running_stats():
    """Every Conv2d, BatchNorm2d and MaxPool2d of torchvision's resnet18 swapped for ours: same logits
    in eval mode; in train mode the same logits, parameter gradients and updated running statistics."""
    theirs = _resnet()
    ours = copy.deepcopy(theirs)
    swapped = layers.swap_layers(ours)
    assert swapped == 20 + 20 + 1  # resnet18: 20 convolutions (3 of them downsampling), 20 batch norms, 1 pool
    kinds = {type(m) for m in ours.modules()}
    assert not kinds & {nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d}
    assert {layers.Conv2d, layers.BatchNorm2d, layers.MaxPool2d} <= kinds
    assert list(ours.state_dict()) == list(theirs.state_dict())

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    theirs.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **TOL)

    theirs.train(), ours.train()
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, **TOL)
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"{name}: {m}")
    assert ours.layer1[0].bn1.num_batches_tracked.item() == 1


def test_resnet18_float32_default_dtype():
    """In float32 (oneDNN reference kernels) the swapped model agrees to float32 rounding."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=3).eval()
    ours = copy.deepcopy(theirs)
    layers.swap_layers(ours)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
