"""A4's accuracy tiers and AUC bar trace to the reference recipe's patient-grouped cross-validation.

``benchmarks/results/malaria_cv_predictions.npz`` holds every dev patient's cells judged by the CV fold's model that
never saw the patient (``python -m cnncourse cv malaria --predictions``); ``benchmarks/malaria_tiers.py`` wrote the
quantiles over drawn hidden sets into ``malaria_cv.json``. A correct student who follows the reference recipe must
reach the top tier and the AUC bar on at least 90 % of folds and of hidden sets of that size; the tiers must still
tell a model from a guess.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import malaria_tiers
from cnncourse import grading_malaria
from cnncourse.evaluation import load_predictions

RECORD = json.loads(malaria_tiers.CV_JSON.read_text())
TIERS = RECORD["tiers"]
FOLDS = RECORD["levers"][malaria_tiers.REFERENCE]["per_fold"]


def test_the_record_is_current():
    """The quantiles and shares in malaria_cv.json are those of the committed predictions and the current tiers."""
    again = malaria_tiers.tiers(malaria_tiers.PREDICTIONS, FOLDS, TIERS["hidden_patients"], TIERS["draws"],
                                TIERS["seed"])  # fmt: skip
    assert flat(again) == pytest.approx(flat(TIERS), abs=1e-9)


def flat(record: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (pytest.approx compares flat mappings); lists become their items."""
    out = {}
    for key, value in record.items():
        if isinstance(value, list):
            value = dict(enumerate(value))
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_predictions_are_the_folds():
    """Every dev patient is judged once, by its fold's model: the saved probabilities give each fold's accuracy."""
    columns, patients = load_predictions(malaria_tiers.PREDICTIONS)
    assert RECORD["levers"][malaria_tiers.REFERENCE]["folds_done"] == len(FOLDS) >= 3
    assert len(set(patients)) == sum(f["patients"] for f in FOLDS) and len(patients) == sum(f["cells"] for f in FOLDS)
    for f in FOLDS:
        mine = columns["fold"] == f["fold"]
        right = ((columns["prob"][mine] >= grading_malaria.THRESHOLD).long() == columns["label"][mine].long())
        assert float(right.double().mean()) == pytest.approx(f["accuracy"], abs=1e-6)


def test_reference_reaches_the_top_tier_on_90_percent():
    top, auc = f"accuracy >= {grading_malaria.TIERS[-1]}", f"auc >= {grading_malaria.MIN_AUC}"
    for share in (TIERS["share_of_folds"], TIERS["share_of_sets"]):
        assert share[top] >= 0.9 and share[auc] >= 0.9, share
    assert grading_malaria.TIERS[-1] <= TIERS["quantiles"]["accuracy"]["q10"]
    assert grading_malaria.MIN_AUC <= TIERS["quantiles"]["auc"]["q10"]


def same_recipe(lever: dict) -> bool:
    """A lever that runs the reference recipe, whatever its seed or precision (a student's own run of the solution,
    on a CPU with or without AMX)."""
    ref = RECORD["levers"][malaria_tiers.REFERENCE]
    def recipe(run: dict) -> dict:
        return {k: v for k, v in run["settings"].items() if k not in ("seed", "amp")} | {"size": run["size"]}
    return "settings" in lever and recipe(lever) == recipe(ref) and lever["split_seed"] == ref["split_seed"]


@pytest.mark.parametrize("name", sorted(n for n, lever in RECORD["levers"].items()
                                        if n != malaria_tiers.REFERENCE and same_recipe(lever)))  # fmt: skip
def test_the_tiers_hold_for_other_runs_of_the_recipe(name):
    """The tiers do not rest on one lucky run: another seed or precision of the recipe reaches them as often."""
    from benchmarks.malaria_levers import predictions_path

    lever = RECORD["levers"][name]
    again = malaria_tiers.tiers(predictions_path(name), lever["per_fold"], TIERS["hidden_patients"], TIERS["draws"])
    top, auc = f"accuracy >= {grading_malaria.TIERS[-1]}", f"auc >= {grading_malaria.MIN_AUC}"
    for share in (again["share_of_folds"], again["share_of_sets"]):
        assert share[top] >= 0.9 and share[auc] >= 0.9, share


def test_tiers_still_separate_models_from_guesses():
    """Increasing tiers, the lowest far above what always answering the commoner class scores on these patients."""
    columns, _ = load_predictions(malaria_tiers.PREDICTIONS)
    commoner = max(float(columns["label"].double().mean()), 1 - float(columns["label"].double().mean()))
    assert list(grading_malaria.TIERS) == sorted(set(grading_malaria.TIERS))
    assert grading_malaria.TIERS[0] >= commoner + 0.3
    assert torch.tensor(grading_malaria.TIERS).diff().min() >= 0.005
