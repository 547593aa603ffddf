"""The tamper check: what the tests rely on is as it was before any student code ran.

At import (the graded kernel imports ``cnncourse.grading`` before its first cell) this takes a snapshot of the
namespaces the tests use: the builtins, torch and its functional, init and autograd modules, ``torch.Tensor``,
``nn.Module``, ``math`` and the course modules the toolkit hands out. :func:`watch` adds an assignment's toolkit
module when it is loaded, :func:`protect` makes a grading module's names impossible to rebind. :func:`tampered`
lists every entry replaced, added to a class or deleted since; the test runner calls :func:`check_untampered`
before and after each test and after each call of a student's function.
"""

from __future__ import annotations

import builtins
import math
import os
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse import margins, shapes

__all__ = ["GradingError", "check_untampered", "protect", "tampered", "watch"]


class GradingError(AssertionError):
    """The grading environment was changed by the notebook (torch, builtins, the grader, threads)."""


def _entries(namespace: object) -> dict[str, object]:
    """Public names and dunders (``Tensor.__eq__``, ``builtins.__import__``) of a namespace."""
    return {k: v for k, v in vars(namespace).items()
            if not k.startswith("_") or (k.startswith("__") and k.endswith("__"))}


# Namespaces whose entries the tests rely on; any entry replaced or deleted since the snapshot fails the test.
_WATCHED: dict[str, object] = {}
_SNAPSHOT: dict[str, dict[str, object]] = {}
_CLASSES: list[str] = []  # watched classes: a new entry there overrides a base's
_MODULES: dict[str, types.ModuleType] = {}  # sys.modules entries that must stay
_PROTECTED: dict[str, tuple[types.ModuleType, dict[str, object]]] = {}  # grading modules and their own names


def watch(name: str, namespace: object) -> None:
    """Take a snapshot of ``namespace`` (a module or class) now; for a module, also of its ``sys.modules`` entry."""
    _WATCHED[name] = namespace
    _SNAPSHOT[name] = _entries(namespace)
    if isinstance(namespace, type):
        _CLASSES.append(name)
    elif isinstance(namespace, types.ModuleType) and sys.modules.get(name) is namespace:
        _MODULES[name] = namespace


for _name, _namespace in {
    "builtins": builtins, "torch": torch, "torch.nn.functional": F, "torch.nn.init": nn.init, "torch.nn": nn,
    "torch.autograd": torch.autograd, "torch._C._nn": torch._C._nn,
    "torch._C._VariableFunctionsClass": torch._C._VariableFunctionsClass, "torch.Tensor": torch.Tensor,
    "torch._C.TensorBase": torch._C.TensorBase, "torch.nn.Module": nn.Module, "math": math,
    "cnncourse.shapes": shapes, "cnncourse.margins": margins,
}.items():
    watch(_name, _namespace)


class _Protected(types.ModuleType):
    """A grading module whose names cannot be rebound (``grading.assert_close = ...`` raises)."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{self.__name__}.{name} is part of the grader and cannot be replaced.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self.__name__}.{name} is part of the grader and cannot be deleted.")


def protect(module: types.ModuleType) -> None:
    """Make ``module``'s names impossible to rebind, and remember them (replaced with ``object.__setattr__`` or
    through ``vars()``, or the module swapped in ``sys.modules``: :func:`tampered` lists it)."""
    module.__class__ = _Protected
    _PROTECTED[module.__name__] = (module, dict(vars(module)))


_MISSING = object()
_TORCH_DIR = os.path.dirname(torch.__file__)
_DYNAMO_WRAPPERS = (os.path.join(_TORCH_DIR, "_compile.py"), os.path.join(_TORCH_DIR, "_dynamo") + os.sep)
_VOLATILE = {"torch.Storage", "builtins.input",  # rebound by torch.set_default_dtype, by ipykernel per cell
             "torch.Tensor.__slotnames__", "torch._C.TensorBase.__slotnames__"}  # cached by torch.save (copyreg)


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


def tampered() -> list[str]:
    """Names in the watched namespaces, grading modules and ``sys.modules`` entries changed since the snapshot."""
    changed = [f"{name}.{attr}" for name, ns in _WATCHED.items() for attr, value in _SNAPSHOT[name].items()
               if not _same(vars(ns).get(attr, _MISSING), value) and f"{name}.{attr}" not in _VOLATILE]
    changed += [f"{name}.{attr}" for name in _CLASSES for attr in _entries(_WATCHED[name]).keys() - _SNAPSHOT[name]
                if f"{name}.{attr}" not in _VOLATILE]
    changed += [f"sys.modules[{name!r}]" for name, module in _MODULES.items() if sys.modules.get(name) is not module]
    for name, (module, own) in _PROTECTED.items():
        if sys.modules.get(name) is not module or type(module) is not _Protected:
            changed.append(f"sys.modules[{name!r}]")
        changed += [f"{name}.{k}" for k, v in own.items() if vars(module).get(k, _MISSING) is not v]
    return changed


def check_untampered(when: str) -> None:
    """Raise :class:`GradingError` naming what changed, if anything the tests rely on changed."""
    changed = tampered()
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise GradingError(f"The notebook changed what the tests rely on ({shown}) {when}. "
                           "Do not modify torch, the builtins or cnncourse; restart the kernel and run all.")
