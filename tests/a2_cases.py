"""A2's mutants (known-wrong answers) and the submissions of its shared autograde batch."""

from __future__ import annotations

from cnncourse.autograde.cells import grade_id
from cnncourse.autograde.inprocess import apply_replacements
from tests.grading_support import Assignment, Mutant, Submission, edited, replace_once

_RUNNING = ("running_mean.mul_(1 - momentum).add_(momentum * mean)",
            "running_var.mul_(1 - momentum).add_(momentum * var * m / (m - 1))")

MUTANTS: dict[str, Mutant] = {
    # Part 1: variance arithmetic
    "relu_halves_the_std": Mutant("ReLU layers under Xavier: the std halved instead of the variance", [
        ("q1_answers", "q1d_relu = 0.5", "q1d_relu = 0.5 ** 0.5")]),
    "std_given_as_variance": Mutant("the weights' variance given where their standard deviation is asked", [
        ("q1_answers", "q1b_std = math.sqrt(1 / 400)", "q1b_std = 1 / 400")]),
    # Part 2: fans and initializations
    "fan_2d_kernels_only": Mutant("fans assume a 2-D kernel (kh * kw): 1-D and 3-D convolutions go wrong", [
        ("fans", "math.prod(shape[2:])", "(shape[2] * shape[3] if len(shape) > 2 else 1)")]),
    "fan_first_kernel_dim_only": Mutant("fans multiply by the kernel height only", [
        ("fans", "math.prod(shape[2:])", "(shape[2] if len(shape) > 2 else 1)")]),
    "fan_out_without_kernel": Mutant("fan_out = out_channels, without the kernel size", [
        ("fans", "shape[0] * receptive", "shape[0]")]),
    "fans_swapped": Mutant("fan_in read from dimension 0 and fan_out from dimension 1", [
        ("fans", "return shape[1] * receptive, shape[0] * receptive",
         "return shape[0] * receptive, shape[1] * receptive")]),
    "fans_as_tensors": Mutant("fans computed as torch tensors (torch.tensor(...).prod()) instead of ints", [
        ("fans", "math.prod(shape[2:])", "torch.tensor(shape[2:]).prod()")]),
    "xavier_uniform_bound_from_normal": Mutant("uniform bound from the normal's std: a third of the variance", [
        ("xavier", "a = gain * math.sqrt(6.0 / (fan_in + fan_out))",
         "a = gain * math.sqrt(2.0 / (fan_in + fan_out))")]),
    "xavier_normal_variance_as_std": Mutant("the variance 2 / (fan_in + fan_out) used as the standard deviation", [
        ("xavier", "std = gain * math.sqrt(2.0 / (fan_in + fan_out))", "std = gain * 2.0 / (fan_in + fan_out)")]),
    "xavier_fan_in_only": Mutant("Xavier normal from fan_in only (LeCun's 1 / fan_in)", [
        ("xavier", "std = gain * math.sqrt(2.0 / (fan_in + fan_out))", "std = gain * math.sqrt(1.0 / fan_in)")]),
    "xavier_gain_ignored": Mutant("the gain is not applied to the uniform bound", [
        ("xavier", "a = gain * math.sqrt(6.0", "a = math.sqrt(6.0")]),
    "xavier_uniform_not_centred": Mutant("uniform drawn on [0, a) instead of [-a, a)", [
        ("xavier", "(torch.rand(shape) * 2 - 1) * a", "torch.rand(shape) * a")]),
    "xavier_reseeds": Mutant("the generator is reseeded inside: every layer gets the same weights", [
        ("xavier", "return torch.randn(shape) * std", "torch.manual_seed(0)\n    return torch.randn(shape) * std")]),
    "he_without_factor_2": Mutant("He's variance 1 / fan instead of 2 / fan", [
        ("he", "math.sqrt(2.0 / fan)", "math.sqrt(1.0 / fan)")]),
    "he_mode_ignored": Mutant('mode="fan_out" ignored: always fan_in', [
        ("he", 'fan = fan_in if mode == "fan_in" else fan_out', "fan = fan_in")]),
    "he_float64": Mutant("weights drawn in float64 instead of the default dtype", [
        ("he", "return torch.randn(shape) * math.sqrt(2.0 / fan)",
         "return torch.randn(shape, dtype=torch.float64) * math.sqrt(2.0 / fan)")]),
    "init_top_level_only": Mutant("init_weights_ walks model.children(): nested layers keep their weights", [
        ("init_weights", "for m in model.modules():", "for m in model.children():")]),
    "init_biases_kept": Mutant("init_weights_ leaves the biases as they were", [
        ("init_weights", "                if m.bias is not None:\n                    m.bias.zero_()\n", "")]),
    "init_linear_only": Mutant("init_weights_ skips the convolutions", [
        ("init_weights", "isinstance(m, (nn.Linear, nn.Conv2d))", "isinstance(m, nn.Linear)")]),
    "init_returns_none": Mutant("init_weights_ works in place and returns None", [
        ("init_weights", "    return model\n", "")]),
    "init_every_module_with_weight": Mutant("init_weights_ re-draws every module that has a weight (batch norm too)", [
        ("init_weights", "isinstance(m, (nn.Linear, nn.Conv2d))", 'getattr(m, "weight", None) is not None')]),
    # Part 3: batch norm forward
    "bn_running_var_biased": Mutant("the running variance gets the biased batch variance", [
        ("batchnorm_forward", "momentum * var * m / (m - 1)", "momentum * var")]),
    "bn_momentum_reversed": Mutant("momentum as the weight of the old value (Keras' convention)", [
        ("batchnorm_forward", _RUNNING[0], "running_mean.mul_(momentum).add_((1 - momentum) * mean)"),
        ("batchnorm_forward", _RUNNING[1], "running_var.mul_(momentum).add_((1 - momentum) * var * m / (m - 1))")]),
    "bn_running_not_in_place": Mutant("the running statistics rebound to new tensors: the caller's are unchanged", [
        ("batchnorm_forward", _RUNNING[0], "running_mean = (1 - momentum) * running_mean + momentum * mean"),
        ("batchnorm_forward", _RUNNING[1],
         "running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)")]),
    "bn_eval_batch_statistics": Mutant("evaluation mode normalizes with the batch's statistics", [
        ("batchnorm_forward", "mean, var = running_mean, running_var",
         "mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)")]),
    "bn_eval_updates_running": Mutant("the running statistics are updated in evaluation mode too", [
        ("batchnorm_forward", "    if training:\n", "    if True:  # the update is not guarded by training\n"),
        ("batchnorm_forward", "    else:\n        mean, var = running_mean, running_var",
         "    if not training:\n        mean, var = running_mean, running_var")]),
    "bn_eps_outside_sqrt": Mutant("eps added after the square root", [
        ("batchnorm_forward", "torch.sqrt(var.view(shape) + eps)", "(torch.sqrt(var.view(shape)) + eps)")]),
    "bn_unbiased_normalization": Mutant("normalized with torch's default (unbiased) variance", [
        ("batchnorm_forward", "var = ((x - mean.view(shape)) ** 2).mean(dim=dims)", "var = x.var(dim=dims)")]),
    "bn_conv_statistics_per_position": Mutant("conv inputs normalized over the batch axis only (per position)", [
        ("batchnorm_forward", "dims = (0,) if x.dim() == 2 else (0, 2, 3)", "dims = (0,)")]),
    "bn_normalizes_x_in_place": Mutant("x is centred and scaled in place (the caller's tensor changes)", [
        ("batchnorm_forward", "x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps)",
         "x_hat = x.sub_(mean.view(shape)).div_(torch.sqrt(var.view(shape) + eps))")]),
    # Part 4: batch norm backward
    "bnb_missing_mean_path": Mutant("backward without the path through the mean", [
        ("batchnorm_backward", "g - g.mean(dim=dims, keepdim=True) - x_hat", "g - x_hat")]),
    "bnb_missing_variance_path": Mutant("backward without the path through the variance", [
        ("batchnorm_backward", " - x_hat * (g * x_hat).mean(dim=dims, keepdim=True))", ")")]),
    "bnb_gamma_forgotten": Mutant("grad_x without the factor gamma", [
        ("batchnorm_backward", "g = grad_y * gamma.view(shape)", "g = grad_y")]),
    "bnb_grad_gamma_from_x": Mutant("grad_gamma summed against x instead of x_hat", [
        ("batchnorm_backward", "grad_gamma = (grad_y * x_hat).sum(dim=dims)",
         "grad_gamma = (grad_y * x).sum(dim=dims)")]),
    "bnb_grad_beta_mean": Mutant("grad_beta averaged instead of summed", [
        ("batchnorm_backward", "grad_beta = grad_y.sum(dim=dims)", "grad_beta = grad_y.mean(dim=dims)")]),
    "bnb_conv_per_position": Mutant("backward for conv inputs over the batch axis only", [
        ("batchnorm_backward", "dims = (0,) if x.dim() == 2 else (0, 2, 3)", "dims = (0,)")]),
    # Part 5: dropout
    "dropout_not_rescaled": Mutant("survivors not scaled by 1 / (1 - p)", [
        ("dropout", "return x * mask / (1 - p), mask", "return x * mask, mask")]),
    "dropout_rescaled_at_eval": Mutant("evaluation scales by 1 - p (the original, non-inverted dropout)", [
        ("dropout", "return x, None", "return x * (1 - p), None")]),
    "dropout_keeps_with_p": Mutant("each element kept with probability p instead of 1 - p", [
        ("dropout", "mask = torch.rand_like(x) >= p", "mask = torch.rand_like(x) < p")]),
    "dropout_one_mask_per_example": Mutant("one keep/drop decision per example, broadcast over its features", [
        ("dropout", "mask = torch.rand_like(x) >= p",
         "mask = (torch.rand(x.shape[0], *[1] * (x.dim() - 1)) >= p).expand_as(x)")]),
    "dropout_same_mask_every_call": Mutant("the generator is reseeded inside: the same mask at every step", [
        ("dropout", "mask = torch.rand_like(x) >= p", "torch.manual_seed(0)\n    mask = torch.rand_like(x) >= p")]),
    "dropout_backward_new_mask": Mutant("backward draws a new mask instead of the forward's", [
        ("dropout", "return grad_y * mask / (1 - p)", "return grad_y * (torch.rand_like(grad_y) >= p) / (1 - p)")]),
    "dropout_backward_unscaled": Mutant("backward forgets the 1 / (1 - p)", [
        ("dropout", "return grad_y * mask / (1 - p)", "return grad_y * mask")]),
}

PART2 = {"test_fans", "test_fans_hidden", "test_xavier", "test_xavier_hidden", "test_he", "test_he_hidden",
         "test_init_weights", "test_init_weights_hidden"}
BN_FORWARD = {"test_batchnorm_train", "test_batchnorm_train_hidden", "test_batchnorm_eval",
              "test_batchnorm_eval_hidden"}
BN_BACKWARD = {"test_batchnorm_backward", "test_batchnorm_backward_hidden"}
DROPOUT = {"test_dropout", "test_dropout_hidden", "test_dropout_backward", "test_dropout_backward_hidden"}

# Library calls instead of implementations: each scores 0 on its cells.
LIBRARY = {
    "fans": '''
def fan_in_and_fan_out(shape):
    return torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
''',
    "xavier": '''
def xavier_uniform(shape, gain=1.0):
    return nn.init.xavier_uniform_(torch.empty(shape), gain)


def xavier_normal(shape, gain=1.0):
    return torch.empty(shape).normal_(0, gain * math.sqrt(2.0 / sum(nn.init._calculate_fan_in_and_fan_out(
        torch.empty(shape)))))
''',
    "he": '''
def he_normal(shape, mode="fan_in"):
    return torch.nn.init.kaiming_normal_(torch.empty(shape), mode=mode)
''',
    "init_weights": '''
def init_weights_(model, scheme):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            {"small": lambda w: nn.init.normal_(w, std=0.01), "xavier": nn.init.xavier_normal_,
             "he": nn.init.kaiming_normal_}[scheme](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
''',
    "batchnorm_forward": '''
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    return torch.batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps, False)
''',
    "batchnorm_backward": '''
def batchnorm_backward(grad_y, x, gamma, eps=1e-5):
    x, gamma = x.clone().requires_grad_(), gamma.clone().requires_grad_()
    beta = torch.zeros_like(gamma, requires_grad=True)
    y = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    return torch.autograd.grad(y, (x, gamma, beta), grad_y)
''',
    "dropout": '''
def dropout_forward(x, p, training):
    if not training:
        return x, None
    y = nn.Dropout(p)(x)
    return y, y != 0


def dropout_backward(grad_y, mask, p):
    return torch.ops.aten.native_dropout_backward(grad_y, mask, 1 / (1 - p))
''',
}

# Correct answers written differently from the reference: none may cost a point.
FAIR = {
    "xavier": '''
def xavier_uniform(shape, gain=1.0):
    fan_in, fan_out = fan_in_and_fan_out(shape)
    bound = gain * (6 / (fan_in + fan_out)) ** 0.5
    return torch.empty(shape).uniform_(-bound, bound)


def xavier_normal(shape, gain=1.0):
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return torch.empty(*shape).normal_(mean=0.0, std=gain * (2 / (fan_in + fan_out)) ** 0.5)
''',
    "he": '''
def he_normal(shape, mode="fan_in"):
    fans = dict(zip(("fan_in", "fan_out"), fan_in_and_fan_out(shape)))
    return torch.normal(0.0, math.sqrt(2 / fans[mode]), size=tuple(shape))
''',
    "batchnorm_forward": '''
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    axes = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        var, mean = torch.var_mean(x, dim=axes, unbiased=False)
        n = x.numel() / x.shape[1]
        running_mean.copy_((1 - momentum) * running_mean + momentum * mean.detach())
        running_var[:] = (1 - momentum) * running_var + momentum * var.detach() * n / (n - 1)
    else:
        mean, var = running_mean, running_var
    x_hat = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + eps)
    return x_hat * gamma.reshape(shape) + beta.reshape(shape)
''',
    "batchnorm_backward": '''
def batchnorm_backward(grad_y, x, gamma, eps=1e-5):
    # step by step through the graph, as on the slides
    axes = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    M = x.numel() // x.shape[1]
    mu = x.mean(axes, keepdim=True)
    xc = x - mu
    var = (xc * xc).sum(axes, keepdim=True) / M
    std = (var + eps).sqrt()
    x_hat = xc / std
    d_xhat = grad_y * gamma.reshape(shape)
    d_var = (d_xhat * xc).sum(axes, keepdim=True) * -0.5 * std ** -3
    d_mu = -(d_xhat / std).sum(axes, keepdim=True) - 2 * d_var * xc.sum(axes, keepdim=True) / M
    d_x = d_xhat / std + d_var * 2 * xc / M + d_mu / M
    return d_x, (grad_y * x_hat).sum(axes), grad_y.sum(axes)
''',
    "dropout": '''
def dropout_forward(x, p, training):
    if not training or p == 0:
        return x.clone(), (None if not training else torch.ones_like(x, dtype=torch.bool))
    keep = torch.bernoulli(torch.full_like(x, 1 - p)).bool()
    return torch.where(keep, x / (1 - p), torch.zeros_like(x)), keep


def dropout_backward(grad_y, mask, p):
    return torch.where(mask, grad_y / (1 - p), torch.zeros_like(grad_y))
''',
}


def _fair(correct):
    """Correct answers written in other ways, with the notation and noise that must not cost a point."""
    nb = edited(correct, **{k: v.strip("\n") for k, v in FAIR.items()})
    nb = edited(nb, q1_answers=lambda s: (
        "# the slides' notation, and names the tests also use\n"
        "n, F, x, w, p, mask, gamma, beta, cases, shape = 400, 5, 1, 2, 0.5, 3, 1.0, 0.0, 4, (2, 3)\n" + s))
    return edited(nb, fans=lambda s: replace_once(
        s, "    receptive = math.prod(shape[2:])",
        "    import sys\n    import warnings\n"
        "    warnings.warn('fan_in_and_fan_out: still a draft')  # a warning: reported, not penalised\n"
        "    print('debug: fans called', file=sys.stderr)\n"
        "    torch.rand(3)  # draws random numbers: the tests' inputs must not depend on it\n"
        "    receptive = math.prod(shape[2:])"))


# The calling test's source in an error message (which feedback would show): the hidden tests must not leak.
_LEAK = '''
def dropout_backward(grad_y, mask, p):
    import inspect
    import sys
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != "_test":
        frame = frame.f_back
    raise AssertionError("the test:\\n" + (inspect.getsource(frame.f_code) if frame else "?"))
'''

# Answers that compare equal to anything: the type checks refuse them.
_ANYTHING = '''
class Anything(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


q1a_var = q1b_std = q1c_nvar = q1d_relu = Anything(0.0)
'''

# The library op on another thread (the guard sees only the calling thread): starting it is refused.
_THREAD = '''
import threading


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out = []
    t = threading.Thread(target=lambda: out.append(torch.nn.functional.batch_norm(
        x, running_mean, running_var, gamma, beta, training, momentum, eps)))
    t.start()
    t.join()
    return out[0]
'''

# torch.nn.functional.batch_norm replaced by the student's own (wrong) function: the tests' reference would be
# the student's answer; the tamper check fails every test from then on.
_PROXY = '''
import torch.nn.functional


def _mine(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    return batchnorm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)


torch.nn.functional.batch_norm = _mine
'''

# Library calls hidden from torch's function modes, and the test's own autograd node called for the gradients.
_EVADES = {
    "batchnorm_forward": """def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                      eps=1e-5):
    with torch._C.DisableTorchFunction():
        return torch.batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps, False)""",
    "batchnorm_backward": """import sys


def batchnorm_backward(grad_y, x, gamma, eps=1e-5):
    y = sys._getframe(2).f_locals["y"]  # the test's forward output
    return tuple(y.grad_fn(grad_y))""",
}

# An IPython input transformer that turns every later test cell into a forged pass line.
_TRANSFORMER = '''
def _no_tests(lines):
    text = "".join(lines)
    if "@graded_test(" in text:
        grade_id = text.split('@graded_test("')[1].split('"')[0]
        return [f"print('\\u2714 {grade_id} passed')\\n"]
    return lines


get_ipython().input_transformers_cleanup.append(_no_tests)
'''


def submissions(a2: Assignment) -> dict[str, Submission]:
    """The shared autograde batch: fair students, wrong answers, cheats, and what each must score."""
    release, correct = a2.release_nb(), a2.correct()
    cells = set(a2.grade_cells)
    subs = {
        "alice": Submission(correct, feedback=True),
        "fiona_fair_variants": Submission(_fair(correct), stdout={
            "test_fans": "note (not penalised): your code raised a warning: UserWarning: fan_in_and_fan_out",
            "test_fans_hidden": "debug: fans called"}),
        "ursula_untouched": Submission(release, fails=cells),
    }

    nb = edited(correct, dropout=lambda s: s.split("\n\n\ndef dropout_backward")[0] + "\n\n" + _LEAK)
    subs["lena_leaks_tests"] = Submission(nb, fails={"test_dropout_backward", "test_dropout_backward_hidden"},
                                          audit=True, feedback=True)

    nb = edited(correct)  # wrong in ways only the hidden tests see
    for name in ("fan_2d_kernels_only", "init_top_level_only", "bn_conv_statistics_per_position",
                 "dropout_same_mask_every_call"):
        apply_replacements(nb, MUTANTS[name].replacements)
    subs["walt_wrong_clauses"] = Submission(nb, fails={
        "test_fans_hidden", "test_xavier_hidden", "test_he_hidden", "test_init_weights_hidden",
        "test_batchnorm_train_hidden", "test_dropout_hidden"}, feedback=True)

    nb = edited(correct)  # He without the factor 2, its locked test cells edited to pass
    apply_replacements(nb, MUTANTS["he_without_factor_2"].replacements)
    nb = edited(nb, test_he='"""Edited by the student."""\nassert True',
                test_he_hidden='"""Edited by the student."""\nassert True')
    subs["oscar_edits_tests"] = Submission(nb, fails={"test_he", "test_he_hidden", "test_init_weights_hidden"},
                                           audit=True)

    nb = edited(correct)  # mode ignored (passes the visible test), hidden test deleted
    apply_replacements(nb, MUTANTS["he_mode_ignored"].replacements)
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_he_hidden"]
    subs["dave_deletes_test"] = Submission(nb, fails={"test_he_hidden"}, manual={"test_he_hidden"}, audit=True)

    nb = edited(correct, q1_answers=_ANYTHING.strip("\n"))
    subs["ivan_equal_to_anything"] = Submission(nb, fails={"test_q1_variance", "test_q1_relu"})

    nb = edited(correct, batchnorm_forward=_THREAD.strip("\n"))
    subs["tom_thread"] = Submission(nb, fails=BN_FORWARD, audit=True)

    nb = edited(correct)  # a wrong batch norm, and F.batch_norm replaced so that it agrees with it
    apply_replacements(nb, MUTANTS["bn_running_var_biased"].replacements)
    nb = edited(nb, batchnorm_forward=lambda s: s + "\n\n" + _PROXY)
    subs["trudy_replaces_f_batch_norm"] = Submission(nb, fails=BN_FORWARD | BN_BACKWARD | DROPOUT, audit=True,
                                                     inprocess=False)

    nb = edited(correct, **_EVADES)
    subs["victor_evades_guard"] = Submission(nb, fails=BN_FORWARD | BN_BACKWARD, audit=True)

    nb = edited(correct, init_weights=lambda s: s + "\n\n" + _TRANSFORMER)
    subs["ian_input_transformer"] = Submission(nb, fails=cells - {"test_q1_variance", "test_q1_relu", "test_fans",
                                                                  "test_fans_hidden", "test_xavier",
                                                                  "test_xavier_hidden", "test_he", "test_he_hidden"},
                                               flagged=True, audit=True, inprocess=False)

    nb = edited(correct, **{k: v.strip("\n") for k, v in LIBRARY.items()})
    subs["carl_calls_library"] = Submission(nb, fails=PART2 | BN_FORWARD | BN_BACKWARD | DROPOUT)
    return subs
