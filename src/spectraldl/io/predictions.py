"""The predictions table: its columns, units and descriptions, and its files.

One row per spectrum, columns in the order of ``docs/CONVENTIONS.md``::

    id, source, archive, origin, object, ra, dec, mjd, snr, predicted_class,
    p_<class> (one per model class), quality, quality_flags, novelty, model_id,
    halpha_ew_aa, halpha_ew_err_aa, halpha_peak_ratio, halpha_fwhm_kms,
    halpha_peak_sep_kms, halpha_vr, profile_type, halpha_flag

The H-alpha measurements (`spectraldl.prep.measure`) are read as NaN and
``unmeasurable`` from tables written before them.

The format follows the file's extension: ``.parquet``, ``.fits``, ``.csv`` or
``.h5``. Every writer streams: it takes the table as blocks (one per committed
chunk of a classification run), so writing a release-sized table needs the
memory of one block, not of the table. Files are written under a temporary
name and renamed when complete, so a reader never sees half a table.

Provenance (model id, classes, sources, settings) travels inside the file:
Parquet schema metadata, FITS header (``SDL_META``), HDF5 attributes; a CSV
has no place for it and gets a ``PRED.csv.meta.json`` file beside it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import delimiter_hint
from spectraldl.io.labels import CLASSES

FORMAT = "spectraldl-predictions"
FORMAT_VERSION = 1
SUFFIXES = (".parquet", ".fits", ".csv", ".h5")
"""Extensions a predictions table may have; the format follows it."""


@dataclass(frozen=True)
class ColumnInfo:
    """What a column holds: dtype kind, unit, description and IVOA UCD."""

    kind: str
    unit: str
    description: str
    ucd: str
    default: str | None = None
    """Value of the column in a table made without it (older tables, hand-made frames)."""


LEADING_COLUMNS: dict[str, ColumnInfo] = {
    "id": ColumnInfo(
        "str", "", "Spectrum identifier (LAMOST file stem, Ondrejov ivo:// id)", "meta.id;meta.main"
    ),
    "source": ColumnInfo("str", "", "File the spectrum was read from", "meta.ref;meta.file"),
    "archive": ColumnInfo("str", "", "Archive of the spectrum (lamost, ondrejov)", "meta.id"),
    "origin": ColumnInfo(
        "str",
        "",
        "real (an observed spectrum) or synthetic (spectraldl simulate wrote it)",
        "meta.code",
        default="unknown",
    ),
    "object": ColumnInfo("str", "", "Target name or LAMOST designation", "meta.id"),
    "ra": ColumnInfo("f8", "deg", "Right ascension (ICRS, J2000)", "pos.eq.ra;meta.main"),
    "dec": ColumnInfo("f8", "deg", "Declination (ICRS, J2000)", "pos.eq.dec;meta.main"),
    "mjd": ColumnInfo("f8", "d", "Modified Julian Date of the observation", "time.epoch"),
    "snr": ColumnInfo("f4", "", "Signal-to-noise ratio near H-alpha (LAMOST r band)", "stat.snr"),
    "predicted_class": ColumnInfo(
        "str", "", "H-alpha profile class with the largest probability", "meta.code.class"
    ),
}
TRAILING_COLUMNS: dict[str, ColumnInfo] = {
    "quality": ColumnInfo(
        "i4",
        "",
        "Quality bits (spectraldl.core.quality.Quality), 0 when no doubt",
        "meta.code.qual",
    ),
    "quality_flags": ColumnInfo(
        "str", "", "Names of the set quality bits joined by '|'", "meta.code.qual"
    ),
    "novelty": ColumnInfo(
        "f4",
        "",
        "Novelty score: distance to the training data in the network's feature space",
        "stat.value",
    ),
    "model_id": ColumnInfo("str", "", "Identifier of the model that classified", "meta.id"),
}
MEASUREMENT_COLUMNS: dict[str, ColumnInfo] = {
    "halpha_ew_aa": ColumnInfo(
        "f4",
        "Angstrom",
        "H-alpha equivalent width, positive absorption, negative emission",
        "spect.line.eqWidth;em.line.Halpha",
        default="nan",
    ),
    "halpha_ew_err_aa": ColumnInfo(
        "f4",
        "Angstrom",
        "1-sigma error of halpha_ew_aa (from the inverse variance)",
        "stat.error;spect.line.eqWidth",
        default="nan",
    ),
    "halpha_peak_ratio": ColumnInfo(
        "f4",
        "",
        "Highest H-alpha flux over the local continuum",
        "spect.line.intensity;arith.ratio;em.line.Halpha",
        default="nan",
    ),
    "halpha_fwhm_kms": ColumnInfo(
        "f4",
        "km/s",
        "Observed FWHM of the H-alpha emission component (instrument included)",
        "spect.line.width;em.line.Halpha",
        default="nan",
    ),
    "halpha_peak_sep_kms": ColumnInfo(
        "f4",
        "km/s",
        "Separation of the two H-alpha emission peaks (double-peaked profiles)",
        "phys.veloc;arith.diff;em.line.Halpha",
        default="nan",
    ),
    "halpha_vr": ColumnInfo(
        "f4",
        "",
        "Violet over red H-alpha peak height above the continuum (double-peaked profiles)",
        "spect.line.intensity;arith.ratio;em.line.Halpha",
        default="nan",
    ),
    "profile_type": ColumnInfo(
        "str",
        "",
        "H-alpha profile type measured from the spectrum (spectraldl.prep.measure.PROFILE_TYPES)",
        "meta.code.class;em.line.Halpha",
        default="unmeasurable",
    ),
    "halpha_flag": ColumnInfo(
        "str",
        "",
        "Why H-alpha is unmeasurable, or a note on its measurement; empty when none",
        "meta.code.qual;em.line.Halpha",
        default="not measured",
    ),
}
"""The H-alpha measurements (`spectraldl.prep.measure.LineMeasurement`), last in every table."""


def probability_column(class_name: str) -> str:
    """Column of a class's probability: ``p_`` and the name, hyphens as underscores."""
    return "p_" + class_name.replace("-", "_")


def class_of_column(column: str) -> str:
    """Class name of a ``p_*`` column (``p_double_peak`` -> ``double-peak`` for known classes)."""
    name = column.removeprefix("p_")
    for known in CLASSES:
        if known.replace("-", "_") == name:
            return known
    return name


def column_spec(classes: Sequence[str]) -> dict[str, ColumnInfo]:
    """Every column of a predictions table for a model's ``classes``, in order."""
    out = dict(LEADING_COLUMNS)
    for name in classes:
        out[probability_column(name)] = ColumnInfo(
            "f4", "", f"Probability of the class {name}", "stat.probability"
        )
    out.update(TRAILING_COLUMNS)
    out.update(MEASUREMENT_COLUMNS)
    return out


def classes_in(frame_columns: Iterable[str]) -> tuple[str, ...]:
    """The model classes a table holds, from its ``p_*`` columns, in column order."""
    return tuple(class_of_column(c) for c in frame_columns if c.startswith("p_"))


def empty_frame(classes: Sequence[str]) -> pd.DataFrame:
    """A predictions table without rows (right columns and dtypes)."""
    return conform(pd.DataFrame({c: [] for c in column_spec(classes)}), classes)


def conform(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """``frame`` with exactly the columns of ``classes``' table, in order, with their dtypes.

    Raises `ValueError` naming missing columns.
    """
    spec = column_spec(classes)
    missing = [c for c, info in spec.items() if c not in frame.columns and info.default is None]
    if missing:
        raise ValueError(f"predictions table lacks columns: {', '.join(missing)}")
    out = {}
    for name, info in spec.items():
        column = frame[name] if name in frame.columns else pd.Series([info.default] * len(frame))
        out[name] = _text(column) if info.kind == "str" else column.to_numpy().astype(info.kind)
    return pd.DataFrame(out)


def _text(column: pd.Series) -> pd.Series:
    """A string column with missing values as '' (vectorised: no Python loop per value)."""
    if isinstance(column.dtype, pd.StringDtype):
        return column.fillna("")
    values = column.to_numpy(dtype=object)
    if len(values) and any(isinstance(v, bytes) for v in values[:1]):
        values = np.array([v.decode("utf-8") for v in values], dtype=object)
    text = pd.Series(values, dtype=object, index=column.index)
    return text.where(text.notna(), "").astype(str)


def _utf8(column: pd.Series) -> Any:
    """The column as a pyarrow string array (UTF-8)."""
    import pyarrow as pa

    return pa.array(column.to_numpy(dtype=object), type=pa.string())


# --- writing ------------------------------------------------------------------------------

Frames: TypeAlias = pd.DataFrame | Callable[[], Iterable[Any]]
"""A table, or a function returning a fresh iterator of its blocks (called up to twice):
DataFrames, or Arrow tables of this module's columns (`read_parquet_table`)."""


def _raw_blocks(frames: Frames) -> Iterable[Any]:
    """The blocks as given: the one DataFrame, or what the function returns."""
    return [frames] if isinstance(frames, pd.DataFrame) else frames()


def _blocks(frames: Frames, classes: Sequence[str]) -> Iterable[pd.DataFrame]:
    """The blocks as conformed DataFrames."""
    for block in _raw_blocks(frames):
        yield conform(block if isinstance(block, pd.DataFrame) else block.to_pandas(), classes)


def _arrow_blocks(frames: Frames, classes: Sequence[str], schema: Any) -> Iterable[Any]:
    """The blocks as Arrow tables of ``schema``.

    An Arrow block that already has every column and no missing text (a part this
    module wrote) is only put in column order and cast: a merge of Parquet parts
    then skips pandas, more than half its time. Any other block goes through `conform`
    (defaults for absent columns, '' for missing text), as a DataFrame does.
    """
    import pyarrow as pa

    strings = [field.name for field in schema if field.type == pa.string()]
    for block in _raw_blocks(frames):
        if not isinstance(block, pd.DataFrame):
            if set(schema.names) <= set(block.column_names) and not any(
                block[name].null_count for name in strings
            ):
                yield block.select(schema.names).cast(schema)
                continue
            block = block.to_pandas()
        yield pa.Table.from_pandas(conform(block, classes), schema=schema, preserve_index=False)


def read_parquet_table(path: str | Path) -> Any:
    """A Parquet predictions table as an Arrow table (a block for `write_predictions`).

    Raises `PredictionsError` for a missing or unreadable file.
    """
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise PredictionsError(f"{path}: not a readable predictions table ({exc})") from None


def format_of(path: str | Path) -> str:
    """``parquet``, ``fits``, ``csv`` or ``h5`` from the extension; `ValueError` otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix == ".hdf5":
        suffix = ".h5"
    if suffix == ".fit":
        suffix = ".fits"
    if suffix not in SUFFIXES:
        raise ValueError(
            f"{path}: unknown predictions format {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    return suffix[1:]


def metadata_path(path: str | Path) -> Path:
    """Where a CSV table's provenance lives: ``PRED.csv.meta.json``."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


@contextmanager
def atomic_csv_with_metadata(path: str | Path, metadata: dict[str, Any]) -> Iterator[Path]:
    """Yield a temporary path for the CSV ``path``; publish it, then its ``.meta.json``.

    A CSV has no place for provenance, so it goes beside it (`metadata_path`). The
    metadata is renamed just after its table: killed between the two, the old metadata
    (another run's manifest) never vouches for the new rows. On any error neither changes.
    """
    with atomic_write(metadata_path(path)) as side, atomic_write(path) as tmp:
        yield tmp
        side.write_text(json.dumps(metadata, indent=1, sort_keys=True), encoding="utf-8")


def write_predictions(
    path: str | Path,
    frames: Frames,
    *,
    classes: Sequence[str],
    metadata: dict[str, Any] | None = None,
    astropy_metadata: bool = True,
) -> int:
    """Write a predictions table to ``path`` (format by extension), atomically.

    Parameters
    ----------
    path
        Output file, ``.parquet``, ``.fits``, ``.csv`` or ``.h5``.
    frames
        The table, or a function returning its blocks in order (streamed;
        FITS reads them twice, to size its string columns first).
    classes
        The model's classes, giving the ``p_*`` columns.
    metadata
        JSON-able provenance stored with the table (`read_metadata`).
    astropy_metadata
        Parquet only: also store the column header astropy reads (units, string
        widths; costs a pass over the blocks). Off for internal files.

    Returns
    -------
    int
        Rows written.
    """
    path = Path(path)
    kind = format_of(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "classes": list(classes)}
    meta.update(metadata or {})
    writer = {"fits": _write_fits, "h5": _write_h5}
    # A CSV's metadata goes beside it, renamed just after the table (resuming then redoes
    # the rows no metadata vouches for).
    opened = atomic_csv_with_metadata(path, meta) if kind == "csv" else atomic_write(path)
    with opened as tmp:
        if kind == "parquet":
            return _write_parquet(tmp, frames, classes, meta, astropy=astropy_metadata)
        if kind == "csv":
            return _write_csv(tmp, frames, classes)
        return writer[kind](tmp, frames, classes, meta)


def _astropy_yaml(classes: Sequence[str], widths: dict[str, int]) -> str:
    """The column header astropy writes into Parquet files: names, dtypes, units, descriptions."""
    from astropy.table import Column, Table
    from astropy.table import meta as table_meta

    spec = column_spec(classes)
    table = Table(
        [
            Column(
                np.zeros(0, f"U{widths[name]}" if info.kind == "str" else info.kind),
                name=name,
                unit=info.unit or None,
                description=info.description,
            )
            for name, info in spec.items()
        ]
    )
    return "\n".join(table_meta.get_yaml_from_table(table))


def _arrow_schema(
    classes: Sequence[str], meta: dict[str, Any], widths: dict[str, int] | None
) -> Any:
    import pyarrow as pa

    types = {"str": pa.string(), "f8": pa.float64(), "f4": pa.float32(), "i4": pa.int32()}
    fields = [
        pa.field(
            name,
            types[info.kind],
            metadata={b"unit": info.unit.encode(), b"description": info.description.encode()},
        )
        for name, info in column_spec(classes).items()
    ]
    metadata = {b"spectraldl": json.dumps(meta).encode()}
    if widths is not None:
        # What astropy's own Parquet writer stores, so Table.read keeps units and string widths.
        metadata[b"table_meta_yaml"] = _astropy_yaml(classes, widths).encode()
        for name, width in widths.items():
            metadata[f"table::len::{name}".encode()] = str(width).encode()
    return pa.schema(fields, metadata=metadata)


def _write_parquet(
    tmp: Path, frames: Frames, classes: Sequence[str], meta: dict[str, Any], *, astropy: bool
) -> int:
    import pyarrow.parquet as pq

    widths = _string_widths(frames, classes)[0] if astropy else None
    schema = _arrow_schema(classes, meta, widths)
    n = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for table in _arrow_blocks(frames, classes, schema):
            writer.write_table(table)
            n += table.num_rows
    return n


def _write_csv(tmp: Path, frames: Frames, classes: Sequence[str]) -> int:
    n = 0
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(list(column_spec(classes)))
        for block in _blocks(frames, classes):
            block.to_csv(handle, header=False, index=False, lineterminator="\n")
            n += len(block)
    return n


def _string_widths(frames: Frames, classes: Sequence[str]) -> tuple[dict[str, int], int]:
    """Bytes (UTF-8) of the longest value of each string column, and the row count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    spec = column_spec(classes)
    widths = {name: 1 for name, info in spec.items() if info.kind == "str"}
    schema = _arrow_schema(classes, {}, None)
    strings = pa.schema([schema.field(name) for name in widths])
    n = 0
    for table in _arrow_blocks(frames, classes, strings):
        n += table.num_rows
        if table.num_rows == 0:
            continue
        for name in widths:
            longest = pc.max(pc.binary_length(table[name])).as_py()
            widths[name] = max(widths[name], int(longest or 0))
    return widths, n


def _records(block: pd.DataFrame, spec: dict[str, ColumnInfo], dtype: np.dtype) -> np.ndarray:
    import pyarrow as pa

    records = np.zeros(len(block), dtype=dtype)
    for name, info in spec.items():
        if info.kind == "str":
            encoded = _utf8(block[name]).cast(pa.binary()).to_numpy(zero_copy_only=False)
            records[name] = encoded.astype(dtype[name]) if len(encoded) else encoded
        else:
            records[name] = block[name].to_numpy()
    return records


def _write_h5(tmp: Path, frames: Frames, classes: Sequence[str], meta: dict[str, Any]) -> int:
    """One compound dataset ``/predictions`` (fixed-width UTF-8 strings), as astropy reads it."""
    import h5py

    spec = column_spec(classes)
    widths, n = _string_widths(frames, classes)
    dtype = np.dtype(
        [
            (name, f"S{widths[name]}" if info.kind == "str" else info.kind)
            for name, info in spec.items()
        ]
    )
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["spectraldl"] = json.dumps(meta)
        data = h5.create_dataset(
            "predictions", shape=(n,), dtype=dtype, chunks=(min(n, 16384),) if n else None
        )
        data.attrs["columns"] = json.dumps(list(spec))
        data.attrs["units"] = json.dumps({k: v.unit for k, v in spec.items()})
        data.attrs["descriptions"] = json.dumps({k: v.description for k, v in spec.items()})
        start = 0
        for block in _blocks(frames, classes):
            data[start : start + len(block)] = _records(block, spec, dtype)
            start += len(block)
    return n


_FITS_FORMATS = {"f8": "D", "f4": "E", "i4": "J"}


def _write_fits(tmp: Path, frames: Frames, classes: Sequence[str], meta: dict[str, Any]) -> int:
    """Stream a binary table: size the string columns in a first pass, then write rows."""
    from astropy.io import fits

    spec = column_spec(classes)
    widths, n = _string_widths(frames, classes)
    cols = [
        fits.Column(
            name=name,
            format=f"{widths[name]}A" if info.kind == "str" else _FITS_FORMATS[info.kind],
            unit=info.unit or None,
        )
        for name, info in spec.items()
    ]
    table = fits.BinTableHDU.from_columns(cols, nrows=0)
    header = table.header
    header["NAXIS2"] = n
    header["EXTNAME"] = "PREDICTIONS"
    for i, info in enumerate(spec.values(), start=1):
        header[f"TCOMM{i}"] = info.description
        header[f"TUCD{i}"] = info.ucd
    header["SDL_FMT"] = (FORMAT, "spectraldl predictions table")
    header["MODEL_ID"] = str(meta.get("model_id", ""))
    header["SDL_META"] = json.dumps(meta)
    dtype = np.dtype(
        [
            (name, f"S{widths[name]}" if info.kind == "str" else ">" + info.kind)
            for name, info in spec.items()
        ]
    )
    written = 0
    with tmp.open("wb") as handle:
        handle.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        handle.write(header.tostring().encode("ascii"))
        for block in _blocks(frames, classes):
            data = _records(block, spec, dtype).tobytes()
            handle.write(data)
            written += len(data)
        handle.write(b"\0" * (-written % 2880))
    return n


# --- reading ------------------------------------------------------------------------------


class PredictionsError(ValueError):
    """A predictions file that is missing, unreadable or not a predictions table."""


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The provenance stored with a predictions table, or None when it has none."""
    path = Path(path)
    kind = format_of(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(b"spectraldl")
            return None if raw is None else json.loads(raw)
        if kind == "fits":
            from astropy.io import fits

            with fits.open(path) as hdul:
                for hdu in hdul[1:]:
                    if "SDL_META" in hdu.header:
                        return json.loads(hdu.header["SDL_META"])
            return None
        if kind == "h5":
            import h5py

            with h5py.File(path, "r") as h5:
                raw = h5.attrs.get("spectraldl")
                return None if raw is None else json.loads(raw)
        side = metadata_path(path)
        return json.loads(side.read_text(encoding="utf-8")) if side.exists() else None
    except (OSError, ValueError, KeyError) as exc:
        raise PredictionsError(f"{path}: not a readable predictions table ({exc})") from None


def iter_predictions(
    path: str | Path, *, chunk_rows: int = 100_000, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Yield a predictions table in blocks of at most ``chunk_rows`` rows (bounded memory).

    ``columns`` restricts the columns read (all by default). Raises
    `PredictionsError` for a missing or unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise PredictionsError(f"{path}: no such predictions table")
    kind = format_of(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetFile(path) as handle:
                empty = True
                for batch in handle.iter_batches(batch_size=chunk_rows, columns=columns):
                    empty = False
                    yield batch.to_pandas()
                if empty:
                    schema = handle.schema_arrow
                    names = schema.names if columns is None else list(columns)
                    yield schema.empty_table().select(names).to_pandas()
        elif kind == "csv":
            yield from _iter_csv(path, chunk_rows, columns)
        elif kind == "h5":
            import h5py

            with h5py.File(path, "r") as h5:
                data = h5["predictions"]
                names = list(data.dtype.names) if columns is None else list(columns)
                total = data.shape[0]
                for start in range(0, max(total, 1), chunk_rows):
                    block = data[start : min(start + chunk_rows, total)]
                    yield pd.DataFrame({name: _decoded(block[name]) for name in names})
        else:
            yield from _iter_fits(path, chunk_rows, columns)
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, PredictionsError):
            raise
        raise PredictionsError(f"{path}: not a readable predictions table ({exc})") from None


def require_columns(columns: Iterable[str], needed: Iterable[str], source: Any) -> None:
    """Raise `PredictionsError` when a table lacks any of ``needed`` or has no ``p_*`` column.

    The message names ``source`` (the file) and every missing column, with a
    hint when the header reads as one field holding semicolons or tabs.
    """
    have = list(columns)
    missing = [c for c in needed if c not in set(have)]
    if not any(c.startswith("p_") for c in have):
        missing.append("p_<class> (one per model class)")
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise PredictionsError(
            f"{source}: not a predictions table: lacks column{plural} {', '.join(missing)}"
            + delimiter_hint(have)
        )


def _iter_csv(path: Path, chunk_rows: int, columns: Sequence[str] | None) -> Iterator[pd.DataFrame]:
    """A CSV table in blocks, numbers as their dtypes; a cell that is none names its line."""
    try:
        head = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise PredictionsError(f"{path}: empty file, not a predictions table") from None
    kinds = _kinds(head)
    dtypes = {c: (str if kinds[c] == "str" else kinds[c]) for c in head}
    try:
        with pd.read_csv(
            path,
            chunksize=chunk_rows,
            usecols=columns,
            dtype=dtypes,
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c in head if kinds[c] != "str"},
        ) as reader:
            yield from reader
    except ValueError as exc:
        problem = _csv_problem(path, kinds) or str(exc)
        raise PredictionsError(f"{path}: not a readable predictions table ({problem})") from None


def _csv_problem(path: Path, kinds: dict[str, str]) -> str | None:
    """The first cell of a CSV table that is not the number its column needs, in words.

    Only called once reading failed (pandas names neither line nor column), so
    this second pass reads every cell as text. None when no such cell is found.
    """
    with pd.read_csv(
        path, dtype=str, keep_default_na=False, skip_blank_lines=False, chunksize=100_000
    ) as reader:
        for block in reader:
            lines = block[~(block.fillna("") == "").all(axis=1)]  # pandas skips blank lines
            found = [
                (int(bad[0]), name)
                for name, kind in kinds.items()
                if kind != "str" and len(bad := np.flatnonzero(_suspect(lines[name], kind)))
            ]
            if found:
                row, name = min(found)
                line, fields = _record_at(path, int(lines.index[row]) + 1)
                if fields < len(kinds):
                    return f"line {line}: {fields} fields, the header {len(kinds)} (cut short?)"
                problem = _cell_problem(lines[name].iloc[row], kinds[name])
                return f"line {line}, column {name}: {problem}"
    return None


def _record_at(path: Path, record: int) -> tuple[int, int]:
    """The line the CSV record ``record`` (0 = the header) starts on, and its field count.

    Records and lines differ once a quoted cell holds a line break.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        start = 1
        for index, cells in enumerate(reader):
            if index == record:
                return start, len(cells)
            start = reader.line_num + 1
    return start, 0


def _suspect(values: pd.Series, kind: str) -> np.ndarray:
    """Cells (text or missing) that cannot be numbers of ``kind`` (vectorised `_cell_problem`)."""
    text = values.fillna("").str.strip()
    blank = text.isin(["", "nan", "NaN"]).to_numpy()
    number = pd.to_numeric(text.where(~blank), errors="coerce").to_numpy(dtype=np.float64)
    bad = values.isna().to_numpy() | (~blank & np.isnan(number))
    if kind == "i4":
        bad |= blank | (np.isfinite(number) & (number % 1 != 0))
    return bad


def _cell_problem(value: Any, kind: str) -> str:
    """Why a CSV cell cannot be a number of ``kind`` ('' when it can)."""
    text = value.strip() if isinstance(value, str) else ""
    if text in ("", "nan", "NaN"):
        return "empty, where a whole number is needed" if kind == "i4" else ""
    try:
        number = float(text)
    except ValueError:
        return f"{text!r} is not a number"
    if kind == "i4" and not number.is_integer():
        return f"{text!r} is not a whole number"
    return ""


def _kinds(names: Iterable[str]) -> dict[str, str]:
    known = {**LEADING_COLUMNS, **TRAILING_COLUMNS, **MEASUREMENT_COLUMNS}
    return {
        n: known[n].kind if n in known else ("f4" if n.startswith("p_") else "str") for n in names
    }


def _decoded(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SU":
        return np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object
        )
    return values.astype(values.dtype.newbyteorder("="))


def _iter_fits(
    path: Path, chunk_rows: int, columns: Sequence[str] | None
) -> Iterator[pd.DataFrame]:
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        hdu = hdul[1]
        names = list(hdu.columns.names) if columns is None else list(columns)
        data = hdu.data
        total = 0 if data is None else len(data)
        for start in range(0, max(total, 1), chunk_rows):
            stop = min(start + chunk_rows, total)
            yield pd.DataFrame(
                {
                    name: _decoded(np.asarray(data[name][start:stop]) if total else np.zeros(0))
                    for name in names
                }
            )


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a whole predictions table (any supported format) into a DataFrame."""
    blocks = list(iter_predictions(path))
    return pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0]
