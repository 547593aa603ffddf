"""Benchmark: ``fit_tensors`` against a plain DataLoader + torchvision-transforms loop, training CellNet.

    CNNCOURSE_DATA_PATH=../shared/data/malaria python benchmarks/malaria_train.py [--epochs 3] [--threads 1]

Both train the same model (same initial weights) on the same training patients for the same number of
epochs, with the same optimiser (AdamW), one-cycle schedule, batch size and augmentation family, and
measure validation accuracy after every epoch (accuracy against wall time):

* ``fit_tensors``: the split held as one uint8 tensor; each batch gathered, augmented (flips, 90 degree
  rotations, colour jitter) and normalised as a whole; channels_last; bf16 autocast where the device
  computes it natively (``default_amp``: CUDA, or a CPU with AMX) -- the defaults.
* ``dataloader``: ``MalariaCells`` with a ``torchvision.transforms.v2`` pipeline per image
  (RandomHorizontalFlip, RandomVerticalFlip, a random 0/90 degree RandomRotation, ColorJitter(brightness,
  saturation), Normalize), a ``DataLoader`` (shuffle, ``--workers`` processes), float32, NCHW: what a
  first PyTorch training loop looks like.

Images per second count training images over the whole run including the per-epoch validation (both do
one). With CUDA present it also trains with ``fit_tensors`` on the GPU until validation accuracy reaches
``--target`` (0.97) and records the time (goal: 20 s on one H100); without CUDA that part is recorded
as not measured. Writes ``benchmarks/results/malaria_train.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "malaria_train.json"


def plain_loop(model, train_ds, val_ds, *, epochs: int, batch_size: int, lr: float, weight_decay: float,
               workers: int, seed: int) -> dict:  # fmt: skip
    """The DataLoader + torchvision transforms baseline; returns its curve."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    val_loader = DataLoader(val_ds, batch_size=512, num_workers=workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader),
                                                    pct_start=0.15)  # fmt: skip
    curve = {"wall_time": [], "val_acc": [], "train_loss": []}
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total, n = 0.0, 0
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(y)
            n += len(y)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
        curve["train_loss"].append(round(total / n, 4))
        curve["val_acc"].append(round(correct / len(val_ds), 4))
        curve["wall_time"].append(round(time.perf_counter() - start, 2))
    return curve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each CPU run (default 3)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a fair, quiet figure)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--target", type=float, default=0.97, help="CUDA part: validation accuracy to reach")
    parser.add_argument("--cuda-epochs", type=int, default=30, help="CUDA part: at most this many epochs")
    parser.add_argument("--compile", action="store_true", help="CUDA part: torch.compile the model")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch
    import torchvision
    from torchvision.transforms import v2

    from cnncourse.data import malaria
    from cnncourse.models.cellnet import TRAIN_SETTINGS, cellnet
    from cnncourse.train.tensors import channel_stats, default_amp, fit_tensors

    torch.set_num_threads(args.threads)
    try:
        source = malaria.find_source()
    except FileNotFoundError as err:
        print(f"no real data to benchmark: {err}", file=sys.stderr)
        return 1
    s = TRAIN_SETTINGS
    kwargs = {"widths": s["widths"], "dropout": s["dropout"]}
    common = {"epochs": args.epochs, "batch_size": s["batch_size"], "lr": s["lr"], "weight_decay": s["weight_decay"]}
    train = malaria.MalariaCells("train", source=source, size=args.size, progress=False)
    val = malaria.MalariaCells("val", source=source, size=args.size, progress=False)
    mean, std = channel_stats(train.images)
    torch.manual_seed(0)
    initial = cellnet(**kwargs)
    n_images = args.epochs * (len(train) // s["batch_size"]) * s["batch_size"]

    model = copy.deepcopy(initial)
    history = fit_tensors(model, (train.images, train.labels), (val.images, val.labels), mean=mean, std=std,
                          progress=False, **common)  # fmt: skip
    fast = {
        "images_per_s": round(n_images / history.wall_time[-1], 1),
        "wall_time": [round(t, 2) for t in history.wall_time],
        "val_acc": [round(a, 4) for a in history.val_acc],
        "train_loss": [round(v, 4) for v in history.train_loss],
        "bf16_autocast": default_amp(torch.device("cpu")),
        "channels_last": True,
    }
    print(f"fit_tensors: {fast['images_per_s']} img/s, val acc {fast['val_acc']}", file=sys.stderr)

    augment = v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomChoice([v2.RandomRotation((0, 0)), v2.RandomRotation((90, 90))]),
        v2.ColorJitter(brightness=0.1, saturation=0.1),
        v2.Normalize(mean, std),
    ])  # fmt: skip
    train_t = malaria.MalariaCells("train", source=source, size=args.size, progress=False, transform=augment)
    val_t = malaria.MalariaCells("val", source=source, size=args.size, progress=False,
                                 transform=v2.Normalize(mean, std))  # fmt: skip
    curve = plain_loop(copy.deepcopy(initial), train_t, val_t, workers=args.workers, seed=0, **common)
    plain = {"images_per_s": round(n_images / curve["wall_time"][-1], 1), **curve, "num_workers": args.workers,
             "dtype": "float32", "memory_format": "contiguous (NCHW)"}  # fmt: skip
    print(f"dataloader: {plain['images_per_s']} img/s, val acc {plain['val_acc']}", file=sys.stderr)

    if torch.cuda.is_available():
        gpu = cuda_time_to_target(initial, train, val, mean, std, args, common)
    else:
        gpu = {"measured": False, "reason": "no CUDA device on the machine that ran this benchmark"}

    result = {
        "source": source.name,
        "size": args.size,
        "train_images": len(train),
        "val_images": len(val),
        "model": f"cellnet(**{kwargs})",
        "settings": {**common, "threads": args.threads},
        "cpu": {
            "fit_tensors": fast,
            "dataloader_torchvision": plain,
            "speedup": round(fast["images_per_s"] / plain["images_per_s"], 2),
        },
        "cuda": gpu,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "torchvision": torchvision.__version__,
            "platform": platform.platform(),
            "cpu_bf16_amx": default_amp(torch.device("cpu")),
        },
        "note": "one run each, same process, machine shared with other jobs, so rates are noisy",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def cuda_time_to_target(initial, train, val, mean, std, args, common) -> dict:
    """fit_tensors on the GPU, one epoch at a time, until validation accuracy reaches ``args.target``."""
    import torch

    from cnncourse.train.tensors import fit_tensors

    x, y = train.images.cuda(), train.labels.cuda()
    xv, yv = val.images.cuda(), val.labels.cuda()
    torch.cuda.synchronize()
    model = copy.deepcopy(initial)
    settings = {**common, "epochs": args.cuda_epochs}
    start = time.perf_counter()
    history = fit_tensors(model, (x, y), (xv, yv), mean=mean, std=std, compile=args.compile, progress=False,
                          **settings)  # fmt: skip
    total = time.perf_counter() - start
    reached = next((t for t, a in zip(history.wall_time, history.val_acc, strict=True) if a >= args.target), None)
    return {
        "measured": True,
        "device": torch.cuda.get_device_name(),
        "target_val_acc": args.target,
        "seconds_to_target": round(reached, 2) if reached is not None else None,
        "epochs_run": history.epochs,
        "seconds_total": round(total, 2),
        "best_val_acc": round(max(history.val_acc), 4),
        "wall_time": [round(t, 2) for t in history.wall_time],
        "val_acc": [round(a, 4) for a in history.val_acc],
        "images_per_s": round(history.epochs * (len(x) // common["batch_size"]) * common["batch_size"] / total, 1),
        "compile": args.compile,
        "note": "the schedule spans all epochs; the time to target includes data already on the GPU, not loading",
    }


if __name__ == "__main__":
    sys.exit(main())
