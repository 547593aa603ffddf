"""nbgrader's Validator (what students run before submitting) on A1's solution and its release."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbgrader.validator import Validator

from cnncourse.autograde.inprocess import fill_answers

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "a1-convolution" / "a1-convolution.ipynb"
RELEASE = ROOT / "assignments" / "a1-convolution" / "a1-convolution.ipynb"


@pytest.fixture(autouse=True)
def kernel_sees_this_checkout(monkeypatch):
    """Kernels started by the Validator import cnncourse from this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_validator_passes_solution():
    """The source notebook (with hidden tests) validates: every grade cell passes."""
    assert Validator().validate(str(SOURCE)) == {}


def test_validator_fails_release_on_every_grade_cell():
    """The untouched release fails every grade cell: 18 test cells and the unanswered written answer."""
    release = nbformat.read(RELEASE, as_version=4)
    grade_cells = [c.source.strip() for c in release.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(grade_cells) == 19
    result = Validator().validate(str(RELEASE))
    assert set(result) == {"failed"}, result.keys()
    assert sorted(f["source"] for f in result["failed"]) == sorted(grade_cells)


def test_fill_answers_makes_a_valid_submission(tmp_path):
    """The release with the reference answers filled in (markers dropped) passes the Validator."""
    release = nbformat.read(RELEASE, as_version=4)
    filled = fill_answers(release, nbformat.read(SOURCE, as_version=4))
    answers = [c.source for c in filled.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert not any("BEGIN SOLUTION" in s or "NotImplementedError" in s or "YOUR" in s for s in answers)
    path = tmp_path / "a1-convolution.ipynb"
    nbformat.write(filled, path)
    assert Validator().validate(str(path)) == {}
