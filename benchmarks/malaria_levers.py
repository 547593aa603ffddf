"""Benchmark: the levers of the A4 recipe side by side, under ``"levers"`` in ``benchmarks/results/malaria_cv.json``.

    python benchmarks/malaria_levers.py add NAME RUN.json --predictions RUN.npz --recipe "what differs"
    python benchmarks/malaria_levers.py ensemble NAME LEVER LEVER [...]

``add`` files one run of ``python -m cnncourse cv malaria --out RUN.json --predictions RUN.npz`` (a lever: the
reference recipe with one setting changed) as ``levers[NAME]``, and copies its out-of-fold predictions next to
the JSON (``malaria_cv_predictions.npz`` for the reference, ``malaria_cv_predictions_<NAME>.npz`` for the others).

``ensemble`` judges the average of the out-of-fold probabilities of levers run on the same folds (same patients,
same ``--split-seed``): a small ensemble of those models, with no further training. Its CPU time is the sum of
theirs; each fold gets accuracy, AUC and patient-level intervals as ``cv malaria`` gives them, plain and with TTA.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from cnncourse.evaluation import fold_spread, judge_fold, load_predictions, save_predictions

RESULTS = Path(__file__).resolve().parent / "results"
CV_JSON = RESULTS / "malaria_cv.json"
REFERENCE = "reference"  # the lever that holds the reference recipe's folds (A4's tiers trace to it)
GOAL = {"mean accuracy": 0.965, "mean auc": 0.992, "lowest fold accuracy": 0.94}  # issue 18's, on the dev data


def goal(lever: dict) -> dict:
    """Which of issue 18's goals lever ``lever`` meets: ``{"mean accuracy >= 0.965": True, ...}``."""
    got = {"mean accuracy": lever["accuracy"]["mean"], "mean auc": lever["auc"]["mean"],
           "lowest fold accuracy": lever["accuracy"]["min"]}  # fmt: skip
    return {f"{name} >= {bar}": got[name] >= bar for name, bar in GOAL.items()}


def predictions_path(name: str) -> Path:
    """Where lever ``name``'s out-of-fold predictions are kept."""
    if name == REFERENCE:
        return RESULTS / "malaria_cv_predictions.npz"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"lever names are letters, digits, - and _ (they name a file), got {name!r}.")
    return RESULTS / f"malaria_cv_predictions_{name}.npz"


def add(record: dict, name: str, run: Path, predictions: Path, recipe: str) -> dict:
    """File the ``cv malaria`` run ``run`` (JSON) with its ``predictions`` (NPZ) as lever ``name`` of ``record``."""
    lever = json.loads(Path(run).read_text())
    if lever["folds_done"] != lever["folds"]:
        raise ValueError(f"{run} has {lever['folds_done']} of {lever['folds']} folds: let the run finish first.")
    shutil.copyfile(predictions, predictions_path(name))
    record["levers"][name] = {"recipe": recipe, "predictions": predictions_path(name).name, **lever}
    record["levers"][name]["goal (issue 18)"] = goal(lever)
    return record


def ensemble(record: dict, name: str, members: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Lever ``name``: the mean of the out-of-fold probabilities of levers ``members``, judged fold by fold."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs two levers or more, got {members}.")
    runs = [record["levers"][m] for m in members]
    loaded = [load_predictions(predictions_path(m)) for m in members]
    columns, patients = loaded[0]
    for m, (other, others_patients) in zip(members[1:], loaded[1:], strict=True):
        if others_patients != patients or not torch.equal(other["fold"], columns["fold"]):
            raise ValueError(f"{m} was run on other folds than {members[0]} (a different --split-seed or source); "
                             "an ensemble needs the same patients in the same folds.")  # fmt: skip
    mean = {key: torch.stack([c[key].double() for c, _ in loaded]).mean(0) for key in ("prob", "prob_tta")}
    rows = []
    for k in range(runs[0]["folds"]):
        mine = (columns["fold"] == k).nonzero().flatten()
        who = [patients[i] for i in mine.tolist()]
        labels = columns["label"][mine].long()
        row = {"fold": k, "patients": len(set(who)), "cells": len(mine),
               **judge_fold(labels, mean["prob"][mine], who, n_boot=n_boot, seed=seed)}  # fmt: skip
        row["tta"] = judge_fold(labels, mean["prob_tta"][mine], who, n_boot=n_boot, seed=seed)
        row["cpu_s"] = round(sum(r["per_fold"][k]["cpu_s"] for r in runs), 1)
        rows.append(row)
    save_predictions(predictions_path(name), {"label": columns["label"], "fold": columns["fold"],
                                              "prob": mean["prob"].float(), "prob_tta": mean["prob_tta"].float()},
                     patients)  # fmt: skip
    record["levers"][name] = {
        "recipe": "the mean of the probabilities of " + " and ".join(members) + " (no further training)",
        "predictions": predictions_path(name).name,
        "members": members,
        "folds": runs[0]["folds"],
        "folds_done": len(rows),
        "patients": len(set(patients)),
        "cells": len(patients),
        "cpu_s": round(sum(r["cpu_s"] for r in runs), 1),
        **fold_spread(rows),
        "tta": fold_spread([r["tta"] for r in rows]),
        "per_fold": rows,
    }
    record["levers"][name]["goal (issue 18)"] = goal(record["levers"][name])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    a = commands.add_parser("add", help="file a cv malaria run as a lever")
    a.add_argument("name")
    a.add_argument("run", type=Path, help="the run's --out JSON")
    a.add_argument("--predictions", type=Path, required=True, help="the run's --predictions NPZ")
    a.add_argument("--recipe", required=True, help="what this lever changes in the reference recipe")
    e = commands.add_parser("ensemble", help="judge the mean of levers' out-of-fold probabilities")
    e.add_argument("name")
    e.add_argument("members", nargs="+")
    args = parser.parse_args()
    record = json.loads(CV_JSON.read_text())
    if args.command == "add":
        add(record, args.name, args.run, args.predictions, args.recipe)
    else:
        ensemble(record, args.name, args.members)
    CV_JSON.write_text(json.dumps(record, indent=2) + "\n")
    lever = record["levers"][args.name]
    print(f"{args.name}: accuracy {lever['accuracy']['mean']:.4f} (lowest fold {lever['accuracy']['min']:.4f}), "
          f"AUC {lever['auc']['mean']:.4f}; with TTA {lever['tta']['accuracy']['mean']:.4f}; "
          f"{lever['cpu_s']:.0f} s CPU")


if __name__ == "__main__":
    main()
