"""The demo end to end (quick mode) through the CLI, and its resumption."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from spectraldl.cli import main
from spectraldl.demo import (
    FULL,
    LAMOST_RELEASES,
    QUICK,
    THESIS_MIX,
    DemoRun,
    _simulate_training,
    _training_parts,
)
from spectraldl.io.bundled import bundled_files
from spectraldl.io.dataset import read_dataset
from spectraldl.jobs.files import output_lock
from spectraldl.jobs.ingest import ingest
from spectraldl.simulate import simulate_archive

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


@pytest.mark.slow
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
    errors = pd.read_csv(out / "archive.h5.errors.csv")
    assert len(errors) > 0 and errors["reason"].str.len().min() > 5
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert len(predictions) == len(archive)
    assert set(predictions["id"]) == set(archive.ids)
    record = json.loads((out / "run.json").read_text())
    assert record["sizes"]["epochs"] == 3 and len(record["steps"]) >= 10
    assert "Classification" in (out / "report.html").read_text()
    again = runner.invoke(main, ["demo", "--out", str(out), "--quick", "-j", "2"])
    assert again.exit_code == 0 and again.output.count("already done") >= 10


def test_training_set_restarts_after_being_killed_in_a_later_ingest(tmp_path: Path) -> None:
    run = DemoRun(out=tmp_path, sizes=QUICK, workers=1, log=lambda _: None)
    base = tmp_path / "simulated" / "training"
    for name, args in _training_parts(run):
        simulate_archive(base / name, **{**args, "n": 3})
    # Killed while ingesting the second set: the first is in the building file and
    # the second's unfinished ingest is beside it.
    building = tmp_path / "training.h5.building"
    ingest([base / "ondrejov-ssap"], building, labels_csv=base / "ondrejov-ssap" / "truth.csv")
    (tmp_path / "training.h5.building.parts").mkdir()
    (tmp_path / "training.h5.building.parts" / "manifest.json").write_text('{"files": "other"}')
    line = _simulate_training(run)
    assert line.startswith("6 simulated Ondřejov spectra (SSAP and raw forms), 3 simulated LAMOST")
    training = read_dataset(tmp_path / "training.h5")
    assert len(training) == 9 + sum(1 for f in bundled_files() if f.label)
    assert not building.exists() and not (tmp_path / "training.h5.building.parts").exists()


@pytest.mark.slow
def test_long_steps_report_progress(tmp_path: Path) -> None:
    """Simulating and ingesting the training set draw progress, each up to its total."""
    from contextlib import contextmanager

    seen: dict[str, list[tuple[int, int]]] = {}

    @contextmanager
    def recorder(description: str):
        updates = seen.setdefault(description, [])
        yield lambda done, total: updates.append((done, total))

    run = DemoRun(out=tmp_path, sizes=QUICK, workers=1, log=lambda _line: None, progress=recorder)
    _simulate_training(run)
    names = [name for name, _ in _training_parts(run)]
    assert list(seen) == [f"simulate {n}" for n in names] + [f"ingest {n}" for n in names]
    for description, updates in seen.items():
        assert updates, description
        done, total = updates[-1]
        assert done == total > 0, description


def test_the_demo_prints_commands_that_work_without_an_active_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spectraldl.cli.demo import _this_command

    script = tmp_path / "env" / "bin" / "spectraldl"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr("sys.argv", [str(script)])
    assert _this_command() == "env/bin/spectraldl"
    monkeypatch.setattr("sys.argv", ["/usr/bin/pytest"])
    assert _this_command() == "spectraldl"


def test_a_demo_folder_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    """A full demo into a --quick demo's folder (or another seed) would skip every step and
    present the quick results as its own: refused, naming the settings found."""
    out = tmp_path / "run"
    run_json = {"seed": 0, "sizes": dataclasses.asdict(QUICK), "steps": []}
    out.mkdir()
    (out / "run.json").write_text(json.dumps(run_json))
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 1 and "other settings (--quick --seed 0)" in result.output
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--seed", "1"])
    assert result.exit_code == 1 and "--seed 0" in result.output
    assert json.loads((out / "run.json").read_text()) == run_json
    result = CliRunner().invoke(main, ["demo", "--out", ""])
    assert result.exit_code == 2 and "an empty path" in result.output


def test_a_second_demo_in_a_folder_another_demo_writes_is_refused_at_once(tmp_path: Path) -> None:
    """Two demos in one folder would delete each other's half-built steps: the second is
    refused before it reads anything (here even the folder's settings, which would also be
    refused: the lock comes first, so no demo runs whatever the code does)."""
    out = tmp_path / "run"
    out.mkdir()
    run_json = {"seed": 5, "sizes": dataclasses.asdict(QUICK), "steps": []}
    (out / "run.json").write_text(json.dumps(run_json))
    with output_lock(out):
        result = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick"])
    assert result.exit_code == 1, result.output
    assert "is being written by another run" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]
    assert json.loads((out / "run.json").read_text()) == run_json


@pytest.mark.parametrize(("option", "value"), [("--seed", "-1"), ("--seed", "4294967296")])
def test_a_seed_no_library_takes_is_a_usage_error(tmp_path: Path, option: str, value: str) -> None:
    result = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "run"), option, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert not (tmp_path / "run").exists()


ROOT = Path(__file__).resolve().parents[1]


def _number(text: str) -> int:
    """An integer as the pages write it: ``13 335``, ``24 000``."""
    return int(text.replace(" ", ""))


def _page_calls() -> tuple[dict[str, object], list[tuple[dict[str, object], str]]]:
    """The "In the demo" example of docs/simulate.md: its names and each
    ``simulate_archive`` call's literal arguments with the comment ending its last line."""
    page = (ROOT / "docs" / "simulate.md").read_text()
    section = page[page.index("## In the demo\n") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    lines = code.group(1).splitlines()
    tree = ast.parse(code.group(1))
    names = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
    }
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "simulate_archive":
            args: dict[str, object] = {}
            for keyword in node.keywords:
                try:
                    args[str(keyword.arg)] = ast.literal_eval(keyword.value)
                except ValueError:
                    args[str(keyword.arg)] = ast.unparse(keyword.value)
            args["folder"] = ast.unparse(node.args[0])
            assert node.end_lineno is not None
            calls.append((args, lines[node.end_lineno - 1].partition("#")[2].strip()))
        elif isinstance(node, ast.For):
            names["releases"] = ast.literal_eval(node.iter.args[0])
    return names, calls


def test_the_pages_state_the_demo_sizes_of_demo_py() -> None:
    """docs/simulate.md's "In the demo" and the README's demo summary give the sizes, seeds
    and mix that `spectraldl.demo` uses (FULL and QUICK): a change there fails here."""
    names, calls = _page_calls()
    assert names["mix"] == THESIS_MIX and tuple(names["releases"]) == LAMOST_RELEASES
    training = _training_parts(DemoRun(out=Path("run"), sizes=FULL, workers=2))
    quick = {name: args["n"] for name, args in _training_parts(DemoRun(Path("run"), QUICK))}
    assert len(calls) == len(training) + 1
    for (page, comment), (name, args) in zip(calls, training, strict=False):
        assert page["folder"] == f"training / {name!r}"
        assert {k: v for k, v in page.items() if k != "folder"} == {**args, "mix": "mix"}
        assert comment == f"--quick: n={quick[name]}"
    archive, comment = calls[-1]
    assert (archive["n"], archive["junk"], archive["seed"]) == (
        FULL.lamost_per_release, FULL.junk, 1,
    )  # fmt: skip
    assert comment == f"--quick: n={QUICK.lamost_per_release}, junk={QUICK.junk}"
    total = FULL.ondrejov_ssap + FULL.ondrejov_raw + FULL.lamost_training
    files = len(LAMOST_RELEASES) * FULL.lamost_per_release
    page = (ROOT / "docs" / "simulate.md").read_text()
    section = page[page.index("## In the demo\n") :]
    readme = (ROOT / "README.md").read_text()
    for text in (section, readme):
        stated = re.search(r"(\d[\d ]*) (?:labelled )?spectra", text)
        archive_files = re.search(r"(\d[\d ]*)-file LAMOST", text)
        assert stated and _number(stated.group(1)) == total
        assert archive_files and _number(archive_files.group(1)) == files
    assert f"{len(LAMOST_RELEASES)} x {FULL.lamost_per_release} files" in section
