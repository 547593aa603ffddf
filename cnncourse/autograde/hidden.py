"""Hidden reference data never enters a student's process: the kernel predicts, the grader scores.

An assignment with hidden data names a scorer (``c.SandboxedExecute.hidden_scorers = {id: "module:Class"}`` in
``nbgrader_config.py``), a class with two methods that run in the grader's process:

* ``prepare(folder) -> key``: write the hidden inputs (never labels, in an order of its choosing) into
  ``folder``, which the kernel reads at ``$CNNCOURSE_HIDDEN_INPUTS``; return what scoring needs (labels, order);
* ``score(nb, key) -> results``: after the notebook ran, read each hidden test cell's predictions
  (:func:`predictions`), fail the cells whose predictions fall short (:func:`fail`), and return the numbers the
  leaderboard shows; they are written beside the autograded notebook (:data:`RESULTS`).

In the kernel, a hidden test cell calls :func:`emit` with plain numbers: a ``display_data`` output of the
:data:`MIME` type (JSON), which reaches the grader over the kernel's own channel (no file, never a pickle).
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the grader's side only: a kernel that emits predictions never imports nbformat
    from nbformat import NotebookNode

__all__ = ["HIDDEN_INPUTS_ENV", "MIME", "RESULTS", "capture", "emit", "fail", "inputs_dir", "load_scorer",
           "predictions", "read_results", "write_results"]

HIDDEN_INPUTS_ENV = "CNNCOURSE_HIDDEN_INPUTS"  # the folder of hidden inputs (no labels) a graded kernel reads
MIME = "application/vnd.cnncourse.predictions+json"
RESULTS = "cnncourse-results.json"  # written by the grader beside the autograded notebook
_SINK: list[dict] | None = None  # the in-process grader's outputs of the running cell


def inputs_dir() -> Path | None:
    """In a graded kernel: the folder of hidden inputs the grader prepared (read-only), else None."""
    folder = os.environ.get(HIDDEN_INPUTS_ENV)
    return Path(folder) if folder else None


def emit(payload: dict) -> None:
    """Send ``payload`` (JSON: plain numbers and lists) to the grader as an output of the running cell."""
    data = json.loads(json.dumps(payload, allow_nan=True))  # plain JSON types only, or TypeError here
    if _SINK is not None:
        _SINK.append(data)
        return
    from IPython.display import display

    display({MIME: data}, raw=True)


@contextmanager
def capture() -> Iterator[list[dict]]:
    """For the in-process grader: :func:`emit` appends to the yielded list instead of displaying."""
    global _SINK
    previous, _SINK = _SINK, []
    try:
        yield _SINK
    finally:
        _SINK = previous


def predictions(cell: NotebookNode, n: int) -> tuple[list[float] | None, dict]:
    """The last ``MIME`` output of ``cell`` (all of them are removed from it): its ``probabilities`` when they are
    ``n`` finite numbers in [0, 1] (else None), and the whole payload."""
    found = [o for o in cell.get("outputs", []) if o.get("output_type") == "display_data" and MIME in o.get("data", {})]
    cell.outputs = [o for o in cell.get("outputs", []) if o not in found]
    payload = found[-1]["data"][MIME] if found else {}
    values = payload.get("probabilities") if isinstance(payload, dict) else None
    if not isinstance(values, list) or len(values) != n:
        return None, payload if isinstance(payload, dict) else {}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
               for v in values):
        return None, payload
    return [float(v) for v in values], payload


def fail(cell: NotebookNode, message: str) -> None:
    """Score ``cell`` 0 with ``message`` (an error output first: partial credit cannot win)."""
    from nbformat import NotebookNode

    cell.setdefault("outputs", []).insert(0, NotebookNode(output_type="error", ename="AssertionError", evalue=message,
                                        traceback=[f"AssertionError: {message}"]))


def load_scorer(spec: str | None):
    """An instance of the scorer class named ``"module:Class"``, or None for no spec."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"hidden scorer {spec!r}: write it as 'module:Class', e.g. "
                         "'cnncourse.grading_malaria:HiddenPatients'")
    return getattr(importlib.import_module(module), name)()


def write_results(folder: Path, results: dict) -> Path:
    """Write the grader's ``results`` (JSON) beside the autograded notebook, replacing any file of that name."""
    path = Path(folder) / RESULTS
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(results, sort_keys=True))
    return path


def read_results(folder: Path) -> dict:
    """The grader's results for one autograded submission ({} when none were written)."""
    path = Path(folder) / RESULTS
    return json.loads(path.read_text()) if path.is_file() else {}
