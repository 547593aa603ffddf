"""Every assignment of ``tests/assignments.py`` through the grading pipeline (one row each).

Fast checks read the notebooks (grade-cell table, pass-marker pattern) or run them in this process
(solution, mutants). The rest reads ONE shared ``nbgrader autograde`` batch per assignment (module-scoped
fixture): fair students score full marks, wrong answers and cheats lose exactly the cells they should,
flags land in the gradebook, the in-process grader agrees with nbgrader, feedback shows scores and
assertion messages only.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from html import escape as html_escape
from pathlib import Path

import nbformat
import pytest
from nbgrader.validator import Validator

from cnncourse.autograde import cells
from cnncourse.autograde.inprocess import grade_in_process, restore_locked
from cnncourse.autograde.preprocessors import stdout_of
from tests.assignments import ASSIGNMENTS, BY_ID
from tests.grading_support import (
    Assignment,
    Submission,
    cell,
    feedback_html,
    gradebook_rows,
    gradebook_scores,
    make_course,
    nbgrader,
    nbgrader_env,
    sandbox_unavailable,
)

# Seconds per cell in the batch (the course config uses 120): an infinite loop costs this. A3's design test trains
# three small networks in one cell (about 10 s on an idle 2-core machine, over 15 s in a sandboxed kernel on a busy
# CI run); A4's data cell decodes the cells inside the sandbox.
TIMEOUTS = {"a3-architectures": 90, "a4-malaria": 45}
TIMEOUT = 15


def cell_timeout(a) -> int:
    """The per-cell limit the batch of assignment ``a`` is graded with."""
    return TIMEOUTS.get(a.id, TIMEOUT)
JOBS = 2
IDS = [a.id for a in ASSIGNMENTS]
MUTANTS = [(a.id, name) for a in ASSIGNMENTS for name in a.mutants]


@pytest.fixture(params=ASSIGNMENTS, ids=IDS)
def assignment(request):
    return request.param


@dataclass
class Batch:
    assignment: Assignment
    course: Path
    subs: dict[str, Submission]
    run: subprocess.CompletedProcess  # make autograde's command
    rows: dict[str, dict]  # the gradebook right after autograding


@pytest.fixture(scope="module", params=ASSIGNMENTS, ids=IDS)
def batch(request, tmp_path_factory):
    """A temporary course with the assignment's submissions, autograded once in parallel (make autograde JOBS=2)."""
    a = request.param
    if why := sandbox_unavailable():
        pytest.skip(f"autograde's sandbox is unavailable here: {why}")
    subs = a.submissions(a)
    course = make_course(tmp_path_factory.mktemp(a.id), a, subs)
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "autograde", a.id, "--jobs", str(JOBS),
                          "--timeout", str(cell_timeout(a)), "--no-progress"], cwd=course, env=nbgrader_env(a),
                         capture_output=True, text=True, timeout=1800)
    return Batch(a, course, subs, run, gradebook_rows(course / ".nbgrader" / "gradebook.db", a))


def test_cannot_forge_the_table(assignment):
    """The row's grade cells and points are the source's; each test cell runs through graded_test with its id."""
    nb = assignment.source_nb()
    tests = {cells.grade_id(c): c for c in nb.cells if cells.is_test(c)}
    assert {k: cells.points(c) for k, c in tests.items()} == assignment.grade_cells
    assert sum(assignment.grade_cells.values()) == assignment.points
    for grade_id, c in tests.items():
        assert cells.is_locked(c), f"{grade_id} is not locked"
        assert "from cnncourse.grading import graded_test\n" in c.source, f"{grade_id}: import graded_test in the cell"
        assert re.findall(r'^@graded_test\("([\w-]+)"\)$', c.source, re.M) == [grade_id], \
            f"{grade_id}: one @graded_test({grade_id!r}) per test cell"
    assert nb.metadata.kernelspec.name == "python3"


def grading_env(assignment: Assignment, monkeypatch) -> None:
    """This process (and the kernels it starts) gets the environment grading the assignment needs."""
    for name, value in assignment.env().items():
        monkeypatch.setenv(name, value)


def test_validator(assignment, monkeypatch, tmp_path):
    """nbgrader's Validator (students' last check): the source passes, the untouched release fails every grade cell."""
    monkeypatch.setenv("PYTHONPATH", nbgrader_env()["PYTHONPATH"])
    grading_env(assignment, monkeypatch)
    assert Validator().validate(str(assignment.graded_source(tmp_path))) == {}
    release = assignment.release_nb()
    grade_cells = [c.source.strip() for c in release.cells if cells.is_grade(c)]
    result = Validator().validate(str(assignment.release))
    assert sorted(f["source"] for f in result["failed"]) == sorted(grade_cells)


def test_solution_full_marks_in_process(assignment, monkeypatch, tmp_path):
    """The in-process grader gives the reference solution every autograded point, without flags."""
    grading_env(assignment, monkeypatch)
    report = grade_in_process(assignment.graded_source(tmp_path), scorer=assignment.scorer())
    assert report.by_cell() == assignment.grade_cells, [(c.grade_id, c.error) for c in report.cells if c.error]
    assert not report.flags


@pytest.mark.parametrize("aid,mutant", MUTANTS, ids=[f"{a}:{m}" for a, m in MUTANTS])
def test_mutant_loses_points(aid, mutant, monkeypatch, tmp_path):
    """Each known-wrong answer loses points (the report with visible/hidden detail: make mutation)."""
    a = BY_ID[aid]
    grading_env(a, monkeypatch)
    report = grade_in_process(a.graded_source(tmp_path, a.mutants[mutant]), a.mutants[mutant].replacements,
                              scorer=a.scorer())
    assert report.score < a.points, f"{mutant} ({a.mutants[mutant].what}) kept full marks"


def test_mutant_targets_exist(assignment):
    """A mutant whose target text vanished from the solution is an error, not a silent survivor."""
    with pytest.raises(ValueError, match="exactly once"):
        grade_in_process(assignment.source, [(next(iter(assignment.mutants.values())).replacements[0][0],
                                              "text that is not in the cell", "x")])


def test_release_equals_generate_assignment(batch):
    """The committed release is exactly what generate_assignment makes now: sources and nbgrader metadata."""
    a = batch.assignment
    fresh = nbformat.read(batch.course / "assignments" / a.id / f"{a.id}.ipynb", as_version=4)
    committed = a.release_nb()
    assert [c.cell_type for c in fresh.cells] == [c.cell_type for c in committed.cells]
    for k, (x, y) in enumerate(zip(fresh.cells, committed.cells, strict=True)):
        assert x.source == y.source, f"cell {k} differs from generate_assignment's output: run `make release`"
        assert cells.nbgrader(x) == cells.nbgrader(y), f"cell {k} nbgrader metadata differs"
        assert not y.get("outputs"), f"cell {k} of the release has outputs"
    assert not [c for c in committed.cells if cells.HIDDEN in c.source or "BEGIN SOLUTION" in c.source]


def test_batch_summary(batch):
    """make autograde's summary: every student graded but those whose kernel died; the flagged ones listed."""
    out, subs = batch.run.stdout, batch.subs
    dead = sorted(name for name, s in subs.items() if s.dies)
    flagged = sorted(name for name, s in subs.items() if s.flagged)
    assert f"{len(subs) - len(dead)} graded, {len(dead)} failed to run, {len(flagged)} flagged" in out, \
        out + batch.run.stderr[-3000:]
    assert sorted(re.findall(r"failed to run: (\S+):", out)) == dead
    assert sorted(re.findall(r"flagged for review: (\S+)", out)) == flagged
    assert batch.run.returncode == (1 if dead else 0)


def test_scores(batch):
    """Every submission scores 0 on exactly its expected cells and full marks on the others."""
    a, wrong = batch.assignment, []
    for name, s in batch.subs.items():
        got = gradebook_scores(batch.course, a, name)
        assert set(got) == set(a.grade_cells), f"{name}: grade cells {sorted(set(a.grade_cells) ^ set(got))}"
        for grade_id, points in a.grade_cells.items():
            want = 0.0 if grade_id in s.fails else points
            if (got[grade_id] or 0.0) != want:
                wrong.append(f"{name}: {grade_id} scored {got[grade_id]}, expected {want}")
    assert not wrong, "\n".join(wrong)


def test_test_cell_stdout(batch):
    """Warnings and stderr output of a student's code are reported on the test cell's stdout (not penalised)."""
    a = batch.assignment
    for name, s in batch.subs.items():
        if s.stdout:
            path = batch.course / ".nbgrader" / "autograded" / name / a.id / f"{a.id}.ipynb"
            nb = nbformat.read(path, as_version=4)
            for grade_id, text in s.stdout.items():
                assert text in stdout_of(cell(nb, grade_id)), f"{name}: {grade_id}"


def test_flags_and_manual_grading(batch):
    """Autograde flags exactly the notebooks with a missing/forged pass marker; cells left to manual grading."""
    a = batch.assignment
    assert {n for n, r in batch.rows.items() if r["flagged"]} == {n for n, s in batch.subs.items() if s.flagged}
    for name, s in batch.subs.items():
        manual = {g for g, (_, _, needs) in batch.rows[name]["grades"].items() if needs and g in a.grade_cells}
        assert manual == s.manual, f"{name}: cells needing manual grading"


def test_parallel_equals_serial(batch, tmp_path):
    """Students autograded by plain serial `nbgrader autograde`, a cold kernel per notebook, get the parallel
    (warm-kernel) batch's gradebook rows: one with mixed scores, one flagged, one whose kernel died (every cell left
    to manual grading)."""
    a = batch.assignment
    some = [n for n, s in batch.subs.items() if s.fails and s.fails != set(a.grade_cells) and not s.flagged][:1] + \
        [n for n, s in batch.subs.items() if s.flagged][:1] + [n for n, s in batch.subs.items() if s.dies][:1]
    course = make_course(tmp_path, a, {n: batch.subs[n] for n in some})
    nbgrader(course, "autograde", a.id, f"--Execute.timeout={cell_timeout(a)}", "--Sandbox.warm=False", check=False,
             assignment=a)
    serial = gradebook_rows(course / ".nbgrader" / "gradebook.db", a)
    assert set(serial) == set(some)
    assert serial == {n: batch.rows[n] for n in some}


def test_inprocess_agrees_with_nbgrader(batch, monkeypatch):
    """The in-process grader scores each submission (locked cells restored, beside its files) exactly as
    autograde did."""
    a = batch.assignment
    source = a.source_nb()
    grading_env(a, monkeypatch)
    for name, s in batch.subs.items():
        if not s.inprocess:
            continue
        report = grade_in_process(restore_locked(s.notebook, source),
                                  cwd=batch.course / ".nbgrader" / "submitted" / name / a.id, scorer=a.scorer())
        got = gradebook_scores(batch.course, a, name)
        assert report.by_cell() == {k: got[k] for k in report.by_cell()}, name
        assert bool(report.flags) == s.flagged, name


def test_audit(batch):
    """make audit lists exactly the expected submissions, none of the fair ones, and flags them in the gradebook."""
    a = batch.assignment
    report_path = batch.course / "audit.json"
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "audit", a.id, "--json", str(report_path)],
                         cwd=batch.course, env=nbgrader_env(a), capture_output=True, text=True, timeout=600)
    report = json.loads(report_path.read_text())
    expected = sorted(n for n, s in batch.subs.items() if s.audit or s.flagged)
    assert report["flagged"] == expected, run.stdout
    assert run.returncode == (1 if expected else 0)
    for name in expected:
        assert f"{name} [FLAGGED]" in run.stdout
        assert any(f["student"] == name and f["severity"] == "flag" and f["reason"] for f in report["findings"])
    rows = gradebook_rows(batch.course / ".nbgrader" / "gradebook.db", a)
    assert {n for n, r in rows.items() if r["flagged"]} == set(expected)


def test_feedback_scores_and_messages_only(batch):
    """Feedback: each test cell's score and assertion message, no test-cell stdout, no hidden test code anywhere."""
    a = batch.assignment
    chosen = [name for name, s in batch.subs.items() if s.feedback]
    hidden = set()
    for c in a.source_nb().cells:
        hidden |= {line.strip() for block in cells.hidden_blocks(c.source)
                   for line in block.splitlines() if len(line.strip()) > 12}
    for name, html in feedback_html(batch.course, a, chosen).items():
        s = batch.subs[name]
        assert cells.HIDDEN not in html and "passed [" not in html and "note (not penalised)" not in html, name
        leaked = [line for line in hidden if any(form in html for form in (line, html_escape(line),
                                                                           html_escape(line, quote=False)))]
        assert not leaked, f"{name}: hidden test lines in the feedback: {leaked[:3]}"
        score = sum(p for g, p in a.grade_cells.items() if g not in s.fails)
        assert f"Score: {score:.1f}" in html or f"{score:.1f} / " in html, name
        if s.fails:
            assert "Error" in html, name  # the failed cells' messages


def test_grades_export(batch):
    """make grades' step: the CSV export has every student's autograded total."""
    a = batch.assignment
    nbgrader(batch.course, "export", "--to", str(batch.course / "grades.csv"))
    rows = {r["student_id"]: r for r in csv.DictReader((batch.course / "grades.csv").open())}
    assert set(rows) == set(batch.subs)
    for name, s in batch.subs.items():
        want = 0.0 if s.dies else sum(p for g, p in a.grade_cells.items() if g not in s.fails)
        assert float(rows[name]["score"]) == want, name


def test_leaderboard(batch):
    """make leaderboard lists every autograded student, ranked by what the hidden tests measured (A4: accuracy,
    AUC, params, MACs); students without a result (no model, no result cell) are listed unranked."""
    a = batch.assignment
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "leaderboard", a.id], cwd=batch.course,
                         env=nbgrader_env(a), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((batch.course / ".nbgrader" / f"leaderboard-{a.id}.csv").open()))
    assert sorted(r["student"] for r in rows) == sorted(name for name, s in batch.subs.items() if not s.dies)
    ranked = sorted((s.rank, name) for name, s in batch.subs.items() if s.rank)
    assert [(int(r["rank"]), r["student"]) for r in rows if r["rank"]] == ranked
    for r in rows:
        assert bool(r["rank"]) == bool(r["accuracy"]) == bool(r["params"]) == bool(r["macs"]), r
    html = (batch.course / ".nbgrader" / f"leaderboard-{a.id}.html").read_text()
    assert all(f"<td>{html_escape(r['student'])}</td>" in html for r in rows)
