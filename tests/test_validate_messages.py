"""What nbgrader's Validate tells a student whose answer cell is unanswered or raised (issue: a blank release
said "q1a_out is not defined", sending the student the wrong way). Two Validator runs of a 5-cell slice of the
A1 release, about 10 s."""

from __future__ import annotations

import copy

import nbformat
from nbgrader.validator import Validator

from cnncourse.autograde import cells
from tests.assignments import BY_ID
from tests.grading_support import cell, nbgrader_env

CELLS = ["setup", "q1_answers", "test_q1_sizes", "conv2d_naive", "test_conv2d_naive"]


def validate(tmp_path, monkeypatch, **sources: str) -> dict[str, str]:
    """Validate the slice (answers replaced by ``sources``); the text Validate shows per failed test cell."""
    monkeypatch.setenv("PYTHONPATH", nbgrader_env()["PYTHONPATH"])
    release = BY_ID["a1-convolution"].release_nb()
    nb = copy.deepcopy(release)
    nb.cells = [copy.deepcopy(cell(release, grade_id)) for grade_id in CELLS]
    for grade_id, source in sources.items():
        cell(nb, grade_id).source = source
    path = tmp_path / "a1-slice.ipynb"
    nbformat.write(nb, path)
    failed = Validator().validate(str(path))["failed"]
    tests = {c.source.strip(): cells.grade_id(c) for c in nb.cells}
    return {tests[f["source"].strip()]: f["error"] for f in failed}


def test_unanswered_cell_is_named(tmp_path, monkeypatch):
    """Blank release: the test names the answer cell that still raises NotImplementedError, and what to do."""
    errors = validate(tmp_path, monkeypatch)
    assert set(errors) == {"test_q1_sizes", "test_conv2d_naive"}
    assert "q1a_out is not defined: the answer cell In [2] is not answered yet (it still raises " \
           "NotImplementedError). Replace `raise NotImplementedError()` there" in errors["test_q1_sizes"]
    assert "conv2d_naive is not answered yet: it still raises NotImplementedError. Write its body" \
        in errors["test_conv2d_naive"]


def test_answer_cell_that_raises_is_named(tmp_path, monkeypatch):
    """An answer cell whose code raised: the test names that cell and its error, not a missing name."""
    errors = validate(tmp_path, monkeypatch, q1_answers="q1a_out = int('five')")
    assert "q1a_out is not defined: the cell In [2] raised ValueError: invalid literal" in errors["test_q1_sizes"]
    assert "Fix that cell (it should define q1a_out) and run it again." in errors["test_q1_sizes"]
