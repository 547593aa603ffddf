"""In a real browser: JupyterLab shows the lectures' widgets and nbgrader's Validate button works.

Headless tests cannot see a widget that renders nothing in JupyterLab (a missing front-end extension, an
output that never redraws). These tests start ``jupyter lab`` on a temporary copy of the course, drive
Debian's Chromium with Playwright and check what a student sees:

* lecture 01 runs from top to bottom without an error in any cell, its conv explorer renders, and moving the
  stride slider changes the output size it shows (and redraws the figure);
* the A1 release, opened as a student would, reports its unanswered cells when Validate is pressed;
* each of the four explorers renders, and moving any of its controls redraws its figure (no error output, no
  console error); a control the setting ignores is disabled; the init explorer's controls do not wrap;
* JupyterLab shows no "Jupyter news" toast;
* the instructor opens nbgrader's formgrader on the course (a fresh copy: no banner, no critical log line), grades
  the hand-graded cell of an autograded A1 submission with points and a comment, and the submission's total
  follows; the notebook's math is typeset by the course's own MathJax (offline).

Each test saves a screenshot under its pytest temp folder (the path is in the failure message). Without
Chromium or Playwright they skip; to run them: ``apt-get install -y chromium`` (as root; ``.ci/run`` does it)
and ``pip install -e '.[test]'`` (Playwright's own browser download is not needed: the system one is used).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from cnncourse.autograde.cells import is_grade, is_solution
from cnncourse.explorers import conv_output_text
from tests.lab import course_env, running_lab

ROOT = Path(__file__).resolve().parents[1]
LECTURE = Path("lectures") / "01_convolution.ipynb"
A1 = Path("assignments") / "a1-convolution" / "a1-convolution.ipynb"
A1_SOURCE = Path("solutions") / "a1-convolution"
EXPLORERS = Path("explorers.ipynb")  # written by the course fixture: one explorer per cell
EXPLORER_CELLS = {
    "conv": "from cnncourse.explorers import conv_explorer\nconv_explorer()",
    "filter": "from cnncourse.explorers import filter_explorer\nfilter_explorer('chelsea')",
    "init": "from cnncourse.explorers import init_explorer\ninit_explorer()",
    "batchnorm": "from cnncourse.explorers import batchnorm_explorer\nbatchnorm_explorer()",
}
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
    """A temporary copy of what the tests open: a browser saves notebooks, committed files must not change.

    Like a fresh clone for the instructor: nbgrader_config.py and A1's source, no ``.nbgrader/`` yet."""
    root = tmp_path_factory.mktemp("course")
    for rel in (LECTURE, A1, Path("nbgrader_config.py")):
        if (ROOT / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, root / rel)
    shutil.copytree(ROOT / A1_SOURCE, root / A1_SOURCE)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in EXPLORER_CELLS.values()])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / EXPLORERS)
    assert not (root / ".nbgrader").exists()
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
    page = context.new_page()
    page.console_errors = []  # console errors and uncaught exceptions of the page, for the tests to check
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda err: page.console_errors.append(f"uncaught: {err}"))
    yield page
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
    graded = [c for c in cells if is_grade(c)]
    with screenshot_on_failure(page, tmp_path / "a1_validate.png"):
        open_notebook(page, lab, A1)
        page.locator(f"{ACTIVE} .validate-button").click()
        dialog = page.locator(".jp-Dialog", has_text="Validation Results")
        dialog.wait_for(timeout=120_000)
        body = dialog.locator(".jp-Dialog-body").inner_text()
        failed = body.count("The following cell failed:")
        assert failed == len(graded), f"{failed} cells reported failing, expected every graded cell ({len(graded)})"
        assert "YOUR ANSWER HERE" in body  # the unanswered written answer is among them
        first_test = next(c for c in graded if not is_solution(c))
        assert "".join(first_test["source"]).splitlines()[0] in body


def run_all(page: Page) -> None:
    page.evaluate("""() => { window.__ranAll = undefined;
        window.jupyterapp.commands.execute('notebook:run-all-cells').then(ok => { window.__ranAll = ok; }); }""")
    page.wait_for_function("() => window.__ranAll !== undefined", timeout=240_000)
    assert page.evaluate("() => window.__ranAll") is True, "Run All stopped before the last cell"


def move(page: Page, control) -> str:
    """Change one ipywidgets control as a user would (slider: arrow key; menu: next option; toggle: another
    button); returns what was done."""
    classes = control.get_attribute("class") or ""
    if "widget-slider" in classes:
        handle = control.locator(".noUi-handle")
        handle.focus()
        at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
        return "slider " + ("left" if at_max else "right")
    if "widget-dropdown" in classes:
        select = control.locator("select")
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("s => s.options[s.selectedIndex].text")
        new = options[(options.index(current) + 1) % len(options)]
        select.select_option(label=new)
        return f"menu {new}"
    if "widget-toggle-buttons" in classes:
        button = control.locator("button:not(.mod-active)").first
        label = button.inner_text()
        button.click()
        return f"toggle {label}"
    raise AssertionError(f"no way to move a control with classes {classes!r}")


def figure_src(explorer) -> str:
    return explorer.locator(".widget-output img").first.get_attribute("src")


def wait_for_new_figure(page: Page, explorer, old: str, what: str) -> None:
    page.wait_for_function(  # the Output replaces its picture: look the <img> up again each time
        "([box, old]) => { const img = box.querySelector('.widget-output img'); "
        "return !!img && img.getAttribute('src') !== old; }",
        arg=[explorer.element_handle(), old], timeout=30_000)
    assert figure_src(explorer) != old, what


@pytest.mark.parametrize("name", list(EXPLORER_CELLS))
def test_explorer_redraws_when_any_control_moves(lab, page, tmp_path, name):
    with screenshot_on_failure(page, tmp_path / f"{name}_explorer.png"):
        open_notebook(page, lab, EXPLORERS)
        run_all(page)
        explorer = page.locator(f"{ACTIVE} .cnncourse-{name}-explorer")
        explorer.locator(".widget-output img").first.wait_for(timeout=60_000)
        explorer.scroll_into_view_if_needed()
        explorer.screenshot(path=str(tmp_path / f"{name}_before.png"))
        controls = explorer.locator(".widget-hbox > *").all()
        assert len(controls) >= 2, f"{name}: {len(controls)} controls found"
        for i, control in reversed(list(enumerate(controls))):  # the filter menu last: sigma acts on the Gaussian
            old = figure_src(explorer)
            what = move(page, control)
            wait_for_new_figure(page, explorer, old, f"{name}: control {i} ({what}) did not redraw the figure")
        explorer.screenshot(path=str(tmp_path / f"{name}_after.png"))
        if name == "filter":  # the menu moved from gaussian to sharpen: sigma is ignored, size still acts
            sigma = explorer.locator(".widget-slider", has_text="sigma")
            size = explorer.locator(".widget-slider", has_text="size")
            assert sigma.locator(".noUi-target[disabled]").count() == 1, "sigma is live for a filter without it"
            assert size.locator(".noUi-target[disabled]").count() == 0
            old = figure_src(explorer)
            explorer.locator("select").select_option("sobel_x")
            wait_for_new_figure(page, explorer, old, "choosing sobel_x did not redraw")
            assert size.locator(".noUi-target[disabled]").count() == 1, "size is live for a fixed-shape filter"
            explorer.screenshot(path=str(tmp_path / "filter_sobel.png"))
        if name == "init":  # no control wraps: the activation toggle's label and buttons on one line, gain beside depth
            toggle = explorer.locator(".widget-toggle-buttons")
            parts = [toggle.locator(".widget-label").first, *toggle.locator("button").all()]
            tops = [part.bounding_box()["y"] for part in parts]
            assert len(parts) == 4 and max(tops) - min(tops) < 10, f"the activation toggle wraps: {tops}"
            assert all(b.evaluate("b => b.scrollWidth <= b.clientWidth") for b in parts[1:]), "a label is cut"
            gain, depth = (explorer.locator(".widget-slider", has_text=t).bounding_box() for t in ("gain", "depth"))
            assert abs(gain["y"] - depth["y"]) < 2, (gain, depth)
        errors = shown_errors(page)
        assert not errors, f"outputs show errors: {errors}"
        assert not page.console_errors, f"console errors: {page.console_errors}"


NEWS = "Would you like to get notified about official Jupyter news?"


def test_no_jupyter_news_toast(lab, page, tmp_path):
    """JupyterLab asks while its fetchNews setting is "none" (whatever --LabApp.news_url says); the course's
    default_setting_overrides.json sets it to "false"."""
    with screenshot_on_failure(page, tmp_path / "lab_news.png"):
        page.goto(lab.url("lab?reset"))
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored", timeout=60_000)
        page.evaluate("() => window.jupyterapp.restored")
        fetch_news = page.evaluate("""async () => (await window.jupyterapp.serviceManager.settings.fetch(
            '@jupyterlab/apputils-extension:notification')).schema.properties.fetchNews.default""")
        assert fetch_news == "false"
        page.wait_for_timeout(2000)  # the announcements plugin shows its toast right after the restore
        assert page.get_by_text(NEWS).count() == 0
        # the status bar's bell counts notifications (toasts included): the asking toast made it 1
        assert page.locator(".jp-Notification-Status-Text").inner_text().strip() == "0"
        assert not page.console_errors, f"console errors: {page.console_errors}"


WRITTEN = "written_pooling"  # A1's hand-graded cell (3 points)
ANSWER = "Max pooling keeps the largest $x_{ij}$ of each window; the output is $W_1 = (W - k)/s + 1$ wide."


@pytest.fixture(scope="module")
def graded(lab, course) -> dict:
    """A1 generated and one submission (reference answers, a written answer with math) autograded, through
    nbgrader's API in this process (no nbgrader start-ups); returns its gradebook ids and autograded score."""
    from nbgrader.api import Gradebook
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from cnncourse.autograde.parallel import load_config
    from tests.assignments import BY_ID
    from tests.grading_support import cell

    a = BY_ID["a1-convolution"]
    submission = a.correct()
    cell(submission, WRITTEN).source = ANSWER
    with pytest.MonkeyPatch.context() as mp:
        env = course_env()
        mp.setenv("PATH", env["PATH"])  # nbgrader runs alembic
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        config = load_config(course)
        api = NbGraderAPI(CourseDirectory(config=config), config=config)
        result = api.generate_assignment(a.id, force=True)
        assert result["success"], result.get("error")
        folder = course / ".nbgrader" / "submitted" / "alice" / a.id
        folder.mkdir(parents=True)
        nbformat.write(submission, folder / f"{a.id}.ipynb")
        result = api.autograde(a.id, "alice")
        assert result["success"], result.get("error")
    with Gradebook(f"sqlite:///{course / '.nbgrader' / 'gradebook.db'}", "cnncourse") as gb:
        nb = gb.find_submission_notebook(a.id, a.id, "alice")
        grade = next(g for g in nb.grades if g.name == WRITTEN)
        assert grade.needs_manual_grade and grade.manual_score is None
        return {"submission": nb.id, "score": nb.score, "max": nb.max_score, "assignment": a.id}


def gradebook_score(page: Page, lab, assignment: str) -> float:
    """The submission's total on the formgrader's list of an assignment's submissions ("27 / 30")."""
    page.goto(lab.url(f"formgrader/gradebook/{assignment}/{assignment}"))
    row = page.locator("table tbody tr", has_text="/").first
    row.wait_for(timeout=30_000)
    return float(re.search(r"([\d.]+)\s*/\s*[\d.]+", row.inner_text()).group(1))


def wait_for_mathjax(page: Page) -> None:
    """Until the formgrader's page has typeset its math (formgrade.js sets MathJax.loaded at MathJax's end)."""
    try:
        page.wait_for_function("() => window.MathJax && MathJax.loaded === true", timeout=60_000)
    except Exception as err:
        scripts = page.eval_on_selector_all("script[src*='MathJax'], script[src*='mathjax']", "s => s.map(x => x.src)")
        raise AssertionError(f"MathJax did not load from {scripts}: offline it must be the course's copy (make node, "
                             "jupyter/data/nbconvert/templates/formgrade/mathjax.html.j2)") from err


def test_formgrader_hand_grading_with_math_and_no_banner(lab, course, graded, page, tmp_path):
    with screenshot_on_failure(page, tmp_path / "formgrader.png"):
        page.goto(lab.url("formgrader"))
        page.locator("table", has_text=graded["assignment"]).wait_for(timeout=30_000)
        assert page.locator(".alert").count() == 0, page.locator(".alert").all_inner_texts()
        page.screenshot(path=str(tmp_path / "formgrader_manage.png"))
        before = gradebook_score(page, lab, graded["assignment"])
        assert before == graded["score"]

        page.goto(lab.url(f"formgrader/submissions/{graded['submission']}/"))
        wait_for_mathjax(page)
        assert page.locator(".MathJax_CHTML").count() > 0, "no math typeset"
        raw = [t for t in page.locator(".text_cell_render").all_inner_texts() if re.search(r"\$[^$\s][^$]*\$", t)]
        assert not raw, f"math left as raw $...$: {raw[:3]}"
        score = page.locator(f"#{WRITTEN}")
        panel = page.locator(".panel", has=score).last
        panel.scroll_into_view_if_needed()
        score.fill("2")
        score.press("Tab")
        comment = panel.locator("textarea.comment")
        comment.fill("Right rule; say why the stride divides.")
        comment.press("Tab")
        page.wait_for_timeout(500)
        panel.screenshot(path=str(tmp_path / "formgrader_written.png"))
        after = gradebook_score(page, lab, graded["assignment"])
        assert after == before + 2
        page.screenshot(path=str(tmp_path / "formgrader_gradebook.png"))

        page.goto(lab.url(f"formgrader/submissions/{graded['submission']}/"))
        wait_for_mathjax(page)
        assert page.locator(f"#{WRITTEN}").input_value() == "2"
        assert "stride divides" in page.locator(".panel", has=page.locator(f"#{WRITTEN}")).last.locator(
            "textarea.comment").input_value()
        assert page.locator(".alert-danger, .alert-warning").count() == 0
        assert not page.console_errors, f"console errors: {page.console_errors}"
        log = lab.log.read_text()
        assert not re.search(r"^\[C ", log, re.M), log[-3000:]  # no critical line (e.g. "Unwritable directory")
        assert "Unwritable" not in log, log[-3000:]
        assert (course / ".nbgrader" / "exchange").is_dir()  # made by nbgrader_config.py when the lab started
