"""The web tool's database layer on SQLite and on a real PostgreSQL server.

Migrations, imports (FITS, datasets, predictions, a model's scores), the
append-only labels with their derived current label and consensus, the
labels CSV round trip through `spectraldl ingest --labels`, the queues and
the vetting records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from web_support import database_url, ondrejov_files, write_predictions_file

from spectraldl.io.archives import read_spectrum
from spectraldl.io.archives.ondrejov import observation_key
from spectraldl.io.dataset import read_dataset
from spectraldl.io.labels import CLASSES, read_labels
from spectraldl.jobs.ingest import ingest
from spectraldl.prep.preprocess import PreprocessConfig, preprocess
from spectraldl.web import store, twins
from spectraldl.web.auth import UserError, add_user, authenticate, hash_password
from spectraldl.web.db import Database, alembic_config, current_revision, open_database
from spectraldl.web.importing import (
    import_dataset,
    import_paths,
    import_predictions,
    read_table,
    spectrum_row,
)
from spectraldl.web.models import Base, LabelDecision, Prediction, SpectrumRow, User, VetDecision

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small CNN trained for two epochs on simple synthetic profiles (once per module)."""
    from training_helpers import profile_rows, write_dataset

    from spectraldl.ml.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("model")
    dataset = write_dataset(
        folder / "train.h5",
        profile_rows({"emission": 30, "absorption": 30, "double-peak": 30}, seed=1),
    )
    config = TrainConfig(model="cnn-small", epochs=2, patience=2, device="cpu", seed=0)
    return train([dataset], folder / "model", config=config)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated database on each backend."""
    with database_url(request.param, tmp_path) as url:
        database = open_database(url)
        try:
            yield database
        finally:
            database.dispose()


@pytest.fixture(scope="module")
def password_hashes() -> dict[str, str]:
    """Real Argon2 hashes, computed once (each takes a few tenths of a second)."""
    return {name: hash_password(f"{name}-password") for name in ("alice", "bob", "carol")}


def make_user(session: Session, hashes: dict[str, str], name: str, admin: bool = False) -> User:
    user = User(name=name, password_hash=hashes[name], is_admin=admin, is_active=True)
    session.add(user)
    session.flush()
    return user


@pytest.fixture
def users(db: Database, password_hashes: dict[str, str]) -> tuple[User, User]:
    with db.session() as session:
        alice = make_user(session, password_hashes, "alice", admin=True)
        bob = make_user(session, password_hashes, "bob")
        session.commit()
        return alice, bob


@pytest.fixture(scope="module")
def ondrejov_rows() -> list[dict]:
    """Column values of the 16 bundled Ondřejov spectra, read and preprocessed once."""
    config = PreprocessConfig()
    rows = []
    for path in ondrejov_files():
        row = spectrum_row(read_spectrum(path), config=config, imported_from=str(path))
        rows.append(
            {c.key: getattr(row, c.key) for c in SpectrumRow.__table__.columns if c.key != "id"}
        )
    return rows


@pytest.fixture
def spectra(db: Database, ondrejov_rows: list[dict]) -> list[SpectrumRow]:
    with db.session() as session:
        session.add_all([SpectrumRow(**values) for values in ondrejov_rows])
        session.commit()
        return list(session.scalars(select(SpectrumRow).order_by(SpectrumRow.id)))


# --- schema ---------------------------------------------------------------------------------


def test_migrations_build_the_models_schema_and_rerun_as_no_op(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head()
    assert current_revision(db.engine) == head
    expected = {"users", "sessions", "spectra", "label_decisions", "catalogues", "predictions"}
    assert expected | {"vet_decisions", "alembic_version"} <= set(db.tables())
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    again = open_database(db.url)  # a second start migrates nothing and keeps the data
    assert current_revision(again.engine) == head
    again.dispose()


def test_passwords_are_argon2_hashes(db: Database) -> None:
    with db.session() as session:
        add_user(session, "alice", "alice-password", admin=True)
        with pytest.raises(UserError, match="already exists"):
            add_user(session, "alice", "other-password")
        with pytest.raises(UserError, match="at least"):
            add_user(session, "dave", "short")
        with pytest.raises(UserError, match="invalid user name"):
            add_user(session, "<script>", "long-enough-password")
        session.commit()
        stored = session.scalar(select(User.password_hash).where(User.name == "alice"))
        assert stored.startswith("$argon2id$") and "alice-password" not in stored
        assert authenticate(session, "alice", "alice-password").name == "alice"
        assert authenticate(session, "alice", "wrong-password") is None
        assert authenticate(session, "nobody", "alice-password") is None


# --- imports --------------------------------------------------------------------------------


def test_import_fits_stores_whole_spectra_and_skips_what_is_there(
    db: Database, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    files = ondrejov_files()
    for path in files[:4]:
        (tree / path.name).write_bytes(path.read_bytes())
    (tree / "broken.fits").write_bytes(files[0].read_bytes()[:3000])
    (tree / "loop").symlink_to(tree)  # listed as a bad entry, as ingest lists it
    summary = import_paths(db, [tree])
    assert summary.added == 4
    assert sorted(Path(e.path).name for e in summary.errors) == ["broken.fits", "loop"]
    assert "loop" in next(e.reason for e in summary.errors if e.path.endswith("loop"))
    assert summary.line().endswith("2 bad files")
    with db.session() as session:
        rows = {r.ident: r for r in session.scalars(select(SpectrumRow))}
    for path in files[:4]:
        spectrum = read_spectrum(path)
        row = rows[spectrum.id]
        assert np.array_equal(row.wave_aa(), spectrum.wave_aa)
        assert np.array_equal(row.flux_values(), spectrum.flux.astype(np.float32))
        assert np.array_equal(row.vector(), preprocess(spectrum).x)
        assert row.object == spectrum.meta.object and row.medium == "air"
        assert math.isclose(row.ra, spectrum.meta.ra) and row.has_flux
    again = import_paths(db, [tree])
    assert again.added == 0 and again.already_present == 4 and len(again.errors) == 2


def test_import_dataset_keeps_the_vectors_and_its_labels(db: Database, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    files = ondrejov_files()[:5]
    labels.write_text(
        "id,label\n" + "".join(f"{p.name},{CLASSES[i % 4]}\n" for i, p in enumerate(files))
    )
    dataset_path = tmp_path / "set.h5"
    ingest(files, dataset_path, labels_csv=labels, workers=1)
    dataset = read_dataset(dataset_path)
    summary = import_dataset(db, dataset_path)
    assert summary.added == 5
    with db.session() as session:
        rows = {r.ident: r for r in session.scalars(select(SpectrumRow))}
    for i, ident in enumerate(dataset.ids):
        row = rows[ident]
        assert not row.has_flux and row.wave is None
        assert np.array_equal(row.vector(), dataset.X[i])
        assert np.allclose(row.grid_aa(), dataset.grid_aa)
        assert row.reference_label == CLASSES[dataset.labels[i]]
    payload = store.spectrum_payload(rows[dataset.ids[0]])
    assert payload["full"] is None and len(payload["vector"]["x"]) == 140


# --- labels ---------------------------------------------------------------------------------


def test_labels_are_appended_never_overwritten_and_undo_restores(
    db: Database, users: tuple[User, User], spectra: list[SpectrumRow]
) -> None:
    alice, bob = users
    first = spectra[0].id
    with db.session() as session:
        store.record_label(session, user=alice, spectrum_id=first, label="emission")
        second = store.record_label(session, user=alice, spectrum_id=first, label="absorption")
        store.record_label(session, user=bob, spectrum_id=first, label="Emission")
        session.commit()
        assert store.labels_by_spectrum(session)[first] == {
            "alice": "absorption",
            "bob": "emission",
        }
        with pytest.raises(store.NotFound):
            store.undo_label(session, user=bob, decision_id=second.id)  # not bob's
        restored = store.undo_label(session, user=alice, decision_id=second.id)
        session.commit()
        assert restored.label == "emission" and restored.undo_of == second.id
        with pytest.raises(store.DecisionError):
            store.undo_label(session, user=alice, decision_id=second.id)  # no longer the latest
        history = store.label_history(session, first)
        assert [(h["user"], h["label"]) for h in history] == [
            ("alice", "emission"),
            ("alice", "absorption"),
            ("bob", "emission"),
            ("alice", "emission"),
        ]
        assert session.scalar(select(func.count(LabelDecision.id))) == 4
        assert store.labels_by_spectrum(session)[first] == {"alice": "emission", "bob": "emission"}
        only = store.record_label(session, user=bob, spectrum_id=spectra[1].id, label="noise")
        session.commit()
        store.undo_label(session, user=bob, decision_id=only.id)
        session.commit()
        assert spectra[1].id not in store.labels_by_spectrum(session)
        with pytest.raises(store.DecisionError):
            store.record_label(session, user=bob, spectrum_id=first, label="very bright")
        with pytest.raises(store.NotFound):
            store.record_label(session, user=bob, spectrum_id=10**6, label="emission")


def test_consensus_disagreements_and_export_policies(
    db: Database,
    users: tuple[User, User],
    spectra: list[SpectrumRow],
    password_hashes: dict[str, str],
) -> None:
    alice, bob = users
    with db.session() as session:
        carol = make_user(session, password_hashes, "carol")
        votes = {
            0: {"alice": "emission", "bob": "emission", "carol": "emission"},
            1: {"alice": "absorption", "bob": "absorption", "carol": "emission"},
            2: {"alice": "double-peak", "bob": "emission"},
            3: {"bob": "noise"},
        }
        people = {"alice": alice, "bob": bob, "carol": carol}
        for index, by_user in votes.items():
            for name, label in by_user.items():
                store.record_label(
                    session, user=people[name], spectrum_id=spectra[index].id, label=label
                )
        session.commit()
        ident = [s.ident for s in spectra]
        assert store.export_labels(session) == [
            (ident[0], "emission"),
            (ident[1], "absorption"),
            (ident[3], "noise"),
        ]
        assert store.export_labels(session, policy="unanimous") == [
            (ident[0], "emission"),
            (ident[3], "noise"),
        ]
        assert store.export_labels(session, user="alice") == [
            (ident[0], "emission"),
            (ident[1], "absorption"),
            (ident[2], "double-peak"),
        ]
        found = {d.spectrum_id: d for d in store.disagreements(session)}
        assert set(found) == {spectra[1].id, spectra[2].id}
        assert found[spectra[1].id].consensus == "absorption"
        assert found[spectra[2].id].consensus is None
        assert found[spectra[1].id].counts == {"absorption": 2, "emission": 1}


def test_the_two_forms_of_one_exposure_find_each_other_and_labels_apart_are_listed(
    db: Database, users: tuple[User, User], spectra: list[SpectrumRow]
) -> None:
    alice, bob = users
    by_key: dict[str, list[SpectrumRow]] = {}
    for row in spectra:
        by_key.setdefault(observation_key(row.ident), []).append(row)
    pairs = [sorted(rows, key=lambda r: r.form) for rows in by_key.values() if len(rows) == 2]
    assert len(pairs) >= 3 and {tuple(r.form for r in pair) for pair in pairs} == {("raw", "ssap")}
    with db.session() as session:
        for row in spectra:
            partner = [r for r in by_key[observation_key(row.ident)] if r.id != row.id]
            found = twins.other_forms(session, row, user="alice")
            assert [(f["id"], f["ident"], f["form"]) for f in found] == [
                (r.id, r.ident, r.form) for r in partner
            ]
        (raw_a, ssap_a), (raw_b, ssap_b), (raw_c, ssap_c) = pairs[:3]
        decisions = [
            (alice, raw_a, "emission"),  # A: two majorities apart
            (bob, raw_a, "emission"),
            (alice, ssap_a, "absorption"),
            (alice, raw_b, "emission"),  # B: both forms the same class
            (bob, ssap_b, "emission"),
            (alice, raw_c, "emission"),  # C: the SSAP form a tie, shown among disagreements
            (alice, ssap_c, "absorption"),
            (bob, ssap_c, "emission"),
        ]
        for user, row, label in decisions:
            store.record_label(session, user=user, spectrum_id=row.id, label=label)
        session.commit()
        apart = twins.forms_labelled_apart(session)
        assert [(a.key, a.forms) for a in apart] == [
            (
                observation_key(raw_a.ident),
                [
                    (r.id, r.ident, r.form, label)
                    for r, label in sorted(
                        [(raw_a, "emission"), (ssap_a, "absorption")], key=lambda p: p[0].id
                    )
                ],
            )
        ]
        assert ssap_c.id in {d.spectrum_id for d in store.disagreements(session)}
        seen_by_bob = twins.other_forms(session, ssap_a, user="bob")
        assert seen_by_bob == [
            {"id": raw_a.id, "ident": raw_a.ident, "form": "raw", "mine": "emission",
             "consensus": "emission"}
        ]  # fmt: skip
        assert twins.other_forms(session, raw_a, user="bob")[0]["mine"] is None


def test_labels_csv_round_trips_through_ingest(
    db: Database, users: tuple[User, User], spectra: list[SpectrumRow], tmp_path: Path
) -> None:
    alice, _ = users
    chosen = {}
    # The raw and SSAP forms of one observation share a name, so they get one label.
    stems = sorted({row.ident.rsplit("/", 1)[-1] for row in spectra})
    with db.session() as session:
        for row in spectra:
            label = CLASSES[stems.index(row.ident.rsplit("/", 1)[-1]) % len(CLASSES)]
            store.record_label(session, user=alice, spectrum_id=row.id, label=label)
            chosen[row.ident] = label
        session.commit()
        text_csv = store.labels_csv(store.export_labels(session))
    path = tmp_path / "labels.csv"
    path.write_text(text_csv)
    labels = read_labels(path)
    for ident, label in chosen.items():
        assert labels.lookup(ident) == CLASSES.index(label)
    dataset_path = tmp_path / "labelled.h5"
    ingest(ondrejov_files(), dataset_path, labels_csv=path, workers=1)
    dataset = read_dataset(dataset_path)
    assert {i: CLASSES[c] for i, c in zip(dataset.ids, dataset.labels, strict=True)} == chosen


# --- queues ---------------------------------------------------------------------------------


def test_queues_and_active_learning_order(
    db: Database, users: tuple[User, User], spectra: list[SpectrumRow], tmp_path: Path
) -> None:
    alice, bob = users
    with db.session() as session:
        store.record_label(session, user=bob, spectrum_id=spectra[0].id, label="emission")
        store.record_label(session, user=alice, spectrum_id=spectra[1].id, label="emission")
        session.commit()
        mine, remaining = store.queue(session, user=alice, mode="mine", limit=5)
        assert mine == [s.id for s in spectra if s.id != spectra[1].id][:5] and remaining == 15
        nobody, remaining = store.queue(session, user=alice, mode="nobody", limit=100)
        assert spectra[0].id not in nobody and spectra[1].id not in nobody and remaining == 14
        skipped, remaining = store.queue(
            session, user=alice, mode="mine", limit=3, exclude=[spectra[0].id, spectra[2].id]
        )
        assert skipped == [spectra[3].id, spectra[4].id, spectra[5].id] and remaining == 13
        empty, remaining = store.queue(session, user=alice, mode="uncertain")
        assert empty == [] and remaining == 0
    ids = [s.ident for s in spectra[:10]]
    frame = write_predictions_file(tmp_path / "pool.parquet", ids, seed=3)
    import_predictions(db, tmp_path / "pool.parquet")
    probs = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy(np.float64)
    entropy = -(probs * np.log(probs)).sum(axis=1)
    expected = [spectra[i].id for i in np.argsort(-entropy, kind="stable") if i != 1]
    with db.session() as session:
        order, remaining = store.queue(session, user=alice, mode="uncertain", limit=50)
        assert order == expected and remaining == 9
        with pytest.raises(store.DecisionError):
            store.queue(session, user=alice, mode="random")


# --- predictions and vetting ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".fits", ".h5"])
def test_predictions_tables_load_in_every_format(tmp_path: Path, suffix: str) -> None:
    ids = ["ivo://asu.cas.cz/stel/ccd700/uk220017", "spec-1", "spec-2"]
    frame = write_predictions_file(tmp_path / f"pred{suffix}", ids, seed=1)
    read = read_table(tmp_path / f"pred{suffix}")
    assert list(read["id"]) == ids
    assert np.allclose(read["p_double_peak"].astype(float), frame["p_double_peak"])


def test_vetting_queue_verdicts_and_export(
    db: Database, users: tuple[User, User], spectra: list[SpectrumRow], tmp_path: Path
) -> None:
    alice, bob = users
    ids = [s.ident for s in spectra[:8]] + ["spec-55862-B6212_sp06-999"]
    frame = write_predictions_file(tmp_path / "cands.csv", ids, seed=5)
    summary = import_predictions(db, tmp_path / "cands.csv", name="my candidates")
    ((catalogue_id, name, n_rows),) = summary.catalogues
    assert name == "my candidates" and n_rows == 9
    candidates = frame["predicted_class"].isin(store.CANDIDATE_CLASSES).to_numpy()
    p = np.array(
        [frame.loc[i, "p_" + c.replace("-", "_")] for i, c in enumerate(frame.predicted_class)]
    )
    with db.session() as session:
        preds = {p.row_index: p for p in session.scalars(select(Prediction))}
        assert preds[8].spectrum_id is None  # not in the database
        assert all(preds[i].spectrum_id == spectra[i].id for i in range(8))
        by_p, remaining = store.vet_queue(session, user=alice, catalogue_id=catalogue_id)
        order = [i for i in np.argsort(-p, kind="stable") if candidates[i]]
        assert [preds[i].id for i in order] == by_p and remaining == int(candidates.sum())
        by_novelty, _ = store.vet_queue(
            session, user=alice, catalogue_id=catalogue_id, order="novelty", classes=None
        )
        novelty_order = np.argsort(-frame["novelty"].to_numpy(), kind="stable")
        assert by_novelty == [preds[i].id for i in novelty_order]
        first, second = by_novelty[0], by_novelty[1]
        store.record_verdict(session, user=alice, prediction_id=first, verdict="confirm")
        wrong = store.record_verdict(session, user=alice, prediction_id=second, verdict="reject")
        store.record_verdict(session, user=bob, prediction_id=first, verdict="CONFIRM")
        store.record_verdict(session, user=bob, prediction_id=second, verdict="noise")
        session.commit()
        store.undo_verdict(session, user=alice, decision_id=wrong.id)
        store.record_verdict(session, user=alice, prediction_id=second, verdict="noise")
        session.commit()
        with pytest.raises(store.DecisionError):
            store.record_verdict(session, user=alice, prediction_id=first, verdict="maybe")
        left, _ = store.vet_queue(
            session, user=alice, catalogue_id=catalogue_id, order="novelty", classes=None
        )
        assert first not in left and second not in left and len(left) == 7
        assert session.scalar(select(func.count(VetDecision.id))) == 6
        vetted = store.vetted_frame(session, catalogue_id)
    # Every column of the file as read (read_predictions adds `origin` when a file lacks it).
    stored = list(read_table(tmp_path / "cands.csv").columns)
    assert list(vetted.columns[: len(stored)]) == stored and set(frame.columns) <= set(stored)
    by_row = {ids.index(r["id"]): r for r in vetted.to_dict(orient="records")}
    first_row = next(i for i in range(9) if preds[i].id == first)
    second_row = next(i for i in range(9) if preds[i].id == second)
    assert by_row[first_row]["vetted"] == "confirm" and by_row[first_row]["n_confirm"] == 2
    assert (
        by_row[second_row]["vetted"] == "noise" and by_row[second_row]["vetted_by"] == "alice|bob"
    )
    assert sum(1 for r in by_row.values() if r["vetted"] == "") == 7
    assert np.allclose(vetted["p_emission"].astype(float), frame["p_emission"])


def test_predictions_import_fetches_candidate_spectra_from_their_sources(
    db: Database, tmp_path: Path
) -> None:
    files = ondrejov_files()[:6]
    ids = [read_spectrum(p).id for p in files]
    frame = write_predictions_file(
        tmp_path / "pred.parquet", ids, seed=2, sources=[str(p) for p in files]
    )
    summary = import_paths(db, [tmp_path / "pred.parquet"])
    wanted = set(frame.loc[frame.predicted_class.isin(store.CANDIDATE_CLASSES), "id"])
    assert summary.added == len(wanted) > 0
    with db.session() as session:
        stored = set(session.scalars(select(SpectrumRow.ident)))
        linked = set(
            session.scalars(select(Prediction.ident).where(Prediction.spectrum_id.is_not(None)))
        )
    assert stored == wanted == linked


def test_score_with_model_feeds_the_uncertainty_queue(
    db: Database, users: tuple[User, User], spectra: list[SpectrumRow], trained_model: Any
) -> None:
    from spectraldl.web.importing import score_with_model

    result = trained_model
    summary = score_with_model(db, result.model.path)
    ((catalogue_id, _, n_rows),) = summary.catalogues
    assert n_rows == 16 and not summary.errors
    x = np.stack([s.vector() for s in spectra])
    proba = result.model.predict_proba(x)
    entropy = -(proba * np.log(np.clip(proba, 1e-30, None))).sum(axis=1)
    alice = users[0]
    with db.session() as session:
        rows = {p.spectrum_id: p for p in session.scalars(select(Prediction))}
        assert all(rows[s.id].catalogue_id == catalogue_id for s in spectra)
        for i, s in enumerate(spectra):
            assert np.allclose(
                [rows[s.id].probs[c] for c in result.model.classes], proba[i], atol=1e-5
            )
        order, _ = store.queue(session, user=alice, mode="uncertain", limit=50)
    by_id = {s.id: entropy[i] for i, s in enumerate(spectra)}
    assert sorted(order) == sorted(by_id)
    assert np.all(np.diff([by_id[i] for i in order]) <= 1e-4)


def test_queries_are_parameterised(db: Database, users: tuple[User, User]) -> None:
    hostile = "x'); DROP TABLE spectra; --"
    with db.session() as session:
        rows, total = store.search_spectra(session, text=hostile)
        assert rows == [] and total == 0
        rows, total = store.search_spectra(session, text="%")
        assert total == 0  # a literal percent sign, not a wildcard
        assert authenticate(session, "alice' --", "anything") is None
        session.execute(text("SELECT 1"))
    assert "spectra" in db.tables()


def test_zoom_view_blurs_as_the_preprocessing_does(data_dir: Path) -> None:
    from spectraldl.prep.preprocess import air_to_vacuum, blur, sigma_px_for_resolution

    config = PreprocessConfig()
    cases = {
        "ondrejov-ssap/uk220017.fits": 7.0,
        "lamost-dr1/spec-55862-B6212_sp06-003.fits": 0.0,
        "lamost-mrs/med-58408-TD230151N343645T01_sp01-015.fits.gz": None,
    }
    for name, expected in cases.items():
        spectrum = read_spectrum(data_dir / name)
        payload = store.spectrum_payload(spectrum_row(spectrum, config=config), config=config)
        zoom = payload["zoom"]
        if expected is None:  # blurred from its resolving power down to LAMOST's
            wave = (
                spectrum.wave_aa if spectrum.medium == "vacuum" else air_to_vacuum(spectrum.wave_aa)
            )
            expected = sigma_px_for_resolution(
                wave,
                from_resolving_power=spectrum.meta.resolving_power,
                to_resolving_power=config.target_resolving_power,
            )
            assert expected > 1.0
        assert zoom["sigma_px"] == pytest.approx(expected)
        window = np.abs(spectrum.wave_aa - payload["halpha_aa"]) <= store.ZOOM_HALF_WIDTH_AA
        if expected:
            flux = np.nan_to_num(spectrum.flux, nan=np.nanmedian(spectrum.flux))
            reference = blur(flux, sigma_px=expected)[window]
            scale = np.abs(reference).max()
            assert np.allclose(zoom["blurred"], reference, rtol=0, atol=1e-4 * scale)
        else:
            assert zoom["blurred"] is None
        assert len(zoom["wave"]) == int(window.sum())
