"""Web tool speed: requests/s of the labelling flow, and key press to next spectrum drawn.

A real server (`spectraldl serve` in its own process) on loopback, filled with
copies of the bundled real Ondřejov spectra. HTTP rows: each labelling flow is
the three requests the page makes per spectrum (next in queue, the spectrum
with its arrays, the label), by 1 and by 4 concurrent labellers; the baseline
is ``GET /api/health`` (the cheapest request) in the same run. Browser rows
(headless Chromium, the system's): the time from a key press to the next
spectrum drawn, measured in the page by performance marks (goal: under
100 ms); the baseline is loading the labelling page for one spectrum (what
a page-per-spectrum tool costs). Vetting rows: key presses per verdict on
the single vetting view and on the grid view (the keys the benchmark sends
over the verdicts stored), a grid page of 48 tiles drawn (goal: under
300 ms); with ``--scale N``, a catalogue of N candidates with stored vectors
uploaded and imported, its similarity order, grid pages, bulk vetting all of
it 500 a call, and the precision endpoint on its N verdicts (goal: under
200 ms). Counts and times are bounded.

    .venv/bin/python benchmarks/web.py [--flows 300] [--seconds 15] [--keys 40]
        [--grid-pages 20] [--scale 100000] [--db URL] [--json out.json]
        [--screenshot docs/img/labelling.png]
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


# --- vetting at survey scale: the grid view, bulk verdicts, precision -----------------------


def spread(name: str, values: list[float], **extra: Any) -> dict[str, Any]:
    """A row of a sample of times (ms): its count, median, 95th percentile and worst."""
    ordered = sorted(values)
    return {
        "measure": name,
        **extra,
        "n": len(ordered),
        "ms_median": statistics.median(ordered),
        "ms_p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "ms_max": ordered[-1],
    }


def candidates_file(path: Path, idents: list[str]) -> Path:
    """A predictions file of ``idents``, every row a candidate with a measured EW, written as
    `spectraldl classify` writes it (the importer's format)."""
    import numpy as np
    from web_support import write_predictions_file

    from spectraldl.io.predictions import write_predictions

    classes = ("emission", "double-peak", "absorption")
    frame = write_predictions_file(path, idents, classes=classes, seed=11)
    frame["predicted_class"] = np.where(np.arange(len(idents)) % 5 == 4, "double-peak", "emission")
    frame["halpha_ew_aa"] = np.random.default_rng(3).uniform(-60, -1, len(idents)).astype("f4")
    frame["halpha_ew_err_aa"] = np.float32(0.3)
    frame["profile_type"] = "emission"
    frame["halpha_flag"] = ""
    write_predictions(path, frame, classes=classes)
    return path


def grid_catalogue(db_url: str, folder: Path) -> int:
    """A catalogue of every stored spectrum (all candidates) for the grid rows; its id."""
    from sqlalchemy import select

    from spectraldl.web.db import open_database
    from spectraldl.web.importing import import_predictions
    from spectraldl.web.models import SpectrumRow

    db = open_database(db_url)
    with db.session() as session:
        idents = list(session.scalars(select(SpectrumRow.ident).order_by(SpectrumRow.id)))
    path = candidates_file(folder / "grid-candidates.parquet", idents)
    catalogue = import_predictions(db, path).catalogues[0][0]
    db.dispose()
    return catalogue


def verdicts_of(db_url: str, user: str) -> int:
    """Verdicts ``user`` has stored (rows, undo rows left out)."""
    from sqlalchemy import func, select

    from spectraldl.web.db import open_database
    from spectraldl.web.models import User, VetDecision

    db = open_database(db_url)
    with db.session() as session:
        query = (
            select(func.count(VetDecision.id))
            .join(User, User.id == VetDecision.user_id)
            .where(User.name == user, VetDecision.undo_of.is_(None))
        )
        count = int(session.scalar(query) or 0)
    db.dispose()
    return count


def grid_keys(driver: Any, url: str, catalogue: int, *, pages: int) -> tuple[int, list[dict]]:
    """Vet ``pages`` grid pages: page p flips tiles 1..(p mod 4) and is confirmed with `c`;
    the keys sent and the page's timings (`window.sdlGridTimings`)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    ids = "return [...document.querySelectorAll('#grid .tile')].map((t) => +t.dataset.id);"
    wait = WebDriverWait(driver, 60, poll_frequency=0.01)
    driver.get(f"{url}/vet/{catalogue}/grid")
    wait.until(lambda d: len(d.execute_script(ids)) == 48)
    keys = 0
    for page in range(pages):
        sequence = "".join(str(t) for t in range(1, 1 + page % 4)) + "c"
        before = driver.execute_script(ids)[0]
        ActionChains(driver).send_keys(sequence).perform()
        keys += len(sequence)
        wait.until(lambda d, b=before: (d.execute_script(ids) or [b])[0] != b)
    return keys, driver.execute_script("return window.sdlGridTimings.slice()")


def single_keys(driver: Any, url: str, catalogue: int, *, verdicts: int) -> int:
    """Vet ``verdicts`` candidates on the single view with `c`; the keys sent."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait
    from web_support import current_id

    wait = WebDriverWait(driver, 60, poll_frequency=0.01)
    driver.get(f"{url}/vet/{catalogue}?order=similarity")
    wait.until(lambda d: current_id(d) is not None)
    for _ in range(verdicts):
        before = current_id(driver)
        ActionChains(driver).send_keys("c").perform()
        wait.until(lambda d, b=before: current_id(d) not in (None, b))
    return verdicts


def grid_browser_rows(
    url: str, db_url: str, catalogue: int, *, pages: int, loads: int, profile: Path
) -> list[dict[str, Any]]:
    """Key presses per verdict on the single and the grid view (from the keys sent and the
    verdicts stored), and the grid page of 48 tiles drawn (performance marks)."""
    from selenium.webdriver.support.ui import WebDriverWait
    from web_support import chromium

    driver = chromium(profile)
    try:
        log_in(driver, url, "bench1", PASSWORD)
        single = single_keys(driver, url, catalogue, verdicts=20)
        grid, timings = grid_keys(driver, url, catalogue, pages=pages)
        loaded = [t for t in timings if t["kind"] == "load"]
        ids = "return window.sdlGridTimings.filter((t) => t.kind === 'load')"
        for _ in range(loads - 1):
            driver.refresh()
            loaded += WebDriverWait(driver, 60, poll_frequency=0.01).until(
                lambda d: d.execute_script(ids) or None
            )
        deadline = time.monotonic() + 60
        while verdicts_of(db_url, "bench1") < single + 48 * pages and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        driver.quit()
    stored = verdicts_of(db_url, "bench1")
    rows = [
        {"measure": "key presses per verdict", "view": "single", "keys": single},
        {"measure": "key presses per verdict", "view": "grid", "keys": grid},
    ]
    rows[0]["verdicts"], rows[1]["verdicts"] = single, stored - single
    for row in rows:
        row["keys_per_verdict"] = row["keys"] / row["verdicts"]
    keyed = [t["ms"] for t in timings if t["kind"] == "key" and t["tiles"] == 48]
    return [
        *rows,
        spread("grid page of 48 tiles: key press to drawn", keyed),
        spread("grid page of 48 tiles: JSON arrival to drawn", [t["ms"] for t in loaded]),
    ]


def vector_only_spectra(db_url: str, n: int) -> list[str]:
    """Store ``n`` vector-only spectra (as a dataset import stores them): the bundled real
    Ondřejov vectors with a little noise each; their idents."""
    import numpy as np
    from sqlalchemy import insert
    from web_support import ondrejov_files

    from spectraldl.io.archives import read_spectrum
    from spectraldl.prep.preprocess import PreprocessConfig
    from spectraldl.web.db import open_database
    from spectraldl.web.importing import spectrum_row
    from spectraldl.web.models import SpectrumRow

    config = PreprocessConfig()
    templates = [spectrum_row(read_spectrum(p), config=config) for p in ondrejov_files()]
    rng = np.random.default_rng(0)
    db = open_database(db_url)
    idents = [f"scale-{i:06d}" for i in range(n)]
    for start in range(0, n, 5000):
        rows = []
        for i in range(start, min(n, start + 5000)):
            t = templates[i % len(templates)]
            noisy = t.vector() + rng.normal(0, 0.1, t.vector().shape).astype("f4")
            rows.append(
                {c.key: getattr(t, c.key) for c in SpectrumRow.__table__.columns if c.key != "id"}
                | {"ident": idents[i], "wave": None, "flux": None, "x": noisy.tobytes()}
            )
        with db.session() as session:
            session.execute(insert(SpectrumRow.__table__), rows)
            session.commit()
    db.dispose()
    return idents


def upload(client: Any, path: Path) -> tuple[int, float]:
    """Upload a catalogue and wait for its import; (catalogue id, seconds)."""
    began = time.perf_counter()
    with path.open("rb") as handle:
        answer = client.post(
            "/api/catalogues", params={"wait": 60}, files={"file": (path.name, handle)}
        )
    answer.raise_for_status()
    body = answer.json()
    while answer.status_code == 202:
        time.sleep(0.2)
        body = client.get(f"/api/imports/{body['job']}").json()
        if body["status"] == "failed":
            raise RuntimeError(body["error"])
        if body["status"] == "done":
            body["id"] = body["catalogue_id"]
            break
    return int(body["id"]), time.perf_counter() - began


def timed_get(client: Any, path: str, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` GETs of ``path``."""
    out = []
    for _ in range(repeats):
        began = time.perf_counter()
        client.get(path).raise_for_status()
        out.append(1000 * (time.perf_counter() - began))
    return out


def bulk_vet(client: Any, ids: list[int], page: int = 500) -> tuple[float, list[float]]:
    """Vet every id through `POST /api/vet/bulk`, ``page`` a call (every third page
    rejected); total seconds and ms per call."""
    calls = []
    began = time.perf_counter()
    for n, start in enumerate(range(0, len(ids), page)):
        verdict = "reject" if n % 3 == 2 else "confirm"
        t0 = time.perf_counter()
        body = {"prediction_ids": ids[start : start + page], "verdict": verdict}
        client.post("/api/vet/bulk", json=body).raise_for_status()
        calls.append(1000 * (time.perf_counter() - t0))
    return time.perf_counter() - began, calls


def scale_rows(folder: Path, n: int) -> list[dict[str, Any]]:
    """A catalogue of ``n`` candidates with stored vectors: upload and import, the grid's
    similarity order and pages, bulk vetting all of it, the precision endpoint."""
    import httpx
    from sqlalchemy import select
    from web_support import ServerProcess, login

    from spectraldl.web.db import open_database
    from spectraldl.web.models import Prediction

    db_url = f"sqlite:///{folder / 'scale.db'}"
    fill(db_url, n_spectra=0, n_users=1)
    idents = vector_only_spectra(db_url, n)
    path = candidates_file(folder / "candidates.parquet", idents)
    with (
        ServerProcess(db_url, folder / "scale.log") as server,
        httpx.Client(base_url=server.url, timeout=600) as client,
    ):
        client.headers["X-CSRF-Token"] = login(client, "bench0", PASSWORD)
        catalogue, import_s = upload(client, path)
        grid = f"/api/catalogues/{catalogue}/grid?size=48"
        first_grid = timed_get(client, grid, 1)[0]
        grid_ms = timed_get(client, grid, 20)
        db = open_database(db_url)
        with db.session() as session:
            query = select(Prediction.id).where(Prediction.catalogue_id == catalogue)
            ids = list(session.scalars(query.order_by(Prediction.id)))
        db.dispose()
        bulk_s, calls = bulk_vet(client, ids)
        precision = f"/api/catalogues/{catalogue}/precision"
        counted = timed_get(client, precision, 1)
        followed = []
        for pid in ids[:20]:
            client.post("/api/vet", json={"prediction_id": pid, "verdict": "noise"})
            followed += timed_get(client, precision, 1)
        warm = timed_get(client, precision, 20)
    return [
        {
            "measure": "import a catalogue (upload to ready)",
            "candidates": n,
            "seconds": import_s,
            "rows_per_s": n / import_s,
        },
        {
            "measure": "similarity order (first grid page)",
            "candidates": n,
            "seconds": first_grid / 1000,
        },
        spread("GET grid page of 48 (order stored)", grid_ms, candidates=n),
        spread(
            "bulk vetting in calls of 500",
            calls,
            candidates=n,
            seconds=bulk_s,
            verdicts_per_s=n / bulk_s,
        ),
        spread("GET /api/catalogues/{id}/precision, first (counted)", counted, verdicts=n),
        spread("GET /api/catalogues/{id}/precision after a new verdict", followed, verdicts=n),
        spread("GET /api/catalogues/{id}/precision, no new verdict", warm, verdicts=n),
    ]


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
    parser.add_argument(
        "--grid-pages", type=int, default=20, help="grid pages vetted in the browser (0: none)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        help="candidates of the survey-scale rows: import, bulk vetting, precision (0: none)",
    )
    args = parser.parse_args()

    from web_support import ServerProcess, chromium_missing

    with tempfile.TemporaryDirectory(prefix="spectraldl-bench-web-") as tmp:
        db_url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        fill(db_url, n_spectra=args.spectra, n_users=4)
        dialect = db_url.split(":", 1)[0]
        catalogue = grid_catalogue(db_url, Path(tmp)) if args.grid_pages else 0
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
                if args.grid_pages:
                    browser += grid_browser_rows(
                        server.url,
                        db_url,
                        catalogue,
                        pages=args.grid_pages,
                        loads=args.loads,
                        profile=Path(tmp) / "grid-profile",
                    )
        scale = scale_rows(Path(tmp), args.scale) if args.scale else []
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
            "Web tool in headless Chromium (goal: key press to next spectrum under 100 ms, "
            "grid page of 48 under 300 ms)",
            browser,
            [
                "measure",
                "view",
                "keys",
                "verdicts",
                "keys_per_verdict",
                "n",
                "ms_median",
                "ms_p90",
                "ms_p95",
                "ms_max",
            ],
        )
    if scale:
        print_table(
            f"Vetting at survey scale ({dialect}, {args.scale} candidates with stored vectors)",
            scale,
            ["measure", "seconds", "rows_per_s", "verdicts_per_s", "n", "ms_median", "ms_p95"],
        )
    write_json(args.json, "web", [*http, *browser, *scale], database=dialect, spectra=args.spectra)


if __name__ == "__main__":
    main()
