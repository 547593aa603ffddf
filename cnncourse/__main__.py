"""Command line: ``python -m cnncourse <command> ...`` (also installed as ``cnncourse``).

Commands:
    data malaria      show which malaria source is used, counts per class and split, patients per split,
                      and build the split caches (``--download``, ``--source PATH``, ``--size``, ``--synthetic``,
                      ``--on-error skip``).
    train malaria     train the reference model (CellNet) on the training patients, validate on the
                      validation patients, write a self-describing checkpoint (``--out model.pt``).
    evaluate malaria  judge a checkpoint on every image of a labelled folder or zip (accuracy, ROC AUC,
                      sensitivity, specificity, worst patients, patient-level bootstrap 95 % intervals;
                      ``--json``), or write predictions for a folder of unlabelled PNGs.
    cv malaria        patient-grouped k-fold cross-validation of the reference recipe over all patients of
                      the source (``--folds 5``): each fold's accuracy, AUC and CPU time, and the mean and
                      spread (``--out cv.json``).

Each command is a sub-parser with a ``run(args)`` function. Bad input (a missing or corrupt source, a file
that is not a checkpoint) ends with a one-paragraph ``error: ...`` on stderr and exit status 2, never a
traceback; warnings are printed as ``warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


def _say(*parts: object, quiet: bool = False, err: bool = False) -> None:
    if not quiet:
        print(*parts, file=sys.stderr if err else sys.stdout, flush=True)


def _data_malaria(args: argparse.Namespace) -> int:
    from cnncourse.data import malaria

    if args.download:
        print(f"downloading {malaria.URL} ...")
        args.source = str(malaria.fetch(progress=not args.quiet))
    source = "synthetic" if args.synthetic else args.source
    if source is None:
        try:
            source = str(malaria.find_source())
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err} (Or run with --synthetic to use the offline stand-in.)") from None

    if source == "synthetic":
        print(f"source: synthetic stand-in ({malaria.SYNTHETIC_N} cells drawn by cnncourse.data.synthetic)")
    else:
        index = malaria.scan(source)
        checked = f"{index.checked:,} patient IDs confirmed by the official CSVs" if index.checked else "no CSVs"
        print(f"source: {source} ({len(index.files):,} PNGs, {len(set(index.patients))} patients; {checked})")

    print(f"{'split':<6} {'patients':>8} {'Parasitized':>12} {'Uninfected':>11} {'total':>7}   cache")
    total = [0, 0, 0]
    skipped = 0
    for split in malaria.SPLITS:
        start = time.perf_counter()
        ds = malaria.MalariaCells(
            split, source=source, size=args.size, seed=args.seed, on_error=args.on_error, progress=not args.quiet
        )
        seconds = time.perf_counter() - start
        n1 = int(ds.labels.sum())
        n_patients = len(set(ds.patient_ids))
        row = (n_patients, n1, len(ds) - n1)
        total = [a + b for a, b in zip(total, row, strict=True)]
        skipped += len(ds.skipped)
        where = f"{ds.cache} ({seconds:.1f} s)" if ds.cache else "(synthetic: not cached)"
        print(f"{split:<6} {row[0]:>8} {row[1]:>12,} {row[2]:>11,} {len(ds):>7,}   {where}")
    print(f"{'all':<6} {total[0]:>8} {total[1]:>12,} {total[2]:>11,} {total[1] + total[2]:>7,}")
    if skipped:
        print(f"skipped {skipped} unreadable PNG(s) (--on-error skip)")
    return 0


def _expected_seconds(model, train, val, settings: dict) -> float:
    """Seconds ``fit_tensors`` will take: two tiny epochs on a copy, the second one timed, scaled up."""
    from cnncourse.train.tensors import fit_tensors

    bs = settings["batch_size"]
    steps = 3
    subset = (train[0][: steps * bs], train[1][: steps * bs])
    probe = {**settings, "epochs": 2, "compile": False, "progress": False}
    history = fit_tensors(copy.deepcopy(model), subset, None, **probe)
    per_step = (history.wall_time[1] - history.wall_time[0]) / min(steps, max(1, len(subset[0]) // bs))
    train_steps = max(1, len(train[0]) // bs)
    val_steps = len(val[0]) / bs if val is not None else 0
    return settings["epochs"] * per_step * (train_steps + val_steps / 3)  # a forward pass is ~1/3 of a step


def _device(args: argparse.Namespace):
    import torch

    from cnncourse.runtime import default_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} was asked for, but no CUDA GPU is available; use --device cpu.")
    return device


def _reference_model(args: argparse.Namespace, train_images):
    """The reference CellNet (seeded), its keyword arguments, and ``fit_tensors`` settings from ``args``
    (normalising with the training images' statistics, which the checkpoint records)."""
    import torch

    from cnncourse.models.cellnet import TRAIN_SETTINGS, cellnet
    from cnncourse.train.tensors import channel_stats, default_amp

    mean, std = channel_stats(train_images)
    amp = default_amp(train_images.device) if args.precision == "auto" else args.precision == "bf16"
    kwargs = {"widths": tuple(TRAIN_SETTINGS["widths"]), "dropout": TRAIN_SETTINGS["dropout"]}
    torch.manual_seed(args.seed)
    model = cellnet(**kwargs)
    settings = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": TRAIN_SETTINGS["weight_decay"],
        "label_smoothing": TRAIN_SETTINGS["label_smoothing"],
        "mean": mean,
        "std": std,
        "amp": amp,
        "compile": args.compile,
        "seed": args.seed,
    }
    return model, kwargs, settings


def _train_malaria(args: argparse.Namespace) -> int:
    import torch
    from sklearn.metrics import roc_auc_score

    import cnncourse
    from cnncourse.checkpoint import save_checkpoint
    from cnncourse.data.malaria import load_tensors
    from cnncourse.train.tensors import fit_tensors, predict_tensors

    device = _device(args)
    source = "synthetic" if args.synthetic else args.source
    progress = not args.quiet
    train = load_tensors("train", size=args.size, device=device, source=source, seed=args.split_seed,
                         progress=progress)  # fmt: skip
    val = load_tensors("val", size=args.size, device=device, source=source, seed=args.split_seed, progress=progress)
    if args.final:  # the settings are chosen: train on the validation patients too, and validate on none
        train = train._replace(images=torch.cat([train.images, val.images]), labels=torch.cat([train.labels,
                               val.labels]), patient_ids=train.patient_ids + val.patient_ids)  # fmt: skip
        val = None
        _say(f"train (--final): {len(train.labels):,} cells of the {len(set(train.patient_ids))} training and "
             "validation patients; no validation", quiet=args.quiet)  # fmt: skip
    else:
        _say(f"train: {len(train.labels):,} cells of {len(set(train.patient_ids))} patients; "
             f"val: {len(val.labels):,} cells of {len(set(val.patient_ids))} patients", quiet=args.quiet)  # fmt: skip
    model, kwargs, settings = _reference_model(args, train.images)
    mean, std = settings["mean"], settings["std"]
    n_threads = torch.get_num_threads()
    threads = f", {n_threads} thread{'s' * (n_threads > 1)}" if device.type == "cpu" else ""
    val_pair = None if val is None else (val.images, val.labels)
    expected = _expected_seconds(model, (train.images, train.labels), val_pair, settings)
    precision = "bf16" if settings["amp"] else "fp32"
    _say(f"training CellNet{kwargs['widths']} for {args.epochs} epochs at {args.size} px on {device}{threads}, "
         f"{precision}: "
         f"expected about {expected / 60:.1f} min" + (" plus compilation" if args.compile else ""),
         quiet=args.quiet)  # fmt: skip
    start = time.perf_counter()
    history = fit_tensors(model, (train.images, train.labels), val_pair, progress=progress, **settings)
    seconds = time.perf_counter() - start
    accuracy = auc = None
    if val is not None:
        probs = predict_tensors(model, val.images, mean=mean, std=std, amp=settings["amp"]).softmax(1)[:, 1].cpu()
        labels = val.labels.cpu()
        accuracy = float(((probs >= 0.5).long() == labels).float().mean())
        auc = float(roc_auc_score(labels.numpy(), probs.numpy())) if len(set(labels.tolist())) == 2 else None
    info = {
        "trained_on": _train_source(source),
        "split_seed": args.split_seed,
        "train_patients": sorted(set(train.patient_ids)),
        "val_accuracy": accuracy,
        "val_auc": auc,
        "seconds": seconds,
        "device": str(device),
        "cnncourse": cnncourse.__version__,
        "torch": str(torch.__version__),
        "settings": {k: v for k, v in settings.items() if k not in ("mean", "std")},
        "history": history.to_dict(),
    }
    save_checkpoint(args.out, model, arch="cellnet", kwargs=kwargs, size=args.size, mean=mean, std=std, info=info)
    if val is None:
        _say(f"done in {seconds / 60:.1f} min (no validation: judge it with evaluate on new patients); wrote "
             f"{args.out}", quiet=args.quiet)  # fmt: skip
        return 0
    auc_text = f"{auc:.4f}" if auc is not None else "n/a"
    _say(f"done in {seconds / 60:.1f} min: validation accuracy {accuracy:.4f}, AUC {auc_text} "
         f"({len(labels):,} cells of patients not trained on); wrote {args.out}", quiet=args.quiet)  # fmt: skip
    return 0


def _train_source(source: str | None) -> str:
    """The source a training run used, for the checkpoint's record."""
    from cnncourse.data.malaria import find_source

    if source is not None:
        return str(source)
    try:
        return str(find_source())
    except FileNotFoundError:
        return "synthetic"


def _cv_malaria(args: argparse.Namespace) -> int:
    import torch

    import cnncourse
    from cnncourse.data.malaria import load_tensors, patient_folds
    from cnncourse.evaluation import fold_spread, judge_fold, save_predictions
    from cnncourse.runtime import cpu_record
    from cnncourse.train.tensors import fit_tensors, predict_tensors

    device = _device(args)
    source = "synthetic" if args.synthetic else args.source
    progress = not args.quiet
    cells = load_tensors("all", size=args.size, device=device, source=source, progress=progress)
    labels = cells.labels.cpu()
    infected: dict[str, bool] = {}
    for y, p in zip(labels.tolist(), cells.patient_ids, strict=True):
        infected[p] = infected.get(p, False) or bool(y)
    folds = patient_folds(infected, args.folds, seed=args.split_seed)
    owner = {p: k for k, fold in enumerate(folds) for p in fold}
    fold_of = torch.tensor([owner[p] for p in cells.patient_ids])
    _say(f"{args.folds}-fold patient-grouped CV over {len(infected)} patients ({len(labels):,} cells) of "
         f"{_train_source(source)}, {args.epochs} epochs at {args.size} px on {device}", quiet=args.quiet)  # fmt: skip
    oof = {"label": labels.to(torch.int8), "prob": torch.full((len(labels),), float("nan")),
           "prob_tta": torch.full((len(labels),), float("nan")), "fold": fold_of.to(torch.int8)}
    rows: list[dict] = []
    for k, fold in enumerate(folds):
        test = (fold_of == k).nonzero().flatten()
        train = (fold_of != k).nonzero().flatten()
        x, y = cells.images[train.to(device)], cells.labels[train.to(device)]
        model, _, settings = _reference_model(args, x)
        cpu, wall = time.process_time(), time.perf_counter()
        fit_tensors(model, (x, y), None, progress=progress, **settings)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        yk = labels[test]
        patients = [cells.patient_ids[i] for i in test.tolist()]
        row = {"fold": k, "patients": len(fold), "cells": len(test), "train_cells": len(train)}
        images = cells.images[test.to(device)]
        for tta in (False, True):
            logits = predict_tensors(model, images, mean=settings["mean"], std=settings["std"], amp=settings["amp"],
                                     tta=tta)  # fmt: skip
            probs = logits.softmax(1)[:, 1].cpu()
            oof["prob_tta" if tta else "prob"][test] = probs
            metrics = judge_fold(yk, probs, patients, n_boot=args.bootstrap, seed=args.seed)
            if tta:
                row["tta"] = metrics
            else:
                row.update(metrics)
        row.update(cpu_s=round(cpu, 1), wall_s=round(wall, 1), test_patients=fold)
        rows.append(row)
        auc_text = "n/a" if row["auc"] is None else f"{row['auc']:.4f}"
        _say(f"fold {k + 1}/{args.folds}: {len(fold)} patients, {len(test):,} cells: accuracy {row['accuracy']:.4f}, "
             f"AUC {auc_text}, with TTA {row['tta']['accuracy']:.4f} ({cpu:.0f} s CPU, {wall:.0f} s wall)",
             quiet=args.quiet)  # fmt: skip
        summary = fold_spread(rows)
        summary["tta"] = fold_spread([r["tta"] for r in rows])
        result = {
            "folds": args.folds,
            "folds_done": len(rows),
            "patients": len(infected),
            "cells": len(labels),
            "source": _train_source(source),
            "split_seed": args.split_seed,
            "seed": args.seed,
            "size": args.size,
            "settings": {k: v for k, v in settings.items() if k not in ("mean", "std")},
            "device": str(device),
            "threads": torch.get_num_threads(),
            "machine": cpu_record(),
            "cnncourse": cnncourse.__version__,
            "torch": str(torch.__version__),
            "cpu_s": round(sum(r["cpu_s"] for r in rows), 1),
            **summary,
            "per_fold": rows,
        }
        if args.out:  # after every fold: a run cut short keeps the folds it finished
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        if args.predictions:
            save_predictions(args.predictions, oof, cells.patient_ids)
    for name in ("accuracy", "auc"):
        stats = result[name]
        if stats["mean"] is not None:
            _say(f"{name}: mean {stats['mean']:.4f} +- {stats['std']:.4f} (sd over folds), lowest fold "
                 f"{stats['min']:.4f}", quiet=args.quiet)  # fmt: skip
    for path in (args.out, args.predictions):
        if path:
            _say(f"wrote {path}", quiet=args.quiet)
    return 0


def _evaluate_malaria(args: argparse.Namespace) -> int:
    import torch

    from cnncourse.checkpoint import load_checkpoint
    from cnncourse.evaluation import binary_report, patient_bootstrap, read_image_set
    from cnncourse.runtime import default_device
    from cnncourse.train.tensors import predict_tensors

    out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} was asked for, but no CUDA GPU is available; use --device cpu.")
    ckpt = load_checkpoint(args.checkpoint, device=device)
    if len(ckpt.classes) != 2:
        raise ValueError(f"{args.checkpoint} has {len(ckpt.classes)} classes {ckpt.classes}; malaria needs two.")
    pre = ckpt.preprocessing
    data = read_image_set(args.source, pre.size, classes=ckpt.classes, on_error=args.on_error,
                          progress=not args.quiet)  # fmt: skip
    say(f"checkpoint: {args.checkpoint} ({ckpt.arch}, {pre.size} px)")
    skipped = f"; skipped {len(data.skipped)} unreadable: {', '.join(data.skipped[:3])}" if data.skipped else ""
    kind = "labelled" if data.labels is not None else "unlabelled"
    say(f"source: {data.source} ({len(data.files):,} {kind} images, {len(set(data.patients))} patients{skipped})")
    logits = predict_tensors(ckpt.model, data.images.to(device), mean=pre.mean, std=pre.std, batch_size=args.batch_size,
                             tta=args.tta)  # fmt: skip
    probs = logits.softmax(1)[:, 1].cpu()

    if data.labels is None:
        path = Path(args.predictions)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "patient", f"p_{ckpt.classes[1].lower()}", "prediction"])
            for name, patient, p in zip(data.files, data.patients, probs.tolist(), strict=True):
                writer.writerow([name, patient, f"{p:.6f}", ckpt.classes[int(p >= args.threshold)]])
        n1 = int((probs >= args.threshold).sum())
        say(f"predicted {ckpt.classes[1]}: {n1:,} of {len(probs):,}; wrote {path}")
        result = {"accuracy": None, "auc": None, "sensitivity": None, "specificity": None,
                  "n_images": len(probs), "n_patients": len(set(data.patients)), "predictions": str(path),
                  "n_predicted_positive": n1, "skipped": len(data.skipped)}  # fmt: skip
    else:
        report = binary_report(data.labels, probs, data.patients, threshold=args.threshold)
        result = {**report.to_dict(worst=args.worst), "skipped": len(data.skipped), "tta": args.tta}
        if args.bootstrap:
            ci = patient_bootstrap(data.labels, probs, data.patients, threshold=args.threshold, n_boot=args.bootstrap,
                                   seed=args.seed)  # fmt: skip
            result["bootstrap"] = {"n_boot": args.bootstrap, "level": 0.95, "seed": args.seed,
                                   "n_patients": report.n_patients, "resampled": "patients"}  # fmt: skip
            result["accuracy_ci"] = [ci["accuracy"].low, ci["accuracy"].high]
            result["auc_ci"] = [ci["auc"].low, ci["auc"].high]

        def fmt(v: float | None) -> str:
            return "n/a (one class only)" if v is None else f"{v:.4f}"

        say(f"accuracy {report.accuracy:.4f}  AUC {fmt(report.auc)}  sensitivity {fmt(report.sensitivity)}  "
            f"specificity {fmt(report.specificity)}  (threshold {report.threshold})")  # fmt: skip
        (tn, fp), (fn, tp) = report.confusion
        if args.bootstrap:
            say(f"95% interval over patients (bootstrap, {args.bootstrap} resamples of {report.n_patients} patients): "
                f"accuracy {ci['accuracy'].text().split(' (')[0]}, AUC {ci['auc'].text().split(' (')[0]}")
        say(f"confusion: {tn:,} true / {fp:,} false {ckpt.classes[1]}; {tp:,} true / {fn:,} missed {ckpt.classes[1]}")
        worst = [row for row in report.patients[: args.worst] if row.errors]
        if worst:
            say(f"worst patients: {'patient':<20} {'images':>6} {'errors':>6} {'accuracy':>8}")
            for row in worst:
                say(f"                {row.patient:<20} {row.n_images:>6} {row.errors:>6} {row.accuracy:>8.3f}")
    if args.json:
        print(json.dumps(result))
    return 0


def _size(text: str) -> int:
    value = int(text)
    if not 16 <= value <= 512:
        raise argparse.ArgumentTypeError(f"image size must be between 16 and 512, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The reference recipe's settings that `train` and `cv` share (defaults: ``TRAIN_SETTINGS``)."""
    from cnncourse.models.cellnet import TRAIN_SETTINGS as s

    parser.add_argument("--epochs", type=_positive, default=s["epochs"], help=f"default {s['epochs']}")
    parser.add_argument("--size", type=_size, default=s["size"], help=f"image side in px (default {s['size']})")
    parser.add_argument("--batch-size", type=_positive, default=s["batch_size"], help=f"default {s['batch_size']}")
    parser.add_argument("--lr", type=float, default=s["lr"], help=f"peak learning rate (default {s['lr']})")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="bf16 autocast or plain fp32; auto (default): bf16 on CUDA and on CPUs with AMX")
    parser.add_argument("--source", metavar="PATH", help="a cell_images*.zip or cell_images/ folder (default: found)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnncourse", description="Tools of the cnncourse support package.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    on_error = {
        "choices": ["raise", "skip"],
        "default": "raise",
        "help": "a corrupt PNG stops with an error (raise, default) or is left out with a warning (skip)",
    }

    data = commands.add_parser("data", help="data sets: find, download, inspect, cache")
    datasets = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    m = datasets.add_parser("malaria", help="NIH malaria cell images (patient-level splits)")
    m.add_argument("--download", action="store_true", help="download the official archive into the data folder")
    m.add_argument("--source", metavar="PATH", help="a cell_images*.zip or an extracted cell_images/ folder")
    m.add_argument("--size", type=_size, default=64, help="image side after resizing (default 64)")
    m.add_argument("--seed", type=int, default=0, help="seed of the patient split (default 0)")
    m.add_argument("--synthetic", action="store_true", help="use the synthetic stand-in cells")
    m.add_argument("--on-error", **on_error)
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(run=_data_malaria)

    train = commands.add_parser("train", help="train a reference model and write a checkpoint")
    tsets = train.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    t = tsets.add_parser("malaria", help="CellNet on the training patients of the malaria cells",
                         description="Train the reference CellNet on the training patients (validating on the "
                         "validation patients) of whatever source cnncourse.data.malaria finds. The defaults are "
                         "the solution's settings; --epochs and --size trade accuracy for time.")  # fmt: skip
    t.add_argument("--out", required=True, metavar="PATH", help="checkpoint to write (e.g. model.pt)")
    t.add_argument("--final", action="store_true", help="train on the training and the validation patients (once "
                   "the settings are chosen; no validation), as a final model")
    _recipe_arguments(t)
    t.add_argument("--synthetic", action="store_true", help="train on the synthetic stand-in cells")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling, augmentation")
    t.add_argument("--split-seed", type=int, default=0, help="seed of the patient split (default 0)")
    t.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    t.add_argument("--threads", type=_positive, help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on a GPU)")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(run=_train_malaria)

    evaluate = commands.add_parser("evaluate", help="judge a checkpoint on a folder or zip of images")
    esets = evaluate.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    e = esets.add_parser("malaria", help="accuracy, AUC, sensitivity, specificity, worst patients",
                         description="Evaluate a checkpoint on every PNG of a folder or zip: labelled when the "
                         "images sit in Parasitized/ and Uninfected/ folders (one may be missing), else "
                         "unlabelled (then a predictions CSV is written). File names without the "
                         "'<patient>_IMG...' pattern count as patient 'unknown'.")  # fmt: skip
    e.add_argument("checkpoint", help="a checkpoint written by `cnncourse train` or save_checkpoint")
    e.add_argument("--source", required=True, metavar="FOLDER_OR_ZIP", help="the images to judge the model on")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout (everything else on stderr)")
    e.add_argument("--threshold", type=float, default=0.5, help="probability from which a cell counts as Parasitized")
    e.add_argument("--predictions", default="predictions.csv", metavar="CSV",
                   help="where unlabelled images' predictions go (default predictions.csv)")  # fmt: skip
    e.add_argument("--tta", action="store_true", help="average over the 8 flips/rotations of each image (8x time)")
    e.add_argument("--worst", type=int, default=5, help="how many worst patients to list (default 5)")
    e.add_argument("--batch-size", type=_positive, default=512, help="images per forward pass (default 512)")
    e.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="patient-level bootstrap resamples for the 95%% intervals (default 1000; 0: none)")
    e.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    e.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    e.add_argument("--on-error", **on_error)
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(run=_evaluate_malaria)

    cv = commands.add_parser("cv", help="patient-grouped k-fold cross-validation of the reference recipe")
    csets = cv.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    c = csets.add_parser("malaria", help="CellNet, k folds of whole patients over every patient of the source",
                         description="Deal every patient of the source into k folds (stratified by whether the "
                         "patient has parasitized cells); for each fold train the reference CellNet on the other "
                         "folds' patients with the train command's settings and judge it on the fold's. Reports "
                         "each fold's accuracy, AUC (with patient-level bootstrap intervals) and CPU time, and "
                         "the mean and spread over folds.")  # fmt: skip
    c.add_argument("--folds", type=_positive, default=5, help="number of patient folds (default 5)")
    c.add_argument("--out", metavar="JSON", help="write the per-fold results and the summary here (after each fold)")
    c.add_argument("--predictions", metavar="NPZ", help="write every cell's out-of-fold probability (plain and with "
                   "TTA), label, fold and patient here (after each fold; read with load_predictions)")
    _recipe_arguments(c)
    c.add_argument("--synthetic", action="store_true", help="use the synthetic stand-in cells")
    c.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling, augmentation, bootstrap")
    c.add_argument("--split-seed", type=int, default=0, help="seed of the assignment of patients to folds")
    c.add_argument("--bootstrap", type=_positive, default=1000, metavar="N", help="resamples per fold (default 1000)")
    c.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    c.add_argument("--threads", type=_positive, help="CPU threads for torch (default: torch's choice)")
    c.add_argument("--quiet", action="store_true", help="no progress output")
    c.set_defaults(run=_cv_malaria, compile=False)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 fine, 2 bad input or usage, 130 interrupted)."""
    from cnncourse.checkpoint import CheckpointError
    from cnncourse.data.downloader import DownloadError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "synthetic", False) and (args.source or getattr(args, "download", False)):
        parser.error("--synthetic cannot be combined with --source or --download")
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except (CheckpointError, DownloadError, OSError, ValueError) as err:  # DataError is a ValueError too
            text = " ".join(str(err).split())
            for api in ('on_error="skip"', "on_error='skip'"):  # the library's advice, in command-line words
                text = text.replace(api, "--on-error skip")
            print(f"error: {text}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
