"""Request-body limits of `spectraldl serve`, measured on the server process: an anonymous
200 MB body is refused with 413 at once, without the server reading or keeping it; bodies
over the caps of logged-in users are refused too; anonymous writes are refused before
their bodies are read."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_support import ServerProcess, login, with_alice

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with alice, a 1 MiB JSON cap and a 3 MiB upload cap."""
    folder = tmp_path_factory.mktemp("limits")
    url = with_alice(f"sqlite:///{folder / 'web.db'}")
    args = ("--max-body-mb", "1", "--max-upload-mb", "3")
    with ServerProcess(url, folder / "server.log", extra_args=args) as running:
        yield running


def send_raw(
    port: int, head: bytes, body_mb: int, *, chunked: bool = False
) -> tuple[bytes, int, float]:
    """Send request headers, then up to ``body_mb`` MiB of body (in chunked encoding with
    ``chunked``) while the server lets us; returns (the answer's first bytes, MiB the server
    took, seconds to the answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        sock.settimeout(0.05)
        answer = b""
        chunk = b"[" + b"1," * (MB // 2 - 1) + b"1]"
        if chunked:
            chunk = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        while sent < body_mb and not answer:
            try:
                sock.sendall(chunk)
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                break
            except TimeoutError:
                pass
            try:
                answer = sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                pass
            except ConnectionResetError:
                break
        sock.settimeout(30)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            answer = answer or sock.recv(4096)
    return answer, sent, time.monotonic() - started


def test_an_anonymous_200_mb_body_is_refused_at_once_without_memory(
    server: ServerProcess,
) -> None:
    assert server.process is not None
    before = rss_bytes(server.process.pid)
    head = (
        b"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(200 * MB).encode() + b"\r\n\r\n"
    )
    answer, sent, seconds = send_raw(server.port, head, 200)
    after = rss_bytes(server.process.pid)
    print(
        f"200 MB anonymous body: {answer.split(b' ')[1].decode()} after {seconds:.2f} s, "
        f"{sent} MiB taken, server RSS {before / MB:.0f} -> {after / MB:.0f} MiB"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 50  # the socket's buffers, not the body
    assert after - before < 20 * MB
    assert httpx.get(server.url + "/api/health").status_code == 200


def test_a_streamed_anonymous_body_is_refused_before_it_is_read(server: ServerProcess) -> None:
    assert server.process is not None
    before = rss_bytes(server.process.pid)
    head = (
        b"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer, sent, _ = send_raw(server.port, head, 200, chunked=True)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 50 and rss_bytes(server.process.pid) - before < 20 * MB


@pytest.mark.slow
def test_logged_in_bodies_over_their_caps_get_413(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        token = login(client, "alice", "alice-password")
        headers = {"X-CSRF-Token": token, "Content-Type": "application/json"}
        big = b'{"spectrum_id": 1, "label": "emission", "pad": "' + b"x" * (2 * MB) + b'"}'
        too_big = client.post("/api/labels", content=big, headers=headers)
        assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]

        def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"pad": "'
            for _ in range(3):
                yield b"x" * MB
            yield b'"}'

        assert client.post("/api/labels", content=streamed(), headers=headers).status_code == 413
        upload = client.post(
            "/api/catalogues",
            files={"file": ("big.csv", b"id\n" + b"1\n" * (2 * MB))},
            headers={"X-CSRF-Token": token},
        )
        assert upload.status_code == 413
        rows = b"".join(b"s%d,0.5,%s\n" % (i, b"n" * 120) for i in range(10000))
        small = client.post(
            "/api/catalogues",
            files={"file": ("small.csv", b"id,p_emission,note\n" + rows)},
            headers={"X-CSRF-Token": token},
            params={"wait": 60},
        )
        assert small.status_code == 201, small.text  # over the JSON cap, under the upload cap
        assert client.get("/api/health").status_code == 200
