"""Benchmark: A4's accuracy tiers and AUC bar, traced to the reference recipe's cross-validated predictions.

    python benchmarks/malaria_tiers.py [--patients 30] [--draws 2000]

Reads the out-of-fold probabilities that ``python -m cnncourse cv malaria --predictions`` wrote
(``benchmarks/results/malaria_cv_predictions.npz``: every dev patient judged by the fold's model that never saw
them) and the folds of ``benchmarks/results/malaria_cv.json``. A grader's hidden patients are a few dozen new
patients, so it draws ``--draws`` sets of ``--patients`` distinct patients (``cnncourse.evaluation.patient_subsets``)
and records, under ``"tiers"`` in ``malaria_cv.json``:

* the 5, 10 and 50 % quantiles of accuracy and AUC over those sets (the 10 % quantile is what the reference reaches
  on 90 % of hidden sets of that size);
* for each of ``cnncourse.grading_malaria.TIERS`` and ``MIN_AUC``: the share of drawn sets and of the CV folds on
  which the reference reaches it.

``tests/test_a4_tiers.py`` recomputes the quantiles from the same file and checks that the reference reaches the
top tier and the AUC bar on at least 90 % of folds and of drawn sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.malaria_levers import CV_JSON, REFERENCE, predictions_path  # noqa: E402
from cnncourse import grading_malaria  # noqa: E402
from cnncourse.evaluation import load_predictions, patient_subsets  # noqa: E402

PREDICTIONS = predictions_path(REFERENCE)
QUANTILES = (0.05, 0.10, 0.50)


def tiers(predictions: Path, folds: list[dict], n: int, draws: int, seed: int = 0) -> dict:
    """The ``"tiers"`` record: quantiles over drawn hidden sets of ``n`` patients and the share reaching each bar."""
    columns, patients = load_predictions(predictions)
    got = patient_subsets(columns["label"], columns["prob"], patients, n, draws=draws, seed=seed)
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    bars = {f"accuracy >= {t}": ("accuracy", t) for t in grading_malaria.TIERS}
    bars[f"auc >= {grading_malaria.MIN_AUC}"] = ("auc", grading_malaria.MIN_AUC)
    return {
        "hidden_patients": n,
        "draws": draws,
        "seed": seed,
        "patients": len(set(patients)),
        "cells": len(patients),
        "quantiles": {metric: dict(zip([f"q{round(p * 100):02d}" for p in QUANTILES],
                                       torch.quantile(got[metric], q).tolist(), strict=True))
                      for metric in ("accuracy", "auc")},  # fmt: skip
        "share_of_sets": {name: float((got[m] >= bar).double().mean()) for name, (m, bar) in bars.items()},
        "share_of_folds": {name: sum(f[m] >= bar for f in folds) / len(folds) for name, (m, bar) in bars.items()},
        "tiers": list(grading_malaria.TIERS),
        "min_auc": grading_malaria.MIN_AUC,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=30, help="patients per drawn hidden set (default 30)")
    parser.add_argument("--draws", type=int, default=2000, help="hidden sets drawn (default 2000)")
    args = parser.parse_args()
    record = json.loads(CV_JSON.read_text())
    record["tiers"] = tiers(PREDICTIONS, record["levers"][REFERENCE]["per_fold"], args.patients, args.draws)
    CV_JSON.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["tiers"], indent=2))


if __name__ == "__main__":
    main()
