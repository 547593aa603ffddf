"""cnncourse.autograde's pieces on small notebooks (fast): pass-marker check, feedback scrubbing, audit rules."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from cnncourse.autograde import cells
from cnncourse.autograde.audit import scan_source
from cnncourse.autograde.preprocessors import FeedbackScoresOnly, check_markers
from cnncourse.grading import pass_marker
from tests.assignments import ASSIGNMENTS


def test_cell(grade_id: str, *outputs) -> nbformat.NotebookNode:
    cell = new_code_cell("...", metadata={"nbgrader": {"grade": True, "grade_id": grade_id, "points": 1,
                                                       "locked": True, "solution": False}})
    cell.outputs = list(outputs)
    return cell


test_cell.__test__ = False  # a helper, not a test


def stdout(text: str):
    return new_output("stream", name="stdout", text=text)


def test_check_markers():
    """Valid keyed marker: kept. Missing or unkeyed: an error first (so partial credit cannot win), flagged.
    A cell that already failed is left alone."""
    key = "k"
    nb = new_notebook(cells=[
        test_cell("ok", stdout(pass_marker("ok", key) + "\n")),
        test_cell("missing"),
        test_cell("forged", stdout(pass_marker("forged", None) + "\n"),
                  new_output("execute_result", data={"text/plain": "1.0"}, execution_count=1)),
        test_cell("other_id", stdout(pass_marker("ok", key) + "\n")),
        test_cell("failed", new_output("error", ename="AssertionError", evalue="no", traceback=[])),
    ])
    findings = {f["cell"]: f["reason"] for f in check_markers(nb, key)}
    assert set(findings) == {"missing", "forged", "other_id"}
    assert "forged" in findings["forged"] and "did not run to the end" in findings["missing"]
    assert nb.cells[2].outputs[0].output_type == "error" and nb.cells[2].outputs[0].ename == "GradingError"
    assert [o.output_type for o in nb.cells[0].outputs] == ["stream"]
    assert len(nb.cells[4].outputs) == 1


def test_feedback_keeps_errors_only_and_scrubs_hidden_lines():
    source = ('@graded_test("t")\ndef _test(f):\n    f(1)\n    ### BEGIN HIDDEN TESTS\n'
              '    assert f(123456) == 7, "secret case"\n    ### END HIDDEN TESTS\n')
    cell = test_cell("t", stdout("noise\n" + pass_marker("t", None) + "\n"),
                     new_output("error", ename="AssertionError", evalue='assert f(123456) == 7, "secret case"\nwhy',
                                traceback=["long", "traceback"]))
    cell.source = source
    answer = new_code_cell("print(leak)")
    answer.outputs = [stdout('    assert f(123456) == 7, "secret case"\nhello\n')]
    nb = new_notebook(cells=[cell, answer])
    nb, _ = FeedbackScoresOnly().preprocess(nb, {})
    assert [o.output_type for o in nb.cells[0].outputs] == ["error"]
    assert "123456" not in nb.cells[0].outputs[0].evalue and "why" in nb.cells[0].outputs[0].evalue
    assert nb.cells[0].outputs[0].traceback == [f"AssertionError: {nb.cells[0].outputs[0].evalue}"]
    assert "123456" not in nb.cells[1].outputs[0].text and "hello" in nb.cells[1].outputs[0].text


@pytest.mark.parametrize("code,category", [
    ("get_ipython().input_transformers_post.append(f)", "execution machinery"),
    ("import sys\nsys.settrace(tracer)", "execution machinery"),
    ("import threading\nthreading.Thread(target=f).start()", "threads/processes"),
    ("from concurrent.futures import ThreadPoolExecutor", "threads/processes"),
    ("frame = sys._getframe(2)", "frame inspection"),
    ("src = In[-1]", "frame inspection"),
    ("open('../../.nbgrader/gradebook.db')", "course files"),
    ("sys.modules['cnncourse.grading'] = fake", "around the guard"),
    ("with torch._C.DisableTorchFunction():\n    pass", "around the guard"),
    ("F.conv2d = my_conv", "around the guard"),
    ("torch.Tensor.__eq__ = lambda *a: True", "around the guard"),
    ("print('\u2714 test_x passed')", "around the guard"),
    ("exec(code)", "around the guard"),
    ("from cnncourse.grading import define_cases\ndefine_cases('a1_conv', [])", "around the guard"),
    ("import os\nos._exit(1)", "execution machinery"),
])
def test_audit_rules(code, category):
    assert category in [c for c, _, _, severity in scan_source(code) if severity == "flag"]


def test_audit_rules_ignore_comments_and_ordinary_code():
    """Comments, model.eval(), re.compile and the reference answers raise nothing."""
    assert scan_source("# threading would be cheating\nmodel.eval()\nre.compile('x')\ny = x.new_zeros(3)\n") == []
    for a in ASSIGNMENTS:
        for cell in a.correct().cells:
            if cell.cell_type == "code" and cells.is_solution(cell):
                assert scan_source(cell.source) == [], (a.id, cells.grade_id(cell))


def test_autograde_refuses_without_required_env(tmp_path, monkeypatch):
    """An assignment that declares required environment variables is not graded without them."""
    from pathlib import Path

    from cnncourse.autograde.parallel import autograde

    config = (Path(__file__).resolve().parents[1] / "nbgrader_config.py").read_text()
    (tmp_path / "nbgrader_config.py").write_text(
        config + '\nc.CnnCourseAutograde.required_env = {"a4-malaria": ["CNNCOURSE_GRADING_DATA"]}\n')
    monkeypatch.delenv("CNNCOURSE_GRADING_DATA", raising=False)
    with pytest.raises(RuntimeError, match="a4-malaria needs the environment variable.*CNNCOURSE_GRADING_DATA"):
        autograde(tmp_path, "a4-malaria", progress=False)


def test_course_settings_are_a_configurable():
    """nbgrader_config.py's c.CnnCourseAutograde rows reach the grader through traitlets: the required variables
    (nbgrader autograde refuses without them, as make autograde does) and the toolkit entries the graded kernel
    loads before any cell (one exec line, replaced per notebook, never repeated)."""
    from pathlib import Path

    from cnncourse.autograde.kernel import SandboxedExecute
    from cnncourse.autograde.parallel import load_config
    from cnncourse.autograde.settings import KERNEL_ARGUMENTS, CnnCourseAutograde, kernel_arguments

    config = load_config(Path(__file__).resolve().parents[1])
    settings = CnnCourseAutograde(parent=SandboxedExecute(config=config))
    assert settings.toolkits["a4-malaria"] == ["malaria"] and "a1-convolution" not in settings.toolkits
    assert "CNNCOURSE_GRADING_DATA" in CnnCourseAutograde.class_get_help()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CNNCOURSE_GRADING_DATA", raising=False)
        with pytest.raises(RuntimeError, match="a4-malaria needs the environment variable.*CNNCOURSE_GRADING_DATA"):
            settings.check_env("a4-malaria")
        settings.check_env("a1-convolution")
    args = kernel_arguments([*KERNEL_ARGUMENTS, "--x=1"], ["malaria"])
    assert args == ["--x=1", '--IPKernelApp.exec_lines=__import__("cnncourse.grading").grading.preload(\'malaria\')']
    assert kernel_arguments(args, []) == ["--x=1", *KERNEL_ARGUMENTS]


def test_grader_config_loads_without_torch():
    """`nbgrader autograde` loads the course's config once per run; the pass-marker check needs no torch."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import runpy, sys; from traitlets.config import Config; c = Config(); "
            "runpy.run_path('nbgrader_config.py', {'c': c, 'get_config': lambda: c}); "
            "print('cnncourse.autograde.preprocessors' in sys.modules, "
            "sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True []", result.stdout[:300]  # the preprocessors loaded, torch did not
