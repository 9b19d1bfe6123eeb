"""Request bodies that never finish, and logins in a crowd, against `spectraldl serve`: slow
anonymous login bodies hold none of the slots the other requests need and are answered 408
when they do not arrive in time, a client gone halfway is one line in the log, SIGTERM
stops the server with bodies unfinished, and many logins at once check their passwords a
few at a time (each Argon2 check takes 64 MiB)."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from test_web_limits import rss_bytes
from web_support import ServerProcess, login, with_alice

HALF_LOGIN = (
    b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A SQLite database with alice."""
    yield with_alice(f"sqlite:///{tmp_path / 'web.db'}")


def half_sent(port: int, n: int, head: bytes = HALF_LOGIN) -> list[socket.socket]:
    """``n`` connections that sent a request's head and one byte of its body."""
    sockets = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(head)
        sockets.append(sock)
    return sockets


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.slow
def test_unfinished_login_bodies_hold_no_slot_and_get_408(url: str, tmp_path: Path) -> None:
    """70 anonymous logins that never finish their bodies (more than the server has slots):
    everyone else is served meanwhile; each gets 408 after --body-timeout and is closed, as
    is a logged-in user's unfinished write; a client that gives up is one line in the log."""
    log = tmp_path / "server.log"
    args = ("--body-timeout", "20", "--log-level", "info")
    with ServerProcess(url, log, extra_args=args) as server:
        stuck = half_sent(server.port, 70)
        with httpx.Client(base_url=server.url, timeout=15) as client:
            assert client.get("/api/health").status_code == 200
            csrf = login(client, "alice", "alice-password")
            cookie = f"spectraldl_session={client.cookies['spectraldl_session']}"
        write = (
            f"POST /api/labels HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}"
            "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        ).encode()
        stuck += half_sent(server.port, 1, write)
        given_up = half_sent(server.port, 1)[0]
        time.sleep(0.5)
        given_up.close()
        answers = [answer_of(sock) for sock in stuck]
        for sock in stuck:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[0][:200]
    assert all(b"did not arrive in time" in a for a in answers)
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("closed the connection before sending all of /api/login") == 1


def test_sigterm_stops_the_server_with_bodies_unfinished(url: str, tmp_path: Path) -> None:
    """uvicorn waited for every connection to end, and these never did."""
    server = ServerProcess(url, tmp_path / "server.log").start()
    assert server.process is not None
    stuck = half_sent(server.port, 3)
    try:
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server was still running 20 s after SIGTERM")
    finally:
        for sock in stuck:
            sock.close()
        server.stop()


@pytest.mark.slow
def test_many_logins_at_once_check_their_passwords_a_few_at_a_time(
    url: str, tmp_path: Path
) -> None:
    """24 wrong logins at once from one address with other names each: the server's memory
    grows by a few Argon2 checks (64 MiB each), not 24 (it grew by 1.5 GB); those that wait
    too long are told to come back (503 with Retry-After)."""
    with ServerProcess(url, tmp_path / "server.log") as server:
        assert server.process is not None
        pid = server.process.pid
        with httpx.Client(base_url=server.url, timeout=60) as warm:
            assert warm.post("/api/login", json={"username": "x", "password": "y"}).status_code
        before = rss_bytes(pid)
        peak = [before]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(pid))
                time.sleep(0.02)

        def guess(i: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                return client.post("/api/login", json={"username": f"n{i}", "password": "x"})

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=24) as pool:
                answers = list(pool.map(guess, range(24)))
        finally:
            done.set()
            watcher.join()
    assert {a.status_code for a in answers} <= {401, 503}
    assert all("retry-after" in a.headers for a in answers if a.status_code == 503)
    assert peak[0] - before < 400 * 1024 * 1024, f"grew by {(peak[0] - before) >> 20} MiB"
