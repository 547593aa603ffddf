"""The NIH/NLM malaria cell images: 27,558 thin-blood-smear cell crops from 201 patients.

Rajaraman S. et al. (2018), PeerJ 6:e4568. Two classes, label 1 = ``Parasitized``, 0 = ``Uninfected``.
Cells of one patient are strongly correlated, so every split here is **by patient**.

Typical use::

    from cnncourse.data.malaria import MalariaCells, load_tensors
    train = MalariaCells("train")                       # a torch Dataset of (float (3, 64, 64), label)
    x, y, pid = load_tensors("val", device="cuda")      # the whole split as uint8 (N, 3, 64, 64)

Sources (``find_source``): an extracted ``cell_images/`` folder, ``cell_images.zip`` or any
``cell_images*.zip`` in ``data_dir()`` or a ``$CNNCOURSE_DATA_PATH`` folder; ``fetch()`` downloads
the official archive. PNGs are read straight from the zip; each split is decoded once (in parallel)
and cached as one uint8 tensor file in ``data_dir()/cache/``, named after the source fingerprint
(``ClassArchive.fingerprint``: member names, CRC-32s and sizes, and the zip's sha256, remembered in
``cache/sources.json`` per path and stat so that an unchanged zip is hashed once; any change of content
gives a new cache, also a zip corrupted in place), the split, the split seed and the image size.
Without any real source, ``MalariaCells`` and ``load_tensors`` fall back to ``synthetic_cells`` with
a ``SyntheticDataWarning``.
"""

from __future__ import annotations

import ast
import csv
import functools
import math
import os
import random
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from cnncourse.data import data_dir, data_path
from cnncourse.data.archive import ClassArchive, DataError
from cnncourse.data.downloader import DownloadError, download
from cnncourse.data.images import clean_stale_tmp, decode_many, save_atomic
from cnncourse.data.synthetic import CellTensors, synthetic_cells

__all__ = [
    "URL",
    "MIRROR_URL",
    "SHA256",
    "CLASSES",
    "SPLITS",
    "DataError",
    "SyntheticDataWarning",
    "CellIndex",
    "fetch",
    "find_source",
    "patient_id",
    "read_patient_csv",
    "scan",
    "patient_split",
    "patient_folds",
    "load_tensors",
    "MalariaCells",
]

URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip"
MIRROR_URL = "https://ceb.nlm.nih.gov/proj/malaria/cell_images.zip"
SHA256 = "0a949556b2414159b5100192609805376654c4266d8d187be9b1922fad43c668"
NBYTES = 353_452_851
CSV_FILES = {  # official patient-to-cell mapping, per class: file name -> sha256
    "Parasitized": ("patientid_cellmapping_parasitized.csv",
                    "d0367e513397404e980baee2a641bce9ce329a22e62ea9007962dfca2f8418d3"),
    "Uninfected": ("patientid_cellmapping_uninfected.csv",
                   "a8577b21e7154724f4bbd18326218e2c63a99b22ab372b79a7530d36df6dab78"),
}  # fmt: skip
CSV_URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/{}"
CLASSES = ("Uninfected", "Parasitized")  # index = label
SPLITS = ("train", "val", "test")
FRACTIONS = (0.7, 0.15, 0.15)
CACHE_VERSION = 2  # bump when decoding or resizing changes
SYNTHETIC_N = 2400  # cells in the synthetic fallback (40 fake patients)
_HOW_TO_GET = (
    "Get the real data with `python -m cnncourse data malaria --download` (or cnncourse.data.malaria.fetch()), "
    f"or download {URL} by hand and put cell_images.zip into {{where}} or into a folder named in "
    "$CNNCOURSE_DATA_PATH."
)


class SyntheticDataWarning(UserWarning):
    """No real malaria data was found, so synthetic stand-in cells are used."""


class CellIndex(NamedTuple):
    """What a source holds, listed without decoding anything.

    files: file names (no folders). labels: 1 = Parasitized. patients: patient ID per file.
    checked: how many patient IDs were confirmed by the official mapping CSVs (0 without them).
    """

    files: list[str]
    labels: list[int]
    patients: list[str]
    checked: int


# --- finding and fetching the data -----------------------------------------------------------------


def fetch(*, progress: bool = True) -> Path:
    """Download the official archive (and mapping CSVs) into ``data_dir()``; return the zip's path.

    Tries the NIH address, then the older mirror; verifies the sha256; resumes a partial download.
    A missing CSV only warns (patient IDs also come from the file names).
    """
    dest = data_dir() / "cell_images.zip"
    try:
        download(URL, dest, SHA256, progress=progress)
    except DownloadError as first:
        try:
            download(MIRROR_URL, dest, SHA256, progress=progress)
        except DownloadError as second:
            raise DownloadError(f"{first}\nThe mirror failed too: {second}") from second
    for name, sha in CSV_FILES.values():
        try:
            download(CSV_URL.format(name), dest.parent / name, sha, progress=progress)
        except (DownloadError, ValueError) as err:
            warnings.warn(f"Could not fetch the mapping file {name}: {err}", stacklevel=2)
    return dest


def find_source() -> Path:
    """The first real source found: per folder of ``data_path()``, ``cell_images/``, then
    ``cell_images.zip``, then any other ``cell_images*.zip`` (sorted).

    Raises:
        FileNotFoundError: nothing found; the message lists every place looked and how to get the data.
    """
    looked = []
    for folder in data_path():
        candidates = [folder / "cell_images", folder / "cell_images.zip"]
        if folder.is_dir():
            candidates += sorted(p for p in folder.glob("cell_images*.zip") if p.name != "cell_images.zip")
        for c in candidates:
            if (c.suffix == ".zip" and c.is_file()) or (c.suffix != ".zip" and c.is_dir()):
                return c
        looked.append(f"{folder}/cell_images/, {folder}/cell_images*.zip")
    raise FileNotFoundError(
        "No malaria cell images found. Looked in: " + "; ".join(looked) + ". " + _HOW_TO_GET.format(where=data_dir())
    )


# --- patients ----------------------------------------------------------------------------------------


def patient_id(filename: str) -> str:
    """The patient of a cell image: the part of its file name before ``_IMG``.

    ``"C100P61ThinF_IMG_20150918_144104_cell_162.png"`` -> ``"C100P61ThinF"`` (folders are ignored).
    """
    base = os.path.basename(str(filename))
    head, sep, _ = base.partition("_IMG")
    if not sep or not head:
        raise ValueError(
            f"Cannot find the patient in {filename!r}: expected a name like 'C100P61ThinF_IMG_..._cell_1.png'."
        )
    return head


def read_patient_csv(path: str | os.PathLike) -> dict[str, str]:
    """Read an official mapping CSV into ``{file name: patient ID}``.

    Their format: no header, one row per patient, column 1 the patient ID and the other columns a Python
    list literal of file names that was split at its commas (plus empty padding columns).
    """
    mapping: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            while row and not row[-1].strip():
                row.pop()
            if not row:
                continue
            try:
                files = ast.literal_eval(",".join(row[1:]))
                if not isinstance(files, list) or not all(isinstance(x, str) for x in files):
                    raise ValueError("not a list of file names")
            except (ValueError, SyntaxError) as err:
                raise DataError(f"{path}, line {line}: cannot read the files of patient {row[0]!r} ({err}).") from err
            for name in files:
                mapping[name] = row[0].strip()
    return mapping


def _official_mapping(source: Path) -> dict[str, dict[str, str]]:
    """The mapping CSVs found beside ``source`` or in a ``data_path()`` folder, per class."""
    found = {}
    for cls, (name, _) in CSV_FILES.items():
        for folder in [source.parent, *data_path()]:
            if (folder / name).is_file():
                found[cls] = read_patient_csv(folder / name)
                break
    return found


def scan(source: str | os.PathLike | ClassArchive) -> CellIndex:
    """List a source's files, labels and patients without decoding, checking the official CSVs if present.

    Raises:
        DataError: a file whose name-derived patient disagrees with the official mapping, or a bad source.
    """
    archive = source if isinstance(source, ClassArchive) else ClassArchive(source, CLASSES)
    files = [os.path.basename(m) for m in archive.members]
    patients = [patient_id(f) for f in files]
    official = _official_mapping(archive.path)
    checked = 0
    for f, label, p in zip(files, archive.labels, patients, strict=True):
        mapping = official.get(CLASSES[label])
        if mapping is not None and f in mapping:
            if mapping[f] != p:
                raise DataError(f"{f}: the official mapping says patient {mapping[f]!r}, its name says {p!r}.")
            checked += 1
    return CellIndex(files, list(archive.labels), patients, checked)


def _largest_remainder(n: int, fractions: tuple[float, ...]) -> list[int]:
    raw = [f * n for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def patient_split(
    patients: Mapping[str, bool] | Iterable[str],
    fractions: tuple[float, float, float] = FRACTIONS,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split patients into ``{"train", "val", "test"}`` lists (sorted), stratified, deterministic.

    Args:
        patients: a mapping from patient ID to whether that patient has any parasitized cell (the
            stratum), or just patient IDs (repeats allowed, e.g. one per image; one stratum).
        fractions: shares of patients for train, val, test; non-negative, summing to 1. Each stratum
            is divided by largest remainders, so the split of patients follows them as closely as
            whole patients allow.
        seed: the same seed and patients always give the same split.

    No patient is ever in two splits: every patient is in exactly one list.
    """
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fractions):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions!r}.")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions)}).")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}.")
    strata: dict[bool, list[str]] = {}
    if isinstance(patients, Mapping):
        for p, infected in patients.items():
            strata.setdefault(bool(infected), []).append(p)
    else:
        strata[False] = sorted(set(patients))
    if not any(strata.values()):
        raise ValueError("patient_split needs at least one patient.")
    rng = random.Random(seed)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for key in sorted(strata):
        group = sorted(strata[key])
        rng.shuffle(group)
        start = 0
        for name, count in zip(SPLITS, _largest_remainder(len(group), tuple(fractions)), strict=True):
            out[name] += group[start : start + count]
            start += count
    return {s: sorted(v) for s, v in out.items()}


def patient_folds(patients: Mapping[str, bool], k: int, seed: int = 0) -> list[list[str]]:
    """Patients dealt into ``k`` disjoint folds (each sorted) for patient-grouped cross-validation.

    ``patients`` maps patient ID to whether it has any parasitized cell; each of the two strata is shuffled
    (seeded) and dealt round-robin, continuing where the previous stratum stopped, so fold sizes differ by at
    most one patient and every fold gets its share of infected patients. Every patient is in exactly one fold.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int >= 2 (folds), got {k!r}.")
    if len(patients) < k:
        raise ValueError(f"{k} folds need at least {k} patients, got {len(patients)}.")
    rng = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    turn = 0
    for infected in (True, False):
        group = sorted(p for p, flag in patients.items() if bool(flag) == infected)
        rng.shuffle(group)
        for p in group:
            folds[turn % k].append(p)
            turn += 1
    return [sorted(f) for f in folds]


def _split_indices(labels: list[int], patients: list[str], split: str, seed: int) -> list[int]:
    if split == "all":
        return list(range(len(labels)))
    infected: dict[str, bool] = {}
    for y, p in zip(labels, patients, strict=True):
        infected[p] = infected.get(p, False) or bool(y)
    chosen = set(patient_split(infected, seed=seed)[split])
    return [i for i, p in enumerate(patients) if p in chosen]


# --- loading -----------------------------------------------------------------------------------------


class _Loaded(NamedTuple):
    tensors: CellTensors
    source: Path | str  # a path, or "synthetic"
    files: list[str]
    skipped: list[str]
    cache: Path | None


@functools.lru_cache(maxsize=2)
def _synthetic_all(size: int) -> CellTensors:
    return synthetic_cells(SYNTHETIC_N, size=size, seed=12345)


def _resolve(source: str | os.PathLike | None) -> Path | None:
    """A real source path, or None for the synthetic stand-in."""
    if isinstance(source, str) and source == "synthetic":
        return None
    if source is None:
        try:
            return find_source()
        except FileNotFoundError as err:
            warnings.warn(
                f"{err}\nUsing {SYNTHETIC_N} synthetic stand-in cells (cnncourse.data.synthetic) instead: "
                "results on them say nothing about real malaria images.",
                SyntheticDataWarning,
                stacklevel=4,
            )
            return None
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Malaria source {path} does not exist. " + _HOW_TO_GET.format(where=data_dir()))
    return path


def _check_args(split: str, size: int, on_error: str) -> None:
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 512:
        raise ValueError(f"size must be an int between 16 and 512, got {size!r}.")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")


def _cache_path(key: str, split: str, seed: int, size: int) -> Path:
    return data_dir() / "cache" / f"malaria-{key[:20]}-{split}-seed{seed}-{size}px-v{CACHE_VERSION}.pt"


def _load(
    split: str,
    *,
    size: int,
    source: str | os.PathLike | None,
    seed: int,
    on_error: str,
    progress: bool,
    workers: int | None = None,
) -> _Loaded:
    _check_args(split, size, on_error)
    path = _resolve(source)
    if path is None:
        cells = _synthetic_all(size)
        idx = _split_indices(cells.labels.tolist(), cells.patient_ids, split, seed)
        t = CellTensors(cells.images[idx], cells.labels[idx], [cells.patient_ids[i] for i in idx])
        return _Loaded(t, "synthetic", [f"synthetic_{i}.png" for i in idx], [], None)

    with ClassArchive(path, CLASSES) as archive:
        clean_stale_tmp(data_dir() / "cache")
        key = archive.fingerprint(memo=data_dir() / "cache" / "sources.json")
        cache = _cache_path(key, split, seed, size)
        payload = _read_cache(cache, key)
        if payload is None:
            index = scan(archive)
            idx = _split_indices(index.labels, index.patients, split, seed)
            if not idx:
                raise DataError(f"Split {split!r} of {path} is empty ({len(set(index.patients))} patients in all).")
            images, kept, skipped = decode_many(
                archive.read, [archive.members[i] for i in idx], size,
                on_error=on_error, workers=workers, progress=progress, where=str(path),
            )  # fmt: skip
            idx = [idx[k] for k in kept]
            payload = {
                "version": CACHE_VERSION,
                "key": key,
                "images": images,
                "labels": torch.tensor([index.labels[i] for i in idx], dtype=torch.int64),
                # one newline-joined string each: unpickles far faster than lists of thousands of strings
                "patient_ids": "\n".join(index.patients[i] for i in idx),
                "files": "\n".join(index.files[i] for i in idx),
                "skipped": "\n".join(os.path.basename(s) for s in skipped),
            }
            save_atomic(payload, cache)
    skipped, files, patient_ids = (_lines(payload[k]) for k in ("skipped", "files", "patient_ids"))
    if skipped:
        if on_error == "raise":
            raise DataError(
                f"{len(skipped)} unreadable PNG(s) in {path}, e.g. {skipped[0]}; "
                "pass on_error='skip' to leave them out."
            )
        warnings.warn(f"Skipped {len(skipped)} unreadable PNG(s) in {path}: {', '.join(skipped[:5])}", stacklevel=3)
    return _Loaded(CellTensors(payload["images"], payload["labels"], patient_ids), path, files, skipped, cache)


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def _read_cache(cache: Path, key: str) -> dict | None:
    """The cached payload if the file exists, loads and belongs to this source; else None (rebuild)."""
    if not cache.is_file():
        return None
    try:
        payload = torch.load(cache, weights_only=True)
    except Exception:  # a damaged cache file is simply rebuilt
        return None
    ok = isinstance(payload, dict) and payload.get("version") == CACHE_VERSION and payload.get("key") == key
    return payload if ok else None


def load_tensors(
    split: str = "train",
    *,
    size: int = 64,
    device: str | torch.device = "cpu",
    source: str | os.PathLike | None = None,
    seed: int = 0,
    on_error: str = "raise",
    progress: bool = True,
) -> CellTensors:
    """A whole split as tensors on ``device``, for the fast GPU training path.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` (patient-disjoint, see ``patient_split``) or ``"all"``.
        size: images are resized to fit ``size x size`` keeping their aspect ratio, padded with black.
        device: where the tensors go (``"cuda"`` puts the whole split on the GPU).
        source: a zip or ``cell_images/`` folder; ``None`` = ``find_source()``, falling back to
            synthetic cells with a ``SyntheticDataWarning``; ``"synthetic"`` = the stand-in on purpose.
        seed: the patient split's seed.
        on_error: ``"raise"`` (a corrupt PNG raises ``DataError`` naming it) or ``"skip"`` (left out, warned).
        progress: show a progress bar while decoding (first build only).

    Returns:
        ``CellTensors(images (N, 3, S, S) uint8, labels (N,) int64 with 1 = Parasitized, patient_ids
        list of N str)``; unpack as ``x, y, pid = load_tensors(...)``.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was asked for, but no CUDA GPU is available; use device='cpu'.")
    t = _load(split, size=size, source=source, seed=seed, on_error=on_error, progress=progress).tensors
    return CellTensors(t.images.to(device), t.labels.to(device), t.patient_ids)


class MalariaCells(Dataset):
    """The malaria cells of one patient-disjoint split, as a torch ``Dataset``.

    ``dataset[i]`` is ``(image, label)``: image ``(3, S, S)`` float32 in [0, 1] (passed through
    ``transform`` if given, e.g. torchvision v2 augmentations), label an int, 1 = Parasitized.
    The whole split is held in memory as ``images`` ``(N, 3, S, S)`` uint8; see ``load_tensors`` for
    the arguments. Attributes: ``labels`` (N,) int64, ``patient_ids``, ``files``, ``source`` (a path or
    ``"synthetic"``), ``synthetic``, ``skipped`` (names left out with ``on_error="skip"``), ``cache``.
    """

    classes = CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        source: str | os.PathLike | None = None,
        size: int = 64,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        on_error: str = "raise",
        progress: bool = True,
    ):
        loaded = _load(split, size=size, source=source, seed=seed, on_error=on_error, progress=progress)
        self.split, self.size, self.seed, self.transform = split, size, seed, transform
        self.images, self.labels, self.patient_ids = loaded.tensors
        self.files, self.skipped, self.cache = loaded.files, loaded.skipped, loaded.cache
        self.source = loaded.source
        self.synthetic = loaded.source == "synthetic"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i].float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])

    def __repr__(self) -> str:
        n1 = int(self.labels.sum())
        return (
            f"MalariaCells(split={self.split!r}, size={self.size}, n={len(self)}: {n1} Parasitized, "
            f"{len(self) - n1} Uninfected, {len(set(self.patient_ids))} patients, source={str(self.source)!r})"
        )
