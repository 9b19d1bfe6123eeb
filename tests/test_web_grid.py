"""The grid view of vetting (pages of similar candidates): the similarity order on real
spectra, its JSON page (login, size, vetted rows left out), and in a real headless
Chromium: tiles in that order, toggles, a page confirmed by one key, undo, line markers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from itertools import pairwise, zip_longest
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from web_support import (
    ServerProcess,
    ThreadServer,
    chromium,
    chromium_missing,
    end_sessions_of,
    login,
    session_ended_text,
    wait,
    write_predictions_file,
)

from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import write_predictions
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.web import store
from spectraldl.web.app import create_app
from spectraldl.web.auth import add_user
from spectraldl.web.db import Database, open_database
from spectraldl.web.importing import import_predictions, link_predictions, spectrum_row
from spectraldl.web.models import Catalogue, Prediction, User, VetDecision
from spectraldl.web.similarity import ensure_order, grid_page, similarity_order

N_WITHOUT_SPECTRUM = 20
"""Catalogue rows whose spectrum is not stored (ranked last)."""


def build_site(folder: Path) -> tuple[str, int, dict[str, str]]:
    """A SQLite database with alice and bob, the 16 bundled real Ondřejov spectra and a
    catalogue of them (emission and absorption interleaved) plus rows without a spectrum;
    every row a predicted emission candidate with a measured EW. Returns (url, catalogue,
    {ident: "line" or "absorption"})."""
    url = f"sqlite:///{folder / 'web.db'}"
    db = open_database(url)
    files = bundled_files(archive="ondrejov")
    groups: dict[str, str] = {}
    with db.session() as session:
        add_user(session, "alice", "alice-password")
        add_user(session, "bob", "bob-password")
        for item in files:
            row = spectrum_row(read_spectrum(item.path), config=PreprocessConfig())
            session.add(row)
            groups[row.ident] = "absorption" if item.label == "absorption" else "line"
        session.commit()
    lines = [i for i, g in groups.items() if g == "line"]
    absorbing = [i for i, g in groups.items() if g == "absorption"]
    interleaved = [i for pair in zip_longest(absorbing, lines) for i in pair if i]
    idents = interleaved + [f"not-stored-{i}" for i in range(N_WITHOUT_SPECTRUM)]
    frame = write_predictions_file(folder / "pred.parquet", idents, seed=3)
    frame["predicted_class"] = "emission"
    frame["halpha_ew_aa"] = -np.arange(len(idents), dtype=np.float32) - 1.5
    frame["halpha_ew_err_aa"] = np.float32(0.2)
    frame["profile_type"] = "emission"
    frame["halpha_flag"] = ""
    write_predictions(
        folder / "pred.parquet", frame, classes=("emission", "absorption", "double-peak")
    )
    catalogue = import_predictions(db, folder / "pred.parquet").catalogues[0][0]
    db.dispose()
    return url, catalogue, groups


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("grid")
    url, catalogue, groups = build_site(folder)
    db = open_database(url)
    with ThreadServer(create_app(db)) as server:
        yield {"db": db, "url": server.url, "catalogue": catalogue, "groups": groups}
    db.dispose()


def ranked_idents(db: Database, catalogue: int) -> list[str]:
    """The catalogue's idents with a stored spectrum, in their stored similarity order."""
    with db.session() as session:
        query = (
            select(Prediction.ident)
            .where(Prediction.catalogue_id == catalogue, Prediction.spectrum_id.is_not(None))
            .order_by(Prediction.similarity_rank)
        )
        return list(session.scalars(query))


def test_similar_real_spectra_end_up_together(site: dict) -> None:
    db, catalogue, groups = site["db"], site["catalogue"], site["groups"]
    with db.session() as session:
        assert ensure_order(session, catalogue) is True
        assert ensure_order(session, catalogue) is False  # stored: computed once
    order = ranked_idents(db, catalogue)
    assert sorted(order) == sorted(groups)
    sequence = [groups[i] for i in order]
    changes = sum(a != b for a, b in pairwise(sequence))
    assert changes == 1, sequence  # emission and absorption stars each contiguous
    with db.session() as session:
        ranks = session.scalars(
            select(Prediction.similarity_rank)
            .where(Prediction.catalogue_id == catalogue, Prediction.spectrum_id.is_(None))
            .order_by(Prediction.row_index)
        )
        assert list(ranks) == list(range(len(groups), len(groups) + N_WITHOUT_SPECTRUM))
        assert session.get(Catalogue, catalogue).similarity_spectra == len(groups)


def test_the_order_keeps_groups_together_whatever_the_rows_order() -> None:
    files = bundled_files(archive="ondrejov")
    config = PreprocessConfig()
    vectors = np.array([spectrum_row(read_spectrum(f.path), config=config).vector() for f in files])
    absorbing = np.array([f.label == "absorption" for f in files])
    for seed in range(3):
        rows = np.random.default_rng(seed).permutation(len(files))
        order = similarity_order(vectors[rows])
        assert np.array_equal(order, similarity_order(vectors[rows]))  # seeded
        assert sorted(order.tolist()) == list(range(len(files)))
        sequence = absorbing[rows][order]
        assert np.count_nonzero(sequence[1:] != sequence[:-1]) == 1


def test_a_new_stored_spectrum_recomputes_the_order(tmp_path: Path) -> None:
    url, catalogue, groups = build_site(tmp_path)
    db = open_database(url)
    try:
        with db.session() as session:
            assert ensure_order(session, catalogue) is True
        lamost = sorted(f.path for f in bundled_files(archive="lamost"))[0]
        row = spectrum_row(read_spectrum(lamost), config=PreprocessConfig())
        row.ident = "not-stored-0"
        with db.session() as session:
            session.add(row)
            session.flush()
            link_predictions(session)
            session.commit()
            assert ensure_order(session, catalogue) is True
        assert len(ranked_idents(db, catalogue)) == len(groups) + 1
    finally:
        db.dispose()


def test_a_catalogue_without_stored_spectra_keeps_its_rows_order(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'web.db'}")
    try:
        with db.session() as session:
            alice = add_user(session, "alice", "alice-password")
            session.commit()
        write_predictions_file(tmp_path / "p.parquet", [f"far-{i}" for i in range(30)], seed=1)
        catalogue = import_predictions(db, tmp_path / "p.parquet").catalogues[0][0]
        with db.session() as session:
            assert ensure_order(session, catalogue) is True
            page = grid_page(session, user=alice, catalogue_id=catalogue, size=24, classes=None)
            assert ensure_order(session, catalogue) is False
        assert len(page["items"]) == 24 and page["remaining"] == 30
        assert all(item["vector"] is None and item["ew_aa"] is None for item in page["items"])
        with db.session() as session:
            rows = session.scalars(select(Prediction.id).order_by(Prediction.row_index))
            assert [item["id"] for item in page["items"]] == list(rows)[:24]
    finally:
        db.dispose()


@contextlib.contextmanager
def client_of(site: dict, name: str) -> Iterator[httpx.Client]:
    """A logged-in client of ``name`` with the CSRF header set."""
    with httpx.Client(base_url=site["url"], timeout=60) as client:
        client.headers["X-CSRF-Token"] = login(client, name, f"{name}-password")
        yield client


def test_the_grid_json_needs_a_login_and_leaves_out_what_you_vetted(site: dict) -> None:
    path = f"/api/catalogues/{site['catalogue']}/grid"
    assert httpx.get(site["url"] + path).status_code == 401
    with client_of(site, "bob") as bob, client_of(site, "alice") as alice:
        assert bob.get(path, params={"size": 10}).status_code == 422
        assert bob.get(path, params={"size": 49}).status_code == 422
        page = bob.get(path, params={"size": 24}).json()
        items = page["items"]
        assert len(items) == 24 and page["remaining"] == len(site["groups"]) + N_WITHOUT_SPECTRUM
        assert [i["ident"] for i in items[:16]] == ranked_idents(site["db"], site["catalogue"])
        assert all(i["vector"] is None for i in items[16:])  # rows without a spectrum last
        first = items[0]
        assert len(first["vector"]["x"]) == 140 and first["vector"]["start_aa"] == 6519.0
        assert first["predicted_class"] == "emission" and first["ew_aa"] < 0
        vetted = [i["id"] for i in items[:5]]
        stored = bob.post("/api/vet/bulk", json={"prediction_ids": vetted, "verdict": "reject"})
        assert stored.status_code == 201
        after = [i["id"] for i in bob.get(path, params={"size": 24}).json()["items"]]
        assert not set(vetted) & set(after) and after[:19] == [i["id"] for i in items[5:]]
        assert [i["id"] for i in alice.get(path).json()["items"]][:5] == vetted
        skipped = bob.get(path, params={"size": 24, "exclude": ",".join(map(str, after[:3]))})
        assert skipped.json()["items"][0]["id"] == after[3]
        assert bob.get(path, params={"classes": "absorption"}).json()["items"] == []
        assert bob.get("/api/catalogues/9999/grid").status_code == 404


def test_the_grid_page_and_its_links(site: dict) -> None:
    with client_of(site, "alice") as alice:
        page = alice.get(f"/vet/{site['catalogue']}/grid")
        assert page.status_code == 200
        assert 'data-size="48"' in page.text and "/static/grid.js" in page.text
        assert f"/vet/{site['catalogue']}/grid" in alice.get("/vet").text
        assert f"/vet/{site['catalogue']}/grid" in alice.get(f"/vet/{site['catalogue']}").text
        queue = alice.get(
            f"/api/catalogues/{site['catalogue']}/queue", params={"order": "similarity"}
        )
        assert (
            queue.json()["ids"][:3]
            == [
                i["id"]
                for i in alice.get(f"/api/catalogues/{site['catalogue']}/grid").json()["items"]
            ][:3]
        )


# --- in a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if chromium_missing():
        pytest.skip(str(chromium_missing()))
    folder = tmp_path_factory.mktemp("grid-browser")
    url, catalogue, _ = build_site(folder)
    with ServerProcess(url, folder / "server.log") as server:
        driver = chromium(folder / "profile")
        driver.set_page_load_timeout(60)
        try:
            yield {"url": url, "server": server, "catalogue": catalogue, "driver": driver}
        finally:
            driver.quit()


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def tile_ids(driver) -> list[int]:
    script = "return [...document.querySelectorAll('#grid .tile')].map((t) => +t.dataset.id);"
    return driver.execute_script(script)


def my_verdicts(url: str, ids: list[int]) -> dict[int, str]:
    db = open_database(url)
    try:
        with db.session() as session:
            alice = session.scalar(select(User.id).where(User.name == "alice"))
            catalogue = session.scalar(select(Prediction.catalogue_id).limit(1))
            votes = store.verdicts_by_prediction(
                session, catalogue_id=catalogue, user_id=alice, prediction_ids=ids
            )
    finally:
        db.dispose()
    return {pid: v["alice"] for pid, v in votes.items()}


@pytest.mark.browser
def test_a_page_of_tiles_confirmed_with_one_key_toggles_and_undo(served: dict) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, base = served["driver"], served["server"].url
    driver.get(f"{base}/login?next=/vet/{served['catalogue']}/grid%3Fsize%3D24")
    driver.find_element(By.ID, "username").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys("alice-password")
    driver.find_element(By.ID, "login").click()
    first = wait(driver, lambda d: len(tile_ids(d)) == 24 and tile_ids(d))
    with httpx.Client(base_url=base, timeout=60) as client:
        login(client, "alice", "alice-password")
        expected = client.get(f"/api/catalogues/{served['catalogue']}/grid?size=24").json()
    assert first == [i["id"] for i in expected["items"]]  # the similarity order
    assert len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile path.trace")) == 16
    press(driver, "2", Keys.ARROW_RIGHT, " ")  # tiles 2 and 3
    flipped = driver.find_elements(By.CSS_SELECTOR, "#grid .tile.toggled")
    assert [int(t.get_attribute("data-id")) for t in flipped] == first[1:3]
    press(driver, "2")  # toggled back
    press(driver, "2")
    press(driver, "c")
    second = wait(driver, lambda d: tile_ids(d) and tile_ids(d)[0] != first[0] and tile_ids(d))
    assert len(second) == 36 - 24 and not set(second) & set(first)
    wait(driver, lambda d: len(my_verdicts(served["url"], first)) == 24)
    verdicts = my_verdicts(served["url"], first)
    assert {pid for pid, v in verdicts.items() if v == "reject"} == set(first[1:3])
    assert sum(v == "confirm" for v in verdicts.values()) == 22
    timings = driver.execute_script("return window.sdlGridTimings")
    assert [t["kind"] for t in timings[:2]] == ["load", "key"] and timings[0]["tiles"] == 24
    assert all(t["ms"] > 0 for t in timings)
    press(driver, "u")
    wait(driver, lambda d: tile_ids(d) == first)
    assert my_verdicts(served["url"], first) == {}
    db = open_database(served["url"])
    with db.session() as session:
        undone = session.scalars(select(VetDecision).where(VetDecision.undo_of.is_not(None)))
        assert len(list(undone)) == 24
    db.dispose()
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


@pytest.mark.browser
def test_line_markers_toggle_with_l_on_the_grid(served: dict) -> None:
    driver = served["driver"]
    driver.get(f"{served['server'].url}/vet/{served['catalogue']}/grid")
    wait(driver, lambda d: len(tile_ids(d)) == 36)
    script = (
        "return [...document.querySelector('#grid .tile').querySelectorAll('line')]"
        ".filter((l) => getComputedStyle(l).display !== 'none').map((l) => l.dataset.label);"
    )
    assert driver.execute_script(script) == ["Hα"]
    press(driver, "l")
    shown = wait(driver, lambda d: len(d.execute_script(script)) > 1 and d.execute_script(script))
    assert {"Hα", "[N II]", "He I", "[S II]", "sky OH"} <= set(shown)
    assert "sky [O I]" not in shown  # 6300 Å is outside the vector's 6519-6732 Å
    driver.refresh()  # the choice is remembered
    wait(driver, lambda d: len(tile_ids(d)) == 36 and len(d.execute_script(script)) > 1)
    press(driver, "l")
    wait(driver, lambda d: d.execute_script(script) == ["Hα"])


@pytest.mark.browser
def test_a_page_undo_lost_with_the_session_is_counted_at_login_and_offered_again(
    served: dict,
) -> None:
    """The session ends after a page is stored; its undo (`u`) is refused: the login page
    counts it, the verdicts stand, and after the login the page says so and `u` undoes it."""
    from selenium.webdriver.common.by import By

    driver, base = served["driver"], served["server"].url
    driver.get(f"{base}/vet/{served['catalogue']}/grid?size=24")
    if "/login" in driver.current_url:
        driver.find_element(By.ID, "username").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys("alice-password")
        driver.find_element(By.ID, "login").click()
    first = wait(driver, lambda d: len(tile_ids(d)) == 24 and tile_ids(d))
    press(driver, "c")
    wait(driver, lambda d: tile_ids(d) and tile_ids(d)[0] != first[0])
    wait(driver, lambda d: len(my_verdicts(served["url"], first)) == 24)
    end_sessions_of(served["url"], "alice")
    press(driver, "u")
    text = session_ended_text(driver)
    assert text == (
        "Your session ended; your last undo was not done — log in and the page offers it again."
    )
    assert set(my_verdicts(served["url"], first).values()) == {"confirm"}  # they stand
    driver.find_element(By.ID, "username").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys("alice-password")
    driver.find_element(By.ID, "login").click()
    wait(driver, lambda d: tile_ids(d) and tile_ids(d)[0] != first[0])
    assert driver.current_url == f"{base}/vet/{served['catalogue']}/grid?size=24"
    assert driver.find_element(By.ID, "message").text == (
        "Your undo of a page of 24 verdicts was not done: your session had ended. "
        "Press u to undo it now."
    )
    press(driver, "u")
    wait(driver, lambda d: tile_ids(d) == first)
    assert my_verdicts(served["url"], first) == {}
