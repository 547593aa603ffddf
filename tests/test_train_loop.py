"""fit / evaluate / predict / EarlyStopping on small separable problems (CPU; meta device; CUDA when present)."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnncourse.margins import at_least, at_most
from cnncourse.train import EarlyStopping, History, Metrics, evaluate, fit, predict


def _blobs(n=256, seed=0):
    """Two well separated Gaussian blobs in 2-D: linearly separable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5 + (y[:, None] * 2 - 1) * 2.0
    return TensorDataset(x, y)


def _loaders(batch_size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(_blobs(seed=2 * seed), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(_blobs(128, seed=2 * seed + 1), batch_size=64))


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))


def check_fit_on_blobs(seed: int = 0) -> None:
    """Five epochs of SGD on the blobs: what training must achieve whatever the seed, threads or CPU kernels
    (``benchmarks/grading_margins.py`` measures these quantities over 20 seeds x 1, 2 threads x 3 kernel sets)."""
    train, val = _loaders(seed=seed)
    model = _model(seed)
    before = evaluate(model, val)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    h = fit(model, train, val, epochs=5, optimizer=opt, scheduler=sched, device="cpu", progress=False)
    at_most(h.train_loss[-1] / h.train_loss[0], 0.5, "blobs: last / first training loss")
    at_most(h.val_loss[-1] / before.loss, 0.5, "blobs: validation loss after / before training")
    at_least(h.val_acc[-1], 0.97, "blobs: validation accuracy")


def test_fit_lowers_the_loss_and_fills_the_history():
    check_fit_on_blobs(0)
    train, val = _loaders()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    h = fit(model, train, val, epochs=5, optimizer=opt, scheduler=sched, device="cpu", progress=False)
    assert isinstance(h, History) and h.epochs == 5
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "wall_time"):
        assert len(getattr(h, name)) == 5, name
    assert h.lr == [0.1, 0.1, 0.05, 0.05, 0.025]  # the rate each epoch trained with, stepped per epoch
    assert h.wall_time == sorted(h.wall_time) and h.wall_time[0] > 0
    assert h.best_epoch == min(range(5), key=h.val_loss.__getitem__) and not h.stopped_early
    assert not model.training
    m = evaluate(model, val)
    assert isinstance(m, Metrics) and m.loss == pytest.approx(h.val_loss[-1], rel=1e-5) and m.acc == h.val_acc[-1]
    logits, labels = predict(model, val)
    assert logits.shape == (128, 2) and torch.equal(labels, val.dataset.tensors[1])
    assert float((logits.argmax(1) == labels).float().mean()) == pytest.approx(m.acc)


def test_training_without_validation_and_with_plain_lists():
    data = [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    h = fit(_model(), data, epochs=2, optimizer=torch.optim.SGD(_model().parameters(), lr=0.0), device="cpu",
            progress=False)
    assert h.epochs == 2 and h.val_loss == [] and h.best_epoch is None


class _Scripted(nn.Module):
    """Its validation loss follows ``script`` epoch by epoch; its weight holds the epoch that trained it."""

    def __init__(self, script):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.script, self.epoch = script, -1

    def forward(self, x):
        if self.training:  # one training batch per epoch
            self.epoch += 1
            with torch.no_grad():
                self.w.fill_(self.epoch)
        level = self.script[self.epoch]  # cross-entropy against label 0 grows with the level
        return torch.tensor([-level, level]).expand(x.shape[0], 2) + 0 * self.w


def test_early_stopping_stops_and_restores_the_best_weights():
    data = [(torch.zeros(4, 2), torch.tensor([0, 0, 0, 0]))]
    model = _Scripted([3.0, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    h = fit(model, data, data, epochs=8, optimizer=opt, early_stopping=2, device="cpu", progress=False)
    assert h.stopped_early and h.epochs == 4 and h.best_epoch == 1
    assert model.w.item() == 1.0  # the weights of epoch 1, not of the last epoch (3)


def test_early_stopping_min_delta_and_bad_arguments():
    stop = EarlyStopping(patience=2, min_delta=0.1, restore_best=False)
    model = nn.Linear(1, 1)
    assert [stop.step(e, v, model) for e, v in enumerate([1.0, 0.95, 0.92])] == [False, False, True]
    assert stop.best_epoch == 0 and stop.best_state is None
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)
    with pytest.raises(ValueError, match="val"):
        fit(_model(), [], epochs=1, optimizer=torch.optim.SGD(_model().parameters(), lr=0.1), early_stopping=1)
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(), [], epochs=0, optimizer=torch.optim.SGD(_model().parameters(), lr=0.1))
    with pytest.raises(ValueError, match="no batches"):
        fit(_model(), [], epochs=1, optimizer=torch.optim.SGD(_model().parameters(), lr=0.1), progress=False)
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        fit(_model(), [torch.zeros(2, 2)], epochs=1, optimizer=torch.optim.SGD(_model().parameters(), lr=0.1),
            progress=False)


def test_fit_runs_on_the_meta_device():
    """Meta tensors have shapes but no values: the loop, the device moves and the optimizer still run."""
    train, val = _loaders()
    model = _model()
    h = fit(model, train, val, epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), device="meta",
            progress=False)
    assert next(model.parameters()).is_meta
    assert h.epochs == 2 and all(math.isnan(v) for v in h.train_loss + h.val_loss)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fit_uses_cuda_by_default_when_present():
    train, val = _loaders()
    model = _model()
    h = fit(model, train, val, epochs=3, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    assert next(model.parameters()).is_cuda and h.val_acc[-1] > 0.97
    logits, _ = predict(model, val)
    assert logits.device.type == "cpu"
