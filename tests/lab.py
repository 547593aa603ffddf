"""Start a real ``jupyter lab`` for the tests: on 127.0.0.1, a free port, a random token, settings in a temp folder.

``running_lab(root_dir, workdir)`` is a context manager yielding a :class:`Lab` (``url(path)`` gives an address
with the token). Used by the smoke test and the browser tests. Like ``make lab`` it runs with the course's Jupyter
settings (:func:`course_env`, ``jupyter/README.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_CONFIG = ROOT / "jupyter" / "config"  # on JUPYTER_CONFIG_PATH: server config, lab setting overrides
JUPYTER_DATA = ROOT / "jupyter" / "data"  # on JUPYTER_PATH: the formgrader's MathJax template


def course_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """What ``make lab`` adds to ``env`` (default: this process's): the course's Jupyter config and data folders
    first on JUPYTER_CONFIG_PATH and JUPYTER_PATH, the venv's ``bin/`` first on PATH (nbgrader runs ``alembic``)."""
    env = dict(os.environ if env is None else env)

    def first(name: str, path: Path) -> str:
        return os.pathsep.join([str(path), *filter(None, [env.get(name)])])

    return {**env, "JUPYTER_CONFIG_PATH": first("JUPYTER_CONFIG_PATH", JUPYTER_CONFIG),
            "JUPYTER_PATH": first("JUPYTER_PATH", JUPYTER_DATA), "PATH": first("PATH", Path(sys.executable).parent)}


@dataclass(frozen=True)
class Lab:
    base: str
    token: str
    log: Path

    def url(self, path: str = "lab") -> str:
        """``base/path`` with the token as a query argument."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@contextlib.contextmanager
def running_lab(root_dir: Path, workdir: Path, extra_args: Sequence[str] = (), env: dict | None = None,
                settings: dict[str, dict] | None = None) -> Iterator[Lab]:
    """Run ``jupyter lab`` serving ``root_dir`` (also its working directory) until the block ends.

    Its config, runtime, settings and workspaces live under ``workdir`` (nothing is written to ``~``); its
    log is ``workdir/lab.log``. No update checks, no browser opened; the course's settings (:func:`course_env`)
    turn off the news toast. ``settings`` maps a plugin (``"@jupyterlab/notebook-extension:tracker"``) to its user
    settings.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}", "--ServerApp.port_retries=0",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           *extra_args]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    dirs = {name: workdir / name.lower() for name in
            ("JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}
    full_env = course_env({**os.environ, **{k: str(v) for k, v in dirs.items()}, **(env or {})})
    for plugin, values in (settings or {}).items():
        package, name = plugin.split(":")
        path = dirs["JUPYTERLAB_SETTINGS_DIR"] / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    log_path = workdir / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=root_dir)
        lab = Lab(f"http://127.0.0.1:{port}", token, log_path)
        try:
            deadline = time.monotonic() + 120  # a loaded 2-core machine: torch is imported by nbgrader_config.py
            while True:
                try:
                    if http_get(lab.url("api/status"))[0] == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield lab
        finally:
            stop_process(proc, 20)
