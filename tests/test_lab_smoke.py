"""`make lab` starts a JupyterLab that really serves the course: start it headless and ask it."""

import json
from pathlib import Path

import pytest

from tests.lab import http_get, running_lab

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
