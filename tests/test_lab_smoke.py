"""`make lab` starts a JupyterLab that really serves the course: start it headless and ask it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import JUPYTER_CONFIG, JUPYTER_DATA, http_get, running_lab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lab(tmp_path):
    with running_lab(ROOT, tmp_path) as lab:
        yield lab


def test_jupyter_lab_serves_the_lectures(lab):
    status, body = http_get(lab.url("lab"))
    assert status == 200 and b"JupyterLab" in body
    notebooks = sorted(p.name for p in (ROOT / "lectures").glob("*.ipynb"))
    assert notebooks, "lectures/ holds no notebook"
    status, body = http_get(lab.url(f"api/contents/lectures/{notebooks[0]}"))
    model = json.loads(body)
    assert status == 200 and model["type"] == "notebook"
    assert model["content"]["cells"], "the served notebook is empty"
    assert model["content"]["metadata"]["kernelspec"]["name"] == "python3"


def test_make_lab_runs_with_the_course_jupyter_settings():
    """``make lab`` and the tests' labs (tests/lab.py) put the same folders first: they cannot drift apart."""
    command = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(x for x in command.splitlines() if "jupyter lab" in x)
    assert f"JUPYTER_CONFIG_PATH={JUPYTER_CONFIG}$" in line and f"JUPYTER_PATH={JUPYTER_DATA}$" in line, line
    assert f'PATH="{ROOT / ".venv" / "bin"}:' in line or f'PATH="{Path(sys.executable).parent}:' in line, line


def test_lab_serves_mathjax_offline_and_turns_the_news_off(lab):
    for path in ("static/mathjax2/MathJax.js", "static/mathjax2/config/TeX-AMS_CHTML-full.js"):
        try:
            status, body = http_get(lab.url(path))
        except OSError as err:
            raise AssertionError(f"{path} is not served ({err}): run `make node` (node_modules/mathjax2)") from err
        assert status == 200 and b"MathJax" in body
    status, body = http_get(lab.url("lab/api/settings/@jupyterlab/apputils-extension:notification"))
    schema = json.loads(body)["schema"]["properties"]
    assert schema["fetchNews"]["default"] == "false" and schema["checkForUpdates"]["default"] is False
