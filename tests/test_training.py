"""Training: split, SMOTE on the training split only, reproducibility, model directory, refusal."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_helpers import profile_rows, write_dataset

import spectraldl.ml.training as training
from spectraldl.io.dataset import read_dataset
from spectraldl.ml.modelcard import ModelDirError, ModelMismatch
from spectraldl.ml.training import (
    TrainConfig,
    TrainingError,
    load_model,
    smote_balance,
    stratified_split,
    train,
)
from spectraldl.prep.preprocess import PreprocessConfig

FAST = {"model": "cnn-small", "epochs": 8, "patience": 3}


def _on_segment(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance of ``point`` from the segment a-b."""
    ab = b - a
    t = np.clip(np.dot(point - a, ab) / max(np.dot(ab, ab), 1e-30), 0.0, 1.0)
    return float(np.linalg.norm(point - (a + t * ab)))


def _from_segments(synthetic: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """For each synthetic row, its smallest distance to a segment between two ``pool`` rows."""
    best = np.full(len(synthetic), np.inf)
    for i, s in enumerate(synthetic):
        for a in range(len(pool)):
            for b in range(a + 1, len(pool)):
                best[i] = min(best[i], _on_segment(s, pool[a], pool[b]))
                if best[i] < 1e-5:
                    break
            if best[i] < 1e-5:
                break
    return best


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 synthetic spectra per class and 12 'real' ones (evaluation rows)."""
    path = tmp_path_factory.mktemp("data") / "training.h5"
    synthetic = profile_rows({"emission": 200, "absorption": 320, "double-peak": 80}, seed=1)
    real = profile_rows(
        {"emission": 4, "absorption": 6, "double-peak": 2}, seed=2, origin="real", prefix="real"
    )
    return write_dataset(path, synthetic, real)


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One training run, with SMOTE's inputs and outputs recorded as they happen."""
    calls: list[dict[str, np.ndarray]] = []
    real_smote = training.smote_balance

    def recording_smote(x: np.ndarray, y: np.ndarray, *, seed: int) -> Any:
        out_x, out_y = real_smote(x, y, seed=seed)
        calls.append({"x": x.copy(), "y": y.copy(), "out_x": out_x, "out_y": out_y})
        return out_x, out_y

    out = tmp_path_factory.mktemp("models") / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "smote_balance", recording_smote)
        result = train([dataset], out, config=TrainConfig(**FAST))
    return {"result": result, "smote": calls, "out": out}


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _split(model_dir: Path) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for row in _rows(model_dir / "split.csv"):
        roles.setdefault(row["role"], []).append(row["id"])
    return roles


# --- split and SMOTE ----------------------------------------------------------------------


def test_stratified_split_sizes_and_seed() -> None:
    labels = np.repeat([0, 1, 2], [500, 300, 100])
    tr, va, te = stratified_split(labels, test_fraction=0.1, val_fraction=0.2, seed=3)
    assert len(tr) + len(va) + len(te) == 900
    assert len(set(tr) | set(va) | set(te)) == 900
    for index, share in ((tr, 0.7), (va, 0.2), (te, 0.1)):
        counts = np.bincount(labels[index], minlength=3)
        assert np.allclose(counts, share * np.array([500, 300, 100]), atol=1.5)
    again = stratified_split(labels, test_fraction=0.1, val_fraction=0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    other = stratified_split(labels, test_fraction=0.1, val_fraction=0.2, seed=4)
    assert not np.array_equal(te, other[2])


def test_smote_interpolates_only_between_rows_it_was_given() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.repeat([0, 1], [30, 10])
    out_x, out_y = smote_balance(x, y, seed=1)
    assert np.bincount(out_y).tolist() == [30, 30]
    assert np.array_equal(out_x[:40], x) and np.array_equal(out_y[:40], y)
    synthetic = out_x[40:]
    assert (out_y[40:] == 1).all()
    assert _from_segments(synthetic, x[y == 1]).max() < 1e-5


def test_smote_never_touches_validation_or_test_rows(
    trained: dict[str, Any], dataset: Path
) -> None:
    data = read_dataset(dataset)
    by_id = {ident: i for i, ident in enumerate(data.ids)}
    roles = _split(trained["out"])
    (call,) = trained["smote"]
    train_x = data.X[[by_id[i] for i in roles["train"]]]
    held_ids = roles["val"] + roles["test"] + roles["real"]
    held_x = data.X[[by_id[i] for i in held_ids]]
    # SMOTE was given exactly the training split, nothing else.
    assert len(call["x"]) == len(roles["train"])
    assert {r.tobytes() for r in call["x"]} == {r.tobytes() for r in train_x}
    # Every new row lies between two training rows of its class, none near a held-out row.
    synthetic, synthetic_y = call["out_x"][len(call["x"]) :], call["out_y"][len(call["x"]) :]
    assert len(synthetic) > 0
    for label in np.unique(synthetic_y):
        pool = call["x"][call["y"] == label]
        assert _from_segments(synthetic[synthetic_y == label][:15], pool).max() < 1e-4
    distance = np.linalg.norm(synthetic[:, None, :] - held_x[None, :, :], axis=2)
    assert distance.min() > 1e-3
    # The splits are disjoint and real rows are never fitted.
    sets = [set(roles[k]) for k in ("train", "val", "test", "real")]
    assert sum(len(s) for s in sets) == len(set().union(*sets))
    assert all(i.startswith("real") for i in roles["real"])
    assert not any(i.startswith("real") for k in ("train", "val", "test") for i in roles[k])


# --- the model directory ------------------------------------------------------------------


def test_model_directory_contents(trained: dict[str, Any], dataset: Path) -> None:
    out = trained["out"]
    names = {p.name for p in out.iterdir()}
    assert {
        "model.pt",
        "card.json",
        "history.csv",
        "curves.png",
        "confusion.png",
        "metrics.json",
        "novelty.npz",
        "split.csv",
    } <= names
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"]["name"] == "cnn-small"
    assert card["architecture"]["n_parameters"] == 128_195
    assert card["classes"] == ["emission", "absorption", "double-peak"]
    assert card["preprocessing"] == PreprocessConfig().to_dict()
    assert card["grid"] == {"start_aa": 6519.0, "stop_aa": 6732.0, "n": 140, "medium": "vacuum"}
    assert card["split"]["seed"] == 0 and card["split"]["n_real_evaluation"] == 12
    train_labels = [r["label"] for r in _rows(out / "split.csv") if r["role"] == "train"]
    assert card["split"]["n_train_after_smote"] == 3 * train_labels.count("absorption")
    assert set(card["versions"]) >= {"spectraldl", "torch", "numpy"}
    assert len(card["datasets"][0]["ids_sha256"]) == 64
    assert card["temperature"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 60 and metrics["real"]["n"] == 12
    assert metrics["test_origin"] == ["synthetic"]
    assert metrics["real_by_archive"]["ondrejov"]["n"] == 12
    assert metrics["model_id"] == trained["result"].model.model_id
    history = _rows(out / "history.csv")
    assert len(history) == card["training"]["epochs_run"] >= 1
    assert float(history[-1]["val_loss"]) >= min(float(h["val_loss"]) for h in history)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_load_model_round_trip(trained: dict[str, Any], dataset: Path) -> None:
    result = trained["result"]
    model = load_model(trained["out"], device="cpu")
    data = read_dataset(dataset)
    assert model.classes == ("emission", "absorption", "double-peak")
    assert model.config == data.config
    assert model.model_id == result.model.model_id == load_model(trained["out"]).model_id
    assert len(model.model_id) == 12 and model.model_id.startswith("m")
    # Never a number to a CSV reader (123e45678901 would be): the id stays text in catalogues.
    with pytest.raises(ValueError):
        float(model.model_id)
    proba = model.predict_proba(data.X[:50], batch_size=7)
    assert proba.dtype == np.float32 and proba.shape == (50, 3)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(proba, result.model.predict_proba(data.X[:50]), atol=1e-6)
    features = model.embed(data.X[:50], batch_size=16)
    assert features.shape == (50, 128) and features.dtype == np.float32
    logits, both = model.predict_logits_and_features(data.X[:50])
    assert np.allclose(both, features, atol=1e-5)
    assert np.allclose(model.proba_from_logits(logits), proba, atol=1e-6)
    assert model.novelty is not None and model.novelty.dim == 128
    for a, b in zip(
        model.network.state_dict().values(), result.model.network.state_dict().values(), strict=True
    ):
        assert torch.equal(a.cpu(), b.cpu())


def test_temperature_is_applied(trained: dict[str, Any], dataset: Path) -> None:
    model = load_model(trained["out"])
    x = read_dataset(dataset).X[:20]
    logits = model.predict_logits(x).astype(np.float64)
    z = logits / model.temperature
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(model.predict_proba(x), expected, atol=1e-6)


def test_mismatched_dataset_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    model = load_model(trained["out"])
    other = PreprocessConfig(blur_sigma_px={"ondrejov": 5.0})
    path = write_dataset(tmp_path / "other.h5", profile_rows({"emission": 5}, seed=3), config=other)
    with pytest.raises(ModelMismatch) as error:
        model.check_compatible(path)
    message = str(error.value)
    assert (
        str(path) in message and "{'ondrejov': 5.0}" in message and "{'ondrejov': 7.0}" in message
    )
    narrow = PreprocessConfig(grid_n=100)
    with pytest.raises(ModelMismatch, match=r"x 100.*x 140"):
        model.check_compatible(narrow)
    with pytest.raises(ModelMismatch, match=r"\(n, 140\)"):
        model.predict_proba(np.zeros((3, 100), np.float32))
    # Quality thresholds do not change the flux: accepted.
    model.check_compatible(PreprocessConfig(min_snr=3.0))


def test_missing_and_corrupt_model_directories(trained: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="no such model directory"):
        load_model(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelDirError, match=re.escape("no card.json")):
        load_model(empty)
    broken = tmp_path / "broken"
    shutil.copytree(trained["out"], broken)
    (broken / "model.pt").write_bytes((broken / "model.pt").read_bytes()[:1000])
    with pytest.raises(ModelDirError, match=re.escape("model.pt: unreadable weights")):
        load_model(broken)
    (broken / "model.pt").unlink()
    with pytest.raises(ModelDirError, match=re.escape("model.pt is missing")):
        load_model(broken)
    shutil.copy(trained["out"] / "model.pt", broken / "model.pt")
    card = json.loads((broken / "card.json").read_text())
    card["architecture"]["name"] = "fnn"
    (broken / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelDirError, match="do not fit the card's network"):
        load_model(broken)
    (broken / "card.json").write_text("{not json")
    with pytest.raises(ModelDirError, match=re.escape("card.json: not valid JSON")):
        load_model(broken)


def test_existing_model_directory_is_kept(trained: dict[str, Any], dataset: Path) -> None:
    before = (trained["out"] / "model.pt").read_bytes()
    with pytest.raises(TrainingError, match="already exists"):
        train([dataset], trained["out"], config=TrainConfig(**FAST))
    assert (trained["out"] / "model.pt").read_bytes() == before


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_cleans_up_after_runs_killed_while_writing(
    trained: dict[str, Any], dataset: Path, tmp_path: Path
) -> None:
    """kill -9 while writing leaves ``.NAME.tmp-PID`` (one more per kill), and between
    publish_model_dir's two renames leaves no NAME, only ``.NAME.old-PID``: the next run
    puts the old model back (saying so) and removes the dead runs' folders, not a live
    run's. The state such kills leave is made on disk here."""
    import os

    dead = _dead_pid()
    out = tmp_path / "model"
    old = tmp_path / f".model.old-{dead}"
    shutil.copytree(trained["out"], old)
    weights = (old / "model.pt").read_bytes()
    for pid in (dead, _dead_pid()):
        (tmp_path / f".model.tmp-{pid}").mkdir()
        (tmp_path / f".model.tmp-{pid}" / "model.pt").write_bytes(b"half")
    live = tmp_path / f".model.tmp-{os.getppid()}"  # another run, still writing
    live.mkdir()
    lines: list[str] = []
    # The model put back is there: without --overwrite the run is refused, the model kept.
    with pytest.raises(TrainingError, match="already exists"):
        train([dataset], out, config=TrainConfig(**FAST), log=lines.append)
    assert (out / "model.pt").read_bytes() == weights
    assert load_model(out).model_id == trained["result"].model.model_id
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model"]
    assert any(f"restored {out} from {old.name}" in line for line in lines)
    assert sum("left by a killed run" in line for line in lines) == 2
    # An old model beside a complete new one (killed while deleting it) is removed; one
    # beside a folder that is no model is kept.
    shutil.copytree(out, old)
    training.recover_model_dir(out)
    assert not old.exists()
    shutil.copytree(out, old)
    (out / "card.json").unlink()
    training.recover_model_dir(out)
    assert old.is_dir()


def test_a_leftover_another_run_cleaned_first_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs starting at once both find a dead run's folders: the one that comes second
    finds them gone, and goes on (it failed, "cannot clean up after a killed run")."""
    dead = _dead_pid()
    out = tmp_path / "model"
    (tmp_path / f".model.tmp-{dead}").mkdir()
    (tmp_path / f".model.old-{dead}").mkdir()
    real_rmtree, real_replace = shutil.rmtree, os.replace

    def first_removed(path: Path, *args: Any, **kwargs: Any) -> None:
        real_rmtree(path)  # the other run, a moment before
        real_rmtree(path, *args, **kwargs)

    def first_restored(source: Path, target: Path) -> None:
        real_replace(source, target)
        real_replace(source, target)

    monkeypatch.setattr(training.shutil, "rmtree", first_removed)
    monkeypatch.setattr(training.os, "replace", first_restored)
    assert training.recover_model_dir(out) == []
    assert out.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# --- reproducibility and learning ---------------------------------------------------------


def _small_cpu_run(tmp_path: Path) -> tuple[Path, TrainConfig]:
    """A 120-spectrum dataset and a 3-epoch CPU configuration of cnn-small."""
    path = write_dataset(
        tmp_path / "d.h5",
        profile_rows({"emission": 40, "absorption": 60, "double-peak": 20}, seed=5),
    )
    return path, TrainConfig(model="cnn-small", epochs=3, patience=3, device="cpu", seed=11)


def test_same_seed_same_model_on_cpu(tmp_path: Path) -> None:
    path, config = _small_cpu_run(tmp_path)
    first = train([path], tmp_path / "a", config=config)
    second = train([path], tmp_path / "b", config=config)
    third = train([path], tmp_path / "c", config=TrainConfig(**{**config.__dict__, "seed": 12}))
    assert first.history and [h["val_loss"] for h in first.history] == [
        h["val_loss"] for h in second.history
    ]
    assert (tmp_path / "a" / "split.csv").read_text() == (tmp_path / "b" / "split.csv").read_text()
    a, b, c = (r.model.network.state_dict() for r in (first, second, third))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.model.model_id != third.model.model_id


def test_channels_last_trains_the_same_network(tmp_path: Path) -> None:
    path, config = _small_cpu_run(tmp_path)
    plain = train([path], tmp_path / "a", config=config)
    wrapped = train(
        [path], tmp_path / "b", config=TrainConfig(**{**config.__dict__, "channels_last": True})
    )
    np.testing.assert_allclose(
        [h["val_loss"] for h in wrapped.history],
        [h["val_loss"] for h in plain.history],
        rtol=1e-3,
    )
    a, b = plain.model.network.state_dict(), wrapped.model.network.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


@pytest.mark.slow
def test_small_run_learns_simulated_spectra(tmp_path: Path) -> None:
    """1200 spectra from the project's synthetic factory, at realistic S/N, learnt to >= 95 %."""
    from spectraldl.io.dataset import Rows
    from spectraldl.simulate import simulate_vectors

    mix = {"emission": 0.4, "absorption": 0.4, "double-peak": 0.2}
    sim = simulate_vectors(1200, archive="ondrejov", seed=3, mix=mix)
    n = len(sim.ids)
    rows = Rows(
        X=sim.X,
        ids=sim.ids,
        labels=sim.labels,
        quality=sim.quality,
        meta={"origin": np.full(n, "synthetic", dtype=object)},
    )
    path = write_dataset(tmp_path / "sim.h5", rows, config=sim.config)
    config = TrainConfig(model="cnn-small", epochs=20, patience=5)
    metrics = train([path], tmp_path / "model", config=config).metrics
    assert metrics["test"]["n"] == 120
    assert metrics["test"]["accuracy"] >= 0.95
    for name, scores in metrics["test"]["per_class"].items():
        assert scores["recall"] >= 0.85, name


def test_toy_profiles_are_learnt(trained: dict[str, Any]) -> None:
    metrics = trained["result"].metrics
    assert metrics["test"]["accuracy"] >= 0.9 and metrics["real"]["accuracy"] >= 0.8


def test_real_only_data_is_fitted_when_asked_or_when_nothing_else(tmp_path: Path) -> None:
    rows = profile_rows({"emission": 30, "absorption": 30}, seed=6, origin="real")
    path = write_dataset(tmp_path / "real.h5", rows)
    with pytest.raises(TrainingError, match="no labelled rows to fit"):
        train([path], tmp_path / "m", config=TrainConfig(**FAST, real_rows="evaluate"))
    result = train([path], tmp_path / "m", config=TrainConfig(**FAST))
    assert result.card.training["real_rows"] == "fit"
    assert result.metrics["real"]["n"] == 0 and result.metrics["test"]["n"] == 6


def test_clear_errors_for_unusable_data(tmp_path: Path) -> None:
    few = write_dataset(
        tmp_path / "few.h5", profile_rows({"emission": 30, "absorption": 4}, seed=7)
    )
    with pytest.raises(
        TrainingError, match=re.escape("too few labelled rows to split for {'absorption': 4}")
    ):
        train([few], tmp_path / "m", config=TrainConfig(**FAST))
    one = write_dataset(tmp_path / "one.h5", profile_rows({"emission": 30}, seed=7))
    with pytest.raises(TrainingError, match="at least two classes"):
        train([one], tmp_path / "m", config=TrainConfig(**FAST))
    twice = write_dataset(tmp_path / "twice.h5", profile_rows({"emission": 30}, seed=8))
    with pytest.raises(TrainingError, match="choose one"):
        TrainConfig(compile=True, cuda_graph=True)
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="needs a CUDA device"):
            train([one], tmp_path / "m", config=TrainConfig(**FAST, cuda_graph=True))
    with pytest.raises(TrainingError, match="compile_mode"):
        TrainConfig(compile=True, compile_mode="fastest")
    with pytest.raises(TrainingError, match="is in both"):
        train([one, twice], tmp_path / "m", config=TrainConfig(**FAST))
    # One file named twice: said so, not "id ... is twice in one.h5" (it is there once).
    with pytest.raises(TrainingError, match=r"one\.h5: given twice") as named_twice:
        train([one, tmp_path / "." / "one.h5"], tmp_path / "m", config=TrainConfig(**FAST))
    assert "is twice in" not in str(named_twice.value)
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="neither a spectraldl dataset"):
        train([tmp_path / "notes.csv"], tmp_path / "m", config=TrainConfig(**FAST))
    assert not (tmp_path / "m").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "speedup",
    [{"compile": True}, {"cuda_graph": True}, {"cuda_graph": True, "channels_last": True}],
    ids=["compile", "cuda-graph", "cuda-graph-channels-last"],
)
def test_gpu_training_matches_cpu_quality(
    dataset: Path, tmp_path: Path, speedup: dict[str, bool]
) -> None:
    cpu = train([dataset], tmp_path / "cpu", config=TrainConfig(**FAST, device="cpu"))
    gpu_config = TrainConfig(**FAST, device="cuda", bf16=True, **speedup)
    gpu = train([dataset], tmp_path / "gpu", config=gpu_config)
    assert gpu.metrics["test"]["accuracy"] >= cpu.metrics["test"]["accuracy"] - 0.05
    x = read_dataset(dataset).X[:200]
    on_cpu = load_model(tmp_path / "gpu", device="cpu").predict_proba(x)
    on_gpu = load_model(tmp_path / "gpu", device="cuda").predict_proba(x)
    assert np.allclose(on_cpu, on_gpu, atol=1e-3)


def test_confusion_figure_gives_a_class_without_true_spectra_dashes_not_zero_recall(
    tmp_path: Path,
) -> None:
    """The real spectra hold no noise: its row read 0.00 (0) four times, a recall of 0 beside
    the tables' '-' for a class with no support."""
    import re

    import matplotlib

    from spectraldl.ml.evaluation import classification_metrics, plot_confusions

    classes = ["emission", "absorption", "double-peak", "noise"]
    metrics = classification_metrics(np.eye(4)[[0, 2, 1, 1, 2]], [0, 0, 1, 1, 2], classes)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text kept as text, to read back
        plot_confusions([("real", metrics)], tmp_path / "confusion.svg")
    svg = (tmp_path / "confusion.svg").read_text(encoding="utf-8")
    cells = [t for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg) if t[:1] in "0123456789(-"]
    shares = [c for c in cells if not c.startswith("(")]
    emission = ["0.50", "0.00", "0.50", "0.00"]
    absorption = ["0.00", "1.00", "0.00", "0.00"]
    double_peak = ["0.00", "0.00", "1.00", "0.00"]
    assert shares == [*emission, *absorption, *double_peak, "-", "-", "-", "-"]


@pytest.mark.parametrize("n_epochs", [1, 2, 7])
def test_training_curves_show_every_epoch_at_whole_epochs(n_epochs: int) -> None:
    """Each epoch is a visible point (a one-epoch run, or a short fine-tuning, drew empty
    axes: a line through one point has no length) and the epoch axis has whole ticks
    only (it read 0.96, 0.98, ... or 1.25, 1.5: epochs that do not exist)."""
    import matplotlib.pyplot as plt

    from spectraldl.ml.evaluation import curves_figure

    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_accuracy": 0.5 + e / 20,
            "val_loss": 1.1 / e,
            "val_accuracy": 0.5 + e / 25,
            "seconds": 0.1,
        }
        for e in range(1, n_epochs + 1)
    ]
    fig = curves_figure(history)
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            curves = [line for line in ax.get_lines() if line.get_label() != "best epoch"]
            assert len(curves) == 2
            for line in curves:
                assert list(line.get_xdata()) == list(range(1, n_epochs + 1))
                assert line.get_marker() not in (None, "", "None", " ")
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)
