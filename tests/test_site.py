"""The course website (``make site``): built offline from the committed notebooks, checked in a real browser.

The site is built once for this module (``scripts/build_site.py`` into a temporary folder, about a minute of CPU)
and served on 127.0.0.1 by a server the test starts and stops. Chromium (Playwright) opens every page once and
records what happened; the tests then check that record:

* no console error or page error, no request that leaves 127.0.0.1 (every other request is aborted and listed),
  no failed request;
* math typeset by the local MathJax (``mjx-container`` elements) and no raw ``$...$`` or ``\\(...\\)`` left;
* every image loaded (``naturalWidth > 0``), every internal link (and its ``#anchor``) resolves;
* the built files contain no nbgrader solution or hidden-test delimiter and no line that only ``solutions/`` has;
* lectures in the README course map's order, titled as the notebooks are, with what the README says they teach;
* explorers shown as pictures, API functions linked back to the lectures that use them, launch links built.

Screenshots of the home page and of lecture 01 are saved under the pytest temp folder (``home.png``,
``lecture01.png``, ``lecture01_explorer.png``: the conv explorer's picture). Cost: about 1-2 minutes (build 50-60 s
of CPU, then about 60 pages in the browser).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, HOW, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
DELIMITERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN MARK SCHEME")
pytestmark = pytest.mark.slow


def readme_lectures() -> list[tuple[str, str]]:
    """(notebook path, what it teaches) per row of the README's course map, in order."""
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"^\| \d\d \| `(lectures/[^`]+\.ipynb)` \| (.+?) \|$", readme, re.M)


def title_of(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(m.group(1).strip() for c in nb.cells if c.cell_type == "markdown"
                for m in [re.search(r"^# (.+)$", c.source, re.M)] if m)


def text_of_html(page: str) -> str:
    """Visible text of an HTML file, whitespace collapsed (code split into highlighted spans joins up again)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A fresh build; ``CNNCOURSE_SITE_HTML=_site/_build/html`` checks one that ``make site`` just wrote instead."""
    if os.environ.get("CNNCOURSE_SITE_HTML"):
        return Path(os.environ["CNNCOURSE_SITE_HTML"]).resolve()
    out = tmp_path_factory.mktemp("site")
    # Its own process group: a build that runs over time is stopped with jupyter-book and Sphinx under it.
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "build_site.py"), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("the site build took more than 900 s") from None
    assert proc.returncode == 0, f"make site failed:\n{stdout[-2000:]}\n{stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def server(site):
    """The built site over HTTP on 127.0.0.1 (a free port), for the length of the module."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


VISIT = """async () => {
    const startup = window.MathJax && window.MathJax.startup;
    if (startup && startup.promise) await startup.promise;
    void document.body.offsetHeight;  // lay the typeset math out, so its fonts start loading
    await document.fonts.ready;  // (leaving the page while they load would abort them)
    const images = [...document.images];
    images.forEach(i => { i.loading = 'eager'; });
    await Promise.all(images.map(i => i.decode().catch(() => null)));
    const skip = 'pre, code, script, style, mjx-container, .highlight, textarea';
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
        acceptNode: n => n.parentElement && n.parentElement.closest(skip)
            ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
    let text = '';
    while (walker.nextNode()) text += walker.currentNode.nodeValue + ' ';
    return {
        math: document.querySelectorAll('mjx-container').length,
        mathSpans: document.querySelectorAll('span.math, div.math').length,
        rawMath: (text.match(/\\$[^$\\s][^$]*?\\$|\\\\\\(|\\\\\\[/g) || []).slice(0, 5),
        brokenImages: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
        images: images.length,
        links: [...document.querySelectorAll('a[href]')].map(a => a.href),
        title: (document.querySelector('h1') || {}).textContent || '',
    };
}"""


@pytest.fixture(scope="module")
def visits(site, server, tmp_path_factory):
    """Open every page of the site in Chromium; per page: console errors, outside requests, math, images, links."""
    if sync_playwright is None or CHROMIUM is None:
        pytest.skip(f"no browser: {HOW}")
    shots = tmp_path_factory.mktemp("screenshots")
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)
    record: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        outside, failed, errors = [], [], []

        def route(r):
            if urllib.parse.urlsplit(r.request.url).hostname == "127.0.0.1":
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        for rel in pages:
            outside.clear(), failed.clear(), errors.clear()
            page.goto(f"{server}/{rel}", wait_until="load")
            seen = page.evaluate(VISIT)
            record[rel] = {**seen, "outside": [*outside], "failed": [*failed], "errors": [*errors]}
            if rel == "index.html":
                page.screenshot(path=str(shots / "home.png"))
            if rel == "lectures/01_convolution.html":
                page.screenshot(path=str(shots / "lecture01.png"))
                page.get_by_text("Interactive explorer.").last.scroll_into_view_if_needed()
                page.screenshot(path=str(shots / "lecture01_explorer.png"))
        browser.close()
    (shots / "visits.json").write_text(json.dumps(record, indent=1))
    return record


def test_the_build_writes_every_lecture_assignment_and_api_page(site):
    for rel, _ in readme_lectures():
        assert (site / rel.replace(".ipynb", ".html")).exists(), rel
    for release in sorted(ROOT.glob("assignments/*/*.ipynb")):
        assert (site / release.relative_to(ROOT).with_suffix(".html")).exists(), release
    assert (site / "search.html").exists() and (site / "searchindex.js").exists()
    assert (site / "instructors.html").exists() and (site / "api" / "cnncourse.shapes.html").exists()
    assert not list(site.rglob("solutions")), "a solutions folder was built"


@pytest.mark.parametrize("check", ["errors", "outside", "failed"])
def test_every_page_loads_without_errors_and_only_from_the_site(visits, check):
    bad = {rel: seen[check] for rel, seen in visits.items() if seen[check]}
    assert len(visits) > 40
    assert not bad, f"{check} on {len(bad)} pages: {json.dumps(bad, indent=1)[:3000]}"


def test_math_is_typeset_by_the_local_mathjax(visits):
    pages_with_math = {rel: seen for rel, seen in visits.items() if seen["mathSpans"]}
    assert len([r for r in pages_with_math if r.startswith("lectures/")]) >= 10
    untypeset = {rel: (s["math"], s["mathSpans"]) for rel, s in pages_with_math.items() if s["math"] < s["mathSpans"]}
    assert not untypeset, f"math left untypeset (typeset, math elements): {untypeset}"
    raw = {rel: s["rawMath"] for rel, s in visits.items() if s["rawMath"]}
    assert not raw, f"raw TeX left in the text: {raw}"


def test_every_image_loads(visits):
    assert sum(s["images"] for s in visits.values()) > 60
    broken = {rel: s["brokenImages"] for rel, s in visits.items() if s["brokenImages"]}
    assert not broken, broken


def test_every_internal_link_resolves(visits, server, site):
    targets: dict[str, set[str]] = {}
    for seen in visits.values():
        for link in seen["links"]:
            if link.startswith(server + "/"):
                url, _, anchor = link.partition("#")
                targets.setdefault(url, set()).add(urllib.parse.unquote(anchor))
    assert len(targets) > 40
    missing = []
    for url, anchors in sorted(targets.items()):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read().decode("utf-8", "replace")
        except OSError as err:
            missing.append(f"{url}: {err}")
            continue
        ids = set(re.findall(r"""\bid=["']([^"']+)["']""", body))
        missing += [f"{url}#{a}" for a in anchors if a and a not in ids]
    assert not missing, missing[:20]


def solution_only_lines() -> set[str]:
    """Lines (20+ characters) inside solutions/' solution, hidden-test and marking-guide blocks that no public
    file (lectures, student releases, the package, the README) contains."""
    public = [c.source for pattern in ("lectures/*.ipynb", "assignments/*/*.ipynb") for path in ROOT.glob(pattern)
              for c in nbformat.read(path, as_version=4).cells]
    public += [path.read_text() for path in [*ROOT.glob("cnncourse/**/*.py"), ROOT / "README.md"]]
    public = " ".join(" ".join(public).split())
    lines = set()
    for path in ROOT.glob("solutions/*/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            for block in re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", cell.source, re.S):
                lines |= {" ".join(line.split()) for line in block.splitlines() if len(line.strip()) >= 20}
    return {line for line in lines if line not in public}


def test_the_site_has_no_solution_hidden_test_or_marking_guide_text(site):
    secret = solution_only_lines()
    assert len(secret) > 100  # the check has something to find: solutions/ hold that much the public does not
    texts = {}
    for path in site.rglob("*"):
        if path.suffix in (".html", ".js", ".txt", ".md", ".ipynb", ".json") and "mathjax" not in path.parts:
            raw = path.read_text(errors="replace")
            texts[path] = raw + " " + text_of_html(raw) if path.suffix == ".html" else raw
            if path.suffix == ".ipynb":
                texts[path] = " ".join(c.source for c in nbformat.reads(raw, as_version=4).cells)
    delimiters = {str(p.relative_to(site)): d for p, t in texts.items() for d in DELIMITERS if d in t}
    assert not delimiters, delimiters
    leaked = {}
    for path, text in texts.items():
        text = " ".join(text.split())
        found = [line for line in secret if line in text]
        if found:
            leaked[str(path.relative_to(site))] = found[:3]
    assert not leaked, leaked


def test_lectures_follow_the_readme_course_map(site):
    expected = [(rel.removesuffix(".ipynb"), title_of(ROOT / rel)) for rel, _ in readme_lectures()]
    assert len(expected) == 16
    home = (site / "index.html").read_text()
    nav = re.search(r'<nav class="[^"]*bd-docs-nav[^"]*".*?</nav>', home, re.S).group(0)
    parts = dict(re.findall(r'<span class="caption-text">(.*?)</span>.*?(<ul.*?</ul>)', nav, re.S))
    assert list(parts) == ["Lectures", "Assignments", "Reference"]
    lecture_links = r'<a class="reference internal" href="(lectures/[^"#]+)\.html">(.*?)</a>'
    links = re.findall(lecture_links, parts["Lectures"], re.S)
    assert [(h, text_of_html(t)) for h, t in links] == expected
    # The symbol table is reference material: listed under Reference, not among the lectures.
    symbols = [h for h, _ in re.findall(lecture_links, parts["Reference"], re.S)]
    assert symbols == (["lectures/symbols"] if (ROOT / "lectures" / "symbols.md").exists() else [])
    for doc, title in expected:  # each page's heading is the notebook's title
        page = (site / f"{doc}.html").read_text()
        assert text_of_html(re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)).rstrip("#").strip() == title
    # The home page's course map: one row per lecture, in order, with what the README says it teaches.
    table = re.search(r"<h2>Course map.*?<table.*?</table>", home, re.S).group(0)
    straight = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})  # Sphinx's smart quotes
    rows = [[text_of_html(c).translate(straight) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]]
    teaches = [text_of_html(re.sub(r"`([^`]*)`", r"\1", t)) for _, t in readme_lectures()]
    assert [(r[1], r[2]) for r in rows] == [(title, t) for (_, title), t in zip(expected, teaches, strict=True)]
    assert rows[1][3] == "a1-convolution" and "a3-architectures" in rows[13][3]


def test_explorers_are_pictures_with_a_line_on_running_them_live(site):
    page = (site / "lectures" / "01_convolution.html").read_text()
    assert "VBox(children" not in page
    picture = r'Interactive explorer\.</strong>.*?</p>\s*<img [^>]*src="\.\./_images/[0-9a-f]+\.png"'
    assert len(re.findall(picture, page, re.S)) == 2  # the filter and the convolution explorers
    for rel in ("04_initialization", "05_batch_normalization"):
        page = (site / "lectures" / f"{rel}.html").read_text()
        assert len(re.findall(picture, page, re.S)) == 1 and "VBox(children" not in page


def test_api_reference_links_functions_back_to_the_lectures_that_use_them(site):
    page = (site / "api" / "cnncourse.shapes.html").read_text()
    start = page.index('id="cnncourse.shapes.conv_output_size"')
    entry = page[start:page.index('<dt class="sig sig-object py"', start + 1)]  # up to the next object
    users = {rel.removesuffix(".ipynb") for rel, _ in readme_lectures()
             if "conv_output_size" in (ROOT / rel).read_text()}
    assert users, "no lecture uses conv_output_size any more: pick another function"
    linked = set(re.findall(r'href="\.\./(lectures/[^"#]+)\.html"', entry))
    assert "Used in:" in entry and linked == users


def test_launch_links_open_the_notebook_on_the_hub_colab_and_binder(site):
    page = (site / "lectures" / "01_convolution.html").read_text()
    assert re.search(r'href="https://hub\.example\.org/hub/user-redirect/git-pull\?repo=[^"]*cnncourse[^"]*'
                     r'lectures(/|%2F)01_convolution\.ipynb', page), "no nbgitpuller link to the hub"
    assert "colab.research.google.com/github/cnncourse/cnncourse/blob/main/lectures/01_convolution.ipynb" in page
    assert "mybinder.org/v2/gh/cnncourse/cnncourse/main?urlpath=" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"https?://", page), "an asset from elsewhere"


def test_screenshots_of_home_and_a_lecture(visits, tmp_path_factory):
    shots = tmp_path_factory.getbasetemp()
    found = sorted(p.name for p in shots.rglob("*.png"))
    assert "home.png" in found and "lecture01.png" in found
    assert visits["index.html"]["title"].startswith("Convolutional neural networks")
