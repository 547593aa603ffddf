"""A Python that every user can run, with the course's packages (the user servers', kernels' and grader's).

The hub runs user servers as their own Unix users, so the interpreter and the course's packages must be
readable by everyone. When the project's venv is (say it lives under ``/opt``), it is used as it is. When it
is not (a venv built on a pyenv Python under ``/root``, mode 0700, as on the course's build machines), a
small venv is made from the system's Python of the same version: its ``site-packages`` adds the project venv's
``site-packages`` (which must be readable: it holds torch, JupyterLab, nbgrader and the editable cnncourse),
its ``share``/``etc`` link to the venv's (JupyterLab's assets and extension config), and its ``bin`` gets the
venv's console scripts (``nbgrader``, ``jupyter``, ``alembic``) pointed at its own interpreter.
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


def system_python(version: tuple[int, int] = sys.version_info[:2]) -> Path:
    """The system's interpreter of ``version`` that every user can run."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(folder) / f"python{version[0]}.{version[1]}"
        if candidate.exists() and readable_by_all(candidate):
            return candidate
    raise RuntimeError(f"no python{version[0]}.{version[1]} that every user can run in /usr/bin or /usr/local/bin: "
                       f"install it (apt-get install python{version[0]}.{version[1]}-venv) or build the course's "
                       "venv in a folder every user can read (e.g. make setup VENV=/opt/cnncourse/venv)")


def make_userenv(target: Path) -> Path:
    """The interpreter users run: this venv's when every user can reach it, else one made at ``target``."""
    if readable_by_all(Path(sys.executable)):
        return Path(sys.executable)
    site = Path(sysconfig.get_paths()["purelib"])
    if not readable_by_all(site):
        raise RuntimeError(f"{site} (the course's packages) is not readable by every user: put the project in a "
                           "folder every user can read (e.g. /opt or /srv), then run setup again")
    python = target / "bin" / "python"
    if not python.exists():
        subprocess.run([str(system_python()), "-m", "venv", "--without-pip", str(target)], check=True)
    own_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (own_site / "cnncourse-venv.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    for name in ("share", "etc"):
        link = target / name
        if link.is_symlink() or link.exists():
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink()
        if (Path(sys.prefix) / name).exists():
            link.symlink_to(Path(sys.prefix) / name)
    shebang = f"#!{Path(sys.prefix) / 'bin' / 'python'}".encode()
    for script in (Path(sys.prefix) / "bin").iterdir():
        if script.name.startswith("python") or not script.is_file():
            continue
        head = script.read_bytes()[:200]
        if head.startswith(shebang + b"\n") or head.startswith(shebang.replace(b"/python", b"/python3") + b"\n"):
            body = script.read_bytes().split(b"\n", 1)[1]
            out = target / "bin" / script.name
            out.write_bytes(f"#!{python}\n".encode() + body)
            out.chmod(0o755)
    return python
