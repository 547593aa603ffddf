"""A4 (malaria) beyond the shared table of ``tests/test_assignments.py`` (its row grades submitted model.pt files
on synthetic hidden patients, see ``tests/a4_cases.py``): the hand-set reference model is a real classifier, a
pickled model that would run code cannot load anywhere, and autograde refuses to start without hidden patients.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from cnncourse import grading_malaria
from cnncourse.autograde import cells
from cnncourse.data.synthetic import synthetic_cells
from tests import a4_cases
from tests.assignments import BY_ID
from tests.grading_support import make_course, nbgrader_env

A4 = BY_ID["a4-malaria"]


def test_detector_is_a_real_classifier():
    """The hand-set weights classify unseen synthetic cells through the solution's architecture."""
    cells = synthetic_cells(300, seed=777)
    with torch.no_grad():
        acc = (a4_cases.detector(A4)(cells.images.float() / 255).argmax(1) == cells.labels).float().mean()
    assert acc >= 0.97


def test_pickled_code_would_load_without_weights_only(tmp_path):
    """The batch's pickled submission is a real threat: plain torch.load runs its code and gets working weights;
    load_submission (weights_only=True) refuses it with a message."""
    data = a4_cases.saved(a4_cases.RunsCode(a4_cases.detector_state(A4)))
    state = torch.load(io.BytesIO(data), weights_only=False)
    assert set(state) == set(a4_cases.build_solution_model(A4).state_dict())
    (tmp_path / "model.pt").write_bytes(data)
    with pytest.raises(AssertionError, match="weights_only=True"):
        grading_malaria.load_submission(lambda: a4_cases.build_solution_model(A4), tmp_path / "model.pt")


def test_autograde_refuses_without_grading_data(tmp_path):
    course = make_course(tmp_path, A4, {})
    env = {k: v for k, v in nbgrader_env().items() if k != grading_malaria.GRADING_ENV}
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "autograde", A4.id, "--force"], cwd=course,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert grading_malaria.GRADING_ENV in run.stderr and "Traceback" not in run.stderr


def test_double_normalisation_is_visible_before_submission(monkeypatch):
    """The visible grading-path probe separates the reference model.pt from one trained on images normalised twice:
    the latter scores best on validation cells normalised before it (0.990 vs 0.948 on the 420 synthetic cells,
    a difference of 0.042, twice the 0.02 the test allows; hand-set weights, no training), the reference worst
    (0.476 vs 0.990)."""
    monkeypatch.setenv("CNNCOURSE_QUICK", "1")
    stats = grading_malaria.training_stats()
    mean, std = (tuple(v.tolist()) for v in stats)
    cells = grading_malaria.validation_cells()
    right = a4_cases.detector(A4, mean, std)
    twice = a4_cases.detector(A4, mean, std, twice=True)
    assert grading_malaria.accuracy(right, cells) >= 0.97 > 0.6 >= grading_malaria.accuracy(right, cells, *stats)
    assert grading_malaria.accuracy(twice, cells, *stats) >= 0.97
    assert grading_malaria.accuracy(twice, cells, *stats) - grading_malaria.accuracy(twice, cells) >= 0.03


def test_hidden_patients_are_scored_by_the_grader(tmp_path, monkeypatch):
    """The kernel gets the hidden images alone (no labels, no names), shuffled; the grader puts the predictions back
    in order and scores each hidden cell against its bar; a cell that sent nothing, or no valid probabilities,
    scores 0."""
    import numpy as np
    from nbformat.v4 import new_code_cell, new_notebook

    from cnncourse.autograde import hidden

    monkeypatch.setenv(grading_malaria.GRADING_ENV, a4_cases.grading_data())
    scorer = grading_malaria.HiddenPatients()
    key = scorer.prepare(tmp_path)
    data, order = key
    assert [p.name for p in tmp_path.iterdir()] == [grading_malaria.IMAGES]
    images = np.load(tmp_path / grading_malaria.IMAGES, allow_pickle=False)
    assert images.dtype == np.uint8 and np.array_equal(images, data.images.numpy()[order])
    assert not np.array_equal(images, data.images.numpy())
    truth = data.labels.numpy()[order].astype(float)  # what a perfect model predicts, in the kernel's order

    def sent(grade_id, payload):
        c = new_code_cell("", metadata={"nbgrader": {"grade_id": grade_id, "grade": True}})
        c.outputs = [] if payload is None else [{"output_type": "display_data", "metadata": {},
                                                 "data": {hidden.MIME: payload}}]
        return c

    nb = new_notebook(cells=[
        sent("test_accuracy_90", {"probabilities": truth.tolist(), "params": 7, "macs": 9}),
        sent("test_accuracy_93", {"probabilities": (1 - truth).tolist()}),
        sent("test_accuracy_95", None),
        sent("test_auc", {"probabilities": ["0.5"] * len(truth)}),
    ])
    results = scorer.score(nb, key)
    assert results == {"accuracy": 1.0, "auc": 1.0, "n_images": len(truth), "params": 7, "macs": 9}
    errors = {cells.grade_id(c): [o.evalue for o in c.outputs if o.output_type == "error"]
              for c in nb.cells}
    assert errors["test_accuracy_90"] == []
    assert errors["test_accuracy_93"] == ["accuracy on the hidden patients 0.0000 < 0.93"]
    assert "did not reach the grader" in errors["test_accuracy_95"][0]
    assert "did not reach the grader" in errors["test_auc"][0]
    assert not [o for c in nb.cells for o in c.outputs if hidden.MIME in o.get("data", {})]
