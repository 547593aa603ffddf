"""Build the course website from the committed notebooks, offline (Jupyter Book 1.x): ``make site``.

    python scripts/build_site.py                      # into _site/: open _site/_build/html/index.html
    python scripts/build_site.py --out /tmp/site --benchmark benchmarks/results/site_build.json

Nothing is executed and nothing is fetched. The sources in ``site/`` (config, table of contents, pages) are
staged into ``OUT/src`` with:

* the lectures as committed, except that an explorer's widget output (its text fallback, ``VBox(...)``, is all a
  saved notebook keeps of a widget) becomes a picture of the explorer's default view and a line saying how to
  run it live;
* the student releases of the assignments (``assignments/<id>/<id>.ipynb``), never ``solutions/``;
* pages generated from ``README.md`` (course map, instructor guide) and from the package (one API page per
  module, and ``uses.json``: which lectures and assignments import each function, for the "Used in" notes);
* the symbol table ``lectures/symbols.md`` (or ``.ipynb``) when the course has one;
* MathJax from ``node_modules/mathjax`` (``make node``) in ``_static/``.

Launch links take ``CNNCOURSE_HUB_URL``, ``CNNCOURSE_REPO_URL`` and ``CNNCOURSE_REPO_BRANCH`` over
``site/_config.yml``.
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import importlib
import inspect
import io
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "node_modules" / "mathjax" / "es5"
# What the site needs of MathJax: the TeX + CommonHTML component, its fonts and the extensions it loads on demand.
MATHJAX_PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml", "ui", "a11y/assistive-mml.js",
                 "a11y/semantic-enrich.js", "a11y/complexity.js", "a11y/explorer.js", "adaptors")
EXPLORER_NOTE = ("**Interactive explorer.** This is a picture of its default view. To move its controls, run "
                 "the notebook: the launch button at the top of this page (JupyterHub, Colab or Binder), or "
                 "`make lab` on your machine.")
API_SKIP = ("__main__", "._")  # command-line entry points and private modules


class SiteError(Exception):
    """The site cannot be built from what is committed; the message says what to fix."""


@dataclass(frozen=True)
class Lecture:
    number: str
    path: str  # lectures/01_convolution.ipynb
    teaches: str


@dataclass(frozen=True)
class Assignment:
    id: str
    lectures: tuple[str, ...]
    topic: str


def course_map(readme: str) -> tuple[list[Lecture], list[Assignment]]:
    """The README's lecture table (number, notebook, what it teaches) and assignment table, in order."""
    lectures = [Lecture(n, p, t.strip()) for n, p, t in
                re.findall(r"^\| (\d\d) \| `(lectures/[^`]+\.ipynb)` \| (.+?) \|$", readme, re.M)]
    assignments = [Assignment(i, tuple(re.findall(r"\d\d", ls)), t.strip()) for i, ls, t in
                   re.findall(r"^\| `(a\d[^`]*)` \| ([\d, ]+) \| (.+?) \|$", readme, re.M)]
    if not lectures or not assignments:
        raise SiteError("README.md has no course map: expected rows like '| 01 | `lectures/01_x.ipynb` | ... |' "
                        "and '| `a1-x` | 01, 02 | ... |'.")
    return lectures, assignments


def readme_section(readme: str, heading: str) -> str:
    """The body of the README's ``## heading`` section (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    if match is None:
        raise SiteError(f"README.md has no '## {heading}' section.")
    return match.group(1).strip() + "\n"


def notebook_title(nb) -> str:
    """The first ``# `` heading of the notebook."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^# (.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    raise SiteError("a notebook has no '# title' heading in a markdown cell")


# ---------------------------------------------------------------------------------------------------
# What the notebooks use of cnncourse.


def _parse(source: str) -> ast.Module | None:
    """A code cell as Python, IPython magics and shell lines blanked; None when it is not Python."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def cnncourse_names(trees: list[ast.Module]) -> tuple[set[str], dict[str, str]]:
    """Dotted ``cnncourse.*`` names the code imports or reaches through an imported module, and the alias map.

    ``from cnncourse.viz import show_images`` gives ``cnncourse.viz.show_images``; ``from cnncourse import
    shapes`` then ``shapes.conv_output_size(...)`` gives ``cnncourse.shapes.conv_output_size``.
    """
    aliases: dict[str, str] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cnncourse":
                aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "cnncourse":
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    used = set(aliases.values())
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                dotted = _dotted(node)
                head = dotted.split(".")[0] if dotted else None
                if head in aliases:
                    used.add(aliases[head] + dotted[len(head):])
    return used, aliases


def canonical(dotted: str):
    """``(module.qualname, object)`` where a dotted cnncourse name is defined, or None for modules and data."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("cnncourse"):
            return f"{obj.__module__}.{obj.__qualname__}", obj
        return None
    return None


# ---------------------------------------------------------------------------------------------------
# Explorers: a static picture instead of the widget's text fallback.


def _literal(node: ast.AST, env: dict[str, ast.AST], aliases: dict[str, str], where: str):
    """Evaluate an explorer argument without running the notebook: a literal, or a name bound in an earlier cell
    to a call of a cnncourse function with literal arguments (``photo = load_photo("chelsea", gray=True)``)."""
    with contextlib.suppress(ValueError):
        return ast.literal_eval(node)
    if isinstance(node, ast.Name) and node.id in env:
        return _literal(env[node.id], env, aliases, where)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in aliases:
        module, _, name = aliases[node.func.id].rpartition(".")
        function = getattr(importlib.import_module(module), name)
        return function(*[_literal(a, env, aliases, where) for a in node.args],
                        **{k.arg: _literal(k.value, env, aliases, where) for k in node.keywords})
    raise SiteError(f"{where}: cannot draw the explorer without running the notebook ({ast.unparse(node)!r} is "
                    "neither a literal nor a name bound to a cnncourse call with literal arguments); pass literal "
                    "arguments to the explorer.")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def replace_explorer_outputs(nb, where: str) -> int:
    """Swap each ``*_explorer(...)`` cell's widget output for its default view (PNG) and the note; returns how many."""
    trees, env, done = [], {}, 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or (tree := _parse(cell.source)) is None:
            continue
        trees.append(tree)
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                env[node.targets[0].id] = node.value
        calls = [n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
                 and isinstance(n.value.func, ast.Name) and n.value.func.id.endswith("_explorer")]
        widget_outputs = [o for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"
                          and o.get("data", {}).get("text/plain", "").startswith(("VBox(", "HBox("))]
        if not calls or not widget_outputs:
            continue
        _, aliases = cnncourse_names(trees)
        call = calls[-1]
        if call.func.id not in aliases:
            raise SiteError(f"{where} cell {index}: {call.func.id} is not imported from cnncourse.explorers")
        module, _, name = aliases[call.func.id].rpartition(".")
        args = [_literal(a, env, aliases, f"{where} cell {index}") for a in call.args]
        kwargs = {k.arg: _literal(k.value, env, aliases, f"{where} cell {index}") for k in call.keywords}
        with contextlib.redirect_stdout(io.StringIO()):  # a widget's Output prints to stdout outside a kernel
            widget = getattr(importlib.import_module(module), name)(*args, **kwargs)
        picture = _png(widget.figure())
        cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": EXPLORER_NOTE}),
                        nbformat.v4.new_output("display_data", data={"image/png": picture,
                                                                     "text/plain": f"<{name}: default view>"})]
        done += 1
    return done


# ---------------------------------------------------------------------------------------------------
# Staging.


def repository_links(text: str, rel: str, staged: set[str], blob: str) -> str:
    """Markdown links from ``rel`` to repository files the site does not have (``../README.md``) -> ``blob`` URLs."""

    def fix(match: re.Match) -> str:
        target, _, anchor = match.group(1).partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if not target or re.match(r"[a-z]+:", target) or path in staged or path.startswith(".."):
            return match.group(0)
        return f"]({blob}{path}{'#' + anchor if anchor else ''})"

    return re.sub(r"\]\(([^)\s]+)\)", fix, text)


def api_modules() -> dict[str, list[str]]:
    """Top-level cnncourse modules -> the modules documented on their page (a package and its submodules)."""
    import pkgutil

    import cnncourse

    pages: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(cnncourse.__path__, "cnncourse."):
        if any(skip in info.name for skip in API_SKIP):
            continue
        top = ".".join(info.name.split(".")[:2])
        pages.setdefault(top, []).append(info.name)
    return dict(sorted(pages.items()))


def _api_page(top: str, modules: list[str]) -> str:
    lines = [f"# `{top}`", ""]
    for module in modules:
        if module != top:
            lines += [f"## `{module}`", ""]
        own = ["   :ignore-module-all:"] if module == top and len(modules) > 1 else []  # re-exports: in their module
        lines += ["```{eval-rst}", f".. automodule:: {module}", "   :members:", "   :show-inheritance:", *own, "```",
                  ""]
    return "\n".join(lines)


def _settings() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "site" / "_config.yml").read_text())
    return {"hub_url": os.environ.get("CNNCOURSE_HUB_URL") or config["launch_buttons"]["jupyterhub_url"],
            "repo_url": os.environ.get("CNNCOURSE_REPO_URL") or config["repository"]["url"],
            "branch": os.environ.get("CNNCOURSE_REPO_BRANCH") or config["repository"]["branch"]}


def stage(src: Path) -> dict:
    """Write the book's sources into ``src`` (emptied first); returns counts for the benchmark record."""
    readme = (ROOT / "README.md").read_text()
    lectures, assignments = course_map(readme)
    settings = _settings()
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "site", src, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    generated = src / "_generated"
    generated.mkdir()

    titles, explorers, trees_of = {}, 0, {}
    sources = [lecture.path for lecture in lectures]
    sources += [f"assignments/{a.id}/{a.id}.ipynb" for a in assignments]
    symbols = [p for p in sorted(ROOT.glob("lectures/symbols.*")) if p.suffix in (".md", ".ipynb")][:1]
    staged = {*sources, *(p.relative_to(ROOT).as_posix() for p in symbols)}
    blob = f"{settings['repo_url'].rstrip('/')}/blob/{settings['branch']}/"
    for rel in sources:
        if not (ROOT / rel).exists():
            raise SiteError(f"README.md lists {rel}, which does not exist.")
        nb = nbformat.read(ROOT / rel, as_version=4)
        doc = rel.removesuffix(".ipynb")
        titles[doc] = notebook_title(nb)
        if rel.startswith("lectures/"):
            explorers += replace_explorer_outputs(nb, rel)
        trees_of[doc] = [t for c in nb.cells if c.cell_type == "code" and (t := _parse(c.source)) is not None]
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = repository_links(cell.source, rel, staged, blob)
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, src / rel)

    # Course map (home page) and the assignment list, from the README.
    practised = {lec.number: [a for a in assignments if lec.number in a.lectures] for lec in lectures}
    rows = ["| # | Lecture | What it teaches | Practised in |", "|---|---------|-----------------|--------------|"]
    for lec in lectures:
        doc = lec.path.removesuffix(".ipynb")
        links = ", ".join(f"{{doc}}`{a.id} </assignments/{a.id}/{a.id}>`" for a in practised[lec.number]) or "-"
        rows.append(f"| {lec.number} | {{doc}}`{titles[doc]} </{doc}>` | {lec.teaches} | {links} |")
    (generated / "course_map.md").write_text("\n".join(rows) + "\n")
    rows = ["| Assignment | Practises lectures | Topic |", "|---|---|---|"]
    for a in assignments:
        doc = f"assignments/{a.id}/{a.id}"
        rows.append(f"| {{doc}}`{titles[doc]} </{doc}>` | {', '.join(a.lectures)} | {a.topic} |")
    (generated / "assignments.md").write_text("\n".join(rows) + "\n")

    # Instructor guide: the README section, with links into the repository made absolute.
    guide = repository_links(readme_section(readme, "For instructors"), "README.md", staged, blob)
    (generated / "instructors.md").write_text(guide)

    # API pages and the notebooks' uses of each function and class.
    toc = yaml.safe_load((src / "_toc.yml").read_text())
    reference = next(p for p in toc["parts"] if p["caption"] == "Reference")["chapters"]
    api = next(c for c in reference if c["file"] == "api/index")
    api["sections"] = []
    index = ["| Module | Documents |", "|---|---|"]
    for top, modules in api_modules().items():
        (src / "api" / f"{top}.md").write_text(_api_page(top, modules))
        api["sections"].append({"file": f"api/{top}"})
        index.append(f"| {{doc}}`{top} <{top}>` | {', '.join(f'`{m}`' for m in modules)} |")
    (generated / "api_modules.md").write_text("\n".join(index) + "\n")
    uses: dict[str, list[list[str]]] = {}
    for doc, trees in trees_of.items():
        for dotted in sorted(cnncourse_names(trees)[0]):
            found = canonical(dotted)
            if found and [doc, titles[doc]] not in uses.setdefault(found[0], []):
                uses[found[0]].append([doc, titles[doc]])
    (generated / "uses.json").write_text(json.dumps(uses, indent=1, ensure_ascii=False))

    # The symbol table, when the course has one.
    for path in symbols:
        if path.suffix == ".md":
            text = repository_links(path.read_text(), f"lectures/{path.name}", staged, blob)
            (src / "lectures" / path.name).write_text(text)
        else:
            shutil.copy2(path, src / "lectures" / path.name)
        reference.insert(0, {"file": f"lectures/{path.stem}"})
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))

    # Launch links and substitutions.
    config = yaml.safe_load((src / "_config.yml").read_text())
    config["launch_buttons"]["jupyterhub_url"] = settings["hub_url"]
    config["repository"].update(url=settings["repo_url"], branch=settings["branch"])
    config["parse"]["myst_substitutions"] = {"hub_url": settings["hub_url"], "repo_url": settings["repo_url"]}
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    return {"lectures": len(lectures), "assignments": len(assignments), "explorer_pictures": explorers,
            "api_pages": len(api["sections"]), "functions_with_uses": len(uses), "symbol_table": bool(symbols)}


def copy_mathjax(static: Path) -> None:
    """MathJax into the built site's ``_static/mathjax`` (Sphinx's ``mathjax_path`` points there).

    Copied after the build, not staged in ``_static/``: Jupyter Book adds every script it finds there to every page.
    """
    if not (MATHJAX / "tex-chtml.js").exists():
        raise SiteError(f"{MATHJAX} is missing: run `make node` (installs MathJax from package-lock.json).")
    for part in MATHJAX_PARTS:
        source = MATHJAX / part
        if source.is_dir():
            shutil.copytree(source, static / part, dirs_exist_ok=True)
        elif source.exists():
            (static / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, static / part)


def build(out: Path) -> dict:
    """Stage into ``out/src`` and build the HTML into ``out/_build/html``; returns what was done and how long."""
    start = time.perf_counter()
    counts = stage(out / "src")
    staged = time.perf_counter()
    shutil.rmtree(out / "_build", ignore_errors=True)  # no page of an earlier build survives
    jb = Path(sys.executable).parent / "jupyter-book"
    env = {**os.environ, "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    result = subprocess.run([str(jb), "build", str(out / "src"), "--path-output", str(out), "--builder", "html",
                             "--keep-going"], env=env, capture_output=True, text=True)
    (out / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not (out / "_build" / "html" / "index.html").exists():
        log = (result.stdout + result.stderr)[-3000:]
        raise SiteError(f"jupyter-book build failed (log: {out / 'build.log'}):\n{log}")
    copy_mathjax(out / "_build" / "html" / "_static" / "mathjax")
    done = time.perf_counter()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {**counts, "stage_s": round(staged - start, 1), "jupyter_book_s": round(done - staged, 1),
            "total_s": round(done - start, 1), "jupyter_book_cpu_s": round(cpu.ru_utime + cpu.ru_stime, 1),
            "cpu_s": round(cpu.ru_utime + cpu.ru_stime + own.ru_utime + own.ru_stime, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_site", help="output folder (default _site/)")
    parser.add_argument("--benchmark", type=Path, help="write the build time and counts to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")  # the explorers' pictures are drawn without a display
    load = os.getloadavg()[0]
    try:
        record = build(args.out.resolve())
    except SiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"site built in {record['total_s']} s: {args.out / '_build' / 'html' / 'index.html'}")
    if args.benchmark:
        record = {"what": "make site: stage site/ with the committed notebooks and build it (execution off)",
                  "note": "wall times depend on what else runs; cpu_s (staging + jupyter-book, user + system) is "
                          "the wall time on an idle machine, as the build runs on one core",
                  "machine": {"cpus": os.cpu_count(), "platform": platform.machine(),
                              "python": platform.python_version(),
                              "load_average_1min_before": round(load, 2)}, **record}
        args.benchmark.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
