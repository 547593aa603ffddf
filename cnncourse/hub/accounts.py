"""Unix accounts for the hub's users and the grader (``useradd``/``chpasswd``/``userdel``; run as root).

Each account gets its own group and a private home (mode 0700): one student cannot read another's files.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from pathlib import Path


def exists(username: str) -> bool:
    try:
        pwd.getpwnam(username)
    except KeyError:
        return False
    return True


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv[:1])} exited {result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")


def ensure_account(username: str, home_base: Path, comment: str = "") -> bool:
    """Create ``username`` (own group, home ``home_base/username`` mode 0700, bash) unless it exists; True if new."""
    if exists(username):
        return False
    if os.geteuid() != 0:
        raise PermissionError(f"creating the Unix account {username!r} needs root: run the command as root")
    home_base.mkdir(parents=True, exist_ok=True)
    _run(["useradd", "--create-home", "--base-dir", str(home_base), "--shell", "/bin/bash", "--user-group",
          "--comment", comment.replace(":", " "), username], f"creating the account {username}")
    os.chmod(pwd.getpwnam(username).pw_dir, 0o700)
    return True


def set_password(username: str, password: str | None = None) -> str:
    """Set (or generate) ``username``'s login password; returns it."""
    password = password or secrets.token_urlsafe(12)
    _run(["chpasswd"], f"setting the password of {username}", stdin=f"{username}:{password}\n")
    return password


def remove_account(username: str) -> None:
    """Delete ``username``, its group and its home folder (no error if it does not exist)."""
    if exists(username):
        _run(["userdel", "--remove", username], f"removing the account {username}")


def chown_tree(path: Path, username: str) -> None:
    """Give ``path`` and everything below it to ``username`` (and its group)."""
    entry = pwd.getpwnam(username)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)
