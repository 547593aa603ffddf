"""The from-scratch guard: a task that asks for a hand-written layer fails if its code calls the library's.

:func:`from_scratch` watches torch functions (``TorchFunctionMode``) and the dispatcher (aten ops) for the op
groups a task forbids (:data:`OPS`, :data:`PRESETS`), the call stack for forbidden modules (the course's
``cnncourse.layers``, the answer key, always), and blocks threads and processes while it is on. No sandbox can
enforce this: it is what the task asks, not where the code runs.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.overrides import TorchFunctionMode, resolve_name

__all__ = ["LibraryCallError", "OPS", "PRESETS", "from_scratch"]

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


class LibraryCallError(AssertionError):
    """A from-scratch function called the library implementation it was meant to replace."""


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


_BASELINE_THREADS = {t.ident for t in threading.enumerate()}  # at import, before any student code
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
