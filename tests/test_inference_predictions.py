"""The predictions table files: every format round-trips, streams, and carries provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectraldl.io.predictions import (
    MEASUREMENT_COLUMNS,
    SUFFIXES,
    PredictionsError,
    class_of_column,
    classes_in,
    column_spec,
    conform,
    empty_frame,
    iter_predictions,
    probability_column,
    read_metadata,
    read_parquet_table,
    read_predictions,
    require_columns,
    write_predictions,
)

CLASSES = ("emission", "absorption", "double-peak", "noise")


def _block(n: int, start: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(CLASSES)), size=n).astype(np.float32)
    data = {
        "id": [f"spec-{start + i:05d}" for i in range(n)],
        "source": [f"/archive/řada {start + i}.fits.gz" for i in range(n)],
        "archive": ["lamost"] * n,
        "object": ["LAMOST J063715.90+271356.5" if i % 2 else "" for i in range(n)],
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-90, 90, n),
        "mjd": np.where(np.arange(n) % 3 == 0, np.nan, 55000.5),
        "snr": rng.uniform(1, 90, n).astype(np.float32),
        "predicted_class": [CLASSES[i] for i in p.argmax(axis=1)],
        **{probability_column(c): p[:, i] for i, c in enumerate(CLASSES)},
        "quality": rng.integers(0, 64, n).astype(np.int32),
        "quality_flags": ["LOW_SNR|NOVEL"] * n,
        "novelty": rng.gamma(2.0, 3.0, n).astype(np.float32),
        "model_id": ["0123456789ab"] * n,
    }
    return pd.DataFrame(data)


def test_column_names_follow_the_conventions() -> None:
    names = list(column_spec(CLASSES))
    assert names[:10] == [
        "id", "source", "archive", "origin", "object", "ra", "dec", "mjd", "snr",
        "predicted_class",
    ]  # fmt: skip
    assert names[10:14] == ["p_emission", "p_absorption", "p_double_peak", "p_noise"]
    assert names[14:18] == ["quality", "quality_flags", "novelty", "model_id"]
    assert names[18:] == list(MEASUREMENT_COLUMNS)
    assert class_of_column("p_double_peak") == "double-peak"
    assert classes_in(names) == CLASSES
    assert column_spec(CLASSES)["ra"].unit == "deg"


def test_a_table_made_without_origin_says_unknown() -> None:
    frame = _block(3, 0, 1)
    assert "origin" not in frame.columns
    assert list(conform(frame, CLASSES)["origin"]) == ["unknown"] * 3
    with pytest.raises(ValueError, match="lacks columns: id"):
        conform(frame.drop(columns=["id"]), CLASSES)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_format_round_trips_in_blocks(tmp_path: Path, suffix: str) -> None:
    blocks = [_block(7, 0, 1), _block(0, 7, 2), _block(5, 7, 3)]
    out = tmp_path / f"pred{suffix}"
    n = write_predictions(out, lambda: iter(blocks), classes=CLASSES, metadata={"model_id": "x"})
    assert n == 12
    expected = conform(pd.concat(blocks, ignore_index=True), CLASSES)
    back = read_predictions(out)
    pd.testing.assert_frame_equal(conform(back, CLASSES), expected)
    assert list(back.columns) == list(expected.columns)
    streamed = list(iter_predictions(out, chunk_rows=5))
    assert [len(b) for b in streamed] == [5, 5, 2]
    only = next(iter_predictions(out, columns=["id", "novelty"]))
    assert list(only.columns) == ["id", "novelty"]
    meta = read_metadata(out)
    assert meta["model_id"] == "x" and meta["classes"] == list(CLASSES)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_parquet_tables_as_arrow_blocks_write_the_same_file_as_their_frames(
    tmp_path: Path, suffix: str
) -> None:
    # A merge hands its Parquet parts over as Arrow tables, skipping pandas: every format
    # must get the same table from them (rows, dtypes, empty strings, string widths).
    blocks = [_block(7, 0, 1), _block(0, 7, 2), _block(5, 7, 3)]
    parts = []
    for i, block in enumerate(blocks):
        parts.append(tmp_path / f"part-{i}.parquet")
        write_predictions(parts[-1], block, classes=CLASSES, astropy_metadata=False)
    from_frames = tmp_path / f"frames{suffix}"
    from_arrow = tmp_path / f"arrow{suffix}"
    write_predictions(from_frames, lambda: iter(blocks), classes=CLASSES, metadata={"m": 1})
    n = write_predictions(
        from_arrow,
        lambda: (read_parquet_table(p) for p in parts),
        classes=CLASSES,
        metadata={"m": 1},
    )
    assert n == 12
    pd.testing.assert_frame_equal(read_predictions(from_arrow), read_predictions(from_frames))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        assert pq.read_schema(from_arrow).equals(pq.read_schema(from_frames), check_metadata=True)
    else:
        assert from_arrow.read_bytes() == from_frames.read_bytes()
    with pytest.raises(PredictionsError, match="not a readable predictions table"):
        read_parquet_table(tmp_path / "missing.parquet")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_arrow_blocks_lacking_columns_or_text_are_conformed_like_frames(
    tmp_path: Path, suffix: str
) -> None:
    # Parts of an older version lack later columns (origin, the H-alpha measurements); a
    # missing text is null in Arrow. Both get conform's defaults, as their DataFrames do.
    import pyarrow as pa

    blocks = [_block(6, 0, 1), _block(4, 6, 2)]
    blocks[1].loc[2, "object"] = None
    tables = [pa.Table.from_pandas(b, preserve_index=False) for b in blocks]
    assert "origin" not in tables[0].column_names and tables[1]["object"].null_count == 1
    from_frames = tmp_path / f"frames{suffix}"
    from_arrow = tmp_path / f"arrow{suffix}"
    write_predictions(from_frames, lambda: iter(blocks), classes=CLASSES, metadata={"m": 1})
    write_predictions(from_arrow, lambda: iter(tables), classes=CLASSES, metadata={"m": 1})
    back = read_predictions(from_arrow)
    pd.testing.assert_frame_equal(back, read_predictions(from_frames))
    assert list(back["origin"]) == ["unknown"] * 10 and back["object"][8] == ""


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_an_empty_table_keeps_its_columns(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"empty{suffix}"
    assert write_predictions(out, empty_frame(CLASSES), classes=CLASSES) == 0
    back = read_predictions(out)
    assert len(back) == 0 and list(back.columns) == list(column_spec(CLASSES))


def test_a_missing_column_or_unknown_format_is_refused(tmp_path: Path) -> None:
    block = _block(3, 0, 1).drop(columns=["novelty"])
    with pytest.raises(ValueError, match="novelty"):
        write_predictions(tmp_path / "p.parquet", block, classes=CLASSES)
    assert not (tmp_path / "p.parquet").exists()
    with pytest.raises(ValueError, match="unknown predictions format"):
        write_predictions(tmp_path / "p.xlsx", _block(3, 0, 1), classes=CLASSES)
    with pytest.raises(PredictionsError, match="no such"):
        read_predictions(tmp_path / "absent.parquet")


def _csv_lines(tmp_path: Path) -> list[str]:
    """The lines of a real CSV table of 5 rows (header first)."""
    out = tmp_path / "good.csv"
    write_predictions(out, _block(5, 0, 1), classes=CLASSES)
    return out.read_text(encoding="utf-8").splitlines()


def _edit(lines: list[str], line: int, column: str, value: str) -> list[str]:
    """``lines`` with the cell of ``column`` on ``line`` (1 = the header) set to ``value``."""
    at = lines[0].split(",").index(column)
    cells = lines[line - 1].split(",")
    cells[at] = value
    return [*lines[: line - 1], ",".join(cells), *lines[line:]]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: [], "empty file, not a predictions table"),
        (lambda lines: _edit(lines, 3, "p_noise", "high"), "line 3, column p_noise: 'high' is "),
        (lambda lines: _edit(lines, 4, "quality", "x"), "line 4, column quality: 'x' is not a"),
        (lambda lines: _edit(lines, 2, "quality", "0.5"), "quality: '0.5' is not a whole number"),
        (lambda lines: _edit(lines, 6, "ra", "abc"), "line 6, column ra: 'abc' is not a number"),
        (
            lambda lines: [*lines[:3], "", lines[3][:40]],
            r"line 5: 3 fields, the header 26 \(cut short",
        ),
        (lambda lines: _edit(lines, 5, "quality", ""), "line 5, column quality: empty, where"),
        (  # a quoted id holding a line break: records and lines differ after it
            lambda lines: _edit(_edit(lines, 4, "quality", "x"), 2, "id", '"a\nb"'),
            "line 5, column quality: 'x' is not a",
        ),
    ],
)
def test_a_csv_table_that_cannot_be_read_names_the_file_line_and_column(
    tmp_path: Path, damage, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(damage(_csv_lines(tmp_path))), encoding="utf-8")
    with pytest.raises(PredictionsError, match=rf"bad\.csv: .*{message}"):
        read_predictions(bad)


def test_a_csv_table_with_blank_lines_and_nan_reads(tmp_path: Path) -> None:
    lines = _edit(_csv_lines(tmp_path), 2, "snr", "nan")
    path = tmp_path / "blank.csv"
    path.write_text("\n".join([*lines[:3], "", *lines[3:]]) + "\n", encoding="utf-8")
    back = read_predictions(path)
    assert len(back) == 5 and np.isnan(back["snr"].iloc[0])


def test_required_columns_are_named_with_a_delimiter_hint() -> None:
    columns = list(column_spec(CLASSES))
    require_columns(columns, ["id", "quality"], "p.csv")
    with pytest.raises(
        PredictionsError, match=r"^p\.csv: not a predictions table: lacks column id$"
    ):
        require_columns([c for c in columns if c != "id"], ["id", "quality"], "p.csv")
    with pytest.raises(PredictionsError, match=r"lacks column p_<class>"):
        require_columns(["id", "quality", "other"], ["id"], "p.parquet")
    with pytest.raises(PredictionsError, match=r"lacks columns id, quality, p_<class>.*semicolons"):
        require_columns([";".join(columns)], ["id", "quality"], "p.csv")


def test_a_failed_write_leaves_the_old_table_untouched(tmp_path: Path) -> None:
    out = tmp_path / "p.fits"
    write_predictions(out, _block(4, 0, 1), classes=CLASSES)
    before = out.read_bytes()

    def broken():
        yield _block(2, 0, 2)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_predictions(out, broken, classes=CLASSES)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))


def test_a_csv_table_is_renamed_before_its_metadata(tmp_path: Path, monkeypatch) -> None:
    """Killed between the two renames, the old metadata (another run's manifest) must not
    vouch for new rows: so the table comes first (it came second: a stale table was taken
    as the new run's complete output)."""
    import spectraldl.core.atomic as atomic

    out = tmp_path / "p.csv"
    renamed: list[str] = []
    real_replace = atomic.os.replace

    def recording(source: Path, target: Path) -> None:
        renamed.append(Path(target).name)
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", recording)
    write_predictions(out, _block(3, 0, 1), classes=CLASSES, metadata={"run": 1})
    assert renamed == ["p.csv", "p.csv.meta.json"]
    assert read_metadata(out)["run"] == 1
