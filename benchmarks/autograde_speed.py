"""Autograding throughput of A1: submissions per minute, serial ``nbgrader autograde`` vs ``make autograde JOBS=n``,
kernels started cold (one fresh process per notebook, as nbgrader does) and warm (forked by a zygote,
``c.Sandbox.warm``, the course's default), sandboxed and, side by side in the same run, unsandboxed
(``c.Sandbox.mode = "none"``); and the start-up of one kernel.

Builds a temporary copy of the course, regenerates the release, submits the reference answers for N students, and
times, each batch in a fresh copy: serial ``nbgrader autograde`` cold (the baseline) and warm, then parallel batches
(``python -m cnncourse.autograde autograde --jobs n``: warm, cold, unsandboxed), alternated ``--repeats`` times so
that a change of the machine's load hits all alike. Each batch records its wall time and the CPU time the whole
machine spent meanwhile (every process, sandboxed kernels included: on an idle machine, the batch's), with the
machine's load before. The start-up is the median time from starting a kernel to its first reply (``kernel_info``)
over ``--starts`` kernels: sandboxed cold and warm, unsandboxed. Writes benchmarks/results/autograde_speed.json.

    python benchmarks/autograde_speed.py [--students 16] [--jobs 2] [--repeats 2] [--starts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from autograde_profile import machine_cpu  # noqa: E402  (this folder)

from cnncourse.autograde.inprocess import fill_answers  # noqa: E402
from cnncourse.runtime import cpu_model  # noqa: E402

AID = "a1-convolution"
RESULT = ROOT / "benchmarks" / "results" / "autograde_speed.json"


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


KINDS = {"warm": "", "cold": "\nc.Sandbox.warm = False\n", "unsandboxed": '\nc.Sandbox.mode = "none"\n'}


def course(tmp: Path, students: int, kind: str = "warm") -> Path:
    """A course copy with the release regenerated and ``students`` correct submissions, its kernels ``kind``
    (:data:`KINDS`)."""
    config = (ROOT / "nbgrader_config.py").read_text()
    (tmp / "nbgrader_config.py").write_text(config + KINDS[kind])
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


def timed(command: list[str], students: int, kind: str = "warm") -> dict:
    """Wall time of ``command`` run in a fresh course of ``students`` submissions, the machine's CPU time and load
    meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        root = course(Path(tmp), students, kind)
        load_before = os.getloadavg()[0]
        cpu_before = machine_cpu()
        start = time.perf_counter()
        subprocess.run(command, cwd=root, env=env(), check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        cpu = machine_cpu() - cpu_before
        return {"wall_s": round(wall, 1), "submissions_per_minute": round(60 * students / wall, 1),
                "machine_cpu_s": round(cpu, 1), "machine_cpu_s_per_submission": round(cpu / students, 2),
                "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}


def kernel_start_s(kind: str, starts: int) -> float:
    """Median seconds from starting a course kernel (``cnncourse.grading`` imported first) to its kernel_info
    reply: ``kind`` is warm, cold or unsandboxed."""
    import asyncio

    from traitlets.config import Config

    from cnncourse.autograde.kernel import SandboxedKernelManager
    from cnncourse.autograde.settings import KERNEL_ARGUMENTS

    async def one(folder: str) -> float:
        config = Config()
        config.Sandbox.mode = "none" if kind == "unsandboxed" else "bwrap"
        config.Sandbox.warm = kind == "warm"
        km = SandboxedKernelManager(kernel_name="python3", config=config)
        start = time.perf_counter()
        await km.start_kernel(extra_arguments=KERNEL_ARGUMENTS, cwd=folder)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=120)
            return time.perf_counter() - start
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)
            await km.cleanup_resources()

    with tempfile.TemporaryDirectory() as folder:
        os.environ.update(env())
        return statistics.median(asyncio.run(one(folder)) for _ in range(starts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=16, help="submissions per batch (default 16)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel batch (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="batches of each kind, alternated (default 2)")
    parser.add_argument("--starts", type=int, default=5, help="kernels started to time start-up (default 5)")
    args = parser.parse_args()
    parallel_cmd = [sys.executable, "-m", "cnncourse.autograde", "autograde", AID, "--jobs", str(args.jobs),
                    "--no-progress"]
    serial_cmd = [sys.executable, "-m", "nbgrader", "autograde", AID]
    starts = {kind: round(kernel_start_s(kind, args.starts), 2) for kind in KINDS}
    runs: dict[str, list[dict]] = {"serial cold": [], "serial warm": [], **{f"jobs={args.jobs} {k}": [] for k in KINDS}}
    for _ in range(args.repeats):
        runs["serial cold"].append(timed(serial_cmd, args.students, "cold"))
        runs["serial warm"].append(timed(serial_cmd, args.students, "warm"))
        for kind in KINDS:
            runs[f"jobs={args.jobs} {kind}"].append(timed(parallel_cmd, args.students, kind))
    best = {name: min(r, key=lambda x: x["wall_s"]) for name, r in runs.items()}
    baseline, ours = best["serial cold"], best[f"jobs={args.jobs} warm"]
    result = {
        "assignment": AID,
        "students": args.students,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "best": best,
        "runs": runs,
        # make autograde (warm, sandboxed) over nbgrader's own way (serial, a cold kernel per notebook).
        "speedup_vs_serial_nbgrader": round(ours["submissions_per_minute"] / baseline["submissions_per_minute"], 2),
        "parallel_scaling_warm": round(ours["submissions_per_minute"]
                                       / best["serial warm"]["submissions_per_minute"], 2),
        "sandboxed_vs_unsandboxed_throughput": round(
            best[f"jobs={args.jobs} unsandboxed"]["wall_s"] / ours["wall_s"], 3),
        "kernel_start_s": starts,
        "note": "wall time of a whole batch (the grader's start-up, a kernel per notebook, all cells incl. hidden "
                "tests); machine CPU is every process's (kernels and zygotes included); load_1min is the machine's "
                "1-minute load average: with other jobs running, every figure is a lower bound",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("best", "speedup_vs_serial_nbgrader", "kernel_start_s")}, indent=1))


if __name__ == "__main__":
    main()
