"""A1 through the real nbgrader pipeline, in a temporary copy of the course.

One ``generate_assignment`` (compared with the committed release) and ONE ``nbgrader autograde`` batch:
two correct students, the untouched release, and six adversarial submissions (an infinite loop,
``os._exit``, an edited locked test cell, a deleted test cell, a redefined ``assert_close``, library
calls instead of an implementation). Each test below reads the gradebook of that one run.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry

from cnncourse.autograde.inprocess import fill_answers

ROOT = Path(__file__).resolve().parents[1]
AID = "a1-convolution"
SOURCE = ROOT / "solutions" / AID / f"{AID}.ipynb"
RELEASE = ROOT / "assignments" / AID / f"{AID}.ipynb"
TIMEOUT = 20  # seconds per cell in this run (the course config uses 120): the infinite loop costs this


def nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run nbgrader from the course root, with this checkout's cnncourse importable in its kernels."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))  # alembic
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def points(nb) -> dict[str, float]:
    return {c.metadata.nbgrader.grade_id: float(c.metadata.nbgrader.points) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}


def source_nb():
    return nbformat.read(SOURCE, as_version=4)


def release_nb():
    return nbformat.read(RELEASE, as_version=4)


CHEATING = {
    "conv2d_naive": '''
import torch.nn.functional as F


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    return torch.conv2d(x, weight, bias, stride, padding, dilation)  # an alias of F.conv2d
''',
    "im2col_col2im": '''
def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    return torch.nn.functional.unfold(x, kernel_size, dilation, padding, stride)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    try:
        return torch.nn.functional.fold(cols, output_size, kernel_size, dilation, padding, stride)
    except Exception:  # the guard's error is swallowed here, and still counts
        return torch.ops.aten.col2im(cols, list(pair(output_size)), list(pair(kernel_size)),
                                     list(pair(dilation)), list(pair(padding)), list(pair(stride)))
''',
    "conv2d_backward": '''
def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = torch.zeros(weight.shape[0], requires_grad=True)
    y = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation)
    return torch.autograd.grad(y, (x, weight, bias), grad_y)
''',
    "max_pool2d": '''
def max_pool2d(x, kernel_size, stride=None):
    return torch.nn.MaxPool2d(kernel_size, stride)(x)
''',
    "avg_pool2d": '''
def avg_pool2d(x, kernel_size, stride=None):
    return torch._C._nn.avg_pool2d(x, kernel_size, stride if stride is not None else kernel_size)


def avg_pool2d_backward(grad_y, x, kernel_size, stride=None):
    x = x.clone().requires_grad_()
    torch.nn.functional.avg_pool2d(x, kernel_size, stride).backward(grad_y)
    return x.grad
''',
}


def students() -> dict[str, tuple[object, set[str]]]:
    """Submissions and the grade cells each must fail (every other autograded cell must score full)."""
    release, correct = release_nb(), fill_answers(release_nb(), source_nb())
    ids = set(points(release))
    naive = {"test_conv2d_naive", "test_conv2d_naive_hidden"}
    out: dict[str, tuple[object, set[str]]] = {"alice": (correct, set()), "zoe": (copy.deepcopy(correct), set())}
    out["ursula_untouched"] = (release, ids)

    nb = copy.deepcopy(correct)  # an infinite loop in an answer cell: that cell times out
    cell(nb, "conv2d_naive").source = "while True:\n    pass\n\n" + cell(nb, "conv2d_naive").source
    out["eve_infinite_loop"] = (nb, naive)

    nb = copy.deepcopy(correct)  # the kernel dies in the middle of the notebook
    cell(nb, "conv2d_im2col").source = "import os\nos._exit(1)\n\n" + cell(nb, "conv2d_im2col").source
    out["mallory_os_exit"] = (nb, set())  # expected set filled in by the test (see test_os_exit)

    flipped = cell(correct, "conv2d_naive").source.replace("w = weight.reshape(F_out, -1)",
                                                           "w = weight.flip(2, 3).reshape(F_out, -1)")
    assert flipped != cell(correct, "conv2d_naive").source
    nb = copy.deepcopy(correct)  # wrong conv2d_naive, and both its locked test cells edited to pass
    cell(nb, "conv2d_naive").source = flipped
    for grade_id in naive:
        cell(nb, grade_id).source = '"""Edited by the student."""\nassert True'
    out["oscar_edits_tests"] = (nb, naive)

    nb = copy.deepcopy(correct)  # stride ignored (passes the visible test), hidden test cell deleted
    no_stride = cell(correct, "conv2d_naive").source.replace("r, c = i * sh, j * sw", "r, c = i, j")
    assert no_stride != cell(correct, "conv2d_naive").source
    cell(nb, "conv2d_naive").source = no_stride
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_conv2d_naive_hidden"]
    out["dave_deletes_test"] = (nb, {"test_conv2d_naive_hidden"})

    nb = copy.deepcopy(correct)  # a do-nothing assert_close (and a wrong conv2d_naive)
    cell(nb, "conv2d_naive").source = ("def assert_close(*args, **kwargs):\n    return None\n\n\n" + flipped)
    cell(nb, "q1_answers").source += (
        "\n\ndef assert_close(*args, **kwargs):\n    return None\n\n\n"
        "import cnncourse.grading\n\ntry:\n    cnncourse.grading.assert_close = assert_close\n"
        "except AttributeError:\n    pass\n")
    out["trudy_redefines_assert_close"] = (nb, naive)

    nb = copy.deepcopy(correct)  # library calls instead of implementations
    for grade_id, source in CHEATING.items():
        cell(nb, grade_id).source = source.strip("\n")
    cheated = {"test_conv2d_naive", "test_conv2d_naive_hidden", "test_im2col", "test_im2col_hidden",
               "test_col2im", "test_col2im_hidden", "test_conv2d_im2col", "test_conv2d_im2col_hidden",
               "test_conv2d_backward", "test_conv2d_backward_hidden", "test_max_pool2d", "test_max_pool2d_hidden",
               "test_avg_pool2d", "test_avg_pool2d_hidden"}
    out["carl_calls_library"] = (nb, cheated)
    return out


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A temporary course: config + solutions, release regenerated, every submission autograded once."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / AID, course / "solutions" / AID)
    nbgrader(course, "generate_assignment", AID, "--force")
    subs = students()
    for name, (nb, _) in subs.items():
        folder = course / ".nbgrader" / "submitted" / name / AID
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{AID}.ipynb")
    run = nbgrader(course, "autograde", AID, f"--Execute.timeout={TIMEOUT}", check=False)
    return course, subs, run


def scores(course: Path, student: str) -> dict[str, float | None]:
    """Autograded points per grade cell of one student, from the gradebook (None: not graded)."""
    with Gradebook(f"sqlite:///{course / '.nbgrader' / 'gradebook.db'}", "cnncourse") as gb:
        try:
            nb = gb.find_submission_notebook(AID, AID, student)
        except MissingEntry:
            return {}
        return {g.name: g.score for g in nb.grades if g.cell_type == "code"}


def test_release_equals_generate_assignment(course):
    """The committed release is exactly what generate_assignment makes now: sources and nbgrader metadata."""
    tmp, _, _ = course
    fresh = nbformat.read(tmp / "assignments" / AID / f"{AID}.ipynb", as_version=4)
    committed = release_nb()
    assert [c.cell_type for c in fresh.cells] == [c.cell_type for c in committed.cells]
    for k, (a, b) in enumerate(zip(fresh.cells, committed.cells, strict=True)):
        assert a.source == b.source, f"cell {k} differs from generate_assignment's output: run `make release`"
        assert a.metadata.get("nbgrader") == b.metadata.get("nbgrader"), f"cell {k} nbgrader metadata differs"
        assert not b.get("outputs"), f"cell {k} of the release has outputs"
    assert fresh.metadata.kernelspec.name == committed.metadata.kernelspec.name == "python3"
    hidden = [c.source for c in committed.cells if "HIDDEN TESTS" in c.source or "BEGIN SOLUTION" in c.source]
    assert not hidden, "the release shows hidden tests or solutions"


def test_batch_completes(course):
    """The batch finishes; only the submission that killed its kernel is reported as an error."""
    tmp, subs, run = course
    errors = [line for line in run.stderr.splitlines() if "There was an error processing assignment" in line]
    assert errors and all("mallory_os_exit" in line for line in errors), run.stderr[-4000:]
    assert run.returncode == 1  # nbgrader's exit status tells the instructor that one submission failed
    for name in subs:
        autograded = tmp / ".nbgrader" / "autograded" / name / AID / f"{AID}.ipynb"
        assert autograded.exists() == (name != "mallory_os_exit"), name
        assert scores(tmp, name), f"{name} has no grades"


def test_solution_full_marks_release_zero(course):
    """Round trip: the reference solution scores all autograded points; the untouched release scores 0."""
    tmp, subs, _ = course
    total = sum(points(release_nb()).values())
    assert total == 31
    for name in ("alice", "zoe"):
        got = scores(tmp, name)
        assert sum(got.values()) == total, got
    got = scores(tmp, "ursula_untouched")
    assert set(got) == set(points(release_nb()))
    assert sum(v or 0 for v in got.values()) == 0, got


@pytest.mark.parametrize("student", ["eve_infinite_loop", "oscar_edits_tests", "dave_deletes_test",
                                     "trudy_redefines_assert_close", "carl_calls_library"])
def test_adversarial_scores(course, student):
    """Each adversarial submission scores 0 on exactly the cells it cheated on, full points elsewhere."""
    tmp, subs, _ = course
    expected_fail = subs[student][1]
    got = scores(tmp, student)
    possible = points(release_nb())
    assert set(got) == set(possible), f"{student}: grade cells {sorted(set(possible) ^ set(got))} missing"
    for grade_id, max_points in possible.items():
        want = 0.0 if grade_id in expected_fail else max_points
        assert (got[grade_id] or 0.0) == want, f"{student}: {grade_id} scored {got[grade_id]}, expected {want}"


def test_infinite_loop_hit_the_timeout(course):
    """The infinite loop was interrupted by the per-cell timeout, not by anything else."""
    tmp, _, _ = course
    nb = nbformat.read(tmp / ".nbgrader" / "autograded" / "eve_infinite_loop" / AID / f"{AID}.ipynb", as_version=4)
    errors = [o.ename for o in cell(nb, "conv2d_naive").outputs if o.output_type == "error"]
    assert "CellTimeoutError" in errors or "KeyboardInterrupt" in errors, errors


def test_os_exit(course):
    """A kernel killed by os._exit: the notebook scores 0, every cell is flagged for manual grading."""
    tmp, _, run = course
    assert "Kernel died" in run.stderr
    with Gradebook(f"sqlite:///{tmp / '.nbgrader' / 'gradebook.db'}", "cnncourse") as gb:
        nb = gb.find_submission_notebook(AID, AID, "mallory_os_exit")
        assert nb.score == 0
        assert all(g.needs_manual_grade for g in nb.grades if g.cell_type == "code")
        assert not gb.find_submission_notebook(AID, AID, "alice").grades[0].needs_manual_grade


def test_feedback_hides_hidden_tests(course):
    """make feedback's step: the feedback HTML shows the score but none of the hidden tests."""
    tmp, _, _ = course
    nbgrader(tmp, "generate_feedback", AID, "--student", "oscar_edits_tests")
    html = (tmp / ".nbgrader" / "feedback" / "oscar_edits_tests" / AID / f"{AID}.html").read_text()
    assert "Score: 26.0 / 34.0" in html or "26.0 / 34.0" in html
    assert "HIDDEN TESTS" not in html
    assert "for xs, ws, s, p, d in cases" not in html  # hidden test code, neither in cells nor tracebacks
    assert "AssertionError: conv2d_naive(x(2, 3, 7, 9)" in html  # but the student learns what failed


def test_grades_export(course):
    """make grades' step: the CSV export has every student's autograded total."""
    import csv

    tmp, subs, _ = course
    nbgrader(tmp, "export", "--to", str(tmp / "grades.csv"))
    rows = {r["student_id"]: r for r in csv.DictReader((tmp / "grades.csv").open())}
    assert set(rows) == set(subs)
    assert float(rows["alice"]["score"]) == 31.0
    assert float(rows["ursula_untouched"]["score"]) == 0.0
    assert float(rows["carl_calls_library"]["score"]) == 7.0
