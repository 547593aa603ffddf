"""Autograde an assignment's submissions in parallel worker processes (nbgrader has no parallel mode).

Each worker grades whole students through nbgrader's own API (the same ``Autograde`` converter and
preprocessors as ``nbgrader autograde``), into its own copy of the gradebook, so that no two processes
write one SQLite file; the copies are merged into the course gradebook at the end. A progress bar shows
the students graded and the time left; the summary lists submissions that failed to run and flagged ones.

    python -m cnncourse.autograde autograde a1-convolution --jobs 2      (make autograde JOBS=2)
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

__all__ = ["Summary", "autograde", "course_path", "db_path", "load_config", "merge_gradebooks", "submitted_students"]


@dataclass
class Summary:
    """What one run did: students graded, those whose notebook failed to run, those flagged, and its wall time."""

    assignment: str
    graded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # student -> last line of the error
    flagged: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def __str__(self) -> str:
        lines = [f"{self.assignment}: {len(self.graded)} graded, {len(self.failed)} failed to run, "
                 f"{len(self.flagged)} flagged ({self.wall_s:.0f} s)"]
        lines += [f"  failed to run: {s}: {why}" for s, why in sorted(self.failed.items())]
        if self.failed:
            lines.append(f"  (details in .nbgrader/logs/{self.assignment}-worker*.log)")
        lines += [f"  flagged for review: {s}" for s in self.flagged]
        return "\n".join(lines)


def load_config(course: Path) -> Config:
    """The course's ``nbgrader_config.py`` as a traitlets Config."""
    return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()


def db_path(config: Config) -> Path:
    """The SQLite file of the course gradebook."""
    url = config.CourseDirectory.db_url
    if not url.startswith("sqlite:///"):
        raise ValueError(f"parallel autograde needs an SQLite gradebook, got db_url={url!r}")
    return Path(url[len("sqlite:///"):])


def course_path(config: Config, course: Path, trait: str, default: str) -> Path:
    """A CourseDirectory folder (``submitted_directory`` ...) of the course."""
    return course / config.CourseDirectory.get(trait, default)


def submitted_students(course: Path, config: Config, assignment: str) -> list[str]:
    """Students with a submission folder ``<submitted>/<student>/<assignment>/``, sorted."""
    submitted = course_path(config, course, "submitted_directory", "submitted")
    return sorted(p.parent.name for p in submitted.glob(f"*/{assignment}") if p.is_dir())


# Worker processes: one nbgrader API each, on its own gradebook copy.
_API = None


def _start_worker(course: str, config: Config, databases: multiprocessing.Queue, threads: int) -> None:
    global _API
    # One kernel per worker at a time: torch's thread pool gets this worker's share of the cores, not all of them
    # (benchmarks/autograde_profile.py measures both). Set OMP_NUM_THREADS to choose.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from multiprocessing.util import Finalize

    from cnncourse.autograde.zygote import stop_zygote

    Finalize(None, stop_zygote, exitpriority=10)  # a worker ends without atexit: stop its zygote, remove its folder
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = Config(config)
    database = databases.get()
    config.CourseDirectory.db_url = "sqlite:///" + database
    config.CourseDirectory.root = course
    os.chdir(course)
    # nbgrader's log and the kernels' stderr go to a file, not over the progress bar.
    log = Path(database).parent.parent / "logs" / (Path(database).stem + ".log")
    log.parent.mkdir(exist_ok=True)
    os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    _API = NbGraderAPI(CourseDirectory(config=config), config=config)


def _grade(task: tuple[str, str, bool]) -> tuple[str, bool, str]:
    assignment, student, force = task
    result = _API.autograde(assignment, student, force=force, create=True)
    error = ""
    if not result["success"]:
        lines = [line for line in (result.get("error") or result.get("log") or "").splitlines() if line.strip()]
        error = lines[-1] if lines else "unknown error"
    return student, bool(result["success"]), error


def merge_gradebooks(main_db: Path, parts: list[Path], assignment: str) -> None:
    """Copy every submission of ``assignment`` in the ``parts`` gradebooks into ``main_db``.

    Scores, manual-grading marks, comments, flags, late penalties and timestamps: the rows a serial
    ``nbgrader autograde`` would have written.
    """
    with Gradebook(f"sqlite:///{main_db}") as main:
        for part_db in parts:
            with Gradebook(f"sqlite:///{part_db}") as part:
                try:
                    submissions = part.find_assignment(assignment).submissions
                except MissingEntry:
                    continue
                for sub in submissions:
                    student = sub.student
                    main.update_or_create_student(student.id, first_name=student.first_name,
                                                  last_name=student.last_name, email=student.email,
                                                  lms_user_id=student.lms_user_id)
                    kwargs = {"timestamp": sub.timestamp} if sub.timestamp is not None else {}
                    main.update_or_create_submission(assignment, student.id, **kwargs)
                    for nb in sub.notebooks:
                        target = main.find_submission_notebook(nb.name, assignment, student.id)
                        target.flagged = nb.flagged
                        target.late_submission_penalty = nb.late_submission_penalty
                        for grade in nb.grades:
                            t = main.find_grade(grade.name, nb.name, assignment, student.id)
                            t.auto_score, t.manual_score = grade.auto_score, grade.manual_score
                            t.extra_credit, t.needs_manual_grade = grade.extra_credit, grade.needs_manual_grade
                        for comment in nb.comments:
                            t = main.find_comment(comment.name, nb.name, assignment, student.id)
                            t.auto_comment, t.manual_comment = comment.auto_comment, comment.manual_comment
                    main.db.commit()


def _flagged(main_db: Path, assignment: str, students: list[str]) -> list[str]:
    with Gradebook(f"sqlite:///{main_db}") as gb:
        flagged = set()
        for sub in gb.find_assignment(assignment).submissions:
            if sub.student.id in students and any(nb.flagged for nb in sub.notebooks):
                flagged.add(sub.student.id)
    return sorted(flagged)


def autograde(course: Path | str, assignment: str, jobs: int = 2, *, timeout: int | None = None,
              force: bool = False, progress: bool = True) -> Summary:
    """Autograde every submission of ``assignment`` in ``course`` with ``jobs`` worker processes.

    Args:
        course: the course root (where ``nbgrader_config.py`` is).
        assignment: e.g. ``"a1-convolution"``; it must be in the gradebook (``make release`` puts it there).
        jobs: worker processes (each runs one kernel at a time).
        timeout: seconds per cell, overriding ``c.Execute.timeout``.
        force: autograde again students already autograded (nbgrader skips them otherwise).
        progress: show a progress bar with the time left (on stderr).

    Each kernel runs in the sandbox of ``c.Sandbox`` (:mod:`cnncourse.autograde.sandbox`); where it cannot,
    nothing is graded (RuntimeError saying how to install bubblewrap or accept the risk).
    Required environment variables per assignment (``c.CnnCourseAutograde.required_env = {id: [names]}``
    in ``nbgrader_config.py``) must be set, or nothing is graded.
    """
    from tqdm import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    course = Path(course).resolve()
    config = load_config(course)
    from cnncourse.autograde.sandbox import Sandbox
    from cnncourse.autograde.settings import CnnCourseAutograde

    CnnCourseAutograde(config=config).check_env(assignment)  # the same check as nbgrader autograde's

    Sandbox(config=config).check()  # no bubblewrap: a message saying how to install it, nothing graded
    if timeout is not None:
        config.Execute.timeout = timeout
    main_db = db_path(config)
    with Gradebook(f"sqlite:///{main_db}") as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise RuntimeError(f"{assignment} is not in the gradebook {main_db}: run `make release` first") from None
    students = submitted_students(course, config, assignment)
    summary = Summary(assignment)
    start = time.perf_counter()
    work = main_db.parent / "parallel"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    jobs = max(1, min(jobs, len(students)))
    parts = [work / f"{assignment}-worker{k}.db" for k in range(jobs)]
    for part in parts:
        shutil.copy(main_db, part)
    # Forked, not spawned: a worker starts with nbgrader, the course's config and torch already imported (about 6 s
    # of CPU each when spawned); nothing here has started a thread or CUDA yet.
    context = multiprocessing.get_context("fork")
    databases = context.Queue()
    for part in parts:
        databases.put(str(part))
    tasks = [(assignment, s, force) for s in students]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with context.Pool(jobs, initializer=_start_worker, initargs=(str(course), config, databases, threads)) as pool, \
            tqdm(total=len(tasks), desc=f"autograde {assignment} ({jobs} jobs)", unit="student",
                 disable=not progress) as bar:
        for student, ok, error in pool.imap_unordered(_grade, tasks):
            if ok:
                summary.graded.append(student)
            else:
                summary.failed[student] = error
            bar.set_postfix_str(f"{student}{'' if ok else ' FAILED'}", refresh=False)
            bar.update()
        pool.close()  # workers end on their own (running their finalizers), not terminated
        pool.join()
    merge_gradebooks(main_db, parts, assignment)
    shutil.rmtree(work, ignore_errors=True)
    summary.graded.sort()
    summary.flagged = _flagged(main_db, assignment, students)
    summary.wall_s = time.perf_counter() - start
    return summary
