"""No lecture and no student release shows the code an assignment asks students to write.

The functions and classes students write are read from the answer cells of ``solutions/`` (nbgrader solution
cells). A lecture leaks one if it prints source (``inspect.getsource``, ``??``) or if its code or outputs carry
lines of the reference code: the solution's own lines, or those of the course package's implementation of the
same name (``cnncourse.layers.conv2d_naive`` for A1's ``conv2d_naive``, ...) and of the package modules that
hold them. A release leaks if any of those lines survives in it. Cost: reading 20 notebooks and a few package
modules, well under a second.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from functools import cache
from pathlib import Path

import pytest

import cnncourse
from cnncourse.autograde.cells import hidden_blocks, is_solution, without_hidden

ROOT = Path(__file__).resolve().parent.parent
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))
# A line shorter than this is too generic to be evidence ("return y", "N, C, H, W = x.shape").
MIN_CHARS = 24
# A cell may share a line or two with the reference code by coincidence; three or more is copied code.
MAX_SHARED = 2


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _outputs(cell: dict) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append("".join(output["text"]))
        for mime in ("text/plain", "text/markdown", "text/html"):
            if mime in output.get("data", {}):
                texts.append("".join(output["data"][mime]))
    return "\n".join(texts)


def _lines(text: str) -> set[str]:
    """Distinctive code lines: comments and docstring-like lines dropped, whitespace collapsed."""
    lines = set()
    for raw in text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        line = re.sub(r"\s+", " ", line)
        if len(line) < MIN_CHARS or line.startswith(("#", '"""', "'''", "Args:", "Returns:")):
            continue
        if not re.search(r"[=()\[\]]", line) or re.match(r"^[\w ,.'`-]+$", line):  # prose, not code
            continue
        lines.add(line)
    return lines


def _answer_code(cell: dict) -> str:
    source = _source(cell)
    parts = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, flags=re.S)
    return "\n".join(parts) if parts else source


@cache
def answers() -> dict[str, dict]:
    """Assignment -> {"names": names students define, "lines": distinctive lines of the reference code}."""
    found = {}
    for path in SOLUTIONS:
        names, lines = set(), set()
        for cell in _cells(path):
            if cell["cell_type"] != "code" or not is_solution(cell):
                continue
            tree = ast.parse(_source(cell))
            names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
            lines |= _lines(_answer_code(cell))
        found[path.parent.name] = {"names": names, "lines": lines}
    return found


@cache
def package_lines() -> dict[str, set[str]]:
    """Package module -> distinctive lines, for each module defining something an assignment asks for.

    Matched by name (A3's ``Inception`` finds the package's ``InceptionBlock``), and every module of the
    from-scratch layers (their autograd Functions hold A1's and A2's backward passes under other names).
    """
    wanted = {n.lower() for a in answers().values() for n in a["names"] if not n.startswith("_") and n != "forward"}
    modules = {}
    for info in pkgutil.walk_packages(cnncourse.__path__, "cnncourse."):
        if ".autograde" in info.name or info.name.endswith(("__main__", "grading", "grading_malaria")):
            continue
        module = importlib.import_module(info.name)
        defined = {name.lower() for name, obj in vars(module).items()
                   if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == info.name}
        if any(w in d for w in wanted for d in defined) or info.name.startswith("cnncourse.layers."):
            modules[info.name] = _lines(inspect.getsource(module))
    return modules


def test_the_reference_lines_are_found():
    """The test reads what it means to: every assignment has answers, and the package's versions are found."""
    assert set(answers()) == {"a1-convolution", "a2-init-batchnorm", "a3-architectures", "a4-malaria"}
    assert {"conv2d_naive", "im2col", "col2im", "conv2d_backward", "max_pool2d_backward"} <= answers()[
        "a1-convolution"]["names"]
    assert {"batchnorm_backward", "dropout_forward"} <= answers()["a2-init-batchnorm"]["names"]
    assert {"Inception", "Bottleneck", "InvertedResidual"} <= answers()["a3-architectures"]["names"]
    modules = set(package_lines())
    assert {"cnncourse.layers.conv", "cnncourse.layers.pool", "cnncourse.layers.batchnorm",
            "cnncourse.models.googlenet", "cnncourse.models.resnet", "cnncourse.models.mobilenet"} <= modules
    assert all(len(a["lines"]) >= 10 for a in answers().values())
    assert all(len(lines) >= 10 for lines in package_lines().values())


def _leaks(text: str) -> list[str]:
    """Why ``text`` (a cell's code or outputs) shows reference code, or [] if it does not."""
    found = _lines(text)
    reasons = []
    for assignment, answer in answers().items():
        shared = found & answer["lines"]
        if len(shared) > MAX_SHARED:
            reasons.append(f"{len(shared)} lines of {assignment}'s solution, e.g. {sorted(shared)[0]!r}")
    for module, lines in package_lines().items():
        shared = found & lines
        if len(shared) > MAX_SHARED:
            reasons.append(f"{len(shared)} lines of {module}, e.g. {sorted(shared)[0]!r}")
    names = set().union(*(a["names"] for a in answers().values())) - {"__init__", "forward"}
    for name in sorted(names):
        if re.search(rf"^\s*(def|class)\s+{re.escape(name)}\b", text, flags=re.M):
            reasons.append(f"defines or prints `{name}`, which an assignment asks students to write")
    return reasons


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_no_lecture_shows_answer_code(path):
    problems = []
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        where = f"{path.name} cell {cell.get('id')}"
        source = _source(cell)
        if re.search(r"\bgetsource\b|\bgetsourcelines\b|\?\?\s*$|^\s*%(pinfo2|psource)\b", source, flags=re.M):
            problems.append(f"{where}: prints source code")
        problems += [f"{where} (code): {r}" for r in _leaks(source)]
        problems += [f"{where} (outputs): {r}" for r in _leaks(_outputs(cell))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("assignment", sorted(p.name for p in (ROOT / "assignments").iterdir() if p.is_dir()))
def test_no_release_shows_answer_code(assignment):
    for path in sorted((ROOT / "assignments" / assignment).glob("*.ipynb")):
        for cell in _cells(path):
            where = f"{path.name} cell {cell.get('id')}"
            found = _lines(_source(cell)) | _lines(_outputs(cell))
            shared = found & answers()[assignment]["lines"]
            assert not shared, f"{where} keeps lines of the solution: {sorted(shared)}"
            for module, lines in package_lines().items():
                assert len(found & lines) <= MAX_SHARED, f"{where} carries code of {module}: {sorted(found & lines)}"


def test_the_check_catches_printed_source():
    """The detector fires on what lecture 02 used to print, and stays quiet on the lecture's own 1-D demo."""
    from cnncourse.layers import conv2d_naive
    from cnncourse.layers.conv import Conv2dFunction

    assert _leaks(inspect.getsource(conv2d_naive))
    assert _leaks(inspect.getsource(Conv2dFunction.backward))
    solution = next(c for c in _cells(ROOT / "solutions/a1-convolution/a1-convolution.ipynb")
                    if "def max_pool2d_backward" in _source(c))
    assert _leaks(_answer_code(solution))
    demo = ("def col2im_1d(grad_cols, length, s):\n    grad_x = grad_cols.new_zeros(length)\n"
            "    for t in range(grad_cols.shape[1]):\n        for i in range(grad_cols.shape[0]):\n"
            "            grad_x[t * s + i] += grad_cols[i, t]\n    return grad_x\n")
    assert _leaks(demo) == []


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@cache
def written_answers() -> dict[str, set[tuple[str, ...]]]:
    """Assignment -> the 4-word phrases of its hand-graded answers (marking guides and model answers)."""
    found = {}
    for path in SOLUTIONS:
        grams = set()
        for cell in _cells(path):
            if cell["cell_type"] == "markdown" and is_solution(cell):
                grams |= _grams(_answer_code(cell))
        found[path.parent.name] = grams
    return found


def _stated_answer(text: str, assignment: str) -> set[tuple[str, ...]]:
    """The phrases of ``assignment``'s written answers that ``text`` repeats."""
    return _grams(text) & written_answers()[assignment]


def _comments(source: str) -> str:
    return "\n".join(m.group(1) for m in re.finditer(r"#(.*)$", source, flags=re.M))


def test_no_release_comment_states_a_written_answer():
    """A code comment in a release may not give away a hand-graded answer: A1's check cell once said "Average
    pooling is a depthwise convolution ...; max pooling is not linear" right under the question. Only comments
    are read: a question may quote the deck's words that its answer repeats, and an experiment's printed labels
    ("variance of BN's input") describe data, not the answer."""
    assert all(len(g) > 30 for g in written_answers().values())
    for assignment in written_answers():
        for path in sorted((ROOT / "assignments" / assignment).glob("*.ipynb")):
            for cell in _cells(path):
                if cell["cell_type"] == "code":
                    shared = _stated_answer(_comments(_source(cell)), assignment)
                    assert len(shared) <= 1, f"{path.name} cell {cell.get('id')} states its written answer: {shared}"
    old_comment = ("# Average pooling is a depthwise convolution with the constant kernel 1/k^2; "
                   "max pooling is not linear.")
    assert len(_stated_answer(_comments(old_comment), "a1-convolution")) >= 2  # the leak this test was written for


def test_no_release_shows_a_hidden_test_line():
    """No line found only in hidden tests (case tables included) is in the student release of its assignment."""
    for path in SOLUTIONS:
        visible = "\n".join(without_hidden(_source(cell)) for cell in _cells(path))
        hidden = {line.strip() for cell in _cells(path) for block in hidden_blocks(_source(cell))
                  for line in block.splitlines() if len(line.strip()) >= MIN_CHARS and line.strip() not in visible}
        assert hidden, f"{path.name} has no hidden test lines"
        release = "\n".join(_source(c) for c in _cells(ROOT / "assignments" / path.parent.name / path.name))
        shown = [line for line in hidden if line in release]
        assert not shown, f"the release of {path.parent.name} shows hidden test lines: {shown[:3]}"
