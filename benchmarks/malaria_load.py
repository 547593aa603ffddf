"""Benchmark: building the malaria split cache from the zip, and loading it again.

    CNNCOURSE_DATA_PATH=../shared/data/malaria python benchmarks/malaria_load.py [--source ZIP] [--split train]

Measures, in a fresh temporary ``CNNCOURSE_DATA_DIR`` (your own cache is not touched):
  * first build: PNGs decoded from the zip per second (read + decode + letterbox to 64 px, thread pool,
    plus writing the cache), through ``load_tensors`` as a notebook would call it;
  * decode scaling: the same decode with 1 worker and with the default number of workers;
  * cached load: seconds for ``load_tensors`` once the cache exists (median of 5).
Writes ``benchmarks/results/malaria_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "malaria_load.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="zip or cell_images/ folder (default: find_source())")
    parser.add_argument("--split", default="train", choices=["train", "val", "test", "all"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import PIL
    import torch

    from cnncourse.data import malaria
    from cnncourse.data.archive import ClassArchive
    from cnncourse.data.images import decode_many

    try:
        source = Path(args.source) if args.source else malaria.find_source()
    except FileNotFoundError as err:
        print(f"no real data to benchmark: {err}", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CNNCOURSE_DATA_DIR"] = tmp
        start = time.perf_counter()
        images, labels, _ = malaria.load_tensors(args.split, source=source, size=args.size, progress=False)
        build_s = time.perf_counter() - start
        cache_mb = next(Path(tmp, "cache").glob("*.pt")).stat().st_size / 2**20
        cached = []
        for _ in range(5):
            start = time.perf_counter()
            again = malaria.load_tensors(args.split, source=source, size=args.size, progress=False)
            cached.append(time.perf_counter() - start)
        assert torch.equal(again.images, images)

    with ClassArchive(source, malaria.CLASSES) as archive:
        sample = archive.members[:: max(1, len(archive) // 2000)][:2000]
        scaling = {}
        for workers in (1, min(8, os.cpu_count() or 1)):
            start = time.perf_counter()
            decode_many(archive.read, sample, args.size, workers=workers, progress=False)
            scaling[str(workers)] = round(len(sample) / (time.perf_counter() - start), 1)

    n = len(labels)
    result = {
        "source": source.name,
        "source_bytes": source.stat().st_size if source.is_file() else None,
        "split": args.split,
        "size": args.size,
        "images": n,
        "first_build_s": round(build_s, 3),
        "first_build_images_per_s": round(n / build_s, 1),
        "cache_file_mb": round(cache_mb, 1),
        "cached_load_s_median": round(statistics.median(cached), 3),
        "cached_load_s_all": [round(t, 3) for t in cached],
        "decode_images_per_s_by_workers": scaling,
        "decode_sample": len(sample),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pillow": PIL.__version__,
            "platform": platform.platform(),
        },
        "note": "threads; machine shared with other jobs, so rates are noisy",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
