"""Checks of a student's answers: exact types, tensors close to a reference, inputs left unchanged.

* :func:`assert_close` compares a returned tensor (a real ``torch.Tensor``) with the expected one.
* :func:`assert_type` checks an answer's exact type (``type(a) is int``: no look-alike objects).
* :func:`inputs_unchanged` fails the test if the code inside modifies the given tensors in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from cnncourse import margins

__all__ = ["assert_close", "assert_type", "inputs_unchanged"]


def assert_type(value: object, expected: type, name: str) -> None:
    """Assert that ``type(value) is expected`` (an ``int`` subclass equal to everything is not an int)."""
    if type(value) is not expected:
        raise AssertionError(f"{name} must be a {expected.__name__}, got a {type(value).__name__}.")


def assert_close(actual: object, expected: object, name: str = "output", *, rtol: float = 1e-5,
                 atol: float = 1e-6, dtype: bool = False) -> None:
    """Assert that ``actual`` is a tensor equal to ``expected`` elementwise within ``atol + rtol * |expected|``.

    Args:
        actual: what the student's code returned: must be a real ``torch.Tensor`` (or ``nn.Parameter``).
        expected: the reference (computed by the test, e.g. with ``torch.nn.functional``): a tensor or a
            number/list.
        name: what is compared, shown first in the failure message, e.g. ``"conv2d_naive(x, w)"``.
        dtype: also require ``actual.dtype == expected.dtype``.

    Raises:
        AssertionError: naming the type, dtype or shapes when they differ, or the number of mismatched
        elements, the largest absolute error, its index, and the expected and actual values there.
    """
    if type(actual) not in (torch.Tensor, nn.Parameter):
        raise AssertionError(f"{name}: the returned value is a {type(actual).__name__}, expected a torch.Tensor.")
    expected_t = expected.detach() if isinstance(expected, torch.Tensor) else torch.as_tensor(expected)
    actual_t = actual.detach()
    if dtype and actual_t.dtype != expected_t.dtype:
        raise AssertionError(f"{name}: dtype {actual_t.dtype} returned, expected {expected_t.dtype} "
                             "(keep the dtype of the input: x.new_zeros, torch.zeros_like ...).")
    if tuple(actual_t.shape) != tuple(expected_t.shape):
        raise AssertionError(
            f"{name}: shape {tuple(actual_t.shape)} returned, expected {tuple(expected_t.shape)} "
            "(check the output-size formula, padding, stride and the order of the axes)."
        )
    a = actual_t.to(torch.float64)
    e = expected_t.to(torch.float64)
    if e.numel() == 0:
        return
    nan_mismatch = torch.isnan(a) != torch.isnan(e)
    error = (a - e).abs().nan_to_num(nan=0.0, posinf=float("inf"))
    error = torch.where(nan_mismatch, torch.full_like(error, float("inf")), error)
    allowed = atol + rtol * e.abs().nan_to_num(nan=0.0)
    bad = (error > allowed) | nan_mismatch
    margins.record(name, "at_most", float((error / allowed).max()), 1.0)  # the worst error as a share of the tolerance
    if not bool(bad.any()):
        return
    flat = int(torch.argmax(error).item())
    where = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), e.shape)) if e.dim() else ()
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {e.numel()} elements differ (shape {tuple(e.shape)}); "
        f"max abs error {float(error.flatten()[flat]):.4g} at index {where}: "
        f"expected {float(e.flatten()[flat]):.6g}, got {float(a.flatten()[flat]):.6g} "
        f"(tolerance atol={atol:g}, rtol={rtol:g})."
    )


@contextlib.contextmanager
def inputs_unchanged(what: str, **inputs: torch.Tensor) -> Iterator[None]:
    """Fail if the code inside changes any of ``inputs`` in place, e.g. ``grad_y /= k * k``.

    Example: ``with inputs_unchanged("avg_pool2d_backward", grad_y=grad_y, x=x): ...``.
    """
    copies = {name: t.detach().clone() for name, t in inputs.items()}
    yield
    for name, t in inputs.items():
        if t.shape != copies[name].shape or not torch.equal(t.detach(), copies[name]):
            raise AssertionError(f"{what} changed its input {name} in place; work on new tensors "
                                 "(e.g. grad_y / k instead of grad_y /= k).")
