"""Read an image-classification set laid out as one folder per class, from a zip or a plain folder.

``ClassArchive(path, classes)`` lists ``.../<Class>/<name>.png`` members of a zip archive (read in
place, never extracted) or of a folder, reads their bytes (safely from several threads at once), and
gives a cheap fingerprint that changes whenever the content changes.
"""

from __future__ import annotations

import hashlib
import os
import threading
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

    Attributes:
        path: the zip file or folder.
        members: member names (zip names, or paths relative to the folder), sorted.
        labels: class index of each member (position in ``classes``).

    Raises:
        DataError: unreadable or truncated zip, no PNG at all, a missing class folder, or the same
            file name twice in one class.
    """

    def __init__(self, path: str | os.PathLike, classes: Sequence[str]):
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
        for name in pngs:
            parts = name.rsplit("/", 2)
            parent = parts[-2] if len(parts) > 1 else ""
            if parent in by_class:
                by_class[parent].append(name)
        missing = [c for c, names in by_class.items() if not names]
        if missing:
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

    def fingerprint(self) -> str:
        """sha256 over the listing: per file its name, CRC-32 and size (zip) or mtime and size (folder).

        Cheap (no image bytes are read) and stable across copies of a zip; any change of a member's
        content changes its CRC or size and hence the fingerprint.
        """
        h = hashlib.sha256(b"zip\n" if self.is_zip else b"dir\n")
        for row in self._fingerprint_rows:
            h.update("\t".join(map(str, row)).encode() + b"\n")
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
