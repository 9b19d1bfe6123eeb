"""Decisions and undos sent at the same time, with real threads against `spectraldl serve`
on SQLite and PostgreSQL: an undo never erases a decision made after the one it undoes,
and a decision is undone once only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select
from web_support import ServerProcess, database_url, login, ondrejov_files, write_predictions_file

from spectraldl.web.auth import add_user
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_fits, import_predictions
from spectraldl.web.models import LabelDecision, SpectrumRow, VetDecision

TRIALS = 30


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A server on each backend with alice, the bundled Ondřejov spectra and a catalogue."""
    folder = tmp_path_factory.mktemp(f"races-{request.param}")
    with database_url(request.param, folder) as url:
        db = open_database(url)
        with db.session() as session:
            add_user(session, "alice", "alice-password")
            session.commit()
        import_fits(db, ondrejov_files())
        with db.session() as session:
            idents = list(session.scalars(select(SpectrumRow.ident).order_by(SpectrumRow.id)))
        write_predictions_file(folder / "pred.parquet", idents, seed=3)
        catalogue = import_predictions(db, folder / "pred.parquet").catalogues[0][0]
        with ServerProcess(url, folder / "server.log") as server:
            yield {"db": db, "server": server, "catalogue": catalogue}
        db.dispose()


@pytest.fixture
def clients(site: dict) -> Iterator[list[httpx.Client]]:
    """Two clients of alice's one session (two browser tabs), each with its own connection."""
    first = httpx.Client(base_url=site["server"].url, timeout=60)
    token = login(first, "alice", "alice-password")
    second = httpx.Client(base_url=site["server"].url, timeout=60, cookies=first.cookies)
    for client in (first, second):
        client.headers["X-CSRF-Token"] = token
    yield [first, second]
    first.close()
    second.close()


def together(*posts: tuple[httpx.Client, str, dict]) -> list[httpx.Response]:
    """Send the POSTs (client, path, JSON body) from threads released at the same moment;
    their responses in order."""
    start = threading.Barrier(len(posts))

    def run(post: tuple[httpx.Client, str, dict]) -> httpx.Response:
        client, path, body = post
        start.wait()
        return client.post(path, json=body)

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(run, posts))


def test_an_undo_sent_with_a_new_label_never_erases_it(site: dict, clients: list) -> None:
    first, second = clients
    spectra = [s["id"] for s in first.get("/api/spectra", params={"limit": 16}).json()["spectra"]]
    outcomes = []
    for trial in range(TRIALS):
        spectrum = spectra[trial % len(spectra)]
        made = first.post("/api/labels", json={"spectrum_id": spectrum, "label": "emission"})
        undone = made.json()["decision_id"]
        label, undo = together(
            (first, "/api/labels", {"spectrum_id": spectrum, "label": "noise"}),
            (second, "/api/labels/undo", {"decision_id": undone}),
        )
        assert label.status_code == 201, label.text
        assert undo.status_code in (201, 409), undo.text
        outcomes.append(undo.status_code)
        if undo.status_code == 201:  # accepted: then it came before the new label
            assert undo.json()["decision_id"] < label.json()["decision_id"]
        mine = first.get(f"/api/spectra/{spectrum}").json()["labels"]["mine"]
        assert mine == "noise", f"trial {trial}: the undo erased the later label"
    print(f"undo accepted before the label in {outcomes.count(201)} of {TRIALS} trials")


def test_concurrent_undos_of_one_decision_make_one_undo(site: dict, clients: list) -> None:
    first, second = clients
    spectrum = first.get("/api/spectra", params={"limit": 1}).json()["spectra"][0]["id"]
    for _ in range(3):
        made = first.post("/api/labels", json={"spectrum_id": spectrum, "label": "absorption"})
        undone = made.json()["decision_id"]
        undo = {"decision_id": undone}
        answers = together(*[(c, "/api/labels/undo", undo) for c in [first, second] * 5])
        assert sorted(a.status_code for a in answers) == [201] + [409] * 9
        with site["db"].session() as session:
            n = session.scalar(
                select(func.count(LabelDecision.id)).where(LabelDecision.undo_of == undone)
            )
        assert n == 1


def test_verdicts_and_their_undos_race_the_same_way(site: dict, clients: list) -> None:
    first, second = clients
    catalogue = site["catalogue"]
    ids = first.get(f"/api/catalogues/{catalogue}/queue", params={"classes": ""}).json()["ids"]
    for trial in range(TRIALS // 2):
        prediction = ids[trial % len(ids)]
        made = first.post("/api/vet", json={"prediction_id": prediction, "verdict": "confirm"})
        undone = made.json()["decision_id"]
        verdict, undo = together(
            (first, "/api/vet", {"prediction_id": prediction, "verdict": "reject"}),
            (second, "/api/vet/undo", {"decision_id": undone}),
        )
        assert verdict.status_code == 201 and undo.status_code in (201, 409)
        assert first.get(f"/api/predictions/{prediction}").json()["my_verdict"] == "reject"
    made = first.post("/api/vet", json={"prediction_id": ids[0], "verdict": "noise"})
    undone = made.json()["decision_id"]
    undo = {"decision_id": undone}
    answers = together(*[(c, "/api/vet/undo", undo) for c in [first, second] * 5])
    assert sorted(a.status_code for a in answers) == [201] + [409] * 9
    with site["db"].session() as session:
        n = session.scalar(select(func.count(VetDecision.id)).where(VetDecision.undo_of == undone))
    assert n == 1
