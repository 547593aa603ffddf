"""Case tables of hidden tests, written once and read by every test cell that uses them.

A table is defined in the hidden part of one locked test cell (between nbgrader's hidden-tests delimiters), at
the cell's top level (so it is defined whatever the student's answers), before any test that reads it::

    from cnncourse.grading import define_cases

    define_cases("a1_conv", [((2, 3, 7, 9), (4, 3, 3, 2), 2, 1, 1), ...])

and test functions read it as the toolkit entry ``cases``: ``for xs, ws, s, p, d in cases["a1_conv"]: ...``.
A table is frozen (tuples all the way down) and written once: a second, different definition (a student's cell
defining it first) raises :class:`~cnncourse.grading.tamper.GradingError`, and so does every later read of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from cnncourse.grading.tamper import GradingError

__all__ = ["CASES", "CaseTables", "define_cases"]


def _frozen(value: object) -> object:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


class CaseTables(Mapping):
    """Table name -> its rows (a tuple of tuples); read-only but for :meth:`define`."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple] = {}
        self._clashes: set[str] = set()

    def define(self, name: str, rows: Iterable) -> None:
        """Define table ``name``; defining it again with the same rows is a no-op (the notebook run again)."""
        rows = _frozen(list(rows))
        if name in self._tables and self._tables[name] != rows:
            self._clashes.add(name)
            raise GradingError(f"the case table {name!r} was defined twice, differently: a cell of the notebook "
                               "defined it before its test cell; restart the kernel and run all.")
        self._tables[name] = rows

    def __getitem__(self, name: str) -> tuple:
        if name in self._clashes:
            raise GradingError(f"the case table {name!r} was defined twice, differently; restart the kernel and "
                               "run all.")
        if name not in self._tables:
            raise GradingError(f"no case table {name!r}: the test cell that defines it (an earlier one) has not "
                               "run; run all cells in order.")
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


CASES = CaseTables()


def define_cases(name: str, rows: Iterable) -> None:
    """Define the hidden case table ``name`` (see the module doc)."""
    CASES.define(name, rows)
