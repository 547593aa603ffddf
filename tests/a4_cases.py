# ruff: noqa: E501  (mutants quote whole lines of the solution)
"""A4's mutants, the submissions of its shared autograde batch, and what grading it needs.

A4 is graded from the submitted ``model.pt`` on the hidden patients named by ``CNNCOURSE_GRADING_DATA``. Here
the hidden patients are synthetic cells (seed 777, written once per process as PNGs in class folders), and the
reference ``model.pt`` honestly classifies them: the solution's own ``build_model()`` architecture with weights
set by hand to a fitted colour feature (max over pixels of R - 1.5 G: the synthetic parasites' chromatin), its
threshold chosen on other synthetic cells (:func:`detector`). The same construction behind two normalisations
gives the model.pt of a student who normalised twice (:func:`double_normalised_files`).
"""

from __future__ import annotations

import atexit
import copy
import functools
import io
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from cnncourse.data.synthetic import save_pngs, synthetic_cells
from tests.grading_support import Assignment, Mutant, Submission, cell, edited

MODEL_CELLS = {"test_model_output", "test_grading_path", "test_accuracy_90", "test_accuracy_93", "test_accuracy_95", "test_accuracy_96",
               "test_auc"}
HIDDEN = MODEL_CELLS - {"test_model_output", "test_grading_path"}

_SOLUTION_NET = "return nn.Sequential(Normalize(MEAN, STD), cellnet(widths=(16, 32, 64, 128), dropout=0.2))"
_SWAP = """class Swap(nn.Module):
        def forward(self, z):
            return z.flip(1)

    return nn.Sequential(Normalize(MEAN, STD), cellnet(widths=(16, 32, 64, 128), dropout=0.2), Swap())"""

MUTANTS: dict[str, Mutant] = {
    "stats_of_every_split": Mutant("MEAN and STD computed over train, validation and test patients", [
        ("stats", "MEAN, STD = channel_stats(x_train)", "MEAN, STD = channel_stats(torch.cat([x_train, x_val, x_test]))")]),
    "stats_of_every_split_rebound": Mutant("MEAN and STD over every split, with x_train rebound to all of them", [
        ("stats", "MEAN, STD = channel_stats(x_train)", "x_train = torch.cat([x_train, x_val, x_test])\nMEAN, STD = channel_stats(x_train)")]),
    "stats_in_pixel_units": Mutant("MEAN and STD in 0-255 units while the model sees [0, 1]", [
        ("stats", "MEAN, STD = channel_stats(x_train)",
         "MEAN, STD = [tuple(255 * v for v in s) for s in channel_stats(x_train)]")]),
    "stats_not_in_the_model": Mutant("build_model() normalises nowhere (MEAN and STD not stored in model.pt)", [
        ("build_model", _SOLUTION_NET, "return cellnet(widths=(16, 32, 64, 128), dropout=0.2)")]),
    "over_budget": Mutant("a CNN twice as wide: over the parameter and MAC budget", [
        ("build_model", _SOLUTION_NET, "return nn.Sequential(Normalize(MEAN, STD), cellnet(widths=(32, 64, 128, 256), dropout=0.2))")]),
    "classes_swapped": Mutant("logit 0 is Parasitized (the classes' order swapped)", [("build_model", _SOLUTION_NET, _SWAP)]),
    "normalises_pixel_values": Mutant("the model multiplies its [0, 1] input by 255 before normalising", [
        ("build_model", "return (x - self.mean) / self.std", "return (x * 255 - self.mean) / self.std")]),
    "normalises_twice": Mutant("build_model() normalises and fit_tensors normalised too: model.pt was trained on "
                               "images normalised twice, and grading gives it images in [0, 1]", [
        ("train", "augment=AUGMENT,", "augment=AUGMENT, mean=MEAN, std=STD,")],
        files=lambda a4: double_normalised_files(a4)),
}


def build_solution_model(a4: Assignment, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> nn.Module:
    """The solution's build_model() with MEAN = ``mean``, STD = ``std`` (default 0 and 1: inputs stay in [0, 1])."""
    namespace = {"MEAN": tuple(mean), "STD": tuple(std)}
    exec(cell(a4.source_nb(), "build_model").source, namespace)
    return namespace["build_model"]()


def feature(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255
    return (x[:, 0] - 1.5 * x[:, 1]).amax((1, 2))


def detector(a4: Assignment, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), twice: bool = False) -> nn.Module:
    """The solution architecture carrying channel 0 = relu(R - 1.5 G - t) through every stage; logit 1 = its max.

    The model normalises with ``mean``/``std`` inside; its first convolution (centre taps only, so the zero padding
    plays no part) undoes that, ``x = std * z + mean``, so it classifies images in [0, 1]. With ``twice`` it undoes
    a second normalisation as well, ``x = std * (std * w + mean) + mean``: the weights a student gets who trained
    on images normalised before the model too.
    """
    fit = synthetic_cells(600, seed=5)
    f = feature(fit.images)
    t = max(torch.linspace(0, 1, 201).tolist(), key=lambda t: float(((f >= t).long() == fit.labels).float().mean()))
    m, s = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    scale, shift = (s * s, s * m + m) if twice else (s, m)  # x = scale * (what the network sees) + shift
    model = build_solution_model(a4, mean, std)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for k, conv in enumerate(convs):
            conv.weight.zero_()
            if k == 0:
                conv.weight[0, 0, 1, 1], conv.weight[0, 1, 1, 1] = float(scale[0]), -1.5 * float(scale[1])
            else:
                conv.weight[0, 0, 1, 1] = 1.0
        bias0 = -t + float(shift[0] - 1.5 * shift[1])
        for k, bn in enumerate(norms):
            bn.weight.fill_(1), bn.bias.fill_(bias0 if k == 0 else 0), bn.running_mean.zero_(), bn.running_var.fill_(1)
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.zero_(), head.bias.zero_()
        head.weight[1, head.in_features // 2] = 500.0  # the global max of channel 0
        head.bias[1] = -0.5
    return model.eval()


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class RunsCode:
    """Unpickles to a copy of ``state`` by calling ``copy.deepcopy``: loads only where pickled code may run."""

    def __init__(self, state: dict):
        self.state = state

    def __reduce__(self):
        return copy.deepcopy, (self.state,)


@functools.cache
def grading_data() -> str:
    """The hidden patients of the tests: 300 synthetic cells as PNGs in class folders (once per process)."""
    folder = Path(tempfile.mkdtemp(prefix="cnncourse-a4-grading-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    save_pngs(synthetic_cells(300, seed=777), folder)
    return str(folder)


def env() -> dict[str, str]:
    return {"CNNCOURSE_GRADING_DATA": grading_data()}


_STATES: dict[str, dict[str, torch.Tensor]] = {}


def detector_state(a4: Assignment) -> dict[str, torch.Tensor]:
    """The hand-set reference weights (built once per process)."""
    if a4.id not in _STATES:
        _STATES[a4.id] = detector(a4).state_dict()
    return _STATES[a4.id]


def double_normalised_files(a4: Assignment) -> dict[str, bytes]:
    """model.pt of a student whose build_model() normalises with the training statistics and who also let
    fit_tensors normalise with them: the detector behind two normalisations."""
    from cnncourse.grading_malaria import training_stats

    mean, std = (tuple(v.tolist()) for v in training_stats())
    return {"model.pt": saved(detector(a4, mean, std, twice=True).state_dict())}


def files(a4: Assignment) -> dict[str, bytes]:
    """Beside the reference notebook: the hand-set reference weights as model.pt."""
    return {"model.pt": saved(detector_state(a4))}


_ONE_CLASS = '''from torch import nn
import torch


class OneClass(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.register_buffer("std", torch.tensor(STD))
        self.bias = nn.Parameter(torch.tensor([2.0, -2.0]))

    def forward(self, x):
        return x.flatten(1)[:, :1] * 0 + self.bias


def build_model():
    return OneClass()
'''


# Label hunters. Autograde hands the kernel the hidden images only (no labels, no file names, shuffled) and scores
# the predictions in the grader's process, so a hunter finds nothing and scores what its weights earn: here every
# weight is 0 (logits 0, probability 0.5: "Parasitized" for every cell, accuracy = the share of parasitized cells).
# Eve looks each image up in the labelled set named by $CNNCOURSE_GRADING_DATA (absent from the sandbox; an
# unsandboxed kernel had it and scored full marks); Frank searches the calling frames for a tensor of labels (the
# grading code once held one there). make audit flags both. Not graded in process: there the hunt succeeds.
_PEEK = _SOLUTION_NET.replace("return ", "net = ") + """
    import os
    from cnncourse.evaluation import read_image_set

    class Peek(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.known = net, {}
            if os.environ.get("CNNCOURSE_GRADING_DATA"):
                data = read_image_set(os.environ["CNNCOURSE_GRADING_DATA"], 64, progress=False)
                self.known = {im.numpy().tobytes(): int(y) for im, y in zip(data.images, data.labels)}

        def forward(self, x):
            logits = self.net(x)
            for k, im in enumerate((x * 255).round().to(torch.uint8)):
                if im.numpy().tobytes() in self.known:
                    logits[k] = torch.tensor([-9.0, 9.0]) if self.known[im.numpy().tobytes()] else torch.tensor([9.0, -9.0])
            return logits

    return Peek(net)"""

_CALLER = _SOLUTION_NET.replace("return ", "net = ") + """
    import sys

    class Caller(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            frame = sys._getframe(1)
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    labels = getattr(value, "labels", None)
                    if isinstance(labels, torch.Tensor) and len(labels) == len(x):
                        return torch.stack([1 - labels.float(), labels.float()], 1) * 18 - 9
                frame = frame.f_back
            return self.net(x)

    return Caller(net)"""


def zero_weights(a4: Assignment, prefix: str) -> dict[str, torch.Tensor]:
    """The solution's architecture with every weight and bias 0 (normalisation and BatchNorm statistics kept)."""
    state = build_solution_model(a4).state_dict()
    return {prefix + k: torch.zeros_like(v) if k.endswith(("weight", "bias")) else v for k, v in state.items()}


def submissions(a4: Assignment) -> dict[str, Submission]:
    correct = a4.correct()
    one_class = {"mean": torch.zeros(3), "std": torch.ones(3), "bias": torch.tensor([2.0, -2.0])}
    return {
        "alice": Submission(correct, files=files(a4), rank=1),
        "olga_one_class": Submission(edited(correct, build_model=_ONE_CLASS), fails=HIDDEN,
                                     files={"model.pt": saved(one_class)}, rank=4),
        "nick_no_model": Submission(correct, fails=MODEL_CELLS),
        "mallory_pickled_code": Submission(correct, fails=MODEL_CELLS,
                                           files={"model.pt": saved(RunsCode(detector_state(a4)))}),
        "eve_peeks_at_hidden_labels": Submission(
            edited(correct, build_model=lambda src: src.replace(_SOLUTION_NET, _PEEK)), fails=HIDDEN, audit=True,
            inprocess=False, rank=2, files={"model.pt": saved(zero_weights(a4, "net."))}),
        "frank_inspects_the_caller": Submission(  # ties with eve (same accuracy, AUC and MACs): ranked by name
            edited(correct, build_model=lambda src: src.replace(_SOLUTION_NET, _CALLER)), fails=HIDDEN, audit=True,
            inprocess=False, rank=3, files={"model.pt": saved(zero_weights(a4, "net."))}),
    }
