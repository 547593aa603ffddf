"""A Python that every user can run, with the course's packages (the user servers', kernels' and grader's).

The hub runs user servers as their own Unix users, so the interpreter and the course's packages must be
readable by everyone. When the project's venv is (say the project and its Python live under ``/opt``), it is used
as it is. When its Python is not (a pyenv Python under ``/root``, mode 0700, as on the course's build machines),
``make_userenv`` gives users the *same* Python (same version to the patch level: packages built for it, e.g.
soupsieve, break on another 3.11.x): a hard-linked copy of it (``cp -al``: no extra disk; a plain copy across
file systems) with

- ``bin/python``: a wrapper that puts the copy's ``lib/`` on ``LD_LIBRARY_PATH`` (the interpreter's RUNPATH still
  points into ``/root``); every process started from it inherits that;
- no packages of its own (like a venv), and a ``.pth`` file adding the project venv's ``site-packages``
  (torch, JupyterLab, nbgrader, the editable cnncourse: they must be readable by all, and so must the checkout);
- ``share/jupyter`` and ``etc/jupyter`` linked to the venv's (JupyterLab's assets, extension config, kernels);
- the venv's console scripts (``nbgrader``, ``jupyter``, ``alembic``) pointed at the wrapper.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path


def readable_by_all(path: Path) -> bool:
    """Whether every user can reach ``path`` (each folder above it searchable, the file readable)."""
    path = Path(os.path.realpath(path))
    for folder in reversed(path.parents):
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def _copy_tree(src: Path, dest: Path) -> None:
    """``cp -al`` (hard links, instant, no space), else a real copy (another file system)."""
    if subprocess.run(["cp", "-al", str(src), str(dest)], capture_output=True).returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-a", str(src), str(dest)], check=True)


def make_userenv(target: Path) -> Path:
    """The interpreter users run: this venv's when every user can reach it, else a copy made at ``target``."""
    if readable_by_all(Path(sys.executable)):
        return Path(sys.executable)
    site = Path(sysconfig.get_paths()["purelib"])
    if not readable_by_all(site / ".."):
        raise RuntimeError(f"{site} (the course's packages) is not readable by every user: put the project in a "
                           "folder every user can read (e.g. /opt or /srv), then run setup again")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    wrapper = target / "bin" / "python"
    if not wrapper.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_tree(Path(sys.base_prefix), target)
        (target / "bin" / "python").unlink(missing_ok=True)
        lib = f'"{target / "lib"}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"'
        wrapper.write_text(f'#!/bin/sh\nexport LD_LIBRARY_PATH={lib}\nexec "{target / "bin" / version}" "$@"\n')
        wrapper.chmod(0o755)
        # like a venv: none of the base interpreter's own packages (pyenv's old typing_extensions shadowed the venv's)
        shutil.rmtree(target / "lib" / version / "site-packages", ignore_errors=True)
    own_site = target / "lib" / version / "site-packages"
    own_site.mkdir(parents=True, exist_ok=True)
    (own_site / "cnncourse-venv.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    for name in ("share", "etc"):
        src = Path(sys.prefix) / name / "jupyter"
        link = target / name / "jupyter"
        if src.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                shutil.rmtree(link)
            link.symlink_to(src)
    shebangs = {f"#!{Path(sys.prefix) / 'bin' / name}".encode() for name in ("python", "python3", version)}
    for script in (Path(sys.prefix) / "bin").iterdir():
        if script.name.startswith("python") or not script.is_file() or (target / "bin" / script.name).exists():
            continue
        first, _, body = script.read_bytes().partition(b"\n")
        if first in shebangs:
            out = target / "bin" / script.name
            out.write_bytes(f"#!{wrapper}\n".encode() + body)
            out.chmod(0o755)
    return wrapper
