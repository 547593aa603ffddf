"""The training loop every lecture from 04 on uses: ``fit`` for epochs of mini-batch SGD, ``evaluate`` for a
loss and an accuracy, ``predict`` for all logits.

``history = fit(model, train_loader, val_loader, epochs=10, optimizer=opt)`` moves the model to the device
(CUDA when present), trains, validates after each epoch, steps the scheduler once per epoch and returns a
:class:`~cnncourse.train.History` that ``cnncourse.viz.plot_history`` draws. ``early_stopping=3`` stops when
the validation loss has not improved for 3 epochs and puts back the best weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from cnncourse.runtime import default_device
from cnncourse.train.history import History

__all__ = ["Metrics", "EarlyStopping", "fit", "evaluate", "predict"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Metrics(NamedTuple):
    """Mean loss and accuracy over a data set (accuracy is nan when the targets are not class labels)."""

    loss: float
    acc: float


class EarlyStopping:
    """Stop when the validation loss has not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the model gets back the weights of its best epoch when training ends.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, restore_best: bool = True) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int (epochs without improvement), got {patience!r}.")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}.")
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def step(self, epoch: int, val_loss: float, model: nn.Module) -> bool:
        """Record epoch ``epoch``'s validation loss; True when training should stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights back into ``model`` (if any were kept)."""
        if self.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)


def _value(t: torch.Tensor) -> float:
    """A scalar tensor as a float; meta tensors carry no values, so they give nan."""
    return math.nan if t.is_meta else float(t)


def _batches(data: Iterable, what: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for i, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
            got = type(batch).__name__ if not isinstance(batch, (tuple, list)) else f"a {len(batch)}-tuple"
            raise ValueError(f"{what}: batch {i} is {got}; expected (x, y) pairs, e.g. from a DataLoader over a "
                             f"TensorDataset(x, y).")
        yield batch[0], batch[1]


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Number of correct predictions, or None when ``y`` are not class labels for ``logits: (N, K)``."""
    if logits.dim() != 2 or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32, torch.uint8):
        return None
    return (logits.argmax(1) == y).sum()


def _run_epoch(model, data, loss_fn, device, optimizer=None, bar=None, what="data") -> Metrics:
    """One pass over ``data``: trains when ``optimizer`` is given, else only measures (no grad)."""
    loss_sum = torch.zeros((), device=device)
    correct_sum = torch.zeros((), device=device, dtype=torch.int64)
    seen, labelled = 0, True
    with torch.set_grad_enabled(optimizer is not None):
        for x, y in _batches(data, what):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            n = x.shape[0]
            loss_sum += loss.detach() * n  # summed on the device: no sync per batch
            correct = _correct(logits.detach(), y)
            labelled = labelled and correct is not None
            if correct is not None:
                correct_sum += correct
            seen += n
            if bar is not None:
                bar.update(1)
    if seen == 0:
        raise ValueError(f"{what} yielded no batches; check the DataLoader (an empty dataset, or drop_last with "
                         f"fewer samples than batch_size).")
    acc = _value(correct_sum) / seen if labelled else math.nan
    return Metrics(_value(loss_sum) / seen, acc)


def fit(
    model: nn.Module,
    train: Iterable,
    val: Iterable | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: object | None = None,
    loss_fn: LossFn | None = None,
    device: str | torch.device | None = None,
    early_stopping: int | EarlyStopping | None = None,
    progress: bool = True,
    seed: int | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its per-epoch :class:`History`.

    Args:
        model: moved to ``device``; left there, in eval mode, when training ends.
        train: a DataLoader (or any iterable) of ``(x, y)`` batches, e.g. ``x: (N, C, H, W)``, ``y: (N,)``.
        val: the same for validation, measured after each epoch (no grad, eval mode); optional.
        epochs: the most epochs to run (early stopping may end sooner).
        optimizer: built over ``model.parameters()``.
        scheduler: a learning-rate scheduler, stepped once per epoch (``ReduceLROnPlateau`` gets the
            validation loss, or the training loss without ``val``).
        loss_fn: ``loss_fn(logits, y)``; default cross-entropy.
        device: default CUDA when present, else CPU (``"meta"`` runs the loop on shapes only; losses are nan).
        early_stopping: patience in epochs, or an :class:`EarlyStopping`; needs ``val``.
        progress: show a tqdm bar (a widget in notebooks) with the epoch's losses and accuracies.
        seed: if given, ``torch.manual_seed(seed)`` first (dropout masks, etc.).

    Returns:
        The :class:`History`: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr`` (the rate each epoch
        trained with), ``wall_time`` (cumulative seconds), ``best_epoch`` (lowest val loss, 0-based) and
        ``stopped_early``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, e.g. torch.optim.SGD(model.parameters(), "
                         f"lr=0.1); got {type(optimizer).__name__}.")
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(early_stopping)
    elif early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise ValueError(f"early_stopping must be a patience (int) or an EarlyStopping, got {early_stopping!r}.")
    if early_stopping is not None and val is None:
        raise ValueError("early_stopping watches the validation loss: pass val data too.")
    if seed is not None:
        torch.manual_seed(seed)
    device = torch.device(device) if device is not None else default_device()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.to(device)
    history = History()
    total = epochs * len(train) if hasattr(train, "__len__") else None
    bar = tqdm(total=total, desc="training", unit="batch", disable=not progress, leave=True)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            tr = _run_epoch(model, train, loss_fn, device, optimizer, bar, "train")
            history.train_loss.append(tr.loss)
            history.train_acc.append(tr.acc)
            history.lr.append(lr)
            shown = {"loss": f"{tr.loss:.3f}", "acc": f"{tr.acc:.3f}"}
            if val is not None:
                model.eval()
                va = _run_epoch(model, val, loss_fn, device, what="val")
                history.val_loss.append(va.loss)
                history.val_acc.append(va.acc)
                shown |= {"val_loss": f"{va.loss:.3f}", "val_acc": f"{va.acc:.3f}"}
            history.wall_time.append(time.perf_counter() - start)
            bar.set_postfix(shown)
            if scheduler is not None:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(history.val_loss[-1] if val is not None else tr.loss)
                else:
                    scheduler.step()
            if early_stopping is not None and early_stopping.step(epoch, history.val_loss[-1], model):
                history.stopped_early = True
                break
    finally:
        bar.close()
    if early_stopping is not None:
        early_stopping.restore(model)
        history.best_epoch = early_stopping.best_epoch
    elif history.val_loss and not any(math.isnan(v) for v in history.val_loss):
        history.best_epoch = min(range(len(history.val_loss)), key=history.val_loss.__getitem__)
    model.eval()
    return history


def evaluate(
    model: nn.Module, data: Iterable, *, loss_fn: LossFn | None = None, device: str | torch.device | None = None
) -> Metrics:
    """Mean loss and accuracy of ``model`` over ``data`` (``(x, y)`` batches), in eval mode, without grad.

    ``device`` defaults to where the model's parameters are; the model's train/eval mode is restored.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.to(device).eval()
    try:
        return _run_epoch(model, data, loss_fn or nn.CrossEntropyLoss(), device, what="data")
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(
    model: nn.Module, data: Iterable, *, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and labels over ``data`` (``(x, y)`` batches), on the CPU: ``logits (N, K)``, ``labels (N,)``.

    Runs in eval mode on ``device`` (default: where the model is); the model's mode is restored.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.to(device).eval()
    logits, labels = [], []
    try:
        for x, y in _batches(data, "data"):
            logits.append(model(x.to(device)).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("data yielded no batches: nothing to predict.")
    return torch.cat(logits), torch.cat(labels)
