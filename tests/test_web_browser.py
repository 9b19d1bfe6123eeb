"""The web tool in a real headless Chromium (the system's /usr/bin/chromium via Selenium):
log in, label with the keyboard, undo, step back, vet candidates, check the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import select
from web_support import (
    ServerProcess,
    chromium,
    chromium_missing,
    current_id,
    end_sessions_of,
    ondrejov_files,
    session_ended_text,
    wait,
    write_predictions_file,
)

from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.io.archives.ondrejov import PUBLISHER_ID_PREFIX, observation_key, other_form_ident
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import write_predictions
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.web import store
from spectraldl.web.auth import add_user, end_user_sessions
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_fits, import_predictions, spectrum_row
from spectraldl.web.models import LabelDecision, Prediction, SpectrumRow, User, VetDecision

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]

XSS = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server with alice, the bundled Ondřejov spectra, one hostile name and a catalogue."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'web.db'}"
    db = open_database(url)
    with db.session() as session:
        add_user(session, "alice", "alice-password", admin=True)
        session.commit()
    import_fits(db, ondrejov_files())
    first = read_spectrum(ondrejov_files()[0])
    lamost = read_spectrum(sorted(f.path for f in bundled_files(archive="lamost"))[0])
    hostile = Spectrum(
        wave_aa=first.wave_aa,
        flux=first.flux,
        medium=first.medium,
        meta=dataclasses.replace(first.meta, id="hostile-name", object=XSS),
    )
    with db.session() as session:
        session.add(spectrum_row(hostile, config=PreprocessConfig()))
        session.add(spectrum_row(lamost, config=PreprocessConfig()))
        session.commit()
        idents = list(session.scalars(select(SpectrumRow.ident).order_by(SpectrumRow.id)))
    frame = write_predictions_file(folder / "pred.parquet", idents[:12], seed=7)
    frame["halpha_ew_aa"] = np.float32(-12.5)  # measured lines, shown beside the facts
    frame["halpha_ew_err_aa"] = np.float32(0.25)
    frame["halpha_fwhm_kms"] = np.float32(310.0)
    frame["profile_type"] = "emission"
    frame["halpha_flag"] = ""
    write_predictions(
        folder / "pred.parquet", frame, classes=("emission", "absorption", "double-peak")
    )
    catalogue_id = import_predictions(db, folder / "pred.parquet").catalogues[0][0]
    db.dispose()
    with ServerProcess(url, folder / "server.log") as server:
        yield {"url": url, "server": server, "catalogue": catalogue_id, "folder": folder}


@pytest.fixture(scope="module")
def browser(site: dict) -> Iterator[object]:
    driver = chromium(site["folder"] / "profile")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def press_and_wait_for_next(driver, key: str) -> int:
    before = current_id(driver)
    press(driver, key)
    return wait(driver, lambda d: current_id(d) not in (None, before) and current_id(d))


def log_in(browser, site: dict) -> None:
    """Open the labelling page, logging in through the form when asked to."""
    from selenium.webdriver.common.by import By

    browser.get(site["server"].url + "/label")
    if "/login" in browser.current_url:
        browser.find_element(By.ID, "username").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys("alice-password")
        browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: current_id(d) is not None)


def test_label_with_the_keyboard_undo_and_step_back(browser, site: dict) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(site["server"].url + "/label")
    assert "/login" in browser.current_url
    log_in(browser, site)
    assert browser.current_url.endswith("/label")
    shown = [current_id(browser)]
    for key in ("e", "a", "d", "2"):
        shown.append(press_and_wait_for_next(browser, key))
    labelled = shown[:4]
    assert len(set(shown)) == 5
    # Undo the last decision: the page goes back to that spectrum, without a label.
    press(browser, "z")
    wait(browser, lambda d: current_id(d) == labelled[3])
    wait(browser, lambda d: d.find_element(By.ID, "mine").text == "none")
    assert "undone" in browser.find_element(By.CSS_SELECTOR, "#recent li").get_attribute("class")
    press(browser, Keys.ARROW_LEFT)
    wait(browser, lambda d: current_id(d) == labelled[2])
    wait(browser, lambda d: d.find_element(By.ID, "mine").text == "double-peak")
    status = browser.find_element(By.ID, "status").text
    assert "this session: 3" in status
    timings = browser.execute_script("return window.sdlTimings")
    assert len(timings) >= 4 and all(t > 0 for t in timings)
    browser.save_screenshot(str(site["folder"] / "label.png"))
    assert (site["folder"] / "label.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    db = open_database(site["url"])
    with db.session() as session:
        rows = list(session.scalars(select(LabelDecision).order_by(LabelDecision.id)))
        current = {c.spectrum_id: c.label for c in store.current_labels(session)}
    db.dispose()
    assert [(r.spectrum_id, r.label) for r in rows] == [
        (labelled[0], "emission"),
        (labelled[1], "absorption"),
        (labelled[2], "double-peak"),
        (labelled[3], "absorption"),
        (labelled[3], None),
    ]
    assert rows[-1].undo_of == rows[-2].id
    assert current == {
        labelled[0]: "emission",
        labelled[1]: "absorption",
        labelled[2]: "double-peak",
    }
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_html_in_an_object_name_is_shown_as_text(browser, site: dict) -> None:
    from selenium.webdriver.common.by import By

    db = open_database(site["url"])
    with db.session() as session:
        hostile = session.scalar(select(SpectrumRow.id).where(SpectrumRow.ident == "hostile-name"))
    db.dispose()
    log_in(browser, site)
    browser.get(f"{site['server'].url}/label/{hostile}")
    wait(browser, lambda d: current_id(d) == hostile)
    assert browser.find_element(By.ID, "title").text == XSS
    browser.get(f"{site['server'].url}/spectra?q=hostile")
    cell = browser.find_element(By.CSS_SELECTOR, "#spectra td.object")
    assert cell.text == XSS
    assert browser.execute_script("return window.__xss === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []


def test_vet_candidates_with_the_keyboard(browser, site: dict) -> None:
    from selenium.webdriver.common.by import By

    log_in(browser, site)
    browser.get(f"{site['server'].url}/vet/{site['catalogue']}?order=novelty&classes=")
    wait(browser, lambda d: current_id(d) is not None)
    seen = [current_id(browser)]
    for key in ("c", "r", "n"):
        seen.append(press_and_wait_for_next(browser, key))
    title = browser.find_element(By.ID, "title").text
    assert "predicted" in title
    facts = browser.find_element(By.ID, "facts").text
    assert "Hα EW\n-12.50 ± 0.25 Å" in facts and "emission" in facts and "310 km/s" in facts
    db = open_database(site["url"])

    def stored() -> list[tuple[int, str]]:
        with db.session() as session:
            return [
                (v.prediction_id, v.verdict)
                for v in session.scalars(select(VetDecision).order_by(VetDecision.id))
            ]

    wait(browser, lambda d: len(stored()) == 3)
    assert stored() == [(seen[0], "confirm"), (seen[1], "reject"), (seen[2], "noise")]
    with db.session() as session:
        novelty = {
            p.id: p.novelty
            for p in session.scalars(
                select(Prediction).where(Prediction.catalogue_id == site["catalogue"])
            )
        }
    db.dispose()
    ranked = sorted(novelty, key=lambda i: -novelty[i])
    assert seen == ranked[:4]


def test_the_counter_follows_an_undo(browser, site: dict) -> None:
    import re

    from selenium.webdriver.common.by import By

    log_in(browser, site)

    def labelled_by_me(driver) -> int | None:
        found = re.search(r"you: (\d+) of", driver.find_element(By.ID, "status").text)
        return int(found.group(1)) if found else None

    before = wait(browser, labelled_by_me)
    press_and_wait_for_next(browser, "e")
    wait(browser, lambda d: labelled_by_me(d) == before + 1)
    press(browser, "z")
    wait(browser, lambda d: labelled_by_me(d) == before)


def test_the_zoom_caption_and_the_archive_choice(browser, site: dict) -> None:
    from selenium.webdriver.common.by import By

    db = open_database(site["url"])
    with db.session() as session:
        lamost = session.scalar(select(SpectrumRow.id).where(SpectrumRow.archive == "lamost"))
        ondrejov = session.scalar(select(SpectrumRow.id).where(SpectrumRow.archive == "ondrejov"))
    db.dispose()
    log_in(browser, site)
    browser.find_element(By.CSS_SELECTOR, '#archives a[data-archive="lamost"]').click()
    wait(browser, lambda d: current_id(d) == lamost)
    caption = browser.find_element(By.ID, "zoom-caption").text
    assert "orange" not in caption and "unblurred" in caption
    browser.get(f"{site['server'].url}/label/{ondrejov}")
    wait(browser, lambda d: current_id(d) == ondrejov)
    wait(browser, lambda d: "orange" in d.find_element(By.ID, "zoom-caption").text)


def test_the_label_page_links_the_other_form_of_an_exposure(browser, site: dict) -> None:
    from selenium.webdriver.common.by import By

    db = open_database(site["url"])
    with db.session() as session:
        ids = {ident: i for i, ident in session.execute(select(SpectrumRow.id, SpectrumRow.ident))}
    db.dispose()
    ssap = next(i for i in ids if i.startswith(PUBLISHER_ID_PREFIX) and observation_key(i) in ids)
    raw = observation_key(ssap)
    alone = next(i for ident, i in ids.items() if other_form_ident(ident) not in ids)

    def other_form(driver) -> str:
        line = driver.find_element(By.ID, "other-form")
        return line.text if line.is_displayed() else ""

    log_in(browser, site)
    browser.get(f"{site['server'].url}/label/{ids[ssap]}")
    wait(browser, lambda d: current_id(d) == ids[ssap] and "also stored as " + raw in other_form(d))
    browser.find_element(By.CSS_SELECTOR, "#other-form a").click()
    wait(browser, lambda d: current_id(d) == ids[raw] and "also stored as " + ssap in other_form(d))
    browser.get(f"{site['server'].url}/label/{alone}")
    wait(browser, lambda d: current_id(d) == alone)
    assert other_form(browser) == ""


def test_line_markers_toggle_with_a_key_in_every_view(browser, site: dict) -> None:
    log_in(browser, site)
    browser.get(f"{site['server'].url}/vet/{site['catalogue']}?classes=")
    wait(browser, lambda d: current_id(d) is not None)
    script = (
        "const v = window.sdlViewer; return [v.full, v.zoom, v.vector].map("
        "(p) => p.markers.map((m) => [m.x, m.label]));"
    )
    wait(browser, lambda d: d.execute_script(script)[2])
    before = browser.execute_script(script)
    assert [len(view) for view in before] == [1, 1, 1]  # H-alpha only
    press(browser, "l")
    shown = wait(
        browser, lambda d: len(d.execute_script(script)[2]) > 1 and d.execute_script(script)
    )
    for view in shown:
        labels = [label for _, label in view]
        assert {"Hα", "[N II]", "He I", "[S II]", "sky [O I]", "sky OH"} <= set(labels)
    full_nii = [x for x, label in shown[0] if label == "[N II]"]
    vector_nii = [x for x, label in shown[2] if label == "[N II]"]
    medium = browser.execute_script("return window.sdlViewer.spec.medium")
    if medium == "air":  # the Ondřejov spectra: air in the first views, vacuum in the vector's
        assert min(full_nii) == pytest.approx(6548.05) and max(full_nii) == pytest.approx(6583.45)
    assert max(vector_nii) == pytest.approx(6585.27, abs=0.01)
    next_id = press_and_wait_for_next(browser, "j")  # the choice stays for the next spectrum
    assert next_id and len(browser.execute_script(script)[1]) > 1
    press(browser, "l")
    wait(browser, lambda d: [len(v) for v in d.execute_script(script)] == [1, 1, 1])


def test_a_note_and_flags_from_the_vetting_page(browser, site: dict) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    log_in(browser, site)
    browser.get(f"{site['server'].url}/vet/{site['catalogue']}?classes=")
    shown = wait(browser, lambda d: current_id(d))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#note-flags input[value=nebular]"))
    ident = browser.execute_script("return window.sdlStepper.current.ident")
    press(browser, "m")
    wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "note-text")
    press(browser, "c and r are text here")
    browser.find_element(By.CSS_SELECTOR, "#note-flags input[value=nebular]").click()
    browser.find_element(By.ID, "note-extra").send_keys("odd-core")
    browser.find_element(By.CSS_SELECTOR, "#notes-panel button[type=submit]").click()
    wait(browser, lambda d: d.find_element(By.ID, "note-state").text == "saved")
    assert current_id(browser) == shown  # typing did not vet
    db = open_database(site["url"])
    try:
        with db.session() as session:
            notes = store.search_notes(session, idents=[ident])[0]
    finally:
        db.dispose()
    assert notes[0]["text"] == "c and r are text here"
    assert notes[0]["flags"] == ["nebular", "odd-core"]
    press(browser, Keys.ESCAPE)
    press_and_wait_for_next(browser, "j")
    assert browser.find_element(By.ID, "note-text").get_attribute("value") == ""


def test_a_decision_lost_with_the_session_is_reported_at_login(browser, site: dict) -> None:
    """A session ended under the labelling page (expiry, password change): the key pressed
    next is not stored, the login page says so, and logging in returns to the page."""
    from selenium.webdriver.common.by import By

    log_in(browser, site)
    browser.get(site["server"].url + "/label?mode=nobody")
    wait(browser, lambda d: current_id(d) is not None)
    press_and_wait_for_next(browser, "e")
    db = open_database(site["url"])

    def decisions() -> int:
        with db.session() as session:
            return len(list(session.scalars(select(LabelDecision.id))))

    wait(browser, lambda d: "this session: 1" in d.find_element(By.ID, "status").text)
    stored = decisions()
    with db.session() as session:
        alice = session.scalar(select(User).where(User.name == "alice"))
        end_user_sessions(session, alice)
        session.commit()
    press(browser, "a")
    text = session_ended_text(browser)
    assert text == (
        "Your session ended; your last decision was not saved — log in and make it again."
    )
    assert decisions() == stored
    db.dispose()
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("alice-password")
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: current_id(d) is not None)
    assert browser.current_url == site["server"].url + "/label?mode=nobody"


NEBULAR = "#note-flags input[value=nebular]"
"""The note panel's checkbox of the flag `nebular`."""


def form_login(browser, name: str, password: str) -> None:
    """Log in through the login page the browser shows."""
    from selenium.webdriver.common.by import By

    wait(browser, lambda d: "/login" in d.current_url and d.find_elements(By.ID, "username"))
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()


def notes_of(url: str, ident: str) -> list[dict]:
    """Everyone's notes on a spectrum, from the database."""
    db = open_database(url)
    try:
        with db.session() as session:
            return store.search_notes(session, idents=[ident])[0]
    finally:
        db.dispose()


def panel_of(browser, ident: str) -> tuple[str, str]:
    """The note panel's text and state line, once it shows the notes of ``ident``."""
    from selenium.webdriver.common.by import By

    script = "return document.getElementById('notes-panel').dataset.shown"
    wait(browser, lambda d: d.execute_script(script) == ident)
    text = browser.find_element(By.ID, "note-text").get_attribute("value")
    return text, browser.find_element(By.ID, "note-state").text


def save_note_with_ctrl_enter(browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.find_element(By.ID, "note-text").click()
    ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(
        Keys.CONTROL
    ).perform()


def test_a_note_typed_when_the_session_ended_survives_the_login(browser, site: dict) -> None:
    """The session cookie is gone when a note is saved: the page goes to the login page,
    which says the note is kept; bob, logging in on the same browser, never sees it; alice,
    logging in, is back on the spectrum with her text and flag, and saving stores them."""
    from selenium.webdriver.common.by import By

    db = open_database(site["url"])
    with db.session() as session:
        if session.scalar(select(User).where(User.name == "bob")) is None:
            add_user(session, "bob", "bob-password")
            session.commit()
    db.dispose()
    log_in(browser, site)
    browser.get(site["server"].url + "/label?mode=nobody")
    shown = wait(browser, lambda d: current_id(d))
    ident = browser.execute_script("return window.sdlStepper.current.ident")
    assert panel_of(browser, ident)[0] == ""
    press(browser, "m")
    wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "note-text")
    press(browser, "broad wings; check the blue side")
    browser.find_element(By.CSS_SELECTOR, NEBULAR).click()
    browser.delete_cookie("spectraldl_session")  # the login is gone
    browser.find_element(By.CSS_SELECTOR, "#notes-panel button[type=submit]").click()
    text = session_ended_text(browser)
    assert text == (
        "Your session ended; log in again to go on. Your unsaved note is kept in this tab: "
        "it comes back with its spectrum when you log in."
    )
    assert notes_of(site["url"], ident) == []
    form_login(browser, "bob", "bob-password")  # someone else on this browser
    wait(browser, lambda d: current_id(d) is not None)
    browser.get(f"{site['server'].url}/label/{shown}")
    assert panel_of(browser, ident) == ("", "")
    assert not browser.find_element(By.CSS_SELECTOR, NEBULAR).is_selected()
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    form_login(browser, "alice", "alice-password")
    wait(browser, lambda d: current_id(d) == shown)  # back on the spectrum of the note
    text, state = panel_of(browser, ident)
    assert text == "broad wings; check the blue side"
    assert state.startswith("unsaved draft kept from before")
    assert browser.find_element(By.CSS_SELECTOR, NEBULAR).is_selected()
    assert notes_of(site["url"], ident) == []
    save_note_with_ctrl_enter(browser)
    wait(browser, lambda d: d.find_element(By.ID, "note-state").text == "saved")
    (note,) = notes_of(site["url"], ident)
    assert (note["user"], note["text"], note["flags"]) == (
        "alice",
        "broad wings; check the blue side",
        ["nebular"],
    )
    browser.refresh()  # saved: no draft is kept any more
    wait(browser, lambda d: current_id(d) is not None)
    browser.get(f"{site['server'].url}/label/{shown}")
    assert panel_of(browser, ident) == ("broad wings; check the blue side", "")
    assert browser.execute_script("return sessionStorage.length") == 0


def test_a_note_on_the_vetting_page_survives_a_session_ended_on_the_server(
    browser, site: dict
) -> None:
    """The server ends alice's logins while she writes a note on a candidate: after the
    login she is back on the candidate with her text, and saving it stores it."""
    from selenium.webdriver.common.by import By

    log_in(browser, site)
    browser.get(f"{site['server'].url}/vet/{site['catalogue']}?classes=")
    wait(browser, lambda d: current_id(d) is not None)
    shown = press_and_wait_for_next(browser, "j")  # not the queue's first: it comes back to it
    ident = browser.execute_script("return window.sdlStepper.current.ident")
    panel_of(browser, ident)
    press(browser, "m")
    wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "note-text")
    press(browser, "a companion line at 6678?")
    end_sessions_of(site["url"], "alice")
    save_note_with_ctrl_enter(browser)
    form_login(browser, "alice", "alice-password")
    wait(browser, lambda d: current_id(d) == shown)
    assert browser.current_url == f"{site['server'].url}/vet/{site['catalogue']}?classes="
    text, state = panel_of(browser, ident)
    assert text.endswith("a companion line at 6678?")
    assert state.startswith("unsaved draft kept from before")
    browser.find_element(By.CSS_SELECTOR, "#notes-panel button[type=submit]").click()
    wait(browser, lambda d: d.find_element(By.ID, "note-state").text == "saved")
    mine = [n for n in notes_of(site["url"], ident) if n["user"] == "alice"]
    assert [n["text"] for n in mine] == [text]


def test_a_note_draft_survives_a_reload_until_discarded(browser, site: dict) -> None:
    """A note typed and not saved comes back after a reload of the page; discarding it
    shows the saved note again and keeps nothing."""
    from selenium.webdriver.common.by import By

    log_in(browser, site)
    shown = current_id(browser)
    browser.get(f"{site['server'].url}/label/{shown}")
    wait(browser, lambda d: current_id(d) == shown)
    ident = browser.execute_script("return window.sdlStepper.current.ident")
    saved, _ = panel_of(browser, ident)
    press(browser, "m")
    wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "note-text")
    press(browser, " half typed")
    browser.refresh()
    text, state = panel_of(browser, ident)
    assert text == saved + " half typed" and state.startswith("unsaved draft kept from before")
    browser.find_element(By.ID, "note-discard").click()
    assert browser.find_element(By.ID, "note-text").get_attribute("value") == saved
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.refresh()
    assert panel_of(browser, ident) == (saved, "")


def test_logging_out_on_purpose_asks_then_discards_what_the_tab_kept(browser, site: dict) -> None:
    """A draft kept in the tab's storage outlived an explicit log out, where the next person at
    the browser could read it with its developer tools: logging out now asks, then drops it."""
    from selenium.webdriver.common.by import By

    alices = "return Object.keys(sessionStorage).filter(k => k.startsWith('sdl-kept:[\"alice\",'))"
    log_in(browser, site)
    shown = current_id(browser)
    browser.get(f"{site['server'].url}/label/{shown}")
    wait(browser, lambda d: current_id(d) == shown)
    press(browser, "m")
    wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "note-text")
    press(browser, " not for bob")
    kept = wait(browser, lambda d: d.execute_script(alices))
    assert len(kept) == 1
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    alert = wait(browser, lambda d: d.switch_to.alert)
    assert "1 unsaved thing(s) of yours" in alert.text
    alert.dismiss()  # stays logged in, the draft kept
    assert "/login" not in browser.current_url
    assert browser.execute_script(alices) == kept
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(browser, lambda d: d.switch_to.alert).accept()
    wait(browser, lambda d: "/login" in d.current_url)
    assert browser.execute_script(alices) == []


def test_an_undo_lost_with_the_session_is_counted_at_login_and_offered_again(
    browser, site: dict
) -> None:
    """The session ends after a label is saved; its undo (`z`) is refused: the login page
    counts it, the label stands, and after the login the page says so and `z` undoes it."""
    from selenium.webdriver.common.by import By

    log_in(browser, site)
    browser.get(site["server"].url + "/label?mode=nobody")
    labelled = wait(browser, lambda d: current_id(d))
    press_and_wait_for_next(browser, "e")
    wait(browser, lambda d: "this session: 1" in d.find_element(By.ID, "status").text)
    db = open_database(site["url"])

    def decisions() -> list[tuple[str | None, int | None]]:
        with db.session() as session:
            rows = session.execute(
                select(LabelDecision.label, LabelDecision.undo_of)
                .where(LabelDecision.spectrum_id == labelled)
                .order_by(LabelDecision.id)
            )
            return [tuple(row) for row in rows]

    made = decisions()
    assert made[-1] == ("emission", None)
    end_sessions_of(site["url"], "alice")
    press(browser, "z")
    text = session_ended_text(browser)
    assert text == (
        "Your session ended; your last undo was not done — log in and the page offers it again."
    )
    assert decisions() == made  # the label stands
    form_login(browser, "alice", "alice-password")
    wait(browser, lambda d: current_id(d) is not None)
    message = browser.find_element(By.ID, "message").text
    offer = "→ emission was not done: your session had ended. Press z to undo it now."
    assert message.startswith("Your undo of ") and message.endswith(offer)
    press(browser, "z")
    wait(browser, lambda d: current_id(d) == labelled)
    wait(browser, lambda d: len(decisions()) == len(made) + 1)
    assert decisions()[-1][1] is not None  # an undo row
    wait(browser, lambda d: d.find_element(By.ID, "mine").text == "none")
    db.dispose()
