"""CPU time of ``cnncourse.shapes.layer_table`` on every ImageNet builder of ``cnncourse.models`` at 224x224.

For each model: the time to build it (random initialization), the time of one plain forward pass under
``torch.no_grad`` and the time of ``layer_table`` (one forward pass with a hook and a FLOP counter per leaf
module), plus its parameters and MACs. Best of ``--repeats`` runs, on ``--threads`` threads (default 1: on
a small shared machine more threads mostly measure the other processes). Writes
``benchmarks/results/layer_table_models.json``.

    python benchmarks/layer_table_models.py [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cnncourse.models import IMAGENET_MODELS, MODELS  # noqa: E402
from cnncourse.shapes import layer_table  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "layer_table_models.json"


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.zeros(1, 3, 224, 224)
    rows = {}
    for name in IMAGENET_MODELS:
        start = time.perf_counter()
        model = MODELS[name]().eval()
        build_s = time.perf_counter() - start
        with torch.no_grad():
            model(x)  # warm-up
            forward_s = best_of(args.repeats, lambda m=model: m(x))
        table_s = best_of(args.repeats, lambda m=model: layer_table(m, (1, 3, 224, 224)))
        table = layer_table(model, (1, 3, 224, 224))
        rows[name] = {"params": table.total_params, "macs": table.total_macs, "build_s": round(build_s, 3),
                      "forward_s": round(forward_s, 3), "layer_table_s": round(table_s, 3)}
        print(f"{name:16s} {table.total_macs / 1e9:6.2f} GMACs  build {build_s:5.2f} s  forward {forward_s:5.2f} s"
              f"  layer_table {table_s:5.2f} s", flush=True)
    out = {
        "what": "CPU seconds of layer_table(model, (1, 3, 224, 224)) vs a plain no-grad forward, best of repeats",
        "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "total_layer_table_s": round(sum(r["layer_table_s"] for r in rows.values()), 2),
        "max_layer_table_s": max(r["layer_table_s"] for r in rows.values()),
        "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
