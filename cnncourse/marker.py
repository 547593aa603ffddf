"""The pass marker: the line a graded test cell prints last, keyed so that printing it by hand scores nothing.

The autograde preprocessor (:mod:`cnncourse.autograde.preprocessors`) gives each graded kernel a fresh key in
the ``GRADING_KEY_ENV`` environment variable; :mod:`cnncourse.grading.runner` removes it from the kernel's
environment at import and prints :func:`pass_marker` with it; the preprocessor then looks for that exact line.
This module imports nothing, so the grader's process does not load torch to check a marker.
"""

from __future__ import annotations

import hashlib

__all__ = ["GRADING_KEY_ENV", "pass_marker"]

GRADING_KEY_ENV = "CNNCOURSE_GRADING_KEY"


def pass_marker(grade_id: str, key: str | None) -> str:
    """The line a test cell prints last when it passed; with a grading key it carries a token of it."""
    line = f"\u2714 {grade_id} passed"
    if key is None:
        return line
    return f"{line} [{hashlib.sha256(f'{key}:{grade_id}'.encode()).hexdigest()[:16]}]"
