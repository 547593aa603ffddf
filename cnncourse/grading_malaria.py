"""What the tests of assignment A4 (malaria) use: the submitted model, its budget, the hidden grading set.

A4's student defines ``build_model()`` (a module mapping float images in [0, 1], ``(N, 3, 64, 64)``, to
logits ``(N, 2)``; it normalises inside, with its statistics as buffers) and saves its ``state_dict`` to
``model.pt``. Grading never trains: :func:`load_submission` loads ``model.pt`` with
``torch.load(weights_only=True)`` (no pickled code runs) and :func:`model_cost` measures it with
``cnncourse.shapes.layer_table``. Test cells receive this module as the toolkit entry ``malaria``
(``cnncourse/grading/toolkit.py``): only A4's kernels import it.

:func:`predict_probs` is the grading path: uint8 images in, given to the model as float images in [0, 1],
probabilities out; class 1 (Parasitized) from probability 0.5 (:data:`THRESHOLD`). :func:`validation_cells` and
:func:`accuracy` let a visible test push labelled validation cells through that path before submission.

The hidden patients (``$CNNCOURSE_GRADING_DATA``, a folder or zip the students never see, read by
``cnncourse.evaluation``) are read by the grader only: :class:`HiddenPatients` hands the kernel their images
without labels, in a fresh random order; the hidden test cells call :func:`submit_predictions`, and the grader
scores the predictions against the labels (:data:`CHECKS`), in its own process.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cnncourse import shapes
from cnncourse.autograde import cells, hidden
from cnncourse.data.malaria import load_tensors
from cnncourse.data.synthetic import CellTensors
from cnncourse.evaluation import ImageSet, Report, binary_report, read_image_set
from cnncourse.runtime import is_quick
from cnncourse.train.tensors import channel_stats, normalize, predict_tensors

if TYPE_CHECKING:  # the grader's side only: an A4 kernel never imports nbformat
    from nbformat import NotebookNode

__all__ = ["GRADING_ENV", "SIZE", "MAX_PARAMS", "MAX_MACS", "TIERS", "MIN_AUC", "THRESHOLD", "CHECKS", "RESULT_CELL",
           "HiddenPatients", "load_submission", "model_cost", "training_stats", "validation_cells", "predict_probs",
           "accuracy", "agreement_tolerance", "grading_set", "grading_report", "result_line",
           "submit_predictions"]  # fmt: skip

GRADING_ENV = "CNNCOURSE_GRADING_DATA"
SIZE = 64  # side of the images the model is given
MAX_PARAMS = 400_000  # the design budget: parameters ...
MAX_MACS = 80_000_000  # ... and multiply-accumulates per 64 x 64 image
TIERS = (0.90, 0.93, 0.95, 0.96)  # accuracy tiers on the grading patients
MIN_AUC = 0.985
THRESHOLD = 0.5  # a cell counts as Parasitized when the model's probability of class 1 is >= this
VALIDATION_SAMPLE = 512  # validation cells the visible grading-path test pushes through the model
# The hidden test cells and what each needs on the hidden patients: (metric of the Report, lowest passing value).
CHECKS = {f"test_accuracy_{round(t * 100)}": ("accuracy", t) for t in TIERS} | {"test_auc": ("auc", MIN_AUC)}
RESULT_CELL = "test_accuracy_90"  # the cell whose predictions the leaderboard ranks
IMAGES = "images.npy"  # the hidden images the kernel gets: uint8 (N, 3, SIZE, SIZE), no labels, shuffled


def load_submission(build_model: Callable[[], nn.Module], path: str | os.PathLike = "model.pt") -> nn.Module:
    """``build_model()`` with the weights of ``path`` (a ``state_dict``), in eval mode on the CPU.

    Raises AssertionError with what to do when the file is missing, is not a plain ``state_dict`` (only
    ``torch.load(weights_only=True)`` is used) or does not fit ``build_model()``.
    """
    path = Path(path)
    if not path.is_file():
        raise AssertionError(f"{path} not found next to the notebook: train your model and save it with "
                             "torch.save(model.state_dict(), 'model.pt'), then submit model.pt with the notebook.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure: the message says what to save instead
        raise AssertionError(f"{path} is not a plain state_dict that torch.load(weights_only=True) can read "
                             f"({type(err).__name__}); save torch.save(model.state_dict(), 'model.pt').") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AssertionError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors; save "
                             "torch.save(model.state_dict(), 'model.pt').")
    model = build_model()
    if not isinstance(model, nn.Module):
        raise AssertionError(f"build_model() returned a {type(model).__name__}, not an nn.Module.")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0][:300]
        raise AssertionError(f"{path} does not fit build_model(): {first}. Save the state_dict of the model that "
                             "build_model() builds.") from None
    return model.cpu().eval()


def model_cost(model: nn.Module, size: int = SIZE) -> tuple[int, int]:
    """``(parameters, multiply-accumulates)`` of one ``(1, 3, size, size)`` image, by ``shapes.layer_table``."""
    table = shapes.layer_table(model, (1, 3, size, size))
    return table.total_params, table.total_macs


def training_stats(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(3,)`` (float64, [0, 1] units) of the training patients' images, loaded here
    as the notebook loads them (the synthetic cells in quick mode): never from the notebook's own variables."""
    images = load_tensors("train", size=size, source="synthetic" if is_quick() else None, progress=False).images
    mean, std = channel_stats(images)  # in float64 chunks: no float copy of the whole split
    return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)


def validation_cells(n: int = VALIDATION_SAMPLE, size: int = SIZE) -> CellTensors:
    """``n`` cells of the validation patients (a fixed random sample; all of them when fewer), loaded here as the
    notebook loads them (the synthetic cells in quick mode): uint8 images ``(n, 3, size, size)``, labels, patients."""
    data = load_tensors("val", size=size, source="synthetic" if is_quick() else None, progress=False)
    if len(data.labels) > n:
        keep = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(0))[:n].sort().values
        data = CellTensors(data.images[keep], data.labels[keep], [data.patient_ids[i] for i in keep.tolist()])
    return data


@torch.no_grad()
def predict_probs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The grading path: probabilities of Parasitized ``(N,)`` of uint8 ``images: (N, 3, S, S)``, given to the
    model as float images in [0, 1] (no other normalisation; float32, eval mode, on the CPU)."""
    logits = predict_tensors(model, images.cpu(), amp=False, channels_last=False)
    if logits.shape != (len(images), 2):
        raise AssertionError(f"the model gave logits of shape {tuple(logits.shape)} for {len(images)} "
                             "images; expected (N, 2).")
    probs = logits.softmax(1)[:, 1]
    if not bool(torch.isfinite(probs).all()):
        raise AssertionError("the model gave non-finite outputs on the grading images.")
    return probs


@torch.no_grad()
def accuracy(model: nn.Module, labelled: CellTensors, mean: torch.Tensor | None = None,
             std: torch.Tensor | None = None) -> float:
    """Accuracy of ``model`` on ``labelled`` cells (class 1 when p >= 0.5) along the grading path; with ``mean``
    and ``std`` ((3,), [0, 1] units) the images are normalised with them *before* the model instead (the path of a
    model trained on normalised images: the double-normalisation probe)."""
    if mean is None:
        probs = predict_probs(model, labelled.images)
    else:
        x = normalize(labelled.images.cpu(), mean.float(), std.float())
        probs = torch.cat([model.eval()(chunk).float().softmax(1)[:, 1] for chunk in x.split(256)])
    return float(((probs >= THRESHOLD).long() == labelled.labels.cpu()).float().mean())


def agreement_tolerance(accuracy: float, n: int) -> float:
    """How far the accuracy on ``n`` sampled cells may honestly lie from an accuracy measured on all of them:
    3 binomial standard errors plus 0.05 (a validation set of other cells, bf16 in training)."""
    p = min(max(accuracy, 0.0), 1.0)
    return 0.05 + 3 * (p * (1 - p) / max(n, 1)) ** 0.5


@functools.lru_cache(maxsize=2)
def _read(source: str, size: int) -> ImageSet:
    return read_image_set(source, size, progress=False)


def grading_set(size: int = SIZE) -> ImageSet:
    """The labelled images of ``$CNNCOURSE_GRADING_DATA`` (read once per process), letterboxed to ``size``."""
    source = os.environ.get(GRADING_ENV)
    if not source:
        raise AssertionError(f"${GRADING_ENV} is not set: the instructor names the grading patients' folder or zip "
                             "there (make autograde refuses to start without it).")
    images = _read(source, size)
    if images.labels is None:
        raise AssertionError(f"${GRADING_ENV}={source} holds no class folders (Parasitized/, Uninfected/).")
    return images


@torch.no_grad()
def grading_report(model: nn.Module, size: int = SIZE) -> Report:
    """Accuracy, AUC, ... of ``model`` on the grading set: class 1 (Parasitized) when its probability >= 0.5."""
    data = grading_set(size)
    return binary_report(data.labels, predict_probs(model, data.images), data.patients, threshold=THRESHOLD)


def result_line(report: Report, params: int, macs: int) -> str:
    """What the instructor's run of the source notebook prints (``$CNNCOURSE_GRADING_DATA`` set, no grader): for
    people only. Nothing parses it; the leaderboard reads the numbers the grader computed (``cnncourse-results.json``,
    :class:`HiddenPatients`)."""
    auc = "nan" if report.auc is None else f"{report.auc:.4f}"
    return (f"A4 result: accuracy={report.accuracy:.4f} auc={auc} params={params} macs={macs} "
            f"n_images={report.n_images}")


@torch.no_grad()
def submit_predictions(model: nn.Module, size: int = SIZE) -> None:
    """A hidden test cell's step in the kernel: predict the hidden images and hand the probabilities to the grader.

    Graded, the kernel reads the unlabelled images the grader prepared (``$CNNCOURSE_HIDDEN_INPUTS``) and
    the grader scores the predictions (:class:`HiddenPatients`). Run by the instructor on the source notebook
    with ``$CNNCOURSE_GRADING_DATA`` set, it prints the report on those patients instead.
    """
    folder = hidden.inputs_dir()
    if folder is None:
        if not os.environ.get(GRADING_ENV):
            raise AssertionError("the hidden patients are scored by the grader (make autograde); they are not "
                                 "available here.")
        print(result_line(grading_report(model, size), *model_cost(model, size)))
        return
    images = torch.from_numpy(np.load(folder / IMAGES, allow_pickle=False))
    probs = predict_probs(model, images).double().clamp(0.0, 1.0)
    params, macs = model_cost(model, size)
    hidden.emit({"probabilities": probs.tolist(), "params": int(params), "macs": int(macs)})


class HiddenPatients:
    """The grader's side of A4's hidden tests (``c.SandboxedExecute.hidden_scorers``; see
    :mod:`cnncourse.autograde.hidden`)."""

    def prepare(self, folder: Path) -> tuple[ImageSet, np.ndarray]:
        """Write the hidden images, shuffled, without labels or file names; return the set and the order."""
        data = grading_set(SIZE)
        order = np.random.default_rng(secrets.randbits(64)).permutation(len(data.images))
        np.save(Path(folder) / IMAGES, data.images.numpy()[order], allow_pickle=False)
        return data, order

    def score(self, nb: NotebookNode, key: tuple[ImageSet, np.ndarray]) -> dict:
        """Fail each hidden test cell whose predictions miss its bar; return the result cell's numbers."""
        data, order = key
        results: dict = {}
        for cell in nb.cells:
            grade_id = cells.grade_id(cell)
            if cell.cell_type != "code" or grade_id not in CHECKS:
                continue
            probs, payload = hidden.predictions(cell, len(order))
            if any(o.get("output_type") == "error" for o in cell.outputs):
                continue  # the test failed in the kernel already (e.g. model.pt did not load)
            if probs is None:
                hidden.fail(cell, "the model's predictions on the hidden patients did not reach the grader")
                continue
            restored = np.empty(len(order))
            restored[order] = probs
            report = binary_report(data.labels, torch.from_numpy(restored), data.patients, threshold=THRESHOLD)
            metric, bar = CHECKS[grade_id]
            value = getattr(report, metric)
            if value is None or value < bar:
                shown = "undefined" if value is None else f"{value:.4f}"
                hidden.fail(cell, f"{metric} on the hidden patients {shown} < {bar}")
            if grade_id == RESULT_CELL:
                results = {"accuracy": report.accuracy, "auc": report.auc, "n_images": report.n_images,
                           "params": payload.get("params"), "macs": payload.get("macs")}
        return results
