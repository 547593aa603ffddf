"""What nbgrader test cells use to check a student's answers fairly and hard to fool.

A test cell is one function run at once by :func:`graded_test`::

    from cnncourse.grading import graded_test


    @graded_test("test_conv2d_naive")
    def _test(conv2d_naive, torch, F, assert_close, from_scratch):
        x, w = torch.randn(1, 2, 5, 6), torch.randn(3, 2, 3, 3)
        with from_scratch("conv2d_naive", forbid="a1"):
            y = conv2d_naive(x, w)
        assert_close(y, F.conv2d(x, w), "conv2d_naive(x, w)")

Each parameter is filled by name: ``torch``, ``F``, ``nn``, ``math``, ``shapes``, ``malaria`` (A4's
``cnncourse.grading_malaria``) and the helpers below are the modules captured when this module was first
imported (before any student code at grading time);
any other name is the student's answer of that name in the notebook. So a student who rebinds ``F`` or
``torch`` changes nothing for the tests, and the tests overwrite none of the student's names.

:func:`graded_test` also checks that torch, the builtins and this module are as they were at import
(before the test, after each call of a student function, and at the end), reports warnings on stdout
(nbgrader scores any stderr output as a failure), seeds torch from the test's id, and prints a pass
marker as its last line; at grading time an nbgrader preprocessor (``cnncourse.autograde``) scores 0 a
test cell whose marker is missing or forged.

* :func:`assert_close` compares a returned tensor (a real ``torch.Tensor``) with the expected one.
* :func:`assert_type` checks an answer's exact type (``type(a) is int``: no look-alike objects).
* :func:`from_scratch` fails the test if the code inside calls what the student must write themselves.
* :func:`inputs_unchanged` fails the test if the code inside modifies the given tensors in place.
"""

from __future__ import annotations

import _thread
import ast
import builtins
import contextlib
import hashlib
import math
import os
import re
import subprocess
import sys
import threading
import types
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name

from cnncourse import evaluation, margins, shapes
from cnncourse import grading_malaria as malaria

__all__ = [
    "LibraryCallError",
    "GradingError",
    "OPS",
    "PRESETS",
    "assert_close",
    "assert_type",
    "from_scratch",
    "inputs_unchanged",
    "graded_test",
    "pass_marker",
]

# ---------------------------------------------------------------------------------------------------
# What from_scratch can forbid: groups of library operations, matched on the operation's resolved name so
# that every alias (torch.conv2d, F.conv2d, torch.ops.aten.conv2d.default, torch._C._nn.im2col, ...) is
# caught, and modules whose functions must not be on the call stack.

OPS: dict[str, str] = {
    "conv": r"(^|[._])(conv(\d|_transpose|_tbc|olution|_depthwise)\w*|_convolution\w*"
            r"|(cudnn|mkldnn|miopen|slow|thnn)_conv\w*|im2col|col2im|unfold|fold)(\.\w+)?$",
    "pool": r"(^|[._])((max|avg|lp)_pool\w*|_?adaptive_(avg|max)_pool\w*|max_unpool\w*"
            r"|fractional_max_pool\w*|(mkldnn|quantized)_max_pool\w*)(\.\w+)?$",
    "batch_norm": r"(^|[._])(\w*batch_norm\w*|instance_norm|_batch_norm_impl_index\w*)(\.\w+)?$",
    "dropout": r"(^|[._])(\w*dropout\w*)(\.\w+)?$",
    "init": r"^torch\.nn\.init\.",
    "models": r"(?!)",  # no op: the course's and torchvision's model code is caught on the call stack (STACK)
    "autograd": r"(^|\.)(backward|grad|jacobian|hessian|vjp|jvp|vmap)(\.\w+)?$",
}
# Modules whose functions may not run inside the guard (besides cnncourse.layers, always forbidden).
STACK: dict[str, tuple[str, ...]] = {"init": ("torch.nn.init",), "models": ("cnncourse.models", "torchvision.models")}
PRESETS: dict[str, tuple[str, ...]] = {
    "a1": ("conv", "pool"),
    "a2": ("batch_norm", "dropout", "init"),
    "a3": ("models",),
}
HINTS: dict[str, str] = {
    "conv": "Library convolutions and unfold/fold are not allowed here.",
    "pool": "Library pooling ops are not allowed here.",
    "batch_norm": "Library batch norm (F.batch_norm, nn.BatchNorm2d) is not allowed here.",
    "dropout": "Library dropout (F.dropout, nn.Dropout) is not allowed here.",
    "init": "torch.nn.init is not allowed here: draw the weights yourself.",
    "autograd": "Autograd is not allowed here: compute the gradient yourself.",
    "models": "The blocks of cnncourse.models and torchvision.models are not allowed here: build yours from nn layers.",
}
LAYERS_MODULE = "cnncourse.layers"
GRADING_KEY_ENV = "CNNCOURSE_GRADING_KEY"
_KEY = os.environ.pop(GRADING_KEY_ENV, None)  # set by the autograde preprocessor; removed from the kernel's env


class LibraryCallError(AssertionError):
    """A from-scratch function called the library implementation it was meant to replace."""


class GradingError(AssertionError):
    """The grading environment was changed by the notebook (torch, builtins, this module, threads)."""


def _groups(forbid: str | Sequence[str]) -> list[str]:
    names = [forbid] if isinstance(forbid, str) else list(forbid)
    groups: list[str] = []
    for name in names:
        for group in PRESETS.get(name, (name,)):
            if group not in OPS:
                raise ValueError(f"from_scratch: unknown forbid={name!r}; use one of {sorted(OPS) + sorted(PRESETS)}")
            groups.append(group)
    return groups


def _name(func: Callable) -> str:
    try:
        name = resolve_name(func)
    except Exception:  # resolve_name can fail on exotic callables
        name = None
    return name or getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


def _module_on_stack(modules: Sequence[str]) -> str | None:
    """The outermost function of one of ``modules`` on the current call stack, if any."""
    frame, found = sys._getframe(2), None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if any(module == m or module.startswith(m + ".") for m in modules):
            found = f"{module}.{frame.f_code.co_name}"
        frame = frame.f_back
    return found


class _Guard(TorchFunctionMode):
    def __init__(self, what: str, groups: list[str]) -> None:
        super().__init__()
        self.what = what
        self.patterns = [(g, re.compile(OPS[g])) for g in groups]
        self.modules = [LAYERS_MODULE] + [m for g in groups for m in STACK.get(g, ())]
        self.hints = {m: HINTS[g] for g in groups for m in STACK.get(g, ())}
        self.violation: str | None = None

    def fail(self, called: str, hint: str) -> None:
        message = f"{self.what} must be implemented from scratch, but it called {called}. {hint}"
        if self.violation is None:
            self.violation = message
        raise LibraryCallError(message)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _name(func)
        for group, pattern in self.patterns:
            if pattern.search(name):
                self.fail(name, HINTS[group])
        module = _module_on_stack(self.modules)
        if module is not None:
            hint = next((h for m, h in self.hints.items() if module == m or module.startswith(m + ".")),
                        "That library module is not allowed here.")
            self.fail(module, "The course's own cnncourse.layers (the answer key) is not allowed here."
                      if module.startswith(LAYERS_MODULE) else hint)
        return func(*args, **(kwargs or {}))


class _DispatchGuard:
    """The same op groups at the dispatcher, below torch functions: what DisableTorchFunction or calling an
    autograd node (``y.grad_fn(g)``) would hide from the guard above still runs an aten op seen here.

    A plain class pushed with torch's own stack calls: ``TorchDispatchMode`` would import torch._dynamo
    (seconds) on first use.
    """

    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        for group, pattern in self.guard.patterns:
            if group != "autograd" and pattern.search(name):
                self.guard.fail(name, HINTS[group])
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _dispatch_guard(guard: _Guard) -> Iterator[None]:
    """Push the dispatch guard with torch's own stack calls (TorchDispatchMode's __exit__ imports torch._dynamo)."""
    torch._C._push_on_torch_dispatch_stack(_DispatchGuard(guard))
    try:
        yield
    finally:
        torch._C._pop_torch_dispatch_stack(None)


# Ways to run code beyond the guard's reach (it sees the calling thread only): blocked while it is on.
_SPAWNERS = [(threading, "_start_new_thread"), (_thread, "start_new_thread"), (os, "fork"), (os, "forkpty"),
             (os, "posix_spawn"), (os, "posix_spawnp"), (os, "system"), (subprocess, "_fork_exec")]


@contextlib.contextmanager
def _no_spawning(guard: _Guard) -> Iterator[None]:
    """No new threads or processes while the guard is on; patched module-wide, so every thread sees it."""
    saved = [(module, attr, getattr(module, attr)) for module, attr in _SPAWNERS if hasattr(module, attr)]

    def blocked(*args, **kwargs):
        guard.fail("a thread or process", "Your code must run on the calling thread.")

    for module, attr, _ in saved:
        setattr(module, attr, blocked)
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


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
                guard.fail(f"{LAYERS_MODULE}.{_attr}", "The course's own layers are the answer key.")

            saved[attr] = value
            setattr(module, attr, blocked)
    try:
        yield
    finally:
        for attr, value in saved.items():
            setattr(module, attr, value)


_KERNEL_THREADS = ("ipykernel.", "IPython.", "jupyter_client.", "zmq.", "tornado.", "tqdm.", "torch.")


def _started_by_notebook(thread: threading.Thread) -> bool:
    """A live thread that neither existed at import nor belongs to the kernel or a known library."""
    if thread.ident in _BASELINE_THREADS or not thread.is_alive():
        return False
    origin = type(thread).__module__
    if origin == "threading":
        origin = getattr(getattr(thread, "_target", None), "__module__", None) or ""
    return not (origin + ".").startswith(_KERNEL_THREADS)


@contextlib.contextmanager
def from_scratch(what: str, forbid: str | Sequence[str]) -> Iterator[None]:
    """Fail with :class:`LibraryCallError` if the code inside calls what ``forbid`` names.

    Args:
        what: the name shown in the message, e.g. ``"conv2d_naive"``.
        forbid: groups of library operations (keys of :data:`OPS`: ``"conv"`` (convolutions, unfold/fold,
            im2col), ``"pool"``, ``"batch_norm"``, ``"dropout"``, ``"init"`` (``torch.nn.init``),
            ``"autograd"`` (``backward``, ``autograd.grad``), ``"models"`` (any function of ``cnncourse.models``
            or ``torchvision.models`` on the call stack: their ready-made blocks)) or assignment presets (keys
            of :data:`PRESETS`: ``"a1"`` = conv + pool, ``"a2"`` = batch_norm + dropout + init, ``"a3"`` =
            models);
            e.g. ``forbid=("a1", "autograd")`` for a hand-written backward pass.

    Always forbidden: ``cnncourse.layers`` (the answer key), and starting threads or processes (the
    guard sees the calling thread only). Every alias of a forbidden op is caught (``torch.conv2d``,
    ``torch.ops.aten.convolution``, ``nn.Conv2d``, ``Tensor.unfold`` ...), and the error is raised again on
    leaving the block even if the student code caught it.
    """
    guard = _Guard(what, _groups(forbid))
    strangers = [t.name for t in threading.enumerate() if _started_by_notebook(t)]
    if strangers:
        guard.violation = (f"{what}: threads started by the notebook are running ({', '.join(strangers)}); "
                           "from-scratch code must run on the calling thread (restart the kernel without them).")
        raise LibraryCallError(guard.violation)
    with _layers_patched(guard), _no_spawning(guard), guard, _dispatch_guard(guard):
        yield
    if guard.violation is not None:
        raise LibraryCallError(guard.violation)


# ---------------------------------------------------------------------------------------------------
# Checks of answers.


def assert_type(value: object, expected: type, name: str) -> None:
    """Assert that ``type(value) is expected`` (an ``int`` subclass equal to everything is not an int)."""
    if type(value) is not expected:
        raise AssertionError(f"{name} must be a {expected.__name__}, got a {type(value).__name__}.")


def assert_close(actual: object, expected: object, name: str = "output", *, rtol: float = 1e-5,
                 atol: float = 1e-6, dtype: bool = False) -> None:
    """Assert that ``actual`` is a tensor equal to ``expected`` elementwise within ``atol + rtol * |expected|``.

    Args:
        actual: what the student's code returned: must be a real ``torch.Tensor`` (or ``nn.Parameter``).
        expected: the reference (computed by the test, e.g. with ``torch.nn.functional``): a tensor or a
            number/list.
        name: what is compared, shown first in the failure message, e.g. ``"conv2d_naive(x, w)"``.
        dtype: also require ``actual.dtype == expected.dtype``.

    Raises:
        AssertionError: naming the type, dtype or shapes when they differ, or the number of mismatched
        elements, the largest absolute error, its index, and the expected and actual values there.
    """
    if type(actual) not in (torch.Tensor, nn.Parameter):
        raise AssertionError(f"{name}: the returned value is a {type(actual).__name__}, expected a torch.Tensor.")
    expected_t = expected.detach() if isinstance(expected, torch.Tensor) else torch.as_tensor(expected)
    actual_t = actual.detach()
    if dtype and actual_t.dtype != expected_t.dtype:
        raise AssertionError(f"{name}: dtype {actual_t.dtype} returned, expected {expected_t.dtype} "
                             "(keep the dtype of the input: x.new_zeros, torch.zeros_like ...).")
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
    allowed = atol + rtol * e.abs().nan_to_num(nan=0.0)
    bad = (error > allowed) | nan_mismatch
    margins.record(name, "at_most", float((error / allowed).max()), 1.0)  # the worst error as a share of the tolerance
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


@contextlib.contextmanager
def inputs_unchanged(what: str, **inputs: torch.Tensor) -> Iterator[None]:
    """Fail if the code inside changes any of ``inputs`` in place, e.g. ``grad_y /= k * k``.

    Example: ``with inputs_unchanged("avg_pool2d_backward", grad_y=grad_y, x=x): ...``.
    """
    copies = {name: t.detach().clone() for name, t in inputs.items()}
    yield
    for name, t in inputs.items():
        if t.shape != copies[name].shape or not torch.equal(t.detach(), copies[name]):
            raise AssertionError(f"{what} changed its input {name} in place; work on new tensors "
                                 "(e.g. grad_y / k instead of grad_y /= k).")


# ---------------------------------------------------------------------------------------------------
# Running a test cell.

# What test functions may ask for by name: captured now, before any student code at grading time.
TOOLKIT: dict[str, object] = {
    "torch": torch, "F": F, "nn": nn, "math": math, "shapes": shapes,
    "assert_close": assert_close, "assert_type": assert_type, "from_scratch": from_scratch,
    "inputs_unchanged": inputs_unchanged, "malaria": malaria,
    "within": margins.within, "at_least": margins.at_least, "at_most": margins.at_most,
    "sample_like": margins.sample_like,
}
# Namespaces whose entries the tests rely on; any entry replaced or deleted since import fails the test.
_WATCHED = {"builtins": builtins, "torch": torch, "torch.nn.functional": F, "torch.nn.init": nn.init,
            "torch.nn": nn, "torch.autograd": torch.autograd, "torch._C._nn": torch._C._nn,
            "torch._C._VariableFunctionsClass": torch._C._VariableFunctionsClass, "torch.Tensor": torch.Tensor,
            "torch._C.TensorBase": torch._C.TensorBase, "torch.nn.Module": nn.Module, "math": math,
            "cnncourse.shapes": shapes, "cnncourse.grading_malaria": malaria, "cnncourse.evaluation": evaluation,
            "cnncourse.margins": margins}


def _entries(namespace: object) -> dict[str, object]:
    """Public names and dunders (``Tensor.__eq__``, ``builtins.__import__``) of a namespace."""
    return {k: v for k, v in vars(namespace).items()
            if not k.startswith("_") or (k.startswith("__") and k.endswith("__"))}


_SNAPSHOT = {name: _entries(ns) for name, ns in _WATCHED.items()}
_CLASSES = [name for name, ns in _WATCHED.items() if isinstance(ns, type)]  # a new entry there overrides a base's
_BUILTINS = dict(vars(builtins))  # what test functions see as builtins, whatever the notebook rebinds
_MODULES = {"torch": torch, "torch.nn.functional": F, "cnncourse.shapes": shapes}
_BASELINE_THREADS = {t.ident for t in threading.enumerate()}


def _tampered() -> list[str]:
    """Names in the watched namespaces (and sys.modules entries) changed since this module was imported."""
    changed = [f"{name}.{attr}" for name, ns in _WATCHED.items() for attr, value in _SNAPSHOT[name].items()
               if not _same(vars(ns).get(attr, _MISSING), value) and f"{name}.{attr}" not in _VOLATILE]
    changed += [f"{name}.{attr}" for name in _CLASSES for attr in _entries(_WATCHED[name]).keys() - _SNAPSHOT[name]
                if f"{name}.{attr}" not in _VOLATILE]
    changed += [f"sys.modules[{name!r}]" for name, module in _MODULES.items() if sys.modules.get(name) is not module]
    if sys.modules.get(__name__) is not _THIS or type(_THIS) is not _Protected:
        changed.append(f"sys.modules[{__name__!r}]")
    changed += [f"{__name__}.{k}" for k, v in _OWN.items() if vars(_THIS).get(k, _MISSING) is not v]
    return changed


_MISSING = object()
_TORCH_DIR = os.path.dirname(torch.__file__)
_DYNAMO_WRAPPERS = (os.path.join(_TORCH_DIR, "_compile.py"), os.path.join(_TORCH_DIR, "_dynamo") + os.sep)


def _same(value: object, original: object) -> bool:
    """``value`` is ``original``, or torch._dynamo's wrapper of it: torch._dynamo, imported lazily (e.g. by
    ``torch.utils.flop_counter`` in ``shapes.layer_table``), wraps ``torch.manual_seed``
    (``torch._compile._disable_dynamo``)."""
    while value is not original:
        code = getattr(value, "__code__", None)
        if code is None or not code.co_filename.startswith(_DYNAMO_WRAPPERS) or not hasattr(value, "__wrapped__"):
            return False
        value = value.__wrapped__
    return True
_VOLATILE = {"torch.Storage", "builtins.input",  # rebound by torch.set_default_dtype, by ipykernel per cell
             "torch.Tensor.__slotnames__", "torch._C.TensorBase.__slotnames__"}  # cached by torch.save (copyreg)


def _check_untampered(when: str) -> None:
    changed = _tampered()
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise GradingError(f"The notebook changed what the tests rely on ({shown}) {when}. "
                           "Do not modify torch, the builtins or cnncourse; restart the kernel and run all.")


def _answer(name: str, value: object) -> object:
    """A student's function, checked for tampering each time it returns (so references computed after it are sound)."""
    if not isinstance(value, types.FunctionType):
        return value

    def call(*args, **kwargs):
        result = value(*args, **kwargs)
        _check_untampered(f"while {name} ran")
        return result

    return call


# Why an answer is missing: the cells that raised (Validate would otherwise blame a name the student never wrote).
_RAISED: list[tuple[int, str, str]] = []  # (execution count, exception type, message), recorded after import


def _record_failure(result) -> None:
    error = getattr(result, "error_in_exec", None)
    if error is not None and getattr(result, "execution_count", None):
        _RAISED.append((result.execution_count, type(error).__name__, str(error)))


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _unanswered(source: str) -> bool:
    """The cell still holds nbgrader's stub: a top-level ``raise NotImplementedError``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Raise) and "NotImplementedError" in ast.unparse(node.exc or node)
               for node in tree.body)


def _failed_answer_cells() -> dict[int, tuple[str, str]]:
    """Execution count -> (exception type, message) of the notebook's cells that raised, test cells excepted:
    unanswered stubs (seen in the input history), cells that raised since this module's import, and the last
    error before it."""
    shell = _shell()
    history = shell.user_ns.get("In", []) if shell is not None else []
    failed = {n: ("NotImplementedError", "") for n, source in enumerate(history) if n and _unanswered(source)}
    last = getattr(sys, "last_value", None)
    filenames = getattr(getattr(shell, "compile", None), "_filename_map", {})
    tb = getattr(last, "__traceback__", None)
    while tb is not None and last is not None:
        number = filenames.get(tb.tb_frame.f_code.co_filename)
        if number is not None:
            failed.setdefault(number, (type(last).__name__, str(last)))
            break
        tb = tb.tb_next
    failed.update({n: (kind, message) for n, kind, message in _RAISED})
    return {n: why for n, why in failed.items() if n >= len(history) or "@graded_test(" not in history[n]}


def _undefined(name: str) -> str:
    """The message for a test's missing answer ``name``: the answer cell that is unanswered or raised, if any."""
    failed = _failed_answer_cells()
    if not failed:
        return f"{name} is not defined: run the cell where you wrote it (keep its name)."
    number = max(failed)
    kind, message = failed[number]
    if kind == "NotImplementedError":
        return (f"{name} is not defined: the answer cell In [{number}] is not answered yet (it still raises "
                f"NotImplementedError). Replace `raise NotImplementedError()` there with your answer, which "
                f"defines {name}, and run that cell.")
    return (f"{name} is not defined: the cell In [{number}] raised {kind}: {message[:200]}. Fix that cell (it "
            f"should define {name}) and run it again.")


def _not_answered(err: NotImplementedError) -> AssertionError:
    """A test called a function whose body is still nbgrader's stub: say which one and what to do."""
    tb, where = err.__traceback__, None
    while tb is not None:
        where = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return AssertionError(f"{where} is not answered yet: it still raises NotImplementedError. Write its body in "
                          "place of `raise NotImplementedError()` and run its cell again.")


if _shell() is not None:
    _shell().events.register("post_run_cell", _record_failure)


def pass_marker(grade_id: str, key: str | None) -> str:
    """The line a test cell prints last when it passed; with a grading key it carries a token of it."""
    line = f"\u2714 {grade_id} passed"
    if key is None:
        return line
    return f"{line} [{hashlib.sha256(f'{key}:{grade_id}'.encode()).hexdigest()[:16]}]"


def graded_test(grade_id: str, *, seed: int | None = None) -> Callable[[Callable], None]:
    """Run the decorated test function now, as the test of grade cell ``grade_id``; see the module doc.

    torch is seeded from ``grade_id`` (``seed`` replaces that seed: ``benchmarks/grading_margins.py`` runs the
    reference's checks over many seeds; test cells never pass it).

    Parameters named like :data:`TOOLKIT` entries get those; any other parameter gets the notebook's
    global of that name (the student's answer). Warnings raised while the test runs are printed on stdout,
    not stderr, and do not fail it; output written to stderr is moved to stdout. The test passes when the
    function returns; it then prints :func:`pass_marker` as its last line.
    """
    notebook = sys._getframe(1).f_globals

    def run(test: Callable) -> None:
        _check_untampered("before the test")
        kwargs = {}
        for param in test.__code__.co_varnames[:test.__code__.co_argcount]:
            if param in TOOLKIT:
                kwargs[param] = TOOLKIT[param]
            elif param in notebook:
                kwargs[param] = _answer(param, notebook[param])
            else:
                raise AssertionError(_undefined(param))
        # The test's own globals: only the builtins (as at import), never the notebook's names.
        test = types.FunctionType(test.__code__, {"__builtins__": _BUILTINS, "__name__": "graded_test"},
                                  test.__name__, test.__defaults__, test.__closure__)
        rng = torch.get_rng_state()
        torch.manual_seed(zlib.crc32(grade_id.encode()) if seed is None else seed)
        try:
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(sys.stdout):
                warnings.simplefilter("always")
                try:
                    test(**kwargs)
                except NotImplementedError as err:
                    raise _not_answered(err) from None
        finally:
            torch.set_rng_state(rng)
            seen = set()
            for w in caught:
                text = f"{w.category.__name__}: {w.message}"
                if text not in seen:
                    seen.add(text)
                    print(f"note (not penalised): your code raised a warning: {text}")
        _check_untampered("during the test")
        print(pass_marker(grade_id, _KEY))

    return run


class _Protected(type(sys)):
    """This module's public names cannot be rebound (``grading.assert_close = ...`` raises)."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cnncourse.grading.{name} is part of the grader and cannot be replaced.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cnncourse.grading.{name} is part of the grader and cannot be deleted.")


_THIS = sys.modules[__name__]
_THIS.__class__ = _Protected
_OWN = dict(vars(_THIS))  # this module's own names, e.g. replaced with object.__setattr__
