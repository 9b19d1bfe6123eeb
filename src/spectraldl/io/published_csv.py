"""The thesis' published Ondřejov dataset layout (CSV), read into and written from a `Dataset`.

One spectrum per line: ``id, label, object, ra, dec, expval, gratang,
detector, chipid, specfilt, date-obs, dichmir`` and then the flux on the grid
(140 columns on 6519-6732 Å). Labels are the thesis' integers (0 emission,
1 absorption, 2 unknown, 3 double-peak; class names are accepted too, an
empty cell is no label). Flux column names that are numbers are read as the
grid (Å) and must be evenly spaced; other names mean the thesis grid.

Rows are standardised on reading (zero mean, unit variance per spectrum, as
`spectraldl.prep.preprocess.standardise`; a no-op for rows that already are), and
the dataset reports the thesis' preprocessing (`PreprocessConfig` defaults
with the CSV's grid), so models trained on either form can take the other.
The spectra are real Ondřejov ones: ``meta/origin`` is ``real``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from spectraldl.core.atomic import atomic_write
from spectraldl.io.dataset import Dataset, DatasetError, Rows
from spectraldl.io.labels import NO_LABEL, label_code
from spectraldl.prep.preprocess import PreprocessConfig

META_FIELDS: tuple[str, ...] = (
    "id",
    "label",
    "object",
    "ra",
    "dec",
    "expval",
    "gratang",
    "detector",
    "chipid",
    "specfilt",
    "date-obs",
    "dichmir",
)
"""The leading columns of the published layout, in order."""


def is_published_csv(path: str | Path) -> bool:
    """True when ``path`` is a CSV whose header starts with the published layout's columns."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".csv":
        return False
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    return tuple(h.strip().lower() for h in header[: len(META_FIELDS)]) == META_FIELDS


def _grid_config(path: Path, names: list[str]) -> PreprocessConfig:
    default = PreprocessConfig()
    try:
        waves = np.array([float(n) for n in names])
    except ValueError:
        return PreprocessConfig(
            grid_start_aa=default.grid_start_aa,
            grid_stop_aa=default.grid_stop_aa,
            grid_n=len(names),
        )
    step = (waves[-1] - waves[0]) / max(len(waves) - 1, 1)
    # Names are rounded (to 0.001 Å when spectraldl writes them): allow that much unevenness.
    if len(waves) < 2 or not np.allclose(
        np.diff(waves), step, rtol=0, atol=2e-3 + 1e-3 * abs(step)
    ):
        raise DatasetError(f"{path}: flux columns {names[0]}...{names[-1]} are not an even grid")
    start, stop = float(waves[0]), float(waves[-1])
    # Names are rounded in the file: snap to the thesis grid when they are that grid.
    if len(waves) == default.grid_n and np.allclose(waves, default.grid_aa, atol=5e-3):
        start, stop = default.grid_start_aa, default.grid_stop_aa
    return PreprocessConfig(grid_start_aa=start, grid_stop_aa=stop, grid_n=len(waves))


def _float(text: str) -> float:
    try:
        return float(text) if text.strip() else math.nan
    except ValueError:
        return math.nan


def read_published_csv(path: str | Path) -> Dataset:
    """Read a CSV in the published layout into a `Dataset` (rows standardised).

    Raises `DatasetError` naming the file (and line) for a wrong header,
    an unknown label, or a flux row that is not finite or constant.
    """
    path = Path(path)
    frame, flux_names = _read_frame(path)
    config = _grid_config(path, flux_names)
    x = _standardised_flux(path, frame)
    labels = _labels(path, frame)
    n = len(frame)
    rows = Rows(
        X=x,
        ids=frame.iloc[:, 0].to_numpy(dtype=object),
        labels=labels,
        quality=np.zeros(n, np.int32),
        meta={
            "archive": np.full(n, "ondrejov", dtype=object),
            "object": frame.iloc[:, 2].to_numpy(dtype=object),
            "ra": np.array([_float(v) for v in frame.iloc[:, 3]]),
            "dec": np.array([_float(v) for v in frame.iloc[:, 4]]),
            "date_obs": frame.iloc[:, 10].to_numpy(dtype=object),
            "source": np.full(n, str(path), dtype=object),
            "origin": np.full(n, "real", dtype=object),
        },
    )
    if len(set(rows.ids)) != n:
        raise DatasetError(f"{path}: ids are not unique")
    return Dataset.of_rows(
        rows,
        grid_aa=config.grid_aa,
        preprocessing=config.to_dict(),
        attrs={"format": "published-csv"},
        path=str(path),
    )


def _read_frame(path: Path) -> tuple[Any, list[str]]:
    """The CSV as a pandas DataFrame of strings, its header checked; and the flux columns."""
    import pandas as pd

    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc})") from None
    columns = [str(c).strip() for c in frame.columns]
    head = tuple(c.lower() for c in columns[: len(META_FIELDS)])
    if head != META_FIELDS:
        raise DatasetError(
            f"{path}: not the published layout; the header must start with "
            f"{', '.join(META_FIELDS)}, got {', '.join(columns[: len(META_FIELDS)])}"
        )
    flux_names = columns[len(META_FIELDS) :]
    if not flux_names:
        raise DatasetError(f"{path}: no flux columns after {META_FIELDS[-1]}")
    return frame, flux_names


def _standardised_flux(path: Path, frame: Any) -> np.ndarray:
    """The flux columns as float32 rows of zero mean and unit variance.

    Raises `DatasetError` naming the first line with a value that is not a
    number, or whose flux is not finite or constant.
    """
    import pandas as pd

    flux_frame = frame.iloc[:, len(META_FIELDS) :]
    try:
        x = flux_frame.to_numpy(dtype=np.float64)
    except ValueError:
        bad = flux_frame.apply(pd.to_numeric, errors="coerce").isna().any(axis=1).to_numpy()
        line = int(np.argmax(bad)) + 2
        raise DatasetError(f"{path}, line {line}: a flux value is not a number") from None
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    bad = ~np.isfinite(x).all(axis=1) | ~(std[:, 0] > 0)
    if bad.any():
        line = int(np.argmax(bad)) + 2
        raise DatasetError(
            f"{path}, line {line} (id {frame.iloc[line - 2, 0]}): "
            "the flux is not finite or constant"
        )
    return ((x - mean) / std).astype(np.float32)


def _labels(path: Path, frame: Any) -> np.ndarray:
    """The label column as class codes (`NO_LABEL` for an empty cell).

    Raises `DatasetError` naming the line of an unknown label.
    """
    labels = np.empty(len(frame), dtype=np.int8)
    for i, text in enumerate(frame.iloc[:, 1]):
        try:
            labels[i] = label_code(text) if text.strip() else NO_LABEL
        except ValueError as exc:
            raise DatasetError(f"{path}, line {i + 2}: {exc}") from None
    return labels


def write_published_csv(rows: Rows, path: str | Path, *, grid_aa: np.ndarray) -> None:
    """Write ``rows`` in the published layout (flux columns named by wavelength, Å).

    Columns the dataset does not hold (expval, gratang, ...) are left empty.
    Written to a temporary file and renamed, so a failure leaves no partial CSV.
    """
    path = Path(path)
    grid = np.asarray(grid_aa, dtype=np.float64)
    if rows.X.shape[1] != len(grid):
        raise ValueError(f"rows have {rows.X.shape[1]} points, the grid {len(grid)}")
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*META_FIELDS, *(f"{w:.3f}" for w in grid)])
        for i in range(len(rows)):
            label = int(rows.labels[i])
            meta = {k: v[i] for k, v in rows.meta.items()}
            writer.writerow(
                [
                    rows.ids[i],
                    "" if label == NO_LABEL else label,
                    meta.get("object", ""),
                    "" if not np.isfinite(meta.get("ra", np.nan)) else repr(float(meta["ra"])),
                    "" if not np.isfinite(meta.get("dec", np.nan)) else repr(float(meta["dec"])),
                    "",
                    "",
                    "",
                    "",
                    "",
                    meta.get("date_obs", ""),
                    "",
                    *(repr(float(v)) for v in rows.X[i]),
                ]
            )
