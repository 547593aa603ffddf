"""Benchmark: seconds per training step of the A4 recipe in fp32 and in bf16 autocast, on this CPU and on the CPUs
it can imitate.

    python benchmarks/malaria_precision.py [--steps 30] [--threads 2]

torch's convolutions on the CPU run in oneDNN, which picks its kernels from the CPU's instruction sets; its other
kernels follow ATen's CPU capability. Capping both (``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``) makes one
machine run what another would:

* ``native``: everything this CPU has (on a Xeon with AMX: bf16 matrix tiles);
* ``avx512_bf16``: AVX-512 with bf16 dot products and no AMX (e.g. AMD Zen 4, Intel Cooper Lake);
* ``avx512``: AVX-512 without bf16 instructions (e.g. Intel Ice Lake);
* ``avx2``: AVX2 only (e.g. AMD Zen 2/3, most laptops).

Each level that this CPU can imitate runs in its own process: CellNet at 64 px, batch 128, ``fit_tensors`` with
the recipe's augmentation and one-cycle schedule, ``--steps`` timed steps after two warm-up epochs of the same
size, once with ``amp=False`` and once with ``amp=True``. ``cnncourse.train.tensors.default_amp`` turns bf16 on
where it pays; this records the speed-up that choice rests on (``malaria_cv.json`` holds what it does to
accuracy). Writes ``benchmarks/results/malaria_precision.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "malaria_precision.json"
# level -> (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY, the CPU feature it needs)
LEVELS = {
    "native": (None, None, None),
    "avx512_bf16": ("AVX512_CORE_BF16", "avx512", "avx512_bf16"),
    "avx512": ("AVX512_CORE", "avx512", "avx512"),
    "avx2": ("AVX2", "avx2", "avx2"),
}


def step_seconds(steps: int, threads: int) -> dict:
    """Seconds per step of ``fit_tensors`` in this process, fp32 and bf16 (``{"fp32": s, "bf16": s}``)."""
    import torch

    from cnncourse.data.synthetic import synthetic_cells
    from cnncourse.models.cellnet import TRAIN_SETTINGS, cellnet
    from cnncourse.train.tensors import fit_tensors

    torch.set_num_threads(threads)
    bs = TRAIN_SETTINGS["batch_size"]
    cells = synthetic_cells(steps * bs, size=64, seed=0)
    images, labels = cells.images, cells.labels
    out = {}
    for name, amp in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        model = cellnet(widths=TRAIN_SETTINGS["widths"])
        history = fit_tensors(model, (images, labels), None, epochs=3, batch_size=bs, amp=amp, progress=False,
                              lr=TRAIN_SETTINGS["lr"], mean=(0.5,) * 3, std=(0.25,) * 3)  # fmt: skip
        out[name] = (history.wall_time[2] - history.wall_time[1]) / steps  # the third epoch: warm
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps of 128 images (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--level", choices=sorted(LEVELS), help=argparse.SUPPRESS)  # one level, in a child
    args = parser.parse_args()
    if args.level:
        print(json.dumps(step_seconds(args.steps, args.threads)))
        return
    import torch

    from cnncourse.runtime import cpu_record

    machine = cpu_record()
    has = {"avx512_bf16": machine["avx512_bf16"], "avx512": torch.cpu._is_avx512_supported(),
           "avx2": torch.cpu._is_avx2_supported()}  # fmt: skip
    levels = {}
    for level, (isa, capability, needs) in LEVELS.items():
        if needs and not has[needs]:
            levels[level] = "not measured: this CPU lacks it"
            continue
        env = dict(os.environ)
        env.update({"ONEDNN_MAX_CPU_ISA": isa, "ATEN_CPU_CAPABILITY": capability} if isa else {})
        done = subprocess.run([sys.executable, __file__, "--level", level, "--steps", str(args.steps), "--threads",
                               str(args.threads)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
        got = json.loads(done.stdout.splitlines()[-1])
        levels[level] = {**{k: round(v, 4) for k, v in got.items()},
                         "bf16_speedup": round(got["fp32"] / got["bf16"], 2)}  # fmt: skip
        print(level, levels[level], file=sys.stderr)
    record = {
        "what": __doc__.split("\n\n")[0].replace("\n", " "),
        "machine": machine,
        "threads": args.threads,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "batch": "128 cells of 64 px, CellNet 16-32-64-128, AdamW one-cycle, flips/rotations/colour jitter",
        "seconds_per_step": levels,
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
