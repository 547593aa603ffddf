"""The loader on the real patient-disjoint dev part of the NIH malaria set (90 patients, 13,049 images).

CI sets CNNCOURSE_DATA_PATH to the folder holding ``cell_images_dev.zip`` and the official mapping CSVs
(``../shared/data/malaria``); without it these tests skip. Nothing is written there: caches go to a
tmp ``CNNCOURSE_DATA_DIR``. Only the ``test`` split (about 2,000 images) is decoded, once per session.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch

from cnncourse.data import images as images_mod
from cnncourse.data.malaria import (
    CSV_FILES,
    find_source,
    load_tensors,
    patient_id,
    patient_split,
    read_patient_csv,
    scan,
)


def _dev_zip() -> Path | None:
    for folder in filter(None, os.environ.get("CNNCOURSE_DATA_PATH", "").split(os.pathsep)):
        if (Path(folder) / "cell_images_dev.zip").is_file():
            return Path(folder) / "cell_images_dev.zip"
    return None


DEV_ZIP = _dev_zip()
pytestmark = pytest.mark.skipif(
    DEV_ZIP is None,
    reason="real malaria data absent: set CNNCOURSE_DATA_PATH to a folder with cell_images_dev.zip "
    "(CI uses ../shared/data/malaria)",
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private data dir for caches, with the real folder on the read-only search path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNCOURSE_DATA_DIR", str(tmp_path_factory.mktemp("malaria_cache")))
        mp.setenv("CNNCOURSE_DATA_PATH", str(DEV_ZIP.parent))
        yield


@pytest.fixture(scope="module")
def index(env):
    return scan(DEV_ZIP)


@pytest.fixture(scope="module")
def test_split(env):
    """The first (decoding) load of the test split, and the data folder's listing from before it."""
    before = sorted(p.name for p in DEV_ZIP.parent.iterdir())
    return load_tensors("test", progress=False), before


def test_found_via_data_path(env):
    assert find_source() == DEV_ZIP


def test_counts_classes_and_patients(index):
    assert len(index.files) == 13_049
    assert sum(index.labels) == 6_874 and index.labels.count(0) == 6_175
    assert len(set(index.patients)) == 90
    assert index.checked == 13_049  # every file confirmed by the official CSVs


def test_patient_id_agrees_with_official_csvs(index):
    by_class = [read_patient_csv(DEV_ZIP.parent / CSV_FILES[c][0]) for c in ("Uninfected", "Parasitized")]
    with zipfile.ZipFile(DEV_ZIP) as z:
        names = [n for n in z.namelist() if n.endswith(".png")]
    assert len(names) == 13_049
    for name in names:
        label = 1 if "/Parasitized/" in name else 0
        assert patient_id(name) == by_class[label][os.path.basename(name)], name


def test_real_splits_are_patient_disjoint_and_stratified(index):
    infected: dict[str, bool] = {}
    for y, p in zip(index.labels, index.patients, strict=True):
        infected[p] = infected.get(p, False) or bool(y)
    assert sum(infected.values()) == 68  # 22 patients have no parasitized cell at all
    split = patient_split(infected)
    sets = [set(split[s]) for s in ("train", "val", "test")]
    assert sum(map(len, sets)) == 90 and set.union(*sets) == set(infected)
    assert [len(s) for s in sets] == [64, 13, 13]
    for s in sets:
        assert 0 < sum(infected[p] for p in s) < len(s)  # both kinds of patient in every split


def test_cache_round_trip(test_split, monkeypatch):
    (images, labels, patients), before = test_split
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 64, 64) and 1_500 < len(images) < 3_000
    assert set(labels.tolist()) == {0, 1} and len(set(patients)) == 13
    assert images.flatten(1).amax(1).min() > 100  # every crop has a bright cell in it
    assert sorted(p.name for p in DEV_ZIP.parent.iterdir()) == before  # nothing written beside the data

    def boom(*args):
        raise AssertionError("decoded a PNG although the cache exists")

    monkeypatch.setattr(images_mod, "letterbox_png", boom)
    again = load_tensors("test", progress=False)
    assert torch.equal(again.images, images) and torch.equal(again.labels, labels) and again.patient_ids == patients
