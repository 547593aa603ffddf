"""The instructors' course folder and nbgrader's exchange, with safe permissions (run as root by ``setup``).

Exchange (``settings.exchange``), as nbgrader's default exchange expects it, with two sticky bits added::

    exchange/            root  1777  anyone creates, nobody renames/deletes what is not theirs (nbgrader #1225)
      cnncourse/         grader 0755 the course: only the grader changes it
        outbound/        grader 0755 released assignments, readable by all
        inbound/         grader 3733 submissions: write-only for students (no listing), sticky: no one
                                     renames or deletes another's submission
        feedback/        grader 0711 feedback files, named by a hash of each student's own submission

nbgrader's documented ``chmod ugo+rw`` on the root lets any student rename ``cnncourse/`` and break collect.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from cnncourse.hub.accounts import chown_tree
from cnncourse.hub.settings import COURSE_ID, PROJECT

EXCHANGE_MODES = {"": 0o755, "outbound": 0o755, "inbound": 0o3733, "feedback": 0o711}


def make_exchange(root: Path, grader: str) -> Path:
    """Create (or repair) the exchange root and the course's folders in it; returns the course's folder."""
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, 0, 0)
    os.chmod(root, 0o1777)
    entry = pwd.getpwnam(grader)
    course = root / COURSE_ID
    for name, mode in EXCHANGE_MODES.items():
        folder = course / name if name else course
        folder.mkdir(exist_ok=True)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chmod(folder, mode)
    return course


def make_course(course_root: Path, grader: str, source: Path = PROJECT) -> None:
    """The grader's course: ``nbgrader_config.py`` and ``solutions/`` from ``source`` (kept if present)."""
    course_root.mkdir(parents=True, exist_ok=True)
    if not (course_root / "nbgrader_config.py").exists():
        shutil.copy2(source / "nbgrader_config.py", course_root / "nbgrader_config.py")
    if not (course_root / "solutions").exists():
        shutil.copytree(source / "solutions", course_root / "solutions",
                        ignore=shutil.ignore_patterns("*.pt", ".ipynb_checkpoints", "__pycache__"))
    (course_root / ".nbgrader").mkdir(exist_ok=True)
    chown_tree(course_root, grader)
    os.chmod(course_root, 0o750)
