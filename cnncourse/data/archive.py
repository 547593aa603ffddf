"""Read an image-classification set laid out as one folder per class, from a zip or a plain folder.

``ClassArchive(path, classes)`` lists ``.../<Class>/<name>.png`` members of a zip archive (read in
place, never extracted) or of a folder, reads their bytes (safely from several threads at once), and
gives a cheap fingerprint that changes whenever the content changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DataError", "ClassArchive"]


class DataError(ValueError):
    """A data source that cannot be used as it is; the message names the file and what to do."""


class ClassArchive:
    """PNG images in class folders, inside a zip (``*.zip``) or a folder.

    A member belongs to class ``C`` when its parent folder is named ``C`` (any depth, so both
    ``cell_images/Parasitized/x.png`` in a zip and ``Parasitized/x.png`` under a folder work). Other
    files (``Thumbs.db``, ...) are ignored.

    With ``require_all=False`` (judging a model on a hidden set that may hold one class only, or none),
    missing class folders are allowed, and PNGs outside any class folder are listed in ``unlabelled``.

    Attributes:
        path: the zip file or folder.
        members: member names (zip names, or paths relative to the folder), sorted.
        labels: class index of each member (position in ``classes``).
        unlabelled: PNG members outside every class folder (sorted).

    Raises:
        DataError: unreadable or truncated zip, no PNG at all, a missing class folder (unless
            ``require_all=False``), or the same file name twice in one class.
    """

    def __init__(self, path: str | os.PathLike, classes: Sequence[str], *, require_all: bool = True):
        self.path = Path(path)
        self.classes = tuple(classes)
        self.is_zip = self.path.is_file()
        self._local = threading.local()
        self._handles: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()
        if self.is_zip:
            try:
                with zipfile.ZipFile(self.path) as z:
                    infos = [(i.filename, i.CRC, i.file_size) for i in z.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise DataError(
                    f"{self.path} is not a readable zip archive ({err}); it is probably truncated or corrupt. "
                    "Delete it and download it again."
                ) from err
        elif self.path.is_dir():
            infos = []
            for p in self.path.rglob("*"):
                if p.is_file():
                    st = p.stat()
                    infos.append((p.relative_to(self.path).as_posix(), st.st_mtime_ns, st.st_size))
        else:
            raise FileNotFoundError(f"No such data source: {self.path}")
        infos.sort()
        self._fingerprint_rows = infos

        pngs = [name for name, *_ in infos if name.lower().endswith(".png")]
        if not pngs:
            raise DataError(f"{self.path} holds no PNG images (empty archive or wrong file?).")
        by_class: dict[str, list[str]] = {c: [] for c in self.classes}
        self.unlabelled: list[str] = []
        for name in pngs:
            parts = name.rsplit("/", 2)
            parent = parts[-2] if len(parts) > 1 else ""
            by_class.get(parent, self.unlabelled).append(name)
        missing = [c for c, names in by_class.items() if not names]
        if missing and require_all:
            raise DataError(
                f"{self.path} has no class folder {', '.join(repr(c) for c in missing)} with PNG files; expected "
                f"one folder per class {list(self.classes)} (e.g. cell_images/{self.classes[0]}/*.png)."
            )
        self.members: list[str] = []
        self.labels: list[int] = []
        for label, c in enumerate(self.classes):
            names = by_class[c]
            seen: set[str] = set()
            for name in names:
                base = name.rsplit("/", 1)[-1]
                if base in seen:
                    raise DataError(f"{self.path}: {base} appears twice in class {c!r} (a nested copy?).")
                seen.add(base)
            self.members += names
            self.labels += [label] * len(names)

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"ClassArchive({str(self.path)!r}, {len(self)} images)"

    def fingerprint(self, memo: str | os.PathLike | None = None) -> str:
        """sha256 over the listing (per file its name, CRC-32 and size for a zip, mtime and size for a
        folder) and, for a zip, over the zip's bytes.

        The listing alone misses a zip corrupted in place (member bytes changed, central directory
        intact), so the zip's content hash is part of it. Hashing 350 MB on every load would be slow:
        with ``memo`` (a JSON file) the content hash is remembered per path, size, mtime and inode and
        computed again only when one of them changes. Copies of a zip get the same fingerprint.
        """
        h = hashlib.sha256(b"zip\n" if self.is_zip else b"dir\n")
        for row in self._fingerprint_rows:
            h.update("\t".join(map(str, row)).encode() + b"\n")
        if self.is_zip:
            h.update(b"sha256 " + _content_sha256(self.path, memo).encode())
        return h.hexdigest()

    def read(self, member: str) -> bytes:
        """The raw bytes of one member. Thread-safe: each thread uses its own zip handle."""
        if not self.is_zip:
            return (self.path / member).read_bytes()
        z = getattr(self._local, "zip", None)
        if z is None:
            z = self._local.zip = zipfile.ZipFile(self.path)
            with self._lock:
                self._handles.append(z)
        return z.read(member)

    def close(self) -> None:
        """Close the zip handles opened by ``read`` (reading again reopens them)."""
        with self._lock:
            for z in self._handles:
                z.close()
            self._handles.clear()
            self._local = threading.local()

    def __enter__(self) -> ClassArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _content_sha256(path: Path, memo: str | os.PathLike | None) -> str:
    """sha256 of the file's bytes, remembered in the JSON file ``memo`` while the file's stat is unchanged."""
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    key = str(path.resolve())
    memo = Path(memo) if memo is not None else None
    table: dict = {}
    if memo is not None and memo.is_file():
        try:
            table = json.loads(memo.read_text())
        except (OSError, ValueError):
            table = {}  # a damaged memo is simply rebuilt
        entry = table.get(key) if isinstance(table, dict) else None
        if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    # A file written within the last seconds could change again without its mtime moving (coarse clocks):
    # remember only hashes of files that have been still for a while.
    if memo is not None and time.time_ns() - st.st_mtime_ns > 2_000_000_000:
        table = table if isinstance(table, dict) else {}
        table[key] = {"stat": stamp, "sha256": digest}
        memo.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=memo.name + ".", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(table, f)
        os.replace(tmp, memo)
    return digest
