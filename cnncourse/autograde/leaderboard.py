"""A4's Kaggle-style ranking from the autograded notebooks: ``make leaderboard ASSIGNMENTS=a4-malaria``.

The grader scores each submission's predictions on the hidden patients in its own process and writes the numbers
beside the autograded notebook (``<autograded>/<student>/<id>/cnncourse-results.json``,
:mod:`cnncourse.autograde.hidden`); nothing a student's kernel printed is read. This ranks them by accuracy,
then AUC, then fewer MACs (parameters and MACs as measured in the sandbox). Writes
``.nbgrader/leaderboard-<id>.csv`` and ``.html``; students without a result are listed last.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from cnncourse.autograde import hidden

__all__ = ["read_results", "write_leaderboard"]

COLUMNS = ("rank", "student", "accuracy", "auc", "params", "macs")


def read_results(autograded: Path, assignment: str) -> list[dict]:
    """One row per autograded student, ranked; ``accuracy`` etc. are None when the grader scored nothing."""
    rows = []
    for path in sorted(Path(autograded).glob(f"*/{assignment}/{assignment}.ipynb")):
        found = hidden.read_results(path.parent)
        row = {"student": path.parents[1].name, "accuracy": None, "auc": None, "params": None, "macs": None}
        if found.get("accuracy") is not None:
            row.update(accuracy=float(found["accuracy"]), auc=_number(found.get("auc"), float),
                       params=_number(found.get("params"), int), macs=_number(found.get("macs"), int))
        rows.append(row)
    rows.sort(key=lambda r: (r["accuracy"] is None, -(r["accuracy"] or 0), -(r["auc"] or 0), r["macs"] or 0,
                             r["student"]))
    for k, row in enumerate(rows, 1):
        row["rank"] = k if row["accuracy"] is not None else None
    return rows


def _number(value: object, kind: type) -> float | int | None:
    return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_leaderboard(course: Path, assignment: str) -> tuple[Path, Path]:
    """Write the CSV and the HTML table into ``course/.nbgrader``; return their paths."""
    course = Path(course)
    rows = read_results(course / ".nbgrader" / "autograded", assignment)
    out = course / ".nbgrader"
    csv_path, html_path = out / f"leaderboard-{assignment}.csv", out / f"leaderboard-{assignment}.html"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in rows)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r[k] is None else str(r[k]))}</td>" for k in COLUMNS)
                   + "</tr>\n" for r in rows)
    head = "".join(f"<th>{k}</th>" for k in COLUMNS)
    html_path.write_text(f"<!doctype html><meta charset='utf-8'><title>{assignment} leaderboard</title>\n"
                         f"<h1>{assignment} leaderboard</h1>\n<table border='1'>\n<tr>{head}</tr>\n{body}</table>\n")
    return csv_path, html_path
