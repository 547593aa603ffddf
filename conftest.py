"""Repository-wide pytest set-up: quick mode for notebooks, and what never to collect."""

import os
import shutil
from pathlib import Path

import pytest

# Notebooks read CNNCOURSE_QUICK to shrink data and epochs; kernels started by nbval inherit it.
os.environ.setdefault("CNNCOURSE_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# The student release is generated (its answer cells are empty) and nbgrader's working folders hold
# submissions: neither is a notebook that must run.
collect_ignore_glob = ["assignments/*", ".nbgrader/*", "benchmarks/*"]

# `make test-fast` (-m "not slow") runs the package and grading logic only: these modules start kernels, servers
# or browsers, grade whole batches or train (tests/.. paths); notebooks under lectures/ and solutions/ too.
SLOW_MODULES = {"test_assignments.py", "test_browser.py", "test_lab_smoke.py", "test_grading_margins.py",
                "test_cli_malaria.py", "test_data_malaria_real.py", "test_autograde_harness.py", "test_sandbox.py",
                "test_zygote.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path
        if path.suffix == ".ipynb" or path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)

# nbval runs the solution notebooks in place, and A4's quick run saves its (useless) model.pt beside itself. A
# model.pt trained there by a full run is set aside before the session and put back after it (an interrupted
# session leaves the copy, which the next one keeps and puts back).
_KEPT: list[tuple[Path, Path]] = []


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controlling process does this once
        return
    for model in Path(__file__).parent.glob("solutions/*/model.pt"):
        kept = model.with_name("model.kept-during-tests.pt")
        if not kept.exists():
            shutil.copy2(model, kept)
        _KEPT.append((model, kept))


def pytest_unconfigure(config):
    for model, kept in _KEPT:
        shutil.move(kept, model)
