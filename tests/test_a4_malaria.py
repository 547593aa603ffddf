"""A4 (malaria) graded from a submitted model.pt: one autograde batch on a synthetic grading set.

The grading set is synthetic cells (seed 777, written as PNGs in class folders). The "solution" submission is
the reference notebook with a model.pt that honestly classifies those cells: the solution's own build_model()
architecture with weights set by hand to a fitted colour feature (max over pixels of R - 1.5 G: the synthetic
parasites' chromatin), its threshold chosen on other synthetic cells. A one-class model passes only the visible
tests; a submission without model.pt scores 0 on the model cells while the batch goes on.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from torch import nn

from cnncourse.data.synthetic import save_pngs, synthetic_cells
from tests.grading_support import ROOT, Assignment, cell, gradebook_scores, make_course, nbgrader_env

A4 = Assignment(id="a4-malaria", points=18, grade_cells={}, mutants={}, submissions=lambda a: {})
MODEL_CELLS = {"test_model_output", "test_accuracy_90", "test_accuracy_93", "test_accuracy_95", "test_accuracy_97",
               "test_auc"}
HIDDEN = MODEL_CELLS - {"test_model_output"}


def build_solution_model() -> nn.Module:
    """The solution's build_model() with MEAN = 0, STD = 1 (inputs stay in [0, 1])."""
    source = cell(A4.source_nb(), "build_model").source
    namespace = {"MEAN": (0.0, 0.0, 0.0), "STD": (1.0, 1.0, 1.0)}
    exec(source, namespace)
    return namespace["build_model"]()


def feature(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255
    return (x[:, 0] - 1.5 * x[:, 1]).amax((1, 2))


def detector() -> nn.Module:
    """The solution architecture carrying channel 0 = relu(R - 1.5 G - t) through every stage; logit 1 = its max."""
    fit = synthetic_cells(600, seed=5)
    f = feature(fit.images)
    t = max(torch.linspace(0, 1, 201).tolist(), key=lambda t: float(((f >= t).long() == fit.labels).float().mean()))
    model = build_solution_model()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for k, conv in enumerate(convs):
            conv.weight.zero_()
            if k == 0:
                conv.weight[0, 0, 1, 1], conv.weight[0, 1, 1, 1] = 1.0, -1.5
            else:
                conv.weight[0, 0, 1, 1] = 1.0
        for k, bn in enumerate(norms):
            bn.weight.fill_(1), bn.bias.fill_(-t if k == 0 else 0), bn.running_mean.zero_(), bn.running_var.fill_(1)
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.zero_(), head.bias.zero_()
        head.weight[1, head.in_features // 2] = 500.0  # the global max of channel 0
        head.bias[1] = -0.5
    return model.eval()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    work = tmp_path_factory.mktemp("a4")
    grading = work / "grading"
    save_pngs(synthetic_cells(300, seed=777), grading)
    correct = A4.correct()
    one_class = A4.correct()
    cell(one_class, "build_model").source = (
        "from torch import nn\nimport torch\n\n\nclass Normalize(nn.Module):\n    pass\n\n\n"
        "class OneClass(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.register_buffer('mean', torch.tensor(MEAN))\n"
        "        self.register_buffer('std', torch.tensor(STD))\n"
        "        self.bias = nn.Parameter(torch.tensor([2.0, -2.0]))\n\n    def forward(self, x):\n"
        "        return x.flatten(1)[:, :1] * 0 + self.bias\n"
        "\n\ndef build_model():\n    return OneClass()\n")
    (work / "course").mkdir()
    course = make_course(work / "course", A4, {"solution": correct, "one_class": one_class, "no_model": correct})
    sub = course / ".nbgrader" / "submitted"
    torch.save(detector().state_dict(), sub / "solution" / A4.id / "model.pt")
    state = {"mean": torch.zeros(3), "std": torch.ones(3), "bias": torch.tensor([2.0, -2.0])}
    torch.save(state, sub / "one_class" / A4.id / "model.pt")
    env = dict(nbgrader_env(), CNNCOURSE_GRADING_DATA=str(grading), CNNCOURSE_QUICK="1")
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "autograde", A4.id, "--jobs", "2",
                          "--no-progress"], cwd=course, env=env, capture_output=True, text=True, timeout=900)
    return course, run, env


def test_detector_is_a_real_classifier():
    """The hand-set weights classify unseen synthetic cells through the solution's architecture."""
    cells = synthetic_cells(300, seed=777)
    with torch.no_grad():
        acc = (detector()(cells.images.float() / 255).argmax(1) == cells.labels).float().mean()
    assert acc >= 0.97


def test_batch_scores(batch):
    course, run, _ = batch
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "3 graded, 0 failed to run" in run.stdout
    points = {"test_normalisation": 2, "test_budget": 4, "test_model_output": 2, "test_accuracy_90": 2,
              "test_accuracy_93": 2, "test_accuracy_95": 2, "test_accuracy_97": 2, "test_auc": 2}
    expected = {"solution": points,
                "one_class": {k: (0 if k in HIDDEN else v) for k, v in points.items()},
                "no_model": {k: (0 if k in MODEL_CELLS else v) for k, v in points.items()}}
    for student, want in expected.items():
        got = {k: v or 0.0 for k, v in gradebook_scores(course, A4, student).items()}
        assert got == want, student


def test_leaderboard(batch):
    course, _, env = batch
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "leaderboard", A4.id], cwd=course, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((course / ".nbgrader" / f"leaderboard-{A4.id}.csv").open()))
    assert [r["student"] for r in rows] == ["solution", "one_class", "no_model"]
    assert float(rows[0]["accuracy"]) >= 0.97 and float(rows[0]["auc"]) >= 0.99 and rows[0]["rank"] == "1"
    assert int(rows[0]["params"]) == sum(p.numel() for p in build_solution_model().parameters())
    assert 0.3 < float(rows[1]["accuracy"]) < 0.7 and rows[1]["params"] == "2"
    assert rows[2]["accuracy"] == "" and rows[2]["rank"] == ""
    assert "<td>solution</td>" in (course / ".nbgrader" / f"leaderboard-{A4.id}.html").read_text()


def test_autograde_refuses_without_grading_data(batch):
    course, _, env = batch
    env = {k: v for k, v in env.items() if k != "CNNCOURSE_GRADING_DATA"}
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "autograde", A4.id, "--force"], cwd=course,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "CNNCOURSE_GRADING_DATA" in run.stderr and "Traceback" not in run.stderr


def test_release_is_committed():
    assert (ROOT / "assignments" / A4.id / f"{A4.id}.ipynb").is_file()
