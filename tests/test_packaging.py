"""The environment files agree, and the set-up commands do what the README says."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pyproject_requirements() -> dict[str, str]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in pip if not r.startswith("-e")}
    assert listed == _pyproject_requirements()
    assert any(r.startswith("-e .[") for r in pip), "environment.yml must install the course package itself"
    assert "python=3.11" in env["dependencies"]


def test_dependencies_are_ranges_not_pins():
    for name, spec in _pyproject_requirements().items():
        assert spec, f"{name} has no version bound"
        assert "==" not in spec, f"{name} is pinned ({spec}); use a range"
    assert _pyproject_requirements()["torch"].startswith(">=")


def test_makefile_has_the_two_commands_and_ci_calls_make_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks `{target}`"
    assert "sha256sum pyproject.toml" in makefile  # the venv stamp is keyed on pyproject's content
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "set -euo pipefail" in ci
    assert ci.index("apt-get install -y chromium") < ci.index("make test")  # the browser tests run in CI
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make lab") < readme.index("## Course map")
    assert "make test" in readme
