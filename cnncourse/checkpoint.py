"""Self-describing model checkpoints, read without running any code from the file.

A checkpoint is one ``torch.save``-d dict of plain values: the architecture's registry name and
keyword arguments, the preprocessing (image size, per-channel mean and std in [0, 1] units), the class
names, the weights (``state_dict``, on CPU) and free-form ``info`` (how it was trained). Because it
holds only tensors, numbers, strings, lists and dicts, it is always read with
``torch.load(weights_only=True)``: a file that would import or call anything while unpickling (a
student's submission, say) is refused with :class:`CheckpointError`, never executed.

    save_checkpoint("model.pt", model, arch="cellnet", kwargs={}, size=64, mean=m, std=s)
    ckpt = load_checkpoint("model.pt")          # ckpt.model is built, loaded and in eval mode
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnncourse.models import MODELS

__all__ = ["FORMAT", "CheckpointError", "Preprocessing", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT = "cnncourse-checkpoint-v1"


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message names the file and what to do."""


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for the model: letterboxed to ``size`` px, then ``(x / 255 - mean) / std``."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` (built, weights loaded, eval mode) and what describes it."""

    model: nn.Module
    arch: str
    kwargs: dict[str, Any]
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    kwargs: Mapping[str, Any],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    classes: Sequence[str] = ("Uninfected", "Parasitized"),
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and everything needed to rebuild and feed it; return the path.

    ``arch`` must be a name in ``cnncourse.models.MODELS`` and ``arch(**kwargs)`` must rebuild ``model``; this is
    checked by loading the file back before returning. ``kwargs`` and ``info`` may hold plain values
    only (None, bool, int, float, str, lists, tuples, dicts); anything else raises ``TypeError`` before
    anything is written.
    """
    _builder(arch, path)
    payload = {
        "format": FORMAT,
        "arch": arch,
        "kwargs": dict(kwargs),
        "preprocessing": {"size": int(size), "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "classes": list(classes),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "info": dict(info or {}),
    }
    _check_plain({k: v for k, v in payload.items() if k != "state_dict"}, "checkpoint")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    load_checkpoint(path)  # fails now, not at grading time, if it cannot be read back
    return path


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)``, rebuild its model and load the weights.

    Raises:
        CheckpointError: missing file, not a PyTorch file, a pickle that would run code, a bare
            ``state_dict`` or other object instead of a checkpoint, an unknown architecture, or weights
            that do not fit the architecture. The message says which and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist (or is not a file).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says more
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            found = re.search(r"GLOBAL ([\w.]+)", str(err))
            what = f"it asks for {found.group(1)}" if found else "it holds objects other than tensors"
            raise CheckpointError(
                f"Refusing to load {path}: unpickling it would import or call code ({what}). Checkpoints are "
                "read with torch.load(weights_only=True) and may hold only tensors, numbers, strings, lists and "
                "dicts; write them with cnncourse.checkpoint.save_checkpoint or `python -m cnncourse train`."
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_first_line(err)}).") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)}); "
            "it may be truncated or another kind of file."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            what = "only weights (a state_dict) without the architecture and preprocessing"
        else:
            what = f"a {type(payload).__name__}, not a cnncourse checkpoint"
        raise CheckpointError(
            f"{path} holds {what}. Write checkpoints with cnncourse.checkpoint.save_checkpoint(path, model, "
            "arch=..., kwargs=..., size=..., mean=..., std=...) or `python -m cnncourse train malaria --out PATH`."
        )
    try:
        arch, kwargs, pre = payload["arch"], payload["kwargs"], payload["preprocessing"]
        preprocessing = Preprocessing(int(pre["size"]), tuple(pre["mean"]), tuple(pre["std"]))
        classes, state = tuple(payload["classes"]), payload["state_dict"]
        if not isinstance(kwargs, dict) or not isinstance(state, dict):
            raise TypeError("kwargs and state_dict must be dicts")
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is a damaged cnncourse checkpoint ({type(err).__name__}: {err}).") from None
    builder = _builder(arch, path)
    try:
        model = builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build architecture {arch!r} with {kwargs} ({err}).") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: its weights do not fit architecture {arch!r} with {kwargs}: {_first_line(err, 400)}"
        ) from None
    model.to(device).eval()
    return Checkpoint(model, arch, kwargs, preprocessing, classes, dict(payload.get("info") or {}))


def _check_plain(value: object, where: str) -> None:
    """Raise TypeError unless ``value`` is built of None, bool, int, float, str, list, tuple and str-keyed dict."""
    if value is None or type(value) in (bool, int, float, str):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{where} has a non-str key {key!r}; checkpoint dicts need str keys.")
            _check_plain(item, f"{where}[{key!r}]")
    else:
        raise TypeError(
            f"{where} is a {type(value).__name__} ({value!r:.60}); a checkpoint may hold only None, bool, int, "
            "float, str, lists, tuples and dicts besides the weights (convert it, e.g. with str())."
        )


def _builder(arch: object, path: str | os.PathLike) -> Callable[..., nn.Module]:
    if not isinstance(arch, str) or arch not in MODELS:
        raise CheckpointError(f"{path}: unknown architecture {arch!r}; known (cnncourse.models.MODELS): "
                              f"{', '.join(sorted(MODELS))}.")  # fmt: skip
    return MODELS[arch]


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
