"""In a real browser: JupyterLab shows the lectures' widgets and nbgrader's Validate button works.

Headless tests cannot see a widget that renders nothing in JupyterLab (a missing front-end extension, an
output that never redraws). These tests start ``jupyter lab`` on a temporary copy of the course, drive
Debian's Chromium with Playwright and check what a student sees:

* lecture 01 runs from top to bottom without an error in any cell, its conv explorer renders, and moving the
  stride slider changes the output size it shows (and redraws the figure);
* the A1 release, opened as a student would, reports its unanswered cells when Validate is pressed.

Each test saves a screenshot under its pytest temp folder (the path is in the failure message). Without
Chromium or Playwright they skip; to run them: ``apt-get install -y chromium`` (as root; ``.ci/run`` does it)
and ``pip install -e '.[test]'`` (Playwright's own browser download is not needed: the system one is used).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest

from cnncourse.explorers import conv_output_text
from tests.lab import running_lab

ROOT = Path(__file__).resolve().parents[1]
LECTURE = Path("lectures") / "01_convolution.ipynb"
A1 = Path("assignments") / "a1-convolution" / "a1-convolution.ipynb"
CHROMIUM = os.environ.get("CNNCOURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
HOW = ("to run the browser tests install Debian's Chromium (`apt-get install -y chromium`, as root; .ci/run does "
       "it) and Playwright (`pip install -e '.[test]'`)")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-default-apps", "--disable-sync"]

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason=f"Playwright is not installed: {HOW}"),
    pytest.mark.skipif(CHROMIUM is None, reason=f"no chromium on PATH: {HOW}"),
]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A temporary copy of what the tests open: a browser saves notebooks, committed files must not change."""
    root = tmp_path_factory.mktemp("course")
    for rel in (LECTURE, A1):
        if (ROOT / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, root / rel)
    return root


@pytest.fixture(scope="module")
def lab(course, tmp_path_factory):
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "CNNCOURSE_QUICK": "1", "OMP_NUM_THREADS": "1"}
    # Render every cell (no virtual scrolling): outputs below the fold are in the page and readable.
    settings = {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}
    with running_lab(course, tmp_path_factory.mktemp("lab"), ["--LabApp.expose_app_in_browser=True"], env,
                     settings) as lab:
        yield lab


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


@contextlib.contextmanager
def screenshot_on_failure(page: Page, path: Path):
    """Save a screenshot of ``page`` at ``path`` when the block ends; a failure message names it."""
    try:
        yield
    except Exception as err:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
        raise AssertionError(f"{err}\nscreenshot: {path}") from err
    with contextlib.suppress(Exception):
        page.screenshot(path=str(path), full_page=True)


NOTEBOOK_READY = """(path) => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!w || !w.context || w.context.path !== path || !w.context.isReady) return false;
    const kernel = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the front tab


def open_notebook(page: Page, lab, rel: Path) -> None:
    """Open ``rel`` alone (``?reset``: no tabs restored from an earlier page) and wait for its kernel."""
    page.goto(lab.url(f"lab/tree/{rel.as_posix()}?reset"))
    page.wait_for_function(NOTEBOOK_READY, arg=rel.as_posix(), timeout=60_000)


def shown_errors(page: Page) -> list[str]:
    """Texts of outputs that show an error: tracebacks, and widgets that could not be displayed."""
    texts = page.eval_on_selector_all(
        ".jp-OutputArea-output", "nodes => nodes.map(n => [n.dataset.mimeType || '', n.innerText])")
    return [text[:500] for mime, text in texts
            if ("stderr" in mime and ("Traceback" in text or "Error" in text)) or "Error displaying widget" in text]


def test_lecture_01_runs_and_its_conv_explorer_follows_the_stride_slider(lab, course, page, tmp_path):
    if not (course / LECTURE).exists():
        pytest.skip(f"{LECTURE} is not in this checkout yet")
    with screenshot_on_failure(page, tmp_path / "lecture01.png"):
        open_notebook(page, lab, LECTURE)
        page.evaluate("""() => { window.__ranAll = undefined;
            window.jupyterapp.commands.execute('notebook:run-all-cells').then(ok => { window.__ranAll = ok; }); }""")
        page.wait_for_function("() => window.__ranAll !== undefined", timeout=240_000)
        errors = shown_errors(page)
        assert not errors, f"cells show errors: {errors}"
        assert page.evaluate("() => window.__ranAll") is True, "Run All stopped before the last cell"

        label = page.locator(f"{ACTIVE} .cnncourse-conv-output").first
        label.wait_for(timeout=30_000)
        label.scroll_into_view_if_needed()
        explorer = label.locator("xpath=..")  # the explorer's VBox: sliders, label, output
        figure = explorer.locator(".widget-output img").first
        figure.wait_for(timeout=30_000)

        def settings() -> dict[str, int]:
            values = {}
            for slider in explorer.locator(".widget-slider").all():
                name = slider.locator(".widget-label").inner_text().strip()
                values[name] = int(slider.locator(".widget-readout").inner_text())
            return values

        def expected(values: dict[str, int]) -> str:
            return conv_output_text(values["input size"], values["kernel"], values["stride"], values["padding"],
                                    values["dilation"])

        before, image_before, text_before = settings(), figure.get_attribute("src"), label.inner_text().strip()
        assert text_before == expected(before)
        handle = explorer.locator(".widget-slider", has_text="stride").locator(".noUi-handle")
        handle.focus()
        page.keyboard.press("ArrowRight" if before["stride"] < 4 else "ArrowLeft")
        page.wait_for_function(
            "([el, old]) => el.innerText.trim() !== old", arg=[label.element_handle(), text_before], timeout=30_000)
        after = settings()
        assert after["stride"] != before["stride"] and {k: v for k, v in after.items() if k != "stride"} == {
            k: v for k, v in before.items() if k != "stride"}
        assert label.inner_text().strip() == expected(after) != expected(before)
        page.wait_for_function(  # the Output replaces its picture: look the <img> up again each time
            "([box, old]) => { const img = box.querySelector('.widget-output img'); "
            "return !!img && img.getAttribute('src') !== old; }",
            arg=[explorer.element_handle(), image_before], timeout=30_000)


def test_a1_release_validate_reports_the_unanswered_cells(lab, course, page, tmp_path):
    if not (course / A1).exists():
        pytest.skip(f"{A1} is not in this checkout")
    cells = json.loads((course / A1).read_text())["cells"]
    graded = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    with screenshot_on_failure(page, tmp_path / "a1_validate.png"):
        open_notebook(page, lab, A1)
        page.locator(f"{ACTIVE} .validate-button").click()
        dialog = page.locator(".jp-Dialog", has_text="Validation Results")
        dialog.wait_for(timeout=120_000)
        body = dialog.locator(".jp-Dialog-body").inner_text()
        failed = body.count("The following cell failed:")
        assert failed == len(graded), f"{failed} cells reported failing, expected every graded cell ({len(graded)})"
        assert "YOUR ANSWER HERE" in body  # the unanswered written answer is among them
        first_test = next(c for c in graded if "solution" not in c["metadata"]["nbgrader"]
                          or not c["metadata"]["nbgrader"]["solution"])
        assert "".join(first_test["source"]).splitlines()[0] in body
