"""Grades that hold on every machine (issue 16): the checks that depend on random draws, training or the order of
floating-point sums keep a margin to their bars over seeds, thread counts and CPU kernels.

``benchmarks/grading_margins.py`` measures the reference solutions' worst cases into
``benchmarks/results/grading_margins.json`` (minutes); here that file is read and checked, and the same test cells
run once more on torch's portable kernels (``ATEN_CPU_CAPABILITY=default``) next to the native ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnncourse import margins

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import grading_margins  # noqa: E402


@pytest.fixture(scope="module")
def report():
    return json.loads((ROOT / "benchmarks" / "results" / "grading_margins.json").read_text())


def _expected(aid):
    if aid == "train":
        return {f"{m}.{n}" for m, names in grading_margins.TRAIN_CHECKS.items() for n in names}
    return set(grading_margins.CELLS[aid])


@pytest.mark.parametrize("aid", grading_margins.SUITES)
def test_every_cell_measured_with_a_margin(aid, report):
    cells, run = report["assignments"][aid], report["runs"][aid]
    assert set(cells) == _expected(aid), "re-run benchmarks/grading_margins.py for the new cells"
    # A3's design test sets one torch thread itself: the thread count outside cannot change it
    assert run["threads"] == ([1] if aid == "a3-architectures" else [1, 2])
    assert run["seeds"] >= 20 and set(run["capabilities"]) >= {"default", "avx2", "avx512"}
    configs = len(run["capabilities"]) * len(run["threads"])
    for grade_id, cell in cells.items():
        assert not cell["failures"], f"{aid} {grade_id}: the reference failed {cell['failures'][:2]}"
        assert cell["checks"], f"{aid} {grade_id}: no check was measured (use within/at_least/assert_close)"
        for name, check in cell["checks"].items():
            assert check["n"] >= run["seeds"] * configs, f"{aid} {grade_id} {name}: only {check['n']} runs"
            assert check["required_margin"] == grading_margins.required_margin(check["kind"], check["bar"], name)
            worst = check["min"] if check["kind"] == "at_least" else check["max"]
            assert check["worst_margin"] >= check["required_margin"], (
                f"{aid} {grade_id} {name}: worst {worst:.4g} leaves {check['worst_margin']:.3g} to the bar "
                f"{check['bar']}, less than {check['required_margin']:.3g}")


@pytest.mark.parametrize("aid", grading_margins.SUITES)
def test_reference_passes_on_portable_and_native_kernels(aid):
    """The cells with their own seeds, as graders run them, on the native kernels and on ``default``."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "grading_margins.py"), "--check", "--assignment", aid,
           "--capability", "native,default", "--threads", "1"]  # 2 threads: in the JSON, and nbval's native run
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, CNNCOURSE_QUICK="1"))
    assert done.returncode == 0, done.stderr[-3000:]


def test_checks_record_what_they_compare():
    with margins.recording() as log:
        margins.within(1.1, 1.0, 0.6, "x", unit=0.1)
        margins.at_least(0.95, 0.93, "accuracy")
        with pytest.raises(AssertionError, match=r"y 0\.5: at most 0\.2"):
            margins.at_most(0.5, 0.2, "y")
        with pytest.raises(AssertionError, match=r"z nan"):
            margins.within(float("nan"), 0.0, 1.0, "z")
    got = [(m.kind, round(m.value, 9), round(m.bar, 9)) for m in log[:3]]
    assert got == [("within", 1.0, 6.0), ("at_least", 0.95, 0.93), ("at_most", 0.5, 0.2)]
    assert [round(m.margin, 9) for m in log[:3]] == [5.0, 0.02, -0.3]
    margins.within(0.5, 0.0, 1.0, "outside any recording")  # not logged anywhere
    with margins.recording() as fresh:
        pass
    assert fresh == [] and len(log) == 4


def test_sample_like_catches_a_wrong_spread():
    import torch

    g = torch.Generator().manual_seed(0)
    margins.sample_like(torch.randn(10_000, generator=g) * 0.1, 0.1, "normal", "right")
    margins.sample_like((torch.rand(10_000, generator=g) * 2 - 1) * 0.3, 0.3 / 3 ** 0.5, "uniform", "right")
    for w, std, dist in ((torch.randn(10_000, generator=g) * 0.12, 0.1, "normal"),  # 20 % too wide
                         ((torch.rand(10_000, generator=g) * 2 - 1) * 0.3, 0.1, "normal"),  # uniform, not normal
                         (torch.randn(10_000, generator=g) * 0.1 + 0.01, 0.1, "normal")):  # not centred
        with pytest.raises(AssertionError):
            margins.sample_like(w, std, dist, "wrong")
