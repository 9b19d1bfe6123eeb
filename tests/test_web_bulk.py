"""Bulk vetting through `POST /api/vet/bulk` against `spectraldl serve` on SQLite and
PostgreSQL: 500+ verdicts in one call and one transaction, bounded and known ids only,
CSRF and login as every write, and bulk calls racing single verdicts from other threads
without a verdict lost."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select
from web_support import ServerProcess, database_url, login, write_predictions_file

from spectraldl.web.auth import add_user
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_predictions
from spectraldl.web.models import Prediction, VetDecision

N_ROWS = 1500


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A server with alice and bob and a catalogue of `N_ROWS` rows (no spectra needed)."""
    folder = tmp_path_factory.mktemp(f"bulk-{request.param}")
    with database_url(request.param, folder) as url:
        db = open_database(url)
        with db.session() as session:
            add_user(session, "alice", "alice-password")
            add_user(session, "bob", "bob-password")
            session.commit()
        idents = [f"bulk-{i:05d}" for i in range(N_ROWS)]
        write_predictions_file(folder / "pred.parquet", idents, seed=5)
        catalogue = import_predictions(db, folder / "pred.parquet", fetch_sources=False)
        with db.session() as session:
            ids = list(session.scalars(select(Prediction.id).order_by(Prediction.id)))
        with ServerProcess(url, folder / "server.log") as server:
            yield {"db": db, "server": server, "ids": ids, "catalogue": catalogue}
        db.dispose()


@contextlib.contextmanager
def client_of(site: dict, name: str) -> Iterator[httpx.Client]:
    """A logged-in client of ``name`` with the CSRF header set."""
    with httpx.Client(base_url=site["server"].url, timeout=120) as client:
        client.headers["X-CSRF-Token"] = login(client, name, f"{name}-password")
        yield client


def count_verdicts(site: dict, **where: object) -> int:
    query = select(func.count(VetDecision.id))
    for column, value in where.items():
        query = query.where(getattr(VetDecision, column) == value)
    with site["db"].session() as session:
        return int(session.scalar(query) or 0)


def test_bulk_stores_hundreds_of_verdicts_in_one_call_and_undoes_them(site: dict) -> None:
    with client_of(site, "alice") as alice:
        before = count_verdicts(site)
        ids = site["ids"][:600]
        answer = alice.post("/api/vet/bulk", json={"prediction_ids": ids, "verdict": "Reject"})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["stored"] == 600 and body["verdict"] == "reject"
        assert len(set(body["decision_ids"])) == 600
        assert count_verdicts(site) == before + 600
        assert alice.get(f"/api/predictions/{ids[599]}").json()["my_verdict"] == "reject"
        # repeated ids count once
        again = alice.post(
            "/api/vet/bulk", json={"prediction_ids": [ids[0], ids[0], ids[1]], "verdict": "noise"}
        )
        assert again.json()["stored"] == 2
        undo = alice.post("/api/vet/bulk/undo", json={"decision_ids": again.json()["decision_ids"]})
        assert undo.status_code == 201 and undo.json()["undone"] == 2
        assert alice.get(f"/api/predictions/{ids[0]}").json()["my_verdict"] == "reject"
        # an undo that is no longer the latest is refused whole
        stale = alice.post("/api/vet/bulk/undo", json={"decision_ids": body["decision_ids"][:3]})
        assert stale.status_code == 409
        assert alice.get(f"/api/predictions/{ids[2]}").json()["my_verdict"] == "reject"


def test_bulk_refuses_bad_input_and_stores_nothing(site: dict) -> None:
    ids = site["ids"]
    with client_of(site, "alice") as alice:
        before = count_verdicts(site)
        for bad in ([0], [2**31], [ids[0], -3], [], ["x"], [ids[0]] * 0):
            answer = alice.post("/api/vet/bulk", json={"prediction_ids": bad, "verdict": "confirm"})
            assert answer.status_code == 422, (bad, answer.text)
        assert (
            alice.post(
                "/api/vet/bulk", json={"prediction_ids": ids[:2], "verdict": "maybe"}
            ).status_code
            == 422
        )
        too_many = list(range(1, 5002))
        assert (
            alice.post(
                "/api/vet/bulk", json={"prediction_ids": too_many, "verdict": "confirm"}
            ).status_code
            == 422
        )
        unknown = alice.post(
            "/api/vet/bulk",
            json={"prediction_ids": [*ids[:10], 2**31 - 1], "verdict": "confirm"},
        )
        assert unknown.status_code == 404 and str(2**31 - 1) in unknown.json()["detail"]
        assert count_verdicts(site) == before  # all or nothing
        token = alice.headers.pop("X-CSRF-Token")
        no_csrf = alice.post("/api/vet/bulk", json={"prediction_ids": ids[:2], "verdict": "noise"})
        assert no_csrf.status_code == 403
        alice.headers["X-CSRF-Token"] = token
    with httpx.Client(base_url=site["server"].url) as anonymous:
        answer = anonymous.post(
            "/api/vet/bulk", json={"prediction_ids": ids[:2], "verdict": "noise"}
        )
        assert answer.status_code == 401
    assert count_verdicts(site) == before


def test_bulk_calls_racing_single_verdicts_lose_nothing(site: dict) -> None:
    """alice confirms pages of 500 from two threads while bob and alice's other tab send
    single verdicts on the same candidates: every accepted verdict is a row, and each
    user's current verdict is the one they sent last."""
    ids = site["ids"][600:1500]
    pages = [ids[:500], ids[400:900]]  # overlapping pages
    singles = ids[380:520]
    with client_of(site, "alice") as alice, client_of(site, "bob") as bob:
        tab = httpx.Client(base_url=site["server"].url, timeout=120, cookies=alice.cookies)
        tab.headers["X-CSRF-Token"] = alice.headers["X-CSRF-Token"]
        before = count_verdicts(site)
        start = threading.Barrier(4)

        def bulk(page: list[int]) -> list[httpx.Response]:
            start.wait()
            return [
                alice.post("/api/vet/bulk", json={"prediction_ids": page, "verdict": "confirm"})
            ]

        def single(client: httpx.Client, verdict: str) -> list[httpx.Response]:
            start.wait()
            return [
                client.post("/api/vet", json={"prediction_id": i, "verdict": verdict})
                for i in singles
            ]

        with ThreadPoolExecutor(4) as pool:
            jobs = [
                pool.submit(bulk, pages[0]),
                pool.submit(bulk, pages[1]),
                pool.submit(single, bob, "reject"),
                pool.submit(single, tab, "noise"),
            ]
            answers = [a for job in jobs for a in job.result()]
        tab.close()
        assert all(a.status_code == 201 for a in answers), [
            a.text for a in answers if a.status_code != 201
        ]
        assert count_verdicts(site) == before + 1000 + 2 * len(singles)
        decisions = [a.json() for a in answers]
        stored_ids = [i for d in decisions for i in d.get("decision_ids", [d.get("decision_id")])]
        assert len(set(stored_ids)) == len(stored_ids) == 1000 + 2 * len(singles)
        # bob's current verdict is his reject everywhere he sent one
        for pid in singles[::7]:
            verdicts = alice.get(f"/api/predictions/{pid}").json()["verdicts"]
            assert verdicts["bob"] == "reject"
        # alice's pages alone (no single verdict raced them) are confirmed
        for pid in [*ids[:380:37], *ids[520:900:37]]:
            assert alice.get(f"/api/predictions/{pid}").json()["my_verdict"] == "confirm"
