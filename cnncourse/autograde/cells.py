"""nbgrader's metadata of a notebook cell, read in one place (like ``nbgrader.utils.is_grade``/``is_solution``).

Every function takes a cell as nbformat gives it (a ``NotebookNode``) or as plain JSON (a ``dict``), and a cell
without nbgrader metadata is no grade, solution or locked cell. The hidden-tests delimiters are written here only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["HIDDEN", "BEGIN_HIDDEN", "END_HIDDEN", "find", "grade_id", "hidden_blocks", "is_grade", "is_locked",
           "is_solution", "is_test", "nbgrader", "points", "without_hidden"]

HIDDEN = "HIDDEN TESTS"  # in both delimiters (and nowhere else in a course notebook)
BEGIN_HIDDEN = f"### BEGIN {HIDDEN}"
END_HIDDEN = f"### END {HIDDEN}"
_HIDDEN = re.compile(rf"{BEGIN_HIDDEN}(.*?){END_HIDDEN}", re.S)
_HIDDEN_LINES = re.compile(rf"[ \t]*{BEGIN_HIDDEN}.*?{END_HIDDEN}\n?", re.S)


def nbgrader(cell: Mapping) -> Mapping:
    """The cell's nbgrader metadata (empty when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell: Mapping) -> str | None:
    """The cell's nbgrader ``grade_id``, or None."""
    return nbgrader(cell).get("grade_id")


def is_grade(cell: Mapping) -> bool:
    """A cell that earns points (an autograded test, or a manually graded answer)."""
    return bool(nbgrader(cell).get("grade"))


def is_solution(cell: Mapping) -> bool:
    """An answer cell: the student writes it."""
    return bool(nbgrader(cell).get("solution"))


def is_locked(cell: Mapping) -> bool:
    """A read-only cell: nbgrader puts its source back before grading."""
    return bool(nbgrader(cell).get("locked"))


def is_test(cell: Mapping) -> bool:
    """An autograded test cell: a code grade cell that is not an answer."""
    return cell.get("cell_type") == "code" and is_grade(cell) and not is_solution(cell)


def points(cell: Mapping) -> float:
    """The points a grade cell is worth (0.0 for any other cell)."""
    return float(nbgrader(cell).get("points", 0.0)) if is_grade(cell) else 0.0


def find(cells: Iterable[Mapping], wanted: str) -> Mapping:
    """The cell whose ``grade_id`` is ``wanted``; KeyError naming the ids there are when none is."""
    cells = list(cells)
    for cell in cells:
        if grade_id(cell) == wanted:
            return cell
    raise KeyError(f"no cell with grade_id {wanted!r}; ids are {[i for i in map(grade_id, cells) if i]}")


def hidden_blocks(source: str) -> list[str]:
    """The text between each pair of hidden-tests delimiters of ``source``."""
    return _HIDDEN.findall(source)


def without_hidden(source: str) -> str:
    """``source`` without its hidden tests (the delimiters' lines included), as the student release shows it."""
    return _HIDDEN_LINES.sub("", source)
