"""Hostile and odd inputs to the web app on SQLite and PostgreSQL (uvicorn in a thread, real
HTTP): huge integers get 404 or 422, never 500; a bad page URL gets an error page; the API
takes class names only; the labelling queue can be limited to one archive; the API
description needs a login; a deactivated user's sessions end for good."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from web_support import ThreadServer, database_url, login, ondrejov_files, write_predictions_file

from spectraldl.io.bundled import bundled_files
from spectraldl.web.app import create_app
from spectraldl.web.auth import add_user
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_fits, import_predictions
from spectraldl.web.models import SpectrumRow, User

HUGE = [2**31, 2**63, 2**64 + 1, 10**30]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """alice (admin) and bob, the bundled Ondřejov spectra, one LAMOST spectrum, a catalogue."""
    folder = tmp_path_factory.mktemp(f"inputs-{request.param}")
    with database_url(request.param, folder) as url:
        db = open_database(url)
        with db.session() as session:
            add_user(session, "alice", "alice-password", admin=True)
            add_user(session, "bob", "bob-password")
            session.commit()
        lamost = sorted(f.path for f in bundled_files(archive="lamost"))[:1]
        import_fits(db, [*ondrejov_files(), *lamost])
        with db.session() as session:
            idents = list(session.scalars(select(SpectrumRow.ident).order_by(SpectrumRow.id)))
        write_predictions_file(folder / "pred.parquet", idents[:5], seed=2)
        catalogue = import_predictions(db, folder / "pred.parquet").catalogues[0][0]
        with ThreadServer(create_app(db)) as server:
            yield {"db": db, "server": server, "catalogue": catalogue}
        db.dispose()


@pytest.fixture
def alice(site: dict) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site["server"].url, timeout=60) as client:
        client.headers["X-CSRF-Token"] = login(client, "alice", "alice-password")
        yield client


def test_huge_integers_get_404_or_422_never_500(site: dict, alice: httpx.Client) -> None:
    catalogue = site["catalogue"]
    for n in HUGE:
        gets = [
            f"/api/spectra/{n}",
            f"/api/spectra/{n}/history",
            f"/api/predictions/{n}",
            f"/api/catalogues/{n}/queue",
            f"/api/catalogues/{n}/vetted",
            f"/api/imports/{n}",
            f"/api/spectra?offset={n}",
            f"/api/queue?exclude=1,{n}",
            f"/api/catalogues/{catalogue}/queue?exclude={n}",
            f"/label/{n}",
            f"/vet/{n}",
            f"/vet/imports/{n}",
            f"/spectra?page={n}",
        ]
        for path in gets:
            answer = alice.get(path)
            assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)
        posts = [
            ("/api/labels", {"spectrum_id": n, "label": "emission"}),
            ("/api/labels/undo", {"decision_id": n}),
            ("/api/vet", {"prediction_id": n, "verdict": "confirm"}),
            ("/api/vet/undo", {"decision_id": n}),
        ]
        for path, body in posts:
            answer = alice.post(path, json=body)
            assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)
        assert alice.delete(f"/api/catalogues/{n}").status_code in (404, 422)
        page = alice.get("/admin/users")
        csrf = re.search(r'data-csrf="([^"]+)"', page.text).group(1)
        form = {"csrf_token": csrf, "action": "deactivate", "user_id": str(n)}
        assert alice.post("/admin/users", data=form).status_code in (404, 422)
    # The connection survived every answer, and the app still works.
    assert alice.get("/api/spectra/1").status_code == 200


def test_a_bad_page_url_gets_an_error_page(alice: httpx.Client) -> None:
    for path in ("/spectra?page=abc", "/spectra?page=0", "/label/abc", "/vet/1e99"):
        answer = alice.get(path)
        assert answer.status_code == 422, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "<h1>Error 422</h1>" in answer.text
    api = alice.get("/api/spectra/abc")
    assert api.status_code == 422 and isinstance(api.json()["detail"], list)


def test_the_api_takes_class_names_not_numbers(alice: httpx.Client) -> None:
    for digit in ("3", "0", "4", " 2 ", "-1"):
        refused = alice.post("/api/labels", json={"spectrum_id": 2, "label": digit})
        assert refused.status_code == 422 and "class name" in refused.json()["detail"]
    for name, stored in (
        ("unknown", "unknown"),
        ("Double-Peak", "double-peak"),
        ("NOISE", "noise"),
    ):
        made = alice.post("/api/labels", json={"spectrum_id": 2, "label": name})
        assert made.status_code == 201 and made.json()["label"] == stored


def test_ids_in_json_bodies_must_be_json_integers(alice: httpx.Client) -> None:
    """``true`` was taken as spectrum 1 and ``"6"`` as 6."""
    for wrong in (True, "6", 2.0, "2"):
        for path, body in (
            ("/api/labels", {"spectrum_id": wrong, "label": "noise"}),
            ("/api/labels/undo", {"decision_id": wrong}),
        ):
            refused = alice.post(path, json=body)
            assert refused.status_code == 422, (path, wrong, refused.text)
    assert alice.post("/api/labels", json={"spectrum_id": 2, "label": "noise"}).status_code == 201


def test_the_labelling_queue_can_keep_one_archive(site: dict, alice: httpx.Client) -> None:
    assert alice.get("/api/archives").json()["archives"] == ["lamost", "ondrejov"]
    lamost = alice.get("/api/queue", params={"archive": "lamost", "limit": 50}).json()
    assert lamost["remaining"] == 1 and len(lamost["ids"]) == 1
    ondrejov = alice.get("/api/queue", params={"archive": "ondrejov", "limit": 50}).json()
    assert lamost["ids"][0] not in ondrejov["ids"]
    everything = alice.get("/api/queue", params={"limit": 50}).json()
    assert everything["remaining"] == lamost["remaining"] + ondrejov["remaining"]
    page = alice.get("/label", params={"archive": "lamost"})
    assert page.status_code == 200 and 'data-archive="lamost"' in page.text
    assert alice.get("/label", params={"archive": "nope"}).status_code == 404


def test_the_api_description_needs_a_login(site: dict, alice: httpx.Client) -> None:
    with httpx.Client(base_url=site["server"].url) as anonymous:
        assert anonymous.get("/api/openapi.json").status_code == 401
        assert anonymous.get("/docs").status_code == 404
    described = alice.get("/api/openapi.json").json()
    assert "/api/labels" in described["paths"]


def test_deactivating_a_user_ends_their_sessions_for_good(site: dict, alice: httpx.Client) -> None:
    with httpx.Client(base_url=site["server"].url, timeout=60) as bob:
        login(bob, "bob", "bob-password")
        assert bob.get("/api/me").status_code == 200
        with site["db"].session() as session:
            bob_id = session.scalar(select(User.id).where(User.name == "bob"))
        csrf = re.search(r'data-csrf="([^"]+)"', alice.get("/admin/users").text).group(1)
        for action in ("deactivate", "activate"):
            form = {"csrf_token": csrf, "action": action, "user_id": str(bob_id)}
            assert alice.post("/admin/users", data=form).status_code == 303
        assert bob.get("/api/me").status_code == 401  # the old cookie stays dead
        login(bob, "bob", "bob-password")  # a new login works
        assert bob.get("/api/me").json()["user"] == "bob"


@pytest.mark.slow
def test_upload_paths_are_not_kept_as_the_catalogue_source(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'src.db'}")
    with db.session() as session:
        add_user(session, "alice", "alice-password")
        session.commit()
    with ThreadServer(create_app(db)) as server, httpx.Client(base_url=server.url) as client:
        token = login(client, "alice", "alice-password")
        made = client.post(
            "/api/catalogues",
            files={"file": ("mine.csv", b"id,p_emission\na,0.5\n")},
            headers={"X-CSRF-Token": token},
            timeout=120,
        )
        assert made.status_code == 201, made.text
        listed = client.get("/api/catalogues").json()["catalogues"][0]
    db.dispose()
    assert listed["source"] == "uploaded file mine.csv"
