"""Catalogue uploads to `spectraldl serve`: imported in the background with progress while the
server keeps answering, malformed files refused with the file's name, exports that keep
float32 values short and CSV cells harmless to spreadsheets, and admins deleting catalogues."""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from sqlalchemy import func, select
from web_support import ServerProcess, login, write_predictions_file

from spectraldl.jobs.files import process_alive
from spectraldl.web.auth import add_user
from spectraldl.web.db import open_database
from spectraldl.web.models import Catalogue, Prediction, VetDecision

IMPORT_ROWS = int(os.environ.get("SPECTRALDL_WEB_IMPORT_ROWS", "100000"))
"""Rows of the large upload (the issue's measurement used 1 000 000)."""

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "ok"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server with an admin (alice) and a labeller (bob)."""
    folder = tmp_path_factory.mktemp("imports")
    url = f"sqlite:///{folder / 'web.db'}"
    db = open_database(url)
    with db.session() as session:
        add_user(session, "alice", "alice-password", admin=True)
        add_user(session, "bob", "bob-password")
        session.commit()
    with ServerProcess(url, folder / "server.log") as server:
        yield {"server": server, "db": db, "folder": folder}
    db.dispose()


@pytest.fixture
def alice(site: dict) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site["server"].url, timeout=120) as client:
        client.headers["X-CSRF-Token"] = login(client, "alice", "alice-password")
        yield client


def upload(client: httpx.Client, name: str, content: bytes, **params) -> httpx.Response:
    return client.post("/api/catalogues", files={"file": (name, content)}, params=params)


def big_csv(n: int) -> bytes:
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], size=n)
    frame = pd.DataFrame(
        {
            "id": [f"spec-{i:07d}" for i in range(n)],
            "p_emission": p[:, 0].round(4),
            "p_absorption": p[:, 1].round(4),
            "p_double_peak": p[:, 2].round(4),
            "novelty": rng.gamma(2.0, 1.0, n).round(3),
        }
    )
    return frame.to_csv(index=False).encode()


@pytest.mark.slow
def test_a_large_upload_imports_in_the_background_while_health_stays_fast(
    site: dict, alice: httpx.Client
) -> None:
    content = big_csv(IMPORT_ROWS)
    started = alice.post(
        "/api/catalogues", files={"file": ("big.csv", content)}, params={"wait": 0}
    )
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    latencies: list[float] = []
    progress: list[tuple[str, int, int | None]] = []
    done = threading.Event()

    def probe_health() -> None:
        with httpx.Client(base_url=site["server"].url, timeout=60) as client:
            while not done.is_set():
                t0 = time.perf_counter()
                assert client.get("/api/health").status_code == 200
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.02)

    prober = threading.Thread(target=probe_health)
    prober.start()
    t0 = time.monotonic()
    try:
        while True:
            info = alice.get(f"/api/imports/{job}").json()
            progress.append((info["status"], info["rows_done"], info["rows_total"]))
            if info["status"] in ("done", "failed"):
                break
            assert time.monotonic() - t0 < 1800
            time.sleep(0.2)
    finally:
        done.set()
        prober.join()
    seconds = time.monotonic() - t0
    assert info["status"] == "done", info["error"]
    assert info["rows_done"] == info["rows_total"] == IMPORT_ROWS
    partial = [done_ for status, done_, total in progress if status == "running" and total]
    assert any(0 < d < IMPORT_ROWS for d in partial)  # progress was visible on the way
    page = alice.get(f"/vet/imports/{job}")
    assert page.status_code == 200 and "big.csv" in page.text and "import-progress" in page.text
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"{IMPORT_ROWS} rows imported in {seconds:.1f} s; /api/health during it: "
        f"{len(latencies)} requests, median {1000 * statistics.median(latencies):.1f} ms, "
        f"95th percentile {1000 * p95:.1f} ms, worst {1000 * latencies[-1]:.1f} ms"
    )
    assert len(latencies) >= 20 and p95 < 0.5  # answered throughout, never stalled
    catalogue = alice.get("/api/catalogues").json()["catalogues"][0]
    assert catalogue["id"] == info["catalogue_id"] and catalogue["n_rows"] == IMPORT_ROWS
    assert catalogue["source"] == "uploaded file big.csv"  # not the server's deleted temp path


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.vot", b"this is not a VOTable"),
        ("page.xml", b"<html><body>hello</body></html>"),
        ("cut.vot", b'<?xml version="1.0"?><VOTABLE><RESOURCE><TABLE><FIELD name="id"'),
        ("bad.parquet", b"PAR1 not really"),
        ("bad.fits", b"SIMPLE  =  nonsense"),
        ("binary.csv", bytes(range(256)) * 10),
        ("noid.tsv", b"name\tp_emission\nfoo\t0.5\n"),
    ],
)
@pytest.mark.slow
def test_malformed_uploads_get_422_naming_the_file(
    alice: httpx.Client, name: str, content: bytes
) -> None:
    answer = upload(alice, name, content)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert name in detail and "spectraldl-upload-" not in detail and "/tmp" not in detail
    assert alice.get("/api/health").status_code == 200


@pytest.mark.slow
def test_exports_keep_float32_values_short_and_csv_cells_harmless(
    site: dict, alice: httpx.Client
) -> None:
    path = site["folder"] / "hostile.parquet"
    ids = [f"id-{i}" for i in range(len(HOSTILE))]
    write_predictions_file(path, ids, objects=HOSTILE, seed=1)
    frame = pd.read_parquet(path)
    frame["p_emission"] = np.float32(0.9)
    frame["dec"] = -12.5
    frame.to_parquet(path)
    made = upload(alice, "hostile.parquet", path.read_bytes())
    assert made.status_code == 201, made.text
    catalogue = made.json()["id"]
    text = alice.get(f"/api/catalogues/{catalogue}/vetted", params={"format": "csv"}).text
    exported = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert list(exported["object"]) == ["'" + h for h in HOSTILE[:4]] + ["ok"]
    assert list(exported["dec"]) == [-12.5] * 5  # numbers stay numbers
    assert "0.8999999" not in text and list(exported["p_emission"]) == [0.9] * 5
    fits = alice.get(f"/api/catalogues/{catalogue}/vetted", params={"format": "fits"}).content
    assert list(Table.read(io.BytesIO(fits), format="fits")["object"]) == HOSTILE
    vot = alice.get(f"/api/catalogues/{catalogue}/vetted", params={"format": "votable"}).content
    assert list(Table.read(io.BytesIO(vot), format="votable")["object"]) == HOSTILE
    first = alice.get(f"/api/catalogues/{catalogue}/queue", params={"classes": ""}).json()
    payload = alice.get(f"/api/predictions/{first['ids'][0]}").json()
    assert payload["probs"]["emission"] == 0.9 and payload["row"]["p_emission"] == 0.9


@pytest.mark.slow
def test_admins_delete_catalogues_with_their_rows_and_verdicts(
    site: dict, alice: httpx.Client
) -> None:
    made = upload(alice, "doomed.csv", b"id,p_emission,p_absorption\na,0.9,0.1\nb,0.2,0.8\n")
    catalogue = made.json()["id"]
    ids = alice.get(f"/api/catalogues/{catalogue}/queue", params={"classes": ""}).json()["ids"]
    alice.post("/api/vet", json={"prediction_id": ids[0], "verdict": "confirm"})
    with httpx.Client(base_url=site["server"].url, timeout=60) as bob:
        token = login(bob, "bob", "bob-password")
        refused = bob.delete(f"/api/catalogues/{catalogue}", headers={"X-CSRF-Token": token})
        assert refused.status_code == 403
        assert "delete" not in bob.get("/vet").text.split("<h2>Load")[0].lower()
    assert alice.delete(f"/api/catalogues/{catalogue}", headers={}).status_code == 200
    assert alice.get(f"/vet/{catalogue}").status_code == 404
    assert alice.delete(f"/api/catalogues/{catalogue}").status_code == 404
    with site["db"].session() as session:
        assert session.get(Catalogue, catalogue) is None
        left = select(func.count(Prediction.id)).where(Prediction.catalogue_id == catalogue)
        assert session.scalar(left) == 0
        assert session.scalar(select(func.count(VetDecision.id))) == 0
    # The page's form does the same.
    second = upload(alice, "doomed2.csv", b"id,p_emission\na,0.9\n").json()["id"]
    page = alice.get("/vet").text
    assert f'action="/vet/{second}/delete"' in page
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    gone = alice.post(f"/vet/{second}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert alice.get(f"/api/catalogues/{second}/queue").status_code == 404


def children_of(pid: int) -> list[int]:
    """The running child processes of ``pid``, read from /proc (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # not a process, or gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_server_killed_mid_import_leaves_no_import_running_nor_its_upload(
    tmp_path: Path,
) -> None:
    """kill -9 of the server during a background import: the import's process ends with it
    (it went on and overwrote the job's row after the restart), the restarted server says
    the import was interrupted, and the upload's temporary folder is deleted."""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    db = open_database(url)
    with db.session() as session:
        add_user(session, "alice", "alice-password", admin=True)
        session.commit()
    db.dispose()
    server = ServerProcess(url, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            client.headers["X-CSRF-Token"] = login(client, "alice", "alice-password")
            before = set(Path(tempfile.gettempdir()).glob("spectraldl-upload-*"))
            started = upload(client, "big.csv", big_csv(IMPORT_ROWS), wait=0)
            job = started.json()["job"]
            while not client.get(f"/api/imports/{job}").json()["rows_done"]:
                time.sleep(0.05)
        assert server.process is not None
        pid = server.process.pid
        uploads = set(Path(tempfile.gettempdir()).glob("spectraldl-upload-*")) - before
        children = children_of(pid)
        assert uploads and children
        server.process.kill()
        server.process.wait()
    finally:
        server.stop()
    deadline = time.monotonic() + 5  # it checks on its server every 0.5 s
    while any(process_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(process_alive(c) for c in children)
    restarted = ServerProcess(url, tmp_path / "server.log")
    with restarted, httpx.Client(base_url=restarted.url, timeout=60) as client:
        login(client, "alice", "alice-password")
        info = client.get(f"/api/imports/{job}").json()
    assert info["status"] == "failed"
    assert info["error"] == "interrupted: the server stopped during the import"
    assert not any(folder.exists() for folder in uploads)
