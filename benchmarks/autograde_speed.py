"""Autograding throughput of A1: submissions per minute, serial ``nbgrader autograde`` vs ``make autograde JOBS=n``,
each kernel sandboxed (the course's default) and, side by side in the same run, unsandboxed (``c.Sandbox.mode =
"none"``); and the start-up cost of one sandboxed kernel.

Builds a temporary copy of the course, regenerates the release, submits the reference answers for N
students, and times one serial ``nbgrader autograde`` batch and parallel batches
(``python -m cnncourse.autograde autograde --jobs n``, sandboxed and not, alternated ``--repeats`` times so that a
change of the machine's load hits both alike), each in a fresh copy: wall time and the CPU time of all their
processes (kernels included). The machine's load is recorded with the result: other jobs on a shared machine slow
every figure; the CPU time gives an idle-machine estimate. The start-up cost is the median time from starting a
kernel to its first reply (``kernel_info``), sandboxed and not, over ``--starts`` kernels. Writes
benchmarks/results/autograde_speed.json.

    python benchmarks/autograde_speed.py [--students 8] [--jobs 2] [--repeats 2] [--starts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
from cnncourse.autograde.inprocess import fill_answers  # noqa: E402

AID = "a1-convolution"
RESULT = ROOT / "benchmarks" / "results" / "autograde_speed.json"


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def course(tmp: Path, students: int, sandbox: bool = True) -> Path:
    """A course copy with the release regenerated and ``students`` correct submissions (kernels unsandboxed when
    ``sandbox`` is False)."""
    config = (ROOT / "nbgrader_config.py").read_text()
    (tmp / "nbgrader_config.py").write_text(config if sandbox else config + '\nc.Sandbox.mode = "none"\n')
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


def timed(command: list[str], students: int, sandbox: bool = True) -> dict:
    """Wall time of ``command`` run in a fresh course of ``students`` submissions, and the load meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        root = course(Path(tmp), students, sandbox)
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


def kernel_start_s(sandbox: bool, starts: int) -> float:
    """Median seconds from starting a course kernel (``cnncourse.grading`` imported first) to its kernel_info
    reply, in the sandbox or not."""
    import asyncio

    from traitlets.config import Config

    from cnncourse.autograde.kernel import SandboxedKernelManager
    from cnncourse.autograde.settings import KERNEL_ARGUMENTS

    async def one(folder: str) -> float:
        config = Config()
        config.Sandbox.mode = "bwrap" if sandbox else "none"
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
    parser.add_argument("--students", type=int, default=8, help="submissions per batch (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel batch (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="parallel batches of each kind, alternated (default 2)")
    parser.add_argument("--starts", type=int, default=5, help="kernels started to time start-up (default 5)")
    args = parser.parse_args()
    parallel_cmd = [sys.executable, "-m", "cnncourse.autograde", "autograde", AID, "--jobs", str(args.jobs),
                    "--no-progress"]
    start_sandboxed, start_plain = kernel_start_s(True, args.starts), kernel_start_s(False, args.starts)
    serial = timed([sys.executable, "-m", "nbgrader", "autograde", AID], args.students)
    runs = {"sandboxed": [], "unsandboxed": []}
    for _ in range(args.repeats):
        runs["sandboxed"].append(timed(parallel_cmd, args.students, sandbox=True))
        runs["unsandboxed"].append(timed(parallel_cmd, args.students, sandbox=False))
    best = {kind: min(r, key=lambda x: x["wall_s"]) for kind, r in runs.items()}
    parallel = best["sandboxed"]
    result = {
        "assignment": AID,
        "students": args.students,
        "serial_nbgrader_autograde": serial,
        f"parallel_jobs_{args.jobs}": parallel,
        f"parallel_jobs_{args.jobs}_unsandboxed": best["unsandboxed"],
        "parallel_runs": runs,
        "speedup": round(serial["wall_s"] / parallel["wall_s"], 2),
        # Throughput kept by the sandbox: best sandboxed batch over best unsandboxed batch (wall time). CPU time
        # cannot be compared: a sandboxed kernel's CPU time is not reported to this process (getrusage counts only
        # descendants that were waited for, and the sandbox's init process is killed, not waited for).
        "sandboxed_vs_unsandboxed_throughput": round(best["unsandboxed"]["wall_s"] / parallel["wall_s"], 3),
        "kernel_start_s": {"sandboxed": round(start_sandboxed, 2), "unsandboxed": round(start_plain, 2),
                           "sandbox_cost_per_submission": round(start_sandboxed - start_plain, 2)},
        # CPU seconds (nbgrader, workers and kernels) depend less on other jobs than wall time: an upper bound of
        # what an otherwise idle machine with these cores grades per minute with the parallel runner (it ignores
        # the waits of kernel start-up and messaging, which the workers overlap); from the unsandboxed batch,
        # whose kernels' CPU time is counted (see above).
        "idle_upper_bound_submissions_per_minute": round(
            60 * min(args.jobs, os.cpu_count() or 1) / best["unsandboxed"]["cpu_s_per_submission"], 1),
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
