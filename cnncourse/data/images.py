"""Decode many PNGs into one uint8 tensor, in parallel, and keep it on disk.

``letterbox_png(data, size)`` decodes one image and fits it into ``size x size`` keeping its aspect
ratio, padded with black. ``decode_many`` runs it over a list of files with a thread pool (Pillow
releases the GIL while it inflates and resizes) and a tqdm bar. ``save_atomic`` writes a cache file
through a temporary file and ``os.replace``, so a crash never leaves a half-written cache; a process
killed while writing leaves its ``*.tmp`` behind, which ``clean_stale_tmp`` removes once it is stale.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from cnncourse.data.archive import DataError

__all__ = ["letterbox_png", "decode_many", "save_atomic", "clean_stale_tmp"]

ON_ERROR = ("raise", "skip")


def letterbox_png(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes to a (size, size, 3) uint8 RGB array: resized to fit, aspect kept, centred on black."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (size, size))
        canvas.paste(im, ((size - nw) // 2, (size - nh) // 2))
        return np.asarray(canvas)


def decode_many(
    read: Callable[[str], bytes],
    names: Sequence[str],
    size: int,
    *,
    on_error: str = "raise",
    workers: int | None = None,
    progress: bool = True,
    where: str = "",
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode ``names`` (read with ``read``) into ``(images (K, 3, size, size) uint8, kept, skipped)``.

    ``kept`` are the indices into ``names`` of the K decoded images, in order; ``skipped`` the names that
    could not be read or decoded (only with ``on_error="skip"``; with ``"raise"`` the first one raises a
    ``DataError`` naming the file). ``where`` names the source in messages.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}.")
    out = np.zeros((len(names), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(names), dtype=bool)
    errors: dict[int, str] = {}

    def work(i: int) -> int:
        try:
            out[i] = letterbox_png(read(names[i]), size)
            ok[i] = True
        except Exception as err:  # any reader or decoder failure is reported per file below
            errors[i] = f"{type(err).__name__}: {err}"
        return i

    workers = workers or min(8, os.cpu_count() or 1)
    desc = f"decoding {os.path.basename(where)}".strip()
    bar = tqdm(total=len(names), unit="img", desc=desc, disable=not progress)
    with ThreadPoolExecutor(workers) as pool, bar:
        for i in pool.map(work, range(len(names))):  # in order, so the first bad file is the one named
            bar.update()
            if i in errors and on_error == "raise":
                pool.shutdown(wait=True, cancel_futures=True)
                raise DataError(
                    f"Cannot decode {names[i]} in {where or 'the source'} ({errors[i]}). The file is corrupt: "
                    'replace the archive, or pass on_error="skip" to leave such files out.'
                )
    kept = np.flatnonzero(ok).tolist()
    images = torch.from_numpy(out[ok]).permute(0, 3, 1, 2).contiguous()
    return images, kept, [names[i] for i in sorted(errors)]


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path`` (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_stale_tmp(folder: str | os.PathLike, max_age_s: float = 300) -> list[Path]:
    """Delete ``*.tmp`` files in ``folder`` not written to for ``max_age_s`` seconds; return them.

    ``save_atomic`` removes its temporary file on any exception, but not when the process is killed
    (SIGKILL, power loss). A writer keeps touching its file, so one older than a few minutes is
    abandoned; younger ones may belong to a build running right now and are left alone.
    """
    removed = []
    now = time.time()
    for tmp in Path(folder).glob("*.tmp"):
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # another process cleaned it first
            continue
    return removed
