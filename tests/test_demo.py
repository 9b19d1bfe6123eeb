"""The demo end to end (quick mode) through the CLI, and its resumption."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from spectraldl.cli import main
from spectraldl.dataset import read_dataset


def test_demo_quick_writes_the_run_directory_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--out", str(out), "--quick", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "Results are in" in result.output
    for name in ("archive", "training.h5", "archive.h5", "run.json"):
        assert (out / name).exists(), name
    training = read_dataset(out / "training.h5")
    assert (training.labels >= 0).all() and set(training.meta["origin"]) >= {"real"}
    assert len(read_dataset(out / "archive.h5")) > 80
    record = json.loads((out / "run.json").read_text())
    assert record["quick"] is True and record["steps"]
    again = runner.invoke(main, ["demo", "--out", str(out), "--quick", "-j", "1"])
    assert again.exit_code == 0 and "already done" in again.output
