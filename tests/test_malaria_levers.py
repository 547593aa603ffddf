"""The levers of benchmarks/results/malaria_cv.json: each one's figures are those of its committed predictions, and
benchmarks/malaria_levers.py files runs and judges ensembles right (on small made-up predictions)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import malaria_levers
from cnncourse.evaluation import load_predictions, save_predictions

RECORD = json.loads(malaria_levers.CV_JSON.read_text())


@pytest.mark.parametrize("name", sorted(RECORD["levers"]))
def test_each_lever_is_its_predictions(name):
    """Every lever judged every dev patient once; its saved probabilities give each fold's accuracy and AUC."""
    from sklearn.metrics import roc_auc_score

    lever = RECORD["levers"][name]
    columns, patients = load_predictions(malaria_levers.predictions_path(name))
    assert lever["folds_done"] == lever["folds"] >= 3 and len(set(patients)) == lever["patients"]
    assert lever["goal (issue 18)"] == malaria_levers.goal(lever)
    for fold in lever["per_fold"]:
        mine = columns["fold"] == fold["fold"]
        y = columns["label"][mine].long()
        for key, got in (("prob", fold), ("prob_tta", fold["tta"])):
            p = columns[key][mine]
            assert float(((p >= 0.5).long() == y).double().mean()) == pytest.approx(got["accuracy"], abs=1e-6)
            assert roc_auc_score(y.numpy(), p.numpy()) == pytest.approx(got["auc"], abs=1e-6)


def made_up_lever(tmp_path, name: str, probs: list[float], cpu: float) -> dict:
    """A finished 2-fold ``cv malaria`` run of 4 cells of 4 patients, filed as lever ``name``."""
    columns = {"label": torch.tensor([1, 0, 1, 0], dtype=torch.int8), "fold": torch.tensor([0, 0, 1, 1],
               dtype=torch.int8), "prob": torch.tensor(probs), "prob_tta": torch.tensor(probs)}  # fmt: skip
    save_predictions(tmp_path / f"{name}.npz", columns, ["a", "b", "c", "d"])
    folds = [{"fold": k, "cpu_s": cpu} for k in (0, 1)]
    right = float(((columns["prob"] >= 0.5).long() == columns["label"].long()).double().mean())
    summary = {"accuracy": {"mean": right, "min": right}, "auc": {"mean": 0.99, "min": 0.99}}  # enough for goal()
    (tmp_path / f"{name}.json").write_text(json.dumps({"folds": 2, "folds_done": 2, "cpu_s": 2 * cpu,
                                                       "per_fold": folds, **summary}))  # fmt: skip
    return columns


def test_add_and_ensemble(tmp_path, monkeypatch):
    monkeypatch.setattr(malaria_levers, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    record = {"levers": {}}
    made_up_lever(tmp_path, "one", [0.9, 0.6, 0.4, 0.1], cpu=10.0)  # wrong on b and c
    made_up_lever(tmp_path, "two", [0.7, 0.2, 0.8, 0.5], cpu=5.0)  # wrong on d
    for name in ("one", "two"):
        malaria_levers.add(record, name, tmp_path / f"{name}.json", tmp_path / f"{name}.npz", f"lever {name}")
    assert record["levers"]["one"]["recipe"] == "lever one"
    assert (tmp_path / "results" / "malaria_cv_predictions_two.npz").exists()
    malaria_levers.ensemble(record, "both", ["one", "two"], n_boot=20)
    both = record["levers"]["both"]
    # mean probabilities 0.8, 0.4, 0.6, 0.3: all four right
    assert [f["accuracy"] for f in both["per_fold"]] == [1.0, 1.0] and both["accuracy"]["mean"] == 1.0
    assert both["goal (issue 18)"] == {"mean accuracy >= 0.965": True, "mean auc >= 0.992": True,
                                       "lowest fold accuracy >= 0.94": True}
    assert record["levers"]["one"]["goal (issue 18)"]["mean accuracy >= 0.965"] is False
    assert both["cpu_s"] == 30.0 and [f["cpu_s"] for f in both["per_fold"]] == [15.0, 15.0]
    columns, _ = load_predictions(malaria_levers.predictions_path("both"))
    assert columns["prob"].tolist() == pytest.approx([0.8, 0.4, 0.6, 0.3])


def test_refusals(tmp_path, monkeypatch):
    monkeypatch.setattr(malaria_levers, "RESULTS", tmp_path)
    record = {"levers": {}}
    made_up_lever(tmp_path, "one", [0.9, 0.6, 0.4, 0.1], cpu=1.0)
    unfinished = json.loads((tmp_path / "one.json").read_text()) | {"folds_done": 1}
    (tmp_path / "cut.json").write_text(json.dumps(unfinished))
    with pytest.raises(ValueError, match="1 of 2 folds"):
        malaria_levers.add(record, "cut", tmp_path / "cut.json", tmp_path / "one.npz", "cut short")
    with pytest.raises(ValueError, match="they name a file"):
        malaria_levers.predictions_path("../elsewhere")
    malaria_levers.add(record, "one", tmp_path / "one.json", tmp_path / "one.npz", "one")
    columns = made_up_lever(tmp_path, "other", [0.9, 0.6, 0.4, 0.1], cpu=1.0)
    save_predictions(tmp_path / "other.npz", columns | {"fold": torch.tensor([0, 1, 0, 1], dtype=torch.int8)},
                     ["a", "b", "c", "d"])  # fmt: skip
    malaria_levers.add(record, "other", tmp_path / "other.json", tmp_path / "other.npz", "other folds")
    with pytest.raises(ValueError, match="other folds than one"):
        malaria_levers.ensemble(record, "both", ["one", "other"])
    with pytest.raises(ValueError, match="two levers or more"):
        malaria_levers.ensemble(record, "alone", ["one"])
