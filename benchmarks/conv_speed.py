"""Forward speed of convolution on the CPU: naive loops vs im2col + matmul vs ``F.conv2d``.

Usage: ``python benchmarks/conv_speed.py [--repeats 25] [--threads 1] [--full-naive] [--out PATH]``
(default output ``benchmarks/results/conv_speed.json``).

Two layer sizes at batch 8, float32: a CIFAR-size layer (8x64x32x32, 64 filters 3x3, padding 1) and an
ImageNet-size ResNet layer (8x64x56x56, 64 filters 3x3, padding 1). Every implementation is first checked
against ``F.conv2d`` on the same input.

* ``F.conv2d`` and ``im2col`` (``cnncourse.layers.conv2d``): median of ``--repeats`` timed calls after warm-up.
* ``naive`` (``cnncourse.layers.conv2d_naive``) runs Python loops over filters, output rows, output columns
  and kernel offsets, so its time is proportional to the number of output rows. It is timed on a slice of
  ``NAIVE_ROWS`` output rows (the input padded once, then cut to the rows those outputs read) and the time
  extrapolated linearly to the full height; for the CIFAR layer (and with ``--full-naive`` for all) it is
  also timed on the whole layer once, to check the extrapolation. The JSON says which figure is which.

All three run on ``--threads`` CPU threads (default 1). On a small shared machine (the course's reference
has 2 cores) two threads make every parallel kernel wait for whichever thread another process delayed, and
timings jump by factors of 2 to 10 between runs; one thread compares the implementations fairly.

The timings are taken twice, each in a fresh process: with glibc's default allocator settings, and with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge>`` so that freed large buffers are reused instead of being
returned to the OS and page-faulted in again on the next call (what PyTorch's CPU tuning guide gets by
preloading jemalloc/tcmalloc). Both are reported: the im2col matrix is large (18.9 MB and 57.8 MB here),
so on machines where page faults are expensive the default setting mostly measures the kernel's paging.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnncourse.layers import conv2d, conv2d_naive  # noqa: E402

LAYERS = {
    "cifar_8x64x32x32_k64_3x3_p1": dict(batch=8, channels=64, size=32, filters=64, kernel=3, padding=1),
    "imagenet_8x64x56x56_k64_3x3_p1": dict(batch=8, channels=64, size=56, filters=64, kernel=3, padding=1),
}
NAIVE_ROWS = 2
ALLOCATORS = {
    "glibc_default": {},
    "glibc_reuse_freed_buffers": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)},
}


def median_seconds(fn, repeats: int, warmup: int = 2) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_layer(cfg: dict, repeats: int, full_naive: bool) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["batch"], cfg["channels"], cfg["size"], cfg["size"], generator=gen)
    w = torch.randn(cfg["filters"], cfg["channels"], cfg["kernel"], cfg["kernel"], generator=gen) * 0.05
    b = torch.randn(cfg["filters"], generator=gen)
    pad = cfg["padding"]
    with torch.no_grad():
        ref = F.conv2d(x, w, b, padding=pad)
        err = (conv2d(x, w, b, padding=pad) - ref).abs().max().item()
        assert err < 1e-3, f"im2col differs from F.conv2d by {err}"
        t_ref, ref_runs = median_seconds(lambda: F.conv2d(x, w, b, padding=pad), repeats)
        t_im2col, im2col_runs = median_seconds(lambda: conv2d(x, w, b, padding=pad), repeats)

        # Naive on the first NAIVE_ROWS output rows: pad once, keep the input rows those outputs read.
        out_rows = ref.shape[2]
        xp = F.pad(x, (pad, pad, pad, pad))[:, :, : NAIVE_ROWS + cfg["kernel"] - 1]
        y_slice = conv2d_naive(xp, w, b)
        err_naive = (y_slice - ref[:, :, :NAIVE_ROWS]).abs().max().item()
        assert err_naive < 1e-3, f"naive differs from F.conv2d by {err_naive}"
        t_slice, _ = median_seconds(lambda: conv2d_naive(xp, w, b), repeats=3, warmup=0)
        t_naive_extrapolated = t_slice * out_rows / NAIVE_ROWS
        t_naive_full = None
        if full_naive or cfg["size"] <= 32:
            start = time.perf_counter()
            conv2d_naive(x, w, b, padding=pad)
            t_naive_full = time.perf_counter() - start
    t_naive = t_naive_full if t_naive_full is not None else t_naive_extrapolated
    return {
        "input_shape": list(x.shape),
        "weight_shape": list(w.shape),
        "padding": pad,
        "output_shape": list(ref.shape),
        "macs": ref.numel() * cfg["channels"] * cfg["kernel"] ** 2,
        "max_abs_error_vs_F": {"im2col": err, "naive_slice": err_naive},
        "seconds": {
            "F.conv2d": t_ref,
            "im2col": t_im2col,
            "naive": t_naive,
            "naive_is": "measured on the whole layer" if t_naive_full is not None else
                        f"extrapolated from {NAIVE_ROWS} of {out_rows} output rows",
            "naive_slice": t_slice,
            "naive_slice_rows": NAIVE_ROWS,
            "naive_extrapolated_from_slice": t_naive_extrapolated,
            "naive_full_measured": t_naive_full,
        },
        "min_seconds": {"F.conv2d": min(ref_runs), "im2col": min(im2col_runs)},
        "runs_seconds": {"F.conv2d": ref_runs, "im2col": im2col_runs},
        "ratios": {
            "naive_over_im2col": t_naive / t_im2col,
            "im2col_over_F.conv2d": t_im2col / t_ref,
            "naive_over_F.conv2d": t_naive / t_ref,
        },
        "targets": {
            "im2col_at_least_100x_faster_than_naive": t_naive / t_im2col >= 100,
            "im2col_within_5x_of_F.conv2d": t_im2col / t_ref <= 5,
        },
    }


def run_child(repeats: int, full_naive: bool, threads: int) -> dict:
    torch.set_num_threads(threads)
    return {name: bench_layer(cfg, repeats, full_naive) for name, cfg in LAYERS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--full-naive", action="store_true", help="also run naive on the whole ImageNet layer")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "conv_speed.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one allocator setting, in this fresh process
        json.dump(run_child(args.repeats, args.full_naive, args.threads), sys.stdout)
        return
    results = {}
    for name, env in ALLOCATORS.items():
        cmd = [sys.executable, __file__, "--child", "--repeats", str(args.repeats), "--threads", str(args.threads)]
        cmd += ["--full-naive"] if args.full_naive else []
        print(f"timing with {name} ...", file=sys.stderr, flush=True)
        child = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        results[name] = {"environment": env, "layers": json.loads(child.stdout)}
    report = {
        "what": "forward time of one 2-D convolution on the CPU, float32, median seconds per call (ratios and "
                "targets use the medians; min_seconds gives the fastest call, as this machine is shared and noisy)",
        "implementations": {
            "naive": "cnncourse.layers.conv2d_naive: Python loops over filter l, output row i, output column j "
                     "and kernel offsets a, b; the sum over input channels d is one dot product done for the "
                     "whole batch at once",
            "im2col": "cnncourse.layers.conv2d: im2col copy, then one batched matmul (weights broadcast over "
                      "the batch), bias added in place",
            "F.conv2d": "torch.nn.functional.conv2d (oneDNN)",
        },
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": args.threads,
                    "load_average_at_end": os.getloadavg(),
                    "python": platform.python_version()},
        "repeats": args.repeats,
        "allocators": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for alloc, res in results.items():
        for layer, r in res["layers"].items():
            s = r["seconds"]
            print(f"{alloc:26s} {layer:32s} naive {s['naive']:8.3f} s  im2col {s['im2col'] * 1e3:7.1f} ms  "
                  f"F.conv2d {s['F.conv2d'] * 1e3:6.1f} ms  naive/im2col {r['ratios']['naive_over_im2col']:6.0f}x  "
                  f"im2col/F {r['ratios']['im2col_over_F.conv2d']:4.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
