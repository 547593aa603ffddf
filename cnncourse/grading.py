"""Helpers for nbgrader test cells, and an in-process grader for mutation testing.

Test cells use two tools:

* :func:`assert_close` compares a student's tensor with the expected one; a failure says which output,
  both shapes, the largest absolute error, where it is, and the expected and actual values there.
* :func:`from_scratch` is a context manager that fails the test if the code run inside it calls the
  library version of what the student must implement (``torch.nn.functional.conv2d``, ``unfold``/``fold``,
  the pooling ops, ``nn.Conv2d``, ``cnncourse.layers`` ...). It is a ``torch.overrides.TorchFunctionMode``,
  so aliases (``torch.conv2d``, ``torch.ops.aten.convolution``, ``torch._C._nn.im2col``, ``Tensor.unfold``)
  are caught too, and a student who swallows the error with ``try/except`` still fails.

:func:`grade_in_process` runs a source notebook's code cells in the current process (optionally with
text replacements in its code, i.e. a mutant) and reports the points each grade cell earns, the way
``nbgrader autograde`` would, without starting a kernel.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode, resolve_name

__all__ = [
    "LibraryCallError",
    "assert_close",
    "from_scratch",
    "CellResult",
    "GradeReport",
    "grade_in_process",
    "fill_answers",
]

# Library operations a from-scratch implementation must not call, matched on the operation's name so that
# every alias (torch.conv2d, F.conv2d, torch.ops.aten.conv2d.default, torch._C._nn.im2col, ...) is caught.
FORBIDDEN = re.compile(
    r"(^|[._])("
    r"conv(\d|_transpose|_tbc|olution|_depthwise)\w*|_convolution\w*|(cudnn|mkldnn|miopen|slow|thnn)_conv\w*"
    r"|im2col|col2im|unfold|fold"
    r"|(max|avg|lp)_pool\w*|adaptive_(avg|max)_pool\w*|_adaptive_(avg|max)_pool\w*|max_unpool\w*"
    r"|fractional_max_pool\w*|(mkldnn|quantized)_max_pool\w*"
    r")(\.\w+)?$"
)
AUTOGRAD = re.compile(r"(^|\.)(backward|grad|jacobian|vjp|jvp|vmap)(\.\w+)?$")
LAYERS_MODULE = "cnncourse.layers"


class LibraryCallError(AssertionError):
    """A from-scratch function called the library implementation it was meant to replace."""


def _name(func: Callable) -> str:
    try:
        name = resolve_name(func)
    except Exception:  # resolve_name can fail on exotic callables
        name = None
    return name or getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


def _layers_frame() -> str | None:
    """The ``cnncourse.layers`` function on the current call stack, if any (outermost one)."""
    frame, found = sys._getframe(2), None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == LAYERS_MODULE or module.startswith(LAYERS_MODULE + "."):
            found = f"{module}.{frame.f_code.co_name}"
        frame = frame.f_back
    return found


class _Guard(TorchFunctionMode):
    def __init__(self, what: str, autograd: bool) -> None:
        super().__init__()
        self.what = what
        self.autograd = autograd
        self.violation: str | None = None

    def _fail(self, called: str, hint: str) -> None:
        message = (
            f"{self.what} must be implemented from scratch, but it called {called}. {hint} "
            "Use tensor indexing/slicing, reshape/permute, sum/max/argmax, matmul/einsum and "
            "scatter_add_/index_add_ instead."
        )
        if self.violation is None:
            self.violation = message
        raise LibraryCallError(message)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _name(func)
        if FORBIDDEN.search(name):
            self._fail(name, "Library convolution, unfold/fold and pooling ops are not allowed here.")
        if not self.autograd and AUTOGRAD.search(name):
            self._fail(name, "Autograd is not allowed here: compute the gradient yourself.")
        layers = _layers_frame()
        if layers is not None:
            self._fail(layers, "The course's own cnncourse.layers is the answer key, not allowed here.")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _layers_patched(guard: _Guard) -> Iterator[None]:
    """Make every public function of ``cnncourse.layers`` (when imported) fail while the guard is on."""
    module = sys.modules.get(LAYERS_MODULE)
    saved: dict[str, object] = {}
    if module is not None:
        for attr, value in vars(module).items():
            if attr.startswith("_") or not callable(value) or isinstance(value, type):
                continue
            if getattr(value, "__module__", None) != LAYERS_MODULE:
                continue

            def blocked(*args, _attr=attr, **kwargs):
                guard._fail(f"{LAYERS_MODULE}.{_attr}", "The course's own layers are the answer key.")

            saved[attr] = value
            setattr(module, attr, blocked)
    try:
        yield
    finally:
        for attr, value in saved.items():
            setattr(module, attr, value)


@contextlib.contextmanager
def from_scratch(what: str = "this function", *, autograd: bool = True) -> Iterator[None]:
    """Fail with :class:`LibraryCallError` if the code inside calls a library convolution or pooling.

    Args:
        what: the name shown in the message, e.g. ``"conv2d_naive"``.
        autograd: if False, ``Tensor.backward`` and ``torch.autograd.grad`` are forbidden too
            (for functions that must compute a gradient by hand).

    Forbidden: convolutions (``torch.nn.functional.conv*d``, ``torch.conv2d``, ``torch.convolution``,
    ``nn.Conv2d``, ``torch.ops.aten.convolution``), ``unfold``/``fold`` (and ``Tensor.unfold``,
    ``torch._C._nn.im2col``/``col2im``), every pooling op, and anything in ``cnncourse.layers``.
    The error is raised again on leaving the block even if the student code caught it.
    """
    guard = _Guard(what, autograd)
    with _layers_patched(guard), guard:
        yield
    if guard.violation is not None:
        raise LibraryCallError(guard.violation)


def _as_tensor(value: object, name: str, role: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (int, float, bool, list, tuple)):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise AssertionError(f"{name}: the {role} value is a {type(value).__name__} ({value!r:.80}), expected a tensor.")


def assert_close(actual: object, expected: object, name: str = "output", *, rtol: float = 1e-5,
                 atol: float = 1e-6) -> None:
    """Assert that ``actual`` equals ``expected`` elementwise within ``atol + rtol * |expected|``.

    Args:
        actual: what the student's code returned (a tensor, or a number/list).
        expected: the reference (computed by the test, e.g. with ``torch.nn.functional``).
        name: what is compared, shown first in the failure message, e.g. ``"conv2d_naive(x, w)"``.

    Raises:
        AssertionError: naming the shapes (when they differ) or the number of mismatched elements, the
        largest absolute error, its index, and the expected and actual values there.
    """
    expected_t = _as_tensor(expected, name, "expected")
    actual_t = _as_tensor(actual, name, "returned")
    if tuple(actual_t.shape) != tuple(expected_t.shape):
        raise AssertionError(
            f"{name}: shape {tuple(actual_t.shape)} returned, expected {tuple(expected_t.shape)} "
            "(check the output-size formula, padding, stride and the order of the axes)."
        )
    a = actual_t.to(torch.float64)
    e = expected_t.to(torch.float64)
    if e.numel() == 0:
        return
    nan_mismatch = torch.isnan(a) != torch.isnan(e)
    error = (a - e).abs().nan_to_num(nan=0.0, posinf=float("inf"))
    error = torch.where(nan_mismatch, torch.full_like(error, float("inf")), error)
    bad = (error > atol + rtol * e.abs().nan_to_num(nan=0.0)) | nan_mismatch
    if not bool(bad.any()):
        return
    flat = int(torch.argmax(error).item())
    where = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), e.shape)) if e.dim() else ()
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {e.numel()} elements differ (shape {tuple(e.shape)}); "
        f"max abs error {float(error.flatten()[flat]):.4g} at index {where}: "
        f"expected {float(e.flatten()[flat]):.6g}, got {float(a.flatten()[flat]):.6g} "
        f"(tolerance atol={atol:g}, rtol={rtol:g})."
    )


# ---------------------------------------------------------------------------------------------------
# In-process grading: what autograde would score, without a kernel (for mutation tests).


@dataclass
class CellResult:
    """One grade cell's outcome: its ``grade_id``, points earned and possible, and the error if any."""

    grade_id: str
    points: float
    max_points: float
    error: str | None = None


@dataclass
class GradeReport:
    """Scores of one in-process run of a notebook."""

    cells: list[CellResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cells)

    @property
    def failed(self) -> list[str]:
        return [c.grade_id for c in self.cells if c.points < c.max_points]


@contextlib.contextmanager
def _chdir(path: Path | str | None) -> Iterator[None]:
    old = os.getcwd()
    if path:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _code_cells(notebook: Path | str | Mapping) -> list[Mapping]:
    if isinstance(notebook, (str, Path)):
        import nbformat

        notebook = nbformat.read(str(notebook), as_version=4)
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def grade_in_process(
    notebook: Path | str | Mapping,
    replacements: Sequence[tuple[str, str, str]] = (),
    *,
    cwd: Path | str | None = None,
) -> GradeReport:
    """Run every code cell of ``notebook`` in one fresh namespace and score its autograded cells.

    Args:
        notebook: a source (solution) notebook: a path, or an ``nbformat`` notebook.
        replacements: ``(grade_id, old, new)`` text replacements in the code of the cell with that
            ``grade_id``, e.g. a known-wrong implementation (a mutant). Each ``old`` must occur exactly
            once in its cell, so that a mutant cannot silently stop applying when the notebook changes.
        cwd: directory to run in (the notebook's own directory by default when a path is given).

    Like ``nbgrader autograde``: cells run in order, errors do not stop the run, and a grade cell scores
    its points only if it raises nothing. ``NBGRADER_EXECUTION`` is set to ``"autograde"`` meanwhile.
    """
    cells = _code_cells(notebook)
    sources = [c["source"] for c in cells]
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cells]
    for grade_id, old, new in replacements:
        if grade_id not in ids:
            raise ValueError(f"no code cell with grade_id {grade_id!r}; ids are {[i for i in ids if i]}")
        k = ids.index(grade_id)
        count = sources[k].count(old)
        if count != 1:
            raise ValueError(f"replacement target must occur exactly once in cell {grade_id!r}, found {count}: "
                             f"{old!r:.120}")
        sources[k] = sources[k].replace(old, new)
    if cwd is None and isinstance(notebook, (str, Path)):
        cwd = Path(notebook).parent
    namespace: dict[str, object] = {"__name__": "__main__"}
    report = GradeReport()
    previous = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        with _chdir(cwd), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for cell, source in zip(cells, sources, strict=True):
                meta = cell.get("metadata", {}).get("nbgrader", {})
                error = None
                try:
                    exec(compile(source, f"<cell {meta.get('grade_id', '?')}>", "exec"), namespace)
                except BaseException as err:  # noqa: BLE001 - a cell may raise anything, even SystemExit
                    if isinstance(err, KeyboardInterrupt):
                        raise
                    error = "".join(traceback.format_exception_only(type(err), err)).strip()
                if meta.get("grade") and cell["cell_type"] == "code":
                    points = float(meta.get("points", 0))
                    report.cells.append(CellResult(meta["grade_id"], 0.0 if error else points, points, error))
    finally:
        if previous is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = previous
    return report


# ---------------------------------------------------------------------------------------------------
# Building submissions (for round-trip tests and benchmarks).

_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def fill_answers(release: Mapping, source: Mapping) -> Mapping:
    """A copy of the student ``release`` notebook with every answer cell taken from ``source``.

    Answer cells (nbgrader ``solution: true``) are matched by ``grade_id``; the solution markers are
    dropped, so the result is what a student who wrote the reference solution would submit.
    """
    import copy

    answers = {
        c["metadata"]["nbgrader"]["grade_id"]: _MARKER.sub("", c["source"])
        for c in source["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    }
    filled = copy.deepcopy(release)
    for cell in filled["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            if meta["grade_id"] not in answers:
                raise ValueError(f"answer cell {meta['grade_id']!r} of the release is missing from the source")
            cell["source"] = answers[meta["grade_id"]]
    return filled


class _Protected(type(sys)):
    """This module's public names cannot be rebound (``grading.assert_close = ...`` raises)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in __all__ or name in {"FORBIDDEN", "AUTOGRAD", "LAYERS_MODULE"}:
            raise AttributeError(f"cnncourse.grading.{name} is part of the grader and cannot be replaced.")
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Protected
