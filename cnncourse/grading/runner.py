"""The test runner: :func:`graded_test` runs a test cell's function now, as the test of its grade cell.

Each parameter of the test function is filled by name: a toolkit entry (:mod:`cnncourse.grading.toolkit`), or
else the student's answer of that name in the notebook. The test runs with the builtins as they were at import,
checked for tampering before, after each call of a student's function and at the end
(:mod:`cnncourse.grading.tamper`); it reports warnings on stdout (nbgrader scores any stderr output as a failure),
is seeded from its grade id, and prints its pass marker last. A missing answer is explained: the answer cell that
is unanswered or raised.

The grading key (a fresh one per notebook, from the autograde preprocessor) reaches the kernel in its environment
and is removed from it at import; the pass marker carries a token of it.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import os
import sys
import types
import warnings
import zlib
from collections.abc import Callable

import torch

from cnncourse.grading import toolkit
from cnncourse.grading.tamper import check_untampered
from cnncourse.marker import GRADING_KEY_ENV, pass_marker

__all__ = ["graded_test"]

_KEY = os.environ.pop(GRADING_KEY_ENV, None)  # set by the autograde preprocessor; removed from the kernel's env
_BUILTINS = dict(vars(builtins))  # what test functions see as builtins, whatever the notebook rebinds


def _answer(name: str, value: object) -> object:
    """A student's function, checked for tampering each time it returns (so references computed after it are sound)."""
    if not isinstance(value, types.FunctionType):
        return value

    def call(*args, **kwargs):
        result = value(*args, **kwargs)
        check_untampered(f"while {name} ran")
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


def graded_test(grade_id: str, *, seed: int | None = None) -> Callable[[Callable], None]:
    """Run the decorated test function now, as the test of grade cell ``grade_id``; see the module doc.

    torch is seeded from ``grade_id`` (``seed`` replaces that seed: ``benchmarks/grading_margins.py`` runs the
    reference's checks over many seeds; test cells never pass it).

    Parameters named like toolkit entries (:mod:`cnncourse.grading.toolkit`) get those; any other parameter gets
    the notebook's global of that name (the student's answer). Warnings raised while the test runs are printed on
    stdout, not stderr, and do not fail it; output written to stderr is moved to stdout. The test passes when the
    function returns; it then prints :func:`pass_marker` as its last line.
    """
    notebook = sys._getframe(1).f_globals

    def run(test: Callable) -> None:
        check_untampered("before the test")
        kwargs = {}
        for param in test.__code__.co_varnames[:test.__code__.co_argcount]:
            entry = toolkit.lookup(param, graded=_KEY is not None)
            if entry is not toolkit.ABSENT:
                kwargs[param] = entry
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
        check_untampered("during the test")
        print(pass_marker(grade_id, _KEY))

    return run
