"""The demo: the whole method end to end on bundled and simulated data, in one run directory.

1. Simulate a labelled training set, Ondřejov-like and LAMOST-like, in the
   archives' real layouts and ingest it, with the bundled real labelled
   spectra as evaluation rows, into ``training.h5``.
2. Simulate a LAMOST-like archive tree (DR1, DR2 and DR8 layouts, with broken
   files among them), put the bundled real LAMOST files beside it in
   ``archive/`` and ingest it into ``archive.h5``.
3. Train the thesis CNN into ``model/`` (evaluated on the synthetic test
   split and on the real labelled spectra separately).
4. Classify the FITS tree ``archive/`` into ``predictions.parquet``.
5. Select candidates into ``candidates.{csv,fits,vot}`` with ``gallery/`` and
   a cross-match with known Be stars.
6. Map both archives (``explore/``), measure the blur on the real
   cross-matched pairs (``calibration/``), load the web tool's database
   (``web.db``) and write ``report.html``.

Each step is skipped when a later run finds its output complete, so an
interrupted demo resumes. The layout is the contract of docs/CONVENTIONS.md.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spectraldl.analysis.calibrate import bundled_pairs_csv, calibrate_blur, save_calibration
from spectraldl.analysis.explore import explore
from spectraldl.analysis.realchecks import real_spectra_checks
from spectraldl.analysis.report import write_report
from spectraldl.catalogue.candidates import Selection, find_candidates
from spectraldl.classify.run import classify
from spectraldl.core.atomic import atomic_write
from spectraldl.core.versions import versions
from spectraldl.io.bundled import bundled_files, known_be_stars_csv, real_dir, real_labels_csv
from spectraldl.jobs.backends import open_backend
from spectraldl.jobs.files import errors_csv_path, output_lock
from spectraldl.jobs.ingest import ingest
from spectraldl.ml.training import TrainConfig, train
from spectraldl.simulate import simulate_archive
from spectraldl.web.db import open_database
from spectraldl.web.importing import import_paths, score_with_model

THESIS_MIX = {"emission": 0.39, "absorption": 0.45, "double-peak": 0.11, "noise": 0.05}
"""Class mix of the training set: the thesis' 13 335 labels without `unknown`
(5301 emission, 6103 absorption, 1533 double-peak of 12 937), plus a few
undecidable `noise` spectra."""


@dataclass(frozen=True)
class DemoSizes:
    """How much the demo simulates and trains."""

    ondrejov_ssap: int
    ondrejov_raw: int
    lamost_training: int
    lamost_per_release: int
    junk: float
    epochs: int
    patience: int
    tsne_points: int


FULL = DemoSizes(
    ondrejov_ssap=6_000,
    ondrejov_raw=667,
    lamost_training=6_668,
    lamost_per_release=8_000,
    junk=0.01,
    epochs=40,
    patience=4,
    tsne_points=8_000,
)
"""The thesis' training-set size (13 335: half Ondřejov-like, half LAMOST-like) and a
24 000-file archive."""

QUICK = DemoSizes(
    ondrejov_ssap=300,
    ondrejov_raw=60,
    lamost_training=300,
    lamost_per_release=100,
    junk=0.03,
    epochs=3,
    patience=2,
    tsne_points=600,
)
"""About a minute on 2 cores instead of several, for the test suite and a first check."""

LAMOST_RELEASES = ("dr1", "dr2", "dr8")

Update = Callable[[int, int], None]
"""``update(done, total)``: how far a long step is."""

ProgressFactory = Callable[[str], AbstractContextManager[Update]]
"""Makes a progress display for one long piece of work (`spectraldl.cli._progress.progress_bar`)."""


@contextmanager
def _no_progress(_description: str) -> Iterator[Update]:
    yield lambda _done, _total: None


@dataclass
class DemoRun:
    """Where the demo writes and what it has done."""

    out: Path
    sizes: DemoSizes
    seed: int = 0
    workers: int = 2
    log: Callable[[str], None] = print
    progress: ProgressFactory = _no_progress
    steps: list[dict[str, Any]] = field(default_factory=list)

    def step(self, name: str, done: Path, action: Callable[[], str]) -> None:
        """Run ``action`` unless ``done`` exists; record the step and its one-line summary."""
        start = time.perf_counter()
        if done.exists():
            summary = f"already done ({done.relative_to(self.out)})"
        else:
            summary = action()
        seconds = time.perf_counter() - start
        self.steps.append({"step": name, "summary": summary, "seconds": round(seconds, 2)})
        self.log(f"[{name}] {summary} ({seconds:.1f} s)")


def _publish_dir(tmp: Path, target: Path) -> None:
    """Make a finished temporary folder the real one (atomic on one file system)."""
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _fresh_dataset(tmp: Path) -> None:
    """Delete a half-built dataset and its unfinished ingest (``<tmp>.parts``).

    The training set is ingested from several folders into one ``tmp`` in
    turn; a run killed during a later ingest leaves that ingest's parts folder,
    which the first ingest of the re-run would refuse as "an unfinished ingest
    of other inputs", so the step starts over instead.
    """
    tmp.unlink(missing_ok=True)
    shutil.rmtree(tmp.with_name(tmp.name + ".parts"), ignore_errors=True)


def _training_parts(run: DemoRun) -> list[tuple[str, dict[str, Any]]]:
    """The simulated labelled sets of the training set: folder name and `simulate_archive` args.

    LAMOST-like spectra sit beside the Ondřejov-like ones because a network
    trained on the Ondřejov domain alone calls real LAMOST absorption stars
    noise or candidates (docs/training.md, "Train on the domain you classify").
    They start at index 1 000 000 so that their ids differ from the archive's.
    """
    sizes = run.sizes
    common = {"seed": run.seed, "mix": THESIS_MIX, "workers": run.workers}
    parts = [
        ("ondrejov-ssap", {"archive": "ondrejov", "n": sizes.ondrejov_ssap, "form": "ssap"}),
        (
            "ondrejov-raw",
            {
                "archive": "ondrejov",
                "n": sizes.ondrejov_raw,
                "form": "raw",
                "start": sizes.ondrejov_ssap,
            },
        ),
        (
            "lamost",
            {"archive": "lamost", "n": sizes.lamost_training, "release": "dr2", "start": 1_000_000},
        ),
    ]
    return [(name, {**common, **args}) for name, args in parts]


def _simulate_training(run: DemoRun) -> str:
    base = run.out / "simulated" / "training"
    parts = _training_parts(run)
    for name, args in parts:
        folder = base / name
        if not (folder / "truth.csv").exists():
            shutil.rmtree(folder, ignore_errors=True)
            with run.progress(f"simulate {name}") as update:
                run.log(simulate_archive(folder, **args, progress=update).line())
    tmp = run.out / "training.h5.building"
    _fresh_dataset(tmp)
    counts = {}
    for name, _ in parts:
        with run.progress(f"ingest {name}") as update:
            counts[name] = ingest(
                [base / name],
                tmp,
                labels_csv=base / name / "truth.csv",
                workers=run.workers,
                origin="synthetic",
                progress=update,
            ).added
    real = [f.path for f in bundled_files() if f.label]
    added = ingest(
        real, tmp, labels_csv=real_labels_csv(), workers=run.workers, origin="real"
    ).added
    errors_csv_path(tmp).unlink(missing_ok=True)
    tmp.rename(run.out / "training.h5")
    ondrejov = counts["ondrejov-ssap"] + counts["ondrejov-raw"]
    return (
        f"{ondrejov} simulated Ondřejov spectra (SSAP and raw forms), {counts['lamost']} "
        f"simulated LAMOST spectra and {added} real labelled spectra (evaluation rows) "
        f"in training.h5"
    )


def _simulate_archive(run: DemoRun) -> str:
    archive = run.out / "archive"
    tmp = run.out / "archive.building"
    shutil.rmtree(tmp, ignore_errors=True)
    n = run.sizes.lamost_per_release
    written = 0
    for i, release in enumerate(LAMOST_RELEASES):
        with run.progress(f"simulate archive {release}") as update:
            summary = simulate_archive(
                tmp / "simulated" / release,
                archive="lamost",
                n=n,
                seed=run.seed + 1,
                release=release,
                junk=run.sizes.junk,
                start=i * n,
                workers=run.workers,
                progress=update,
            )
        written += summary.files
    for item in bundled_files(archive="lamost"):
        destination = tmp / "real" / item.path.relative_to(real_dir() / "lamost")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, destination)
    _publish_dir(tmp, archive)
    real = len(bundled_files(archive="lamost"))
    releases = ", ".join(LAMOST_RELEASES)
    return (
        f"{written} simulated LAMOST files ({releases}; broken ones among them) "
        f"and {real} real ones"
    )


def _ingest_archive(run: DemoRun) -> str:
    # Simulated and real files share the tree; the simulated ones say so in their
    # headers (SIMULATD), so meta/origin tells them apart.
    with run.progress("ingest archive") as update:
        summary = ingest(
            [run.out / "archive"], run.out / "archive.h5", workers=run.workers, progress=update
        )
    return summary.line()


def _train(run: DemoRun) -> str:
    config = TrainConfig(
        model="cnn",
        epochs=run.sizes.epochs,
        patience=run.sizes.patience,
        seed=run.seed,
        device="auto",
    )
    with run.progress("train") as update:
        result = train(
            [run.out / "training.h5"],
            run.out / "model",
            config=config,
            log=run.log,
            progress=update,
        )
    metrics = result.metrics
    parts = []
    for name in ("test", "real"):
        block = metrics.get(name) or {}
        if block.get("n"):
            parts.append(f"{name} accuracy {block['accuracy']:.3f} on {block['n']}")
    return f"model {result.model.model_id} in {result.model_dir}: " + ", ".join(parts)


def _classify(run: DemoRun) -> str:
    with open_backend("local", workers=run.workers) as backend, run.progress("classify") as update:
        summary = classify(
            run.out / "model",
            [run.out / "archive"],
            run.out / "predictions.parquet",
            backend=backend,
            progress=update,
        )
    return summary.line()


def _candidates(run: DemoRun) -> str:
    outs = [run.out / f"candidates.{suffix}" for suffix in ("csv", "fits", "vot")]
    tmp_gallery = run.out / "gallery.building"
    shutil.rmtree(tmp_gallery, ignore_errors=True)
    result = find_candidates(
        run.out / "predictions.parquet",
        outs,
        selection=Selection(),
        gallery=tmp_gallery,
        known=known_be_stars_csv(),
        workers=run.workers,
    )
    _publish_dir(tmp_gallery, run.out / "gallery")
    run.log(result.counts.table())
    if result.crossmatch is not None:
        run.log("\n".join(result.crossmatch.lines()))
    return f"{len(result.catalogue)} candidates in {', '.join(p.name for p in outs)} and gallery/"


def _checks(run: DemoRun) -> str:
    """The figures the README quotes: the real-spectra checks and the candidates' origins."""
    import pandas as pd

    checks = real_spectra_checks(run.out / "model", workers=run.workers)
    catalogue = pd.read_csv(run.out / "candidates.csv", dtype=str, keep_default_na=False)
    real = catalogue[catalogue["origin"] == "real"]
    labels = {f.path.name: f.label for f in bundled_files(archive="lamost")}
    checks["candidates"] = {
        "total": len(catalogue),
        "real": len(real),
        "real_labels": sorted(labels.get(Path(s).name, "") or "unlabelled" for s in real["source"]),
    }
    known = run.out / "candidates.known.csv"
    if known.exists():
        status = pd.read_csv(known, dtype=str, keep_default_na=False)["status"]
        checks["known"] = {
            "in_input": int((status != "not in the input").sum()),
            "recovered": int((status == "recovered").sum()),
        }
    metrics = json.loads((run.out / "model" / "metrics.json").read_text())
    test = metrics.get("test") or {}
    checks["test"] = {
        "accuracy": test.get("accuracy"),
        "f1": {c: v.get("f1") for c, v in (test.get("per_class") or {}).items()},
    }
    with atomic_write(run.out / "checks.json") as tmp:
        tmp.write_text(json.dumps(checks, indent=1))
    labelled, ordinary = checks["real_labelled"], checks["ordinary_lamost"]
    return (
        f"{labelled['right']} of {labelled['n']} real labelled spectra right; "
        f"{ordinary['candidates']} of {ordinary['n']} ordinary real LAMOST stars candidates; "
        f"{len(real)} of {len(catalogue)} candidates real"
    )


def _explore(run: DemoRun) -> str:
    tmp = run.out / "explore.building"
    shutil.rmtree(tmp, ignore_errors=True)
    explore(
        [run.out / "training.h5", run.out / "archive.h5"],
        tmp,
        seed=run.seed,
        n_jobs=run.workers,
        tsne_max_points=run.sizes.tsne_points,
        predictions=run.out / "predictions.parquet",
    )
    _publish_dir(tmp, run.out / "explore")
    return "PCA and t-SNE maps of both archives in explore/"


def _calibrate(run: DemoRun) -> str:
    tmp = run.out / "calibration.building"
    shutil.rmtree(tmp, ignore_errors=True)
    result = calibrate_blur(bundled_pairs_csv(), [real_dir()], [real_dir()], seed=run.seed)
    save_calibration(result, tmp)
    _publish_dir(tmp, run.out / "calibration")
    return (
        f"blur sigma {result.sigma_px:.2f} ± {result.uncertainty_px:.2f} Ondřejov px "
        f"from {result.pairs} real pairs (default 7)"
    )


def _web(run: DemoRun) -> str:
    tmp = run.out / "web.db.building"
    tmp.unlink(missing_ok=True)
    db = open_database(f"sqlite:///{tmp}")
    try:
        summary = import_paths(db, [real_dir() / "ondrejov", run.out / "predictions.parquet"])
        score_with_model(db, run.out / "model")
    finally:
        db.dispose()
    tmp.rename(run.out / "web.db")
    return summary.line()


def _benchmarks(run: DemoRun) -> str:
    source = Path(__file__).parent / "data" / "benchmarks"
    tmp = run.out / "benchmarks.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    copied = [shutil.copy(p, tmp / p.name) for p in sorted(source.glob("*.json"))]
    _publish_dir(tmp, run.out / "benchmarks")
    return f"{len(copied)} measured benchmark tables (see benchmarks/ in the repository)"


def _report(run: DemoRun) -> str:
    _write_run_json(run)
    written = write_report(run.out, run.out / "report.html")
    return f"report in {written.path}"


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    workers: int = 2,
    log: Callable[[str], None] = print,
    progress: ProgressFactory = _no_progress,
) -> DemoRun:
    """Run the demo into ``out`` and return what it did.

    Parameters
    ----------
    out
        Run directory (created; an existing one is resumed).
    quick
        Small sizes (`QUICK`), for the test suite.
    seed
        Seed of every random step.
    workers
        Worker processes for the parallel steps.
    log
        Called with a line per step and per finished piece of work.
    progress
        Makes a progress display for each long piece of work (simulating,
        ingesting, training, classifying); none by default.

    Raises
    ------
    spectraldl.jobs.files.OutputBusy
        Another demo runs in ``out`` (two would delete each other's half-built steps).
    """
    out = Path(out)
    with output_lock(out):
        return _run_steps(out, QUICK if quick else FULL, seed, workers, log, progress)


def _run_steps(
    out: Path,
    sizes: DemoSizes,
    seed: int,
    workers: int,
    log: Callable[[str], None],
    progress: ProgressFactory,
) -> DemoRun:
    """`run_demo`'s steps, each skipped where its result is there (the caller holds the lock)."""
    _check_resumable(out, sizes, seed)
    out.mkdir(parents=True, exist_ok=True)
    run = DemoRun(out=out, sizes=sizes, seed=seed, workers=workers, log=log, progress=progress)
    _write_run_json(run)  # the settings, for a later run to resume only the same demo
    run.step("simulate training set", out / "training.h5", lambda: _simulate_training(run))
    run.step("simulate archive", out / "archive", lambda: _simulate_archive(run))
    run.step("ingest archive", out / "archive.h5", lambda: _ingest_archive(run))
    run.step("train", out / "model", lambda: _train(run))
    run.step("classify", out / "predictions.parquet", lambda: _classify(run))
    run.step("candidates", out / "gallery", lambda: _candidates(run))
    run.step("real-spectra checks", out / "checks.json", lambda: _checks(run))
    run.step("explore", out / "explore", lambda: _explore(run))
    run.step("calibrate blur", out / "calibration", lambda: _calibrate(run))
    run.step("web database", out / "web.db", lambda: _web(run))
    run.step("benchmarks", out / "benchmarks", lambda: _benchmarks(run))
    run.step("report", out / "report.html", lambda: _report(run))
    _write_run_json(run)
    return run


class DemoError(ValueError):
    """A demo folder that cannot be resumed with these settings."""


def _check_resumable(out: Path, sizes: DemoSizes, seed: int) -> None:
    """Raise `DemoError` when ``out`` holds a demo of other sizes (``--quick``) or seed:
    resuming it would skip its steps and present their results as this run's."""
    try:
        record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise DemoError(f"{out / 'run.json'}: unreadable ({exc}); use another --out") from None
    before = (record.get("sizes"), record.get("seed"))
    if before != (asdict(sizes), seed):
        quick = "--quick " if record.get("sizes") == asdict(QUICK) else ""
        raise DemoError(
            f"{out} holds a demo run with other settings ({quick}--seed {record.get('seed')}); "
            "resuming it would mix the two: use another --out, or delete it"
        )


def _write_run_json(run: DemoRun) -> None:
    record = {
        "command": " ".join(sys.argv),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "seed": run.seed,
        "sizes": asdict(run.sizes),
        "workers": run.workers,
        "steps": run.steps,
        "versions": versions(),
    }
    with atomic_write(run.out / "run.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))
