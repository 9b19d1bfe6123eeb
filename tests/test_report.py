"""The run report: every section from a run directory made of real pieces, offline, in Chromium."""

from __future__ import annotations

import base64
import html
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from process_helpers import refused_while_locked
from sqlalchemy import select
from web_support import chromium, chromium_missing

import spectraldl
from spectraldl.analysis.calibrate import bundled_pairs_csv, calibrate_blur, save_calibration
from spectraldl.analysis.explore import explore
from spectraldl.analysis.report import SECTIONS, write_report
from spectraldl.cli import main
from spectraldl.io.bundled import real_dir, real_labels_csv
from spectraldl.io.predictions import empty_frame, write_predictions
from spectraldl.jobs.ingest import ingest
from spectraldl.ml.evaluation import classification_metrics, plot_confusions, plot_curves
from spectraldl.web import store
from spectraldl.web.auth import add_user
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_frame
from spectraldl.web.models import Prediction

CLASSES = ("emission", "absorption", "double-peak")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The tags and attributes of a page, collected."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    @classmethod
    def parse(cls, text: str) -> Page:
        page = cls()
        page.feed(text)
        return page

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def _metrics(rng: np.random.Generator, n: int) -> dict:
    y = rng.integers(0, len(CLASSES), n)
    proba = rng.dirichlet(np.ones(len(CLASSES)), n)
    proba[np.arange(n), y] += rng.uniform(0.0, 2.0, n)  # mostly right, sometimes not
    return classification_metrics(proba / proba.sum(axis=1, keepdims=True), y, CLASSES)


def _gallery(folder: Path, archive: Path) -> None:
    import h5py
    from matplotlib.figure import Figure

    folder.mkdir()
    with h5py.File(archive) as h5:
        grid, X, ids = h5["grid_aa"][...], h5["X"][:3], h5["ids"].asstr()[:3]
    items = []
    for x, spectrum_id in zip(X, ids, strict=True):
        fig = Figure(figsize=(4, 2.5))
        ax = fig.subplots()
        ax.plot(grid, x)
        ax.set_xlabel("wavelength (Å)")
        fig.savefig(folder / f"{spectrum_id}.png", dpi=80)
        items.append(
            f'<figure><img src="{spectrum_id}.png"><figcaption>{spectrum_id}</figcaption></figure>'
        )
    (folder / "index.html").write_text("<html><body>" + "".join(items) + "</body></html>")


def _predictions(path: Path, archive: Path) -> int:
    import h5py

    with h5py.File(archive) as h5:
        ids = h5["ids"].asstr()[...]
    rng = np.random.default_rng(5)
    p = rng.dirichlet([0.3, 3.0, 0.3], len(ids)).astype(np.float32)
    frame = pd.DataFrame(
        {
            "id": ids,
            "source": [f"archive/{i}.fits.gz" for i in ids],
            "archive": "lamost",
            "object": "",
            "ra": 0.0,
            "dec": 0.0,
            "mjd": 56000.0,
            "snr": 30.0,
            "predicted_class": [CLASSES[k] for k in p.argmax(axis=1)],
            "p_emission": p[:, 0],
            "p_absorption": p[:, 1],
            "p_double_peak": p[:, 2],
            "quality": np.where(np.arange(len(ids)) % 10 == 0, 32, 0),
            "quality_flags": np.where(np.arange(len(ids)) % 10 == 0, "NOVEL", ""),
            "novelty": 1.0,
            "model_id": "test-model",
        }
    )
    write_predictions(path, frame, classes=CLASSES, metadata={"manifest": {"precision": "fp32"}})
    return len(ids)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with every part, made by the real stages where they exist."""
    run = tmp_path_factory.mktemp("run")
    ingest([real_dir() / "ondrejov"], run / "training.h5", labels_csv=real_labels_csv())
    ingest([real_dir() / "lamost" / "dr1"], run / "archive.h5")
    explore([run / "training.h5", run / "archive.h5"], run / "explore", n_jobs=1)
    blur = calibrate_blur(
        bundled_pairs_csv(),
        [real_dir()],
        [real_dir()],
        sigmas_px=np.arange(0.0, 12.5, 0.5),
        n_bootstrap=100,
    )
    save_calibration(blur, run / "calibration")
    model = run / "model"
    model.mkdir()
    rng = np.random.default_rng(0)
    metrics = {
        "model_id": "test-model",
        "classes": list(CLASSES),
        "test": _metrics(rng, 120),
        "real": _metrics(rng, 16),
        "real_by_archive": {"ondrejov": _metrics(rng, 16)},
        "test_origin": ["synthetic"],
    }
    (model / "metrics.json").write_text(json.dumps(metrics))
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.1 / e,
            "train_accuracy": 1 - 0.5 / e,
            "val_accuracy": 1 - 0.6 / e,
        }
        for e in range(1, 11)
    ]
    plot_curves(history, model / "curves.png")
    plot_confusions(
        [("test split", metrics["test"]), ("real", metrics["real"])], model / "confusion.png"
    )
    n = _predictions(run / "predictions.parquet", run / "archive.h5")
    candidates = pd.DataFrame({"id": ["a", "b", "c"], "origin": ["real", "synthetic", "synthetic"]})
    candidates.to_csv(run / "candidates.csv", index=False)
    _gallery(run / "gallery", run / "archive.h5")
    (run / "benchmarks").mkdir()
    (run / "benchmarks" / "explore.json").write_text(
        json.dumps(
            {
                "benchmark": "explore",
                "machine": {"cpu": "test cpu", "cores": 2, "gpu": None},
                "rows": [
                    {"backend": "sklearn", "n": 20000, "seconds": 100.0, "speed_vs_sklearn": 1.0},
                    {"backend": "opentsne", "n": 20000, "seconds": 40.0, "speed_vs_sklearn": 2.5},
                ],
            }
        )
    )
    (run / "run.json").write_text(
        json.dumps(
            {
                "command": "spectraldl demo --out run",
                "seed": 0,
                "versions": {"spectraldl": "0.1.0", "python": "3.11.7"},
                "steps": [{"step": "training set", "summary": f"{n} spectra", "seconds": 1.0}],
            }
        )
    )
    return run


def test_report_has_every_section_and_its_images(run_dir: Path, tmp_path: Path) -> None:
    report = write_report(run_dir, tmp_path / "report.html")
    assert report.missing == []
    text = report.path.read_text(encoding="utf-8")
    page = Page.parse(text)
    sections = {a["id"]: a for a in page.all("section")}
    assert list(sections) == [key for key, _ in SECTIONS]
    assert all(a["data-present"] == "yes" for a in sections.values())
    images = page.all("img")
    explore_pngs = sorted(p.name for p in (run_dir / "explore").glob("*.png"))
    expected = [*explore_pngs, "blur.png", "curves.png", "confusion.png"]
    expected += sorted(p.name for p in (run_dir / "gallery").glob("*.png"))
    assert sorted(i["data-name"] for i in images) == sorted(expected)
    for image in images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        assert base64.b64decode(image["src"][len(prefix) :])[:8] == PNG_MAGIC
    # Self-contained: nothing to fetch, nothing to run, no way out of the page.
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for _, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name, "")
            assert not value or value.startswith(("data:", "#")), value
    assert "Every part of the run is present" in text
    import h5py

    with h5py.File(run_dir / "archive.h5") as h5:
        n_archive = h5["X"].shape[0]
    for needle in (
        f"archive.h5: {n_archive} spectra",
        "training.h5: 16 spectra",
        "LOW_SNR",
        "lamost vs ondrejov",
        "Real labelled spectra, ondrejov",
        "1 898 095",
        "p ≥ 0.9",
        "candidates.csv: 3 candidates to vet, 1 of them real spectra and 2 synthetic",
        "network in fp32, the default",
        "explore (explore.json)",
        "test cpu",
        "spectraldl demo --out run",
        "openTSNE",
    ):
        assert needle in text, needle


def test_partial_run_says_what_is_missing(run_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(run_dir / "training.h5", partial / "training.h5")
    result = CliRunner().invoke(main, ["report", str(partial)])
    assert result.exit_code == 0, result.output
    out = partial / "report.html"
    text = out.read_text(encoding="utf-8")
    assert "Missing from this run" in text
    for what in (
        "archive.h5",
        "model/",
        "predictions.parquet",
        "gallery/",
        "benchmarks/",
        "run.json",
        "explore/",
    ):
        assert what in result.output
        assert what in text
    sections = {a["id"]: a["data-present"] for a in Page.parse(text).all("section")}
    assert sections["data"] == "yes"
    assert sections["training"] == "no"


def test_report_errors_are_clear(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "training.h5").write_text("not hdf5")
    (run / "benchmarks").mkdir()
    (run / "benchmarks" / "broken.json").write_text("{")
    (run / "model").mkdir()
    (run / "model" / "card.json").write_text('{"architecture": {"name": "cnn"}}')
    report = write_report(run, run / "report.html")
    text = report.path.read_text(encoding="utf-8")
    assert "card.json: not a model card" in text
    assert "training.h5" in text and "not an HDF5 file" in text
    assert "broken.json: not readable JSON" in text
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere" in result.output
    (run / "candidates.csv").write_text("id,class\n")  # -o naming a run's file: refused, kept
    result = CliRunner().invoke(main, ["report", str(run), "-o", str(run / "candidates.csv")])
    assert result.exit_code == 1 and "not an HTML page" in result.output
    assert (run / "candidates.csv").read_text() == "id,class\n"


def test_a_second_report_on_a_page_another_run_writes_is_refused_and_touches_nothing(
    tmp_path: Path,
) -> None:
    """While this process holds report.html as a first run would, a real second `report`
    process stops at once with one line naming it, and neither replaces the page nor removes
    the first's half-written temporary (whose rename would then fail)."""
    run = tmp_path / "run"
    run.mkdir()
    out = write_report(run).path
    (run / ".report.html.tmp").write_text("<html>the first run's page, half written")

    def files() -> dict[str, tuple[int, bytes]]:
        return {p.name: (p.stat().st_ino, p.read_bytes()) for p in run.iterdir()}

    before = files()
    refused_while_locked(out, ["report", str(run)])
    assert files() == before


def test_damaged_datasets_are_listed_as_problems(run_dir: Path, tmp_path: Path) -> None:
    import h5py

    run = tmp_path / "run"
    run.mkdir()
    for name in ("training.h5", "extra.h5"):
        shutil.copy(run_dir / "training.h5", run / name)
    with h5py.File(run / "training.h5", "r+") as h5:
        h5["labels"][1] = 9
    with h5py.File(run / "extra.h5", "r+") as h5:
        del h5["X"]
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / "report.html").read_text(encoding="utf-8")
    assert "training.h5: 1 rows with unknown label codes 9 (rows 1)" in text
    assert "extra.h5: lacks dataset &#39;X&#39;" in text


def test_json_files_of_an_unexpected_layout_are_listed_as_problems(
    run_dir: Path, tmp_path: Path
) -> None:
    """A value of the wrong kind in blur.json, metrics.json, card.json or a benchmark's
    machine is one problem line naming the file; the rest of the report is written (each
    raised a traceback and no report at all)."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(run_dir / "calibration", run / "calibration")
    shutil.copytree(run_dir / "model", run / "model")
    shutil.copytree(run_dir / "benchmarks", run / "benchmarks")
    blur = json.loads((run / "calibration" / "blur.json").read_text())
    (run / "calibration" / "blur.json").write_text(json.dumps({**blur, "skipped": 5}))
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    metrics["test"]["confusion"]["matrix"] = "x"
    (run / "model" / "metrics.json").write_text(json.dumps(metrics))
    card = {"classes": 5, "training": 5}
    (run / "model" / "card.json").write_text(json.dumps(card))
    bench = json.loads((run / "benchmarks" / "explore.json").read_text())
    (run / "benchmarks" / "explore.json").write_text(json.dumps({**bench, "machine": 5}))
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    text = html.unescape((run / "report.html").read_text(encoding="utf-8"))
    for name in ("blur.json", "metrics.json", "card.json"):
        assert f"{name}: not " in text, name
    assert "Training curves" in text and "test cpu" not in text
    assert "Shipped benchmark explore (explore.json)" in text


@pytest.mark.browser
@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    report = write_report(run_dir, tmp_path / "report.html")
    driver = chromium(tmp_path / "chromium-profile", width=1280, height=900, network_log=True)
    try:
        driver.set_page_load_timeout(60)
        driver.get(report.path.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        broken = driver.execute_script(
            "return Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.dataset.name)"
        )
        assert broken == []
        assert driver.execute_script("return document.images.length") >= 9
        for key, title in SECTIONS:
            section = driver.find_element(By.ID, key)
            assert section.is_displayed()
            assert section.find_element(By.TAG_NAME, "h2").text == title
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        requested = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                requested.append(message["params"]["request"]["url"])
        # The report was fetched (the log works) and nothing left the machine; the
        # browser's own chrome:// pages (its start page) are not the report's doing.
        assert report.path.as_uri() in requested
        external = [u for u in requested if not u.startswith(("file:", "data:", "chrome:"))]
        assert external == []
    finally:
        driver.quit()


def test_gallery_embeds_only_its_own_images(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    gallery = run / "gallery"
    gallery.mkdir(parents=True)
    own = next((run_dir / "gallery").glob("*.png"))
    shutil.copy(own, gallery / "candidate.png")
    shutil.copy(own, tmp_path / "elsewhere.png")
    (gallery / "index.html").write_text(
        '<img src="../../elsewhere.png"><img src="/etc/passwd.png"><img src="candidate.png">'
    )
    report = write_report(run, run / "report.html")
    gallery_section = next(s for s in report.sections if s.key == "gallery")
    assert [i.name for i in gallery_section.images] == ["candidate.png"]


def _drawn_gallery(folder: Path, png: Path, entries: list[dict]) -> None:
    """A gallery as `write_gallery` writes it: PNGs and an index whose rows are JSON data."""
    from spectraldl.catalogue.gallery import _write_index

    folder.mkdir(parents=True)
    for entry in entries:
        if entry["image"]:
            shutil.copy(png, folder / entry["image"])
    _write_index(folder / "index.html", entries, CLASSES, total=len(entries))


def test_gallery_sample_shows_real_candidates_first_then_the_most_probable(
    run_dir: Path, tmp_path: Path
) -> None:
    png = next((run_dir / "gallery").glob("*.png"))

    def entry(name: str, origin: str, p: float) -> dict:
        return {
            "id": name,
            "image": f"{name}.png",
            "origin": origin,
            "predicted_class": "emission",
            "p_emission": p,
            "p_absorption": 1 - p,
            "p_double_peak": 0.0,
        }

    # In file-name order the synthetic ones come first.
    entries = [
        entry("a-synthetic", "synthetic", 0.95),
        entry("b-synthetic", "synthetic", 0.99),
        entry("c-synthetic", "synthetic", 0.91),
        entry("y-real", "real", 0.92),
        entry("z-real", "real", 0.97),
        {**entry("broken", "real", 1.0), "image": "", "problem": "cannot read"},
    ]
    run = tmp_path / "run"
    _drawn_gallery(run / "gallery", png, entries)
    report = write_report(run, run / "report.html", gallery_sample=4)
    gallery = next(s for s in report.sections if s.key == "gallery")
    assert [i.name for i in gallery.images] == [
        "z-real.png",
        "y-real.png",
        "b-synthetic.png",
        "a-synthetic.png",
    ]
    assert gallery.images[0].caption == "z-real: emission, p = 0.97 (real)"
    assert "4 of 5 gallery images, real spectra first, then the most probable" in gallery.notes[0]


def test_shipped_benchmarks_are_labelled_apart_from_this_run(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "benchmarks").mkdir(parents=True)
    shipped = json.loads((run_dir / "benchmarks" / "explore.json").read_text())
    (run / "benchmarks" / "explore.json").write_text(json.dumps({**shipped, "date": "2026-11-26"}))
    shutil.copy(run_dir / "run.json", run / "run.json")
    report = write_report(run, run / "report.html")
    performance = next(s for s in report.sections if s.key == "performance")
    this_run, benchmark = performance.tables
    assert this_run["title"].startswith("This run: seconds per step")
    assert this_run["rows"][0][0] == "training set" and this_run["rows"][-1][0] == "all steps"
    assert "measured on another machine on 2026-11-26" in benchmark["title"]
    assert "test cpu" in benchmark["note"] and "not measured in this run" in benchmark["note"]


def test_the_shipped_demo_timing_the_demo_copies_is_shown_not_a_problem(
    run_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shipped = Path(spectraldl.__file__).parent / "data" / "benchmarks" / "demo.json"
    shutil.copy(shipped, run / "benchmarks" / "demo.json")
    (run / "benchmarks" / "odd.json").write_text(json.dumps({"steps": "none"}))
    report = write_report(run, run / "report.html")
    performance = next(s for s in report.sections if s.key == "performance")
    assert performance.problems == ["odd.json: not a benchmark file (no 'rows' list)"]
    demo = next(t for t in performance.tables if "(demo.json)" in t["title"])
    recorded = json.loads(shipped.read_text())
    assert demo["title"].startswith("Shipped demo run (demo.json): seconds per step")
    assert f"measured on another machine on {recorded['date']}" in demo["title"]
    assert [row[0] for row in demo["rows"]] == [s["step"] for s in recorded["steps"]] + [
        "all steps"
    ]
    assert "not measured in this run" in demo["note"]


def test_every_table_scrolls_sideways_instead_of_being_cut(run_dir: Path, tmp_path: Path) -> None:
    text = write_report(run_dir, tmp_path / "report.html").path.read_text()
    assert ".scroll { overflow-x: auto;" in text
    assert text.count('<div class="scroll"><table>') == text.count("<table>") > 5


@pytest.mark.browser
@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_wide_tables_leave_the_page_width_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    """A benchmark table wider than the window scrolls in its own box; the page does not."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    wide = {f"a_rather_long_column_name_{k}": 123456.789 for k in range(20)}
    (run / "benchmarks" / "wide.json").write_text(
        json.dumps({"benchmark": "wide", "machine": {"cpu": "x"}, "rows": [wide]})
    )
    report = write_report(run, run / "report.html")
    driver = chromium(tmp_path / "chromium-profile", width=900, height=700)
    try:
        driver.get(report.path.as_uri())
        widths = driver.execute_script(
            "const boxes = Array.from(document.querySelectorAll('.scroll'));"
            "return [document.documentElement.scrollWidth, window.innerWidth,"
            " Math.max(...boxes.map(b => b.scrollWidth - b.clientWidth))];"
        )
        page_width, window_width, widest_overflow = widths
        assert page_width <= window_width
        assert widest_overflow > 0  # the wide table is there, scrolled inside its box
    finally:
        driver.quit()


def test_gallery_pngs_have_flux_units_on_both_panels() -> None:
    from spectraldl.catalogue.gallery import _Panels
    from spectraldl.io.bundled import bundled_files

    panels = _Panels()
    lamost = next(f for f in bundled_files(archive="lamost"))
    ondrejov = next(f for f in bundled_files(archive="ondrejov") if "/raw/" in str(f.path))
    for item, unit in ((lamost, "flux (relative flux"), (ondrejov, "flux (")):
        row = {
            "source": str(item.path),
            "id": item.path.stem,
            "object": "",
            "predicted_class": "emission",
            "p_emission": 0.9,
            "p_absorption": 0.05,
            "p_double_peak": 0.05,
            "novelty": 1.0,
            "snr": 20.0,
            "quality_flags": "",
        }
        panels.draw(row, CLASSES)
        assert panels.full.get_ylabel().startswith(unit)
        assert panels.zoom.get_ylabel() == panels.full.get_ylabel()
        assert panels.full.get_xlabel() == panels.zoom.get_xlabel() == "vacuum wavelength (Å)"


def test_report_with_the_web_database_shows_the_measured_precision(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": ["e1", "e2", "e3", "d1"],
            "predicted_class": ["emission", "emission", "emission", "double-peak"],
            "p_emission": [0.95, 0.93, 0.55, 0.1],
            "p_double_peak": [0.02, 0.03, 0.2, 0.8],
            "p_absorption": [0.03, 0.04, 0.25, 0.1],
        }
    )
    path = tmp_path / "team.db"
    db = open_database(f"sqlite:///{path}")
    with db.session() as session:
        user = add_user(session, "alice", "a-long-password")
        session.commit()
        catalogue = import_frame(db, frame, name="dr1.csv").catalogues[0][0]
        ids = dict(session.execute(select(Prediction.ident, Prediction.id)).all())
        for ident, verdict in [("e1", "confirm"), ("e2", "reject"), ("e3", "confirm")]:
            store.record_verdict(session, user=user, prediction_id=ids[ident], verdict=verdict)
        session.commit()
    db.dispose()
    run = tmp_path / "run"
    run.mkdir()
    result = CliRunner().invoke(main, ["report", str(run), "--db", str(path)])
    assert result.exit_code == 0, result.output
    text = (run / "report.html").read_text(encoding="utf-8")
    vetting = text[text.index('id="vetting"') :]
    vetting = vetting[: vetting.index("</section>")]
    assert f"dr1.csv (catalogue {catalogue}), model not recorded: per predicted class" in vetting
    # emission: 3 candidates, 3 vetted, 2 confirmed: 0.667 with Wilson (0.208, 0.939)
    assert "<td>emission</td><td>3</td><td>3</td><td>2</td><td>0.667 (0.208–0.939)</td>" in vetting
    assert "<td>double-peak</td><td>1</td><td>0</td><td>0</td><td>–</td>" in vetting
    missing = CliRunner().invoke(main, ["report", str(run), "--db", str(tmp_path / "no.db")])
    assert missing.exit_code == 1 and "no.db: no such database file" in missing.output


def test_a_negative_gallery_sample_is_a_usage_error(tmp_path: Path) -> None:
    """--gallery-sample -1 would embed all images but one (a slice [:-1])."""
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--gallery-sample", "-1"])
    assert result.exit_code == 2, result.output
    assert "'--gallery-sample'" in result.output
    assert not (tmp_path / "report.html").exists()


def test_the_flagged_column_counts_every_quality_flag_and_its_caption_says_so(
    tmp_path: Path,
) -> None:
    flags = {"": 0, "SPIKE": 256, "SNR_FROM_DATA": 1024, "NOVEL": 32}
    frame = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(len(flags))],
            "predicted_class": "emission",
            "p_emission": 0.95,
            "p_absorption": 0.03,
            "p_double_peak": 0.02,
            "quality": list(flags.values()),
            "quality_flags": list(flags),
            **{c: "" for c in ("source", "archive", "object", "model_id")},
            **{c: 0.0 for c in ("ra", "dec", "mjd", "snr", "novelty")},
        }
    )
    write_predictions(tmp_path / "predictions.parquet", frame, classes=CLASSES)
    text = write_report(tmp_path).path.read_text(encoding="utf-8")
    section = text[text.index('id="classification"') :]
    section = html.unescape(section[: section.index("</section>")])
    assert "<td>emission</td><td>4</td><td>100.0 %</td><td>4</td><td>3</td>" in section
    caption = section[section.index("'with quality flags'") :]
    for flag in ("SPIKE", "SNR_FROM_DATA", "NOVEL", "LOW_SNR", "MASKED"):
        assert flag in caption.split(". Model:")[0], flag


def test_vetted_catalogues_name_their_model_and_those_of_another_model_say_so(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_predictions(
        run / "predictions.parquet",
        empty_frame(("emission",)),
        classes=("emission",),
        metadata={"model_id": "mRUN"},
    )
    path = tmp_path / "team.db"
    db = open_database(f"sqlite:///{path}")
    frame = pd.DataFrame({"id": ["e1"], "predicted_class": ["emission"], "p_emission": [0.9]})
    ours = import_frame(db, frame.assign(model_id="mRUN"), name="ours.csv").catalogues[0][0]
    other = import_frame(db, frame.assign(id="e2", model_id="mOLD"), name="old.csv")
    db.dispose()
    result = CliRunner().invoke(main, ["report", str(run), "--db", str(path)])
    assert result.exit_code == 0, result.output
    text = html.unescape((run / "report.html").read_text(encoding="utf-8"))
    vetting = text[text.index('id="vetting"') :]
    vetting = vetting[: vetting.index("</section>")]
    assert f"ours.csv (catalogue {ours}), model mRUN: per predicted class" in vetting
    old = f"old.csv (catalogue {other.catalogues[0][0]}), model mOLD"
    assert f"{old} (another model than this run's mRUN): per predicted class" in vetting


def test_scores_a_class_does_not_have_are_dashes_not_zeros(tmp_path: Path) -> None:
    """Real spectra rarely hold every class: a class with no true rows has no recall, one
    never predicted no precision. The report printed 0 for both (precision 0: every
    prediction wrong, of none), unlike `evaluate`, which prints a dash."""
    classes = ("emission", "absorption", "double-peak", "noise")
    y = np.array([0, 0, 1, 1, 1, 2])  # no noise row; double-peak called emission
    proba = np.eye(len(classes))[[0, 0, 1, 1, 1, 0]]
    real = classification_metrics(proba, y, classes)
    model = tmp_path / "model"
    model.mkdir()
    (model / "metrics.json").write_text(
        json.dumps({"model_id": "m", "classes": list(classes), "real": real})
    )
    text = html.unescape(write_report(tmp_path).path.read_text(encoding="utf-8"))
    section = text[text.index('id="training"') :]
    section = section[: section.index("</section>")]
    assert "<td>emission</td><td>0.667</td><td>1</td><td>0.8</td><td>2</td>" in section
    assert "<td>double-peak</td><td>-</td><td>0</td><td>-</td><td>1</td>" in section
    assert "<td>noise</td><td>-</td><td>-</td><td>-</td><td>0</td>" in section
