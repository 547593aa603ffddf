"""Checks that compare a measured quantity with a bar, and can record how close each one came.

Test cells whose outcome depends on random draws, training or the order of floating-point sums use these
instead of a bare ``assert``, so that ``benchmarks/grading_margins.py`` can run the reference solution's
checks over many seeds, thread counts and CPU kernels and write, for every check, the worst value seen next
to the bar (``benchmarks/results/grading_margins.json``)::

    within(w.var().item(), std ** 2, 6 * se, "he_normal((200, 150)): variance", unit=se)
    at_least(median_accuracy, 0.90, "median held-out accuracy of 3 trainings")
    sample_like(w, std, "normal", "he_normal((200, 150))")  # mean, variance and tail of a random init

Outside :func:`recording` they are plain assertions with a message that names the value, the bar and the
tolerance.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

__all__ = ["Measurement", "within", "at_least", "at_most", "sample_like", "record", "recording"]


@dataclass(frozen=True)
class Measurement:
    """One check as it ran: ``value`` compared with ``bar`` (``kind`` says how); ``margin >= 0`` means it passed.

    ``kind`` is ``"within"`` (``value`` is ``|measured - target|`` in ``unit``\\ s, ``bar`` the tolerance in
    the same units), ``"at_least"`` (``value >= bar``) or ``"at_most"`` (``value <= bar``).
    """

    check: str
    kind: str
    value: float
    bar: float

    @property
    def margin(self) -> float:
        return self.value - self.bar if self.kind == "at_least" else self.bar - self.value

    def as_dict(self) -> dict:
        return {**asdict(self), "margin": self.margin}


_LOG: list[Measurement] | None = None


def record(check: str, kind: str, value: float, bar: float) -> None:
    """Add a measurement to the log of the enclosing :func:`recording` (no-op outside one)."""
    if _LOG is not None:
        _LOG.append(Measurement(check, kind, float(value), float(bar)))


@contextlib.contextmanager
def recording() -> Iterator[list[Measurement]]:
    """Collect every check made inside into the yielded list (for ``benchmarks/grading_margins.py``)."""
    global _LOG
    outer, _LOG = _LOG, []
    try:
        yield _LOG
    finally:
        _LOG = outer


def within(value: float, target: float, tol: float, what: str, *, unit: float | None = None) -> None:
    """Assert ``|value - target| <= tol``; ``unit`` (e.g. a standard error) is how the margin is recorded.

    Raises:
        AssertionError: ``"<what> <value>, expected <target> ± <tol>"`` (and the tolerance in units).
    """
    value, target, tol = float(value), float(target), float(tol)
    scale = unit if unit else 1.0
    record(what, "within", abs(value - target) / scale, tol / scale)
    if not abs(value - target) <= tol:  # also fails for nan
        in_units = f" ({tol / unit:g} standard errors of {unit:.2g})" if unit else ""
        raise AssertionError(f"{what} {value:.4g}, expected {target:.4g} ± {tol:.2g}{in_units}")


def at_least(value: float, bar: float, what: str) -> None:
    """Assert ``value >= bar``. Raises AssertionError ``"<what> <value>: at least <bar>"``."""
    value = float(value)
    record(what, "at_least", value, bar)
    if not value >= bar or math.isnan(value):
        raise AssertionError(f"{what} {value:.4g}: at least {bar:g}")


def at_most(value: float, bar: float, what: str) -> None:
    """Assert ``value <= bar``. Raises AssertionError ``"<what> <value>: at most <bar>"``."""
    value = float(value)
    record(what, "at_most", value, bar)
    if not value <= bar or math.isnan(value):
        raise AssertionError(f"{what} {value:.4g}: at most {bar:g}")


def sample_like(w, std: float, dist: str, what: str, *, k: float = 6.0, moments_only: bool = False) -> None:
    """Assert that the entries of ``w`` (any shape) look like independent draws of a zero-mean ``dist``
    (``"normal"`` or ``"uniform"``) with standard deviation ``std``, each statistic within ``k`` standard errors.

    Checked: the mean (standard error ``std / sqrt(n)``), the sample variance (standard error
    ``std**2 sqrt((kurtosis - 1) / n + 2 / (n (n - 1)))``, kurtosis 3 for a normal, 9/5 for a uniform) and,
    unless ``moments_only``, the shape: a uniform sample lies in ``[-a, a]``, ``a = sqrt(3) std``, and
    reaches past ``a (1 - 21 / n)`` (missing it has probability below 1e-9); a normal one has
    ``P(|w| > 2 std) = erfc(sqrt(2))`` (4.55 %) within ``k`` binomial standard errors. A correct random
    initialiser fails one of these with a probability of about 1e-8.
    """
    if dist not in ("normal", "uniform"):
        raise ValueError(f"dist={dist!r}: use 'normal' or 'uniform'")
    n, w = w.numel(), w.detach().double().flatten()
    kurtosis = 3.0 if dist == "normal" else 9 / 5
    se_mean = std / math.sqrt(n)
    se_var = std ** 2 * math.sqrt((kurtosis - 1) / n + 2 / (n * (n - 1)))
    within(w.mean().item(), 0.0, k * se_mean, f"{what}: mean", unit=se_mean)
    within(w.var().item(), std ** 2, k * se_var, f"{what}: variance (n = {n})", unit=se_var)
    if moments_only:
        return
    if dist == "uniform":
        a = std * math.sqrt(3)
        top = w.abs().max().item() / a
        at_most(top, 1 + 1e-6, f"{what}: max |w| / a, a = sqrt(3) std = {a:.4g}, is outside [-a, a]:")
        at_least(top, 1 - 21 / n, f"{what}: max |w| / a, a = sqrt(3) std = {a:.4g}, is far from a:")
    else:
        p = math.erfc(math.sqrt(2))
        se = math.sqrt(p * (1 - p) / n)
        tail = (w.abs() > 2 * std).double().mean().item()
        within(tail, p, k * se, f"{what}: share of |w| > 2 std (a normal has {p:.2%})", unit=se)
