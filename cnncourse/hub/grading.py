"""The hub's one call to autograde: every grading path of the hub (the CLI, the tests) goes through here.

It runs the course's parallel autograde (``python -m cnncourse.autograde autograde``, as ``make autograde``), whose
kernels run in the sandbox of ``c.Sandbox`` (``cnncourse/autograde/sandbox.py``; as the grader account, not root,
each kernel keeps that uid inside its own user namespace).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def autograde_argv(assignment: str, jobs: int = 2) -> list[str]:
    """The command that autogrades every collected submission of ``assignment`` (run in the course root)."""
    return [sys.executable, "-m", "cnncourse.autograde", "autograde", assignment, "--jobs", str(jobs),
            "--no-progress"]


def autograde(course_root: Path, assignment: str, jobs: int = 2) -> int:
    """Autograde ``assignment`` in ``course_root``; returns the command's exit status (output goes to ours)."""
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run(autograde_argv(assignment, jobs), cwd=course_root, env=env).returncode
