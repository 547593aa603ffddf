"""cnncourse.data.malaria on small archives built by the tests (no real data needed)."""

from __future__ import annotations

import io
import json
import os
import random
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnncourse.__main__ import main
from cnncourse.data import images as images_mod
from cnncourse.data import sha256_file
from cnncourse.data.archive import DataError
from cnncourse.data.images import clean_stale_tmp, letterbox_png
from cnncourse.data.malaria import (
    MalariaCells,
    SyntheticDataWarning,
    find_source,
    load_tensors,
    patient_id,
    patient_split,
    read_patient_csv,
    scan,
)

# 12 patients: 8 with both classes, 4 with only uninfected cells (like the real set).
PATIENTS = [f"C{k}P{k}ThinF" for k in range(12)]


def _png(rng: random.Random, w: int | None = None, h: int | None = None, color=None) -> bytes:
    w, h = w or rng.randint(20, 48), h or rng.randint(20, 48)
    color = color or (rng.randint(150, 230), rng.randint(100, 180), rng.randint(120, 200))
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def _members(seed: int = 0, per_class: int = 3) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for k, p in enumerate(PATIENTS):
        for cls in ("Parasitized", "Uninfected") if k < 8 else ("Uninfected",):
            for i in range(per_class):
                out[f"cell_images/{cls}/{p}_IMG_2015_{cls[0]}_cell_{i}.png"] = _png(rng)
    return out


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("cell_images/Thumbs.db", b"not an image")  # the official archive has such files
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Caches go to a tmp folder; no real data is visible unless a test adds it."""
    monkeypatch.setenv("CNNCOURSE_DATA_DIR", str(tmp_path / "datadir"))
    monkeypatch.delenv("CNNCOURSE_DATA_PATH", raising=False)


@pytest.fixture
def small_zip(tmp_path) -> Path:
    return _write_zip(tmp_path / "cell_images_small.zip", _members())


def _cache_files(tmp_path: Path) -> list[Path]:
    """Everything in the cache folder but the memo of zip hashes."""
    folder = tmp_path / "datadir" / "cache"
    return sorted(p for p in folder.iterdir() if p.name != "sources.json") if folder.exists() else []


def _corrupt_in_place(path: Path, member: str) -> bytes:
    """Flip bytes inside one member's data, leaving the zip's directory (names, CRCs, sizes) as it was.

    Returns the original bytes of the whole file."""
    original = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    local_header = 30 + len(info.filename.encode()) + len(info.extra)
    start = info.header_offset + local_header + info.compress_size // 2
    time.sleep(0.02)  # a real corruption happens later than the write before it
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in original[start : start + 4]))
    return original


# --- patient IDs and the official CSVs -----------------------------------------------------------------


def test_patient_id():
    assert patient_id("C100P61ThinF_IMG_20150918_144104_cell_162.png") == "C100P61ThinF"
    assert patient_id("cell_images/Uninfected/C1_thinF_IMG_20150604_104942_cell_168.png") == "C1_thinF"
    with pytest.raises(ValueError, match="no_patient.png"):
        patient_id("no_patient.png")


def _odd_csv(path: Path, rows: dict[str, list[str]]) -> Path:
    """The official format: no header, CRLF, list literal split at its commas, padding columns."""
    lines = [p + "," + ",".join(repr(files).split(",")) + ",,,," for p, files in rows.items()]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def test_read_patient_csv_odd_format(tmp_path):
    rows = {"C1P1ThinF": ["C1P1ThinF_IMG_1_cell_1.png", "C1P1ThinF_IMG_1_cell_2.png"], "C2": ["C2_IMG_9_cell_3.png"]}
    mapping = read_patient_csv(_odd_csv(tmp_path / "m.csv", rows))
    assert mapping == {f: p for p, files in rows.items() for f in files}
    (tmp_path / "bad.csv").write_text("C1P1,['unclosed.png'\r\n")
    with pytest.raises(DataError, match="line 1"):
        read_patient_csv(tmp_path / "bad.csv")


def test_scan_checks_official_csvs(tmp_path, small_zip):
    index = scan(small_zip)
    assert index.checked == 0  # no CSVs beside it yet
    assert len(index.files) == 8 * 6 + 4 * 3 and sum(index.labels) == 8 * 3
    assert set(index.patients) == set(PATIENTS)
    rows = {}
    for f, y, p in zip(index.files, index.labels, index.patients, strict=True):
        if y == 1:
            rows.setdefault(p, []).append(f)
    _odd_csv(tmp_path / "patientid_cellmapping_parasitized.csv", rows)
    assert scan(small_zip).checked == 24
    first = next(iter(rows))
    rows["C99P99ThinF"] = [rows.pop(first)[0]]  # the CSV now says another patient for one file
    _odd_csv(tmp_path / "patientid_cellmapping_parasitized.csv", rows)
    with pytest.raises(DataError, match="C99P99ThinF"):
        scan(small_zip)


# --- patient split -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("ABCDEFP0123456789", min_size=1, max_size=6), st.booleans(), min_size=1, max_size=60),
       st.integers(0, 10**6))  # fmt: skip
def test_patient_split_is_a_partition(patients, seed):
    split = patient_split(patients, seed=seed)
    sets = [set(split[s]) for s in ("train", "val", "test")]
    assert sum(map(len, sets)) == len(patients)  # nobody twice ...
    assert set.union(*sets) == set(patients)  # ... nobody lost
    assert split == patient_split(dict(reversed(list(patients.items()))), seed=seed)  # order-free, deterministic


def test_patient_split_stratified_and_seeded():
    patients = {f"P{i:03d}": i % 10 < 7 for i in range(100)}  # 70 with parasites, 30 without
    split = patient_split(patients, seed=0)
    # largest remainders: 70 -> 49 / 10.5 / 10.5 -> 49, 11, 10; 30 -> 21 / 4.5 / 4.5 -> 21, 5, 4
    for name, expected in [("train", (49, 21)), ("val", (11, 5)), ("test", (10, 4))]:
        infected = sum(patients[p] for p in split[name])
        assert (infected, len(split[name]) - infected) == expected
    assert patient_split(patients, seed=0) == split
    assert patient_split(patients, seed=1) != split
    ids = patient_split(["a", "b", "a", "c", "d"], fractions=(0.5, 0.25, 0.25), seed=3)
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == ["a", "b", "c", "d"]
    assert len(ids["train"]) == 2


@pytest.mark.parametrize("fractions", [(0.7, 0.3), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_patient_split_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        patient_split({"a": True}, fractions=fractions)


# --- decoding ------------------------------------------------------------------------------------------


def test_letterbox_keeps_aspect_and_pads_black():
    out = letterbox_png(_png(random.Random(0), w=40, h=20, color=(255, 255, 255)), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    rows = out[:, :, 0].max(axis=1)
    assert (rows[:4] == 0).all() and (rows[12:] == 0).all() and (out[4:12] == 255).all()
    tall = letterbox_png(_png(random.Random(0), w=10, h=30, color=(255, 255, 255)), 30)
    cols = tall[:, :, 0].max(axis=0)
    assert (cols[:10] == 0).all() and (cols[10:20] == 255).all() and (cols[20:] == 0).all()


# --- the dataset ---------------------------------------------------------------------------------------


def test_splits_are_patient_disjoint_and_complete(small_zip):
    parts = {s: MalariaCells(s, source=small_zip, size=32, progress=False) for s in ("train", "val", "test")}
    patients = {s: set(ds.patient_ids) for s, ds in parts.items()}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert set.union(*patients.values()) == set(PATIENTS)
    assert sum(len(ds) for ds in parts.values()) == 60
    for ds in parts.values():  # every file's label and patient come from its folder and name
        for f, y, p in zip(ds.files, ds.labels.tolist(), ds.patient_ids, strict=True):
            assert p == patient_id(f) and y == (f.split("_")[-3] == "P")
    again = MalariaCells("val", source=small_zip, size=32, progress=False)
    assert again.files == parts["val"].files  # deterministic for the seed
    other = {s: set(MalariaCells(s, source=small_zip, size=32, seed=7, progress=False).patient_ids) for s in parts}
    assert other != patients


def test_dataset_items_and_transform(small_zip):
    ds = MalariaCells("all", source=small_zip, size=32, progress=False)
    assert len(ds) == 60 and ds.images.shape == (60, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and set(ds.labels.tolist()) == {0, 1}
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert torch.equal(image, ds.images[0].float() / 255) and label == int(ds.labels[0])
    flipped = MalariaCells("all", source=small_zip, size=32, progress=False, transform=lambda x: x.flip(-1))
    assert torch.equal(flipped[3][0], ds[3][0].flip(-1))
    assert "60" in repr(ds) and not ds.synthetic


def test_cache_round_trip_does_not_decode_again(tmp_path, small_zip, monkeypatch):
    first = load_tensors("train", source=small_zip, size=24, progress=False)
    assert len(_cache_files(tmp_path)) == 1 and _cache_files(tmp_path)[0].suffix == ".pt"

    def boom(*args):
        raise AssertionError("decoded a PNG although the cache exists")

    monkeypatch.setattr(images_mod, "letterbox_png", boom)
    second = load_tensors("train", source=small_zip, size=24, progress=False)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.patient_ids == second.patient_ids
    with pytest.raises(DataError, match="Cannot decode"):  # another size is another cache: decodes
        load_tensors("train", source=small_zip, size=28, progress=False)
    assert len(_cache_files(tmp_path)) == 1  # and the failed build left nothing behind


def test_cache_invalidated_when_source_changes(tmp_path, small_zip, monkeypatch):
    before = load_tensors("all", source=small_zip, size=16, progress=False)
    members = _members()
    name = next(iter(members))
    members[name] = _png(random.Random(5), w=30, h=30, color=(1, 2, 3))
    _write_zip(small_zip, members)  # same path, same names, one image changed
    calls = []
    real = images_mod.letterbox_png
    monkeypatch.setattr(images_mod, "letterbox_png", lambda data, size: calls.append(1) or real(data, size))
    after = load_tensors("all", source=small_zip, size=16, progress=False)
    assert len(calls) == 60 and len(_cache_files(tmp_path)) == 2
    i = [f for f in MalariaCells("all", source=small_zip, size=16, progress=False).files].index(name.rsplit("/")[-1])
    assert not torch.equal(before.images[i], after.images[i]) and tuple(after.images[i, :, 15, 8]) == (1, 2, 3)


def test_interrupted_cache_write_leaves_nothing(tmp_path, small_zip, monkeypatch):
    def crash(obj, f):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        load_tensors("train", source=small_zip, size=16, progress=False)
    assert _cache_files(tmp_path) == []


def test_damaged_cache_file_is_rebuilt(tmp_path, small_zip):
    first = load_tensors("test", source=small_zip, size=16, progress=False)
    (cache,) = _cache_files(tmp_path)
    cache.write_bytes(b"garbage")
    assert torch.equal(load_tensors("test", source=small_zip, size=16, progress=False).images, first.images)


@pytest.mark.parametrize("memo", [False, True], ids=["fresh-zip", "zip-hash-remembered"])
def test_zip_corrupted_in_place_gets_its_own_cache(tmp_path, small_zip, memo):
    """Same path, same directory of names/CRCs/sizes, changed bytes: neither zip may use the other's cache."""
    if memo:  # an old, still zip: its hash is remembered, and a corruption later changes its mtime
        os.utime(small_zip, ns=(10**18, 10**18))
    good = load_tensors("all", source=small_zip, size=16, progress=False)
    memo_file = tmp_path / "datadir" / "cache" / "sources.json"
    if memo:
        entry = json.loads(memo_file.read_text())[str(small_zip.resolve())]
        assert entry["sha256"] == sha256_file(small_zip)
    member = sorted(_members())[5]
    original = _corrupt_in_place(small_zip, member)
    if memo:
        os.utime(small_zip, ns=(10**18 + 10**12, 10**18 + 10**12))
    with pytest.raises(DataError, match=member.rsplit("/")[-1]):  # decoded again: the bad CRC shows
        load_tensors("all", source=small_zip, size=16, progress=False)
    with pytest.warns(UserWarning, match="Skipped 1"):
        assert len(load_tensors("all", source=small_zip, size=16, progress=False, on_error="skip").labels) == 59
    small_zip.write_bytes(original)  # repaired: the good zip's cache is valid again, all 60 cells
    again = load_tensors("all", source=small_zip, size=16, progress=False)
    assert torch.equal(again.images, good.images)


def test_stale_tmp_of_a_killed_build_is_removed(tmp_path, small_zip):
    """A build killed mid-write (no chance to clean up) leaves a *.tmp; the next load removes it once stale."""
    load_tensors("val", source=small_zip, size=16, progress=False)
    (cache,) = _cache_files(tmp_path)
    stale = cache.with_name(cache.name + ".k1ll3d.tmp")
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    busy = cache.with_name(cache.name + ".w0rk1ng.tmp")  # another process writing right now
    busy.write_bytes(b"being written")
    load_tensors("val", source=small_zip, size=16, progress=False)  # from the cache
    assert not stale.exists() and busy.exists()
    os.utime(busy, (time.time() - 3600, time.time() - 3600))
    assert clean_stale_tmp(cache.parent) == [busy] and _cache_files(tmp_path) == [cache]


# --- bad sources ---------------------------------------------------------------------------------------


def test_truncated_zip(tmp_path, small_zip):
    data = small_zip.read_bytes()
    cut = tmp_path / "cell_images_cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as info:
        MalariaCells("train", source=cut, progress=False)
    assert str(cut) in str(info.value)
    assert _cache_files(tmp_path) == []


def test_corrupt_png_raises_naming_file_or_skips_and_counts(tmp_path):
    members = _members()
    bad = sorted(members)[:2]
    members[bad[0]] = b"\x89PNG\r\n\x1a\n but then garbage"
    members[bad[1]] = members[bad[1]][: len(members[bad[1]]) // 2]  # truncated PNG
    source = _write_zip(tmp_path / "cell_images_bad.zip", members)
    with pytest.raises(DataError) as info:
        MalariaCells("all", source=source, size=16, progress=False)
    assert bad[0].rsplit("/")[-1] in str(info.value) and 'on_error="skip"' in str(info.value)
    assert _cache_files(tmp_path) == []
    with pytest.warns(UserWarning, match="Skipped 2"):
        ds = MalariaCells("all", source=source, size=16, progress=False, on_error="skip")
    assert len(ds) == 58 and sorted(ds.skipped) == sorted(b.rsplit("/")[-1] for b in bad)
    assert not set(ds.skipped) & set(ds.files)
    with pytest.raises(DataError, match="unreadable"):  # the cached skip does not hide them from "raise"
        MalariaCells("all", source=source, size=16, progress=False)


def test_missing_class_folder(tmp_path):
    members = {k: v for k, v in _members().items() if "/Uninfected/" not in k}
    with pytest.raises(DataError, match="'Uninfected'"):
        MalariaCells("train", source=_write_zip(tmp_path / "c.zip", members), progress=False)


def test_empty_archive(tmp_path):
    with pytest.raises(DataError, match="no PNG"):
        MalariaCells("train", source=_write_zip(tmp_path / "empty.zip", {}), progress=False)


def test_bad_arguments(small_zip):
    with pytest.raises(ValueError, match="split"):
        MalariaCells("training", source=small_zip)
    with pytest.raises(ValueError, match="size"):
        MalariaCells("train", source=small_zip, size=4)
    with pytest.raises(ValueError, match="on_error"):
        MalariaCells("train", source=small_zip, on_error="ignore")
    with pytest.raises(FileNotFoundError, match="nowhere.zip"):
        MalariaCells("train", source="/nowhere.zip")


# --- finding sources, folders, fallback ----------------------------------------------------------------


def test_find_source_order_and_message(tmp_path, small_zip, monkeypatch):
    datadir, extra = tmp_path / "datadir", tmp_path / "extra"
    extra.mkdir()
    monkeypatch.setenv("CNNCOURSE_DATA_PATH", str(extra))
    with pytest.raises(FileNotFoundError) as info:
        find_source()
    assert str(datadir) in str(info.value) and str(extra) in str(info.value) and "--download" in str(info.value)
    (extra / "cell_images_dev.zip").write_bytes(small_zip.read_bytes())
    assert find_source() == extra / "cell_images_dev.zip"
    (extra / "cell_images.zip").write_bytes(small_zip.read_bytes())
    assert find_source() == extra / "cell_images.zip"
    with zipfile.ZipFile(small_zip) as z:
        z.extractall(datadir)
    assert find_source() == datadir / "cell_images"


def test_folder_source_matches_zip(tmp_path, small_zip):
    with zipfile.ZipFile(small_zip) as z:
        z.extractall(tmp_path / "unzipped")
    a = load_tensors("val", source=small_zip, size=16, progress=False)
    b = load_tensors("val", source=tmp_path / "unzipped" / "cell_images", size=16, progress=False)
    assert torch.equal(a.images, b.images) and a.patient_ids == b.patient_ids


def test_synthetic_fallback_warns_with_instructions():
    with pytest.warns(SyntheticDataWarning, match="--download"):
        ds = MalariaCells("val", size=32, progress=False)
    assert ds.synthetic and ds.source == "synthetic" and ds.cache is None
    assert ds.images.shape[1:] == (3, 32, 32) and set(ds.labels.tolist()) == {0, 1}
    parts = [set(MalariaCells(s, source="synthetic", size=32).patient_ids) for s in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asking for synthetic data on purpose does not warn
        load_tensors("test", source="synthetic", size=32)


def test_load_tensors_device(small_zip):
    x, y, pid = load_tensors("all", source=small_zip, size=16, device="meta", progress=False)
    assert x.device.type == "meta" and y.device.type == "meta" and x.shape == (60, 3, 16, 16) and len(pid) == 60
    if torch.cuda.is_available():
        x, y, _ = load_tensors("all", source=small_zip, size=16, device="cuda", progress=False)
        assert x.is_cuda and y.is_cuda and x.dtype == torch.uint8
    else:
        with pytest.raises(ValueError, match="no CUDA"):
            load_tensors("all", source=small_zip, size=16, device="cuda")


# --- command line --------------------------------------------------------------------------------------


def test_cli_real_source(small_zip, tmp_path, capsys):
    assert main(["data", "malaria", "--source", str(small_zip), "--size", "16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert str(small_zip) in out and "60 PNGs" in out and "12 patients" in out
    all_row = next(line for line in out.splitlines() if line.startswith("all"))
    assert all_row.split() == ["all", "12", "24", "36", "60"]
    assert len(_cache_files(tmp_path)) == 3  # one cache per split was built


def test_cli_synthetic_and_errors(capsys):
    assert main(["data", "malaria", "--synthetic", "--size", "32", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "2,400" in out
    assert main(["data", "malaria", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--download" in err and "--synthetic" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["data", "malaria", "--synthetic", "--source", "x.zip"])


def _one_paragraph_error(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_cli_bad_sources_exit_2_with_one_paragraph(tmp_path, small_zip, capsys):
    assert main(["data", "malaria", "--source", str(tmp_path / "missing.zip"), "--quiet"]) == 2
    _one_paragraph_error(capsys, "missing.zip")
    cut = tmp_path / "cell_images_cut.zip"
    cut.write_bytes(small_zip.read_bytes()[:3000])
    assert main(["data", "malaria", "--source", str(cut), "--quiet"]) == 2
    _one_paragraph_error(capsys, "cell_images_cut.zip", "truncated")
    text = tmp_path / "notes.zip"
    text.write_text("hello")
    assert main(["data", "malaria", "--source", str(text), "--quiet"]) == 2
    _one_paragraph_error(capsys, "notes.zip")
    with pytest.raises(SystemExit) as info:  # argparse: usage error, also exit status 2
        main(["data", "malaria", "--synthetic", "--size", "4"])
    assert info.value.code == 2 and "between 16 and 512" in capsys.readouterr().err


def test_cli_corrupt_png_error_then_on_error_skip(tmp_path, capsys):
    members = _members()
    bad = sorted(members)[0]
    members[bad] = b"\x89PNG\r\n\x1a\n but then garbage"
    source = _write_zip(tmp_path / "cell_images_bad.zip", members)
    assert main(["data", "malaria", "--source", str(source), "--size", "16", "--quiet"]) == 2
    _one_paragraph_error(capsys, bad.rsplit("/")[-1], "--on-error skip")
    assert main(["data", "malaria", "--source", str(source), "--size", "16", "--quiet", "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable" in captured.out and "warning: Skipped 1" in captured.err
    assert next(line for line in captured.out.splitlines() if line.startswith("all")).split()[-1] == "59"


def test_cli_download_fetches_then_uses_the_archive(small_zip, tmp_path, monkeypatch, capsys):
    """`--download` fetches the archive from (here, a local) server, verifies it, then builds from it."""
    import hashlib

    from cnncourse.data import malaria
    from tests.test_data_download import _Server

    payload = small_zip.read_bytes()
    with _Server(payload) as srv:
        monkeypatch.setattr(malaria, "URL", srv.url)
        monkeypatch.setattr(malaria, "SHA256", hashlib.sha256(payload).hexdigest())
        monkeypatch.setattr(malaria, "CSV_URL", srv.url + "-missing-{}")
        assert main(["data", "malaria", "--download", "--size", "16", "--quiet"]) == 0
    fetched = tmp_path / "datadir" / "cell_images.zip"
    assert fetched.read_bytes() == payload
    out, err = capsys.readouterr()
    assert err.count("warning: Could not fetch the mapping file patientid_cellmapping") == 2  # one line each
    assert f"downloading {srv.url}" in out and str(fetched) in out
    assert next(line for line in out.splitlines() if line.startswith("all")).split() == ["all", "12", "24", "36", "60"]
