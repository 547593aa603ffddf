"""A4's Kaggle-style ranking from the autograded notebooks: ``make leaderboard ASSIGNMENTS=a4-malaria``.

The hidden test cell ``test_accuracy_90`` prints one ``A4 result: accuracy=... auc=... params=... macs=...``
line (``cnncourse.grading_malaria.result_line``); this reads the last such line of that cell in each
``<autograded>/<student>/<id>/<id>.ipynb`` (no student code runs) and ranks by accuracy, then AUC, then fewer
MACs. Writes ``.nbgrader/leaderboard-<id>.csv`` and ``.html``; students without a result are listed last.
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import nbformat

from cnncourse.autograde.preprocessors import stdout_of

__all__ = ["RESULT_CELL", "read_results", "write_leaderboard"]

RESULT_CELL = "test_accuracy_90"
_LINE = re.compile(r"A4 result: accuracy=([\d.]+) auc=([\d.]+|nan) params=(\d+) macs=(\d+)")
COLUMNS = ("rank", "student", "accuracy", "auc", "params", "macs")


def read_results(autograded: Path, assignment: str) -> list[dict]:
    """One row per autograded student, ranked; ``accuracy`` etc. are None when the cell printed no result."""
    rows = []
    for path in sorted(Path(autograded).glob(f"*/{assignment}/{assignment}.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == RESULT_CELL]
        found = _LINE.findall(stdout_of(cells[0])) if cells else []
        row = {"student": path.parents[1].name, "accuracy": None, "auc": None, "params": None, "macs": None}
        if found:
            acc, auc, params, macs = found[-1]
            row.update(accuracy=float(acc), auc=None if auc == "nan" else float(auc), params=int(params),
                       macs=int(macs))
        rows.append(row)
    rows.sort(key=lambda r: (r["accuracy"] is None, -(r["accuracy"] or 0), -(r["auc"] or 0), r["macs"] or 0,
                             r["student"]))
    for k, row in enumerate(rows, 1):
        row["rank"] = k if row["accuracy"] is not None else None
    return rows


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
