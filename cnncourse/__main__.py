"""Command line: ``python -m cnncourse <command> ...`` (also installed as ``cnncourse``).

Commands:
    data malaria   show which malaria source is used, counts per class and split, patients per split,
                   and build the split caches (``--download``, ``--source PATH``, ``--size``, ``--synthetic``).

Each command is a sub-parser with a ``run(args)`` function, so new commands plug in beside ``data``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


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
            print(f"error: {err}\n(or run with --synthetic to use the offline stand-in)", file=sys.stderr)
            return 1

    if source == "synthetic":
        print(f"source: synthetic stand-in ({malaria.SYNTHETIC_N} cells drawn by cnncourse.data.synthetic)")
    else:
        index = malaria.scan(source)
        checked = f"{index.checked:,} patient IDs confirmed by the official CSVs" if index.checked else "no CSVs"
        print(f"source: {source} ({len(index.files):,} PNGs, {len(set(index.patients))} patients; {checked})")

    print(f"{'split':<6} {'patients':>8} {'Parasitized':>12} {'Uninfected':>11} {'total':>7}   cache")
    total = [0, 0, 0]
    for split in malaria.SPLITS:
        start = time.perf_counter()
        ds = malaria.MalariaCells(split, source=source, size=args.size, seed=args.seed, progress=not args.quiet)
        seconds = time.perf_counter() - start
        n1 = int(ds.labels.sum())
        n_patients = len(set(ds.patient_ids))
        row = (n_patients, n1, len(ds) - n1)
        total = [a + b for a, b in zip(total, row, strict=True)]
        where = f"{ds.cache} ({seconds:.1f} s)" if ds.cache else "(synthetic: not cached)"
        print(f"{split:<6} {row[0]:>8} {row[1]:>12,} {row[2]:>11,} {len(ds):>7,}   {where}")
    print(f"{'all':<6} {total[0]:>8} {total[1]:>12,} {total[2]:>11,} {total[1] + total[2]:>7,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnncourse", description="Tools of the cnncourse support package.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="data sets: find, download, inspect, cache")
    datasets = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    m = datasets.add_parser("malaria", help="NIH malaria cell images (patient-level splits)")
    m.add_argument("--download", action="store_true", help="download the official archive into the data folder")
    m.add_argument("--source", metavar="PATH", help="a cell_images*.zip or an extracted cell_images/ folder")
    m.add_argument("--size", type=int, default=64, help="image side after resizing (default 64)")
    m.add_argument("--seed", type=int, default=0, help="seed of the patient split (default 0)")
    m.add_argument("--synthetic", action="store_true", help="use the synthetic stand-in cells")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(run=_data_malaria)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "synthetic", False) and (args.source or args.download):
        build_parser().error("--synthetic cannot be combined with --source or --download")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
