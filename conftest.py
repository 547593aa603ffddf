"""Repository-wide pytest set-up: quick mode for notebooks, and what never to collect."""

import os

# Notebooks read CNNCOURSE_QUICK to shrink data and epochs; kernels started by nbval inherit it.
os.environ.setdefault("CNNCOURSE_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# The student release is generated (its answer cells are empty) and nbgrader's working folders hold
# submissions: neither is a notebook that must run.
collect_ignore_glob = ["assignments/*", ".nbgrader/*", "benchmarks/*"]
