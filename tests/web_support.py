"""Real components for the web tool's tests: a private PostgreSQL server, the app as a
server process, a headless Chromium, and spectra and predictions to fill the database.

Nothing here is mocked: PostgreSQL is started with initdb + pg_ctl from the
Debian package (as the ``postgres`` user when the tests run as root), the
server is ``spectraldl serve`` in a subprocess on loopback, the browser is the
system's /usr/bin/chromium driven by /usr/bin/chromedriver.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import select

from spectraldl.core.quality import flag_names
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import write_predictions
from spectraldl.web.auth import add_user, end_user_sessions
from spectraldl.web.db import open_database
from spectraldl.web.models import User

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- PostgreSQL -----------------------------------------------------------------------------


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in a temporary folder."""

    bindir: Path
    folder: Path
    port: int
    user_prefix: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database` (even with connections left open)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(
            [
                *self.user_prefix,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


_postgres: PostgresServer | None = None
_postgres_failure: str | None = None


def _postgres_bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def postgres_server() -> PostgresServer:
    """Start (once per test process) a private PostgreSQL server; stopped at exit.

    Raises `RuntimeError` with the reason when no server can be started.
    """
    global _postgres, _postgres_failure
    if _postgres is not None:
        return _postgres
    if _postgres_failure is not None:
        raise RuntimeError(_postgres_failure)
    try:
        _postgres = _start_postgres()
    except RuntimeError as exc:
        _postgres_failure = str(exc)
        raise
    atexit.register(_postgres.stop)
    return _postgres


def _start_postgres() -> PostgresServer:
    bindir = _postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL is not installed (no initdb; `apt-get install postgresql`, see "
            "`make system-deps`)"
        )
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="spectraldl-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError("running as root without a 'postgres' user and runuser")
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    data = folder / "data"

    def run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *args], capture_output=True, text=True, check=False, timeout=timeout
        )

    init = run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        120,
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    start = run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ],
        90,
    )
    if start.returncode != 0:
        log = (
            (folder / "server.log").read_text(errors="replace")[-800:]
            if (folder / "server.log").exists()
            else ""
        )
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log}")
    return PostgresServer(bindir=bindir, folder=folder, port=port, user_prefix=prefix)


@contextlib.contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database of ``backend`` (``sqlite`` or ``postgresql``) for one test.

    Skips the test, with the reason, when no PostgreSQL server can be started here.
    """
    import pytest

    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'web.db'}"
        return
    try:
        server = postgres_server()
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


# --- data -----------------------------------------------------------------------------------


def with_alice(url: str) -> str:
    """``url``: its database made, with the user alice (password alice-password)."""
    db = open_database(url)
    with db.session() as session:
        add_user(session, "alice", "alice-password")
        session.commit()
    db.dispose()
    return url


def ondrejov_files() -> list[Path]:
    """The bundled real Ondřejov spectra (SSAP and raw forms), in a fixed order."""
    return sorted(f.path for f in bundled_files(archive="ondrejov"))


def write_predictions_file(
    path: Path,
    ids: list[str],
    *,
    classes: tuple[str, ...] = ("emission", "absorption", "double-peak"),
    seed: int = 0,
    objects: list[str] | None = None,
    sources: list[str] | None = None,
) -> pd.DataFrame:
    """A predictions table in the documented format (docs/CONVENTIONS.md), written with
    `spectraldl.io.predictions.write_predictions`; probabilities from a fixed random draw.
    """
    rng = np.random.default_rng(seed)
    n = len(ids)
    logits = rng.normal(size=(n, len(classes))) * 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    novelty = rng.gamma(2.0, 1.0, size=n).astype(np.float32)
    quality = np.where(novelty > 3.0, 32, 0).astype(np.int32)
    frame = pd.DataFrame(
        {
            "id": np.array(ids, dtype=object),
            "source": np.array(sources or [""] * n, dtype=object),
            "archive": np.array(["ondrejov"] * n, dtype=object),
            "object": np.array(objects or [f"star {i}" for i in range(n)], dtype=object),
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-10, 60, n),
            "mjd": rng.uniform(55000, 58000, n),
            "snr": rng.uniform(5, 200, n).astype(np.float32),
            "predicted_class": np.array([classes[i] for i in proba.argmax(axis=1)], dtype=object),
        }
    )
    for i, name in enumerate(classes):
        frame["p_" + name.replace("-", "_")] = proba[:, i].astype(np.float32)
    frame["quality"] = quality
    frame["quality_flags"] = np.array([flag_names(int(q)) for q in quality], dtype=object)
    frame["novelty"] = novelty
    frame["model_id"] = np.array(["0123456789ab"] * n, dtype=object)
    write_predictions(path, frame, classes=classes, metadata={"model_id": "0123456789ab"})
    return frame


# --- the server as a process ----------------------------------------------------------------


class ServerProcess:
    """``spectraldl serve`` in a subprocess on 127.0.0.1 (a free port)."""

    def __init__(self, db_url: str, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.db_url = db_url
        self.log_path = log_path
        self.extra_args = extra_args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spectraldl.cli",
                "serve",
                "--db",
                self.db_url,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def login(client: httpx.Client, name: str, password: str) -> str:
    """Log ``client`` in through the JSON API; returns the CSRF token."""
    response = client.post("/api/login", json={"username": name, "password": password})
    response.raise_for_status()
    return response.json()["csrf_token"]


# --- the browser ----------------------------------------------------------------------------


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and its driver exist."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


def chromium(
    profile: Path, *, width: int = 1400, height: int = 1000, network_log: bool = False
) -> Any:
    """A headless Chromium (the system's, never a downloaded one) driven by Selenium.

    Its console is logged (``get_log("browser")``); with ``network_log`` also the
    requests it makes (``get_log("performance")``).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    logs = {"browser": "ALL", **({"performance": "ALL"} if network_log else {})}
    options.set_capability("goog:loggingPrefs", logs)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def current_id(driver: Any) -> int | None:
    """The id of the item the labelling or vetting page shows (None while loading)."""
    script = "const s = window.sdlStepper; return s && s.current ? s.current.id : null;"
    return driver.execute_script(script)


class ThreadServer:
    """The app served by uvicorn in a thread of this process, on 127.0.0.1 (real HTTP).

    Proxy headers are ignored unless ``proxy_ips`` names the proxies to trust (as
    ``spectraldl serve --forwarded-allow-ips``).
    """

    def __init__(self, app: object, *, proxy_ips: str | None = None) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            proxy_headers=proxy_ips is not None,
            forwarded_allow_ips=proxy_ips or "",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def end_sessions_of(url: str, name: str) -> None:
    """End every login of a user on the server (as a password change or expiry does)."""
    db = open_database(url)
    try:
        with db.session() as session:
            end_user_sessions(session, session.scalar(select(User).where(User.name == name)))
            session.commit()
    finally:
        db.dispose()


def wait(driver, condition, timeout: float = 30.0):
    """Wait (30 s at most) until ``condition(driver)`` is true; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def session_ended_text(driver) -> str:
    """Once the page has gone to the login page, what it says about the ended session."""
    from selenium.webdriver.common.by import By

    wait(driver, lambda d: "/login" in d.current_url)
    return wait(driver, lambda d: d.find_element(By.ID, "session-ended").text)
