"""Judging a two-class cell classifier on a folder or zip of images, per image and per patient.

``read_image_set(source, size)`` reads every PNG of a folder or zip the way the training data was
read (letterboxed to ``size``): labelled when the PNGs sit in class folders (``Parasitized/``,
``Uninfected/``; a hidden test set may hold one class only), unlabelled when none do. A file name that
does not follow the patient pattern (``<patient>_IMG_...``) belongs to the patient ``"unknown"``.
``binary_report(labels, probs, patients)`` gives accuracy, ROC AUC, sensitivity, specificity and the
patients with the most errors; metrics that a one-class set cannot define are ``None``.
``patient_bootstrap(labels, probs, patients)`` says how sure those numbers are: a 95 % interval for accuracy
and AUC from resampling whole patients (cells of one patient share stain, microscope and parasite stage, so
the patients, not the cells, are the independent draws).
``patient_subsets(labels, probs, patients, n)`` says what a grader would measure on a hidden set of ``n`` new
patients: accuracy and AUC over many random sets of ``n`` patients (how A4's tiers are calibrated from
cross-validated predictions, which ``save_predictions``/``load_predictions`` keep).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cnncourse.data.archive import ClassArchive, DataError
from cnncourse.data.images import decode_many
from cnncourse.data.malaria import CLASSES, patient_id

__all__ = ["UNKNOWN_PATIENT", "ImageSet", "PatientRow", "Report", "Interval", "patient_or_unknown",
           "read_image_set", "binary_report", "patient_bootstrap", "patient_subsets", "judge_fold", "fold_spread",
           "save_predictions", "load_predictions"]  # fmt: skip

UNKNOWN_PATIENT = "unknown"


def patient_or_unknown(filename: str) -> str:
    """``patient_id(filename)``, or ``"unknown"`` for a name without the ``<patient>_IMG`` pattern."""
    try:
        return patient_id(filename)
    except ValueError:
        return UNKNOWN_PATIENT


@dataclass
class ImageSet:
    """Images read for evaluation.

    images: (N, 3, S, S) uint8. labels: (N,) int64 (1 = the second class), or None when unlabelled.
    files: member paths relative to the source. patients: patient per file. skipped: unreadable files.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    files: list[str]
    patients: list[str]
    skipped: list[str]
    source: Path


def read_image_set(
    source: str | os.PathLike,
    size: int,
    *,
    classes: Sequence[str] = CLASSES,
    on_error: str = "raise",
    progress: bool = True,
) -> ImageSet:
    """Read every PNG of a folder or zip, letterboxed to ``size`` px.

    Raises:
        FileNotFoundError: no such source.
        DataError: no PNG, an unreadable zip, a PNG that cannot be decoded (with ``on_error="raise"``), or
            a source that mixes PNGs inside class folders with PNGs outside them.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Evaluation source {path} does not exist; give a folder or a .zip of PNG images.")
    with ClassArchive(path, classes, require_all=False) as archive:
        if archive.members and archive.unlabelled:
            raise DataError(
                f"{path} mixes {len(archive.members)} PNGs in class folders {list(classes)} with "
                f"{len(archive.unlabelled)} outside them (e.g. {archive.unlabelled[0]}). Put every image into a "
                "class folder to measure accuracy, or none to get predictions."
            )
        names = archive.members or archive.unlabelled
        images, kept, skipped = decode_many(
            archive.read, names, size, on_error=on_error, progress=progress, where=str(path)
        )
        labels = torch.tensor([archive.labels[k] for k in kept], dtype=torch.int64) if archive.members else None
    files = [names[k] for k in kept]
    if not files:
        raise DataError(f"No PNG in {path} could be decoded ({len(skipped)} skipped).")
    patients = [patient_or_unknown(f) for f in files]
    return ImageSet(images, labels, files, patients, skipped, path)


@dataclass
class PatientRow:
    """One patient's share of the evaluation."""

    patient: str
    n_images: int
    n_positive: int
    errors: int

    @property
    def accuracy(self) -> float:
        return 1 - self.errors / self.n_images


@dataclass
class Report:
    """Image-level metrics at ``threshold`` and the per-patient breakdown (worst first).

    ``auc`` is None with one class only; ``sensitivity`` (recall of class 1) is None without positives,
    ``specificity`` (recall of class 0) None without negatives. ``confusion`` is ``[[tn, fp], [fn, tp]]``.
    """

    accuracy: float
    auc: float | None
    sensitivity: float | None
    specificity: float | None
    n_images: int
    n_patients: int
    n_positive: int
    threshold: float
    confusion: list[list[int]]
    patients: list[PatientRow] = field(default_factory=list)

    def to_dict(self, worst: int = 5) -> dict:
        """Plain values for JSON; ``worst_patients`` lists the ``worst`` patients with errors."""
        out = asdict(self)
        out.pop("patients")
        out["worst_patients"] = [
            {**asdict(row), "accuracy": round(row.accuracy, 4)} for row in self.patients[:worst] if row.errors
        ]
        return out


def binary_report(
    labels: torch.Tensor | Sequence[int],
    probs: torch.Tensor | Sequence[float],
    patients: Sequence[str],
    threshold: float = 0.5,
) -> Report:
    """Metrics of predicted probabilities of class 1 (``probs``, (N,)) against 0/1 ``labels`` (N,).

    A prediction is class 1 when ``prob >= threshold``. Patients are sorted by number of errors, then by
    error rate, then by name.
    """
    from sklearn.metrics import roc_auc_score

    y = torch.as_tensor(labels).long().cpu()
    p = torch.as_tensor(probs).float().cpu()
    if y.dim() != 1 or p.shape != y.shape or len(patients) != len(y):
        raise ValueError(
            f"labels, probs and patients must have one entry per image, got {tuple(y.shape)}, "
            f"{tuple(p.shape)} and {len(patients)}."
        )
    if len(y) == 0:
        raise ValueError("Nothing to evaluate: no images.")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(f"labels must be 0 or 1, got {sorted(set(y.tolist()))}.")
    pred = (p >= threshold).long()
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    positives, negatives = tp + fn, tn + fp
    auc = float(roc_auc_score(y.numpy(), p.numpy())) if positives and negatives else None
    rows: dict[str, PatientRow] = {}
    for patient, label, guess in zip(patients, y.tolist(), pred.tolist(), strict=True):
        row = rows.setdefault(patient, PatientRow(patient, 0, 0, 0))
        row.n_images += 1
        row.n_positive += label
        row.errors += int(label != guess)
    ranked = sorted(rows.values(), key=lambda r: (-r.errors, r.accuracy, r.patient))
    return Report(
        accuracy=(tp + tn) / len(y),
        auc=auc,
        sensitivity=tp / positives if positives else None,
        specificity=tn / negatives if negatives else None,
        n_images=len(y),
        n_patients=len(rows),
        n_positive=positives,
        threshold=threshold,
        confusion=[[tn, fp], [fn, tp]],
        patients=ranked,
    )


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval: ``low``, ``high`` at ``level``, from ``n_boot`` resamples of
    ``n_patients`` patients (``n_valid`` of them defined the metric: an AUC needs both classes)."""

    low: float | None
    high: float | None
    level: float
    n_patients: int
    n_boot: int
    n_valid: int

    def text(self) -> str:
        if self.low is None:
            return "n/a"
        return f"[{self.low:.4f}, {self.high:.4f}] ({self.level:.0%}, {self.n_patients} patients)"


def patient_bootstrap(
    labels: torch.Tensor | Sequence[int],
    probs: torch.Tensor | Sequence[float],
    patients: Sequence[str],
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Patient-level bootstrap intervals ``{"accuracy": ..., "auc": ...}`` of per-image metrics.

    Each resample draws as many patients as there are, with replacement, and pools all cells of the drawn
    patients (a patient drawn twice counts twice); the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` percentiles over the resamples. Resamples with one class only do not count for the AUC.
    Seeded: the same inputs and ``seed`` give the same interval.

    Args:
        labels: 0/1 ``(N,)``. probs: probability of class 1 ``(N,)``. patients: the patient of each image.
    """
    from sklearn.metrics import roc_auc_score

    y, p, members = _by_patient(labels, probs, patients)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level!r}.")
    correct = ((p >= threshold).long() == y).double()
    generator = torch.Generator().manual_seed(seed)
    accs, aucs = [], []
    for _ in range(n_boot):
        drawn = torch.randint(len(members), (len(members),), generator=generator)
        idx = torch.cat([members[k] for k in drawn.tolist()])
        accs.append(float(correct[idx].mean()))
        yb = y[idx]
        if 0 < int(yb.sum()) < len(yb):
            aucs.append(float(roc_auc_score(yb.numpy(), p[idx].numpy())))
    return {"accuracy": _percentiles(accs, level, len(members), n_boot),
            "auc": _percentiles(aucs, level, len(members), n_boot)}


def _by_patient(labels, probs, patients: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Labels ``(N,)`` int64 and probabilities ``(N,)`` float64 on the CPU, and the indices of each patient's
    images (patients in sorted order); ValueError unless there is one entry per image."""
    y = torch.as_tensor(labels).long().cpu()
    p = torch.as_tensor(probs).double().cpu()
    if y.dim() != 1 or p.shape != y.shape or len(patients) != len(y) or len(y) == 0:
        raise ValueError(f"labels, probs and patients need one entry per image (and at least one), got "
                         f"{tuple(y.shape)}, {tuple(p.shape)} and {len(patients)}.")  # fmt: skip
    index = {name: k for k, name in enumerate(sorted(set(patients)))}
    owner = torch.tensor([index[name] for name in patients])
    return y, p, [(owner == k).nonzero().flatten() for k in range(len(index))]


def _percentiles(values: list[float], level: float, n_patients: int, n_boot: int) -> Interval:
    if not values:
        return Interval(None, None, level, n_patients, n_boot, 0)
    t = torch.tensor(values, dtype=torch.float64)
    low, high = torch.quantile(t, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return Interval(low, high, level, n_patients, n_boot, len(values))


def patient_subsets(
    labels: torch.Tensor | Sequence[int],
    probs: torch.Tensor | Sequence[float],
    patients: Sequence[str],
    n: int,
    *,
    draws: int = 2000,
    threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Accuracy and AUC ``{"accuracy": (draws,), "auc": (<= draws,)}`` float64 on random sets of ``n`` patients.

    Each draw takes ``n`` distinct patients at random and pools their cells, as a hidden test set of ``n`` new
    patients would; draws with one class only give no AUC. Its quantiles say how a model's grade on such a set
    varies, e.g. ``torch.quantile(result["accuracy"], 0.1)`` is reached on 90 % of hidden sets. Seeded.

    Args:
        labels: 0/1 ``(N,)``. probs: probability of class 1 ``(N,)``. patients: the patient of each image.
    """
    from sklearn.metrics import roc_auc_score

    y, p, members = _by_patient(labels, probs, patients)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(members):
        raise ValueError(f"n must be an int from 1 to the number of patients ({len(members)}), got {n!r}.")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}.")
    correct = ((p >= threshold).long() == y).double()
    generator = torch.Generator().manual_seed(seed)
    accs, aucs = [], []
    for _ in range(draws):
        drawn = torch.randperm(len(members), generator=generator)[:n]
        idx = torch.cat([members[k] for k in drawn.tolist()])
        accs.append(float(correct[idx].mean()))
        yb = y[idx]
        if 0 < int(yb.sum()) < len(yb):
            aucs.append(float(roc_auc_score(yb.numpy(), p[idx].numpy())))
    return {"accuracy": torch.tensor(accs, dtype=torch.float64), "auc": torch.tensor(aucs, dtype=torch.float64)}


def judge_fold(
    labels: torch.Tensor, probs: torch.Tensor, patients: Sequence[str], *, n_boot: int = 1000, seed: int = 0
) -> dict:
    """One CV fold's ``{"accuracy", "auc", "accuracy_ci", "auc_ci"}`` (95 % patient-level bootstrap intervals, as
    lists; the AUC and its interval are None when the fold has one class), as ``cv malaria`` records it.

    Args:
        labels: 0/1 ``(N,)``. probs: probability of class 1 ``(N,)``. patients: the patient of each image.
    """
    from sklearn.metrics import roc_auc_score

    ci = patient_bootstrap(labels, probs, patients, n_boot=n_boot, seed=seed)  # also checks one entry per image
    y, p = torch.as_tensor(labels).long().cpu(), torch.as_tensor(probs).double().cpu()
    accuracy = float(((p >= 0.5).long() == y).double().mean())
    auc = float(roc_auc_score(y.numpy(), p.numpy())) if 0 < int(y.sum()) < len(y) else None
    return {"accuracy": accuracy, "auc": auc, "accuracy_ci": [ci["accuracy"].low, ci["accuracy"].high],
            "auc_ci": [ci["auc"].low, ci["auc"].high]}  # fmt: skip


def fold_spread(folds: Sequence[dict]) -> dict:
    """``{"accuracy": ..., "auc": ...}``, each the mean, sample standard deviation, min and max over the folds'
    values (:func:`judge_fold`'s records; None where no fold has the value)."""
    out = {}
    for name in ("accuracy", "auc"):
        values = [f[name] for f in folds if f[name] is not None]
        if not values:
            out[name] = {"mean": None, "std": None, "min": None, "max": None}
            continue
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        out[name] = {"mean": mean, "std": var**0.5, "min": min(values), "max": max(values)}
    return out


def save_predictions(path: str | os.PathLike, columns: dict[str, torch.Tensor], patients: Sequence[str]) -> None:
    """Write per-cell columns (each ``(N,)``: e.g. label, prob, fold) and each cell's patient to an ``.npz``."""
    import numpy as np

    arrays = {name: t.cpu().numpy() for name, t in columns.items()}
    if any(a.shape != (len(patients),) for a in arrays.values()):
        raise ValueError(f"every column needs one entry per cell ({len(patients)}), got "
                         f"{ {name: a.shape for name, a in arrays.items()} }.")  # fmt: skip
    with open(path, "wb") as f:  # np.savez_compressed would append .npz to a name without it
        np.savez_compressed(f, patient=np.array(list(patients), dtype=str), **arrays)


def load_predictions(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The columns and patients :func:`save_predictions` wrote (no pickled objects are read)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        patients = [str(p) for p in data["patient"]]
        columns = {name: torch.from_numpy(data[name].copy()) for name in data.files if name != "patient"}
    return columns, patients
