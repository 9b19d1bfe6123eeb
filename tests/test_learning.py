"""`spectraldl learn` end to end on a real database (SQLite and PostgreSQL) with real spectra.

Two users label the bundled real Ondřejov spectra (agreeing, tying once,
one undoing a label), one vets a candidate; the loop fine-tunes a model on
the consensus and records what changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from training_helpers import profile_rows, write_dataset
from web_support import database_url, ondrejov_files, write_predictions_file

from spectraldl.cli import main
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import real_labels_csv
from spectraldl.io.dataset import read_dataset
from spectraldl.io.labels import CLASSES
from spectraldl.ml.modelcard import load_model
from spectraldl.ml.pretrained import resolve_model
from spectraldl.ml.training import TrainConfig, train
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.simulate.archive import simulate_archive
from spectraldl.web import store
from spectraldl.web.auth import hash_password
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_predictions, spectrum_row
from spectraldl.web.learning import _comparison, collect_labels
from spectraldl.web.models import Catalogue, Prediction, SpectrumRow, User


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("parent")
    rows = profile_rows({"emission": 120, "absorption": 160, "double-peak": 60}, seed=21)
    data = write_dataset(folder / "synthetic.h5", rows)
    train([data], folder / "model", config=TrainConfig(model="cnn-small", epochs=3, patience=2))
    return folder / "model"


@pytest.fixture(params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A database with the 16 real Ondřejov spectra, labels by two users and one verdict."""
    truth = {}
    with real_labels_csv().open(newline="") as handle:
        for row in csv.DictReader(handle):
            truth[row["id"]] = row["label"]
    with database_url(request.param, tmp_path) as url:
        db = open_database(url)
        config = PreprocessConfig()
        with db.session() as session:
            alice = User(name="alice", password_hash=hash_password("a-pw"), is_active=True)
            bob = User(name="bob", password_hash=hash_password("b-pw"), is_active=True)
            session.add_all([alice, bob])
            stored = []
            for path in ondrejov_files():
                row = spectrum_row(read_spectrum(path), config=config, imported_from=str(path))
                session.add(row)
                stored.append((row, truth[path.name]))
            session.flush()
            *labelled, (vetted, _) = stored
            expected = {}
            for row, label in labelled[:-2]:  # alice labels them all, bob agrees
                for user in (alice, bob):
                    store.record_label(session, user=user, spectrum_id=row.id, label=label)
                expected[row.ident] = label
            tied, tied_label = labelled[-2]
            store.record_label(session, user=alice, spectrum_id=tied.id, label=tied_label)
            store.record_label(session, user=bob, spectrum_id=tied.id, label="unknown")
            undone, undone_label = labelled[-1]
            store.record_label(session, user=alice, spectrum_id=undone.id, label=undone_label)
            wrong = "absorption" if undone_label != "absorption" else "emission"
            slip = store.record_label(session, user=bob, spectrum_id=undone.id, label=wrong)
            session.commit()
            store.undo_label(session, user=bob, decision_id=slip.id)
            session.commit()
            expected[undone.ident] = undone_label
            ids = {"tied": tied.ident, "undone": undone.ident, "vetted": vetted.ident}
        write_predictions_file(tmp_path / "cands.parquet", [ids["vetted"]])
        import_predictions(db, tmp_path / "cands.parquet")
        with db.session() as session:
            prediction = session.scalar(select(Prediction).where(Prediction.ident == ids["vetted"]))
            assert prediction is not None and prediction.spectrum_id is not None
            bob = session.scalar(select(User).where(User.name == "bob"))
            store.record_verdict(session, user=bob, prediction_id=prediction.id, verdict="reject")
            session.commit()
            n_spectra = len(session.scalars(select(SpectrumRow.id)).all())
        expected[ids["vetted"]] = "absorption"  # reject: absorption
        db.dispose()
        yield {"url": url, "expected": expected, "ids": ids, "n_spectra": n_spectra}


def test_learn_end_to_end(filled: dict[str, Any], parent: Path, tmp_path: Path) -> None:
    out = tmp_path / "model-2"
    args = ["learn", "--db", filled["url"], "--model", str(parent), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--epochs", "2", "--force"])
    assert result.exit_code == 0, result.output
    assert "old real" in result.output and "new real" in result.output
    labels = read_dataset(out.with_name("model-2.labels.h5"))
    got = {str(i): CLASSES[c] for i, c in zip(labels.ids, labels.labels, strict=True)}
    # The consensus: the tie is left out, the undone slip is gone, the verdict counts.
    expected = {k: v for k, v in filled["expected"].items() if v != "unknown"}
    assert got == expected
    assert filled["ids"]["tied"] not in got
    card = json.loads((out / "card.json").read_text())
    learning = card["learning"]
    assert learning["rows"]["verdict"] == {"absorption": 1}
    assert sum(learning["rows"]["label"].values()) == len(expected) - 1
    assert learning["left_out"].get("tied labels") == 1
    assert "password" not in json.dumps(learning)
    assert card["parent"]["parent_path"] == str(parent.resolve())
    with (out / "split.csv").open(newline="") as handle:
        roles = [(row["id"], row["role"]) for row in csv.DictReader(handle)]
    held = {i for i, role in roles if role == "real" and i in got}
    fitted = {i for i, role in roles if role in ("train", "val") and i in got}
    assert held and not held & fitted and held | fitted == set(got)
    compared = card["parent"]["compared"]["real"]
    assert compared["n"] == len(held) and 0 <= compared["parent_accuracy"] <= 1
    # No spectrum added; the new model scored every stored one into a catalogue, which
    # the "most uncertain first" labelling queue reads.
    db = open_database(filled["url"], upgrade=False)
    model_id = load_model(out, device="cpu").model_id
    with db.session() as session:
        assert len(session.scalars(select(SpectrumRow.id)).all()) == filled["n_spectra"]
        catalogue = session.scalars(select(Catalogue).where(Catalogue.model_id == model_id)).one()
        assert catalogue.n_rows == filled["n_spectra"]
        alice = session.scalar(select(User).where(User.name == "alice"))
        ids, _ = store.queue(session, user=alice, mode="uncertain")
        assert ids  # what alice has not labelled, ordered by the newest scores
        newest = select(Prediction).where(Prediction.spectrum_id == ids[0])
        latest = session.scalars(newest.order_by(Prediction.id.desc())).first()
        assert latest.catalogue_id == catalogue.id
    db.dispose()
    assert f"scored {filled['n_spectra']} stored spectra" in result.output
    # Learning again from the new model (its labels file is the new export's).
    again = CliRunner().invoke(
        main,
        [*args[:4], str(out), "-o", str(tmp_path / "m3"), "--epochs", "1", "--force"],
    )
    assert again.exit_code == 0, again.output
    card3 = json.loads((tmp_path / "m3" / "card.json").read_text())
    assert card3["parent"]["parent_model_id"] != card["parent"]["parent_model_id"]


@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)
def test_learn_stopped_while_scoring_says_the_model_is_written(
    filled: dict[str, Any], parent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM after the new model is published: "start again" would fine-tune it twice."""
    out = tmp_path / "model-2"
    monkeypatch.setattr(
        "spectraldl.web.learning._rescore", lambda *_: signal.raise_signal(signal.SIGTERM)
    )
    args = ["learn", "--db", filled["url"], "--model", str(parent), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--epochs", "1", "--force"])
    assert result.exit_code == 143, result.output
    assert f"the new model is written to {out}; only its scoring" in result.stderr
    assert f"spectraldl import --model {out}" in result.stderr
    assert json.loads((out / "card.json").read_text())["parent"]["parent_path"] == str(
        parent.resolve()
    )


def test_learn_refuses_what_it_cannot_use(parent: Path, tmp_path: Path) -> None:
    missing = CliRunner().invoke(
        main, ["learn", "--db", str(tmp_path / "none.db"), "--model", str(parent), "-o", "x"]
    )
    assert missing.exit_code == 1 and "no such database file" in missing.output
    assert not (tmp_path / "none.db").exists()
    empty = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    empty.dispose()
    nothing = CliRunner().invoke(
        main, ["learn", "--db", str(tmp_path / "empty.db"), "--model", str(parent), "-o", "x"]
    )
    assert nothing.exit_code == 1 and "0 usable labelled spectra" in nothing.output


def test_learn_puts_back_the_model_a_killed_run_moved_aside(parent: Path, tmp_path: Path) -> None:
    """``learn -o`` equal to ``--model``, killed between publish_model_dir's two renames, left
    only ``.NAME.old-PID``: the model in use was gone. The next learn puts it back first."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    model = tmp_path / "model"
    shutil.copytree(parent, tmp_path / f".model.old-{process.pid}")
    empty = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    empty.dispose()
    args = ["learn", "--db", str(tmp_path / "empty.db"), "--model", str(model), "-o", str(model)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "0 usable labelled spectra" in result.output
    assert f"restored {model}" in result.output
    assert (model / "model.pt").read_bytes() == (parent / "model.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "model"]


KILL_AT_LABELS_RENAME = """
import os, signal, sys
from spectraldl.cli import main
real = os.replace
def replace(source, target, *args, **kwargs):
    if str(source).endswith(".labels.h5"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(source, target, *args, **kwargs)
os.replace = replace
main(sys.argv[1:])
"""


@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)
def test_learn_finishes_a_publish_killed_between_the_model_and_its_labels(
    filled: dict[str, Any], parent: Path, tmp_path: Path
) -> None:
    """kill -9 after the new model's rename and before its labels dataset's left the model
    beside no labels file, the labels in the dead run's work folder (deleted next run).
    The next learn moves them in first: the file the model's card names, byte for byte."""
    import subprocess
    import sys

    out = tmp_path / "model-2"
    args = ["learn", "--db", filled["url"], "--model", str(parent), "-o", str(out)]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_LABELS_RENAME, *args, "--epochs", "1", "--force"],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    labels = out.with_name("model-2.labels.h5")
    assert (out / "card.json").is_file() and not labels.exists()
    empty = tmp_path / "empty.db"
    open_database(f"sqlite:///{empty}").dispose()
    again = ["learn", "--db", str(empty), "--model", str(out), "-o", str(out)]
    result = CliRunner().invoke(main, again)
    assert result.exit_code == 1 and "0 usable labelled spectra" in result.output
    assert "moved model-2.labels.h5 in from .model-2.learn-" in result.output
    card = json.loads((out / "card.json").read_text())
    assert hashlib.sha256(labels.read_bytes()).hexdigest() == card["learning"]["labels_sha256"]
    assert len(read_dataset(labels).ids) == sum(
        sum(kind.values()) for kind in card["learning"]["rows"].values()
    )
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_worse_model_is_named_worse() -> None:
    card = {
        "parent": {
            "compared": {
                "real": {"n": 5, "parent_accuracy": 0.8, "accuracy": 0.6},
                "test": {"n": 100, "parent_accuracy": 0.95, "accuracy": 0.945},
            }
        }
    }
    _, worse = _comparison(card["parent"]["compared"])
    assert len(worse) == 1 and "0.800 to 0.600" in worse[0]
    card["parent"]["compared"]["real"]["accuracy"] = 0.8
    card["parent"]["compared"]["test"]["accuracy"] = 0.93  # forgot 2 points
    _, worse = _comparison(card["parent"]["compared"])
    assert len(worse) == 1 and "more than 1 point" in worse[0]
    card["parent"]["compared"]["test"]["accuracy"] = 0.95
    assert _comparison(card["parent"]["compared"])[1] == []


def test_overwrite_never_deletes_the_database_it_learns_from(parent: Path, tmp_path: Path) -> None:
    """``-o`` naming the folder of the team's database: --overwrite would delete it with the
    folder (it did, then said the database was missing); refused, the database kept."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    open_database(f"sqlite:///{sandbox / 'team.db'}").dispose()
    args = ["learn", "--db", str(sandbox / "team.db"), "--model", str(parent), "-o", str(sandbox)]
    result = CliRunner().invoke(main, [*args, "--overwrite", "--force"])
    assert result.exit_code == 1 and "not a model folder" in result.output
    (sandbox / "card.json").write_text("{}")
    result = CliRunner().invoke(main, [*args, "--overwrite", "--force"])
    assert result.exit_code == 1 and "team.db, an input of this run" in result.output
    assert (sandbox / "team.db").stat().st_size > 0


def test_learn_takes_simulated_spectra_stored_as_real_for_synthetic(
    parent: Path, tmp_path: Path
) -> None:
    """Earlier imports stored simulated files as ``origin='real'``; their metadata still says
    ``simulated``: `collect_labels` rows are synthetic, never held-out real spectra."""
    simulate_archive(tmp_path / "sim", archive="lamost", n=2, seed=0)
    db = open_database(f"sqlite:///{tmp_path / 'old.db'}")
    with db.session() as session:
        alice = User(name="alice", password_hash=hash_password("a-pw"), is_active=True)
        session.add(alice)
        paths = [*sorted((tmp_path / "sim").rglob("*.fits*")), ondrejov_files()[0]]
        for path in paths:
            row = spectrum_row(read_spectrum(path), config=PreprocessConfig())
            row.origin = "real"  # what an import before this fix stored
            session.add(row)
            session.flush()
            store.record_label(session, user=alice, spectrum_id=row.id, label="absorption")
        session.commit()
    rows = collect_labels(db, load_model(parent, device="cpu")).rows
    db.dispose()
    assert sorted(rows.meta["origin"]) == ["real", "synthetic", "synthetic"]


def _roles(model_dir: Path) -> dict[str, str]:
    with (model_dir / "split.csv").open(newline="") as handle:
        return {row["id"]: row["role"] for row in csv.DictReader(handle)}


@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)
def test_second_round_never_holds_out_what_the_parent_fitted(
    filled: dict[str, Any], parent: Path, tmp_path: Path
) -> None:
    """Learning again from a learnt model split every labelled row afresh: rows the parent
    had fitted became "held-out real" rows on which parent and child were compared."""
    first, second = tmp_path / "model-2", tmp_path / "model-3"
    args = ["learn", "--db", filled["url"], "--epochs", "1", "--force"]
    done = CliRunner().invoke(main, [*args, "--model", str(parent), "-o", str(first)])
    assert done.exit_code == 0, done.output
    # Another seed draws another share to hold out: as changed labels do.
    again = CliRunner().invoke(
        main, [*args, "--model", str(first), "-o", str(second), "--seed", "3"]
    )
    assert again.exit_code == 0, again.output
    before, after = _roles(first), _roles(second)
    labelled = {i for i in filled["expected"] if i in after}
    held = {i for i in labelled if after[i] == "real"}
    fitted_before = {i for i in labelled if before.get(i) in ("train", "val")}
    assert held and fitted_before and not held & fitted_before
    assert held >= {i for i in labelled if before.get(i) == "real"}  # still held out
    card = json.loads((second / "card.json").read_text())["parent"]
    assert card["n_new_fitted_by_parent"] == len(fitted_before)
    assert card["compared"]["real"]["n"] == len(held)
    assert f"{len(held)} held-out real spectra (none of them fitted by the old model)" in (
        again.stdout
    )
    assert f"{len(fitted_before)} labelled spectra the old model was fitted on" in again.stdout


@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)
def test_labels_only_on_spectra_the_parent_held_out_stop_with_a_message(
    filled: dict[str, Any], parent: Path, tmp_path: Path
) -> None:
    """Every labelled spectrum one the parent held out (as in a demo run's model, whose real
    spectra all are): they stay held out, nothing is left to fit; this was a ZeroDivisionError
    traceback from the trainer."""
    model = tmp_path / "model"
    shutil.copytree(parent, model)
    with (model / "split.csv").open("a", newline="") as handle:
        writer = csv.writer(handle)
        for spectrum_id, label in filled["expected"].items():
            writer.writerow([spectrum_id, "real-spectra.h5", "real", label])
    args = ["learn", "--db", filled["url"], "--model", str(model), "-o", str(tmp_path / "new")]
    result = CliRunner().invoke(main, [*args, "--epochs", "1", "--force"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "nothing new to fit" in result.output and "held out for evaluation" in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)
def test_in_place_learn_publishes_the_labels_with_the_model_only(
    filled: dict[str, Any], parent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``learn -o MODEL`` wrote MODEL.labels.h5 before training: a refused or stopped run left
    the old model with another labels file than its card names. Now the labels are published
    with the model, a refused or stopped run leaves both as they were, and the card of a model
    that replaced its parent names the parent by its id (its path is the child's now)."""
    model, labels = tmp_path / "model", tmp_path / "model.labels.h5"
    shutil.copytree(parent, model)
    args = ["learn", "--db", filled["url"], "--model", str(model), "-o", str(model)]
    kept = CliRunner().invoke(main, [*args, "--epochs", "1", "--force"])
    assert kept.exit_code == 0, kept.output
    card = json.loads((model / "card.json").read_text())
    assert card["parent"]["parent_path"] is None and card["parent"]["parent_replaced"]
    assert card["parent"]["parent_model_id"] == load_model(parent, device="cpu").model_id
    assert card["learning"]["labels_dataset"] == str(labels.resolve())
    assert card["datasets"][0]["path"] == str(labels.resolve())
    assert f"wrote {model} (model {load_model(model, device='cpu').model_id})" in kept.stderr
    published = {p.name: p.read_bytes() for p in (labels, model / "card.json")}
    # A diverging step size forgets what the parent knew: refused, nothing changes.
    refused = CliRunner().invoke(main, [*args, "--epochs", "3", "--lr", "1", "--seed", "5"])
    assert refused.exit_code == 1 and "not written: the new model is worse" in refused.output
    assert "wrote" not in refused.output
    stopped_in_training = lambda *_a, **_k: signal.raise_signal(signal.SIGTERM)  # noqa: E731
    monkeypatch.setattr("spectraldl.web.learning.train", stopped_in_training)
    stopped = CliRunner().invoke(main, [*args, "--epochs", "1", "--force"])
    assert stopped.exit_code == 143, stopped.output
    assert {p.name: p.read_bytes() for p in (labels, model / "card.json")} == published
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_learn_from_a_shipped_model_says_what_to_pass(tmp_path: Path) -> None:
    """``learn --model pretrained`` stopped on the missing demo data of the model's card;
    the message names the options that work here."""
    shipped = load_model(resolve_model("pretrained"), device="cpu")
    db = open_database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.session() as session:
        alice = User(name="alice", password_hash=hash_password("a-pw"), is_active=True)
        session.add(alice)
        for path in ondrejov_files()[:4]:
            row = spectrum_row(read_spectrum(path), config=shipped.config)
            session.add(row)
            session.flush()
            store.record_label(session, user=alice, spectrum_id=row.id, label="absorption")
        session.commit()
    db.dispose()
    args = ["learn", "--db", str(tmp_path / "w.db"), "--model", "pretrained", "-o"]
    result = CliRunner().invoke(main, [*args, str(tmp_path / "m2")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the shipped model cnn was trained on a demo run's training.h5" in result.output
    assert "--replay-ratio 0" in result.output and "--replay DIR/training.h5" in result.output
    assert not (tmp_path / "m2.labels.h5").exists()
    alone = CliRunner().invoke(main, [*args, str(tmp_path / "m2"), "--replay-ratio", "0"])
    assert alone.exit_code in (0, 1) and "Traceback" not in alone.output, alone.output
    assert "training data is not at hand" not in alone.output


def test_learn_help_says_what_it_writes_into_the_database() -> None:
    """``--db`` was documented as only read, yet a written model scores into a catalogue."""
    text = CliRunner().invoke(main, ["learn", "--help"]).output
    assert "only read" not in text and "new catalogue" in text
