"""spectraldl classify: real files and datasets to predictions, resumable, local or Dask."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from classify_helpers import trained_model
from click.testing import CliRunner
from process_helpers import left_in_group

from spectraldl.classify.plan import ClassifyError, plan_chunks
from spectraldl.classify.predictor import (
    CPU_BF16_ENV,
    Predictor,
    cpu_has_native_bf16,
    predictions_frame,
)
from spectraldl.classify.run import classify, parts_dir
from spectraldl.cli import main
from spectraldl.core.quality import Quality, flag_names
from spectraldl.io.bundled import bundled_files, replicate_real_tree
from spectraldl.io.predictions import (
    SUFFIXES,
    column_spec,
    probability_column,
    read_metadata,
    read_predictions,
)
from spectraldl.jobs.backends import open_backend
from spectraldl.jobs.files import errors_csv_path
from spectraldl.jobs.ingest import discover, ingest, read_and_preprocess
from spectraldl.ml.modelcard import ModelMismatch, load_model
from spectraldl.ml.pretrained import resolve_model
from spectraldl.ml.quantized import calibration_rows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(tmp_path_factory.mktemp("classify-model"))


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bundled real spectrum (LAMOST DR1-DR7, MRS, Ondřejov) in a nested tree."""
    root = tmp_path_factory.mktemp("real") / "archive"
    for item in bundled_files():
        target = root / item.archive / item.path.parent.name / item.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, target)
    return root


def _errors(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: row["reason"] for row in csv.DictReader(handle)}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


# --- what a row says ----------------------------------------------------------------------


@pytest.mark.parametrize("native_bf16", ["0", "1"], ids=["plain-cpu", "native-bf16-cpu"])
def test_rows_agree_with_the_model_api_on_real_files(
    model_dir: Path, real_tree: Path, tmp_path: Path, monkeypatch, native_bf16: str
):
    # The default precision must not depend on the CPU: both answers of the detection run here.
    monkeypatch.setenv(CPU_BF16_ENV, native_bf16)
    assert cpu_has_native_bf16() is (native_bf16 == "1")
    out = tmp_path / "pred.parquet"
    summary = classify(model_dir, [real_tree], out, chunk_files=16)
    model = load_model(model_dir, device="cpu")
    files = [os.path.abspath(p) for p in discover([real_tree])]
    rows, errors = read_and_preprocess(files, config=model.config)
    table = read_predictions(out)

    assert summary.rows == len(table) == len(rows) and summary.inputs == len(files)
    assert list(table.columns) == list(column_spec(model.classes))
    assert list(table["id"]) == list(rows.ids)
    assert list(table["source"]) == list(rows.meta["source"])
    proba = model.predict_proba(rows.X)
    p = table[[probability_column(c) for c in model.classes]].to_numpy()
    np.testing.assert_allclose(p, proba, atol=2e-6)
    assert list(table["predicted_class"]) == [model.classes[i] for i in proba.argmax(axis=1)]
    assert read_metadata(out)["manifest"]["precision"] == "fp32"
    novelty = model.novelty.score(model.embed(rows.X))
    np.testing.assert_allclose(table["novelty"], novelty, rtol=1e-4, atol=1e-3)
    novel = table["novelty"].to_numpy() > model.novelty.threshold
    expected = rows.quality | np.where(novel, int(Quality.NOVEL), 0)
    assert np.array_equal(table["quality"].to_numpy(), expected)
    assert list(table["quality_flags"]) == [flag_names(int(q)) for q in expected]
    assert set(table["model_id"]) == {model.model_id}
    np.testing.assert_allclose(table["ra"], rows.meta["ra"])
    # Real low-S/N LAMOST spectra keep their LOW_SNR flag from preprocessing.
    assert (table["quality"].to_numpy() & int(Quality.LOW_SNR)).any()
    # The errors file lists exactly what read_and_preprocess refuses.
    assert _errors(errors_csv_path(out)) == {e.path: e.reason for e in errors}
    assert (parts_dir(out) / "merged").exists()  # kept for a later update of the table


def test_predictor_is_one_pass_of_probabilities_and_novelty(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    x = np.random.default_rng(3).normal(size=(300, model.grid_n)).astype(np.float32)
    proba, novelty = Predictor(model, precision="fp32", batch_size=64)(x)
    np.testing.assert_allclose(proba, model.predict_proba(x), atol=2e-6)
    np.testing.assert_allclose(novelty, model.novelty.score(model.embed(x)), rtol=1e-4)
    assert proba.dtype == np.float32 and novelty.shape == (300,)
    # Random noise is unlike the training data: most of it is flagged.
    assert (novelty > model.novelty.threshold).mean() > 0.5


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batches_side_by_side_on_threads_give_the_one_thread_numbers(precision: str) -> None:
    model = load_model(resolve_model("cnn"), device="cpu")  # the shipped CNN: Winograd in fp32
    rows = calibration_rows(model.config)  # the bundled real spectra and simulated ones
    x = np.resize(rows, (1000, rows.shape[1])).astype(np.float32)
    predictor = Predictor(model, precision=precision, batch_size=96)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = predictor(x)
        torch.set_num_threads(3)
        three = predictor(x)
        assert torch.get_num_threads() == 3  # the caller's setting is kept
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])


def test_int8_threads_overlapping_keep_warnings_silenced_and_leave_the_filters() -> None:
    import threading
    import warnings

    from spectraldl.ml.quantized import _quiet_deprecations

    before = list(warnings.filters)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    caught: list[list[warnings.WarningMessage]] = []

    def first() -> None:  # in first, out first: while the second is still inside
        with _quiet_deprecations():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with _quiet_deprecations():
            second_in.set()
            first_out.wait(10)
            with warnings.catch_warnings(record=True) as seen:
                warnings.warn(
                    "torch.ao.quantization is deprecated", DeprecationWarning, stacklevel=1
                )
            caught.append(seen)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert caught == [[]]  # still silenced after the first thread left
    assert warnings.filters == before


@pytest.mark.parametrize("native_bf16", ["0", "1"], ids=["plain-cpu", "native-bf16-cpu"])
def test_auto_precision_is_a_choice_recorded_in_the_output(
    model_dir: Path, real_tree: Path, tmp_path: Path, monkeypatch, native_bf16: str
) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, native_bf16)
    default = classify(model_dir, [real_tree], tmp_path / "default.parquet", device="cpu")
    auto = classify(
        model_dir, [real_tree], tmp_path / "auto.parquet", device="cpu", precision="auto"
    )
    expected = "bf16" if native_bf16 == "1" else "fp32"
    assert read_metadata(auto.out)["manifest"]["precision"] == expected
    assert read_metadata(default.out)["manifest"]["precision"] == "fp32"
    p = [probability_column(c) for c in load_model(model_dir, device="cpu").classes]
    a, d = read_predictions(auto.out)[p].to_numpy(), read_predictions(default.out)[p].to_numpy()
    if expected == "fp32":
        np.testing.assert_array_equal(a, d)
    else:
        assert 0 < np.abs(a - d).max() < 0.1


def test_bf16_agrees_with_fp32(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    rows, _ = read_and_preprocess(
        [f.path for f in bundled_files(archive="lamost")], config=model.config
    )
    p32, _ = Predictor(model, precision="fp32")(rows.X)
    p16, _ = Predictor(model, precision="bf16")(rows.X)
    assert np.abs(p32 - p16).max() < 0.1
    assert (p32.argmax(1) == p16.argmax(1)).mean() >= 0.95


@pytest.mark.slow
def test_int8_agrees_with_fp32_and_is_the_same_in_every_process(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    rows, _ = read_and_preprocess(
        [f.path for f in bundled_files(archive="lamost")], config=model.config
    )
    p32, n32 = Predictor(model, precision="fp32")(rows.X)
    int8 = Predictor(model, precision="int8")
    p8, n8 = int8(rows.X)
    assert (p32.argmax(1) == p8.argmax(1)).mean() >= 0.95
    assert np.abs(p32 - p8).max() < 0.2
    np.testing.assert_allclose(n8, n32, rtol=0.1)
    # The calibration set is fixed: a second build (another worker) gives the same numbers.
    again, _ = Predictor(model, precision="int8")(rows.X)
    assert np.array_equal(again, p8)
    with pytest.raises(ValueError, match="int8"):
        from spectraldl.classify.predictor import resolve_precision

        resolve_precision("int8", torch.device("cuda"))


def test_novel_flag_follows_the_threshold(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    rows, _ = read_and_preprocess(
        [f.path for f in bundled_files(archive="lamost")][:10], config=model.config
    )
    rows.quality[:] = [0, 4, 8, 0, 16, 0, 0, 0, 0, 0]
    proba = np.full((10, len(model.classes)), 1.0 / len(model.classes), np.float32)
    novelty = np.array([0, 5, 50, 50, 5, 1, 0, 0, 0, 0], np.float32)
    frame = predictions_frame(
        rows, proba, novelty, classes=model.classes, threshold=10.0, model_id="m"
    )
    assert list(frame["quality"][:5]) == [0, 4, 8 | 32, 32, 16]
    assert list(frame["quality_flags"][:5]) == [
        "",
        "MASKED",
        "LOW_SNR|NOVEL",
        "NOVEL",
        "PARTIAL_COVERAGE",
    ]


# --- sources, formats ----------------------------------------------------------------------


def test_a_dataset_and_its_fits_files_give_the_same_predictions(
    model_dir: Path, tmp_path: Path
) -> None:
    files = [f.path for f in bundled_files(archive="lamost")]
    dataset = tmp_path / "archive.h5"
    ingest(files, dataset)
    from_fits = read_predictions(classify(model_dir, files, tmp_path / "a.parquet").out)
    from_dataset = read_predictions(
        classify(model_dir, [dataset], tmp_path / "b.parquet", chunk_rows=7).out
    )
    a = from_fits.sort_values("id").reset_index(drop=True)
    b = from_dataset.sort_values("id").reset_index(drop=True)
    assert list(a["id"]) == list(b["id"])
    assert list(a["predicted_class"]) == list(b["predicted_class"])
    assert np.array_equal(a["quality"], b["quality"])
    p = [probability_column(c) for c in load_model(model_dir, device="cpu").classes]
    np.testing.assert_allclose(a[p].to_numpy(), b[p].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_format_is_read_back_by_astropy(model_dir: Path, tmp_path: Path, suffix: str):
    from astropy.table import Table

    files = [f.path for f in bundled_files(archive="ondrejov")]
    out = tmp_path / f"pred{suffix}"
    classify(model_dir, files, out, chunk_files=5)
    ours = read_predictions(out)
    table = Table.read(out, format="csv") if suffix == ".csv" else Table.read(out)
    assert table.colnames == list(ours.columns)
    assert len(table) == len(ours) == len(files)
    assert [str(v) for v in table["id"]] == list(ours["id"])
    np.testing.assert_allclose(np.asarray(table["novelty"], float), ours["novelty"], rtol=1e-6)
    if suffix in (".fits", ".parquet"):
        assert str(table["ra"].unit) == "deg"
    meta = read_metadata(out)
    assert meta["model_id"] == load_model(model_dir, device="cpu").model_id
    assert meta["rows"] == len(files)


def test_mixed_sources_are_chunked_in_the_order_given(tmp_path: Path) -> None:
    files = [f.path for f in bundled_files(archive="lamost")][:10]
    dataset = tmp_path / "d.h5"
    ingest(files[:4], dataset)
    tree = tmp_path / "tree"
    (tree / "b").mkdir(parents=True)
    (tree / "a").mkdir()
    for i, path in enumerate(files[1:]):
        shutil.copy(path, tree / ("a" if i < 5 else "b") / path.name)
    (tree / "a" / "notes.txt").write_text("not a spectrum")
    sources = [files[0], dataset, tree, tree / "b", files[0]]
    plan = plan_chunks(sources, chunk_files=3, chunk_rows=3)
    chunks = list(plan.iter_chunks())
    kinds = [("d" if c.dataset else "f", c.size) for c in chunks]
    assert kinds[:3] == [("f", 1), ("d", 3), ("d", 1)]
    assert {kind for kind, _ in kinds[3:]} == {"f"} and sum(size for _, size in kinds[3:]) == 9
    assert all(size <= 6 for _, size in kinds)  # at most twice the average asked for
    assert [c.index for c in chunks] == list(range(len(chunks))) and plan.chunks == len(chunks)
    assert plan.files == 10 and plan.dataset_rows == 4 and plan.inputs == 14
    listed = [f for c in chunks for f in c.files]
    assert listed == [os.path.abspath(files[0])] + [os.path.abspath(p) for p in discover([tree])]
    assert plan_chunks(sources, chunk_files=3, chunk_rows=3).digest == plan.digest
    assert plan_chunks(files, chunk_files=4).digest != plan_chunks(files, chunk_files=3).digest
    # A tree that changes under a planned run is noticed, not half-classified.
    shutil.copy(files[0], tree / "b" / "late.fits")
    with pytest.raises(ClassifyError, match="changed"):
        list(plan.iter_chunks())


def test_planning_a_large_tree_keeps_no_file_list(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for i in range(3000):
        folder = tree / f"{i // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"spec-{i:05d}.fits").touch()
    plan_chunks([tree / "00"], chunk_files=100)
    tracemalloc.start()
    try:
        plan = plan_chunks([tree], chunk_files=100)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.files == 3000 and plan.chunks == sum(1 for _ in plan.iter_chunks())
    assert kept < 20_000 and peak < 200_000, (kept, peak)


# --- bad input -----------------------------------------------------------------------------


def test_a_tree_with_broken_files_classifies_every_good_one_and_names_every_bad_one(
    model_dir: Path, bad_tree, tmp_path: Path
) -> None:
    root, expect, good = bad_tree
    out = tmp_path / "pred.csv"
    code, output = _run("classify", str(model_dir), str(root), "-o", str(out), "--chunk-files", "3")
    assert code == 0, output
    table = read_predictions(out)
    assert sorted(table["source"]) == sorted(os.path.abspath(p) for p in good)
    errors = _errors(errors_csv_path(out))
    assert {Path(p).name for p in errors} == set(expect)
    for path, reason in errors.items():
        assert expect[Path(path).name] in reason, (path, reason)
    assert f"{len(expect)} bad files" in output


def test_a_bad_model_directory_is_refused_before_any_work(model_dir: Path, tmp_path: Path) -> None:
    files = [str(f.path) for f in bundled_files(archive="ondrejov")][:2]
    out = tmp_path / "pred.parquet"
    code, output = _run("classify", "--model", str(tmp_path / "nowhere"), *files, "-o", str(out))
    assert code == 1 and "no such model directory" in output
    # As the first argument, a path that does not exist is named (it may be a source).
    code, output = _run("classify", str(tmp_path / "nowhere"), *files, "-o", str(out))
    assert code == 1 and "nowhere: no such file or directory" in output

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    code, output = _run("classify", str(broken), *files, "-o", str(out))
    assert code == 1 and "model.pt" in output and "Traceback" not in output

    no_novelty = tmp_path / "no-novelty"
    shutil.copytree(model_dir, no_novelty)
    (no_novelty / "novelty.npz").unlink()
    code, output = _run("classify", str(no_novelty), *files, "-o", str(out))
    assert code == 1 and "novelty.npz" in output

    assert not out.exists() and not parts_dir(out).exists()


def test_a_dataset_on_another_grid_is_refused(model_dir: Path, tmp_path: Path) -> None:
    from spectraldl.prep.preprocess import PreprocessConfig

    dataset = tmp_path / "other-grid.h5"
    config = PreprocessConfig(grid_n=100)
    ingest([f.path for f in bundled_files(archive="ondrejov")][:3], dataset, config=config)
    with pytest.raises(ModelMismatch, match="grid_n"):
        classify(model_dir, [dataset], tmp_path / "pred.parquet")
    code, output = _run("classify", str(model_dir), str(dataset), "-o", str(tmp_path / "p.h5"))
    assert code == 1 and "grid_n" in output
    assert not parts_dir(tmp_path / "pred.parquet").exists()


def test_the_output_is_never_an_input(model_dir: Path, tmp_path: Path) -> None:
    """``-o`` naming the dataset being classified, even with --overwrite, is refused before
    any work (the predictions replaced the dataset)."""
    dataset = tmp_path / "same.h5"
    ingest([f.path for f in bundled_files(archive="ondrejov")][:3], dataset)
    before = dataset.read_bytes()
    args = ("classify", str(model_dir), str(dataset), "-o", str(dataset), "--overwrite")
    code, output = _run(*args)
    assert code == 1 and "same.h5: is an input of this run" in output
    assert dataset.read_bytes() == before and not parts_dir(dataset).exists()


def test_a_full_disk_keeps_the_errors_file_with_its_table(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's write failing (no space) leaves the errors file of the same run beside it
    (it was replaced by the failed run's), and the message names the output."""
    import errno

    import spectraldl.classify.run as run_module

    files = [str(f.path) for f in bundled_files(archive="ondrejov")][:3]
    bad = tmp_path / "bad.fits"
    bad.write_text("not FITS")
    out = tmp_path / "pred.parquet"
    classify(model_dir, [*files, bad], out)
    table, errors = out.read_bytes(), errors_csv_path(out).read_bytes()

    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_module, "write_predictions", full_disk)
    code, output = _run("classify", str(model_dir), *files, "-o", str(out), "--overwrite")
    assert code == 1 and "pred.parquet: no space left on the device" in output
    assert out.read_bytes() == table and errors_csv_path(out).read_bytes() == errors


def test_a_damaged_dataset_is_refused_naming_the_file(model_dir: Path, tmp_path: Path) -> None:
    import h5py

    dataset = tmp_path / "nan-rows.h5"
    ingest([f.path for f in bundled_files(archive="ondrejov")][:4], dataset)
    with h5py.File(dataset, "r+") as h5:
        h5["X"][1, 5] = np.nan
    out = tmp_path / "pred.parquet"
    code, output = _run("classify", str(model_dir), str(dataset), "-o", str(out))
    assert code == 1
    assert output == f"Error: {dataset}: 1 rows with non-finite values (rows 1); ingest again\n"
    assert not out.exists()
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    code, output = _run("classify", str(model_dir), str(empty), "-o", str(out))
    assert code == 1 and output == f"Error: {empty}: empty file (0 bytes)\n"


def test_an_unknown_output_format_is_refused(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ClassifyError, match=r"\.txt"):
        classify(model_dir, [bundled_files()[0].path], tmp_path / "pred.txt")


def test_cuda_without_a_gpu_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    files = [str(bundled_files()[0].path)]
    code, output = _run(
        "classify", str(model_dir), *files, "-o", str(tmp_path / "p.csv"), "--device", "cuda"
    )
    assert code == 1 and "CUDA" in output


# --- resume and refusal --------------------------------------------------------------------


def test_an_existing_output_is_resumed_only_for_the_same_model_and_sources(
    model_dir: Path, tmp_path: Path
) -> None:
    files = [str(f.path) for f in bundled_files(archive="ondrejov")]
    out = tmp_path / "pred.fits"
    first = classify(model_dir, files, out)
    again = classify(model_dir, files, out)
    assert again.already_complete and again.rows == first.rows
    assert (parts_dir(out) / "merged").exists()
    # Parts of no run beside the complete table (killed while a folder was made): they go.
    shutil.rmtree(parts_dir(out))
    parts_dir(out).mkdir()
    (parts_dir(out) / "chunk-0000000.parquet").write_bytes(b"stale")
    again = classify(model_dir, files, out)
    assert again.already_complete and again.rows == first.rows
    assert not parts_dir(out).exists()
    errors_csv = tmp_path / "pred.fits.errors.csv"
    kept = errors_csv.read_bytes()
    errors_csv.write_bytes(b"\xff\xfe p\x00")
    with pytest.raises(ClassifyError, match=r"pred\.fits\.errors\.csv: not an errors file"):
        classify(model_dir, files, out)
    errors_csv.write_bytes(kept)

    other = tmp_path / "other-model"
    shutil.copytree(model_dir, other)
    card = json.loads((other / "card.json").read_text())
    card["temperature"] = card.get("temperature", 1.0) * 2
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(ClassifyError, match="another model"):
        classify(other, files, out)
    with pytest.raises(ClassifyError, match="another model"):
        classify(model_dir, files[:-1], out)
    replaced = classify(other, files, out, overwrite=True)
    assert not replaced.already_complete
    assert read_metadata(out)["model_id"] == load_model(other, device="cpu").model_id

    foreign = tmp_path / "notes.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ClassifyError, match="not a spectraldl predictions table"):
        classify(model_dir, files, foreign)


def test_an_unfinished_run_of_other_settings_is_refused(model_dir: Path, tmp_path: Path):
    files = [str(f.path) for f in bundled_files(archive="ondrejov")]
    out = tmp_path / "pred.parquet"
    parts = parts_dir(out)
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"model_id": "someone else"}))
    code, output = _run("classify", str(model_dir), *files, "-o", str(out))
    assert code == 1 and "unfinished run" in output
    code, output = _run("classify", str(model_dir), *files, "-o", str(out), "--overwrite")
    assert code == 0, output
    assert len(read_predictions(out)) == len(files)


def _classify_process(model_dir: Path, tree: Path, out: Path, *, quiet: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spectraldl.cli",
            "classify",
            str(model_dir),
            str(tree),
            "-o",
            str(out),
            "--chunk-files",
            "20",
            "--threads",
            "1",
        ],
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(model_dir: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)
    (tree / "0000" / "broken.fits").write_bytes(b"SIMPLE  =")
    reference = tmp_path / "reference.parquet"
    classify(model_dir, [tree], reference, chunk_files=20, threads=1)

    out = tmp_path / "out.parquet"
    parts = parts_dir(out)
    process = _classify_process(model_dir, tree, out, quiet=True)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("chunk-*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    committed = len(list(parts.glob("chunk-*.parquet")))
    assert 3 <= committed < 30, "the run was not killed part-way"
    assert not out.exists()

    _resume_equals(model_dir, tree, out, reference)


def _resume_equals(model_dir: Path, tree: Path, out: Path, reference: Path) -> None:
    """The same command again finishes the interrupted run: table and errors file equal the
    uninterrupted run's, the parts kept and marked merged."""
    finish = _classify_process(model_dir, tree, out, quiet=False)
    output = finish.communicate(timeout=300)[0].decode()
    assert finish.returncode == 0, output
    assert "chunks were already done" in output
    pd.testing.assert_frame_equal(read_predictions(out), read_predictions(reference))
    assert _errors(errors_csv_path(out)) == _errors(errors_csv_path(reference))
    assert (parts_dir(out) / "merged").exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_then_resume_equals_an_uninterrupted_run(model_dir: Path, tmp_path: Path):
    """SIGTERM (kill PID, systemd, a batch scheduler) to the run: one line and status 143,
    its workers stopped, nothing half written, the committed chunks kept to resume."""
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)
    reference = tmp_path / "reference.parquet"
    classify(model_dir, [tree], reference, chunk_files=20, threads=1)

    out = tmp_path / "out.parquet"
    parts = parts_dir(out)
    process = _classify_process(model_dir, tree, out, quiet=False)
    deadline = time.monotonic() + 120
    while not list(parts.glob("chunk-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 143, output
    assert output.splitlines() == [
        "Error: terminated (SIGTERM); the finished chunks are kept: run the same command to resume"
    ]
    assert not left_in_group(process.pid), "processes outlived the run"
    assert list(parts.glob("chunk-*.parquet"))
    left = {p.name for p in tmp_path.iterdir()} - {"tree", "reference.parquet"}
    kept = {"reference.parquet.errors.csv", "reference.parquet.parts", "out.parquet.parts"}
    assert left == kept  # no temporaries, no lock
    assert not list(parts.glob(".*"))

    _resume_equals(model_dir, tree, out, reference)


# --- backends ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_reference(model_dir: Path, real_tree: Path, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("reference") / "pred.parquet"
    classify(model_dir, [real_tree], out, chunk_files=8)
    return read_predictions(out)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_predictions_row_for_row(
    model_dir: Path, real_tree: Path, local_reference: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "dask.parquet"
    args = ["classify", str(model_dir), str(real_tree), "-o", str(out), "--chunk-files", "8"]
    code, output = _run(*args, "--scheduler", "dask-local", "-j", "2")
    assert code == 0, output
    pd.testing.assert_frame_equal(read_predictions(out), local_reference)


def test_joining_a_running_dask_scheduler_gives_the_local_predictions(
    model_dir: Path, real_tree: Path, local_reference: pd.DataFrame, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    out = tmp_path / "tcp.parquet"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address=None,
        protocol="tcp",
        host="127.0.0.1",
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        args = ["classify", str(model_dir), str(real_tree), "-o", str(out), "--chunk-files", "8"]
        code, output = _run(*args, "--scheduler", address)
    assert code == 0, output
    pd.testing.assert_frame_equal(read_predictions(out), local_reference)


@pytest.mark.slow
def test_local_worker_processes_give_the_same_predictions(
    model_dir: Path, real_tree: Path, local_reference: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "procs.parquet"
    with open_backend("local", workers=2) as backend:
        classify(model_dir, [real_tree], out, chunk_files=8, backend=backend)
    pd.testing.assert_frame_equal(read_predictions(out), local_reference)


def test_an_unknown_scheduler_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    code, output = _run(
        "classify",
        str(model_dir),
        str(bundled_files()[0].path),
        "-o",
        str(tmp_path / "p.csv"),
        "--scheduler",
        "yarn",
    )
    assert code == 2 and "unknown scheduler" in output


# --- memory ---------------------------------------------------------------------------------


def _peak_traced(model_dir: Path, tree: Path, out: Path) -> int:
    tracemalloc.start()
    try:
        classify(model_dir, [tree], out, chunk_files=25, threads=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_is_bounded_by_the_chunk_not_the_tree(model_dir: Path, tmp_path: Path) -> None:
    from spectraldl.simulate import simulate_archive

    small, large = tmp_path / "small", tmp_path / "large"
    simulate_archive(small, archive="lamost", n=100, seed=5, junk=0.01)
    simulate_archive(large, archive="lamost", n=1000, seed=6, junk=0.01)
    # Warm up on the large tree: imports, caches and Python's table of interned names (pathlib
    # interns every file name) reach their steady size before anything is measured.
    classify(model_dir, [large], tmp_path / "warm.parquet", chunk_files=25, threads=1)
    peak_small = _peak_traced(model_dir, small, tmp_path / "small.parquet")
    peak_large = _peak_traced(model_dir, large, tmp_path / "large.parquet")
    files = list(large.rglob("*.fits.gz"))
    # The tree's bytes once gunzipped (what holding every file would cost), from a sample.
    sizes = []
    for path in files[:60]:
        with contextlib.suppress(OSError, EOFError):
            sizes.append(len(gzip.decompress(path.read_bytes())))
    raw = np.mean(sizes) * len(files)
    rows = len(read_predictions(tmp_path / "large.parquet"))
    bad = len(_errors(tmp_path / "large.parquet.errors.csv"))
    assert rows + bad == len(files) == 1000 and 0 < bad < 40
    # Ten times the files, about the same peak (under 1 kB more per extra file), and far
    # below holding the tree's bytes: one batch of spectra read, then preprocessed together
    # (`PREPROCESS_BATCH`, here the chunk's files: 25 on average, at most 50, 5 % of the
    # tree), is held at a time.
    assert peak_large < peak_small + 900_000, (peak_small, peak_large)
    assert peak_large < raw / 10, (peak_large, raw)


# --- GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_predictions_match_cpu(model_dir: Path, real_tree: Path, tmp_path: Path) -> None:
    cpu = read_predictions(
        classify(
            model_dir, [real_tree], tmp_path / "cpu.parquet", device="cpu", precision="fp32"
        ).out
    )
    gpu32 = read_predictions(
        classify(
            model_dir, [real_tree], tmp_path / "gpu.parquet", device="cuda", precision="fp32"
        ).out
    )
    gpu16 = read_predictions(
        classify(
            model_dir, [real_tree], tmp_path / "gpu16.parquet", device="cuda", precision="bf16"
        ).out
    )
    p = [c for c in cpu.columns if c.startswith("p_")]
    # fp32 is plain float32 on the GPU too (no TF32 tensor cores): the CPU's numbers.
    np.testing.assert_allclose(gpu32[p].to_numpy(), cpu[p].to_numpy(), atol=1e-5)
    assert list(gpu32["predicted_class"]) == list(cpu["predicted_class"])
    assert (gpu16["predicted_class"] == cpu["predicted_class"]).mean() > 0.95


@pytest.mark.parametrize(
    ("option", "value"),
    [("--chunk-files", "0"), ("--chunk-rows", "-1"), ("--device", "foo"), ("--threads", "0")],
)
def test_classify_refuses_meaningless_options_naming_them(
    tmp_path: Path, option: str, value: str
) -> None:
    out = tmp_path / "p.parquet"
    code, output = _run("classify", str(tmp_path / "x.h5"), "-o", str(out), option, value)
    assert code == 2, output
    assert f"Invalid value for '{option}'" in output
    assert not out.exists()
