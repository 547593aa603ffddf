"""What a test function may ask for by name, besides the student's answers.

:data:`BASE`: ``torch``, ``F``, ``nn``, ``math``, ``shapes``, the answer checks, :func:`from_scratch`, the margin
checks of :mod:`cnncourse.margins` and ``cases`` (hidden case tables), captured when the grader is imported
(before any student code at grading time).

An assignment may add its own entry: the module ``cnncourse/grading_<name>.py`` is the entry ``<name>`` (A4's
``cnncourse.grading_malaria`` is ``malaria``); a fifth assignment adds a module and a row of
``c.CnnCourseAutograde.toolkits`` in ``nbgrader_config.py``, no edit here. It is imported only by kernels whose
tests ask for it: a graded kernel loads the assignment's entries when it starts, before any student code
(:func:`preload`, from that row), and refuses an entry it was not given then (a module imported after student code
could have been replaced); elsewhere (JupyterLab, validation, the in-process grader) it is imported at the first
test that asks for it.
"""

from __future__ import annotations

import importlib
import math
import os
import types

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse import margins, shapes
from cnncourse.grading import tamper
from cnncourse.grading.cases import CASES
from cnncourse.grading.checks import assert_close, assert_type, inputs_unchanged
from cnncourse.grading.guard import from_scratch

__all__ = ["BASE", "lookup", "preload"]

BASE: dict[str, object] = {
    "torch": torch, "F": F, "nn": nn, "math": math, "shapes": shapes,
    "assert_close": assert_close, "assert_type": assert_type, "from_scratch": from_scratch,
    "inputs_unchanged": inputs_unchanged, "cases": CASES,
    "within": margins.within, "at_least": margins.at_least, "at_most": margins.at_most,
    "sample_like": margins.sample_like,
}
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # cnncourse/
_LOADED: dict[str, types.ModuleType] = {}


def _is_entry(name: str) -> bool:
    """``name`` is an assignment's toolkit: ``cnncourse/grading_<name>.py`` exists."""
    return name.isidentifier() and os.path.isfile(os.path.join(_PACKAGE, f"grading_{name}.py"))


def _load(name: str) -> types.ModuleType:
    if name not in _LOADED:
        module = importlib.import_module(f"cnncourse.grading_{name}")
        tamper.watch(module.__name__, module)
        for value in list(vars(module).values()):  # the course modules it uses by attribute (shapes, ...)
            if isinstance(value, types.ModuleType) and value.__name__.startswith("cnncourse.") \
                    and value.__name__ not in tamper._WATCHED:
                tamper.watch(value.__name__, value)
        _LOADED[name] = module
    return _LOADED[name]


def preload(*names: str) -> None:
    """Load the toolkit entries ``names`` now (a graded kernel, before its first cell)."""
    for name in names:
        if not _is_entry(name):
            raise ValueError(f"toolkit entry {name!r}: no module cnncourse/grading_{name}.py; name the entry after "
                             "its module (c.CnnCourseAutograde.toolkits in nbgrader_config.py)")
        _load(name)


ABSENT = object()


def lookup(name: str, graded: bool) -> object:
    """The toolkit entry ``name``, or :data:`ABSENT` when it is none (then it is a student's answer)."""
    if name in BASE:
        return BASE[name]
    if name in _LOADED:
        return _LOADED[name]
    if not _is_entry(name):
        return ABSENT
    if graded:
        raise tamper.GradingError(
            f"the toolkit entry {name!r} (cnncourse.grading_{name}) was not loaded when the graded kernel started; "
            f"the instructor lists it for this assignment in c.CnnCourseAutograde.toolkits (nbgrader_config.py).")
    return _load(name)
