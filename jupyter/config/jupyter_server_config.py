"""Jupyter Server settings of the course, read when ``make lab`` puts ``jupyter/config`` on JUPYTER_CONFIG_PATH."""

import os

c = get_config()  # noqa: F821 - provided by traitlets when Jupyter Server loads this file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The front-end assets of `make node` under {base_url}/static/ (offline): MathJax 2 for nbgrader's formgrader at
# static/mathjax2/MathJax.js (see jupyter/data/nbconvert/templates/formgrade/mathjax.html.j2).
c.ServerApp.extra_static_paths = [os.path.join(ROOT, "node_modules")]
