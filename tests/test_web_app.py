"""The web app's pages and JSON API, served by uvicorn in a thread (real HTTP), on SQLite.

Security: writes need a login and the CSRF token; user management needs an
admin; hostile input (HTML in names, SQL in parameters) stays harmless text.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from sqlalchemy import func, select
from web_support import ThreadServer, ondrejov_files, write_predictions_file

from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.io.archives.ondrejov import PUBLISHER_ID_PREFIX, observation_key
from spectraldl.io.labels import read_labels
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.web.app import create_app
from spectraldl.web.auth import LoginThrottle, hash_password
from spectraldl.web.db import Database, open_database
from spectraldl.web.importing import spectrum_row
from spectraldl.web.models import LabelDecision, LoginSession, SpectrumRow, User

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
SQLI = "x'); DROP TABLE spectra; --"


@pytest.fixture(scope="module")
def password_hashes() -> dict[str, str]:
    return {name: hash_password(f"{name}-password") for name in ("alice", "bob")}


@pytest.fixture(scope="module")
def stored_rows() -> list[dict]:
    """The bundled Ondřejov spectra plus one whose object name is an XSS attempt."""
    config = PreprocessConfig()
    spectra = [read_spectrum(p) for p in ondrejov_files()]
    first = spectra[0]
    hostile = Spectrum(
        wave_aa=first.wave_aa,
        flux=first.flux,
        medium=first.medium,
        meta=dataclasses.replace(first.meta, id="hostile-1", object=XSS),
    )
    sql = Spectrum(
        wave_aa=first.wave_aa,
        flux=first.flux,
        medium=first.medium,
        meta=dataclasses.replace(first.meta, id="hostile-2", object=SQLI),
    )
    rows = []
    for spectrum in [*spectra, hostile, sql]:
        row = spectrum_row(spectrum, config=config)
        rows.append(
            {c.key: getattr(row, c.key) for c in SpectrumRow.__table__.columns if c.key != "id"}
        )
    return rows


@pytest.fixture
def db(
    tmp_path: Path, password_hashes: dict[str, str], stored_rows: list[dict]
) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'app.db'}")
    with database.session() as session:
        session.add(User(name="alice", password_hash=password_hashes["alice"], is_admin=True))
        session.add(User(name="bob", password_hash=password_hashes["bob"], is_admin=False))
        session.add_all([SpectrumRow(**values) for values in stored_rows])
        session.commit()
    yield database
    database.dispose()


@pytest.fixture
def server(db: Database) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(db)) as running:
        yield running


@pytest.fixture
def client(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as http:
        yield http


def api_login(client: httpx.Client, name: str) -> str:
    response = client.post("/api/login", json={"username": name, "password": f"{name}-password"})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def form_login(client: httpx.Client, name: str, password: str, next_url: str = "/label"):
    page = client.get(f"/login?next={next_url}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": token, "next": next_url},
    )


def page_csrf(html: str) -> str:
    return re.search(r'data-csrf="([^"]+)"', html).group(1)


def n_decisions(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count(LabelDecision.id)))


# --- login and sessions ---------------------------------------------------------------------


def test_health_needs_no_login_but_everything_else_does(client: httpx.Client) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    for path in ("/api/spectra/1", "/api/queue", "/api/labels.csv", "/api/catalogues"):
        assert client.get(path).status_code == 401, path
    response = client.get("/label?mode=uncertain")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Flabel%3Fmode%3Duncertain"


def test_unauthenticated_writes_are_refused(client: httpx.Client, db: Database) -> None:
    assert (
        client.post("/api/labels", json={"spectrum_id": 1, "label": "emission"}).status_code == 401
    )
    assert client.post("/api/labels/undo", json={"decision_id": 1}).status_code == 401
    assert (
        client.post("/api/vet", json={"prediction_id": 1, "verdict": "confirm"}).status_code == 401
    )
    assert client.post("/api/users", json={"name": "eve", "password": "x" * 12}).status_code == 401
    assert (
        client.post("/admin/users", data={"name": "eve", "password": "x" * 12}).status_code == 401
    )
    assert client.post("/vet/upload", files={"file": ("a.csv", b"id\n1\n")}).status_code == 401
    assert client.post("/logout").status_code == 401
    # A forged cookie is no session either.
    client.cookies.set("spectraldl_session", "forged-token-value", domain="127.0.0.1")
    assert (
        client.post("/api/labels", json={"spectrum_id": 1, "label": "emission"}).status_code == 401
    )
    assert n_decisions(db) == 0
    with db.session() as session:
        assert session.scalar(select(func.count(User.id))) == 2


def test_form_login_sets_a_httponly_samesite_cookie_and_logout_ends_it(
    client: httpx.Client,
) -> None:
    response = form_login(client, "alice", "alice-password", "/spectra")
    assert response.status_code == 303 and response.headers["location"] == "/spectra"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("spectraldl_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = client.get("/spectra")
    assert page.status_code == 200 and "alice" in page.text
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.post("/logout", data={"csrf_token": page_csrf(page.text)}).status_code == 303
    assert client.get("/api/queue").status_code == 401


def test_login_form_refuses_wrong_passwords_missing_csrf_and_foreign_redirects(
    client: httpx.Client,
) -> None:
    wrong = form_login(client, "alice", "not-her-password")
    assert wrong.status_code == 303 and "error=1" in wrong.headers["location"]
    assert client.get("/api/queue").status_code == 401
    injected = form_login(client, "alice' --", "anything")
    assert injected.status_code == 303 and "error=1" in injected.headers["location"]
    no_token = client.post("/login", data={"username": "alice", "password": "alice-password"})
    assert no_token.status_code == 403
    away = form_login(client, "alice", "alice-password", "//evil.example/steal")
    assert away.headers["location"] == "/label"
    assert client.post("/api/login", data={"username": "a", "password": "b"}).status_code == 422


def test_the_login_page_says_how_many_decisions_an_ended_session_lost(
    client: httpx.Client,
) -> None:
    assert "Your session ended; log in again" in client.get("/login?ended=1&unsaved=x").text
    assert "session ended" not in client.get("/login?unsaved=3").text.lower()
    page = client.get("/login?next=%2Flabel&ended=1&unsaved=3")
    assert "your last 3 decisions were not saved" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"username": "alice", "password": "wrong-one", "csrf_token": token, "next": "/label"}
    wrong = client.post("/login", data={**form, "ended": "1", "unsaved": "3"})
    assert wrong.headers["location"] == "/login?next=%2Flabel&error=1&ended=1&unsaved=3"


def test_the_login_page_counts_undos_not_done_and_notes_kept(client: httpx.Client) -> None:
    page = client.get("/login?next=%2Flabel&ended=1&unsaved=0&undone=1")
    assert "your last undo was not done — log in and the page offers it again." in page.text
    both = client.get("/login?ended=1&unsaved=2&undone=2&drafts=1").text
    assert "your last 2 decisions were not saved" in both
    assert "Your last 2 undos were not done either" in both
    assert "Your unsaved note is kept in this tab" in both
    assert "undo" not in client.get("/login?ended=1&unsaved=1&undone=x").text.split("<form")[0]
    page = client.get("/login?next=%2Flabel")  # its CSRF cookie is the last one set
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"username": "alice", "password": "wrong-one", "csrf_token": token, "next": "/label"}
    wrong = client.post("/login", data={**form, "ended": "1", "undone": "1", "drafts": "2"})
    location = "/login?next=%2Flabel&error=1&ended=1&unsaved=0&undone=1&drafts=2"
    assert wrong.headers["location"] == location


def test_password_guessing_is_refused_per_name_and_address(client: httpx.Client) -> None:
    for _ in range(10):
        wrong = client.post("/api/login", json={"username": "bob", "password": "guess"})
        assert wrong.status_code == 401
    locked = client.post("/api/login", json={"username": "bob", "password": "bob-password"})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 60
    assert "too many failed logins" in locked.json()["detail"]
    page = form_login(client, "bob", "bob-password")
    assert page.status_code == 429 and "too many failed logins" in page.text
    assert client.get("/api/queue").status_code == 401
    # Another name from the same address is not refused: bob's guesser cannot lock alice out.
    other = client.post("/api/login", json={"username": "alice", "password": "alice-password"})
    assert other.status_code == 200


def test_login_throttle_refuses_pairs_and_addresses_and_slows_names() -> None:
    throttle = LoginThrottle(pair_limit=3, address_limit=5, name_limit=3, slow_s=0.5, window_s=0.3)
    for _ in range(3):
        assert throttle.attempt("Eve", "10.0.0.1").wait_s == 0
    pair = throttle.attempt("eve", "10.0.0.1")
    assert 0 < pair.wait_s <= 0.3 and pair.refused == "pair"
    fresh = throttle.attempt("eve", "10.0.0.2")  # the name from an address that has not failed
    assert fresh.wait_s == 0 and fresh.delay_s == 0.5  # slowed, never refused
    assert throttle.attempt("bob", "10.0.0.1") == (0, 0, "")  # other names from the address
    assert throttle.attempt("carol", "10.0.0.1") == (0, 0, "")
    address = throttle.attempt("dave", "10.0.0.1")  # 5 failures: the address
    assert address.wait_s > 0 and address.refused == "address"
    throttle.succeeded("eve", "10.0.0.2")
    assert throttle.attempt("eve", "10.0.0.2").delay_s == 0.5  # three failures still count
    # IPv6 clients are counted by their /64: one host cannot hop addresses.
    for i in range(3):
        assert throttle.attempt("dan", f"2001:db8::{i + 1}").wait_s == 0
    assert throttle.attempt("dan", "2001:db8::ffff").wait_s > 0
    import time

    time.sleep(0.35)
    assert throttle.attempt("eve", "10.0.0.1") == (0, 0, "")


def test_login_throttle_counts_concurrent_attempts_and_forgets_old_ones() -> None:
    from concurrent.futures import ThreadPoolExecutor

    throttle = LoginThrottle(pair_limit=3, window_s=0.2)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: throttle.attempt("eve", "10.0.0.1"), range(40)))
    assert sum(answer.wait_s == 0 for answer in answers) == 3
    for i in range(2000):
        throttle.attempt(f"name{i}", f"10.1.{i // 256}.{i % 256}")
    import time

    time.sleep(0.25)
    for i in range(2000):
        throttle.attempt(f"other{i}", f"10.2.{i // 256}.{i % 256}")
    # The table swept itself as it grew: the first names and addresses are gone.
    assert not any("name" in key or "10.1." in key for key in throttle._failures)
    assert all("other" in key or "10.2." in key for key in throttle._failures)


def test_expired_sessions_are_deleted_at_the_next_login(client: httpx.Client, db: Database) -> None:
    api_login(client, "bob")
    with db.session() as session:
        for row in session.scalars(select(LoginSession)):
            row.expires_at = row.expires_at.replace(year=2000)
        session.commit()
    assert client.get("/api/queue").status_code == 401
    api_login(client, "alice")
    with db.session() as session:
        rows = session.scalars(select(LoginSession)).all()
        assert len(rows) == 1 and rows[0].expires_at.year > 2000


def test_a_used_session_is_renewed_up_to_the_maximum(client: httpx.Client, db: Database) -> None:
    from datetime import timedelta

    from spectraldl.web.auth import SESSION_LIFETIME, SESSION_MAX_LIFETIME
    from spectraldl.web.models import utcnow

    api_login(client, "bob")

    def shift(created_days: float, left_hours: float) -> tuple:
        """Make bob's login ``created_days`` old with ``left_hours`` to go; its two times."""
        now = utcnow()
        with db.session() as session:
            row = session.scalars(select(LoginSession)).one()
            row.created_at = now - timedelta(days=created_days)
            row.expires_at = now + timedelta(hours=left_hours)
            session.commit()
            return row.created_at, row.expires_at

    def expiry() -> object:
        with db.session() as session:
            return session.scalars(select(LoginSession)).one().expires_at

    shift(13.9, 2)  # used daily, but near the end of its first 14 days
    used_at = utcnow()
    assert client.get("/api/queue").status_code == 200
    assert used_at + SESSION_LIFETIME <= expiry() <= utcnow() + SESSION_LIFETIME
    created, _ = shift(59.9, 1)  # renewed, but never past the maximum after the login
    assert client.get("/api/queue").status_code == 200
    assert expiry() == created + SESSION_MAX_LIFETIME
    _, before = shift(1, 24 * 13.99)  # fresh: no write per request
    assert client.get("/api/queue").status_code == 200
    assert expiry() == before
    shift(60, -1)  # expired stays expired
    assert client.get("/api/queue").status_code == 401


def test_deactivated_users_lose_their_sessions(client: httpx.Client, db: Database) -> None:
    token = api_login(client, "bob")
    assert client.get("/api/queue").status_code == 200
    with db.session() as session:
        session.scalar(select(User).where(User.name == "bob")).is_active = False
        session.commit()
    assert client.get("/api/queue").status_code == 401
    response = client.post(
        "/api/labels", json={"spectrum_id": 1, "label": "emission"}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 401
    assert (
        client.post("/api/login", json={"username": "bob", "password": "bob-password"}).status_code
        == 401
    )


# --- labels through the API -----------------------------------------------------------------


def test_label_api_needs_the_csrf_token_and_keeps_every_decision(
    client: httpx.Client, db: Database
) -> None:
    token = api_login(client, "alice")
    body = {"spectrum_id": 1, "label": "emission"}
    assert client.post("/api/labels", json=body).status_code == 403
    assert (
        client.post("/api/labels", json=body, headers={"X-CSRF-Token": "nope"}).status_code == 403
    )
    assert n_decisions(db) == 0
    headers = {"X-CSRF-Token": token}
    first = client.post("/api/labels", json=body, headers=headers)
    assert first.status_code == 201 and first.json()["label"] == "emission"
    second = client.post(
        "/api/labels", json={"spectrum_id": 1, "label": "Double-Peak"}, headers=headers
    )
    assert second.json()["label"] == "double-peak"
    undo = client.post(
        "/api/labels/undo", json={"decision_id": second.json()["decision_id"]}, headers=headers
    )
    assert undo.status_code == 201 and undo.json()["label"] == "emission"
    again = client.post(
        "/api/labels/undo", json={"decision_id": second.json()["decision_id"]}, headers=headers
    )
    assert again.status_code == 409
    spectrum = client.get("/api/spectra/1").json()
    assert spectrum["labels"] == {
        "mine": "emission",
        "votes": {"alice": "emission"},
        "consensus": "emission",
    }
    history = client.get("/api/spectra/1/history").json()["decisions"]
    assert [d["label"] for d in history] == ["emission", "double-peak", "emission"]
    assert n_decisions(db) == 3
    for bad in (
        {"spectrum_id": 1, "label": "emission'); DROP TABLE label_decisions; --"},
        {"spectrum_id": "1 OR 1=1", "label": "emission"},
        {"spectrum_id": 1, "label": "<b>bold</b>"},
    ):
        assert client.post("/api/labels", json=bad, headers=headers).status_code == 422
    for label, says in (("abs", "expected one of emission, "), ("2", "not a number")):
        wrong = client.post("/api/labels", json={"spectrum_id": 1, "label": label}, headers=headers)
        detail = wrong.json()["detail"]
        assert wrong.status_code == 422 and says in detail and "0-4" not in detail
    assert (
        client.post(
            "/api/labels", json={"spectrum_id": 999, "label": "emission"}, headers=headers
        ).status_code
        == 404
    )
    assert n_decisions(db) == 3


def test_the_other_form_of_an_exposure_is_given_and_labels_apart_are_listed(
    client: httpx.Client, db: Database
) -> None:
    headers = {"X-CSRF-Token": api_login(client, "alice")}
    with db.session() as session:
        rows = list(session.execute(select(SpectrumRow.id, SpectrumRow.ident, SpectrumRow.form)))
    forms = Counter(observation_key(ident) for _, ident, _ in rows)
    ssap_id, ssap_ident, _ = next(
        r
        for r in rows
        if r[1].startswith(PUBLISHER_ID_PREFIX) and forms[observation_key(r[1])] == 2
    )
    raw_id, raw_ident, raw_form = next(r for r in rows if r[1] == observation_key(ssap_ident))
    alone = next(i for i, ident, _ in rows if forms[observation_key(ident)] == 1)
    for spectrum_id, label in ((raw_id, "emission"), (ssap_id, "absorption")):
        posted = client.post(
            "/api/labels", json={"spectrum_id": spectrum_id, "label": label}, headers=headers
        )
        assert posted.status_code == 201
    others = client.get(f"/api/spectra/{ssap_id}").json()["other_forms"]
    assert others == [
        {"id": raw_id, "ident": raw_ident, "form": raw_form, "mine": "emission",
         "consensus": "emission"}
    ]  # fmt: skip
    assert client.get(f"/api/spectra/{alone}").json()["other_forms"] == []
    apart = client.get("/api/disagreements").json()["forms_apart"]
    assert apart == [
        {
            "key": observation_key(ssap_ident),
            "forms": [
                {"spectrum_id": i, "ident": ident, "form": form, "consensus": label}
                for i, ident, form, label in sorted(
                    [(raw_id, raw_ident, raw_form, "emission"),
                     (ssap_id, ssap_ident, "ssap", "absorption")]
                )
            ],
        }
    ]  # fmt: skip
    page = client.get("/disagreements").text
    table = page[page.index('id="forms-apart"') :]
    assert f'href="/label/{raw_id}"' in table and f'href="/label/{ssap_id}"' in table
    assert "absorption" in table and observation_key(ssap_ident) in table


def test_spectrum_api_gives_the_three_views(client: httpx.Client) -> None:
    api_login(client, "alice")
    ident = read_spectrum(ondrejov_files()[0]).id
    found = client.get("/api/spectra", params={"q": ident[-8:]}).json()
    spectrum_id = found["spectra"][0]["id"]
    payload = client.get(f"/api/spectra/{spectrum_id}").json()
    assert payload["ident"] == ident and payload["has_flux"]
    full, zoom, vector = payload["full"], payload["zoom"], payload["vector"]
    spectrum = read_spectrum(ondrejov_files()[0])
    assert len(full["wave"]) == len(spectrum.wave_aa)
    scale = np.abs(spectrum.flux).max()  # rounded for a compact payload: 6 digits of the maximum
    assert np.allclose(full["flux"], spectrum.flux, rtol=0, atol=1e-5 * scale)
    assert (
        min(zoom["wave"]) >= payload["halpha_aa"] - 50
        and max(zoom["wave"]) <= payload["halpha_aa"] + 50
    )
    assert zoom["sigma_px"] == 7.0 and len(zoom["blurred"]) == len(zoom["wave"])
    assert len(vector["x"]) == 140 and abs(np.mean(vector["x"])) < 1e-3
    assert client.get("/api/spectra/100000").status_code == 404


def test_queue_api_and_labels_csv_export(client: httpx.Client, tmp_path: Path) -> None:
    token = api_login(client, "alice")
    queue = client.get("/api/queue", params={"limit": 5}).json()
    assert queue["ids"] == [1, 2, 3, 4, 5] and queue["remaining"] == 18
    headers = {"X-CSRF-Token": token}
    for spectrum_id, label in [(1, "emission"), (2, "absorption"), (3, "double-peak")]:
        client.post(
            "/api/labels", json={"spectrum_id": spectrum_id, "label": label}, headers=headers
        )
    queue = client.get("/api/queue", params={"limit": 5, "exclude": "4,5"}).json()
    assert queue["ids"] == [6, 7, 8, 9, 10] and queue["remaining"] == 13
    assert client.get("/api/queue", params={"exclude": "4;DROP"}).status_code == 422
    assert client.get("/api/queue", params={"mode": "nope"}).status_code == 422
    response = client.get("/api/labels.csv")
    assert response.headers["content-type"].startswith("text/csv")
    path = tmp_path / "labels.csv"
    path.write_bytes(response.content)
    labels = read_labels(path)
    idents = {
        s["id"]: s["ident"]
        for s in client.get("/api/spectra", params={"limit": 3}).json()["spectra"]
    }
    assert labels.lookup(idents[1]) == 0 and labels.lookup(idents[3]) == 3
    assert client.get("/api/labels.csv", params={"user": "nobody"}).status_code == 404
    progress = client.get("/api/progress").json()
    assert progress["labelled_by_me"] == 3 and progress["total"] == 18


# --- escaping -------------------------------------------------------------------------------


def test_html_in_names_is_rendered_as_text(client: httpx.Client) -> None:
    form_login(client, "alice", "alice-password")
    page = client.get("/spectra", params={"q": "hostile"})
    assert page.status_code == 200
    assert "<script>window.__xss" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page.text
    assert "x&#39;); DROP TABLE spectra; --" in page.text
    assert page.headers["content-security-policy"].startswith(
        "default-src 'self'; script-src 'self'"
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    hostile = client.get("/api/spectra", params={"q": "hostile-1"}).json()["spectra"][0]
    assert hostile["object"] == XSS  # the API returns the name as data; pages insert it as text
    search = client.get("/spectra", params={"q": XSS})
    assert "<script>window.__xss" not in search.text


def test_sql_in_search_is_just_text(client: httpx.Client, db: Database) -> None:
    api_login(client, "alice")
    for attack in ("' OR '1'='1", "%' OR 1=1 --", SQLI, "\\", "_"):
        result = client.get("/api/spectra", params={"q": attack}).json()
        objects = [s["object"] for s in result["spectra"]]
        assert all(
            attack.lower() in (o.lower() + s)
            for o, s in zip(objects, [x["ident"] for x in result["spectra"]], strict=True)
        )
    assert client.get("/api/spectra", params={"q": SQLI}).json()["total"] == 1
    assert client.get("/api/spectra").json()["total"] == 18
    assert {"spectra", "label_decisions", "users"} <= set(db.tables())


# --- admin ----------------------------------------------------------------------------------


def test_only_admins_manage_users(client: httpx.Client, db: Database, server: ThreadServer) -> None:
    token = api_login(client, "bob")
    assert client.get("/admin/users").status_code == 403
    assert client.get("/api/users").status_code == 403
    response = client.post(
        "/api/users",
        json={"name": "mallory", "password": "mallory-password", "admin": True},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 403
    page = client.get("/label")
    assert (
        client.post(
            "/admin/users",
            data={
                "csrf_token": page_csrf(page.text),
                "action": "add",
                "name": "m2",
                "password": "p" * 10,
            },
        ).status_code
        == 403
    )
    form_login(client, "alice", "alice-password")
    page = client.get("/admin/users")
    assert page.status_code == 200 and "bob" in page.text
    csrf = page_csrf(page.text)
    missing = client.post(
        "/admin/users", data={"action": "add", "name": "carol", "password": "c" * 10}
    )
    assert missing.status_code == 403
    added = client.post(
        "/admin/users",
        data={"csrf_token": csrf, "action": "add", "name": "carol", "password": "carol-password"},
    )
    assert added.status_code == 303
    bad = client.post(
        "/admin/users",
        data={"csrf_token": csrf, "action": "add", "name": "<b>x</b>", "password": "long-password"},
    )
    assert bad.status_code == 422 and "&lt;b&gt;x&lt;/b&gt;" in bad.text
    with db.session() as session:
        names = set(session.scalars(select(User.name)))
        bob_id = session.scalar(select(User.id).where(User.name == "bob"))
    assert names == {"alice", "bob", "carol"}
    client.post(
        "/admin/users", data={"csrf_token": csrf, "action": "make-admin", "user_id": bob_id}
    )
    with db.session() as session:
        assert session.get(User, bob_id).is_admin
    with httpx.Client(base_url=server.url) as other:
        api_login(other, "carol")
        assert other.get("/api/queue").status_code == 200


# --- vetting --------------------------------------------------------------------------------


@pytest.mark.slow
def test_upload_vet_and_export_a_catalogue(
    client: httpx.Client, db: Database, tmp_path: Path
) -> None:
    token = api_login(client, "alice")
    with db.session() as session:
        idents = list(session.scalars(select(SpectrumRow.ident).order_by(SpectrumRow.id)))[:10]
    frame = write_predictions_file(tmp_path / "pred.parquet", idents, seed=4)
    page = client.get("/vet")
    csrf = page_csrf(page.text)
    with (tmp_path / "pred.parquet").open("rb") as handle:
        response = client.post(
            "/vet/upload",
            data={"csrf_token": csrf},
            files={
                "file": ("<b onclick=alert(1)>cands.parquet", handle, "application/octet-stream")
            },
        )
    assert response.status_code == 303
    catalogue_id = int(response.headers["location"].rsplit("/", 1)[1])
    listing = client.get("/vet").text
    assert "&lt;b onclick=alert(1)&gt;cands.parquet" in listing and "<b onclick" not in listing
    vet_page = client.get(f"/vet/{catalogue_id}?order=novelty")
    assert vet_page.status_code == 200 and 'data-order="novelty"' in vet_page.text
    queue = client.get(f"/api/catalogues/{catalogue_id}/queue", params={"classes": ""}).json()
    assert len(queue["ids"]) == 10
    first = client.get(f"/api/predictions/{queue['ids'][0]}").json()
    assert first["spectrum"]["ident"] == first["ident"] and first["probability"] > 0
    headers = {"X-CSRF-Token": token}
    assert (
        client.post(
            "/api/vet", json={"prediction_id": queue["ids"][0], "verdict": "confirm"}
        ).status_code
        == 403
    )
    made = client.post(
        "/api/vet", json={"prediction_id": queue["ids"][0], "verdict": "confirm"}, headers=headers
    )
    assert made.status_code == 201
    client.post(
        "/api/vet", json={"prediction_id": queue["ids"][1], "verdict": "reject"}, headers=headers
    )
    assert (
        client.post(
            "/api/vet", json={"prediction_id": queue["ids"][2], "verdict": "yes"}, headers=headers
        ).status_code
        == 422
    )
    csv_text = client.get(f"/api/catalogues/{catalogue_id}/vetted?format=csv").text
    vetted = pd.read_csv(io.StringIO(csv_text), keep_default_na=False)
    assert list(vetted["id"]) == idents and sorted(vetted["vetted"].unique()) == [
        "",
        "confirm",
        "reject",
    ]
    assert np.allclose(vetted["p_emission"], frame["p_emission"], atol=1e-6)
    fits = Table.read(
        io.BytesIO(client.get(f"/api/catalogues/{catalogue_id}/vetted?format=fits").content),
        format="fits",
    )
    assert len(fits) == 10 and "vetted" in fits.colnames
    vot = Table.read(
        io.BytesIO(client.get(f"/api/catalogues/{catalogue_id}/vetted?format=votable").content),
        format="votable",
    )
    assert sorted(set(vot["vetted"])) == ["", "confirm", "reject"]
    bad = client.post("/api/catalogues", files={"file": ("notes.txt", b"hello")}, headers=headers)
    assert bad.status_code == 422
    no_id = client.post(
        "/api/catalogues", files={"file": ("x.csv", b"name\nfoo\n")}, headers=headers
    )
    assert no_id.status_code == 422 and "id" in no_id.json()["detail"]


@pytest.mark.slow
def test_vetting_and_labelling_show_the_halpha_measurements_of_the_catalogue(
    client: httpx.Client, db: Database, tmp_path: Path
) -> None:
    from spectraldl.io.predictions import read_predictions, write_predictions
    from spectraldl.prep.measure import SHOWN_MEASUREMENTS

    token = api_login(client, "alice")
    headers = {"X-CSRF-Token": token}
    with db.session() as session:
        spectra = list(session.execute(select(SpectrumRow.id, SpectrumRow.ident)).all())[:4]
    idents = [ident for _, ident in spectra[:3]]
    frame = write_predictions_file(tmp_path / "plain.parquet", idents, seed=5)
    measured = {
        "halpha_ew_aa": [-34.0, -4.71, np.nan],
        "halpha_ew_err_aa": [0.05, 0.06, np.nan],
        "halpha_peak_ratio": [5.1, 1.6, np.nan],
        "halpha_fwhm_kms": [348.0, 404.0, np.nan],
        "halpha_peak_sep_kms": [np.nan, 172.0, np.nan],
        "halpha_vr": [np.nan, 1.02, np.nan],
        "profile_type": ["emission", "double-peak", "unmeasurable"],
        "halpha_flag": ["", "", "masked core"],
    }
    for name, values in measured.items():
        text = name in ("profile_type", "halpha_flag")
        frame[name] = np.array(values, dtype=object if text else np.float32)
    path = tmp_path / "measured.parquet"
    write_predictions(path, frame, classes=("emission", "absorption", "double-peak"))
    assert read_predictions(path)["profile_type"].tolist() == measured["profile_type"]
    with path.open("rb") as handle:
        response = client.post("/api/catalogues", files={"file": handle}, headers=headers)
    assert response.status_code == 201, response.text
    catalogue_id = response.json()["id"]
    ids = client.get(f"/api/catalogues/{catalogue_id}/queue", params={"classes": ""}).json()["ids"]
    by_ident = {}
    for pid in ids:
        payload = client.get(f"/api/predictions/{pid}").json()
        by_ident[payload["ident"]] = payload["measurement"]
    emission, double, unmeasurable = (by_ident[i] for i in idents)
    assert emission["profile_type"] == "emission" and emission["halpha_ew_aa"] == -34.0
    assert emission["halpha_fwhm_kms"] == 348.0 and emission["halpha_peak_sep_kms"] is None
    assert double["profile_type"] == "double-peak" and double["halpha_peak_sep_kms"] == 172.0
    assert double["halpha_vr"] == 1.02 and double["halpha_ew_err_aa"] == 0.06
    assert unmeasurable == {
        **dict.fromkeys(SHOWN_MEASUREMENTS, None),
        "profile_type": "unmeasurable",
        "halpha_flag": "masked core",
    }
    spectrum = client.get(f"/api/spectra/{spectra[1][0]}").json()
    assert spectrum["measurement"]["profile_type"] == "double-peak"
    assert client.get(f"/api/spectra/{spectra[3][0]}").json()["measurement"] is None
    # A catalogue written before the measurements existed shows none.
    with (tmp_path / "plain.parquet").open("rb") as handle:
        old = client.post("/api/catalogues", files={"file": handle}, headers=headers).json()["id"]
    old_ids = client.get(f"/api/catalogues/{old}/queue", params={"classes": ""}).json()["ids"]
    assert client.get(f"/api/predictions/{old_ids[0]}").json()["measurement"] is None
    page = client.get(f"/vet/{catalogue_id}").text
    assert "/static/vet.js" in page and "/static/viewer.js" in page
    script = client.get("/static/viewer.js").text
    assert "measurementFacts" in script and "halpha_fwhm_kms" in script
