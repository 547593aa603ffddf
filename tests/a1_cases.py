"""A1's mutants (known-wrong answers) and the submissions of its shared autograde batch."""

from __future__ import annotations

from cnncourse.autograde.cells import grade_id, is_solution
from cnncourse.autograde.inprocess import apply_replacements
from tests.grading_support import Assignment, Mutant, Submission, cell, edited, replace_once

_EVERY_ELEMENT = """    grad_x = grad_x.view(N, C, H, W)
    for a in range(kh):
        for b in range(kw):
            grad_x[:, :, a:a + sh * (OH - 1) + 1:sh, b:b + sw * (OW - 1) + 1:sw] += grad_y
    return grad_x"""

_MAXPOOL_CEIL = """    OH, OW = -(-(H - kh) // sh) + 1, -(-(W - kw) // sw) + 1  # ceil: a partial last window is kept
    y = x.new_empty(N, C, OH, OW)
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].amax(dim=(2, 3))
    return y"""
_MAXPOOL_FLOOR = """    OH, OW = (H - kh) // sh + 1, (W - kw) // sw + 1
    y = x.new_full((N, C, OH, OW), float("-inf"))
    for a in range(kh):
        for b in range(kw):
            y = torch.maximum(y, x[:, :, a:a + sh * (OH - 1) + 1:sh, b:b + sw * (OW - 1) + 1:sw])
    return y"""

MUTANTS: dict[str, Mutant] = {
    "true_convolution": Mutant("kernel flipped (textbook convolution, not PyTorch's cross-correlation)", [
        ("conv2d_naive", "w = weight.reshape(F_out, -1)", "w = weight.flip(2, 3).reshape(F_out, -1)")]),
    "pad_one_side": Mutant("all the padding on the bottom/right instead of P on each side", [
        ("conv2d_naive", "xp[:, :, ph:ph + H, pw:pw + W] = x", "xp[:, :, :H, :W] = x")]),
    "stride_ignored": Mutant("windows step by 1 whatever the stride (output size still uses it)", [
        ("conv2d_naive", "r, c = i * sh, j * sw", "r, c = i, j")]),
    "output_size_off_by_one": Mutant("output size without the + 1", [
        ("conv2d_naive", "(kh - 1) - 1) // sh + 1", "(kh - 1) - 1) // sh"),
        ("conv2d_naive", "(kw - 1) - 1) // sw + 1", "(kw - 1) - 1) // sw")]),
    "bias_wrong_axis": Mutant("bias broadcast along the width instead of the filter axis", [
        ("conv2d_naive", "bias.view(1, -1, 1, 1)", "bias.view(1, 1, 1, -1)")]),
    "dilation_ignored": Mutant("kernel taps adjacent whatever the dilation", [
        ("conv2d_naive", "field = xp[:, :, r:r + dh * (kh - 1) + 1:dh, c:c + dw * (kw - 1) + 1:dw]",
         "field = xp[:, :, r:r + kh, c:c + kw]")]),
    "im2col_offsets_column_major": Mutant("im2col rows ordered (b, a) instead of unfold's (a, b)", [
        ("im2col_col2im", "return cols.reshape(N, C * kh * kw, OH * OW)",
         "return cols.transpose(2, 3).reshape(N, C * kh * kw, OH * OW)")]),
    "col2im_overwrites": Mutant("col2im overwrites overlapping entries instead of adding them", [
        ("im2col_col2im", "+= cols[:, :, a, b]", "= cols[:, :, a, b]")]),
    "weight_reshape_transposed": Mutant("weights reshaped to (C*kh*kw, F) and transposed", [
        ("conv2d_im2col", "y = weight.reshape(F_out, C * kh * kw) @ cols",
         "y = weight.reshape(C * kh * kw, F_out).T @ cols")]),
    "grad_weight_batch_mean": Mutant("weight gradient averaged over the batch instead of summed", [
        ("conv2d_backward", ".sum(dim=0).reshape(weight.shape)", ".mean(dim=0).reshape(weight.shape)")]),
    "grad_bias_first_sample": Mutant("bias gradient of the first sample only", [
        ("conv2d_backward", "grad_bias = grad_y.sum(dim=(0, 2, 3))", "grad_bias = grad_y[0].sum(dim=(1, 2))")]),
    "pool_stride_defaults_to_1": Mutant("max-pool stride defaults to 1 instead of the window size", [
        ("max_pool2d", "pair(kernel_size if stride is None else stride)", "pair(1 if stride is None else stride)")]),
    "maxpool_grad_to_every_element": Mutant("max-pool backward sends the gradient to every window element", [
        ("max_pool2d_backward", "    grad_x.scatter_add_(2, index, grad_y.reshape(N, C, -1))\n"
                                "    return grad_x.reshape(N, C, H, W)", _EVERY_ELEMENT)]),
    "maxpool_grad_row_col_swapped": Mutant("max-pool backward decodes the argmax as (col, row)", [
        ("max_pool2d_backward", "* sh + k // kw", "* sh + k % kw"),
        ("max_pool2d_backward", "* sw + k % kw", "* sw + k // kw")]),
    "maxpool_grad_last_tie": Mutant("max-pool backward picks the last of tied maxima", [
        ("max_pool2d_backward", "k = win.argmax(dim=-1)", "k = kh * kw - 1 - win.flip(-1).argmax(dim=-1)")]),
    "avgpool_grad_not_divided": Mutant("average-pool backward does not divide by the window area", [
        ("avg_pool2d", "+= grad_y / (kh * kw)", "+= grad_y")]),
    # Clauses of the docstrings that no test exercised before (issue 9).
    "maxpool_ceil_partial_window": Mutant("max pooling keeps a partial last window (ceil instead of floor)", [
        ("max_pool2d", _MAXPOOL_FLOOR, _MAXPOOL_CEIL)]),
    "avgpool_backward_divides_grad_y_in_place": Mutant("average-pool backward divides the caller's grad_y in place", [
        ("avg_pool2d", "grad_x = torch.zeros_like(x)\n", "grad_x = torch.zeros_like(x)\n    grad_y /= kh * kw\n"),
        ("avg_pool2d", "+= grad_y / (kh * kw)", "+= grad_y")]),
    "maxpool_running_max_in_x": Mutant("max pooling keeps its running maximum in a view of x (x is overwritten)", [
        ("max_pool2d", 'y = x.new_full((N, C, OH, OW), float("-inf"))',
         "y = x[:, :, :sh * (OH - 1) + 1:sh, :sw * (OW - 1) + 1:sw]"),
        ("max_pool2d", "y = torch.maximum(y, x[:, :, a:a + sh * (OH - 1) + 1:sh, b:b + sw * (OW - 1) + 1:sw])",
         "y.copy_(torch.maximum(y, x[:, :, a:a + sh * (OH - 1) + 1:sh, b:b + sw * (OW - 1) + 1:sw]))")]),
    "conv_output_ceil": Mutant("convolution output size rounded up (a partial last window)", [
        ("conv2d_naive", "OH = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1",
         "OH = -(-(H + 2 * ph - dh * (kh - 1) - 1) // sh) + 1")]),
    "output_default_dtype": Mutant("output allocated with the default dtype instead of x's (float32 in, float64 out)", [
        ("conv2d_naive", "y = x.new_zeros(N, F_out, OH, OW)", "y = torch.zeros(N, F_out, OH, OW)")]),
    "backward_default_dtype": Mutant("max-pool backward allocates grad_x with the default dtype", [
        ("max_pool2d_backward", "grad_x = x.new_zeros(N, C, H * W)", "grad_x = torch.zeros(N, C, H * W)")]),
    "col2im_output_size_pair_only": Mutant("col2im unpacks output_size as a pair (an int fails)", [
        ("im2col_col2im", "H, W = pair(output_size)", "H, W = output_size")]),
    "im2col_square_kernel_only": Mutant("im2col takes kernel_size as an int only", [
        ("im2col_col2im", "    N, C, H, W = x.shape\n    kh, kw = pair(kernel_size)",
         "    N, C, H, W = x.shape\n    kh = kw = kernel_size")]),
    "conv_arguments_reordered": Mutant("conv2d_naive takes padding before stride (positional calls break)", [
        ("conv2d_naive", "bias=None, stride=1, padding=0, dilation=1", "bias=None, padding=0, stride=1, dilation=1")]),
    "maxpool_grad_overlaps_overwrite": Mutant("max-pool backward overwrites instead of adding where windows overlap", [
        ("max_pool2d_backward", "grad_x.scatter_add_(2, index,", "grad_x.scatter_(2, index,")]),
    "im2col_columns_transposed": Mutant("im2col columns ordered j*OH + i instead of i*OW + j", [
        ("im2col_col2im", "return cols.reshape(N, C * kh * kw, OH * OW)",
         "return cols.transpose(4, 5).reshape(N, C * kh * kw, OH * OW)")]),
    "sizes_as_floats": Mutant("an output size computed with / is a float, not an int", [
        ("q1_answers", "q1a_out = 28  # (32 - 5 + 0)/1 + 1", "q1a_out = (32 - 5 + 0) / 1 + 1")]),
    "params_without_bias": Mutant("parameter count forgets the biases", [
        ("q1_answers", "q1e_params = 11 * 11 * 3 * 96 + 96", "q1e_params = 11 * 11 * 3 * 96")]),
}

NAIVE = {"test_conv2d_naive", "test_conv2d_naive_hidden"}
ALL_BUT_Q1 = {"test_conv2d_naive", "test_conv2d_naive_hidden", "test_im2col", "test_im2col_hidden", "test_col2im",
              "test_col2im_hidden", "test_conv2d_im2col", "test_conv2d_im2col_hidden", "test_conv2d_backward",
              "test_conv2d_backward_hidden", "test_max_pool2d", "test_max_pool2d_hidden", "test_max_pool2d_backward",
              "test_max_pool2d_backward_hidden", "test_avg_pool2d", "test_avg_pool2d_hidden"}

# Library calls instead of implementations (and a swallowed guard error): each scores 0 on its cells.
LIBRARY = {
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


# Cheating submissions (issue 9's kinds and more): cell grade_id -> code replacing (str) or prepended to (+) it.
_THREADS = {
    "conv2d_naive": """import threading


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    out = []  # the library call on another thread, out of the guard's sight
    worker = threading.Thread(target=lambda: out.append(F.conv2d(x, weight, bias, stride, padding, dilation)))
    worker.start()
    worker.join()
    return out[0]""",
    "max_pool2d": """from concurrent.futures import ThreadPoolExecutor

pool = ThreadPoolExecutor(1)
pool.submit(int).result()  # its worker thread is started now, before any test


def max_pool2d(x, kernel_size, stride=None):
    return pool.submit(F.max_pool2d, x, kernel_size, stride).result()""",
}
_LOOKALIKES = {
    "q1_answers": """class Anything(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


q1a_out = q1b_out = q1c_out = q1d_out = q1e_params = q1f_params = Anything(0)""",
    "avg_pool2d": """class Agreeable(torch.Tensor):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return True  # every comparison, every reduction: True


def avg_pool2d(x, kernel_size, stride=None):
    return torch.zeros(1).as_subclass(Agreeable)


def avg_pool2d_backward(grad_y, x, kernel_size, stride=None):
    return torch.zeros(1).as_subclass(Agreeable)""",
}
_PROXY_F = """

class Proxy:  # `F` that answers with the student's own functions: the tests would compare the student with the student
    def __getattr__(self, name):
        return {"conv2d": conv2d_naive}.get(name) or getattr(torch.nn.functional, name)


F = Proxy()


def assert_close(*args, **kwargs):
    return None


import cnncourse.grading

try:
    cnncourse.grading.assert_close = assert_close
except AttributeError:
    pass
"""
_PATCH_TORCH = """

torch.nn.functional.conv2d = lambda x, w, b=None, stride=1, padding=0, dilation=1, groups=1: conv2d_naive(
    x, w, b, stride, padding, dilation)  # the reference is now the student's own (wrong) function
"""
_TRANSFORMER = """get_ipython().input_transformers_post.append(
    lambda lines: ["pass\\n"] if any("graded_test" in line for line in lines) else lines)"""
_EXCEPTIONS = """get_ipython().set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)"""
_FAKE_GRADER = """import sys
import types

fake = types.ModuleType("cnncourse.grading")


def graded_test(grade_id):
    def run(test):
        print(f"\\u2714 {grade_id} passed")

    return run


fake.graded_test = graded_test
sys.modules["cnncourse.grading"] = fake"""
_READS_SOLUTION = """import json


def solve(grade_id):  # runs the instructors' solution of that cell, read from the course folder
    source = json.load(open("../../../../solutions/a1-convolution/a1-convolution.ipynb"))
    c = next(c for c in source["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
    exec("".join(c["source"]), globals())


solve("q1_answers")"""
_LEAKS = {
    "conv2d_naive": """leaked = []


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    import IPython

    leaked.append(IPython.get_ipython().user_ns["In"][-1])  # the running test cell, hidden tests included
    print(leaked[-1])
    return conv2d_reference(x, weight, bias, stride, padding, dilation)""",
    "im2col_col2im": "+print('\\n'.join(leaked))  # shown later, in an answer cell\n\n",
    "max_pool2d": """def max_pool2d(x, kernel_size, stride=None):
    import IPython

    raise AssertionError(IPython.get_ipython().user_ns["In"][-1])  # as the 'assertion message'""",
}
_EVADES = {
    "conv2d_naive": """def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    with torch._C.DisableTorchFunction():  # hides the call from torch function modes
        return torch.conv2d(x, weight, bias, stride, padding, dilation)""",
    "conv2d_backward": """import sys


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1):
    y = sys._getframe(2).f_locals["y"]  # the test's own forward output
    grad_x, grad_weight, grad_bias = y.grad_fn(grad_y)  # its autograd node, called directly
    return grad_x, grad_weight, grad_y.sum(dim=(0, 2, 3))""",
}
PARTS = {
    "q1": {"test_q1_sizes", "test_q1_params"},
    "naive": {"test_conv2d_naive", "test_conv2d_naive_hidden"},
    "backward": {"test_conv2d_backward", "test_conv2d_backward_hidden"},
    "max_pool": {"test_max_pool2d", "test_max_pool2d_hidden"},
    "max_pool_backward": {"test_max_pool2d_backward", "test_max_pool2d_backward_hidden"},
    "avg_pool": {"test_avg_pool2d", "test_avg_pool2d_hidden"},
}


def _cheat(nb, changes: dict[str, str]):
    return edited(nb, **{k: (lambda s, v=v: v[1:] + s) if v.startswith("+") else v for k, v in changes.items()})


def _fair(correct):
    """Correct answers written in ways that must not cost a point."""
    nb = edited(correct, q1_answers=lambda s: (
        "# the slides' notation, and names the tests also use\n"
        "W1, F, S, P = 32, 5, 1, 0\nx, w, cases, grads, y, shapes = 1, 2, 3, 4, 5, 6\n" + s))
    nb = edited(nb, conv2d_naive=lambda s: replace_once(
        s, "    N, C, H, W = x.shape\n",
        "    N, C, H, W = x.shape\n"
        "    torch.meshgrid(torch.arange(2), torch.arange(2))  # warns: no indexing= (PyTorch's UserWarning)\n"
        "    import sys\n    print('debug: conv2d_naive called', file=sys.stderr)\n"
        "    torch.rand(3)  # draws random numbers: the tests' inputs must not depend on it\n"))
    return nb


def submissions(a1: Assignment) -> dict[str, Submission]:
    """The shared autograde batch: fair students, wrong answers, cheats, and what each must score."""
    release, correct = a1.release_nb(), a1.correct()
    subs = {
        "alice": Submission(correct, feedback=True),
        "fiona_fair_notation_warnings": Submission(_fair(correct), stdout={
            "test_conv2d_naive": "note (not penalised): your code raised a warning: UserWarning: torch.meshgrid",
            "test_conv2d_naive_hidden": "debug: conv2d_naive called"}),
        "ursula_untouched": Submission(release, fails=set(a1.grade_cells)),
    }

    nb = edited(correct)  # the wrong answers that kept full marks, and two more docstring clauses
    for name in ("maxpool_ceil_partial_window", "avgpool_backward_divides_grad_y_in_place",
                 "col2im_output_size_pair_only", "output_default_dtype"):
        apply_replacements(nb, MUTANTS[name].replacements)
    subs["walt_wrong_clauses"] = Submission(nb, fails={"test_max_pool2d_hidden", "test_avg_pool2d",
                                                       "test_avg_pool2d_hidden", "test_col2im_hidden",
                                                       "test_conv2d_naive_hidden"}, feedback=True)

    nb = edited(correct, conv2d_naive=lambda s: "while True:\n    pass\n\n" + s)  # that cell times out
    subs["eve_infinite_loop"] = Submission(nb, fails=NAIVE, inprocess=False)

    nb = edited(correct, conv2d_im2col=lambda s: "import os\nos._exit(1)\n\n" + s)  # the kernel dies
    subs["mallory_os_exit"] = Submission(nb, fails=set(a1.grade_cells), manual=set(a1.grade_cells),
                                         audit=True, inprocess=False, dies=True)

    flipped = replace_once(cell(correct, "conv2d_naive").source, "w = weight.reshape(F_out, -1)",
                           "w = weight.flip(2, 3).reshape(F_out, -1)")
    nb = edited(correct, conv2d_naive=flipped,  # wrong conv2d_naive, and its locked test cells edited to pass
                test_conv2d_naive='"""Edited by the student."""\nassert True',
                test_conv2d_naive_hidden='"""Edited by the student."""\nassert True')
    subs["oscar_edits_tests"] = Submission(nb, fails=NAIVE, audit=True)

    no_stride = replace_once(cell(correct, "conv2d_naive").source, "r, c = i * sh, j * sw", "r, c = i, j")
    nb = edited(correct, conv2d_naive=no_stride)  # stride ignored (passes the visible test), hidden test deleted
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_conv2d_naive_hidden"]
    subs["dave_deletes_test"] = Submission(nb, fails={"test_conv2d_naive_hidden"}, manual={"test_conv2d_naive_hidden"},
                                           audit=True)

    nb = edited(correct, **{k: v.strip("\n") for k, v in LIBRARY.items()})
    subs["carl_calls_library"] = Submission(nb, fails=ALL_BUT_Q1 - PARTS["max_pool_backward"], audit=True)

    # A background thread is still alive after max_pool2d's cell: every later from-scratch test fails too.
    nb = _cheat(correct, {**_THREADS, **_LOOKALIKES})
    subs["tara_threads_and_lookalikes"] = Submission(nb, fails=PARTS["q1"] | PARTS["naive"] | PARTS["max_pool"]
                                                     | PARTS["max_pool_backward"] | PARTS["avg_pool"],
                                                     audit=True, inprocess=False, feedback=True)
    nb = _cheat(correct, {"conv2d_naive": flipped + _PROXY_F})
    subs["felix_rebinds_F_and_assert_close"] = Submission(nb, fails=NAIVE, audit=True)
    nb = _cheat(correct, {"conv2d_naive": flipped + _PATCH_TORCH})
    subs["tom_patches_torch"] = Submission(nb, fails=ALL_BUT_Q1, audit=True, inprocess=False)
    subs["ivan_input_transformer"] = Submission(_cheat(release, {"q1_answers": _TRANSFORMER}),
                                                fails=set(a1.grade_cells), flagged=True, audit=True, inprocess=False)
    subs["quinn_swallows_errors"] = Submission(_cheat(release, {"q1_answers": _EXCEPTIONS}),
                                               fails=set(a1.grade_cells), audit=True, inprocess=False)
    subs["sam_fake_grader"] = Submission(_cheat(release, {"q1_answers": _FAKE_GRADER}), fails=set(a1.grade_cells),
                                         flagged=True, audit=True, inprocess=False)
    answers = [grade_id(c) for c in release.cells if is_solution(c) and c.cell_type == "code"
               and grade_id(c) != "q1_answers"]
    nb = _cheat(release, {"q1_answers": _READS_SOLUTION, **{a: f'solve("{a}")' for a in answers}})
    # The sandboxed kernel has no solutions/ to read: every answer she delegated fails.
    subs["gina_reads_solution"] = Submission(nb, fails=set(a1.grade_cells), audit=True, inprocess=False)
    reference = replace_once(cell(correct, "conv2d_naive").source, "def conv2d_naive(", "def conv2d_reference(")
    nb = _cheat(correct, {**_LEAKS, "conv2d_naive": reference + "\n\n\n" + _LEAKS["conv2d_naive"]})
    subs["pete_leaks_hidden_tests"] = Submission(nb, fails=PARTS["max_pool"], audit=True, inprocess=False,
                                                 feedback=True)
    nb = _cheat(correct, _EVADES)
    subs["victor_evades_guard"] = Submission(nb, fails=NAIVE | PARTS["backward"], audit=True)
    return subs
