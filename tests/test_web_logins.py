"""Login throttling over real HTTP: proxy headers are trusted only from configured proxies
(`spectraldl serve --forwarded-allow-ips`), guessing one name's password locks that
(name, address) pair only, and the right password from an address that has not failed
always gets in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_support import ServerProcess, ThreadServer

from spectraldl.web.app import create_app
from spectraldl.web.auth import LoginThrottle, add_user
from spectraldl.web.db import Database, open_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'logins.db'}")
    with database.session() as session:
        add_user(session, "alice", "alice-password")
        add_user(session, "bob", "bob-password")
        session.commit()
    yield database
    database.dispose()


def attempt(client: httpx.Client, name: str, password: str, address: str) -> httpx.Response:
    return client.post(
        "/api/login",
        json={"username": name, "password": password},
        headers={"X-Forwarded-For": address},
    )


@pytest.mark.slow
@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_addresses_count_only_from_configured_proxies(
    db: Database, tmp_path: Path, trusted: bool
) -> None:
    args = ("--forwarded-allow-ips", "127.0.0.1") if trusted else ()
    server = ServerProcess(db.url, tmp_path / "server.log", extra_args=args)
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        # Ten guesses, each claiming another address: all come from 127.0.0.1.
        for i in range(10):
            assert attempt(client, "bob", "guess", f"10.9.0.{i}").status_code == 401
        eleventh = attempt(client, "bob", "bob-password", "10.9.1.1")
    # Untrusted, the header is ignored: the pair (bob, 127.0.0.1) is refused. Trusted, the
    # proxy says this is a new address, which gets in.
    assert eleventh.status_code == (200 if trusted else 429), eleventh.text


@pytest.mark.slow
def test_nobody_can_lock_an_account_by_guessing(db: Database) -> None:
    throttle = LoginThrottle(slow_s=0.3)
    app = create_app(db, throttle=throttle)
    server = ThreadServer(app, proxy_ips="127.0.0.1")
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        for attacker in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            for _ in range(10):
                assert attempt(client, "bob", "guess", attacker).status_code == 401
            # That pair is refused now, even with the right password...
            refused = attempt(client, "bob", "bob-password", attacker)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 60
            # ...while bob, from an address that has not failed, is slowed, never refused.
            t0 = time.monotonic()
            assert attempt(client, "bob", "bob-password", "10.1.0.1").status_code == 200
            assert time.monotonic() - t0 >= 0.3
        # Other names from an attacker's address are not refused.
        assert attempt(client, "alice", "alice-password", "10.0.0.1").status_code == 200
        # One address spraying many names is refused as a whole.
        for i in range(throttle.address_limit):
            assert attempt(client, f"user{i}", "guess", "10.0.0.9").status_code in (401, 200)
        assert attempt(client, "alice", "alice-password", "10.0.0.9").status_code == 429
        assert attempt(client, "alice", "alice-password", "10.0.0.8").status_code == 200


def test_a_refused_address_is_told_apart_from_a_refused_pair(db: Database) -> None:
    """After failures with many names from one address, bob's right password from it gets
    429 saying the address is refused, not "this user from this address"."""
    throttle = LoginThrottle(pair_limit=3, address_limit=5)
    server = ThreadServer(create_app(db, throttle=throttle), proxy_ips="127.0.0.1")
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(5):
            assert attempt(client, f"user{i}", "guess", "10.0.0.9").status_code == 401
        refused = attempt(client, "bob", "bob-password", "10.0.0.9")
        for _ in range(3):
            assert attempt(client, "alice", "guess", "10.0.0.7").status_code == 401
        pair = attempt(client, "alice", "alice-password", "10.0.0.7")
    assert refused.status_code == 429
    assert "from this address (whatever the user name)" in refused.json()["detail"]
    assert pair.status_code == 429
    assert "for this user from this address" in pair.json()["detail"]
