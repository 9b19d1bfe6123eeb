"""The web tool as people run it: `spectraldl serve` in its own process, real HTTP on
loopback, SQLite and PostgreSQL. Two people labelling the same queue at the same
time lose no label; a restarted server has every user, session and label.
"""

from __future__ import annotations

import socket
import threading
import time
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
def test_a_burst_of_requests_is_served_not_stalled(filled_db: str, tmp_path: Path) -> None:
    """Many more requests at once than the database has connections (and the server worker
    threads) are all answered, without waiting for the pool's 30 s timeout: each request
    holds a connection until a worker thread is free to give it back, so unqueued they
    would stall every thread (it took 40)."""
    burst = 150
    with ServerProcess(filled_db, tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.url) as client:
            login(client, "alice", "alice-password")
            cookies = dict(client.cookies)
            spectrum_id = client.get("/api/queue", params={"limit": 1}).json()["ids"][0]
        start = threading.Barrier(burst)

        def get(path: str) -> int:
            start.wait()
            with httpx.Client(base_url=server.url, cookies=cookies, timeout=20) as one:
                return one.get(path).status_code

        paths = [f"/api/spectra/{spectrum_id}", "/api/health"] * (burst // 2)
        with ThreadPoolExecutor(max_workers=burst) as pool:
            statuses = list(pool.map(get, paths))
    assert statuses == [200] * burst
    assert "QueuePool limit" not in (tmp_path / "server.log").read_text()


def test_nul_characters_are_refused_with_400_on_either_database(
    filled_db: str, tmp_path: Path
) -> None:
    """PostgreSQL cannot store NUL in text: in a query, a JSON body or a form (even an
    anonymous login's) it is refused plainly, never an error page; a note that writes the
    six characters backslash-u-0-0-0-0 is no NUL and is kept."""
    log = tmp_path / "server.log"
    with ServerProcess(filled_db, log) as server, httpx.Client(base_url=server.url) as client:
        anonymous = client.post("/api/login", json={"username": "al\x00ice", "password": "x"})
        csrf = login(client, "alice", "alice-password")
        headers = {"X-CSRF-Token": csrf}
        refused = [
            anonymous,
            client.get("/api/spectra", params={"q": "\x00"}),
            client.get("/spectra", params={"q": "a\x00"}),
            client.get("/api/notes", params={"ident": "\x00"}),
            client.post("/api/notes", json={"ident": "a", "text": "b\x00"}, headers=headers),
            client.post("/login", data={"username": "\x00", "password": "x", "csrf_token": "t"}),
        ]
        first = client.get("/api/queue", params={"limit": 1}).json()["ids"][0]
        ident = client.get(f"/api/spectra/{first}").json()["ident"]
        kept = client.post(
            "/api/notes", json={"ident": ident, "text": "\\u0000 as typed"}, headers=headers
        )
        assert kept.status_code == 200 and kept.json()["note"]["text"] == "\\u0000 as typed"
    assert [r.status_code for r in refused] == [400] * len(refused)
    assert all("NUL" in r.text for r in refused)
    assert "Traceback" not in log.read_text()


def test_a_client_that_never_finishes_its_request_head_is_disconnected(tmp_path: Path) -> None:
    """Connections that send nothing, or their headers a byte at a time, are closed after
    --head-timeout instead of being held (enough of them used up the server's file
    handles); a client that sends its request in time is served, twice on one connection."""
    with (
        database_url("sqlite", tmp_path) as url,
        ServerProcess(url, tmp_path / "server.log", extra_args=("--head-timeout", "1.5")) as server,
    ):
        address = ("127.0.0.1", server.port)
        with (
            socket.create_connection(address) as silent,
            socket.create_connection(address) as trickle,
        ):
            started = time.monotonic()
            closed_after: float | None = None
            for byte in b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100:
                try:
                    trickle.sendall(bytes([byte]))
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                time.sleep(0.1)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                served = [client.get("/api/health").status_code for _ in range(2)]
            silent.settimeout(10)
            assert silent.recv(1) == b""
            silent_closed_after = time.monotonic() - started
    assert served == [200, 200]
    assert closed_after is not None and closed_after < 6
    assert silent_closed_after < 6


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
