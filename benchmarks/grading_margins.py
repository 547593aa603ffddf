"""How close the reference solutions come to each bar of the checks that depend on random draws, training or
the order of floating-point sums, over seeds x torch threads x CPU kernels.

Each grade cell's test function runs as written in ``solutions/<id>/<id>.ipynb`` (hidden tests included) on
the reference answers, with torch seeded by ``--seeds`` different seeds instead of the cell's own, inside
:func:`cnncourse.margins.recording`: every ``within``/``at_least``/``at_most`` and every ``assert_close``
(its worst error as a share of the tolerance) is a measurement. One worker process per
``ATEN_CPU_CAPABILITY`` (torch's kernels; ``DNNL_MAX_CPU_ISA`` set to match for oneDNN) x thread count.
Writes ``benchmarks/results/grading_margins.json``: per assignment and grade cell, each check's bar and the
minimum, median and maximum of its measured value, and the worst margin.

    python benchmarks/grading_margins.py                      # every assignment, 20 seeds, 1 and 2 threads
    python benchmarks/grading_margins.py --assignment a3-architectures --seeds 20
    python benchmarks/grading_margins.py --check --capability default   # CI: the cells' own seeds must pass

The unit tests of ``cnncourse.train`` that train (``TRAIN_CHECKS``: functions taking a seed) are measured the
same way, as the suite ``train``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "grading_margins.json"

# The grade cells whose outcome depends on random draws, training or summation order, per assignment.
CELLS = {
    "a1-convolution": [
        "test_conv2d_naive", "test_conv2d_naive_hidden", "test_im2col", "test_im2col_hidden", "test_col2im",
        "test_col2im_hidden", "test_conv2d_im2col", "test_conv2d_im2col_hidden", "test_conv2d_backward",
        "test_conv2d_backward_hidden", "test_max_pool2d", "test_max_pool2d_hidden", "test_max_pool2d_backward",
        "test_max_pool2d_backward_hidden", "test_avg_pool2d", "test_avg_pool2d_hidden",
    ],
    "a2-init-batchnorm": [
        "test_xavier", "test_xavier_hidden", "test_he", "test_he_hidden", "test_init_weights",
        "test_init_weights_hidden", "test_batchnorm_train", "test_batchnorm_train_hidden", "test_batchnorm_eval",
        "test_batchnorm_eval_hidden", "test_batchnorm_backward", "test_batchnorm_backward_hidden", "test_dropout",
        "test_dropout_hidden", "test_dropout_backward", "test_dropout_backward_hidden",
    ],
    "a3-architectures": ["test_design_accuracy"],
    "a4-malaria": ["test_normalisation"],
}
# The unit tests of cnncourse.train whose outcome depends on training: module -> check functions taking a seed.
TRAIN_CHECKS = {"tests.test_train_loop": ["check_fit_on_blobs"],
                "tests.test_train_tensors": ["check_fit_tensors_on_cells"]}
SUITES = [*CELLS, "train"]
CAPABILITIES = ("default", "avx2", "avx512")
DNNL_ISA = {"default": "SSE41", "avx2": "AVX2", "avx512": "AVX512_CORE"}  # oneDNN's matching limit
_DECORATOR = re.compile(r'@graded_test\((["\'])(\w+)\1\)')


def _cells(aid: str) -> tuple[list[str], dict[str, str]]:
    """The notebook's non-grade code cells and the grade cells defining case tables (in order), and the chosen
    grade cells' sources."""
    from cnncourse.autograde.cells import grade_id, is_grade

    nb = json.loads((ROOT / "solutions" / aid / f"{aid}.ipynb").read_text())
    setup, tests = [], {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if is_grade(cell) and grade_id(cell) in CELLS[aid]:
            tests[grade_id(cell)] = source
        elif not is_grade(cell) or "define_cases(" in source:  # setup, and the hidden case tables the tests read
            setup.append(source)
    missing = set(CELLS[aid]) - tests.keys()
    if missing:
        raise SystemExit(f"{aid}: no grade cells {sorted(missing)} in the solution notebook; update CELLS")
    return setup, tests


def worker(aid: str, seeds: list[int | None], threads: int) -> dict:
    """Run the chosen grade cells once per seed in this process; return their measurements."""
    import torch

    from cnncourse import margins

    torch.set_num_threads(threads)
    if aid == "train":
        return _train_worker(seeds)
    os.environ["NBGRADER_EXECUTION"] = "autograde"  # the notebook skips its own training, as at grading time
    os.chdir(ROOT / "solutions" / aid)
    setup, tests = _cells(aid)
    namespace: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for source in setup:
            with contextlib.suppress(Exception):  # as in nbgrader, a failing cell does not stop the notebook
                exec(compile(source, "<setup cell>", "exec"), namespace)
    out: dict = {}
    for grade_id, source in tests.items():
        runs, failures = [], []
        for seed in seeds:
            code = source if seed is None else _DECORATOR.sub(rf'@graded_test("\2", seed={seed})', source)
            with margins.recording() as log, contextlib.redirect_stdout(io.StringIO()):
                try:
                    exec(compile(code, f"<{grade_id}>", "exec"), dict(namespace))
                except AssertionError as err:
                    failures.append({"seed": seed, "error": str(err)})
            runs.append([m.as_dict() for m in log])
        out[grade_id] = {"runs": runs, "failures": failures}
    return out


def _train_worker(seeds: list[int | None]) -> dict:
    import importlib

    from cnncourse import margins

    out: dict = {}
    for module, names in TRAIN_CHECKS.items():
        for name in names:
            check = getattr(importlib.import_module(module), name)
            runs, failures = [], []
            for seed in seeds:
                with margins.recording() as log:
                    try:
                        check(0 if seed is None else seed)
                    except AssertionError as err:
                        failures.append({"seed": seed, "error": str(err)})
                runs.append([m.as_dict() for m in log])
            out[f"{module}.{name}"] = {"runs": runs, "failures": failures}
    return out


def _spawn(aid: str, capability: str | None, threads: int, seeds: list[int | None]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CNNCOURSE_QUICK=os.environ.get("CNNCOURSE_QUICK", "1"))
    if capability:
        env.update(ATEN_CPU_CAPABILITY=capability, DNNL_MAX_CPU_ISA=DNNL_ISA[capability])
    cmd = [sys.executable, __file__, "--worker", "--assignment", aid, "--threads", str(threads),
           "--seed-list", json.dumps(seeds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker {aid} {capability} {threads} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def required_margin(kind: str, bar: float, check: str) -> float:
    """The margin a check must keep between the reference's worst case and its bar (``tests/test_grading_margins.py``).

    Statistical checks (``within``, k standard errors): one standard error (``bar / 6`` for k = 6). A training's
    accuracy: one point (0.01); its loss ratio: 0.05. ``assert_close`` (``at_most`` 1, the error as a share of the
    tolerance): half the tolerance. Bounds that a correct answer can only reach, never cross (a uniform sample's
    extent): none.
    """
    if kind == "within":
        return bar / 6
    if "accuracy" in check:
        return 0.01
    if "loss" in check:  # a training's loss ratio (unit tests of cnncourse.train)
        return 0.05
    if "[-a, a]" in check or "far from a" in check:
        return 0.0
    return bar / 2 if kind == "at_most" else 0.0


def summarise(results: dict) -> dict:
    """Per grade cell and check: bar, kind, min/median/max of the value and the worst margin over all runs."""
    cells: dict = {}
    for config, by_cell in results.items():
        for grade_id, got in by_cell.items():
            cell = cells.setdefault(grade_id, {"checks": {}, "failures": []})
            cell["failures"] += [{**f, "config": config} for f in got["failures"]]
            for run in got["runs"]:
                for m in run:
                    check = cell["checks"].setdefault(m["check"], {"kind": m["kind"], "bar": m["bar"], "values": []})
                    check["values"].append(m["value"])
    for cell in cells.values():
        for name, check in cell["checks"].items():
            values = check.pop("values")
            worst = min(values) if check["kind"] == "at_least" else max(values)
            check.update(n=len(values), min=min(values), median=statistics.median(values), max=max(values),
                         worst_margin=(worst - check["bar"]) if check["kind"] == "at_least" else check["bar"] - worst,
                         required_margin=required_margin(check["kind"], check["bar"], name))
        margins = [c["worst_margin"] for c in cell["checks"].values()]
        cell["worst_margin"] = min(margins) if margins else None
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="append", choices=SUITES,
                        help="an assignment, or 'train' for the unit tests of cnncourse.train (default: all)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per configuration (default 20)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated (default 1,2)")
    parser.add_argument("--capability", default=",".join(CAPABILITIES),
                        help="ATEN_CPU_CAPABILITY values, comma-separated; 'native' leaves it unset")
    parser.add_argument("--check", action="store_true",
                        help="run each cell once with its own seed and exit 1 if any check fails (CI)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed-list", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes at a time (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    aids = args.assignment or SUITES
    if args.worker:
        print(json.dumps(worker(aids[0], json.loads(args.seed_list), int(args.threads))))
        return
    seeds: list[int | None] = [None] if args.check else list(range(args.seeds))
    caps = [None if c == "native" else c for c in args.capability.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    results: dict = {aid: {} for aid in aids}
    start = time.time()

    def one(job: tuple[str, str | None, int]) -> None:
        aid, cap, t = job
        t0 = time.time()
        results[aid][f"{cap or 'native'}/{t}"] = _spawn(aid, cap, t, seeds)
        print(f"{aid} {cap or 'native'} threads={t}: {time.time() - t0:.0f} s", file=sys.stderr)

    jobs = [(aid, cap, t) for aid in aids for cap in caps for t in threads]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # each job is a worker process
        list(pool.map(one, jobs))
    summary = {aid: summarise(r) for aid, r in results.items()}
    failures = [(aid, gid, f) for aid, cells in summary.items() for gid, c in cells.items() for f in c["failures"]]
    if args.check:
        for aid, gid, f in failures:
            print(f"FAIL {aid} {gid} [{f['config']}]: {f['error']}", file=sys.stderr)
        sys.exit(1 if failures else 0)
    import torch

    from cnncourse.runtime import cpu_model

    run = {"seeds": args.seeds, "threads": threads, "capabilities": [c or "native" for c in caps],
           "quick": os.environ.get("CNNCOURSE_QUICK", "1"), "seconds": round(time.time() - start),
           "machine": {"cpu": cpu_model(), "torch": torch.__version__,
                       "native": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version()}}
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["what"] = __doc__.split("\n\n")[0].replace("\n", " ")
    report.setdefault("runs", {}).update({aid: run for aid in aids})  # a partial run keeps the other assignments
    report.setdefault("assignments", {}).update(summary)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} in {run['seconds']} s; failures: {len(failures)}", file=sys.stderr)


if __name__ == "__main__":
    main()
