"""Fine-tuning (`train(init=...)`, `spectraldl train --init`): parent, replay mix, held-out rows."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from training_helpers import profile_rows, write_dataset

from spectraldl.cli import main
from spectraldl.io.archives.ondrejov import PUBLISHER_ID_PREFIX
from spectraldl.ml.training import TrainConfig, TrainingError, holdout_split, load_model, train
from spectraldl.prep.preprocess import PreprocessConfig

FAST = {"model": "cnn-small", "epochs": 4, "patience": 2}
NEW = {"emission": 9, "absorption": 12, "double-peak": 5}


def _roles(model_dir: Path) -> dict[str, set[str]]:
    roles: dict[str, set[str]] = {}
    with (model_dir / "split.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            roles.setdefault(row["role"], set()).add(row["id"])
    return roles


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parent trained on 500 synthetic rows, with 6 real rows it only evaluated."""
    folder = tmp_path_factory.mktemp("parent")
    synthetic = profile_rows({"emission": 160, "absorption": 240, "double-peak": 100}, seed=11)
    real = profile_rows(
        {"emission": 2, "absorption": 3, "double-peak": 1}, seed=12, origin="real", prefix="old"
    )
    data = write_dataset(folder / "synthetic.h5", synthetic, real)
    train([data], folder / "model", config=TrainConfig(**FAST))
    return folder / "model"


@pytest.fixture(scope="module")
def new_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """26 newly labelled real rows."""
    rows = profile_rows(NEW, seed=13, origin="real", prefix="new")
    return write_dataset(tmp_path_factory.mktemp("new") / "labelled.h5", rows)


@pytest.fixture(scope="module")
def child(parent: Path, new_data: Path) -> Path:
    out = parent.parent / "child"
    train([new_data], out, config=TrainConfig(**FAST, replay_ratio=3.0), init=parent)
    return out


def test_holdout_split_keeps_one_of_each_class_out_and_one_in() -> None:
    labels = np.array([0] * 10 + [1] * 2 + [3])
    kept, held = holdout_split(labels, fraction=0.3, seed=0)
    assert sorted(np.r_[kept, held].tolist()) == list(range(len(labels)))
    assert sorted(labels[held].tolist()) == [0, 0, 0, 1]  # 3 of 10, 1 of 2, none of 1
    assert 12 in kept
    again, _ = holdout_split(labels, fraction=0.3, seed=0)
    assert np.array_equal(kept, again)


def test_card_records_the_parent_and_the_mix(parent: Path, child: Path) -> None:
    card = json.loads((child / "card.json").read_text())
    old = load_model(parent, device="cpu")
    info = card["parent"]
    assert info["parent_model_id"] == old.model_id
    assert info["parent_path"] == str(parent.resolve())
    assert info["replay_ratio"] == 3.0
    assert info["n_replay_train"] == 3 * info["n_new_train"]
    assert card["classes"] == list(old.classes)
    assert card["architecture"]["kwargs"] == old.card.architecture.kwargs
    assert {"parent_accuracy", "accuracy", "n"} <= set(info["compared"]["real"])
    paths = [d["path"] for d in card["datasets"]]
    assert paths[1:] == info["replay_paths"]  # the child can be a parent in turn


def test_new_rows_are_split_by_id_and_some_always_stay_out(
    parent: Path, child: Path, new_data: Path
) -> None:
    mine, theirs = _roles(child), _roles(parent)
    new_ids = {f"new-{i:05d}" for i in range(sum(NEW.values()))}
    held = mine["real"] & new_ids
    fitted = (mine["train"] | mine["val"]) & new_ids
    assert held and not held & fitted
    assert held | fitted == new_ids
    labels = {}
    with (child / "split.csv").open(newline="") as handle:
        labels = {row["id"]: row["label"] for row in csv.DictReader(handle)}
    assert {labels[i] for i in held} == set(NEW)  # every class keeps rows for evaluation
    # The replay: the parent's training rows only; its test split is the forgetting test.
    replayed = mine["train"] - new_ids
    assert replayed and replayed <= theirs["train"]
    assert mine["test"] == theirs["test"]
    assert not (mine["train"] | mine["val"]) & (theirs["test"] | theirs["real"])
    assert theirs["real"] <= mine["real"]  # the parent's real rows stay evaluation rows


def _twins_parted(model_dir: Path, prefix: str) -> list[str]:
    """Ids of ``split.csv`` whose other form (``PUBLISHER_ID_PREFIX`` + id) has another role."""
    with (model_dir / "split.csv").open(newline="") as handle:
        role = {row["id"]: row["role"] for row in csv.DictReader(handle)}
    twins = [i for i in role if i.startswith(prefix) and PUBLISHER_ID_PREFIX + i in role]
    assert twins  # the test means something only with both forms in the split
    return [i for i in twins if role[i] != role[PUBLISHER_ID_PREFIX + i]]


def test_the_two_forms_of_an_ondrejov_exposure_stay_on_one_side_of_every_split(
    parent: Path, tmp_path: Path
) -> None:
    """An SSAP spectrum (``ivo://.../ccd700/X``) and its raw file (``X``) are one exposure:
    parted by a split, the held-out one was scored on a spectrum the model had fitted."""
    counts = {"emission": 30, "absorption": 30, "double-peak": 20}
    forms = [
        profile_rows(counts, seed=21, origin="real", prefix=f"{PUBLISHER_ID_PREFIX}obs"),
        profile_rows(counts, seed=21, origin="real", prefix="obs"),
    ]
    data = write_dataset(tmp_path / "both-forms.h5", *forms)
    scratch = TrainConfig(**{**FAST, "epochs": 1}, real_rows="fit")
    train([data], tmp_path / "scratch", config=scratch)
    assert _twins_parted(tmp_path / "scratch", "obs-") == []
    forms = [
        profile_rows(NEW, seed=22, origin="real", prefix=f"{PUBLISHER_ID_PREFIX}tw"),
        profile_rows(NEW, seed=22, origin="real", prefix="tw"),
    ]
    new = write_dataset(tmp_path / "new-both-forms.h5", *forms)
    tuned = TrainConfig(**{**FAST, "epochs": 1}, real_holdout=0.5)
    train([new], tmp_path / "tuned", config=tuned, init=parent)
    assert _twins_parted(tmp_path / "tuned", "tw-") == []


def test_fine_tuning_starts_from_the_parent_weights(
    parent: Path, new_data: Path, tmp_path: Path
) -> None:
    config = TrainConfig(**{**FAST, "epochs": 1}, learning_rate=1e-7, calibrate=False)
    nudged = train([new_data], tmp_path / "nudged", config=config, init=parent)
    old = load_model(parent, device="cpu")
    x = profile_rows({"emission": 5, "absorption": 5}, seed=99).X
    logits = old.predict_logits(x)
    assert np.abs(logits).max() > 0.5  # a trained network, not one that says nothing
    assert np.allclose(nudged.model.predict_logits(x), logits, atol=1e-3)


def test_no_replay_fits_the_new_rows_alone(parent: Path, new_data: Path, tmp_path: Path) -> None:
    result = train(
        [new_data], tmp_path / "m", config=TrainConfig(**FAST, replay_ratio=0.0), init=parent
    )
    roles = _roles(tmp_path / "m")
    assert all(i.startswith("new-") for i in roles["train"] | roles["val"] | roles["real"])
    assert result.card.parent["n_replay_train"] == 0


def test_mismatched_parents_are_refused_saying_what_differs(
    parent: Path, new_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainingError, match="cnn-small network, this run asks for fnn"):
        train([new_data], tmp_path / "a", config=TrainConfig(model="fnn"), init=parent)
    other_grid = PreprocessConfig(grid_n=100)
    rows = profile_rows(NEW, seed=14, origin="real", prefix="g", config=other_grid)
    shifted = write_dataset(tmp_path / "grid.h5", rows, config=other_grid)
    with pytest.raises(TrainingError, match=r"grid_n: data 100, model 140"):
        train([shifted], tmp_path / "b", config=TrainConfig(**FAST), init=parent)
    two = profile_rows({"emission": 60, "absorption": 60}, seed=15)
    small = tmp_path / "two"
    train([write_dataset(tmp_path / "two.h5", two)], small, config=TrainConfig(**FAST))
    with pytest.raises(TrainingError, match=r"double-peak.*its classes: emission, absorption"):
        train([new_data], tmp_path / "c", config=TrainConfig(**FAST), init=small)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_missing_replay_data_names_the_option(parent: Path, new_data: Path, tmp_path: Path) -> None:
    moved = tmp_path / "parent"
    shutil.copytree(parent, moved)
    card = json.loads((moved / "card.json").read_text())
    card["datasets"][0]["path"] = str(tmp_path / "gone.h5")
    (moved / "card.json").write_text(json.dumps(card))
    with pytest.raises(TrainingError, match="--replay PATH, or --replay-ratio 0"):
        train([new_data], tmp_path / "m", config=TrainConfig(**FAST), init=moved)
    synthetic = parent.parent / "synthetic.h5"
    result = train(
        [new_data], tmp_path / "m", config=TrainConfig(**FAST), init=moved, replay=[synthetic]
    )
    assert result.card.parent["n_replay_train"] > 0


def test_replay_data_replaced_at_the_recorded_path_is_refused(
    parent: Path, new_data: Path, tmp_path: Path
) -> None:
    """Another run's data at the path the parent's card records (a demo run made again into
    the same folder) was replayed as if it were what the parent was trained on."""
    moved = tmp_path / "parent"
    shutil.copytree(parent, moved)
    recorded = tmp_path / "training.h5"
    shutil.copy(parent.parent / "synthetic.h5", recorded)
    card = json.loads((moved / "card.json").read_text())
    card["datasets"][0]["path"] = str(recorded)
    (moved / "card.json").write_text(json.dumps(card))
    assert train([new_data], tmp_path / "same", config=TrainConfig(**FAST), init=moved).card
    other = profile_rows({"emission": 160, "absorption": 240, "double-peak": 100}, seed=21)
    write_dataset(tmp_path / "another-run.h5", other).replace(recorded)
    with pytest.raises(TrainingError) as refused:
        train([new_data], tmp_path / "m", config=TrainConfig(**FAST), init=moved)
    message = str(refused.value)
    assert str(recorded) in message and "another dataset now: 500 rows" in message
    assert "--replay PATH, or --replay-ratio 0" in message and not (tmp_path / "m").exists()
    chosen = train(
        [new_data], tmp_path / "m", config=TrainConfig(**FAST), init=moved, replay=[recorded]
    )
    assert chosen.card.parent["n_replay_train"] > 0


def test_cli_fine_tunes_with_the_parent_network_and_prints_both(
    parent: Path, new_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    args = ["train", str(new_data), "--init", str(parent), "-o", str(out), "--epochs", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["architecture"]["name"] == "cnn-small"
    assert "parent test" in result.output and "new real" in result.output
    bad = CliRunner().invoke(main, [*args[:-2], "--model", "cnn", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "cnn-small network, this run asks for cnn" in bad.output
    assert "Traceback" not in bad.output
