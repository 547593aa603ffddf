"""Answer cells copied from the course package (``make audit`` reports them).

The package needs working reference code for the lectures (``cnncourse.layers`` runs lecture 02's timing,
``cnncourse.models`` trains lecture 15's zoo), and every student can open it. The assignments forbid calling it
(``from_scratch``), and this check finds the other way: pasting it. A cell's code and every module of the
package are cut into overlapping windows of ``window`` tokens, with comments and docstrings dropped, string
literals blanked and local names replaced by one placeholder (renaming variables does not hide a copy;
attribute names such as ``.new_zeros`` and keywords are kept, they carry the structure). A cell is reported when at
least ``threshold`` of its windows occur in one package module.

Independently written answers share short idioms with the package but not long runs of them: the course's
own solutions score at most 0.25 (``tests/test_copied.py`` measures it), copies 0.9 or more.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import io
import keyword
import pkgutil
import tokenize
from dataclasses import dataclass
from functools import cache

import cnncourse

__all__ = ["WINDOW", "THRESHOLD", "Match", "windows", "package_windows", "copied_from_package"]

WINDOW = 16  # tokens per window: long enough that shared idioms ("x.new_zeros(n, c, h, w)") do not match
THRESHOLD = 0.5  # share of a cell's windows found in one module
MIN_WINDOWS = 20  # a cell this short is not evidence either way
_SKIPPED = ("cnncourse.autograde", "cnncourse.grading", "cnncourse.__main__")
_KEEP = set(keyword.kwlist) | set(dir(builtins))


@dataclass(frozen=True)
class Match:
    module: str
    share: float  # of the cell's windows found in the module
    windows: int  # the cell's windows


def _tokens(source: str) -> list[str]:
    """The code's tokens with comments and docstrings dropped, local names as ``_``, strings as ``''``."""
    out: list[str] = []
    previous = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.STRING and previous in ("", ":"):
                continue  # a docstring or a bare string statement
            if tok.type == tokenize.NAME and tok.string not in _KEEP and previous != ".":
                text = "_"
            elif tok.type == tokenize.STRING:
                text = "''"  # messages get reworded; the code around them is the evidence
            else:
                text = tok.string
            out.append(text)
            previous = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return out


def windows(source: str, window: int = WINDOW) -> set[tuple[str, ...]]:
    """The set of ``window``-token runs of ``source`` (see the module docstring for the normalisation)."""
    tokens = _tokens(source)
    return {tuple(tokens[i:i + window]) for i in range(len(tokens) - window + 1)}


@cache
def package_windows(window: int = WINDOW) -> dict[str, frozenset[tuple[str, ...]]]:
    """Module name -> its windows, for every module of ``cnncourse`` but the grading code itself."""
    found = {}
    for info in pkgutil.walk_packages(cnncourse.__path__, "cnncourse."):
        if info.name.startswith(_SKIPPED):
            continue
        module = importlib.import_module(info.name)
        found[info.name] = frozenset(windows(inspect.getsource(module), window))
    return found


def copied_from_package(source: str, *, threshold: float = THRESHOLD, window: int = WINDOW) -> Match | None:
    """The package module ``source`` was most likely copied from, or None if no module holds ``threshold`` of it."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}.")
    cell = windows(source, window)
    if len(cell) < MIN_WINDOWS:
        return None
    best = max(((name, len(cell & module) / len(cell)) for name, module in package_windows(window).items()),
               key=lambda item: item[1])
    return Match(best[0], best[1], len(cell)) if best[1] >= threshold else None
