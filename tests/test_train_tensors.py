"""cnncourse.train.fit_tensors and its helpers (augmentation, statistics, prediction) on synthetic cells."""

from __future__ import annotations

import pytest
import torch

from cnncourse.data.synthetic import synthetic_cells
from cnncourse.margins import at_least, at_most
from cnncourse.models.cellnet import cellnet
from cnncourse.train import History, fit_tensors
from cnncourse.train.tensors import Augment, channel_stats, normalize, predict_tensors


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cells(seed=0):
    train = synthetic_cells(384, size=32, seed=2 * seed + 1)
    val = synthetic_cells(128, size=32, seed=2 * seed + 2)
    return (train.images, train.labels), (val.images, val.labels)


@pytest.fixture(scope="module")
def cells():
    return _cells(0)


def check_fit_tensors_on_cells(seed: int = 0, cells=None) -> History:
    """Eight epochs of a small CellNet on the synthetic cells: what training must achieve whatever the seed (of the
    weights and the batches), threads or CPU kernels (``benchmarks/grading_margins.py`` measures these quantities
    over 20 seeds x 1, 2 threads x 3 kernel sets; four epochs left some seeds at a loss ratio of 0.90)."""
    train, val = cells or _cells(0)
    torch.manual_seed(seed)
    model = cellnet(widths=(8, 16, 32))
    mean, std = channel_stats(train[0])
    history = fit_tensors(model, train, val, epochs=8, batch_size=32, lr=3e-3, mean=mean, std=std, progress=False)
    # over 20 seeds x 3 kernel sets x 1, 2 threads the ratio reached 0.625 (median 0.19); untrained it is about 1
    at_most(history.train_loss[-1] / history.train_loss[0], 0.75, "synthetic cells: last / first training loss")
    at_least(history.val_acc[-1], 0.75, "synthetic cells: validation accuracy")
    return history


def _dihedral(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/rotations of one (C, S, S) image."""
    out = []
    for k in range(4):
        r = torch.rot90(image, k, (-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_loss_falls_and_history_is_complete(cells):
    history = check_fit_tensors_on_cells(0, cells)
    assert isinstance(history, History) and history.epochs == 8
    assert len(history.val_acc) == len(history.val_loss) == len(history.lr) == len(history.wall_time) == 8
    assert history.wall_time == sorted(history.wall_time) and history.lr[-1] < 1e-4  # one cycle ends near zero
    assert history.best_epoch == max(range(8), key=history.val_acc.__getitem__)


def test_seeded_runs_repeat_and_cosine_schedule(cells):
    (x, y), _ = cells
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = cellnet(widths=(4, 8))
        runs.append(fit_tensors(model, (x[:128], y[:128]), epochs=2, batch_size=32, schedule="cosine",
                                seed=5, progress=False))  # fmt: skip
    assert runs[0].train_loss == runs[1].train_loss and runs[0].val_acc == []
    assert runs[0].lr[-1] == pytest.approx(0.0, abs=1e-9) and runs[0].best_epoch is None


def test_augment_only_flips_and_rotates_each_image_itself():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = Augment(brightness=0, saturation=0, tint=0)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for i in range(len(x)):  # output i is one of the 8 symmetries of input i: labels stay with their images
        matches = [k for k, t in enumerate(_dihedral(x[i])) if torch.equal(out[i], t)]
        assert len(matches) == 1, i
        seen.add(matches[0])
    assert len(seen) == 8  # every symmetry is drawn


def test_augment_colour_is_mild_and_keeps_black():
    torch.manual_seed(0)
    x = torch.rand(256, 3, 8, 8) * 0.8
    x[:, :, :2] = 0  # a black band, as the background around a cell
    aug = Augment(dihedral=False, brightness=0.1, saturation=0.1, tint=0.03)
    out = aug(x, torch.Generator().manual_seed(1))
    assert (out[:, :, :2] == 0).all() and 0 <= out.min() and out.max() <= 1
    ratio = out[:, :, 2:].mean((1, 2, 3)) / x[:, :, 2:].mean((1, 2, 3))
    assert 0.85 < ratio.min() < 0.95 and 1.05 < ratio.max() < 1.15  # the jitter is really drawn, and mild
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(1)))  # seeded


def test_augment_rejects_non_square_images():
    with pytest.raises(ValueError, match="square"):
        Augment()(torch.rand(2, 3, 8, 6))
    assert Augment(dihedral=False)(torch.rand(2, 3, 8, 6)).shape == (2, 3, 8, 6)


def test_channel_stats_and_normalize():
    x = torch.randint(0, 256, (10, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(x, batch_size=3)
    f = x.double() / 255
    assert torch.allclose(torch.tensor(mean), f.mean((0, 2, 3)).float(), atol=1e-6)
    assert torch.allclose(torch.tensor(std), f.transpose(0, 1).flatten(1).std(1, unbiased=False).float(), atol=1e-6)
    z = normalize(x, torch.tensor(mean), torch.tensor(std))
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_meta_device_shapes():
    """Augmentation, normalisation and prediction keep shapes and stay on the device (meta: no data at all)."""
    x = torch.empty(16, 3, 32, 32, dtype=torch.uint8, device="meta")
    out = Augment()(x.float())
    assert out.device.type == "meta" and out.shape == (16, 3, 32, 32)
    model = cellnet(widths=(4, 8)).to("meta")
    logits = predict_tensors(model, x, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), batch_size=5, amp=False)
    assert logits.device.type == "meta" and logits.shape == (16, 2) and logits.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training(cells):
    (x, y), (xv, yv) = cells
    torch.manual_seed(0)
    model = cellnet(widths=(8, 16, 32))
    history = fit_tensors(model, (x.cuda(), y.cuda()), (xv.cuda(), yv.cuda()), epochs=3, batch_size=32,
                          progress=False)  # fmt: skip
    assert next(model.parameters()).is_cuda and history.train_loss[-1] < history.train_loss[0]


def test_bad_inputs(cells):
    (x, y), _ = cells
    model = cellnet(widths=(4,))
    with pytest.raises(ValueError, match="uint8"):
        fit_tensors(model, (x.float(), y), progress=False)
    with pytest.raises(ValueError, match="384 images but 10 labels"):
        fit_tensors(model, (x, y[:10]), progress=False)
    with pytest.raises(ValueError, match="schedule"):
        fit_tensors(model, (x, y), schedule="step", progress=False)
    with pytest.raises(ValueError, match="one value per channel"):
        fit_tensors(model, (x, y), mean=(0.5,), std=(0.2,), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit_tensors(model, (x, y), epochs=0, progress=False)


def test_predict_with_tta_averages_the_eight_symmetries():
    torch.manual_seed(0)
    model = cellnet(widths=(4, 8)).eval()
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    stats = {"mean": (0.5, 0.4, 0.4), "std": (0.2, 0.2, 0.2)}
    plain = predict_tensors(model, x, **stats, amp=False, channels_last=False)
    views = [predict_tensors(model, t.contiguous(), **stats, amp=False, channels_last=False)
             for t in _dihedral_batch(x)]  # fmt: skip
    tta = predict_tensors(model, x, **stats, amp=False, channels_last=False, tta=True, batch_size=2)
    assert torch.allclose(plain, views[0]) and torch.allclose(tta, torch.stack(views).mean(0), atol=1e-5)
    rotated = predict_tensors(model, torch.rot90(x, 1, (-2, -1)).contiguous(), **stats, amp=False, tta=True)
    assert torch.allclose(rotated, tta, atol=1e-5)  # orientation no longer matters
    assert not torch.allclose(plain, tta, atol=1e-5)


def _dihedral_batch(x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(x, k, (-2, -1))
        out += [r, r.flip(-1)]
    return out


class _Normalize(torch.nn.Module):
    """A4's pattern: the model normalises its own [0, 1] input with buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class _Spy(torch.nn.Module):
    """Logits that are the mean of channels 0 and 1 of what the model is given: shows its input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :2].mean((2, 3)) + 0 * self.w


def test_no_normalisation_unless_asked():
    """Without mean/std the model gets images / 255; with them (x / 255 - mean) / std."""
    x = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    f = x.double() / 255
    plain = predict_tensors(_Spy(), x, amp=False, channels_last=False)
    assert torch.allclose(plain.double(), f[:, :2].mean((2, 3)), atol=1e-6)
    normed = predict_tensors(_Spy(), x, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), amp=False, channels_last=False)
    want = ((f[:, :2] - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1).double()) /
            torch.tensor([0.5, 0.25]).view(1, 2, 1, 1).double()).mean((2, 3))
    assert torch.allclose(normed.double(), want, atol=1e-5)


def test_double_normalisation_is_refused(cells):
    """A model holding the statistics as buffers normalises itself: passing them again is an error that says so."""
    (x, y), (xv, yv) = cells
    mean, std = channel_stats(x)
    model = torch.nn.Sequential(_Normalize(mean, std), cellnet(widths=(4,)))
    with pytest.raises(ValueError, match=r"normalise the images twice.*Leave mean and std out"):
        fit_tensors(model, (x, y), (xv, yv), epochs=1, mean=mean, std=std, progress=False)
    with pytest.raises(ValueError, match="buffer '0.mean'"):
        predict_tensors(model, xv, mean=mean, std=std)
    with pytest.raises(ValueError, match="both mean and std, or neither"):
        predict_tensors(model, xv, mean=mean)
    history = fit_tensors(model, (x[:64], y[:64]), (xv, yv), epochs=1, batch_size=32, progress=False)
    assert len(history.val_acc) == 1  # the plain call: images in [0, 1], normalised once, inside


def test_default_amp_follows_the_precision_benchmark(monkeypatch):
    """bf16 by default exactly where benchmarks/results/malaria_precision.json measured it faster than fp32: with
    AMX; not with AVX-512-BF16 alone, AVX-512 or AVX2 (where it is 1.0x to 8x slower)."""
    import json
    from pathlib import Path

    from cnncourse.train.tensors import default_amp

    record = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/malaria_precision.json").read_text())
    measured = {level: got for level, got in record["seconds_per_step"].items() if isinstance(got, dict)}
    assert record["machine"]["amx"] and {"native", "avx512_bf16", "avx2"} <= set(measured)  # an AMX CPU imitating
    for level, got in measured.items():
        amx = level == "native"
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert default_amp(torch.device("cpu")) == (got["bf16_speedup"] > 1.1), (level, got)
