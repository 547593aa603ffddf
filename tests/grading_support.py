"""What the table-driven assignment tests share: the row, mutant and submission types, and nbgrader helpers."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry

from cnncourse.autograde import cells
from cnncourse.autograde.inprocess import fill_answers

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """A known-wrong answer: ``(answer cell grade_id, old text, new text)`` replacements in the source, and for an
    assignment graded from files (A4's model.pt) the files such an answer produces, replacing the reference's."""

    what: str
    replacements: list[tuple[str, str, str]]
    files: Callable[[Assignment], dict[str, bytes]] | None = None


@dataclass
class Submission:
    """One notebook of the shared autograde batch and what grading it must give.

    - ``fails``: grade cells that must score 0 (every other autograded cell scores full marks);
    - ``flagged``: the notebook must be flagged in the gradebook by autograde (missing/forged pass markers);
    - ``manual``: grade cells nbgrader leaves to manual grading (a deleted cell; all when the kernel dies);
    - ``stdout``: text each named test cell's output must show (e.g. a warning reported, not penalised);
    - ``feedback``: its feedback is generated and checked (scores and messages only);
    - ``audit``: ``make audit`` must list it;
    - ``inprocess``: the in-process grader must give the same scores (False for tricks that need a real
      kernel or would change the test process);
    - ``dies``: the kernel dies (the run reports it as failed);
    - ``files``: files submitted beside the notebook (A4: ``model.pt``), name -> bytes;
    - ``rank``: its place on ``make leaderboard`` (None: listed without a result).
    """

    notebook: NotebookNode
    fails: set[str] = field(default_factory=set)
    flagged: bool = False
    manual: set[str] = field(default_factory=set)
    stdout: dict[str, str] = field(default_factory=dict)
    feedback: bool = False
    audit: bool = False
    inprocess: bool = True
    dies: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    rank: int | None = None


@dataclass(frozen=True)
class Assignment:
    """One row of ``tests/assignments.py``.

    ``env`` gives the environment grading needs (A4: ``CNNCOURSE_GRADING_DATA``, the hidden patients) and
    ``files`` the files graded beside the reference notebook (A4: a ``model.pt``); both default to none.
    """

    id: str
    points: float  # autograded points (manually graded ones are not counted)
    grade_cells: dict[str, float]  # autograded test cell grade_id -> points
    mutants: dict[str, Mutant]
    submissions: Callable[[Assignment], dict[str, Submission]]
    env: Callable[[], dict[str, str]] = dict
    files: Callable[[Assignment], dict[str, bytes]] = lambda a: {}

    @property
    def source(self) -> Path:
        return ROOT / "solutions" / self.id / f"{self.id}.ipynb"

    @property
    def release(self) -> Path:
        return ROOT / "assignments" / self.id / f"{self.id}.ipynb"

    def source_nb(self) -> NotebookNode:
        return nbformat.read(self.source, as_version=4)

    def release_nb(self) -> NotebookNode:
        return nbformat.read(self.release, as_version=4)

    def graded_source(self, folder: Path, mutant: Mutant | None = None) -> Path:
        """The reference notebook ready to grade: itself, or a copy in ``folder`` beside its ``files`` (those of
        ``mutant`` where it has its own)."""
        files = {**self.files(self), **(mutant.files(self) if mutant and mutant.files else {})}
        if not files:
            return self.source
        for name, data in {self.source.name: self.source.read_bytes(), **files}.items():
            (folder / name).write_bytes(data)
        return folder / self.source.name

    def scorer(self):
        """The hidden scorer ``nbgrader_config.py`` names for this assignment (A4's hidden patients), or None."""
        from cnncourse.autograde.hidden import load_scorer
        from cnncourse.autograde.parallel import load_config

        return load_scorer(load_config(ROOT).SandboxedExecute.hidden_scorers.get(self.id))

    def correct(self) -> NotebookNode:
        """The release with the reference answers filled in: a student who scores full marks."""
        return fill_answers(self.release_nb(), self.source_nb())


def cell(nb: NotebookNode, grade_id: str) -> NotebookNode:
    return cells.find(nb.cells, grade_id)


def edited(nb: NotebookNode, **sources: str | Callable[[str], str]) -> NotebookNode:
    """A copy of ``nb`` with the named cells' sources replaced (a string) or transformed (a function)."""
    nb = copy.deepcopy(nb)
    for grade_id, new in sources.items():
        c = cell(nb, grade_id)
        c.source = new(c.source) if callable(new) else new
    return nb


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def sandbox_unavailable() -> str | None:
    """Why graded kernels cannot be sandboxed on this machine (no bubblewrap, no namespaces), or None."""
    from cnncourse.autograde.sandbox import Sandbox, SandboxUnavailable

    try:
        Sandbox().check()
    except SandboxUnavailable as err:
        return str(err)
    return None


def nbgrader_env(assignment: Assignment | None = None) -> dict[str, str]:
    """nbgrader and its kernels import cnncourse from this checkout; the venv's bin/ is on PATH (alembic); plus
    the environment grading ``assignment`` needs."""
    env = dict(os.environ, **(assignment.env() if assignment else {}))
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def nbgrader(course: Path, *args: str, check: bool = True, assignment: Assignment | None = None
             ) -> subprocess.CompletedProcess:
    """Run nbgrader from the course root (with the environment grading ``assignment`` needs)."""
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=nbgrader_env(assignment),
                            capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def make_course(course: Path, assignment: Assignment, submissions: dict[str, Submission]) -> Path:
    """A course in ``course``: config, the assignment's source, its release regenerated, the submissions (each
    notebook with its files)."""
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / assignment.id, course / "solutions" / assignment.id)
    nbgrader(course, "generate_assignment", assignment.id, "--force")
    for student, sub in submissions.items():
        folder = course / ".nbgrader" / "submitted" / student / assignment.id
        folder.mkdir(parents=True)
        nbformat.write(sub.notebook, folder / f"{assignment.id}.ipynb")
        for name, data in sub.files.items():
            (folder / name).write_bytes(data)
    return course


def gradebook_scores(course: Path, assignment: Assignment, student: str) -> dict[str, float | None]:
    """Autograded points per code grade cell of one student, from the course's gradebook."""
    with Gradebook(f"sqlite:///{course / '.nbgrader' / 'gradebook.db'}", "cnncourse") as gb:
        try:
            nb = gb.find_submission_notebook(assignment.id, assignment.id, student)
        except MissingEntry:
            return {}
        return {g.name: g.score for g in nb.grades if g.cell_type == "code"}


def gradebook_rows(db: Path, assignment: Assignment) -> dict[str, dict]:
    """Every student's notebook row of the gradebook: scores per cell, flags, manual-grading marks."""
    with Gradebook(f"sqlite:///{db}", "cnncourse") as gb:
        rows = {}
        for sub in gb.find_assignment(assignment.id).submissions:
            nb = gb.find_submission_notebook(assignment.id, assignment.id, sub.student.id)
            rows[sub.student.id] = {
                "score": nb.score, "flagged": nb.flagged,
                "grades": {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in nb.grades},
            }
        return rows


def is_flagged(course: Path, assignment: Assignment, student: str) -> bool:
    with Gradebook(f"sqlite:///{course / '.nbgrader' / 'gradebook.db'}", "cnncourse") as gb:
        return gb.find_submission_notebook(assignment.id, assignment.id, student).flagged


def feedback_html(course: Path, assignment: Assignment, students: list[str]) -> dict[str, str]:
    """``make feedback``'s HTML for some students, through nbgrader's API in this process (one start-up)."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from cnncourse.autograde.parallel import load_config

    config = load_config(course)
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    pages = {}
    for student in students:
        result = api.generate_feedback(assignment.id, student)
        assert result["success"], result.get("error") or result.get("log")
        path = course / ".nbgrader" / "feedback" / student / assignment.id / f"{assignment.id}.html"
        pages[student] = path.read_text()
    return pages
