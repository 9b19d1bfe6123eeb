"""Ingest: bad files survive, labels apply, workers agree, kill -9 resumes."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from process_helpers import left_in_group

from spectraldl.cli import main
from spectraldl.cli.ingest import DATASET_SUFFIXES
from spectraldl.io.bundled import bundled_files, real_labels_csv, replicate_real_tree
from spectraldl.io.dataset import HDF5_SUFFIXES, Dataset, read_dataset
from spectraldl.io.labels import CLASSES, LabelError, read_labels
from spectraldl.jobs.ingest import IngestFailed, discover, ingest


def _errors(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        return {Path(row["path"]).name: row["reason"] for row in csv.DictReader(handle)}


def test_bad_tree_keeps_every_good_file_and_names_every_bad_one(bad_tree, tmp_path) -> None:
    root, expect, good = bad_tree
    out = tmp_path / "out.h5"
    summary = ingest([root], out)
    data = read_dataset(out)
    assert summary.added == len(good) == len(data)
    assert set(data.meta["source"]) == {str(p) for p in good}
    errors = _errors(tmp_path / "out.h5.errors.csv")
    assert set(errors) == set(expect)
    for name, word in expect.items():
        assert word in errors[name], (name, errors[name])
    assert f"{len(good)} spectra added" in summary.line()
    assert f"{len(expect)} bad files" in summary.line()


def test_cli_ingest_summary_and_strict(bad_tree, tmp_path) -> None:
    root, expect, good = bad_tree
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(root), "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 0, result.output
    assert f"{len(good)} spectra added" in result.output
    assert f"{len(expect)} bad files" in result.output
    strict = runner.invoke(main, ["ingest", str(root), "-o", str(tmp_path / "b.h5"), "--strict"])
    assert strict.exit_code == 1
    assert "bad files with --strict" in strict.output and "b.h5.errors.csv" in strict.output
    assert set(_errors(tmp_path / "b.h5.errors.csv")) == set(expect)
    assert not (tmp_path / "b.h5").exists()


def test_discover_walks_directories_but_always_tries_named_files(bad_tree) -> None:
    root, _, good = bad_tree
    found = discover([root])
    assert all(p.name != "README.txt" for p in found)
    assert set(good) <= set(found)
    named = discover([root / "good" / "README.txt"])
    assert named == [root / "good" / "README.txt"]
    with pytest.raises(FileNotFoundError):
        discover([root / "missing"])


def test_labels_from_the_shared_forms(tmp_path) -> None:
    files = [f.path for f in bundled_files(archive="ondrejov")]
    out = tmp_path / "o.h5"
    ingest(files, out, labels_csv=real_labels_csv())
    data = read_dataset(out)
    by_id = dict(zip(data.ids, data.labels, strict=True))
    assert CLASSES[by_id["ivo://asu.cas.cz/stel/ccd700/uk220017"]] == "emission"
    assert CLASSES[by_id["uk220017"]] == "emission"
    assert CLASSES[by_id["ivo://asu.cas.cz/stel/ccd700/a201504150031"]] == "double-peak"
    assert CLASSES[by_id["vh130075"]] == "absorption"
    assert (data.labels >= 0).all()
    # The thesis' integer form of the same labels.
    thesis = tmp_path / "thesis.csv"
    thesis.write_text("id,label\nivo://asu.cas.cz/stel/ccd700/uk220017,0\nvh130075.fits,1\n")
    labels = read_labels(thesis)
    assert labels.lookup("uk220017") == 0 and labels.lookup("vh130075") == 1


def test_unknown_label_names_the_line(tmp_path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("id,label\na,emission\nb,maybe-emission\n")
    with pytest.raises(LabelError, match="line 3"):
        read_labels(bad)
    files = [str(f.path) for f in bundled_files(archive="ondrejov")][:2]
    result = CliRunner().invoke(
        main, ["ingest", *files, "-o", str(tmp_path / "x.h5"), "--labels", str(bad)]
    )
    assert result.exit_code == 1 and "line 3" in result.output and "maybe-emission" in result.output


def test_simulated_files_are_synthetic_whatever_the_origin_argument(tmp_path) -> None:
    from spectraldl.simulate import simulate_archive

    tree = tmp_path / "mixed"
    for archive, form in (("lamost", "ssap"), ("ondrejov", "ssap"), ("ondrejov", "raw")):
        simulate_archive(tree / f"{archive}-{form}", archive=archive, n=3, seed=4, form=form)
    real = [f.path for f in bundled_files(archive="ondrejov")[:2]]
    real += [f.path for f in bundled_files(archive="lamost")[:2]]
    summary = ingest([tree, *real], tmp_path / "out.h5", origin="real")
    rows = read_dataset(tmp_path / "out.h5")
    assert summary.added == len(rows) == 13
    by_source = dict(zip(rows.meta["source"], rows.meta["origin"], strict=True))
    assert {by_source[str(p)] for p in real} == {"real"}
    assert sum(origin == "synthetic" for origin in by_source.values()) == 9


def test_one_and_two_workers_give_identical_datasets(tmp_path) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)
    ingest([tree], tmp_path / "one.h5", workers=1)
    ingest([tree], tmp_path / "two.h5", workers=2)
    one, two = read_dataset(tmp_path / "one.h5"), read_dataset(tmp_path / "two.h5")
    assert list(one.ids) == list(two.ids)
    assert np.array_equal(one.X, two.X) and np.array_equal(one.quality, two.quality)
    assert all(
        np.array_equal(one.meta[k], two.meta[k], equal_nan=True)
        for k in ("ra", "dec", "mjd", "snr")
    )
    assert (tmp_path / "one.h5.errors.csv").read_text() == (
        tmp_path / "two.h5.errors.csv"
    ).read_text()


def test_copies_with_a_shared_gzip_tail_ingest_as_whole_gzipped_copies(tmp_path) -> None:
    # The memory benchmark's million-file trees: two gzip members per copy, the same spectra.
    whole = replicate_real_tree(tmp_path / "whole", 90, compress=True)
    shared = replicate_real_tree(tmp_path / "shared", 90, compress=True, shared_tail=True)
    assert [p.name for p in whole] == [p.name for p in shared]
    assert all(b.read_bytes() != a.read_bytes() for a, b in zip(whole, shared, strict=True))
    ingest([tmp_path / "whole"], tmp_path / "whole.h5")
    ingest([tmp_path / "shared"], tmp_path / "shared.h5")
    one, two = read_dataset(tmp_path / "whole.h5"), read_dataset(tmp_path / "shared.h5")
    assert len(one) > 80 and len(set(one.ids)) == len(one)
    assert list(one.ids) == list(two.ids)
    assert np.array_equal(one.X, two.X) and np.array_equal(one.quality, two.quality)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_dataset_of_a_local_run(tmp_path) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)
    labels = real_labels_csv()
    ingest([tree], tmp_path / "local.h5", labels_csv=labels, workers=1)
    args = ["ingest", str(tree), "-o", str(tmp_path / "dask.h5"), "--labels", str(labels)]
    result = CliRunner().invoke(main, [*args, "--scheduler", "dask-local", "-j", "2"])
    assert result.exit_code == 0, result.output
    local, dask = read_dataset(tmp_path / "local.h5"), read_dataset(tmp_path / "dask.h5")
    assert len(local.ids) > 500
    assert list(local.ids) == list(dask.ids)
    assert np.array_equal(local.X, dask.X) and np.array_equal(local.labels, dask.labels)
    assert np.array_equal(local.quality, dask.quality)
    for key, values in local.meta.items():
        floats = values.dtype.kind == "f"
        assert np.array_equal(values, dask.meta[key], equal_nan=floats), key
    assert (tmp_path / "local.h5.errors.csv").read_text() == (
        tmp_path / "dask.h5.errors.csv"
    ).read_text()


def test_an_unknown_scheduler_is_a_usage_error_before_any_work(tmp_path) -> None:
    # `--scheduler 127.0.0.1:8786` (the scheme forgotten) printed a traceback page.
    out = tmp_path / "o.h5"
    path = str(bundled_files(archive="lamost")[0].path)
    result = CliRunner().invoke(main, ["ingest", path, "-o", str(out), "--scheduler", "h:8786"])
    assert result.exit_code == 2, result.output
    assert "unknown scheduler 'h:8786': use local, dask-local or tcp://HOST:PORT" in result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())


def test_append_skips_ids_already_present(tmp_path) -> None:
    files = [f.path for f in bundled_files(archive="ondrejov")]
    out = tmp_path / "o.h5"
    first = ingest(files[:6], out)
    second = ingest(files, out)
    assert first.added == 6 and second.added == len(files) - 6
    assert second.already_present == 6
    assert len(read_dataset(out)) == len(files)


def test_appending_keeps_earlier_runs_bad_files_listed(bad_tree, tmp_path) -> None:
    root, expect, good = bad_tree
    out = tmp_path / "o.h5"
    ingest([root / "bad"], out)
    assert set(_errors(tmp_path / "o.h5.errors.csv")) == set(expect)
    repaired_name = next(iter(expect))
    repaired = root / "bad" / repaired_name
    repaired.unlink()
    shutil.copy(good[0], repaired)
    second = ingest([repaired], out)
    listed = _errors(tmp_path / "o.h5.errors.csv")
    assert set(listed) == set(expect) - {repaired_name}
    assert second.added == 1 and second.errors == []
    assert second.earlier_errors == len(expect) - 1
    assert f"with {len(expect) - 1} of earlier runs" in second.line()
    again = ingest([root / "bad"], out)
    assert set(_errors(tmp_path / "o.h5.errors.csv")) == set(expect) - {repaired_name}
    assert again.earlier_errors == 0


def test_a_bad_file_deleted_after_a_strict_failure_is_no_longer_listed(
    bad_tree, tmp_path, monkeypatch
) -> None:
    root, expect, good = bad_tree
    out = tmp_path / "o.h5"
    ingest(good[:2], out)
    with pytest.raises(IngestFailed, match="bad files with --strict"):
        ingest([root / "bad"], out, strict=True)
    assert set(_errors(tmp_path / "o.h5.errors.csv")) == set(expect)
    deleted = next(iter(expect))
    (root / "bad" / deleted).unlink()
    monkeypatch.chdir(root)  # the same folder named relatively this time: listed once
    ingest(["bad"], out)
    with (tmp_path / "o.h5.errors.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(Path(row["path"]).name for row in rows) == sorted(set(expect) - {deleted})


def test_errors_of_an_older_spectraldl_with_relative_paths_are_kept_unless_read_again(
    tmp_path, monkeypatch
) -> None:
    """An older spectraldl wrote paths as given, relative to a working folder unknown now:
    such a row goes only when this run reads that very path again; new rows are absolute."""
    files = [f.path for f in bundled_files(archive="ondrejov")]
    for folder in ("dr5/fits", "dr6/fits"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "dr5/fits/broken.fits").write_bytes(b"SIMPLE  =")
    (tmp_path / "dr6/fits/broken.fits").write_bytes(b"SIMPLE  =")
    out = tmp_path / "all.h5"
    ingest(files[:2], out)
    (tmp_path / "all.h5.errors.csv").write_text("path,reason\nfits/broken.fits,not FITS\n")
    monkeypatch.chdir(tmp_path / "dr6")
    ingest([files[2]], out)
    assert _errors_rows(tmp_path / "all.h5.errors.csv") == [("fits/broken.fits", "not FITS")]
    ingest(["fits"], out)
    rows = _errors_rows(tmp_path / "all.h5.errors.csv")
    assert [path for path, _ in rows] == [str(tmp_path / "dr6/fits/broken.fits")]


def _errors_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as handle:
        return [(row["path"], row["reason"]) for row in csv.DictReader(handle)]


def test_damaged_errors_file_of_an_append_is_named(tmp_path) -> None:
    files = [f.path for f in bundled_files(archive="ondrejov")]
    out = tmp_path / "o.h5"
    ingest(files[:2], out)
    (tmp_path / "o.h5.errors.csv").write_text("id;why\nx;y\n")
    before = (tmp_path / "o.h5").read_bytes()
    with pytest.raises(IngestFailed, match=r"o\.h5\.errors\.csv: not an errors file"):
        ingest(files, out)
    assert (tmp_path / "o.h5").read_bytes() == before


def test_interrupted_run_of_other_inputs_is_refused(tmp_path) -> None:
    files = [f.path for f in bundled_files(archive="ondrejov")]
    (tmp_path / "o.h5.parts").mkdir()
    (tmp_path / "o.h5.parts" / "manifest.json").write_text('{"files": "other"}')
    with pytest.raises(IngestFailed, match="unfinished ingest of other paths"):
        ingest(files, tmp_path / "o.h5")


def _resume_appends(tree: Path, out: Path, before: Dataset, reference: Path) -> Dataset:
    """The same command again finishes the interrupted run: ``before``'s rows, then those of
    the uninterrupted run ``reference``; the finished dataset."""
    finish = _ingest_process(tree, out)
    output = finish.communicate(timeout=300)[0].decode()
    assert finish.returncode == 0, output
    resumed, full = read_dataset(out), read_dataset(reference)
    assert list(resumed.ids) == list(before.ids) + list(full.ids)
    assert np.array_equal(resumed.X[len(before) :], full.X)
    assert np.array_equal(resumed.labels[len(before) :], full.labels)
    return resumed


def _ingest_process(tree: Path, out: Path, *, quiet: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "spectraldl.cli", "ingest", str(tree), "-o", str(out), "-j", "2"],
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 3000)
    reference = tmp_path / "reference.h5"
    ingest([tree], reference, workers=2)

    out = tmp_path / "out.h5"
    # A dataset already there must survive the kill untouched.
    ondrejov = [f.path for f in bundled_files(archive="ondrejov")]
    ingest(ondrejov, out)
    before = read_dataset(out)
    parts = tmp_path / "out.h5.parts"
    process = _ingest_process(tree, out, quiet=True)
    deadline = time.monotonic() + 60
    while not list(parts.glob("chunk-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(parts.glob("chunk-*.npz")), "the run finished before it could be killed"
    assert (tmp_path / ".out.h5.tmp").exists()  # the new dataset, merged while chunks are read
    still = read_dataset(out)
    assert list(still.ids) == list(before.ids) and np.array_equal(still.X, before.X)

    resumed = _resume_appends(tree, out, before, reference)
    assert len(set(resumed.ids)) == len(resumed)
    assert not parts.exists()
    assert sorted(p.name for p in tmp_path.glob(".*")) == []  # the killed run's new file went
    assert _errors(tmp_path / "out.h5.errors.csv") == _errors(tmp_path / "reference.h5.errors.csv")


@pytest.fixture(scope="module")
def tree_and_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3000 real files in a tree, and their dataset from an uninterrupted run."""
    folder = tmp_path_factory.mktemp("sigterm")
    replicate_real_tree(folder / "tree", 3000)
    ingest([folder / "tree"], folder / "reference.h5", workers=2)
    return folder / "tree", folder / "reference.h5"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("to_group", [False, True], ids=["run-only", "process-group"])
def test_sigterm_then_resume_equals_an_uninterrupted_run(
    tree_and_reference: tuple[Path, Path], tmp_path: Path, to_group: bool
) -> None:
    """Schedulers stop a job with SIGTERM, to the run (kill PID) or its whole process group
    (timeout, SLURM): one line and status 143, no process left, the chunks kept to resume."""
    tree, reference = tree_and_reference
    out = tmp_path / "out.h5"
    ingest([f.path for f in bundled_files(archive="ondrejov")], out)  # must survive untouched
    before = read_dataset(out)
    parts = tmp_path / "out.h5.parts"
    process = subprocess.Popen(
        [sys.executable, "-m", "spectraldl.cli", "ingest", str(tree), "-o", str(out), "-j", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not list(parts.glob("chunk-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.005)
    if to_group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert stderr.splitlines() == [
        "Error: terminated (SIGTERM); the finished chunks are kept: run the same command to resume"
    ]
    assert not left_in_group(process.pid), "processes outlived the run"
    assert list(parts.glob("chunk-*.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.h5",
        "out.h5.errors.csv",
        "out.h5.parts",
    ]
    still = read_dataset(out)
    assert list(still.ids) == list(before.ids) and np.array_equal(still.X, before.X)

    _resume_appends(tree, out, before, reference)
    assert not parts.exists()
    assert _errors(tmp_path / "out.h5.errors.csv") == _errors(
        reference.with_name("reference.h5.errors.csv")
    )


def test_a_dataset_given_as_input_is_named_an_hdf5_file(tmp_path) -> None:
    """Ingesting a spectraldl dataset again: its reason says it is HDF5 and ingested already."""
    dataset = tmp_path / "real.h5"
    ingest([f.path for f in bundled_files(archive="lamost")[:2]], dataset)
    result = CliRunner().invoke(main, ["ingest", str(dataset), "-o", str(tmp_path / "again.h5")])
    assert result.exit_code == 0 and "0 spectra added" in result.output
    reason = _errors(tmp_path / "again.h5.errors.csv")[dataset.name]
    assert "not a FITS file but an HDF5 file" in reason and "ingested already" in reason


@pytest.mark.parametrize("name", ["x.fits", "x", "x.parquet"])
def test_an_output_not_named_h5_is_a_usage_error(tmp_path, name: str) -> None:
    """`-o x.fits` once wrote an HDF5 dataset under a FITS name; now nothing is written."""
    source = str(bundled_files(archive="lamost")[0].path)
    result = CliRunner().invoke(main, ["ingest", source, "-o", str(tmp_path / name)])
    assert result.exit_code == 2 and "name it .h5 or .hdf5" in result.output
    assert list(tmp_path.iterdir()) == []
    assert DATASET_SUFFIXES == HDF5_SUFFIXES
