"""What each assignment needs at grading time: ``c.CnnCourseAutograde`` in ``nbgrader_config.py``.

One row per assignment id, read alike by ``nbgrader autograde`` (the course's ``SandboxedExecute``) and ``make
autograde`` (:mod:`cnncourse.autograde.parallel`)::

    c.CnnCourseAutograde.required_env = {"a4-malaria": ["CNNCOURSE_GRADING_DATA"]}
    c.CnnCourseAutograde.toolkits = {"a4-malaria": ["malaria"]}
"""

from __future__ import annotations

import os

from traitlets import Dict, List, Unicode
from traitlets.config import Configurable

__all__ = ["CnnCourseAutograde", "KERNEL_ARGUMENTS", "kernel_arguments"]

_IMPORT = '--IPKernelApp.exec_lines=__import__("cnncourse.grading")'
# Imported by every kernel nbgrader starts, before any cell, so that cnncourse.grading captures torch & co. untouched.
KERNEL_ARGUMENTS = [_IMPORT]


def kernel_arguments(arguments: list[str], toolkits: list[str]) -> list[str]:
    """``arguments`` (``c.Execute.extra_arguments``) whose grader import also loads the toolkit entries ``toolkits``
    (:func:`cnncourse.grading.preload`), before any cell."""
    line = _IMPORT + (f".grading.preload({', '.join(map(repr, toolkits))})" if toolkits else "")
    return [a for a in arguments if not a.startswith(_IMPORT)] + [line]


class CnnCourseAutograde(Configurable):
    """Per assignment id: environment variables grading needs, and the toolkit entries its test cells use."""

    required_env = Dict(key_trait=Unicode(), value_trait=List(Unicode()), help=(
        "Assignment id -> environment variables that must be set to grade it (e.g. the hidden data's folder, "
        "CNNCOURSE_GRADING_DATA); without them autograde refuses to start and names them.")).tag(config=True)
    toolkits = Dict(key_trait=Unicode(), value_trait=List(Unicode()), help=(
        "Assignment id -> toolkit entries its test cells ask for beyond the base ones: the entry 'NAME' is the "
        "module cnncourse/grading_NAME.py (e.g. 'malaria'). A graded kernel loads them before any student code; "
        "a kernel of another assignment never imports them.")).tag(config=True)

    def check_env(self, assignment: str) -> None:
        """Raise RuntimeError naming the variables ``assignment`` needs that are not set."""
        missing = [name for name in self.required_env.get(assignment, []) if not os.environ.get(name)]
        if missing:
            raise RuntimeError(f"autograding {assignment} needs the environment variable(s) {', '.join(missing)}; "
                               "set them (see the README's instructors section) and run again.")
