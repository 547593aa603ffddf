"""Download one file safely: stream, resume, verify, rename.

``download(url, dest, sha256)`` writes to ``dest + ".part"``, resumes an interrupted ``.part`` with an
HTTP ``Range`` request, retries transient failures (connection errors, cut-off bodies, HTTP 5xx/429)
with exponential backoff, checks the sha256 of the whole file and only then renames it to ``dest``
(``os.replace``, atomic on one file system). ``dest`` therefore either does not exist or holds the
verified file; it never holds a partial or wrong one.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["download", "sha256_file", "ChecksumError", "DownloadError"]

_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(OSError):
    """The file could not be fetched; the message says what to download by hand and where to put it."""


class ChecksumError(ValueError):
    """The downloaded bytes do not have the expected sha256 (nothing was written to the destination)."""


class _Transient(Exception):
    """A failure worth retrying (the ``.part`` file is kept so the next try resumes)."""


def sha256_file(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _by_hand(url: str, dest: Path, sha256: str) -> str:
    return (
        f"Download {url} by hand (browser or another machine) and save it as {dest} "
        f"(sha256 {sha256}), or put it in a folder listed in $CNNCOURSE_DATA_PATH."
    )


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP attempt: append to ``part`` from where it ends. Raises _Transient on retryable failures."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "cnncourse"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part is already complete (or longer than the file): verify it
            return
        if err.code in (408, 429) or err.code >= 500:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"HTTP {err.code} {err.reason} for {url}.") from err
    except (urllib.error.URLError, OSError) as err:
        raise _Transient(str(getattr(err, "reason", err))) from err

    with response:
        if response.status == 206:
            mode = "ab"
        else:  # 200: the server ignored Range, start over
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        total = offset + expected if expected is not None else None
        received = 0
        with (
            open(part, mode) as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress)
            as bar,
        ):
            try:
                while block := response.read(_CHUNK):
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.HTTPException, OSError) as err:
                raise _Transient(f"connection lost after {offset + received} bytes ({err})") from err
        if expected is not None and received < expected:
            raise _Transient(f"connection closed after {offset + received} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    progress: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` and verify its sha256; return ``dest`` as a ``Path``.

    Args:
        url: http(s) or file URL.
        dest: final file name; its folder is created. If it already exists with the right sha256,
            nothing is downloaded.
        sha256: expected hex digest (64 characters).
        progress: show a tqdm bar.
        retries: extra attempts after a transient failure; each resumes the ``.part`` file.
        backoff: seconds before the first retry, doubled on each further one.
        timeout: socket timeout in seconds.

    Raises:
        ChecksumError: the finished file has another sha256 (``dest`` untouched, ``.part`` removed).
        DownloadError: no connection after all retries, or a permanent HTTP error; the message names
            the URL and where to put a hand-downloaded copy.
    """
    sha256 = sha256.lower() if isinstance(sha256, str) else sha256
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 hex characters, got {sha256!r}.")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}.")
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    last_error = ""
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout, progress)
            break
        except _Transient as err:
            last_error = str(err)
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
        except DownloadError as err:
            raise DownloadError(f"{err} {_by_hand(url, dest, sha256)}") from err
    else:
        raise DownloadError(
            f"Could not download {url} after {retries + 1} attempts ({last_error}). No network? "
            + _by_hand(url, dest, sha256)
        )

    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise ChecksumError(
            f"sha256 mismatch for {url}: expected {sha256}, got {got}. The download was discarded and "
            f"nothing was written to {dest}."
        )
    os.replace(part, dest)
    return dest
