"""`spectraldl train` and `spectraldl evaluate` through the CLI runner; the published CSV."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from training_helpers import profile_rows, write_dataset

from spectraldl.cli import main
from spectraldl.io.bundled import bundled_files, real_labels_csv
from spectraldl.io.dataset import DatasetError, read_dataset
from spectraldl.io.labels import read_labels
from spectraldl.io.published_csv import META_FIELDS, read_published_csv, write_published_csv
from spectraldl.jobs.ingest import read_and_preprocess
from spectraldl.prep.preprocess import PreprocessConfig


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def dataset(workdir: Path) -> Path:
    synthetic = profile_rows({"emission": 150, "absorption": 150, "double-peak": 100}, seed=3)
    real = profile_rows(
        {"emission": 3, "absorption": 5, "double-peak": 2}, seed=4, origin="real", prefix="r"
    )
    unknown = profile_rows({"emission": 4}, seed=5, prefix="u")
    unknown.labels[:] = 2  # 'unknown': never a model class
    return write_dataset(workdir / "training.h5", synthetic, real, unknown)


@pytest.fixture(scope="module")
def model_dir(workdir: Path, dataset: Path) -> Path:
    out = workdir / "model"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(dataset),
            "-o",
            str(out),
            "--model",
            "cnn-small",
            "--epochs",
            "6",
            "--seed",
            "2",
            "--channels-last",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["training"]["channels_last"] is True
    assert "test split" in result.output and "real (not fitted)" in result.output
    assert "accuracy" in result.output and f"in {out}" in result.output
    assert "epoch 1: loss" in result.output  # one line per epoch when not on a terminal
    return out


@pytest.fixture(scope="module")
def ondrejov_csv(workdir: Path) -> Path:
    """The bundled real Ondřejov spectra, preprocessed, in the thesis' published layout."""
    files = [f.path for f in bundled_files(archive="ondrejov")]
    rows, errors = read_and_preprocess(
        files, config=PreprocessConfig(), labels=read_labels(real_labels_csv())
    )
    assert not errors and len(rows) == len(files) == 16
    path = workdir / "ondrejov.csv"
    write_published_csv(rows, path, grid_aa=PreprocessConfig().grid_aa)
    return path


def _json(args: list[str]) -> dict:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_evaluate_json_schema(model_dir: Path, dataset: Path) -> None:
    report = _json(["evaluate", str(model_dir), str(dataset), "--json"])
    classes = ["emission", "absorption", "double-peak"]
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["ece"] <= 1.0
    assert set(report["per_class"]) == set(classes)
    for scores in report["per_class"].values():
        assert set(scores) == {"precision", "recall", "f1", "support"}
        assert isinstance(scores["support"], int)
    assert report["confusion"]["classes"] == classes
    matrix = np.array(report["confusion"]["matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == report["n"]
    # held out by default: the test split (40) and the real rows (10); 'unknown' is left out
    assert report["n"] == 50
    assert report["by_origin"]["synthetic"]["n"] == 40 and report["by_origin"]["real"]["n"] == 10
    assert report["left_out"]["label_not_a_model_class"] == {"unknown": 4}
    assert report["model_id"] == json.loads((model_dir / "metrics.json").read_text())["model_id"]
    test_only = _json(["evaluate", str(model_dir), str(dataset), "--rows", "test", "--json"])
    assert test_only["n"] == 40
    assert test_only["accuracy"] == pytest.approx(
        json.loads((model_dir / "metrics.json").read_text())["test"]["accuracy"]
    )
    everything = _json(["evaluate", str(model_dir), str(dataset), "--rows", "all", "--json"])
    assert everything["n"] == 410


def test_evaluate_table(model_dir: Path, dataset: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(model_dir), str(dataset)])
    assert result.exit_code == 0, result.output
    for word in ("synthetic", "real", "confusion", "precision", "double-peak"):
        assert word in result.output


def test_published_csv_round_trip(ondrejov_csv: Path) -> None:
    header = ondrejov_csv.read_text().splitlines()[0].split(",")
    assert tuple(header[:12]) == META_FIELDS and len(header) == 12 + 140
    assert header[12] == "6519.000" and header[-1] == "6732.000"
    data = read_published_csv(ondrejov_csv)
    assert data.config == PreprocessConfig()
    assert len(data) == 16 and set(data.meta["origin"]) == {"real"}
    assert sorted(data.labels.tolist()) == sorted([0] * 5 + [1] * 10 + [3])
    files = [f.path for f in bundled_files(archive="ondrejov")]
    rows, _ = read_and_preprocess(files, config=PreprocessConfig())
    assert list(data.ids) == list(rows.ids)
    assert np.allclose(data.X, rows.X, atol=1e-5)
    assert data.meta["object"][3] == rows.meta["object"][3]


def test_evaluate_on_published_csv(model_dir: Path, ondrejov_csv: Path) -> None:
    report = _json(["evaluate", str(model_dir), str(ondrejov_csv), "--json"])
    assert report["n"] == 16
    assert report["by_origin"]["real"]["n"] == 16 and "synthetic" not in report["by_origin"]
    assert report["real_by_archive"]["ondrejov"]["n"] == 16
    assert sum(s["support"] for s in report["per_class"].values()) == 16


def test_published_csv_errors(workdir: Path, ondrejov_csv: Path, model_dir: Path) -> None:
    lines = ondrejov_csv.read_text().splitlines()
    bad_label = workdir / "bad-label.csv"
    fields = lines[2].split(",")
    fields[1] = "7"
    bad_label.write_text("\n".join([lines[0], lines[1], ",".join(fields)]) + "\n")
    with pytest.raises(DatasetError, match=re.escape("bad-label.csv, line 3: unknown class '7'")):
        read_published_csv(bad_label)
    flat = workdir / "flat.csv"
    fields = lines[1].split(",")
    flat.write_text("\n".join([lines[0], ",".join(fields[:12] + ["1.0"] * 140)]) + "\n")
    with pytest.raises(DatasetError, match=r"flat\.csv, line 2 .*constant"):
        read_published_csv(flat)
    # another grid: refused by the model with both grids named
    narrow = workdir / "narrow.csv"
    header = lines[0].split(",")[:12] + [f"{w:.3f}" for w in np.linspace(6519, 6732, 100)]
    body = lines[1].split(",")[:12] + [str(v) for v in np.sin(np.arange(100))]
    narrow.write_text(",".join(header) + "\n" + ",".join(body) + "\n")
    result = CliRunner().invoke(main, ["evaluate", str(model_dir), str(narrow)])
    assert result.exit_code == 1
    assert "narrow.csv" in result.output and "x 100" in result.output and "x 140" in result.output
    assert "Traceback" not in result.output


def test_train_on_published_csv_needs_enough_rows(workdir: Path, ondrejov_csv: Path) -> None:
    result = CliRunner().invoke(
        main, ["train", str(ondrejov_csv), "-o", str(workdir / "m"), "--epochs", "1"]
    )
    assert result.exit_code == 1
    assert "too few labelled rows to split" in result.output and "double-peak" in result.output
    assert not (workdir / "m").exists()


def test_train_on_several_datasets_including_csv(workdir: Path, ondrejov_csv: Path) -> None:
    synthetic = write_dataset(
        workdir / "more.h5",
        profile_rows({"emission": 60, "absorption": 60, "double-peak": 60}, seed=9),
    )
    out = workdir / "two"
    report = _json(
        [
            "train",
            str(synthetic),
            str(ondrejov_csv),
            "-o",
            str(out),
            "--model",
            "fnn",
            "--epochs",
            "2",
            "--json",
        ]
    )
    assert report["real"]["n"] == 16 and report["test"]["n"] == 18
    card = json.loads((out / "card.json").read_text())
    assert [Path(d["path"]).name for d in card["datasets"]] == ["more.h5", "ondrejov.csv"]
    assert card["architecture"]["n_parameters"] == 1_124_355


def test_cli_errors(workdir: Path, dataset: Path, model_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(workdir / "none"), str(dataset)])
    assert result.exit_code == 1 and "no such model directory" in result.output
    result = runner.invoke(main, ["train", str(dataset), "-o", str(model_dir), "--epochs", "1"])
    assert result.exit_code == 1 and "already exists" in result.output
    assert "--overwrite" in result.output
    result = runner.invoke(main, ["evaluate", str(model_dir), str(workdir / "missing.h5")])
    assert result.exit_code == 1 and "missing.h5: no such file" in result.output
    assert read_dataset(dataset).X.shape == (414, 140)


def test_evaluate_tables_are_aligned_and_skip_recall_of_empty_classes() -> None:
    from spectraldl.cli.train import _side_by_side

    def metrics(n: int, supports: tuple[int, int]) -> dict:
        per_class = {
            c: {"precision": 0.5, "recall": 0.0 if s == 0 else 0.75, "f1": 0.6, "support": s}
            for c, s in zip(("emission", "double-peak"), supports, strict=True)
        }
        confusion = {"classes": ["emission", "double-peak"], "matrix": [[1, 0], [0, 1]]}
        return {
            "n": n,
            "accuracy": 0.9,
            "ece": 0.01,
            "per_class": per_class,
            "confusion": confusion,
        }

    text = _side_by_side(
        [("all selected", metrics(1200, (1000, 200))), ("real", metrics(9, (9, 0)))]
    )
    lines = text.splitlines()
    assert lines[-2].split() == ["recall", "double-peak", "0.750", "(200)", "-", "(0)"]
    # Right-aligned columns end at the same place on every line.
    ends = {len(line) for line in lines[1:]}
    assert len(ends) == 1, text


@pytest.mark.skipif(torch.version.cuda is not None, reason="this PyTorch is a CUDA build")
def test_train_on_cuda_with_a_cpu_only_pytorch_says_what_to_install(
    dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", str(dataset), "-o", str(out), "--device", "cuda"])
    assert result.exit_code == 1, result.output
    assert "CPU-only build" in result.output and "install a CUDA build" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_overwrite_replaces_only_a_model_folder_without_inputs(
    workdir: Path, dataset: Path, model_dir: Path
) -> None:
    """--overwrite deletes the old folder whole: a folder that is no model (a user's work
    folder) or one holding the training data is refused, and nothing in it is touched."""
    runner = CliRunner()
    sandbox = workdir / "sandbox"
    sandbox.mkdir()
    (sandbox / "thesis.tex").write_text("years of work")
    inside = sandbox / "training.h5"
    inside.write_bytes(dataset.read_bytes())
    args = ["--epochs", "1", "--overwrite"]
    result = runner.invoke(main, ["train", str(inside), "-o", str(sandbox), *args])
    assert result.exit_code == 1 and "not a model folder (no card.json)" in result.output
    assert (sandbox / "thesis.tex").read_text() == "years of work" and inside.exists()
    (sandbox / "card.json").write_text("{}")  # a model folder that holds its own data
    result = runner.invoke(main, ["train", str(inside), "-o", str(sandbox), *args])
    assert result.exit_code == 1 and "an input of this run" in result.output
    assert read_dataset(inside).X.shape == (414, 140)


def _damaged_copy(source: Path, target: Path, damage: str) -> Path:
    """``source`` copied to ``target`` with one damage the dataset readers must refuse."""
    import shutil

    import h5py

    data = source.read_bytes()
    if damage == "empty":
        target.write_bytes(b"")
        return target
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
        return target
    shutil.copy(source, target)
    with h5py.File(target, "r+") as h5:
        if damage == "nan":
            h5["X"][4] = np.nan
        elif damage == "swapped":
            classes = ["absorption", "emission", "unknown", "double-peak", "noise"]
            h5["labels"].attrs["classes"] = json.dumps(classes)
        elif damage == "future":
            h5.attrs["format_version"] = 99
        elif damage == "labels":
            h5["labels"][0] = 9
        elif damage == "no-X":
            del h5["X"]
    return target


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("empty", "empty file (0 bytes)"),
        ("truncated", "truncated HDF5 file"),
        ("nan", "1 rows with non-finite values (rows 4); ingest again"),
        ("swapped", "its label codes would be misread"),
        ("future", "written by a newer spectraldl"),
        ("labels", "1 rows with unknown label codes 9 (rows 0)"),
        ("no-X", "lacks dataset 'X'"),
    ],
)
def test_train_and_evaluate_refuse_a_damaged_dataset_naming_it(
    workdir: Path, dataset: Path, model_dir: Path, damage: str, problem: str
) -> None:
    bad = _damaged_copy(dataset, workdir / f"{damage}.h5", damage)
    out = workdir / f"model-{damage}"
    runner = CliRunner()
    for args in (
        ["train", str(bad), "-o", str(out), "--model", "fnn", "--epochs", "1"],
        ["evaluate", str(model_dir), str(bad), "--rows", "all"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"Error: {bad}: ") and problem in result.output, (
            result.output
        )
        assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("train", "--lr", "0"),
        ("train", "--lr", "-1"),
        ("train", "--lr", "nan"),
        ("train", "--lr", "inf"),
        ("train", "--epochs", "0"),
        ("train", "--patience", "0"),
        ("train", "--batch-size", "0"),
        ("train", "--seed", "-1"),
        ("train", "--replay-ratio", "nan"),
        ("train", "--replay-ratio", "-1"),
        ("train", "--real-holdout", "1"),
        ("train", "--real-holdout", "nan"),
        ("train", "--device", "foo"),
        ("evaluate", "--device", "foo"),
        ("learn", "--device", "foo"),
        ("learn", "--lr", "nan"),
        ("learn", "--lr", "-1"),
        ("learn", "--epochs", "0"),
        ("learn", "--seed", "-1"),
        ("learn", "--replay-ratio", "-1"),
    ],
)
def test_meaningless_options_are_usage_errors_naming_the_option(
    tmp_path: Path, command: str, option: str, value: str
) -> None:
    """Refused while parsing: before SMOTE, a NaN epoch or a model written after no training."""
    data = tmp_path / "data.h5"
    args = {
        "train": ["train", str(data), "-o", str(tmp_path / "m")],
        "evaluate": ["evaluate", str(tmp_path / "m"), str(data)],
        "learn": ["learn", "--db", str(tmp_path / "w.db"), "--model", "pretrained"],
    }[command]
    if command == "learn":
        args += ["-o", str(tmp_path / "m")]
    result = CliRunner().invoke(main, [*args, option, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert not (tmp_path / "m").exists()


def test_train_evaluate_learn_and_classify_share_one_device_option() -> None:
    """One option, one set of values: a typo is refused by all four, and --help lists them."""
    for command in ("train", "evaluate", "learn", "classify"):
        shown = CliRunner().invoke(main, [command, "--help"]).output
        assert "[auto|cpu|cuda|cuda:N]" in shown, command


def test_a_gpu_of_several_is_a_device(dataset: Path, model_dir: Path) -> None:
    """``--device cuda:1`` (the second GPU) is a device, not a usage error; here, without
    CUDA, the device check says why it cannot be used."""
    result = CliRunner().invoke(
        main, ["evaluate", str(model_dir), str(dataset), "--device", "cuda:1"]
    )
    assert result.exit_code != 2, result.output
    if not torch.cuda.is_available():
        assert result.exit_code == 1 and "cuda" in result.output
