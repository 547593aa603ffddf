"""Autograding throughput of A1: submissions per minute, serial ``nbgrader autograde`` vs ``make autograde JOBS=n``.

Builds a temporary copy of the course, regenerates the release, submits the reference answers for N
students, and times one serial ``nbgrader autograde`` batch and one parallel batch
(``python -m cnncourse.autograde autograde --jobs n``), each in a fresh copy: wall time and the CPU time
of all their processes (kernels included). The machine's load is recorded with the result: other jobs on
a shared machine slow both; the CPU time gives an idle-machine estimate. Writes
benchmarks/results/autograde_speed.json.

    python benchmarks/autograde_speed.py [--students 8] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cnncourse.autograde.inprocess import fill_answers  # noqa: E402

AID = "a1-convolution"
RESULT = ROOT / "benchmarks" / "results" / "autograde_speed.json"


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def course(tmp: Path, students: int) -> Path:
    """A course copy with the release regenerated and ``students`` correct submissions."""
    shutil.copy(ROOT / "nbgrader_config.py", tmp)
    shutil.copytree(ROOT / "solutions" / AID, tmp / "solutions" / AID)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", AID, "--force"], cwd=tmp, env=env(),
                   check=True, capture_output=True)
    release = nbformat.read(tmp / "assignments" / AID / f"{AID}.ipynb", as_version=4)
    submission = fill_answers(release, nbformat.read(tmp / "solutions" / AID / f"{AID}.ipynb", as_version=4))
    for k in range(students):
        folder = tmp / ".nbgrader" / "submitted" / f"student{k:03d}" / AID
        folder.mkdir(parents=True)
        nbformat.write(submission, folder / f"{AID}.ipynb")
    return tmp


def timed(command: list[str], students: int) -> dict:
    """Wall time of ``command`` run in a fresh course of ``students`` submissions, and the load meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        root = course(Path(tmp), students)
        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, cwd=root, env=env(), check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        return {"wall_s": round(wall, 1), "submissions_per_minute": round(60 * students / wall, 1),
                "cpu_s": round(cpu, 1), "cpu_s_per_submission": round(cpu / students, 2),
                "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8, help="submissions per batch (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel batch (default 2)")
    args = parser.parse_args()
    serial = timed([sys.executable, "-m", "nbgrader", "autograde", AID], args.students)
    parallel = timed([sys.executable, "-m", "cnncourse.autograde", "autograde", AID, "--jobs", str(args.jobs),
                      "--no-progress"], args.students)
    result = {
        "assignment": AID,
        "students": args.students,
        "serial_nbgrader_autograde": serial,
        f"parallel_jobs_{args.jobs}": parallel,
        "speedup": round(serial["wall_s"] / parallel["wall_s"], 2),
        # CPU seconds (nbgrader, workers and kernels) depend far less on other jobs than wall time: an upper
        # bound of what an otherwise idle machine with these cores grades per minute with the parallel runner
        # (it ignores the waits of kernel start-up and messaging, which the workers overlap).
        "idle_upper_bound_submissions_per_minute": round(
            60 * min(args.jobs, os.cpu_count() or 1) / parallel["cpu_s_per_submission"], 1),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "note": "wall time of a whole batch (nbgrader start-up, one kernel per notebook with `import torch`, "
                "all cells incl. hidden tests); load_1min is the machine's 1-minute load average: with other jobs "
                "running (load above the 2 cores), both figures are lower bounds of what an idle machine does",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
