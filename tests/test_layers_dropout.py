"""Inverted dropout: unbiased in expectation, drops a fraction p, identity in eval, validates p."""

import math

import pytest
import torch

from cnncourse.layers import Dropout, dropout

N = 400_000  # elements per draw; bounds below are 6 standard deviations


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mean_is_preserved_and_fraction_p_is_dropped(p):
    """Over 400k elements: mean within 6 sigma of the input's, zero fraction within 6 sigma of p."""
    torch.manual_seed(0)
    x = torch.full((N,), 2.0, dtype=torch.float64)
    y = dropout(x, p, training=True)
    # Each output is 2/(1-p) with probability 1-p, else 0: mean 2, variance 4 p/(1-p).
    sigma_mean = math.sqrt(4 * p / (1 - p) / N)
    assert abs(y.mean().item() - 2.0) < 6 * sigma_mean
    zero_fraction = (y == 0).double().mean().item()
    assert abs(zero_fraction - p) < 6 * math.sqrt(p * (1 - p) / N)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0 / (1 - p)), rtol=0, atol=1e-12)


def test_mean_over_many_draws_of_a_random_input():
    """Averaged over 2000 draws, the output approaches the (non-constant) input elementwise."""
    torch.manual_seed(1)
    x = torch.randn(500, dtype=torch.float64)
    p, draws = 0.3, 2000
    mean = torch.stack([dropout(x, p) for _ in range(draws)]).mean(0)
    sigma = x.abs() * math.sqrt(p / (1 - p) / draws)
    assert ((mean - x).abs() <= 6 * sigma + 1e-12).all()


def test_gradient_is_the_same_mask_and_scale():
    """dL/dx = mask / (1 - p): zero where dropped, 1/(1-p) where kept."""
    torch.manual_seed(2)
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).double() / 0.75)


def test_eval_is_identity_and_p_zero_too():
    """In eval mode (and with p = 0) the input comes back untouched."""
    x = torch.randn(3, 4)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    layer = Dropout(0.7).eval()
    assert torch.equal(layer(x), x)


def test_seeded_draws_are_reproducible_and_differ_between_calls():
    """torch.manual_seed fixes the mask; consecutive calls draw new masks."""
    x = torch.ones(1000)
    torch.manual_seed(3)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), a)
    assert not torch.equal(a, b)


def test_module_matches_function_and_inplace_overwrites():
    """Dropout module in training mode is the function; inplace=True writes into the input."""
    x = torch.ones(100)
    torch.manual_seed(4)
    expected = dropout(x, 0.4)
    torch.manual_seed(4)
    assert torch.equal(Dropout(0.4).train()(x), expected)
    torch.manual_seed(4)
    y = Dropout(0.4, inplace=True)(x)
    assert y is x and torch.equal(x, expected)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_p_outside_zero_one_is_rejected(p):
    """p must be in [0, 1): the message names the bad p."""
    with pytest.raises(ValueError, match=rf"\[0, 1\), got {p}"):
        dropout(torch.ones(3), p)
    with pytest.raises(ValueError, match=rf"got {p}"):
        Dropout(p)


def test_p_of_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="p must be a float"):
        dropout(torch.ones(3), "0.5")
