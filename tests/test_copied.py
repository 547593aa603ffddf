"""The audit finds answer cells pasted from the course package, and none of the course's own solutions.

Cost: tokenising the package once (a few seconds) and the solution notebooks' answer cells.
"""

import inspect
import json
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from cnncourse.autograde import cells
from cnncourse.autograde.audit import _static
from cnncourse.autograde.copied import THRESHOLD, copied_from_package, windows

ROOT = Path(__file__).resolve().parent.parent


def _answers():
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code" and cells.is_solution(cell):
                yield f"{path.parent.name}:{cells.grade_id(cell)}", "".join(cell["source"])


def test_independent_solutions_are_far_below_the_threshold():
    """The course's own answers share idioms with the package, never long runs of code (measured max 0.25)."""
    shares = {}
    for name, source in _answers():
        match = copied_from_package(source, threshold=0.01)
        shares[name] = match.share if match else 0.0
    assert len(shares) >= 25
    assert max(shares.values()) < THRESHOLD / 1.8, shares


def _source(obj) -> str:
    return textwrap.dedent(inspect.getsource(obj))


@pytest.mark.parametrize("where", [
    "cnncourse.layers.conv:conv2d_naive", "cnncourse.layers.pool:MaxPool2dFunction",
    "cnncourse.layers.batchnorm:batch_norm", "cnncourse.models.mobilenet:InvertedResidual",
    "cnncourse.models.googlenet:InceptionBlock"])
def test_pasted_package_code_is_found_even_renamed(where):
    import importlib

    module, name = where.split(":")
    source = _source(getattr(importlib.import_module(module), name))
    assert copied_from_package(source).module == module
    renamed = re.sub(r"\b(x|weight|bias|ctx|self|y|out)\b", lambda m: m.group(1) + "_mine", source)
    renamed = re.sub(r"#.*", "", renamed)  # comments dropped, variables renamed: still the same code
    match = copied_from_package(renamed)
    assert match is not None and match.module == module and match.share > 0.9, match


def test_short_cells_and_bad_arguments():
    assert copied_from_package("y = x + 1") is None
    assert windows("def f(a):\n    '''doc'''\n    return a.sum()\n", window=3) == {
        ("def", "_", "("), ("_", "(", "_"), ("(", "_", ")"), ("_", ")", ":"), (")", ":", "return"),
        (":", "return", "_"), ("return", "_", "."), ("_", ".", "sum"), (".", "sum", "("), ("sum", "(", ")")}
    with pytest.raises(ValueError, match="threshold must be in"):
        copied_from_package("x = 1", threshold=0)


def test_audit_flags_a_pasted_answer():
    from cnncourse.layers import conv

    source_nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):\n    raise NotImplementedError()",
        metadata={"nbgrader": {"grade_id": "conv2d_naive", "solution": True, "grade": False, "locked": False}})])
    pasted = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        _source(conv._check_conv) + "\n\n" + _source(conv.conv2d_naive), metadata=source_nb.cells[0].metadata)])
    findings = _static("mallory", pasted, source_nb)
    assert [(f.category, f.evidence, f.severity) for f in findings] == [
        ("copied code", "cnncourse.layers.conv", "flag")]
    own = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        dict(_answers())["a1-convolution:conv2d_naive"], metadata=source_nb.cells[0].metadata)])
    assert _static("alice", own, source_nb) == []
