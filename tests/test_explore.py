"""PCA/t-SNE maps of real bundled spectra: figures, coordinates, separation numbers, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from process_helpers import refused_while_locked

from spectraldl.analysis.explore import (
    ExploreError,
    archive_separation,
    balanced_subset,
    explore,
    load_map_input,
    tsne_coordinates,
)
from spectraldl.cli import main
from spectraldl.io.bundled import real_dir, real_labels_csv
from spectraldl.io.predictions import write_predictions
from spectraldl.jobs.ingest import ingest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The bundled Ondřejov (labelled) and LAMOST spectra as two datasets."""
    folder = tmp_path_factory.mktemp("explore-data")
    ondrejov = folder / "ondrejov.h5"
    lamost = folder / "lamost.h5"
    ingest([real_dir() / "ondrejov"], ondrejov, labels_csv=real_labels_csv())
    ingest([real_dir() / "lamost"], lamost, labels_csv=real_labels_csv())
    return ondrejov, lamost


def rows_of(path: Path) -> int:
    import h5py

    with h5py.File(path) as h5:
        return int(h5["X"].shape[0])


def assert_figure(path: Path) -> None:
    assert path.stat().st_size > 5_000, path
    if path.suffix == ".png":
        assert path.read_bytes()[:8] == PNG_MAGIC
    else:
        text = path.read_text(encoding="utf-8")
        assert "<svg" in text
        assert "<image" in text  # the points, rasterised inside the vector figure


def test_explore_writes_maps_coordinates_and_summary(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    ondrejov, lamost = datasets
    n_o, n_l = rows_of(ondrejov), rows_of(lamost)
    # One thread: the default two spin-wait on a busy machine (the CLI avoids that).
    result = explore([ondrejov, lamost], tmp_path / "maps", seed=3, n_jobs=1)
    out = result.out_dir
    for stem in ("pca", "pca-ondrejov", "pca-lamost", "tsne"):
        assert_figure(out / f"{stem}.png")
        assert_figure(out / f"{stem}.svg")
    expected_rows = {"pca": n_o + n_l, "tsne": n_o + n_l, "pca-ondrejov": n_o, "pca-lamost": n_l}
    for stem, n in expected_rows.items():
        table = pd.read_csv(out / f"{stem}.csv")
        assert list(table.columns) == ["id", "archive", "label", "x", "y"]
        assert len(table) == n
        assert table[["x", "y"]].notna().all().all()
        assert table["id"].is_unique
    pca = pd.read_csv(out / "pca.csv")
    assert set(pca["archive"]) == {"ondrejov", "lamost"}
    ondrejov_labels = pca.loc[pca["archive"] == "ondrejov", "label"]
    assert {"emission", "absorption"} <= set(ondrejov_labels)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"] == {"lamost": n_l, "ondrejov": n_o}
    (separation,) = summary["pca"]["separation"]
    assert separation["groups"] == ["lamost", "ondrejov"]
    assert 0.0 <= separation["auc"] <= 1.0
    assert separation["centroid_distance"] > 0
    ratio = summary["pca"]["explained_variance_ratio"]
    assert ratio[0] >= ratio[1] > 0
    assert summary["tsne"]["pca_dims"] == 30
    assert summary["tsne"]["perplexity"] == pytest.approx((n_o + n_l - 1) / 3)


def test_emission_and_absorption_separate_on_the_first_component(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    # The thesis' observation about its PCA figure, on the real Ondřejov spectra.
    ondrejov, _ = datasets
    explore([ondrejov], tmp_path, method="pca")
    table = pd.read_csv(tmp_path / "pca.csv")
    emission = table.loc[table["label"] == "emission", "x"]
    absorption = table.loc[table["label"] == "absorption", "x"]
    assert emission.min() > absorption.max() or emission.max() < absorption.min()
    assert not (tmp_path / "tsne.csv").exists()


class Killed(BaseException):
    """A run stopped in the middle of writing a file (as by kill -9 or Ctrl-C)."""


@pytest.mark.parametrize("writer", ["savefig", "to_csv", "write_text"])
def test_a_rerun_stopped_while_writing_leaves_the_earlier_files_whole(
    datasets: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """Each file is written beside its name and renamed: a rerun stopped in the middle of a
    figure, a coordinates table or summary.json leaves the earlier complete file (written in
    place, it was left at 0 bytes: pca.svg seen so)."""
    from matplotlib.figure import Figure

    ondrejov, _ = datasets
    out = tmp_path / "maps"
    explore([ondrejov], out, method="pca")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"pca.png", "pca.svg", "pca.csv", "summary.json"} <= set(before)

    def stop(target: object, *args: object, **kwargs: object) -> None:
        Path(str(target)).write_bytes(b"")  # opened for writing: truncated, then killed
        raise Killed

    owner, name = {
        "savefig": (Figure, "savefig"),
        "to_csv": (pd.DataFrame, "to_csv"),
        "write_text": (Path, "write_text"),
    }[writer]
    if owner is Path:
        monkeypatch.setattr(owner, name, lambda self, *a, **k: stop(self))
    else:
        monkeypatch.setattr(owner, name, lambda self, target, *a, **k: stop(target))
    with pytest.raises(Killed):
        explore([ondrejov], out, method="pca")
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert set(after) == set(before)
    for name, data in after.items():
        if name.endswith(".svg"):  # a rerun's SVG has other element ids: whole, not equal
            assert data.endswith(b"</svg>\n"), name
        else:
            assert data == before[name], name


def test_a_rerun_removes_the_maps_of_the_earlier_run_it_does_not_redraw(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """A folder holds one run: after a PCA-only run of one archive, the earlier run's t-SNE
    map and per-archive maps (of other data) are gone, not shown (by `report`) beside a
    summary.json that does not describe them. Files explore does not write are kept."""
    ondrejov, lamost = datasets
    out = tmp_path / "maps"
    explore([ondrejov, lamost], out, n_jobs=1)
    assert (out / "tsne.png").exists() and (out / "pca-lamost.png").exists()
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    result = explore([ondrejov], out, method="pca")
    summary = json.loads((out / "summary.json").read_text())
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == sorted([*summary["files"], "summary.json", "notes.txt"])
    assert left == sorted(["pca.png", "pca.svg", "pca.csv", "summary.json", "notes.txt"])
    assert sorted(p.name for p in result.files) == sorted(set(left) - {"notes.txt"})


def test_a_dataset_named_twice_is_refused_not_mapped_twice(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """The same file given twice (also by another spelling of its path) mapped every
    spectrum twice: counts in the legends and summary.json doubled, and summary.json's
    rows per dataset said the single count beside them."""
    ondrejov, _ = datasets
    other_spelling = ondrejov.parent / "." / ondrejov.name
    result = CliRunner().invoke(
        main, ["explore", str(ondrejov), str(other_spelling), "-o", str(tmp_path / "maps")]
    )
    assert result.exit_code == 1
    assert "given twice" in result.output and str(ondrejov.name) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "maps").exists()


def test_a_second_run_into_a_folder_another_run_writes_is_refused_and_touches_nothing(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """While this process holds the folder as a first run would, a real second `explore`
    process on it stops at once with one line naming it: it neither renames the first's
    half-written figures nor leaves its own maps beside the first's summary.json."""
    ondrejov, _ = datasets
    out = tmp_path / "maps"
    explore([ondrejov], out, method="pca")
    (out / ".pca.tmp.png").write_bytes(b"the first run's figure, half written")

    def files() -> dict[str, tuple[int, bytes]]:
        return {p.name: (p.stat().st_ino, p.read_bytes()) for p in out.iterdir()}

    before = files()
    refused_while_locked(out, ["explore", str(ondrejov), "-o", str(out)])
    assert files() == before
    assert sorted(tmp_path.iterdir()) == [out]


def test_separation_tells_apart_shifted_data_and_not_identical_halves() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20))
    same = np.array(["a", "b"] * 200, dtype=object)
    (entry,) = archive_separation(X, same)
    assert 0.3 < entry["auc"] < 0.7
    shifted = X.copy()
    shifted[same == "b"] += 1.5
    (entry,) = archive_separation(shifted, same)
    assert entry["auc"] > 0.95


def test_balanced_subset_shares_between_groups() -> None:
    group = np.array(["lamost"] * 1000 + ["ondrejov"] * 30, dtype=object)
    index = balanced_subset(group, 200, seed=1)
    assert len(index) == 200
    assert len(set(index.tolist())) == 200
    assert (group[index] == "ondrejov").sum() == 30
    assert np.array_equal(balanced_subset(group, 5000), np.arange(len(group)))


def test_load_map_input_subsamples_each_dataset(datasets: tuple[Path, Path]) -> None:
    ondrejov, lamost = datasets
    data = load_map_input([ondrejov, lamost], max_rows_per_dataset=10, seed=0)
    assert len(data) == 20
    assert data.total_rows == {str(ondrejov): rows_of(ondrejov), str(lamost): rows_of(lamost)}
    again = load_map_input([ondrejov, lamost], max_rows_per_dataset=10, seed=0)
    assert np.array_equal(data.ids, again.ids)


def test_tsne_backends_both_run() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (60, 140)), rng.normal(4, 1, (60, 140))])
    for backend in ("opentsne", "sklearn"):
        run = tsne_coordinates(X, backend=backend, n_jobs=1, seed=0)  # type: ignore[arg-type]
        assert run.coords.shape == (120, 2)
        # The two blobs stay apart in the map.
        a, b = run.coords[:60].mean(axis=0), run.coords[60:].mean(axis=0)
        spread = run.coords[:60].std(axis=0).mean()
        assert np.linalg.norm(a - b) > 3 * spread


def test_cli_colour_by_predicted_class(datasets: tuple[Path, Path], tmp_path: Path) -> None:
    ondrejov, lamost = datasets
    import h5py

    with h5py.File(lamost) as h5:
        ids = h5["ids"].asstr()[...]
    n = len(ids)
    classes = ("emission", "absorption", "double-peak")
    p = np.tile([0.1, 0.8, 0.1], (n, 1)).astype(np.float32)
    p[:5] = [0.7, 0.2, 0.1]
    predictions = pd.DataFrame(
        {
            "id": ids,
            "source": "x.fits",
            "archive": "lamost",
            "object": "",
            "ra": 0.0,
            "dec": 0.0,
            "mjd": 0.0,
            "snr": 10.0,
            "predicted_class": [classes[i] for i in p.argmax(axis=1)],
            "p_emission": p[:, 0],
            "p_absorption": p[:, 1],
            "p_double_peak": p[:, 2],
            "quality": 0,
            "quality_flags": "",
            "novelty": 0.0,
            "model_id": "test",
        }
    )
    table = tmp_path / "predictions.parquet"
    write_predictions(table, predictions, classes=classes)
    out = tmp_path / "maps"
    result = CliRunner().invoke(
        main,
        [
            "explore",
            str(ondrejov),
            str(lamost),
            "-o",
            str(out),
            "--method",
            "pca",
            "--color-by",
            "class",
            "--predictions",
            str(table),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["colour_by"] == "class"
    assert summary["predictions"]["matched"] == n
    assert_figure(out / "pca.png")


def test_cli_errors_name_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-dataset.h5"
    bogus.write_text("hello")
    runner = CliRunner()
    result = runner.invoke(main, ["explore", str(bogus), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not-a-dataset.h5" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # a refused input leaves no empty folder behind
    fits = next((real_dir() / "lamost").rglob("*.fits*"))
    result = runner.invoke(main, ["explore", str(fits), "-o", str(tmp_path / "maps")])
    assert result.exit_code == 1 and f"{fits}: not an HDF5 file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dataset.h5"]
    result = runner.invoke(
        main, ["explore", str(bogus), "-o", str(tmp_path / "o"), "--color-by", "class"]
    )
    assert result.exit_code == 2
    assert "--predictions" in result.output
    with pytest.raises(ExploreError, match="at least 5"):
        tsne_coordinates(np.zeros((3, 140)))


def test_cli_refuses_a_damaged_dataset_naming_it(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    import h5py

    nan_rows, short_labels = tmp_path / "nan-rows.h5", tmp_path / "short-labels.h5"
    for path in (nan_rows, short_labels):
        path.write_bytes(datasets[0].read_bytes())
    with h5py.File(nan_rows, "r+") as h5:
        h5["X"][2, 0] = np.inf
    with h5py.File(short_labels, "r+") as h5:
        h5["labels"].resize(3, axis=0)
    for path, problem in (
        (nan_rows, "1 rows with non-finite values (rows 2)"),
        (short_labels, f"labels has shape (3,), X has {rows_of(datasets[0])} rows"),
    ):
        result = CliRunner().invoke(main, ["explore", str(path), "-o", str(tmp_path / "o")])
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: {path}: {problem}"), result.output


def test_map_title_fits_and_legend_covers_no_point() -> None:
    """A long title wraps inside the figure; the legend sits outside the axes."""
    from spectraldl.analysis.explore import map_figure

    rng = np.random.default_rng(0)
    coords = rng.normal(size=(600, 2))
    # Points in every corner, where a legend inside the axes would sit on them.
    coords[:4] = [[-3, -3], [-3, 3], [3, -3], [3, 3]]
    category = np.array(["emission", "absorption", "double-peak"] * 200, dtype=object)
    group = np.array(["ondrejov", "lamost"] * 300, dtype=object)
    title = "t-SNE of " + " + ".join(["Ondřejov (synthetic)", "Ondřejov (real)"] * 3) + " (600)"
    fig = map_figure(
        coords, category, group, title=title, xlabel="x", ylabel="y", legend_title="label"
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    figure_box = fig.bbox
    (ax,) = fig.axes
    title_box = ax.title.get_window_extent(renderer)
    assert "\n" in ax.title.get_text()
    assert figure_box.x0 <= title_box.x0 and title_box.x1 <= figure_box.x1
    assert title_box.y1 <= figure_box.y1
    (legend,) = fig.legends
    legend_box = legend.get_window_extent(renderer)
    assert not legend_box.overlaps(ax.get_window_extent(renderer))
    assert legend_box.x1 <= figure_box.x1
    assert len(legend.get_texts()) == 6


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-rows", "-5"),
        ("--max-rows", "1"),
        ("--tsne-max", "0"),
        ("--tsne-max", "-3"),
        ("--perplexity", "0"),
        ("--perplexity", "-1"),
        ("--perplexity", "nan"),
        ("--perplexity", "inf"),
        ("--seed", "-1"),
        ("--workers", "0"),
    ],
)
def test_meaningless_numbers_are_usage_errors_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    """Checked before any dataset is read (this one does not exist)."""
    result = CliRunner().invoke(
        main, ["explore", str(tmp_path / "x.h5"), "-o", str(tmp_path / "o"), option, value]
    )
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_single_spectrum_is_refused_not_a_traceback(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """PCA of one row has one component: the map's second axis would be an IndexError."""
    with pytest.raises(ExploreError, match="at least 2 spectra"):
        explore([datasets[0]], tmp_path / "o", method="pca", max_rows_per_dataset=1)


def test_too_few_spectra_for_t_sne_are_refused_before_the_earlier_maps_are_touched(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """Three spectra with the default --method both: the PCA map was drawn over the earlier
    run's, then t-SNE refused (exit 1), leaving that PCA beside the earlier t-SNE map and a
    summary.json describing neither."""
    out = tmp_path / "maps"
    explore([datasets[0]], out, n_jobs=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = CliRunner().invoke(
        main, ["explore", str(datasets[0]), "-o", str(out), "--max-rows", "3", "-j", "1"]
    )
    assert result.exit_code == 1, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert "t-SNE needs at least 5 spectra, it would map 3" in result.output
    assert "--method pca" in result.output and "Traceback" not in result.output


def test_identical_spectra_are_refused_not_mapped_to_nan(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """Spectra all alike (one spectrum stored under many ids) gave NaN variance shares in
    summary.json (not JSON), 'nan %' axes, empty t-SNE coordinates, and exit status 0."""
    import shutil

    import h5py

    same = tmp_path / "same.h5"
    shutil.copy(datasets[0], same)
    with h5py.File(same, "r+") as h5:
        h5["X"][...] = h5["X"][0]
    result = CliRunner().invoke(main, ["explore", str(same), "-o", str(tmp_path / "maps")])
    assert result.exit_code == 1, result.output
    assert f"all {rows_of(same)} spectra are identical" in result.output
    assert not (tmp_path / "maps").exists()


def test_datasets_on_other_wavelengths_are_refused_naming_both_grids(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """Only the number of grid points was compared: spectra on 6500-6713 Å were mapped with
    ones on 6519-6732 Å, pixel by pixel, and their separation reported as the archives'."""
    from spectraldl.prep.preprocess import PreprocessConfig

    shifted = tmp_path / "shifted.h5"
    config = PreprocessConfig(grid_start_aa=6500.0, grid_stop_aa=6713.0)
    ingest([real_dir() / "lamost"], shifted, config=config)
    with pytest.raises(ExploreError) as error:
        explore([datasets[0], shifted], tmp_path / "maps", method="pca")
    message = str(error.value)
    assert str(shifted) in message and str(datasets[0]) in message
    assert "6500-6713 Å x 140" in message and "6519-6732 Å x 140" in message
    assert not (tmp_path / "maps").exists()


def test_an_archive_of_identical_spectra_gets_no_map_of_its_own_rather_than_nan(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """Its own PCA divided by zero variance: NaN shares in summary.json and 'nan %' axes."""
    import shutil

    import h5py

    ondrejov, lamost = datasets
    same = tmp_path / "lamost-same.h5"
    shutil.copy(lamost, same)
    with h5py.File(same, "r+") as h5:
        h5["X"][...] = h5["X"][0]
    result = explore([ondrejov, same], tmp_path / "maps", method="pca")
    assert "NaN" not in (tmp_path / "maps" / "summary.json").read_text(encoding="utf-8")
    assert set(result.summary["pca"]["per_group"]) == {"ondrejov"}
