# Two commands set everything up on a fresh machine:
#   make lab    create/refresh .venv, install the course, open JupyterLab on it
#   make test   the same set-up, then ruff and every test (package, notebooks, nbgrader round trips, the site)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp is keyed on pyproject.toml's content: a changed dependency list reinstalls.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
JOBS ?= 2
PORT ?= 8888
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup node site hub lab test test-fast lint format clean-venv notebooks release autograde feedback grades mutation audit leaderboard

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[course,test,site,hub]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

# Front-end assets served locally (MathJax, configurable-http-proxy), pinned by package-lock.json.
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json | sha256sum | cut -c1-16)
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-*
	@touch $(NODE_STAMP)

node: $(NODE_STAMP)

# The course's Jupyter settings (jupyter/README.md): no news toast; the formgrader's MathJax served from node_modules;
# the venv's bin/ on PATH (the formgrader runs alembic when it creates the gradebook). tests/lab.py's course_env too.
LAB_ENV := JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter/config$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH} \
	JUPYTER_PATH=$(CURDIR)/jupyter/data$${JUPYTER_PATH:+:$$JUPYTER_PATH} PATH="$(abspath $(VENV))/bin:$$PATH"

lab: $(STAMP) node
	$(LAB_ENV) $(VENV)/bin/jupyter lab --no-browser --port=$(PORT) $(ROOT_FLAG) --ServerApp.root_dir=$(CURDIR)

# The course on JupyterHub, one machine, as root (hub/README.md): grader account, course, exchange (1777), the
# users' Python, accounts from ROSTER (a CSV; once, or again when it changes), then the hub on $$CNNCOURSE_HUB_IP
# (127.0.0.1) port $$CNNCOURSE_HUB_PORT (8000). State under $$CNNCOURSE_HUB_STATE (/srv/cnncourse).
ROSTER ?=
hub: $(STAMP) node
	$(PY) -m cnncourse.hub setup
	$(if $(ROSTER),$(PY) -m cnncourse.hub roster $(ROSTER))
	$(VENV)/bin/jupyterhub -f hub/jupyterhub_config.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) $(NODE_STAMP) lint
	CNNCOURSE_QUICK=1 $(PY) -m pytest -n $(JOBS) --dist loadscope --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 --durations=25 tests lectures solutions

# The package and grading logic without notebooks, kernels, servers or browsers (conftest.py's SLOW_MODULES).
test-fast: $(STAMP) lint
	CNNCOURSE_QUICK=1 $(PY) -m pytest -n $(JOBS) -q -m "not slow" tests

# Re-execute every lecture in full (CNNCOURSE_QUICK=0), write outputs back without volatile metadata, and record
# full and quick wall times in benchmarks/results/notebook_times.json. NOTEBOOKS=lectures/03_pooling.ipynb for one.
NOTEBOOKS ?=
notebooks: $(STAMP)
	$(PY) scripts/run_notebooks.py $(if $(NOTEBOOKS),$(NOTEBOOKS),--all)

# The course website (Jupyter Book 1.x) from the committed notebooks, offline, into _site/ (git-ignored); the build
# time goes to benchmarks/results/site_build.json. Open _site/_build/html/index.html, or serve it:
#   python3 -m http.server --bind 127.0.0.1 --directory _site/_build/html 8000
# CNNCOURSE_HUB_URL, CNNCOURSE_REPO_URL, CNNCOURSE_REPO_BRANCH set the launch links (defaults: site/_config.yml).
site: $(STAMP) $(NODE_STAMP)
	$(PY) scripts/build_site.py --out _site --benchmark benchmarks/results/site_build.json

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .

clean-venv:
	rm -rf $(VENV)

# nbgrader (instructors): config in nbgrader_config.py, working state in .nbgrader/ (git-ignored).
# ASSIGNMENTS defaults to every folder under solutions/; `make autograde ASSIGNMENTS=a1-convolution`.
# nbgrader runs `alembic` when it creates the gradebook: the venv's bin/ must be on PATH.
NBGRADER := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/nbgrader
ASSIGNMENTS ?= $(patsubst solutions/%/,%,$(wildcard solutions/*/))

release: $(STAMP)
	@status=0; for a in $(ASSIGNMENTS); do cd $(CURDIR) && $(NBGRADER) generate_assignment $$a --force \
		&& rm -f assignments/$$a/*.pt || status=1; done; exit $$status

# Parallel autograde (JOBS worker processes, separate gradebooks merged; progress bar, summary at the end).
autograde: $(STAMP)
	@status=0; for a in $(ASSIGNMENTS); do cd $(CURDIR) && PATH="$(abspath $(VENV))/bin:$$PATH" \
		$(PY) -m cnncourse.autograde autograde $$a --jobs $(JOBS) || status=1; done; exit $$status

# Static + runtime report of submissions that tamper with grading; flagged ones are marked in the gradebook.
audit: $(STAMP)
	@status=0; for a in $(ASSIGNMENTS); do cd $(CURDIR) && $(PY) -m cnncourse.autograde audit $$a \
		--json .nbgrader/audit-$$a.json || status=1; done; exit $$status

# A4's ranking from the autograded notebooks: .nbgrader/leaderboard-<id>.csv and .html.
leaderboard: $(STAMP)
	@status=0; for a in $(ASSIGNMENTS); do cd $(CURDIR) && $(PY) -m cnncourse.autograde leaderboard $$a || status=1; done; \
		exit $$status

feedback: $(STAMP)
	@status=0; for a in $(ASSIGNMENTS); do cd $(CURDIR) && $(NBGRADER) generate_feedback $$a || status=1; done; exit $$status

grades: $(STAMP)
	cd $(CURDIR) && $(NBGRADER) export --to .nbgrader/grades.csv
	@echo "grades written to .nbgrader/grades.csv"

# Mutation report per assignment (known-wrong answers must lose points): benchmarks/results/mutation_<id>.json.
mutation: $(STAMP)
	for a in $(ASSIGNMENTS); do $(PY) benchmarks/mutation.py --assignment $$a || exit 1; done
