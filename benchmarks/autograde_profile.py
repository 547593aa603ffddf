"""Where one submission's autograding time goes: nbgrader's own work, the gradebook, the course's preprocessors,
kernel start, imports, cells and kernel stop; A1 and A4, serial and parallel, kernels started cold and warm.

Each batch grades ``--students`` copies of the reference answers through nbgrader's API (what ``nbgrader autograde``
and each ``make autograde`` worker run), with timers around nbgrader's ``Gradebook`` methods, the course's
preprocessors, nbclient's kernel start, cell execution and kernel stop. Each phase gets its wall time (time inside
it, minus the phases nested in it) and the CPU time the whole machine spent meanwhile (kernels and zygotes
included; on an idle machine that is the grading's). "nbgrader" is the rest of each submission's wall time: its
application, file copies, its own preprocessors and writing the notebook. Imports are timed apart, in fresh
processes: what a cold kernel imports and what a warm one still imports (``cnncourse.grading``, torch preloaded).
The first submission of each batch is left out (it starts the worker's zygote: a one-off per worker).
Writes benchmarks/results/autograde_profile.json with the CPU model and the load.

    python benchmarks/autograde_profile.py [--students 6] [--jobs 2] [--assignments a1-convolution a4-malaria]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cnncourse.runtime import cpu_model  # noqa: E402
from tests.assignments import BY_ID  # noqa: E402
from tests.grading_support import Submission, make_course, nbgrader_env  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "autograde_profile.json"
PHASES = ["nbgrader", "gradebook", "preprocessors", "kernel_start", "cells", "kernel_stop", "execute_other"]
_HZ = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _HZ  # minus idle and iowait


class Profile:
    """Exclusive wall and machine-CPU seconds per phase (a phase inside another is not counted twice)."""

    def __init__(self) -> None:
        self.totals = defaultdict(lambda: [0.0, 0.0])
        self.stack: list[list] = []

    def enter(self, phase: str) -> None:
        self.stack.append([phase, time.perf_counter(), machine_cpu(), 0.0, 0.0])

    def leave(self) -> None:
        phase, wall0, cpu0, inner_wall, inner_cpu = self.stack.pop()
        wall, cpu = time.perf_counter() - wall0, machine_cpu() - cpu0
        self.totals[phase][0] += wall - inner_wall
        self.totals[phase][1] += cpu - inner_cpu
        if self.stack:
            self.stack[-1][3] += wall
            self.stack[-1][4] += cpu

    def take(self) -> dict[str, list[float]]:
        out = {k: [round(w, 3), round(c, 3)] for k, (w, c) in self.totals.items()}
        self.totals.clear()
        return out


PROFILE = Profile()


def _timed(phase: str, function):
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def wrapper(*args, **kwargs):
            PROFILE.enter(phase)
            try:
                return await function(*args, **kwargs)
            finally:
                PROFILE.leave()
    else:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            PROFILE.enter(phase)
            try:
                return function(*args, **kwargs)
            finally:
                PROFILE.leave()
    wrapper.__profiled__ = True
    return wrapper


def install() -> None:
    """Put the timers around the phases (in this process)."""
    from nbclient import NotebookClient
    from nbgrader.api import Gradebook

    from cnncourse.autograde import preprocessors
    from cnncourse.autograde.kernel import SandboxedExecute

    if getattr(SandboxedExecute.preprocess_cell, "__profiled__", False):
        return
    for name, member in vars(Gradebook).items():
        if inspect.isfunction(member) and (not name.startswith("_") or name in ("__init__", "__exit__")):
            setattr(Gradebook, name, _timed("gradebook", member))
    for cls in vars(preprocessors).values():
        if isinstance(cls, type) and cls.__module__ == preprocessors.__name__ and "preprocess" in vars(cls):
            cls.preprocess = _timed("preprocessors", cls.preprocess)
    SandboxedExecute.preprocess = _timed("execute_other", SandboxedExecute.preprocess)
    SandboxedExecute.start_new_kernel_client = _timed("kernel_start", SandboxedExecute.start_new_kernel_client)
    SandboxedExecute.preprocess_cell = _timed("cells", SandboxedExecute.preprocess_cell)
    NotebookClient._cleanup_kernel = _timed("kernel_stop", NotebookClient._cleanup_kernel)  # the sync one it calls


def grade_one(api, assignment: str, student: str) -> dict:
    """Autograde one submission; its phases, with "nbgrader" the rest of its wall time."""
    PROFILE.take()
    start_wall, start_cpu = time.perf_counter(), machine_cpu()
    result = api.autograde(assignment, student, force=True, create=True)
    wall, cpu = time.perf_counter() - start_wall, machine_cpu() - start_cpu
    if not result["success"]:
        raise RuntimeError(f"{student} was not graded: {(result.get('error') or result.get('log'))[-2000:]}")
    phases = PROFILE.take()
    phases["nbgrader"] = [round(wall - sum(w for w, _ in phases.values()), 3),
                          round(cpu - sum(c for _, c in phases.values()), 3)]
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "phases": phases}


def _api(course: Path, warm: bool):
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from cnncourse.autograde.parallel import load_config

    config = load_config(course)
    config.CourseDirectory.root = str(course)
    config.Sandbox.warm = warm
    os.chdir(course)
    return NbGraderAPI(CourseDirectory(config=config), config=config)


_WORKER_API = None


def _start_worker(course: str, warm: bool, threads: int | None) -> None:
    global _WORKER_API
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # as make autograde sets it: cores // jobs
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    install()
    _WORKER_API = _api(Path(course), warm)


def _worker_grade(task: tuple[str, str]) -> dict:
    return grade_one(_WORKER_API, *task)


def batch(course: Path, assignment: str, students: list[str], jobs: int, warm: bool, threads: int | None = None
          ) -> dict:
    """Grade ``students`` (serial in this process, or ``jobs`` worker processes, their kernels with ``threads``
    torch threads, None: all cores); the per-submission profiles."""
    load = os.getloadavg()[0]
    start_wall, start_cpu = time.perf_counter(), machine_cpu()
    first = jobs  # each worker's first submission starts its zygote (warm) and its imports: left out
    if jobs == 1:
        install()
        api = _api(course, warm)
        runs = [grade_one(api, assignment, s) for s in students]
        os.chdir(ROOT)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_start_worker, initargs=(str(course), warm, threads)) as pool:
            runs = pool.map(_worker_grade, [(assignment, s) for s in students], chunksize=1)
    wall, cpu = time.perf_counter() - start_wall, machine_cpu() - start_cpu
    steady = runs[first:]
    phases = {p: [round(statistics.mean(r["phases"].get(p, [0, 0])[i] for r in steady), 3) for i in (0, 1)]
              for p in PHASES}
    return {"students": len(students), "jobs": jobs, "warm": warm, "kernel_threads": threads or os.cpu_count(),
            "wall_s": round(wall, 1),
            "submissions_per_minute": round(60 * len(students) / wall, 1), "machine_cpu_s": round(cpu, 1),
            "load_1min_before": round(load, 2),
            "per_submission_after_the_first": {
                "wall_s": round(statistics.mean(r["wall_s"] for r in steady), 2),
                "wall_s_median": round(statistics.median(r["wall_s"] for r in steady), 2),
                "machine_cpu_s": round(statistics.mean(r["cpu_s"] for r in steady), 2),
                "phases_wall_s_and_machine_cpu_s": phases}}


def import_cost() -> dict:
    """CPU seconds of a cold kernel's imports and of what a warm kernel still imports, in fresh processes."""
    code = ("import resource, time, importlib\n"
            "for m in {pre}: importlib.import_module(m)\n"
            "r0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter()\n"
            "for m in {mods}: importlib.import_module(m)\n"
            "r1 = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(time.perf_counter() - t, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)")
    from cnncourse.autograde.sandbox import Sandbox

    warm_modules = list(Sandbox().warm_modules)
    out = {}
    for name, pre, mods in [("cold_kernel", [], [*warm_modules, "cnncourse.grading"]),
                            ("warm_kernel", warm_modules, ["cnncourse.grading"])]:
        runs = []
        for _ in range(3):
            done = subprocess.run([sys.executable, "-c", code.format(pre=pre, mods=mods)], capture_output=True,
                                  text=True, check=True, env=nbgrader_env(), cwd=ROOT)
            runs.append([float(x) for x in done.stdout.split()])
        out[name] = {"modules": mods, "wall_s": round(statistics.median(r[0] for r in runs), 2),
                     "cpu_s": round(statistics.median(r[1] for r in runs), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6, help="submissions per batch (default 6)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel batches (default 2)")
    parser.add_argument("--assignments", nargs="+", default=["a1-convolution", "a4-malaria"])
    args = parser.parse_args()
    results = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
               "date": time.strftime("%Y-%m-%d %H:%M"), "imports": import_cost(), "batches": {}}
    for aid in args.assignments:
        a = BY_ID[aid]
        os.environ.update(nbgrader_env(a))
        students = {f"student{k:03d}": Submission(a.correct(), files=a.files(a)) for k in range(args.students)}
        share = max(1, (os.cpu_count() or 1) // args.jobs)
        runs = [(1, False, None), (1, True, None), (args.jobs, False, share), (args.jobs, True, share),
                (args.jobs, True, None)]  # the last: each kernel's torch on every core, as before make autograde
        for jobs, warm, threads in runs:
            with tempfile.TemporaryDirectory() as tmp:
                course = make_course(Path(tmp), a, students)
                key = (f"{aid} {'serial' if jobs == 1 else f'jobs={jobs}'} {'warm' if warm else 'cold'}"
                       + (f" threads={threads or os.cpu_count()}" if jobs > 1 else ""))
                results["batches"][key] = batch(course, aid, list(students), jobs, warm, threads)
                print(key, json.dumps(results["batches"][key]["per_submission_after_the_first"]), flush=True)
    RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
