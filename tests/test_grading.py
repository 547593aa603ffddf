"""cnncourse.grading: assert_close's messages and the from_scratch guard (in-process, fast)."""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from cnncourse import grading
from cnncourse.grading import LibraryCallError, assert_close, from_scratch


def test_assert_close_passes_within_tolerance():
    """Equal tensors, float32 vs float64, and a tensor vs an expected number or list pass."""
    x = torch.randn(2, 3)
    assert_close(x, x.double() + 1e-9)
    assert_close(torch.tensor(3), 3)
    assert_close(torch.tensor([1.0, 2.0]), [1.0, 2.0])


def test_assert_close_message_names_error_location_and_values():
    """The failure gives the name, mismatch count, max abs error, its index, expected and got."""
    expected = torch.zeros(2, 3, 4)
    actual = expected.clone()
    actual[1, 2, 3] = 0.5
    actual[0, 0, 0] = 0.1
    with pytest.raises(AssertionError) as err:
        assert_close(actual, expected, "conv2d_naive(x, w)")
    msg = str(err.value)
    assert msg.startswith("conv2d_naive(x, w): 2 of 24 elements differ (shape (2, 3, 4))")
    assert "max abs error 0.5 at index (1, 2, 3)" in msg
    assert "expected 0, got 0.5" in msg


def test_assert_close_shape_and_type_messages():
    """Wrong shape and a non-tensor result are reported as such, not as a torch traceback."""
    with pytest.raises(AssertionError, match=r"y: shape \(1, 2\) returned, expected \(2, 1\)"):
        assert_close(torch.zeros(1, 2), torch.zeros(2, 1), "y")
    with pytest.raises(AssertionError, match="the returned value is a NoneType"):
        assert_close(None, torch.zeros(1), "y")


def test_assert_close_nan_is_a_mismatch():
    """A NaN where a number is expected fails (and NaN == NaN passes)."""
    with pytest.raises(AssertionError, match="1 of 2 elements differ"):
        assert_close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    assert_close(torch.tensor([float("nan")]), torch.tensor([float("nan")]))


x4 = torch.randn(1, 2, 6, 6)
w4 = torch.randn(3, 2, 3, 3)

LIBRARY_CALLS = {
    "F.conv2d": lambda: F.conv2d(x4, w4),
    "torch.conv2d": lambda: torch.conv2d(x4, w4),
    "torch.convolution": lambda: torch.convolution(x4, w4, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    "aten.convolution": lambda: torch.ops.aten.convolution.default(x4, w4, None, [1, 1], [0, 0], [1, 1], False,
                                                                    [0, 0], 1),
    "nn.Conv2d": lambda: torch.nn.Conv2d(2, 3, 3)(x4),
    "F.conv_transpose2d": lambda: F.conv_transpose2d(x4, w4.transpose(0, 1)),
    "F.unfold": lambda: F.unfold(x4, 3),
    "torch._C._nn.im2col": lambda: torch._C._nn.im2col(x4, [3, 3], [1, 1], [0, 0], [1, 1]),
    "Tensor.unfold": lambda: x4.unfold(2, 3, 1),
    "F.fold": lambda: F.fold(torch.randn(1, 18, 16), (6, 6), 3),
    "nn.Fold": lambda: torch.nn.Fold((6, 6), 3)(torch.randn(1, 18, 16)),
    "F.max_pool2d": lambda: F.max_pool2d(x4, 2),
    "F.max_pool2d(return_indices)": lambda: F.max_pool2d(x4, 2, return_indices=True),
    "torch.max_pool2d": lambda: torch.max_pool2d(x4, 2),
    "nn.MaxPool2d": lambda: torch.nn.MaxPool2d(2)(x4),
    "F.avg_pool2d": lambda: F.avg_pool2d(x4, 2),
    "torch._C._nn.avg_pool2d": lambda: torch._C._nn.avg_pool2d(x4, 2),
    "F.adaptive_avg_pool2d": lambda: F.adaptive_avg_pool2d(x4, 1),
    "F.adaptive_max_pool2d": lambda: F.adaptive_max_pool2d(x4, 1),
    "F.lp_pool2d": lambda: F.lp_pool2d(x4, 2, 2),
}


@pytest.mark.parametrize("call", LIBRARY_CALLS.values(), ids=LIBRARY_CALLS.keys())
def test_from_scratch_catches_library_calls_and_aliases(call):
    """Every library convolution/unfold/fold/pooling entry point fails inside the guard."""
    with pytest.raises(LibraryCallError, match="my_conv must be implemented from scratch, but it called"):
        with from_scratch("my_conv", forbid="a1"):
            call()
    call()  # and works again afterwards


def test_from_scratch_allows_plain_tensor_code():
    """Slicing, padding, matmul, einsum, reductions, scatter_add_ and autograd (by default) are allowed."""
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    with from_scratch("ok", forbid="a1"):
        p = F.pad(x, (1, 1, 1, 1))
        y = torch.einsum("nchw,c->nhw", p[:, :, ::2, 1::2], torch.ones(3)) @ torch.ones(3, 1)
        z = x.amax(dim=(2, 3)) + x.argmax(dim=1).float().sum()
        torch.zeros(4).scatter_add_(0, torch.tensor([0, 1]), torch.ones(2))
        (y.sum() + z.sum()).backward()
    assert x.grad is not None


def test_from_scratch_without_autograd():
    """With autograd=False, Tensor.backward and torch.autograd.grad are library calls too."""
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(LibraryCallError, match="backward"):
        with from_scratch("grad_fn", forbid="autograd"):
            (x * 2).sum().backward()
    with pytest.raises(LibraryCallError, match="grad"):
        with from_scratch("grad_fn", forbid="autograd"):
            torch.autograd.grad((x * 2).sum(), x)


def test_from_scratch_error_survives_a_swallowing_except():
    """A student who catches the guard's error and falls back still fails when the block ends."""
    def sneaky(x):
        try:
            return F.max_pool2d(x, 2)
        except Exception:
            return x[:, :, ::2, ::2]

    with pytest.raises(LibraryCallError, match="max_pool2d"):
        with from_scratch("sneaky", forbid="a1"):
            sneaky(x4)


@pytest.fixture
def fake_layers(monkeypatch):
    """A stand-in cnncourse.layers module (the real one may not exist yet), matched by module name."""
    module = types.ModuleType("cnncourse.layers")
    exec("import torch\n\ndef conv2d(x, w):\n    return torch.zeros(1) + x.sum()\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "cnncourse.layers", module)
    return module


def test_from_scratch_forbids_cnncourse_layers(fake_layers):
    """Calling cnncourse.layers, through the module or an alias imported earlier, fails in the guard."""
    alias = fake_layers.conv2d  # e.g. `from cnncourse.layers import conv2d` before the test cell ran
    original = fake_layers.conv2d
    with pytest.raises(LibraryCallError, match="cnncourse.layers.conv2d"):
        with from_scratch("conv2d_naive", forbid="a1"):
            fake_layers.conv2d(x4, w4)
    with pytest.raises(LibraryCallError, match="cnncourse.layers.conv2d"):
        with from_scratch("conv2d_naive", forbid="a1"):
            alias(x4, w4)
    assert fake_layers.conv2d is original
    fake_layers.conv2d(x4, w4)  # allowed outside the guard


def test_from_scratch_forbids_model_blocks():
    """forbid="a3": building or running a block of cnncourse.models or torchvision.models fails; nn layers do not."""
    from torch import nn
    from torchvision.models.resnet import BasicBlock as TorchvisionBlock

    from cnncourse.models.resnet import BasicBlock

    class Subclassed(BasicBlock):  # a student's block that inherits the course's forward
        pass

    for build in (lambda: BasicBlock(4, 4), lambda: TorchvisionBlock(4, 4), lambda: Subclassed(4, 4)):
        with pytest.raises(LibraryCallError, match="cnncourse.models|torchvision.models"):
            with from_scratch("BasicBlock", forbid="a3"):
                build()
    block = BasicBlock(4, 4)  # built outside the guard, run inside it
    with pytest.raises(LibraryCallError, match="cnncourse.models.resnet.forward"):
        with from_scratch("BasicBlock", forbid="a3"):
            block(torch.randn(2, 4, 5, 5))
    with from_scratch("BasicBlock", forbid="a3"):
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())(torch.randn(2, 4, 5, 5))


def test_grader_cannot_be_monkeypatched():
    """A student cell cannot replace cnncourse.grading.assert_close (the test cells re-import it)."""
    with pytest.raises(AttributeError, match="cannot be replaced"):
        grading.assert_close = lambda *args, **kwargs: None
    with pytest.raises(AssertionError):
        grading.assert_close(torch.zeros(1), torch.ones(1))


# ---------------------------------------------------------------------------------------------------
# from_scratch: groups, presets, threads, the dispatcher.


def test_from_scratch_groups_and_presets():
    """forbid takes groups and presets; A2's groups catch batch norm, dropout and torch.nn.init."""
    x = torch.randn(4, 3, 5, 5)
    for call, forbid in [(lambda: F.batch_norm(x, None, None, training=True), "batch_norm"),
                         (lambda: torch.nn.BatchNorm2d(3)(x), "a2"),
                         (lambda: F.dropout(x, 0.5), "dropout"),
                         (lambda: torch.nn.Dropout(0.5)(x), "a2"),
                         (lambda: torch.nn.init.kaiming_normal_(torch.empty(3, 3)), "init")]:
        with pytest.raises(LibraryCallError, match="from scratch"):
            with from_scratch("layer", forbid=forbid):
                call()
    with from_scratch("conv", forbid="a2"):  # A2 allows convolutions
        F.conv2d(x4, w4)
    with pytest.raises(ValueError, match="unknown forbid='convolution'"):
        with from_scratch("conv", forbid="convolution"):
            pass


def test_from_scratch_sees_below_torch_functions():
    """DisableTorchFunction hides a call from torch function modes, and calling an autograd node bypasses
    them: the dispatcher-level guard still sees the aten op."""
    with pytest.raises(LibraryCallError, match="aten.convolution"):
        with from_scratch("conv2d_naive", forbid="a1"):
            with torch._C.DisableTorchFunction():
                torch.conv2d(x4, w4)
    x, w = x4.clone().requires_grad_(), w4.clone().requires_grad_()
    y = F.conv2d(x, w)
    with pytest.raises(LibraryCallError, match="convolution_backward"):
        with from_scratch("conv2d_backward", forbid=("a1", "autograd")):
            y.grad_fn(torch.ones_like(y))


def test_from_scratch_blocks_threads_and_processes():
    """A thread or process started inside the guard fails; so does a notebook thread alive when it starts."""
    import subprocess
    import threading
    from concurrent.futures import ThreadPoolExecutor

    with pytest.raises(LibraryCallError, match="thread or process"):
        with from_scratch("conv2d_naive", forbid="a1"):
            threading.Thread(target=lambda: F.conv2d(x4, w4)).start()
    with pytest.raises(LibraryCallError, match="thread or process"):
        with from_scratch("conv2d_naive", forbid="a1"):
            subprocess.run(["true"])
    pool = ThreadPoolExecutor(1)
    pool.submit(int).result()
    try:
        with pytest.raises(LibraryCallError, match="threads started by the notebook are running"):
            with from_scratch("max_pool2d", forbid="a1"):
                pool.submit(F.max_pool2d, x4, 2).result()
    finally:
        pool.shutdown()
    threading.Thread(target=int).start()  # allowed again outside


def test_inputs_unchanged():
    x = torch.randn(3)
    with grading.inputs_unchanged("f", x=x):
        x + 1
    with pytest.raises(AssertionError, match="f changed its input x in place"):
        with grading.inputs_unchanged("f", x=x):
            x /= 2


def test_assert_type_and_lookalikes():
    """Only the exact type passes: an int subclass equal to everything and a Tensor subclass fail."""
    class Anything(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    grading.assert_type(3, int, "q")
    with pytest.raises(AssertionError, match="q must be a int, got a Anything"):
        grading.assert_type(Anything(0), int, "q")
    with pytest.raises(AssertionError, match="returned value is a Sub, expected a torch.Tensor"):
        assert_close(torch.zeros(2).as_subclass(type("Sub", (torch.Tensor,), {})), torch.zeros(2), "y")
    with pytest.raises(AssertionError, match="dtype torch.float32 returned, expected torch.float64"):
        assert_close(torch.zeros(2), torch.zeros(2, dtype=torch.float64), "y", dtype=True)


# ---------------------------------------------------------------------------------------------------
# graded_test: the test-cell runner.


def run_cell(source: str, namespace: dict) -> str:
    """Run one notebook cell's code in ``namespace``; return what it printed."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(source, namespace)
    return out.getvalue()


def test_graded_test_fills_toolkit_and_answers_and_prints_the_marker():
    """Toolkit names come from the grader whatever the notebook binds; answers come from the notebook."""
    namespace = {"F": 5, "torch": None, "my_answer": 41}
    out = run_cell('''
from cnncourse.grading import graded_test


@graded_test("test_x")
def _test(my_answer, torch, F, assert_type):
    assert_type(my_answer, int, "my_answer")
    assert F.relu(torch.tensor(-1.0)) == 0
    assert my_answer + 1 == 42
''', namespace)
    assert out.splitlines()[-1] == grading.pass_marker("test_x", None) == "\u2714 test_x passed"
    assert namespace["F"] == 5 and namespace["torch"] is None  # the notebook's names are untouched


def test_graded_test_sees_no_notebook_globals():
    """A name the test does not ask for is not looked up in the notebook (a student's `len = 3` changes nothing)."""
    namespace = {"len": lambda *a: 3, "cases": [1]}
    run_cell('''
from cnncourse.grading import graded_test


@graded_test("t")
def _test():
    assert len([1, 2]) == 2
''', namespace)
    head = 'from cnncourse.grading import graded_test\n\n\n@graded_test("t")\n'
    with pytest.raises(NameError, match="cases"):
        run_cell(head + "def _test():\n    cases\n", namespace)
    with pytest.raises(AssertionError, match="answer is not defined: run the cell where you wrote it"):
        run_cell(head + "def _test(answer):\n    pass\n", {})


def test_graded_test_reports_warnings_and_stderr_on_stdout(capsys):
    """A warning or stderr output of the student's code is printed on stdout; the test still passes."""
    import sys as _sys
    import warnings

    def noisy():
        warnings.warn("careful", UserWarning, stacklevel=2)
        print("debug", file=_sys.stderr)
        return 1

    out = run_cell('''
from cnncourse.grading import graded_test


@graded_test("test_noisy")
def _test(noisy):
    assert noisy() == 1
''', {"noisy": noisy})
    assert "note (not penalised): your code raised a warning: UserWarning: careful" in out
    assert "debug" in out and out.splitlines()[-1] == "\u2714 test_noisy passed"
    assert capsys.readouterr().err == ""


def test_graded_test_seeds_each_test():
    """Each test draws the same random inputs whatever the notebook drew before."""
    cell = ('from cnncourse.grading import graded_test\n\n\n@graded_test("test_seed")\ndef _test(torch, out):\n'
            '    out.append(torch.randn(3))\n')
    first, second = [], []
    run_cell(cell, {"out": first})
    torch.randn(100)
    run_cell(cell, {"out": second})
    assert torch.equal(first[0], second[0])


def test_graded_test_catches_tampering_by_the_student_function():
    """A student function that patches torch while it runs fails the test (a reference computed after it
    would otherwise use the patch), and the check says what changed."""
    original = F.conv2d

    def sneaky(x):
        F.conv2d = lambda *a, **k: x
        return x

    try:
        with pytest.raises(grading.GradingError, match=r"torch.nn.functional.conv2d\) while sneaky ran"):
            run_cell('from cnncourse.grading import graded_test\n\n\n@graded_test("t")\ndef _test(sneaky, torch):\n'
                     '    sneaky(torch.zeros(1))\n', {"sneaky": sneaky})
    finally:
        F.conv2d = original
    run_cell('from cnncourse.grading import graded_test\n\n\n@graded_test("t")\ndef _test():\n    pass\n', {})


def test_pass_marker_is_keyed():
    """With a grading key the marker carries a token the student cannot compute without the key."""
    assert grading.pass_marker("t", "k1") != grading.pass_marker("t", "k2")
    assert grading.pass_marker("t", "k1").startswith(grading.pass_marker("t", None) + " [")


def test_graded_test_detects_a_replaced_grader_function():
    """Even replaced with object.__setattr__ (past the module's guard), a grader function is noticed."""
    original = grading.assert_close
    object.__setattr__(grading, "assert_close", lambda *args, **kwargs: None)
    try:
        with pytest.raises(grading.GradingError, match=r"cnncourse.grading.assert_close\) before the test"):
            run_cell('from cnncourse.grading import graded_test\n\n\n@graded_test("t")\ndef _test():\n    pass\n', {})
    finally:
        object.__setattr__(grading, "assert_close", original)


def test_lazy_torch_dynamo_import_is_not_tampering():
    """torch._dynamo, imported lazily by the flop counter (shapes.layer_table), wraps torch.manual_seed: allowed;
    a student's functools.wraps wrapper of it is not."""
    import subprocess

    code = """
import functools, torch
from torch import nn
import cnncourse.grading as g
from cnncourse import shapes
shapes.layer_table(nn.Conv2d(1, 1, 1), (1, 1, 2, 2))
assert g._tampered() == [], g._tampered()
seed = torch.manual_seed
torch.manual_seed = functools.wraps(seed)(lambda s: seed(0))
assert g._tampered() == ["torch.manual_seed"], g._tampered()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]


def test_lean_imports_a1_kernel_loads_nothing_of_a4():
    """A kernel grading an A1-style test imports none of A4's stack (cnncourse.grading_malaria, evaluation, the data
    loaders, training, nbformat); a graded kernel refuses a toolkit entry it was not given at start (it could have
    been replaced by then) and gets it from :func:`cnncourse.grading.preload` (without nbformat, which only the
    grader needs). One fresh process: about 3 s."""
    import subprocess

    code = """
import sys
import cnncourse.grading as g
from cnncourse.grading import graded_test

def conv(x, w):
    return (x * w).sum().reshape(1)

@graded_test("test_conv")
def _test(conv, torch, assert_close, from_scratch):
    x, w = torch.randn(3), torch.randn(3)
    with from_scratch("conv", forbid="a1"):
        y = conv(x, w)
    assert_close(y, (x * w).sum().reshape(1), "conv(x, w)")

a4 = ("cnncourse.grading_malaria", "cnncourse.evaluation", "cnncourse.data", "cnncourse.train", "nbformat", "PIL")
loaded = sorted(m for m in sys.modules if m.startswith(a4))
assert loaded == [], loaded
try:
    @graded_test("test_budget")
    def _test(malaria):
        pass
except g.GradingError as err:
    assert "c.CnnCourseAutograde.toolkits" in str(err), err
else:
    raise AssertionError("a graded kernel took a toolkit entry it was not given at start")
g.preload("malaria")
assert "nbformat" not in sys.modules  # A4's kernel loads its toolkit, not the grader's notebook library

@graded_test("test_budget")
def _test(malaria):
    assert malaria.MAX_PARAMS == 400_000
"""
    env = dict(os.environ, CNNCOURSE_GRADING_KEY="k")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == grading.pass_marker("test_conv", "k")
    assert result.stdout.splitlines()[-1] == grading.pass_marker("test_budget", "k")


def test_case_tables_are_frozen_and_written_once():
    """A hidden case table is read-only tuples; defining it again with other rows (a student's cell got there first)
    fails, and so does every later read: the hidden tests never run on a student's table."""
    from cnncourse.grading.cases import CASES

    grading.define_cases("test_tables_once", [((1, 2), 3), ((4, 5), 6)])
    grading.define_cases("test_tables_once", [((1, 2), 3), ((4, 5), 6)])  # the notebook run again: the same rows
    assert CASES["test_tables_once"] == (((1, 2), 3), ((4, 5), 6))
    with pytest.raises(grading.GradingError, match="defined twice"):
        grading.define_cases("test_tables_once", [((1, 1), 1)])
    with pytest.raises(grading.GradingError, match="defined twice"):
        CASES["test_tables_once"]
    with pytest.raises(grading.GradingError, match="has not run"):
        CASES["test_tables_never_defined"]
