"""Judging a two-class cell classifier on a folder or zip of images, per image and per patient.

``read_image_set(source, size)`` reads every PNG of a folder or zip the way the training data was
read (letterboxed to ``size``): labelled when the PNGs sit in class folders (``Parasitized/``,
``Uninfected/``; a hidden test set may hold one class only), unlabelled when none do. A file name that
does not follow the patient pattern (``<patient>_IMG_...``) belongs to the patient ``"unknown"``.
``binary_report(labels, probs, patients)`` gives accuracy, ROC AUC, sensitivity, specificity and the
patients with the most errors; metrics that a one-class set cannot define are ``None``.
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

__all__ = ["UNKNOWN_PATIENT", "ImageSet", "PatientRow", "Report", "patient_or_unknown", "read_image_set",
           "binary_report"]  # fmt: skip

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
