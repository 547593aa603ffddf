"""`python -m cnncourse train malaria` -> checkpoint -> `evaluate malaria`, checkpoints, and evaluation reports.

The round trip always runs on synthetic cells; on the real dev data (CNNCOURSE_DATA_PATH with
cell_images_dev.zip) it runs too, with quick settings, and skips cleanly without it.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from cnncourse.__main__ import main
from cnncourse.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnncourse.data.malaria import load_tensors, patient_folds, patient_split, scan
from cnncourse.data.synthetic import save_pngs, synthetic_cells
from cnncourse.evaluation import (
    UNKNOWN_PATIENT,
    binary_report,
    fold_spread,
    judge_fold,
    load_predictions,
    patient_bootstrap,
    patient_subsets,
    save_predictions,
)
from cnncourse.models.cellnet import cellnet

KEYS = {"accuracy", "auc", "sensitivity", "specificity", "n_images", "n_patients"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Private data folder, no real data visible, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNCOURSE_DATA_DIR", str(tmp_path_factory.mktemp("datadir")))
        mp.delenv("CNNCOURSE_DATA_PATH", raising=False)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic_model(env, tmp_path_factory) -> Path:
    """A checkpoint from the CLI, trained briefly on the synthetic cells at 32 px."""
    out = tmp_path_factory.mktemp("model") / "model.pt"
    argv = ["train", "malaria", "--synthetic", "--out", str(out), "--epochs", "3", "--size", "32", "--quiet"]
    assert main(argv) == 0
    return out


def _evaluate(capsys, model: Path, source: Path, *extra: str) -> dict:
    assert main(["evaluate", "malaria", str(model), "--source", str(source), "--json", "--quiet", *extra]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1, out  # nothing but the JSON object on stdout
    result = json.loads(out)
    assert KEYS <= set(result)
    return result


def _refused(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# --- round trips ---------------------------------------------------------------------------------------


def test_train_writes_a_self_describing_checkpoint(synthetic_model):
    ckpt = load_checkpoint(synthetic_model)
    assert ckpt.arch == "cellnet" and ckpt.classes == ("Uninfected", "Parasitized")
    assert ckpt.preprocessing.size == 32 and len(ckpt.preprocessing.mean) == len(ckpt.preprocessing.std) == 3
    assert ckpt.info["trained_on"] == "synthetic" and len(ckpt.info["history"]["train_loss"]) == 3
    assert not ckpt.model.training
    train = load_tensors("train", source="synthetic", size=32)
    assert sorted(set(train.patient_ids)) == ckpt.info["train_patients"]


def test_train_final_uses_the_validation_patients_too(env, synthetic_model, tmp_path, capsys):
    out = tmp_path / "final.pt"
    argv = ["train", "malaria", "--synthetic", "--final", "--out", str(out), "--epochs", "1", "--size", "32"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "no validation" in said and "validation accuracy" not in said
    info = load_checkpoint(out).info
    train, val = (load_tensors(split, source="synthetic", size=32) for split in ("train", "val"))
    assert info["train_patients"] == sorted(set(train.patient_ids) | set(val.patient_ids))
    assert set(val.patient_ids) <= set(info["train_patients"]) and info["val_accuracy"] is None
    assert info["history"]["val_acc"] == [] and load_checkpoint(synthetic_model).info["val_accuracy"] is not None

def test_round_trip_on_synthetic_cells(synthetic_model, tmp_path, capsys):
    """Evaluating the validation patients' cells, written as PNGs, reproduces what training measured."""
    val = load_tensors("val", source="synthetic", size=32)
    save_pngs(val, tmp_path / "val")
    result = _evaluate(capsys, synthetic_model, tmp_path / "val")
    info = load_checkpoint(synthetic_model).info
    assert result["n_images"] == len(val.labels) and result["n_patients"] == len(set(val.patient_ids))
    assert result["accuracy"] == pytest.approx(info["val_accuracy"], abs=1e-6)
    assert result["auc"] == pytest.approx(info["val_auc"], abs=1e-6) and result["auc"] > 0.8
    (tn, fp), (fn, tp) = result["confusion"]
    assert tp + fn == int(val.labels.sum()) and result["sensitivity"] == pytest.approx(tp / (tp + fn))
    low, high = result["accuracy_ci"]  # resampling the validation patients
    assert low <= result["accuracy"] <= high and result["bootstrap"]["n_patients"] == result["n_patients"]
    assert result["auc_ci"][0] <= result["auc"] <= result["auc_ci"][1]


DEV_ZIP = next((Path(p) / "cell_images_dev.zip" for p in os.environ.get("CNNCOURSE_DATA_PATH", "").split(os.pathsep)
                if p and (Path(p) / "cell_images_dev.zip").is_file()), None)  # fmt: skip


@pytest.mark.skipif(DEV_ZIP is None, reason="real malaria data absent: set CNNCOURSE_DATA_PATH to a folder with "
                    "cell_images_dev.zip (CI uses ../shared/data/malaria)")  # fmt: skip
def test_round_trip_on_dev_data(env, tmp_path, capsys, monkeypatch):
    """Quick settings (32 px, 1 epoch): trained on the training patients, judged on the 13 test patients."""
    monkeypatch.setenv("CNNCOURSE_DATA_PATH", str(DEV_ZIP.parent))
    model = tmp_path / "model.pt"
    assert main(["train", "malaria", "--out", str(model), "--epochs", "1", "--size", "32", "--quiet"]) == 0
    index = scan(DEV_ZIP)
    infected: dict[str, bool] = {}
    for y, p in zip(index.labels, index.patients, strict=True):
        infected[p] = infected.get(p, False) or bool(y)
    test_patients = set(patient_split(infected)["test"])
    assert not test_patients & set(load_checkpoint(model).info["train_patients"])
    held_out = tmp_path / "held_out.zip"  # the test patients' PNGs, as an instructor would hand them over
    with zipfile.ZipFile(DEV_ZIP) as src, zipfile.ZipFile(held_out, "w") as dst:
        for name in src.namelist():
            if name.endswith(".png") and os.path.basename(name).partition("_IMG")[0] in test_patients:
                dst.writestr(name, src.read(name))
    result = _evaluate(capsys, model, held_out)
    assert result["n_patients"] == 13 and result["n_images"] == sum(p in test_patients for p in index.patients)
    assert result["accuracy"] > 0.85 and result["auc"] > 0.9, result


# --- evaluation sets -----------------------------------------------------------------------------------


def test_one_class_and_odd_names(synthetic_model, tmp_path, capsys):
    cells = synthetic_cells(40, size=32, seed=7)
    keep = (cells.labels == 1).nonzero().flatten().tolist()
    parasitized = cells._replace(images=cells.images[keep], labels=cells.labels[keep],
                                 patient_ids=[cells.patient_ids[i] for i in keep])  # fmt: skip
    paths = save_pngs(parasitized, tmp_path / "hidden")
    for k, path in enumerate(paths[:3]):  # names without the patient pattern
        path.rename(path.with_name(f"odd name {k}.png"))
    result = _evaluate(capsys, synthetic_model, tmp_path / "hidden")
    assert result["auc"] is None and result["specificity"] is None  # undefined with one class
    assert result["sensitivity"] == pytest.approx(result["accuracy"]) and result["n_images"] == len(paths)
    assert result["n_patients"] == len(set(parasitized.patient_ids)) + 1  # + "unknown"
    for row in result["worst_patients"]:
        assert row["errors"] > 0
    assert main(["evaluate", "malaria", str(synthetic_model), "--source", str(tmp_path / "hidden")]) == 0
    out = capsys.readouterr().out
    assert "n/a (one class only)" in out and f"{len(paths)} labelled images" in out


def test_unlabelled_folder_gives_predictions_csv(synthetic_model, tmp_path, capsys):
    cells = synthetic_cells(12, size=32, seed=8)
    folder = tmp_path / "new"
    for path in save_pngs(cells, tmp_path / "tmp"):
        target = folder / ("sub" if path.parent.name == "Parasitized" else "") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    (folder / "stray.png").write_bytes((folder / "sub").iterdir().__next__().read_bytes())
    predictions = tmp_path / "pred.csv"
    result = _evaluate(capsys, synthetic_model, folder, "--predictions", str(predictions))
    assert result["accuracy"] is None and result["n_images"] == 13 and result["predictions"] == str(predictions)
    with open(predictions, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 13 and {r["prediction"] for r in rows} <= {"Uninfected", "Parasitized"}
    stray = next(r for r in rows if r["file"] == "stray.png")
    assert stray["patient"] == UNKNOWN_PATIENT and 0 <= float(stray["p_parasitized"]) <= 1
    assert sum(r["prediction"] == "Parasitized" for r in rows) == result["n_predicted_positive"]


def test_mixed_and_broken_sources_are_refused(synthetic_model, tmp_path, capsys):
    cells = synthetic_cells(6, size=32, seed=9)
    paths = save_pngs(cells, tmp_path / "mixed")
    shutil.copy(paths[0], tmp_path / "mixed" / "loose.png")
    _refused(capsys, ["evaluate", "malaria", str(synthetic_model), "--quiet", "--source", str(tmp_path / "mixed")],
             "mixes", "loose.png")  # fmt: skip
    _refused(capsys, ["evaluate", "malaria", str(synthetic_model), "--source", str(tmp_path / "none")], "none")
    paths[1].write_bytes(b"not a png")
    (tmp_path / "mixed" / "loose.png").unlink()
    _refused(capsys, ["evaluate", "malaria", str(synthetic_model), "--quiet", "--source", str(tmp_path / "mixed")],
             paths[1].name, "--on-error skip")  # fmt: skip
    result = _evaluate(capsys, synthetic_model, tmp_path / "mixed", "--on-error", "skip")
    assert result["n_images"] == 5 and result["skipped"] == 1


# --- checkpoints ---------------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this calls a function: what a malicious submission would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused(synthetic_model, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    payload = torch.load(synthetic_model, weights_only=True)
    payload["info"] = {"surprise": _RunsCode(marker)}
    torch.save(payload, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_RunsCode(marker), f)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(CheckpointError, match="Refusing to load"):
            load_checkpoint(tmp_path / name)
        _refused(capsys, ["evaluate", "malaria", str(tmp_path / name), "--source", str(tmp_path)], "Refusing")
    assert not marker.exists()  # nothing was executed
    pickle.loads(pickle.dumps(_RunsCode(marker)))  # while plain unpickling would have run it
    assert marker.exists()


def test_files_that_are_not_checkpoints(synthetic_model, tmp_path, capsys):
    torch.save(cellnet().state_dict(), tmp_path / "weights.pt")
    (tmp_path / "notes.pt").write_text("hello")
    (tmp_path / "cut.pt").write_bytes(synthetic_model.read_bytes()[:5000])
    payload = torch.load(synthetic_model, weights_only=True)
    payload["kwargs"] = {"widths": [8, 8]}
    torch.save(payload, tmp_path / "mismatch.pt")
    payload["arch"] = "resnet999"
    torch.save(payload, tmp_path / "unknown.pt")
    cases = [("weights.pt", "state_dict"), ("notes.pt", "not a readable"), ("cut.pt", "cut.pt"),
             ("mismatch.pt", "do not fit"), ("unknown.pt", "resnet999"), ("missing.pt", "does not exist")]  # fmt: skip
    for name, needle in cases:
        with pytest.raises(CheckpointError, match=needle):
            load_checkpoint(tmp_path / name)
        _refused(capsys, ["evaluate", "malaria", str(tmp_path / name), "--source", str(tmp_path)], name)


def test_save_checkpoint_round_trip_and_plain_values_only(tmp_path):
    torch.manual_seed(0)
    model = cellnet(widths=(4, 8), dropout=0.0).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, arch="cellnet", kwargs={"widths": (4, 8), "dropout": 0.0},
                           size=32, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), info={"note": ["a", 1]})  # fmt: skip
    ckpt = load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(ckpt.model(x), model(x)) and ckpt.info == {"note": ["a", 1]}
    assert ckpt.preprocessing.mean == (0.1, 0.2, 0.3) and ckpt.kwargs == {"widths": (4, 8), "dropout": 0.0}
    with pytest.raises(TypeError, match=r"checkpoint\['info'\]\['when'\]"):
        save_checkpoint(tmp_path / "bad.pt", model, arch="cellnet", kwargs={"widths": (4, 8)}, size=32,
                        mean=(0,) * 3, std=(1,) * 3, info={"when": Path("x")})  # fmt: skip
    assert not (tmp_path / "bad.pt").exists()
    with pytest.raises(CheckpointError, match="unknown architecture"):
        save_checkpoint(tmp_path / "bad.pt", model, arch="mystery", kwargs={}, size=32, mean=(0,) * 3, std=(1,) * 3)


# --- the report ----------------------------------------------------------------------------------------


def test_binary_report_by_hand():
    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    probs = [0.9, 0.4, 0.8, 0.1, 0.6, 0.2, 0.7, 0.3]
    patients = ["A", "A", "B", "B", "B", "C", "C", "weird"]
    report = binary_report(labels, probs, patients)
    assert report.confusion == [[3, 1], [1, 3]] and report.accuracy == 0.75
    assert report.sensitivity == 0.75 and report.specificity == 0.75
    assert report.auc == pytest.approx(roc_auc_score(labels, probs)) and report.n_patients == 4
    assert [(r.patient, r.errors) for r in report.patients] == [("A", 1), ("B", 1), ("C", 0), ("weird", 0)]
    assert [r["patient"] for r in report.to_dict()["worst_patients"]] == ["A", "B"]
    low = binary_report(labels, probs, patients, threshold=0.35)
    assert low.confusion == [[3, 1], [0, 4]]
    with pytest.raises(ValueError, match="one entry per image"):
        binary_report(labels, probs[:-1], patients)
    with pytest.raises(ValueError, match="0 or 1"):
        binary_report([2] * 8, probs, patients)


# --- patient-level uncertainty ---------------------------------------------------------------------------


def test_bootstrap_of_identical_patients_has_zero_width():
    """Patients that are copies of each other: every resample pools the same cells, so the interval is a point."""
    labels, probs = [1, 0, 1, 0], [0.9, 0.2, 0.4, 0.1]  # one patient: 3 of 4 right, AUC 1
    ci = patient_bootstrap(labels * 5, probs * 5, [p for p in "ABCDE" for _ in range(4)], n_boot=200)
    assert (ci["accuracy"].low, ci["accuracy"].high) == (0.75, 0.75)
    assert (ci["auc"].low, ci["auc"].high) == (1.0, 1.0) and ci["accuracy"].n_patients == 5


def test_bootstrap_resamples_patients_not_cells():
    """Two patients, one all right, one all wrong, 100 cells each: a resample draws 0, 1 or 2 copies of the good
    one (accuracy 0, 1/2 or 1 with chances 1/4, 1/2, 1/4), so the 95 % interval is [0, 1]. Resampling cells would
    give about 0.5 +- 0.07."""
    labels = [1] * 200
    probs = [0.9] * 100 + [0.1] * 100
    patients = ["good"] * 100 + ["bad"] * 100
    ci = patient_bootstrap(labels, probs, patients, n_boot=400, seed=3)
    assert (ci["accuracy"].low, ci["accuracy"].high) == (0.0, 1.0)
    assert ci["auc"].low is None and ci["auc"].n_valid == 0  # one class: no AUC
    again = patient_bootstrap(labels, probs, patients, n_boot=400, seed=3)
    assert again == ci  # seeded


def test_bootstrap_interval_narrows_with_more_patients():
    """The same per-patient accuracies (0.8 or 1.0), 10 vs 90 patients: the interval is about 3x narrower."""

    def width(n):
        patients = [f"P{k}" for k in range(n) for _ in range(10)]
        labels = [1] * (10 * n)
        probs = [0.1 if (k % 2 and i < 2) else 0.9 for k in range(n) for i in range(10)]
        ci = patient_bootstrap(labels, probs, patients, n_boot=500)["accuracy"]
        assert ci.low < 0.9 < ci.high
        return ci.high - ci.low

    assert 2 < width(10) / width(90) < 4.5
    with pytest.raises(ValueError, match="one entry per image"):
        patient_bootstrap([1, 0], [0.5], ["a", "b"])


def test_patient_subsets_draw_distinct_whole_patients():
    """Four patients of 10 cells, 10/10, 9/10, 5/10 and 0/10 right. Sets of all four always pool every cell once
    (0.6); sets of two are one of the 6 pairs (a resample with replacement could pair a patient with itself: 1.0 or
    0.0 would appear); sets of one are a patient's own accuracy."""
    right = [10, 9, 5, 0]
    patients = [f"P{k}" for k in range(4) for _ in range(10)]
    labels = [1] * 40
    probs = [0.9 if i < right[k] else 0.1 for k in range(4) for i in range(10)]
    four = patient_subsets(labels, probs, patients, 4, draws=50)["accuracy"]
    assert four.tolist() == pytest.approx([0.6] * 50)
    pairs = {(a + b) / 20 for a, b in itertools.combinations(right, 2)}
    two = patient_subsets(labels, probs, patients, 2, draws=400, seed=1)["accuracy"]
    assert {round(v, 6) for v in two.tolist()} == {round(v, 6) for v in pairs}
    one = patient_subsets(labels, probs, patients, 1, draws=400, seed=1)
    assert {round(v, 6) for v in one["accuracy"].tolist()} == {1.0, 0.9, 0.5, 0.0} and len(one["auc"]) == 0
    again = patient_subsets(labels, probs, patients, 2, draws=400, seed=1)["accuracy"]
    assert torch.equal(again, two)  # seeded
    with pytest.raises(ValueError, match=r"n must be an int from 1 to the number of patients \(4\), got 5"):
        patient_subsets(labels, probs, patients, 5)


def test_predictions_round_trip(tmp_path):
    columns = {"label": torch.tensor([1, 0, 1], dtype=torch.int8), "prob": torch.tensor([0.9, 0.2, 0.4])}
    save_predictions(tmp_path / "p", columns, ["a", "b", "long-patient-name"])
    got, patients = load_predictions(tmp_path / "p")
    assert patients == ["a", "b", "long-patient-name"] and set(got) == {"label", "prob"}
    assert all(torch.equal(got[k], columns[k]) for k in columns)
    with pytest.raises(ValueError, match=r"one entry per cell \(2\)"):
        save_predictions(tmp_path / "q", columns, ["a", "b"])


def test_judge_fold_and_fold_spread_by_hand():
    labels, probs = torch.tensor([1, 1, 0, 0]), torch.tensor([0.9, 0.4, 0.2, 0.6])  # one miss in each class
    got = judge_fold(labels, probs, ["a", "a", "b", "b"], n_boot=50)
    assert got["accuracy"] == 0.5 and got["auc"] == 0.75
    assert got["accuracy_ci"][0] <= 0.5 <= got["accuracy_ci"][1]
    one_class = judge_fold(torch.tensor([1, 1]), torch.tensor([0.9, 0.3]), ["a", "b"], n_boot=20)
    assert one_class["accuracy"] == 0.5 and one_class["auc"] is None and one_class["auc_ci"] == [None, None]
    spread = fold_spread([got, one_class, {"accuracy": 0.8, "auc": 0.95}])  # the None AUC does not count
    assert spread["accuracy"] == pytest.approx({"mean": 0.6, "std": 0.03**0.5, "min": 0.5, "max": 0.8})
    assert spread["auc"] == pytest.approx({"mean": 0.85, "std": 0.02**0.5, "min": 0.75, "max": 0.95})
    assert fold_spread([one_class])["auc"] == {"mean": None, "std": None, "min": None, "max": None}


def test_patient_folds_are_disjoint_stratified_and_seeded():
    patients = {f"P{k:02d}": k % 3 != 0 for k in range(23)}
    folds = patient_folds(patients, 5, seed=1)
    assert sorted(p for f in folds for p in f) == sorted(patients)
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    infected = sorted(sum(patients[p] for p in f) for f in folds)
    assert infected[-1] - infected[0] <= 1  # 15 infected patients: 3 per fold
    assert patient_folds(patients, 5, seed=1) == folds != patient_folds(patients, 5, seed=2)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        patient_folds(patients, 1)


def test_cv_command_on_synthetic_cells(env, tmp_path, capsys):
    """Two folds, one epoch, 16 px: each fold judged on its own patients, JSON with folds and mean +- spread."""
    out = tmp_path / "cv.json"
    npz = tmp_path / "oof"  # no suffix: written under exactly this name
    argv = ["cv", "malaria", "--synthetic", "--folds", "2", "--epochs", "1", "--size", "16", "--bootstrap", "50",
            "--out", str(out), "--predictions", str(npz), "--precision", "fp32", "--quiet"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["amp"] is False and result["settings"]["epochs"] == 1  # the record says how it ran
    assert set(result["machine"]) == {"cpu", "cores", "capability", "amx", "avx512_bf16"} and result["machine"]["cpu"]
    cells = load_tensors("all", source="synthetic", size=16)
    assert result["folds"] == result["folds_done"] == 2 and result["patients"] == len(set(cells.patient_ids)) == 40
    columns, patients = load_predictions(npz)
    assert patients == cells.patient_ids and columns["label"].tolist() == cells.labels.tolist()
    assert not columns["prob"].isnan().any() and not columns["prob_tta"].isnan().any()
    for r in result["per_fold"]:  # the saved out-of-fold probabilities are the ones each fold was judged by
        mine = columns["fold"] == r["fold"]
        assert mine.sum() == r["cells"] and {patients[i] for i in mine.nonzero().flatten()} == set(r["test_patients"])
        for probs, judged in ((columns["prob"], r), (columns["prob_tta"], r["tta"])):
            right = ((probs[mine] >= 0.5).long() == columns["label"][mine].long()).float().mean()
            assert float(right) == pytest.approx(judged["accuracy"])
    rows = result["per_fold"]
    assert [r["fold"] for r in rows] == [0, 1] and sum(r["cells"] for r in rows) == len(cells.labels)
    assert not set(rows[0]["test_patients"]) & set(rows[1]["test_patients"])
    for r in rows:
        assert r["train_cells"] + r["cells"] == len(cells.labels) and r["cpu_s"] > 0
        assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    accs = [r["accuracy"] for r in rows]
    assert result["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert result["accuracy"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    _refused(capsys, ["cv", "malaria", "--synthetic", "--folds", "1", "--quiet"], "k must be an int >= 2")
