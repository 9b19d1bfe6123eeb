"""The web tool as people run it: `spectraldl serve` in its own process, real HTTP on
loopback, SQLite and PostgreSQL. Two people labelling the same queue at the same
time lose no label; a restarted server has every user, session and label.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from web_support import ServerProcess, database_url, login, ondrejov_files

from spectraldl.web import store
from spectraldl.web.auth import add_user
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_fits
from spectraldl.web.models import LabelDecision, User

LABELS = ("emission", "absorption", "double-peak", "unknown", "noise")


@pytest.fixture(params=["sqlite", "postgresql"])
def filled_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with two users (alice, bob) and the 16 bundled Ondřejov spectra."""
    with database_url(request.param, tmp_path) as url:
        db = open_database(url)
        with db.session() as session:
            add_user(session, "alice", "alice-password", admin=True)
            add_user(session, "bob", "bob-password")
            session.commit()
        import_fits(db, ondrejov_files())
        db.dispose()
        yield url


@pytest.mark.slow
def test_two_users_label_the_same_queue_at_once_and_lose_nothing(
    filled_db: str, tmp_path: Path
) -> None:
    rounds = 3
    with ServerProcess(filled_db, tmp_path / "server.log") as server:
        clients = {name: httpx.Client(base_url=server.url, timeout=60) for name in ("alice", "bob")}
        tokens = {name: login(client, name, f"{name}-password") for name, client in clients.items()}
        queues = {
            name: client.get("/api/queue", params={"limit": 100}).json()["ids"]
            for name, client in clients.items()
        }
        assert queues["alice"] == queues["bob"] and len(queues["alice"]) == 16
        expected: dict[tuple[str, int], str] = {}
        start = threading.Barrier(8)

        def label_slice(name: str, ids: list[int]) -> int:
            """One labeller's worker: every spectrum of its slice, relabelled ``rounds`` times."""
            start.wait()
            client = clients[name]
            sent = 0
            for r in range(rounds):
                for spectrum_id in ids:
                    label = LABELS[(spectrum_id + r + (name == "bob")) % len(LABELS)]
                    response = client.post(
                        "/api/labels",
                        json={"spectrum_id": spectrum_id, "label": label},
                        headers={"X-CSRF-Token": tokens[name]},
                    )
                    assert response.status_code == 201, response.text
                    expected[(name, spectrum_id)] = label
                    sent += 1
            return sent

        ids = queues["alice"]
        jobs = [(name, ids[i::4]) for name in ("alice", "bob") for i in range(4)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            sent = sum(pool.map(lambda job: label_slice(*job), jobs))
        assert sent == 2 * rounds * 16
        for client in clients.values():
            client.close()
    db = open_database(filled_db)
    with db.session() as session:
        assert session.scalar(select(func.count(LabelDecision.id))) == sent
        current = {(c.user, c.spectrum_id): c.label for c in store.current_labels(session)}
        assert current == expected
        per_user = dict(
            session.execute(
                select(User.name, func.count(LabelDecision.id))
                .join(User, User.id == LabelDecision.user_id)
                .group_by(User.name)
            ).all()
        )
        assert per_user == {"alice": rounds * 16, "bob": rounds * 16}
    db.dispose()


@pytest.mark.slow
def test_a_restarted_server_keeps_users_sessions_and_labels(filled_db: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = ServerProcess(filled_db, log).start()
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        token = login(client, "alice", "alice-password")
        headers = {"X-CSRF-Token": token}
        for spectrum_id, label in [(1, "emission"), (2, "absorption"), (3, "double-peak")]:
            response = client.post(
                "/api/labels", json={"spectrum_id": spectrum_id, "label": label}, headers=headers
            )
            assert response.status_code == 201
        before = client.get("/api/labels.csv").text
        port = server.port
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        client.get("/api/health")
    restarted = ServerProcess(filled_db, log)
    restarted.port = port  # the same address, so the browser's cookie still applies
    with restarted:
        assert client.get("/api/me").json()["user"] == "alice"  # the session survived
        assert client.get("/api/labels.csv").text == before
        assert client.get("/api/progress").json()["labelled_by_me"] == 3
        response = client.post(
            "/api/labels", json={"spectrum_id": 4, "label": "noise"}, headers=headers
        )
        assert response.status_code == 201
        with httpx.Client(base_url=restarted.url, timeout=60) as bob:
            login(bob, "bob", "bob-password")
            assert bob.get("/api/queue").json()["remaining"] == 16
        assert "noise" in client.get("/api/labels.csv").text
    client.close()
