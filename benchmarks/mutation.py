"""Mutation report: every known-wrong answer (mutant) of each assignment, scored by the in-process grader.

For each mutant: the score with the hidden tests, the cells it fails, and whether the visible tests alone
(what a student can run before submitting) already catch it. Writes
``benchmarks/results/mutation_<id>.json`` per assignment (``make mutation``).

    python benchmarks/mutation.py [--assignment a1-convolution]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cnncourse.autograde.cells import without_hidden  # noqa: E402
from cnncourse.autograde.inprocess import grade_in_process  # noqa: E402
from tests.assignments import ASSIGNMENTS, BY_ID  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def visible_only(nb):
    """The notebook with its hidden tests removed: what students can run before submitting."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.source = without_hidden(cell.source)
    return nb


def report(assignment) -> dict:
    source = assignment.source_nb()
    student_view = visible_only(source)
    rows = []
    start = time.perf_counter()
    os.environ.update(assignment.env())  # what grading needs (A4: the hidden patients)
    for name, mutant in assignment.mutants.items():
        with tempfile.TemporaryDirectory() as folder:
            # beside the files grading reads (A4: model.pt, the mutant's own where it has one)
            cwd = assignment.graded_source(Path(folder), mutant).parent
            full = grade_in_process(source, mutant.replacements, cwd=cwd, scorer=assignment.scorer())
            visible = grade_in_process(student_view, mutant.replacements, cwd=cwd)
            rows.append({"mutant": name, "mistake": mutant.what, "score": full.score, "max_score": full.max_score,
                         "failed_cells": full.failed, "caught_by_visible_tests": bool(visible.failed)})
    killed = [r for r in rows if r["score"] < r["max_score"]]
    return {
        "assignment": assignment.id,
        "mutants": len(rows),
        "killed": len(killed),
        "mutation_score": round(len(killed) / len(rows), 4) if rows else None,
        "survivors": [r["mutant"] for r in rows if r not in killed],
        "caught_only_by_hidden_tests": [r["mutant"] for r in killed if not r["caught_by_visible_tests"]],
        "wall_s": round(time.perf_counter() - start, 1),
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", choices=sorted(BY_ID), help="one assignment (default: all)")
    args = parser.parse_args()
    for assignment in [BY_ID[args.assignment]] if args.assignment else ASSIGNMENTS:
        result = report(assignment)
        path = RESULTS / f"mutation_{assignment.id}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{assignment.id}: {result['killed']}/{result['mutants']} mutants killed "
              f"({len(result['caught_only_by_hidden_tests'])} only by hidden tests) -> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
