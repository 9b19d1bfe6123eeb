"""The demo end to end (quick mode) through the CLI, and its resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from spectraldl.bundled import bundled_files
from spectraldl.cli import main
from spectraldl.dataset import read_dataset
from spectraldl.demo import QUICK, DemoRun, _ingest_archive
from spectraldl.ingest import ingest

CONTRACT = (
    "archive",
    "training.h5",
    "archive.h5",
    "model/card.json",
    "predictions.parquet",
    "candidates.csv",
    "candidates.fits",
    "candidates.vot",
    "gallery/index.html",
    "explore",
    "calibration",
    "web.db",
    "report.html",
    "run.json",
)


def test_demo_quick_writes_the_run_directory_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--out", str(out), "--quick", "-j", "2"])
    assert result.exit_code == 0, result.output
    assert "Results are in" in result.output
    for name in CONTRACT:
        assert (out / name).exists(), name
    training = read_dataset(out / "training.h5")
    assert (training.labels >= 0).all()
    assert set(training.meta["origin"]) == {"real", "synthetic"}
    archive = read_dataset(out / "archive.h5")
    real = archive.meta["origin"] == "real"
    assert len(archive) > 300 and set(archive.meta["origin"]) == {"real", "synthetic"}
    assert all("/archive/real/" in source for source in archive.meta["source"][real])
    assert not any("/archive/real/" in source for source in archive.meta["source"][~real])
    errors = pd.read_csv(out / "archive.errors.csv")
    assert len(errors) > 0 and errors["reason"].str.len().min() > 5
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert len(predictions) == len(archive)
    assert set(predictions["id"]) == set(archive.ids)
    record = json.loads((out / "run.json").read_text())
    assert record["sizes"]["epochs"] == 3 and len(record["steps"]) >= 10
    assert "Classification" in (out / "report.html").read_text()
    again = runner.invoke(main, ["demo", "--out", str(out), "--quick", "-j", "2"])
    assert again.exit_code == 0 and again.output.count("already done") >= 10


def test_archive_ingest_restarts_after_being_killed_in_its_second_ingest(tmp_path: Path) -> None:
    files = [item.path for item in bundled_files(archive="lamost")[:4]]
    for part, chosen in (("simulated", files[:2]), ("real", files[2:])):
        (tmp_path / "archive" / part).mkdir(parents=True)
        for path in chosen:
            (tmp_path / "archive" / part / path.name).write_bytes(path.read_bytes())
    # Killed while ingesting the real files: the simulated ones are in the building file
    # and the real ones' unfinished ingest is beside it.
    building = tmp_path / "archive.building.h5"
    ingest([tmp_path / "archive" / "simulated"], building, origin="synthetic")
    ingest([tmp_path / "archive" / "real"], building, origin="real")
    (tmp_path / "archive.building.h5.parts").mkdir()
    (tmp_path / "archive.building.h5.parts" / "manifest.json").write_text('{"files": "other"}')
    line = _ingest_archive(DemoRun(out=tmp_path, sizes=QUICK, workers=1, log=lambda _: None))
    assert line.startswith("2 simulated and 2 real spectra in archive.h5")
    archive = read_dataset(tmp_path / "archive.h5")
    assert sorted(archive.meta["origin"]) == ["real", "real", "synthetic", "synthetic"]
    assert not building.exists() and not (tmp_path / "archive.building.h5.parts").exists()
