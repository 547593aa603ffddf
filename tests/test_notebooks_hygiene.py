"""Every committed lecture is executed, small and clean: what `make notebooks` produces.

Checked per notebook in ``lectures/``: at most 2 MB; kernelspec ``python3``; every non-empty code cell has an
execution count and the counts strictly increase down the notebook (a notebook committed unexecuted, half
executed or run out of order fails); it has stored outputs; errors only in cells tagged ``raises-exception``; no
volatile metadata (cell ``execution`` / ``ExecuteTime`` timestamps, notebook-level ``widgets`` state, widget views
whose state is not saved); and lectures 00-07 hold cells tagged ``nbval-check-output`` that print something.
The fix for most failures is one command: ``make notebooks NOTEBOOKS=lectures/<name>.ipynb``.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))
MAX_BYTES = 2 * 1024 * 1024
CHECK_TAG = "nbval-check-output"
FUNDAMENTALS = range(0, 8)  # lectures 00-07: the course's fundamentals, each reproducing seed facts


def _number(path: Path) -> int | None:
    match = re.match(r"(\d+)_", path.name)
    return int(match.group(1)) if match else None


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def _is_checked(cell) -> bool:
    return CHECK_TAG in cell.metadata.get("tags", []) or "# NBVAL_CHECK_OUTPUT" in cell.source


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_there_are_lectures():
    assert LECTURES, "lectures/ holds no notebook"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_lecture_is_small_and_runs_on_the_standard_kernel(path):
    size = path.stat().st_size
    assert size <= MAX_BYTES, f"{path.name} is {size / 2**20:.2f} MB (> 2 MB): lower the figures' dpi or size"
    nb = _read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"


def execution_problems(nb) -> list[str]:
    """Why ``nb`` is not a notebook executed top to bottom with its outputs stored (empty when it is)."""
    cells = _code_cells(nb)
    if not cells:
        return ["it has no code"]
    problems = []
    counts = [c.execution_count for c in cells]
    missing = [i for i, n in enumerate(counts) if n is None]
    if missing:
        problems.append(f"code cells {missing} (0-based among code cells) were never run")
    ran = [n for n in counts if n is not None]
    out_of_order = [(a, b) for a, b in zip(ran, ran[1:], strict=False) if b <= a]
    if out_of_order:
        problems.append(f"execution counts do not increase: {out_of_order[:3]}")
    if not any(c.outputs for c in cells):
        problems.append("no stored outputs")
    for i, cell in enumerate(cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors and "raises-exception" not in cell.metadata.get("tags", []):
            problems.append(f"code cell {i} stored an error: {errors[0].ename}: {errors[0].evalue}")
    return problems


def volatile_metadata(nb) -> list[str]:
    """What in ``nb`` changes on every run (timestamps, widget state), where."""
    found = ["notebook metadata 'widgets'"] if "widgets" in nb.metadata else []
    for i, cell in enumerate(nb.cells):
        found += [f"cell {i} metadata {key!r}" for key in ("execution", "ExecuteTime") if key in cell.metadata]
        for output in cell.get("outputs", []):
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                found.append(f"cell {i}: a widget view whose state is not saved (it shows as an error)")
    return found


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_lecture_is_executed_top_to_bottom_with_outputs(path):
    problems = execution_problems(_read(path))
    assert not problems, f"{path.name}: {'; '.join(problems)}. Run `make notebooks NOTEBOOKS=lectures/{path.name}`."


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_lecture_has_no_volatile_metadata(path):
    found = volatile_metadata(_read(path))
    assert not found, f"{path.name} has volatile metadata: {'; '.join(found)}"


def test_the_checks_catch_unexecuted_half_executed_and_stamped_notebooks():
    def notebook(counts, **metadata):
        nb = nbformat.v4.new_notebook()
        for n in counts:
            out = [nbformat.v4.new_output("stream", text="1\n")] if n is not None else []
            nb.cells.append(nbformat.v4.new_code_cell("print(1)", execution_count=n, outputs=out))
        nb.cells[0].metadata.update(metadata)
        return nb

    assert execution_problems(notebook([1, 2, 3])) == []
    assert "never run" in execution_problems(notebook([None, None]))[0]
    assert "never run" in execution_problems(notebook([1, 2, None]))[0]
    assert "do not increase" in execution_problems(notebook([1, 3, 2]))[0]
    assert volatile_metadata(notebook([1])) == []
    assert volatile_metadata(notebook([1], execution={"iopub.status.busy": "2026-01-01T00:00:00Z"})) == [
        "cell 0 metadata 'execution'"]


@pytest.mark.parametrize("path", [p for p in LECTURES if _number(p) in FUNDAMENTALS], ids=lambda p: p.name)
def test_fundamentals_lecture_checks_printed_facts(path):
    checked = [c for c in _code_cells(_read(path)) if _is_checked(c)]
    assert checked, f"{path.name} has no cell tagged {CHECK_TAG} (the seed facts it reproduces)"
    for cell in checked:
        texts = [o for o in cell.outputs
                 if o.output_type == "stream" or "text/plain" in o.get("data", {})]
        assert texts, f"{path.name}: a {CHECK_TAG} cell prints nothing to compare:\n{cell.source[:200]}"


def test_fundamentals_reproduce_at_least_15_seed_facts():
    """At least 15 cells tagged nbval-check-output across lectures 00-07 (issue 8).

    This total only applies once lectures 01 to 07 all exist; until then the test skips, and the per-notebook
    test above checks that each existing lecture has such cells.
    """
    numbers = {_number(p) for p in LECTURES}
    if not set(range(1, 8)) <= numbers:
        pytest.skip(f"lectures {sorted(set(range(1, 8)) - numbers)} do not exist yet")
    total = sum(_is_checked(c) for p in LECTURES if _number(p) in FUNDAMENTALS for c in _code_cells(_read(p)))
    assert total >= 15, f"only {total} {CHECK_TAG} cells across lectures 00-07"
