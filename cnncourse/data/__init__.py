"""Where the course's data lives, and how it gets there.

``data_dir()`` is the one folder the package ever writes to (downloads and caches); the folders in
``$CNNCOURSE_DATA_PATH`` are searched for sources but never written. ``download`` fetches one file
with resume, checksum and retries. Data sets live in submodules (``cnncourse.data.malaria``,
``cnncourse.data.synthetic``), imported explicitly so that ``import cnncourse.data`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnncourse.data.downloader import ChecksumError, DownloadError, download, sha256_file

__all__ = ["data_dir", "data_path", "download", "sha256_file", "ChecksumError", "DownloadError"]


def data_dir() -> Path:
    """The writable data folder: ``$CNNCOURSE_DATA_DIR`` if set, else ``~/.cache/cnncourse``.

    The folder is not created here; writers create what they need.
    """
    env = os.environ.get("CNNCOURSE_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnncourse"


def data_path() -> list[Path]:
    """Folders searched for data sources, in order: ``data_dir()``, then each ``$CNNCOURSE_DATA_PATH`` entry.

    ``$CNNCOURSE_DATA_PATH`` is colon-separated (``os.pathsep``) like ``$PATH``; empty entries are ignored.
    Those extra folders are treated as read-only.
    """
    extra = [Path(p).expanduser() for p in os.environ.get("CNNCOURSE_DATA_PATH", "").split(os.pathsep) if p]
    return [data_dir(), *extra]
