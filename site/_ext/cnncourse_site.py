"""Sphinx extension of the course site: a "Used in" note under each documented function and class.

``scripts/build_site.py`` reads every notebook of the site when it stages it and writes ``_generated/uses.json``
(``{"cnncourse.shapes.conv_output_size": [["lectures/01_convolution", "01 · Convolution"], ...]}``); this
extension appends those pages, as links, to the object's docstring, like d2l's "Defined in" notes.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path


def _used_in(app, what, name, obj, options, lines) -> None:
    pages = app.env.cnncourse_uses.get(name) if hasattr(app.env, "cnncourse_uses") else None
    if pages:
        links = ", ".join(f":doc:`{title} </{doc}>`" for doc, title in pages)
        lines.extend(["", f"**Used in:** {links}", ""])


def _skip_foreign(app, what, name, obj, skip, options):
    """Skip submodules (documented in their own sections) and methods that torch or matplotlib define."""
    if inspect.ismodule(obj):
        return True
    if inspect.isroutine(obj) and not (getattr(obj, "__module__", None) or "cnncourse").startswith("cnncourse"):
        return True
    return None


def _load(app) -> None:
    path = Path(app.srcdir) / "_generated" / "uses.json"
    app.env.cnncourse_uses = json.loads(path.read_text()) if path.exists() else {}


def setup(app):
    app.connect("builder-inited", _load)
    app.connect("autodoc-skip-member", _skip_foreign)
    app.connect("autodoc-process-docstring", _used_in, priority=600)  # after napoleon has rewritten the sections
    return {"parallel_read_safe": True, "parallel_write_safe": True}
