"""Web tool speed: requests/s of the labelling flow, and key press to next spectrum drawn.

A real server (`spectraldl serve` in its own process) on loopback, filled with
copies of the bundled real Ondřejov spectra. HTTP rows: each labelling flow is
the three requests the page makes per spectrum (next in queue, the spectrum
with its arrays, the label), by 1 and by 4 concurrent labellers; the baseline
is ``GET /api/health`` (the cheapest request) in the same run. Browser rows
(headless Chromium, the system's): the time from a key press to the next
spectrum drawn, measured in the page by performance marks (goal: under
100 ms); the baseline is loading the labelling page for one spectrum (what
a page-per-spectrum tool costs). Counts and times are bounded.

    .venv/bin/python benchmarks/web.py [--flows 300] [--seconds 15] [--keys 40]
        [--db URL] [--json out.json] [--screenshot docs/img/labelling.png]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PASSWORD = "benchmark-password"


def fill(db_url: str, *, n_spectra: int, n_users: int) -> None:
    """Users bench0..N and ``n_spectra`` copies of the bundled Ondřejov spectra."""
    from web_support import ondrejov_files

    from spectraldl.io.archives import read_spectrum
    from spectraldl.prep.preprocess import PreprocessConfig
    from spectraldl.web.auth import hash_password
    from spectraldl.web.db import open_database
    from spectraldl.web.importing import spectrum_row
    from spectraldl.web.models import SpectrumRow, User

    db = open_database(db_url)
    config = PreprocessConfig()
    templates = []
    for path in ondrejov_files():
        row = spectrum_row(read_spectrum(path), config=config)
        templates.append({c.key: getattr(row, c.key) for c in SpectrumRow.__table__.columns})
    with db.session() as session:
        hashed = hash_password(PASSWORD)
        for i in range(n_users):
            session.add(User(name=f"bench{i}", password_hash=hashed, is_admin=i == 0))
        for i in range(n_spectra):
            values = dict(templates[i % len(templates)])
            values.pop("id")
            values["ident"] = f"{values['ident']}#copy{i}"
            session.add(SpectrumRow(**values))
        session.commit()
    db.dispose()


def timed(
    name: str,
    clients: list[Any],
    step: Callable[[Any], int],
    *,
    max_ops: int,
    max_seconds: float,
) -> dict[str, Any]:
    """Run ``step(client)`` from one thread per client until ``max_ops`` or ``max_seconds``.

    ``step`` returns the HTTP requests it made; latencies are per step.
    """
    lock = threading.Lock()
    state = {"ops": 0, "requests": 0}
    latencies: list[float] = []
    deadline = time.perf_counter() + max_seconds

    def worker(client: Any) -> None:
        while time.perf_counter() < deadline:
            with lock:
                if state["ops"] >= max_ops:
                    return
                state["ops"] += 1
            began = time.perf_counter()
            made = step(client)
            with lock:
                state["requests"] += made
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "measure": name,
        "clients": len(clients),
        "requests": state["requests"],
        "seconds": seconds,
        "requests_per_s": state["requests"] / seconds,
        "ms_mean": 1000 * statistics.fmean(ordered),
        "ms_p95": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def http_rows(url: str, *, flows: int, seconds: float) -> list[dict[str, Any]]:
    """The HTTP rows: health (baseline), one spectrum, the labelling flow by 1 and 4 users."""
    import httpx
    from web_support import login

    def client(i: int) -> Any:
        http = httpx.Client(base_url=url, timeout=60)
        http.headers["X-CSRF-Token"] = login(http, f"bench{i}", PASSWORD)
        return http

    pool = [client(i) for i in range(4)]

    def health(c: Any) -> int:
        c.get("/api/health").raise_for_status()
        return 1

    def spectrum(c: Any) -> int:
        c.get("/api/spectra/1").raise_for_status()
        return 1

    def flow(c: Any) -> int:
        ids = c.get("/api/queue", params={"limit": 1}).json()["ids"]
        if not ids:
            raise RuntimeError("the queue ran dry: raise the number of spectra")
        c.get(f"/api/spectra/{ids[0]}").raise_for_status()
        c.post(
            "/api/labels", json={"spectrum_id": ids[0], "label": "absorption"}
        ).raise_for_status()
        return 3

    rows = [
        timed("GET /api/health (baseline)", pool[:1], health, max_ops=flows, max_seconds=seconds),
        timed("GET /api/spectra/{id}", pool[:1], spectrum, max_ops=flows, max_seconds=seconds),
        timed(
            "labelling flow (queue, spectrum, label)",
            pool[:1],
            flow,
            max_ops=flows,
            max_seconds=seconds,
        ),
        timed(
            "labelling flow (queue, spectrum, label)",
            pool,
            flow,
            max_ops=flows,
            max_seconds=seconds,
        ),
    ]
    base = rows[0]["requests_per_s"]
    for row in rows:
        row["vs_health"] = row["requests_per_s"] / base
        if "flow" in row["measure"]:
            row["flows_per_s"] = row["requests_per_s"] / 3
    for http in pool:
        http.close()
    return rows


def log_in(driver: Any, url: str, name: str, password: str) -> None:
    """Log in through the form and wait for the first spectrum to be drawn."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from web_support import current_id

    driver.get(url + "/login?next=/label")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 60, poll_frequency=0.01).until(lambda d: current_id(d) is not None)


def screenshot(path: Path, folder: Path) -> None:
    """The labelling page on the bundled real spectra after three keyboard labels, as PNG."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait
    from web_support import ServerProcess, chromium, current_id, ondrejov_files

    from spectraldl.web.auth import add_user
    from spectraldl.web.db import open_database
    from spectraldl.web.importing import import_fits

    db_url = f"sqlite:///{folder / 'screenshot.db'}"
    db = open_database(db_url)
    with db.session() as session:
        add_user(session, "alice", PASSWORD)
        session.commit()
    import_fits(db, ondrejov_files())
    db.dispose()
    with ServerProcess(db_url, folder / "screenshot.log") as server:
        driver = chromium(folder / "screenshot-profile", width=1400, height=1080)
        try:
            log_in(driver, server.url, "alice", PASSWORD)
            for key in "eaa":  # BT CMi, HD 208905, 17 Sex: the next is gamma Cas
                before = current_id(driver)
                ActionChains(driver).send_keys(key).perform()
                WebDriverWait(driver, 60).until(lambda d, b=before: current_id(d) not in (None, b))
            time.sleep(1.5)  # the progress counts follow the labels within a second
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
        finally:
            driver.quit()
    print(f"screenshot written to {path}")


def browser_rows(url: str, *, keys: int, loads: int, profile: Path) -> list[dict[str, Any]]:
    """The browser rows: page load to spectrum drawn (baseline), key press to next drawn."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait
    from web_support import chromium, current_id

    driver = chromium(profile)
    try:
        log_in(driver, url, "bench0", PASSWORD)
        wait = WebDriverWait(driver, 60, poll_frequency=0.01)
        cycle = "eadun"
        for i in range(keys):
            before = current_id(driver)
            ActionChains(driver).send_keys(cycle[i % len(cycle)]).perform()
            wait.until(lambda d, before=before: current_id(d) not in (None, before))
        key_ms = driver.execute_script("return window.sdlTimings.slice()")
        page_ms = []
        for i in range(loads):
            spectrum_id = 1 + (i * 7) % 16
            driver.get(f"{url}/label/{spectrum_id}")
            wait.until(lambda d, s=spectrum_id: current_id(d) == s)
            page_ms.append(
                wait.until(
                    lambda d: d.execute_script(
                        "const m = performance.getEntriesByName('sdl-drawn', 'mark');"
                        "return m.length ? m[0].startTime : null;"
                    )
                )
            )
    finally:
        driver.quit()

    def row(name: str, values: list[float]) -> dict[str, Any]:
        ordered = sorted(values)
        return {
            "measure": name,
            "n": len(ordered),
            "ms_median": statistics.median(ordered),
            "ms_p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
            "ms_max": ordered[-1],
        }

    rows = [
        row("page load to spectrum drawn (baseline)", page_ms),
        row("key press to next spectrum drawn", key_ms),
    ]
    for r in rows:
        r["vs_page_load"] = r["ms_median"] / rows[0]["ms_median"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=300, help="most operations per HTTP row")
    parser.add_argument("--seconds", type=float, default=15.0, help="most seconds per HTTP row")
    parser.add_argument("--keys", type=int, default=40, help="key presses timed in the browser")
    parser.add_argument("--loads", type=int, default=10, help="page loads timed (baseline)")
    parser.add_argument("--spectra", type=int, default=2000, help="spectra in the database")
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser rows")
    parser.add_argument("--screenshot", type=Path, help="save the labelling page as PNG here")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    from web_support import ServerProcess, chromium_missing

    with tempfile.TemporaryDirectory(prefix="spectraldl-bench-web-") as tmp:
        db_url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        fill(db_url, n_spectra=args.spectra, n_users=4)
        dialect = db_url.split(":", 1)[0]
        with ServerProcess(db_url, Path(tmp) / "server.log") as server:
            http = http_rows(server.url, flows=args.flows, seconds=args.seconds)
            missing = chromium_missing()
            browser: list[dict[str, Any]] = []
            if args.no_browser or missing:
                print(f"browser rows skipped: {missing or '--no-browser'}")
            else:
                browser = browser_rows(
                    server.url,
                    keys=args.keys,
                    loads=args.loads,
                    profile=Path(tmp) / "profile",
                )
        if args.screenshot is not None and not missing:
            screenshot(args.screenshot, Path(tmp))
    print_table(
        f"Web tool, HTTP on loopback ({dialect}, {args.spectra} spectra, "
        f"at most {args.flows} operations or {args.seconds:.0f} s per row)",
        http,
        [
            "measure",
            "clients",
            "requests",
            "seconds",
            "requests_per_s",
            "flows_per_s",
            "ms_mean",
            "ms_p95",
            "vs_health",
        ],
    )
    if browser:
        print_table(
            "Web tool in headless Chromium (goal: key press to next spectrum under 100 ms)",
            browser,
            ["measure", "n", "ms_median", "ms_p90", "ms_max", "vs_page_load"],
        )
    write_json(args.json, "web", [*http, *browser], database=dialect, spectra=args.spectra)


if __name__ == "__main__":
    main()
