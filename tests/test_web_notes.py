"""Notes and flags on spectra and candidates: set, searched and exported with the labels
and verdicts (CSV with the formula guard, FITS, VOTable), on SQLite and PostgreSQL through
a real server; the migration's table matches the model (tests/test_web_db.py checks the
schema as a whole)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from astropy.table import Table
from web_support import ThreadServer, database_url, login

from spectraldl.web import store
from spectraldl.web.app import create_app
from spectraldl.web.auth import add_user
from spectraldl.web.db import Database, open_database
from spectraldl.web.importing import import_frame


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, int, str]]:
    with database_url(request.param, tmp_path) as url:
        db = open_database(url)
        with db.session() as session:
            add_user(session, "alice", "alice-password")
            add_user(session, "bob", "bob-password")
            session.commit()
        frame = pd.DataFrame(
            {
                "id": ["LAMOST 1", "LAMOST 2", "LAMOST 3"],
                "predicted_class": ["emission", "double-peak", "emission"],
                "p_emission": [0.9, 0.2, 0.7],
                "p_double_peak": [0.1, 0.8, 0.3],
            }
        )
        catalogue = import_frame(db, frame, name="notes.csv").catalogues[0][0]
        try:
            with ThreadServer(create_app(db)) as server:
                yield db, catalogue, server.url
        finally:
            # After the server has stopped: a connection its threads still held would
            # escape dispose() and be closed only by a later garbage collection.
            db.dispose()


def client(url: str, name: str) -> httpx.Client:
    session = httpx.Client(base_url=url)
    session.headers["X-CSRF-Token"] = login(session, name, f"{name}-password")
    return session


def test_notes_are_set_searched_and_exported(site: tuple[Database, int, str]) -> None:
    _, catalogue, url = site
    alice, bob = client(url, "alice"), client(url, "bob")
    try:
        flags = alice.get("/api/note-flags").json()["flags"]
        assert {"nebular", "binary", "bad-sky"} <= set(flags)
        saved = alice.post(
            "/api/notes",
            json={
                "ident": "LAMOST 1",
                "text": "=HYPERLINK(1) nebular lines",
                "flags": ["Binary", "nebular", "my-tag", "binary"],
            },
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["note"]["flags"] == ["nebular", "binary", "my-tag"]
        bob.post(
            "/api/notes", json={"ident": "LAMOST 1", "text": "sky residual", "flags": ["bad-sky"]}
        )
        bob.post("/api/notes", json={"ident": "LAMOST 2", "text": "", "flags": ["binary"]})
        # editing replaces one's own note; an empty one deletes it
        alice.post("/api/notes", json={"ident": "LAMOST 3", "text": "temp"})
        alice.post("/api/notes", json={"ident": "LAMOST 3", "text": "", "flags": []})
        assert alice.get("/api/notes", params={"ident": "LAMOST 3"}).json()["total"] == 0
        # bad input
        assert alice.post("/api/notes", json={"ident": "nope", "text": "x"}).status_code == 404
        bad_flag = alice.post("/api/notes", json={"ident": "LAMOST 1", "flags": ["a b"]})
        assert bad_flag.status_code == 422
        assert (
            alice.post("/api/notes", json={"ident": "LAMOST 1", "text": "x" * 4001}).status_code
            == 422
        )
        token = alice.headers.pop("X-CSRF-Token")
        assert alice.post("/api/notes", json={"ident": "LAMOST 1", "text": "x"}).status_code == 403
        alice.headers["X-CSRF-Token"] = token
        # search: by flag, by text (literal, case-insensitive), by id
        by_flag = bob.get("/api/notes", params={"flag": "binary"}).json()
        assert sorted(n["ident"] for n in by_flag["notes"]) == ["LAMOST 1", "LAMOST 2"]
        assert bob.get("/api/notes", params={"flag": "my-tag"}).json()["total"] == 1
        assert bob.get("/api/notes", params={"q": "SKY RES"}).json()["notes"][0]["user"] == "bob"
        assert bob.get("/api/notes", params={"q": "%"}).json()["total"] == 0
        page = bob.get("/notes", params={"flag": "bad-sky"}).text
        assert "sky residual" in page and "HYPERLINK" not in page
        # exports: the vetted catalogue in three formats, and the labels CSV
        vetted = alice.get(f"/api/catalogues/{catalogue}/vetted", params={"format": "csv"}).text
        rows = list(csv.DictReader(io.StringIO(vetted)))
        assert rows[0]["flags"] == "nebular,binary,bad-sky,my-tag"
        assert rows[0]["notes"] == "alice: =HYPERLINK(1) nebular lines | bob: sky residual"
        assert rows[1]["flags"] == "binary" and rows[1]["notes"] == ""
        assert rows[2]["flags"] == "" and rows[2]["notes"] == ""
        for fmt in ("fits", "votable"):
            body = alice.get(f"/api/catalogues/{catalogue}/vetted", params={"format": fmt}).content
            table = Table.read(io.BytesIO(body), format=fmt)
            assert str(table["flags"][0]) == "nebular,binary,bad-sky,my-tag"
            assert str(table["notes"][0]).startswith("alice: =HYPERLINK")  # kept as it is
        labels = alice.get("/api/labels.csv", params={"notes": "true"}).text
        assert labels.splitlines()[0] == "id,label,flags,notes"
        assert alice.get("/api/labels.csv").text.splitlines()[0] == "id,label"
    finally:
        alice.close()
        bob.close()


def test_the_labels_csv_guards_formula_cells_with_notes() -> None:
    notes = {"=1+1": [{"user": "alice", "text": "-2 sky", "flags": ["binary"]}]}
    line = store.labels_csv([("=1+1", "emission")], notes=notes).splitlines()[1]
    assert line == "'=1+1,emission,binary,alice: -2 sky"
    assert store.csv_safe("-2 sky") == "'-2 sky"
