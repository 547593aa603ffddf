"""Re-execute course notebooks, clean them and record how long they take.

    python scripts/run_notebooks.py lectures/01_convolution.ipynb ...   # full run, outputs written back
    python scripts/run_notebooks.py --all                              # every lecture (what `make notebooks` runs)
    python scripts/run_notebooks.py --quick-only lectures/03_pooling.ipynb  # time quick mode only, write nothing

A full run (``CNNCOURSE_QUICK=0``) is written back into the notebook with its outputs, minus volatile
metadata (execution timestamps, saved widget state); then the same notebook is run in quick mode
(``CNNCOURSE_QUICK=1``, what the tests do) and discarded. Both wall times go to
``benchmarks/results/notebook_times.json`` (merged with the entries already there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "notebook_times.json"
VOLATILE_CELL_KEYS = ("execution", "collapsed", "scrolled", "ExecuteTime")


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes on every run but says nothing: timestamps and saved widget state."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                # widget views point at state that is not saved: keep their text fallback only
                data = output.get("data", {})
                data.pop("application/vnd.jupyter.widget-view+json", None)
    return nb


def execute(path: Path, quick: bool, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    env_quick = os.environ.get("CNNCOURSE_QUICK")
    os.environ["CNNCOURSE_QUICK"] = "1" if quick else "0"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    path_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), path_before]))  # this checkout's cnncourse
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                       record_timing=False).execute()
        return nb, time.perf_counter() - start
    finally:
        for name, value in (("PYTHONPATH", path_before), ("CNNCOURSE_QUICK", env_quick)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--all", action="store_true", help="every notebook in lectures/")
    parser.add_argument("--quick-only", action="store_true", help="only time the quick run; write no notebook")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "lectures").glob("*.ipynb")) if args.all else [p.resolve() for p in args.notebooks]
    if not paths:
        parser.error("name notebooks, or pass --all")

    before = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    measured = {}
    for path in paths:
        key = str(path.relative_to(ROOT))
        entry = dict(before.get("notebooks", {}).get(key, {}))
        if not args.quick_only:
            nb, seconds = execute(path, quick=False, timeout=args.timeout)
            nbformat.write(clean(nb), path)
            entry["full_s"] = round(seconds, 1)
            entry["size_kb"] = round(path.stat().st_size / 1024)
            print(f"{key}: full run {seconds:.1f} s, {entry['size_kb']} kB written", flush=True)
        with tempfile.TemporaryDirectory() as folder:  # files the quick run writes (model.pt) stay out of the course
            copy = Path(folder) / path.parent.name
            shutil.copytree(path.parent, copy)
            _, seconds = execute(copy / path.name, quick=True, timeout=args.timeout)
        entry["quick_s"] = round(seconds, 1)
        print(f"{key}: quick run {seconds:.1f} s", flush=True)
        measured[key] = entry
    # Read the file again just before writing: another run (another notebook) may have finished meanwhile.
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("notebooks", {}).update(measured)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.machine()}
    results["note"] = ("wall time of a whole notebook through nbclient (kernel start included); "
                       "full = CNNCOURSE_QUICK=0, quick = CNNCOURSE_QUICK=1 as in the tests; "
                       "measured by scripts/run_notebooks.py, other jobs may have shared the machine")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
