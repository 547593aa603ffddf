"""What nbgrader test cells use to check a student's answers fairly and hard to fool.

A test cell is one function run at once by :func:`graded_test`::

    from cnncourse.grading import graded_test


    @graded_test("test_conv2d_naive")
    def _test(conv2d_naive, torch, F, assert_close, from_scratch):
        x, w = torch.randn(1, 2, 5, 6), torch.randn(3, 2, 3, 3)
        with from_scratch("conv2d_naive", forbid="a1"):
            y = conv2d_naive(x, w)
        assert_close(y, F.conv2d(x, w), "conv2d_naive(x, w)")

Each parameter is filled by name: ``torch``, ``F``, ``nn``, ``math``, ``shapes``, ``cases``, the helpers below and
an assignment's own toolkit (``malaria``: ``cnncourse.grading_malaria``) are the grader's
(:mod:`.toolkit`); any other name is the student's answer of that name in the notebook. So a student who rebinds
``F`` or ``torch`` changes nothing for the tests, and the tests overwrite none of the student's names.

One idea per module:

* :mod:`.guard`: :func:`from_scratch` fails the test if the code inside calls what the student must write.
* :mod:`.checks`: :func:`assert_close`, :func:`assert_type`, :func:`inputs_unchanged`.
* :mod:`.runner`: :func:`graded_test`, which prints the keyed pass marker (:mod:`cnncourse.marker`) an nbgrader
  preprocessor (``cnncourse.autograde``) checks at grading time.
* :mod:`.tamper`: the snapshot, taken at import, of what the tests rely on (torch, the builtins, the grader).
* :mod:`.toolkit` and :mod:`.cases`: what test functions ask for by name; hidden case tables.

Importing this package imports torch and the course's ``shapes`` and ``margins``, nothing of any one assignment.
"""

from __future__ import annotations

import sys

from cnncourse import marker
from cnncourse.grading import cases, checks, guard, runner, tamper, toolkit
from cnncourse.grading.cases import define_cases
from cnncourse.grading.checks import assert_close, assert_type, inputs_unchanged
from cnncourse.grading.guard import OPS, PRESETS, LibraryCallError, from_scratch
from cnncourse.grading.runner import graded_test
from cnncourse.grading.tamper import GradingError
from cnncourse.grading.tamper import tampered as _tampered  # noqa: F401 - tests call grading._tampered()
from cnncourse.grading.toolkit import preload
from cnncourse.marker import GRADING_KEY_ENV, pass_marker

__all__ = [
    "LibraryCallError",
    "GradingError",
    "GRADING_KEY_ENV",
    "OPS",
    "PRESETS",
    "assert_close",
    "assert_type",
    "define_cases",
    "from_scratch",
    "inputs_unchanged",
    "graded_test",
    "pass_marker",
    "preload",
]

for _module in (cases, checks, guard, marker, runner, tamper, toolkit, sys.modules[__name__]):
    tamper.protect(_module)
