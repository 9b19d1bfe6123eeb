"""The HDF5 dataset: preprocessed spectra with ids, labels, quality and metadata.

Layout (readable with plain h5py, no spectraldl needed)::

    /X            float32 (n, 140)  preprocessed flux on the grid
    /grid_aa      float64 (140,)    the grid, vacuum Å
    /ids          utf-8 str (n,)    unique ids (LAMOST file stem, Ondřejov ivo:// id)
    /labels       int8 (n,)         class code, -1 for none; attr ``classes`` names them
    /quality      int32 (n,)        `spectraldl.core.quality.Quality` bits; attr ``flags``
    /meta/<name>  (n,)              archive, form, object, ra, dec, mjd, date_obs,
                                    snr, source, obsid, designation, origin, and the
                                    H-alpha measurements (`spectraldl.prep.measure`)

Root attributes: ``format`` ("spectraldl-dataset"), ``format_version``,
``grid_start_aa``, ``grid_stop_aa``, ``grid_n``, ``preprocessing`` (JSON of
`PreprocessConfig`), ``spectraldl_version``, ``created`` (UTC ISO time).
Datasets are resizable along rows so that `append_rows` can extend them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from spectraldl import __version__
from spectraldl.core.quality import Quality
from spectraldl.io.labels import CLASSES, NO_LABEL
from spectraldl.prep.measure import MEASUREMENT_COLUMNS
from spectraldl.prep.preprocess import PreprocessConfig

FORMAT = "spectraldl-dataset"
FORMAT_VERSION = 1

META_COLUMNS: dict[str, str] = {
    "archive": "str",
    "form": "str",
    "object": "str",
    "ra": "f8",
    "dec": "f8",
    "mjd": "f8",
    "date_obs": "str",
    "snr": "f4",
    "source": "str",
    "obsid": "str",
    "designation": "str",
    "origin": "str",
    **MEASUREMENT_COLUMNS,
}
"""Metadata columns and their kinds. ``origin`` is ``real`` or ``synthetic``; the
``halpha_*`` and ``profile_type`` columns are `spectraldl.prep.measure.LineMeasurement`'s."""
META_DEFAULTS: dict[str, str] = {"profile_type": "unmeasurable", "halpha_flag": "not measured"}
"""Text columns' value in rows made without them (and in datasets written before them);
numbers default to NaN, other text to ''."""

HDF5_SUFFIXES = (".h5", ".hdf5")
"""File name endings taken for HDF5 (a dataset, or a predictions table)."""

_STR = h5py.string_dtype("utf-8")
_CHUNK_ROWS = 4096


class DatasetError(ValueError):
    """A dataset file that is missing, not a spectraldl dataset, or incompatible."""


def _empty_meta(n: int = 0) -> dict[str, np.ndarray]:
    return {name: _default_column(name, n) for name in META_COLUMNS}


def _default_column(name: str, n: int) -> np.ndarray:
    kind = META_COLUMNS[name]
    if kind == "str":
        return np.full(n, META_DEFAULTS.get(name, ""), dtype=object)
    return np.full(n, np.nan, dtype=kind)


@dataclass
class Rows:
    """A block of dataset rows: what ingest appends and what readers return.

    Attributes
    ----------
    X
        float32 (n, grid_n), preprocessed flux.
    ids
        object (n,) of str, unique ids.
    labels
        int8 (n,), class codes (`spectraldl.io.labels.CLASSES`), -1 for none.
    quality
        int32 (n,), `Quality` bits.
    meta
        One array of length n per `META_COLUMNS` name.
    """

    X: NDArray[np.float32]
    ids: NDArray[np.object_]
    labels: NDArray[np.int8]
    quality: NDArray[np.int32]
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        x = np.asarray(self.X, dtype=np.float32)
        # reshape(0, -1) is an error in NumPy: keep a (0, grid_n) block as it is.
        self.X = x if x.ndim == 2 and len(x) == n else x.reshape(n, -1)
        self.ids = np.asarray(self.ids, dtype=object)
        self.labels = np.asarray(self.labels, dtype=np.int8)
        self.quality = np.asarray(self.quality, dtype=np.int32)
        meta = _empty_meta(n)
        for name, values in self.meta.items():
            if name not in META_COLUMNS:
                raise ValueError(f"unknown meta column {name!r}; known: {', '.join(META_COLUMNS)}")
            kind = META_COLUMNS[name]
            meta[name] = np.asarray(values, dtype=object if kind == "str" else kind)
        self.meta = meta
        columns: dict[str, np.ndarray] = {"labels": self.labels, "quality": self.quality, **meta}
        for name, array in columns.items():
            if len(array) != n:
                raise ValueError(f"{name} has {len(array)} rows, ids has {n}")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, grid_n: int) -> Rows:
        """No rows, for a grid of ``grid_n`` points."""
        return cls(
            X=np.zeros((0, grid_n), np.float32),
            ids=np.zeros(0, object),
            labels=np.zeros(0, np.int8),
            quality=np.zeros(0, np.int32),
        )

    @classmethod
    def concat(cls, blocks: Sequence[Rows]) -> Rows:
        """Rows of all ``blocks`` in order."""
        return cls(
            X=np.concatenate([b.X for b in blocks]),
            ids=np.concatenate([b.ids for b in blocks]),
            labels=np.concatenate([b.labels for b in blocks]),
            quality=np.concatenate([b.quality for b in blocks]),
            meta={k: np.concatenate([b.meta[k] for b in blocks]) for k in META_COLUMNS},
        )

    def take(self, index: NDArray[np.integer] | NDArray[np.bool_] | slice) -> Rows:
        """The rows selected by an index array, boolean mask or slice."""
        return Rows(
            X=self.X[index],
            ids=self.ids[index],
            labels=self.labels[index],
            quality=self.quality[index],
            meta={k: v[index] for k, v in self.meta.items()},
        )

    def meta_frame(self) -> Any:
        """Ids, labels, quality and metadata as a pandas DataFrame (no flux)."""
        import pandas as pd

        frame = pd.DataFrame({"id": self.ids, "label": self.labels, "quality": self.quality})
        for name, values in self.meta.items():
            frame[name] = values
        return frame


@dataclass
class Dataset(Rows):
    """A whole dataset read into memory: rows plus the grid and provenance."""

    grid_aa: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    preprocessing: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @classmethod
    def of_rows(cls, rows: Rows, **provenance: Any) -> Dataset:
        """``rows`` with a dataset's grid and provenance (``grid_aa``, ``preprocessing``...)."""
        return cls(
            X=rows.X,
            ids=rows.ids,
            labels=rows.labels,
            quality=rows.quality,
            meta=rows.meta,
            **provenance,
        )

    @property
    def config(self) -> PreprocessConfig:
        """The preprocessing the rows went through."""
        return PreprocessConfig.from_dict(self.preprocessing)

    @property
    def labelled(self) -> NDArray[np.bool_]:
        """True for rows with a label."""
        return self.labels != NO_LABEL


def create_dataset(
    path: str | Path,
    *,
    config: PreprocessConfig,
    attrs: dict[str, Any] | None = None,
    chunk_rows: int = _CHUNK_ROWS,
) -> None:
    """Create an empty dataset at ``path`` (which must not exist) for ``config``'s grid.

    ``chunk_rows`` is the HDF5 chunk height: storage grows in blocks of that many
    rows, so a small file (an ingest shard) takes a small chunk.
    """
    path = Path(path)
    if path.exists():
        raise DatasetError(f"{path}: already exists")
    with h5py.File(path, "w") as h5:
        n = config.grid_n
        h5.attrs["format"] = FORMAT
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["grid_start_aa"] = config.grid_start_aa
        h5.attrs["grid_stop_aa"] = config.grid_stop_aa
        h5.attrs["grid_n"] = n
        h5.attrs["medium"] = "vacuum"
        h5.attrs["preprocessing"] = json.dumps(config.to_dict(), sort_keys=True)
        h5.attrs["spectraldl_version"] = __version__
        h5.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
        grid = h5.create_dataset("grid_aa", data=config.grid_aa)
        grid.attrs["unit"] = "Angstrom (vacuum)"
        x = h5.create_dataset(
            "X", shape=(0, n), maxshape=(None, n), dtype="f4", chunks=(chunk_rows, n)
        )
        x.attrs["description"] = "flux on grid_aa, standardised per spectrum"
        h5.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(chunk_rows,))
        labels = h5.create_dataset(
            "labels", shape=(0,), maxshape=(None,), dtype="i1", chunks=(chunk_rows,)
        )
        labels.attrs["classes"] = json.dumps(list(CLASSES))
        labels.attrs["no_label"] = NO_LABEL
        quality = h5.create_dataset(
            "quality", shape=(0,), maxshape=(None,), dtype="i4", chunks=(chunk_rows,)
        )
        quality.attrs["flags"] = json.dumps({f.name: int(f) for f in Quality})
        meta = h5.create_group("meta")
        for name in META_COLUMNS:
            _create_meta_column(meta, name, 0, chunk_rows)


def _create_meta_column(group: h5py.Group, name: str, n: int, chunk_rows: int) -> None:
    """A resizable ``meta/<name>`` column of ``n`` rows holding the column's default."""
    kind = META_COLUMNS[name]
    column = group.create_dataset(
        name,
        shape=(n,),
        maxshape=(None,),
        dtype=_STR if kind == "str" else kind,
        chunks=(chunk_rows,),
    )
    if n:
        column[...] = _default_column(name, n)


def _open_checked(path: Path, mode: str) -> h5py.File:
    """Open ``path`` after checking that it is a whole dataset this version can read.

    Every reader and `append_rows` come through here, so a damaged or foreign
    file is refused once, naming the file, instead of failing later in h5py.
    """
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset")
    if path.is_file() and path.stat().st_size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes)")
    try:
        h5 = h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path}: {_unreadable(exc)}") from None
    try:
        _check_layout(path, h5)
    except DatasetError:
        h5.close()
        raise
    return h5


def _unreadable(exc: OSError) -> str:
    """Why h5py could not open a file, in words: truncated, not HDF5, or its own message."""
    text = str(exc)
    if "truncated file" in text:
        return f"truncated HDF5 file (copied or written only in part?) ({text})"
    if "file signature not found" in text:
        return "not an HDF5 file"
    return f"not a readable HDF5 file ({text})"


def _check_layout(path: Path, h5: h5py.File) -> None:
    """Refuse a file whose format tag, version, datasets, shapes or classes are not the layout
    `create_dataset` writes (reads attributes and shapes only, no rows)."""
    if h5.attrs.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a spectraldl dataset (no format={FORMAT!r} attribute)")
    version = h5.attrs.get("format_version")
    if not isinstance(version, int | np.integer):
        raise DatasetError(f"{path}: format_version attribute missing or not a whole number")
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: dataset format version {version}, written by a newer spectraldl "
            f"(this one reads up to {FORMAT_VERSION}); upgrade spectraldl"
        )
    not_ours = "not written by spectraldl ingest?"
    for name in ("X", "ids", "labels", "quality", "grid_aa"):
        if not isinstance(h5.get(name), h5py.Dataset):
            raise DatasetError(f"{path}: lacks dataset {name!r} ({not_ours})")
    if not isinstance(h5.get("meta"), h5py.Group):
        raise DatasetError(f"{path}: lacks group 'meta' ({not_ours})")
    _check_shapes(path, h5)
    if h5py.check_string_dtype(h5["ids"].dtype) is None:
        raise DatasetError(f"{path}: ids are {h5['ids'].dtype}, not text")
    _check_classes(path, h5["labels"])
    _preprocessing(path, h5)


def _check_shapes(path: Path, h5: h5py.File) -> None:
    """X is (rows, grid points) of floats on grid_aa; every column has X's row count."""
    x = h5["X"]
    if x.ndim != 2 or x.dtype.kind != "f" or h5["grid_aa"].shape != (x.shape[1],):
        raise DatasetError(
            f"{path}: X is {x.dtype} {x.shape}, grid_aa {h5['grid_aa'].shape}; "
            "expected floats (rows, grid points) on grid_aa"
        )
    meta = h5["meta"]
    columns = [("ids", h5["ids"]), ("labels", h5["labels"]), ("quality", h5["quality"])]
    columns += [(f"meta/{name}", meta[name]) for name in META_COLUMNS if name in meta]
    for name, column in columns:
        if column.shape != (x.shape[0],):
            raise DatasetError(f"{path}: {name} has shape {column.shape}, X has {x.shape[0]} rows")


def _check_classes(path: Path, labels: h5py.Dataset) -> None:
    """The label codes must mean this spectraldl's classes, in its order."""
    raw = labels.attrs.get("classes")
    try:
        classes = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        classes = None
    if classes != list(CLASSES):
        raise DatasetError(
            f"{path}: labels attribute 'classes' is {raw!r}, not this spectraldl's "
            f"{json.dumps(list(CLASSES))}; its label codes would be misread"
        )


def _preprocessing(path: Path, h5: h5py.File) -> dict[str, Any]:
    """The ``preprocessing`` attribute, parsed and checked to make a `PreprocessConfig`."""
    try:
        value = json.loads(h5.attrs["preprocessing"])
        PreprocessConfig.from_dict(value)
    except KeyError:
        raise DatasetError(f"{path}: lacks attribute 'preprocessing'") from None
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: preprocessing attribute is not valid ({exc})") from None
    return dict(value)


def append_rows(path: str | Path, rows: Rows) -> None:
    """Append ``rows`` to the dataset at ``path`` (grid sizes must agree)."""
    path = Path(path)
    with _open_checked(path, "r+") as h5:
        n_old = h5["X"].shape[0]
        if rows.X.shape[1] != h5["X"].shape[1]:
            raise DatasetError(
                f"{path}: rows have {rows.X.shape[1]} grid points, the dataset {h5['X'].shape[1]}"
            )
        n_new = n_old + len(rows)
        columns: list[tuple[str, np.ndarray]] = [
            ("X", rows.X),
            ("ids", rows.ids),
            ("labels", rows.labels),
            ("quality", rows.quality),
        ]
        columns += [(f"meta/{name}", values) for name, values in rows.meta.items()]
        for name in META_COLUMNS:
            if name not in h5["meta"]:  # a dataset written before the column existed
                _create_meta_column(h5["meta"], name, n_old, h5["X"].chunks[0])
        for name, values in columns:
            h5[name].resize(n_new, axis=0)
            h5[name][n_old:n_new] = values


def _read_rows(path: Path, h5: h5py.File, selection: slice) -> Rows:
    """Rows of ``selection``, refused when their flux is not finite or a label code unknown."""
    x = h5["X"][selection]
    labels = h5["labels"][selection]
    first = selection.start or 0
    check_finite(path, x, first)
    check_label_codes(path, labels, first)
    meta = {}
    for name, kind in META_COLUMNS.items():
        if name not in h5["meta"]:
            continue
        data = h5["meta"][name]
        meta[name] = data.asstr()[selection] if kind == "str" else data[selection]
    return Rows(
        X=x,
        ids=h5["ids"].asstr()[selection],
        labels=labels,
        quality=h5["quality"][selection],
        meta=meta,
    )


def check_finite(path: str | Path, x: NDArray[np.floating], first: int = 0) -> None:
    """Refuse flux rows holding NaN or infinity (``first``: the row number of ``x[0]``)."""
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise DatasetError(
            f"{path}: {bad.size} rows with non-finite values (rows {_row_list(bad + first)}); "
            "ingest again"
        )


def check_label_codes(path: str | Path, labels: NDArray[np.integer], first: int = 0) -> None:
    """Refuse label codes that name no class and are not `NO_LABEL` (the unlabelled rows)."""
    bad = np.flatnonzero((labels != NO_LABEL) & ((labels < 0) | (labels >= len(CLASSES))))
    if bad.size:
        codes = ", ".join(str(c) for c in np.unique(labels[bad]))
        raise DatasetError(
            f"{path}: {bad.size} rows with unknown label codes {codes} (rows "
            f"{_row_list(bad + first)}); codes are 0-{len(CLASSES) - 1} and {NO_LABEL} for none"
        )


def _row_list(rows: NDArray[np.integer], shown: int = 5) -> str:
    """The first few row numbers of ``rows`` for a message, with '...' when there are more."""
    text = ", ".join(str(r) for r in rows[:shown])
    return text + ", ..." if rows.size > shown else text


def read_dataset(path: str | Path) -> Dataset:
    """Read a whole dataset into memory."""
    path = Path(path)
    with _open_checked(path, "r") as h5:
        rows = _read_rows(path, h5, slice(None))
        return Dataset.of_rows(
            rows,
            grid_aa=h5["grid_aa"][...],
            preprocessing=_preprocessing(path, h5),
            attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()},
            path=str(path),
        )


def iter_rows(path: str | Path, *, chunk_rows: int = 65536) -> Iterator[Rows]:
    """Yield the dataset's rows in blocks of at most ``chunk_rows`` (bounded memory)."""
    path = Path(path)
    with _open_checked(path, "r") as h5:
        total = h5["X"].shape[0]
        for start in range(0, total, chunk_rows):
            yield _read_rows(path, h5, slice(start, min(start + chunk_rows, total)))


def read_rows(path: str | Path, *, start: int, stop: int) -> Rows:
    """Rows ``start`` to ``stop`` (exclusive) of a dataset: one chunk of a parallel job."""
    path = Path(path)
    with _open_checked(path, "r") as h5:
        total = h5["X"].shape[0]
        return _read_rows(path, h5, slice(max(0, start), min(stop, total)))


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds, without its rows."""

    path: str
    n_rows: int
    config: PreprocessConfig
    attrs: dict[str, Any]


def dataset_info(path: str | Path) -> DatasetInfo:
    """Row count, preprocessing and attributes of a dataset (reads no rows)."""
    path = Path(path)
    with _open_checked(path, "r") as h5:
        return DatasetInfo(
            path=str(path),
            n_rows=int(h5["X"].shape[0]),
            config=PreprocessConfig.from_dict(_preprocessing(path, h5)),
            attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()},
        )


def read_ids(path: str | Path) -> NDArray[np.object_]:
    """The ids of a dataset, in row order."""
    with _open_checked(Path(path), "r") as h5:
        return h5["ids"].asstr()[...]


def is_dataset(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file carrying the spectraldl dataset format tag."""
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("format") == FORMAT
    except OSError:
        return False


def is_hdf5(path: str | Path) -> bool:
    """True when ``path`` starts with the HDF5 signature (whole or not, a dataset or not)."""
    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False
