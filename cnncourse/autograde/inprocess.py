"""Grading without a kernel: run a source notebook's code cells in this process and score them like nbgrader.

Used for mutation testing (a mutant is a known-wrong answer: text replacements in one answer cell) and
to build submissions for round-trip tests and benchmarks (:func:`fill_answers`).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import io
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch
from nbformat import NotebookNode
from nbgrader.utils import determine_grade

from cnncourse.autograde import cells, hidden
from cnncourse.autograde.preprocessors import check_markers

__all__ = ["CellResult", "GradeReport", "grade_in_process", "fill_answers", "read_notebook", "restore_locked"]


@dataclass
class CellResult:
    """One grade cell's outcome: its ``grade_id``, points earned and possible, and why it lost points."""

    grade_id: str
    points: float
    max_points: float
    error: str | None = None


@dataclass
class GradeReport:
    """Scores of one in-process run of a notebook; ``flags``: cells whose pass marker was missing."""

    cells: list[CellResult] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)  # the hidden scorer's numbers (A4: accuracy, AUC, ...)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cells)

    @property
    def failed(self) -> list[str]:
        return [c.grade_id for c in self.cells if c.points < c.max_points]

    def by_cell(self) -> dict[str, float]:
        return {c.grade_id: c.points for c in self.cells}


def read_notebook(notebook: Path | str | Mapping) -> NotebookNode:
    """A deep copy of ``notebook`` (a path or an nbformat notebook) as a NotebookNode."""
    if isinstance(notebook, (str, Path)):
        return nbformat.read(str(notebook), as_version=4)
    return nbformat.from_dict(copy.deepcopy(dict(notebook)))


@contextlib.contextmanager
def _chdir(path: Path | str | None) -> Iterator[None]:
    old = os.getcwd()
    if path:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _run_cell(source: str, namespace: dict, name: str) -> list[NotebookNode]:
    """Execute one cell like IPython: the value of a final expression is its result; return its outputs."""
    out, err = io.StringIO(), io.StringIO()
    outputs: list[NotebookNode] = []
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            tree = ast.parse(source, filename=name)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, name, "exec"), namespace)
            value = None
            if last is not None:
                value = eval(compile(ast.Expression(last.value), name, "eval"), namespace)
            if value is not None:
                outputs.append(NotebookNode(output_type="execute_result", data={"text/plain": repr(value)},
                                            metadata={}, execution_count=None))
        except KeyboardInterrupt:
            raise
        except BaseException as err_:  # noqa: BLE001 - a cell may raise anything, even SystemExit
            outputs.append(NotebookNode(output_type="error", ename=type(err_).__name__, evalue=str(err_),
                                        traceback=traceback.format_exception_only(type(err_), err_)))
    streams = [NotebookNode(output_type="stream", name=n, text=t.getvalue()) for n, t in (("stdout", out),
                                                                                      ("stderr", err)) if t.getvalue()]
    return streams + outputs


def apply_replacements(nb: NotebookNode, replacements: Sequence[tuple[str, str, str]]) -> None:
    """Apply ``(grade_id, old, new)`` text replacements in place; each ``old`` must occur exactly once."""
    by_id = {cells.grade_id(c): c for c in nb.cells}
    for grade_id, old, new in replacements:
        if grade_id not in by_id:
            raise ValueError(f"no cell with grade_id {grade_id!r}; ids are {[i for i in by_id if i]}")
        count = by_id[grade_id].source.count(old)
        if count != 1:
            raise ValueError(f"replacement target must occur exactly once in cell {grade_id!r}, found {count}: "
                             f"{old!r:.120}")
        by_id[grade_id].source = by_id[grade_id].source.replace(old, new)


def grade_in_process(
    notebook: Path | str | Mapping,
    replacements: Sequence[tuple[str, str, str]] = (),
    *,
    cwd: Path | str | None = None,
    scorer: object | None = None,
) -> GradeReport:
    """Run every code cell of ``notebook`` in one fresh namespace and score its grade cells like nbgrader.

    Args:
        notebook: a source (solution) notebook or a submission: a path, or an ``nbformat`` notebook.
        replacements: ``(grade_id, old, new)`` text replacements in the cell with that ``grade_id``, e.g.
            a known-wrong implementation (a mutant). Each ``old`` must occur exactly once in its cell, so
            that a mutant cannot silently stop applying when the notebook changes.
        cwd: directory to run in (the notebook's own directory by default when a path is given).
        scorer: the assignment's hidden scorer (:mod:`cnncourse.autograde.hidden`), as autograde uses it: it
            prepares the hidden inputs before the run and scores the hidden test cells' predictions after it.

    Like ``nbgrader autograde``: cells run in order, errors do not stop the run, and a grade cell is
    scored by nbgrader's own rule on its outputs (0 on an error or any stderr output, partial credit for a
    number as the cell's result); a test cell without its pass marker scores 0 and is listed in ``flags``
    (the course's autograde preprocessor). ``NBGRADER_EXECUTION`` is ``"autograde"`` meanwhile.
    """
    nb = read_notebook(notebook)
    apply_replacements(nb, replacements)
    if cwd is None and isinstance(notebook, (str, Path)):
        cwd = Path(notebook).parent
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": builtins}
    previous = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    # Global torch state a notebook may change (its setup cell sets the default dtype): restored afterwards.
    dtype, rng, grad = torch.get_default_dtype(), torch.get_rng_state(), torch.is_grad_enabled()
    inputs = tempfile.TemporaryDirectory(prefix="cnncourse-hidden-")
    key = scorer.prepare(Path(inputs.name)) if scorer is not None else None
    os.environ[hidden.HIDDEN_INPUTS_ENV] = inputs.name
    try:
        with _chdir(cwd), warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_on_stderr
            for k, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    name = cells.grade_id(cell) or f"cell{k}"
                    with hidden.capture() as sent:
                        cell.outputs = _run_cell(cell.source, namespace, f"<cell {name}>")
                    cell.outputs += [NotebookNode(output_type="display_data", data={hidden.MIME: d}, metadata={})
                                     for d in sent]
    finally:
        os.environ.pop(hidden.HIDDEN_INPUTS_ENV, None)
        inputs.cleanup()
        torch.set_default_dtype(dtype)
        torch.set_rng_state(rng)
        torch.set_grad_enabled(grad)
        if previous is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = previous
    results = scorer.score(nb, key) if scorer is not None else {}
    report = GradeReport(flags=check_markers(nb, key=None), results=results)
    for cell in nb.cells:
        if cell.cell_type == "code" and cells.is_grade(cell):
            points, max_points = determine_grade(cell)
            errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
            errors += ["wrote to stderr"] if any(o.get("name") == "stderr" for o in cell.outputs) else []
            report.cells.append(CellResult(cells.grade_id(cell), float(points or 0.0), float(max_points),
                                           "; ".join(errors) or None))
    return report


_SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def fill_answers(release: Mapping, source: Mapping) -> NotebookNode:
    """A copy of the student ``release`` notebook with every answer cell taken from ``source``.

    Answer cells (nbgrader ``solution: true``) are matched by ``grade_id``; the solution markers are
    dropped, so the result is what a student who wrote the reference solution would submit.
    """
    answers = {cells.grade_id(c): _SOLUTION_MARKER.sub("", c["source"]) for c in source["cells"]
               if cells.is_solution(c)}
    filled = read_notebook(release)
    for cell in filled.cells:
        if cells.is_solution(cell):
            if cells.grade_id(cell) not in answers:
                raise ValueError(f"answer cell {cells.grade_id(cell)!r} of the release is missing from the source")
            cell.source = answers[cells.grade_id(cell)]
    return filled


def restore_locked(submission: Mapping, source: Mapping) -> NotebookNode:
    """The submission with every locked cell's source taken from ``source`` (hidden tests included).

    What nbgrader's ``OverwriteCells`` does before autograding: an edited test cell is put back; a deleted
    one stays deleted (nbgrader then scores it 0 and marks it for manual grading); added cells stay.
    """
    locked = {cells.grade_id(c): c["source"] for c in source["cells"] if cells.is_locked(c)}
    restored = read_notebook(submission)
    for c in restored.cells:
        grade_id = cells.grade_id(c)
        if grade_id in locked:
            c.source = locked[grade_id]
    return restored
