"""The HDF5 dataset: round trips, append, plain-h5py readability, refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from spectraldl.io.dataset import (
    DatasetError,
    Rows,
    append_rows,
    create_dataset,
    dataset_info,
    is_dataset,
    iter_rows,
    read_dataset,
    read_rows,
)
from spectraldl.io.labels import CLASSES
from spectraldl.prep.preprocess import PreprocessConfig


def _rows(n: int, start: int = 0) -> Rows:
    rng = np.random.default_rng(start)
    return Rows(
        X=rng.normal(size=(n, 140)).astype(np.float32),
        ids=np.array([f"spec-{start + i:05d}" for i in range(n)], dtype=object),
        labels=np.arange(n) % 4 - 1,
        quality=np.arange(n) % 3,
        meta={"archive": ["lamost"] * n, "ra": np.linspace(0, 1, n), "object": ["Žluťoučký"] * n},
    )


def test_round_trip_and_append(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    config = PreprocessConfig()
    create_dataset(path, config=config)
    append_rows(path, _rows(5))
    append_rows(path, _rows(3, start=5))
    data = read_dataset(path)
    assert data.X.shape == (8, 140) and data.X.dtype == np.float32
    assert list(data.ids[:2]) == ["spec-00000", "spec-00001"]
    assert np.array_equal(data.X[5:], _rows(3, start=5).X)
    assert data.meta["object"][0] == "Žluťoučký"
    assert np.isnan(data.meta["dec"]).all() and data.meta["source"][0] == ""
    assert data.config == config
    assert list(data.labelled) == [bool(v != -1) for v in data.labels]
    assert dataset_info(path).n_rows == 8


def test_readable_with_plain_h5py(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    create_dataset(path, config=PreprocessConfig())
    append_rows(path, _rows(4))
    with h5py.File(path, "r") as h5:
        assert h5["X"].shape == (4, 140)
        assert h5["ids"].asstr()[0] == "spec-00000"
        assert json.loads(h5["labels"].attrs["classes"]) == list(CLASSES)
        assert h5["grid_aa"][0] == 6519.0 and h5["grid_aa"][-1] == 6732.0
        assert json.loads(h5.attrs["preprocessing"])["blur_sigma_px"] == {"ondrejov": 7.0}
        assert "spectraldl_version" in h5.attrs and "created" in h5.attrs
        assert json.loads(h5["quality"].attrs["flags"])["LOW_SNR"] == 8


def test_iter_rows_is_chunked(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    create_dataset(path, config=PreprocessConfig())
    append_rows(path, _rows(10))
    blocks = list(iter_rows(path, chunk_rows=4))
    assert [len(b) for b in blocks] == [4, 4, 2]
    assert np.array_equal(Rows.concat(blocks).X, read_dataset(path).X)


def test_refusals(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    create_dataset(path, config=PreprocessConfig())
    with pytest.raises(DatasetError, match="already exists"):
        create_dataset(path, config=PreprocessConfig())
    with pytest.raises(DatasetError, match="grid points"):
        append_rows(path, Rows(X=np.zeros((1, 10)), ids=["a"], labels=[0], quality=[0]))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = 1
    with pytest.raises(DatasetError, match="not a spectraldl dataset"):
        read_dataset(other)
    with pytest.raises(DatasetError, match="no such dataset"):
        read_dataset(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("nope")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        read_dataset(tmp_path / "text.h5")
    assert is_dataset(path) and not is_dataset(other) and not is_dataset(tmp_path / "text.h5")
    with pytest.raises(ValueError, match="unknown meta column"):
        Rows(X=np.zeros((1, 140)), ids=["a"], labels=[0], quality=[0], meta={"colour": ["red"]})


def _written(path: Path, n: int = 6) -> Path:
    create_dataset(path, config=PreprocessConfig())
    append_rows(path, _rows(n))
    return path


def _replace(name: str, value: np.ndarray) -> Callable[[h5py.File], None]:
    def damage(h5: h5py.File) -> None:
        del h5[name]
        h5[name] = value

    return damage


def _set(attrs_of: str, name: str, value: object) -> Callable[[h5py.File], None]:
    def damage(h5: h5py.File) -> None:
        h5[attrs_of].attrs[name] = value

    return damage


DAMAGES: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    **{
        f"no {name}": (lambda h5, name=name: h5.__delitem__(name), f"lacks dataset '{name}'")
        for name in ("X", "ids", "labels", "quality", "grid_aa")
    },
    "no meta": (lambda h5: h5.__delitem__("meta"), "lacks group 'meta'"),
    "no preprocessing": (
        lambda h5: h5.attrs.__delitem__("preprocessing"),
        "lacks attribute 'preprocessing'",
    ),
    "preprocessing not JSON": (
        _set("/", "preprocessing", "{not json"),
        "preprocessing attribute is not valid",
    ),
    "X of one dimension": (_replace("X", np.zeros(6, np.float32)), "X is float32 (6,)"),
    "ids as numbers": (_replace("ids", np.arange(6)), "ids are int64, not text"),
    "fewer labels than rows": (
        lambda h5: h5["labels"].resize(2, axis=0),
        "labels has shape (2,), X has 6 rows",
    ),
    "newer format": (_set("/", "format_version", 99), "written by a newer spectraldl"),
    "classes swapped": (
        _set("labels", "classes", json.dumps(["absorption", "emission", *CLASSES[2:]])),
        "its label codes would be misread",
    ),
    "other classes": (
        _set("labels", "classes", json.dumps(["star", "galaxy", "qso"])),
        "its label codes would be misread",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_layout_is_refused_by_every_reader_naming_the_file(
    tmp_path: Path, damage: str
) -> None:
    path = _written(tmp_path / "d.h5")
    change, problem = DAMAGES[damage]
    with h5py.File(path, "r+") as h5:
        change(h5)
    readers: list[Callable[[], object]] = [
        lambda: read_dataset(path),
        lambda: dataset_info(path),
        lambda: list(iter_rows(path)),
        lambda: read_rows(path, start=0, stop=2),
        lambda: append_rows(path, _rows(1, start=9)),
    ]
    for read in readers:
        with pytest.raises(DatasetError, match=f"^{re.escape(str(path))}: .*{re.escape(problem)}"):
            read()


def test_rows_with_non_finite_flux_are_refused_naming_them(tmp_path: Path) -> None:
    path = _written(tmp_path / "d.h5", 10)
    with h5py.File(path, "r+") as h5:
        h5["X"][3, 7] = np.nan
        h5["X"][8, 0] = -np.inf
    message = f"{path}: 2 rows with non-finite values (rows 3, 8); ingest again"
    with pytest.raises(DatasetError, match=f"^{re.escape(message)}$"):
        read_dataset(path)
    with pytest.raises(DatasetError, match=re.escape("1 rows with non-finite values (rows 8)")):
        read_rows(path, start=5, stop=10)  # row numbers count from the file's start
    with pytest.raises(DatasetError, match=re.escape("(rows 3)")):
        list(iter_rows(path, chunk_rows=5))
    assert len(read_rows(path, start=0, stop=3)) == 3


def test_unknown_label_codes_are_refused_and_no_label_is_kept(tmp_path: Path) -> None:
    path = _written(tmp_path / "d.h5", 8)
    assert (read_dataset(path).labels == -1).sum() == 2  # NO_LABEL: unlabelled rows
    with h5py.File(path, "r+") as h5:
        h5["labels"][2] = 9
        h5["labels"][5] = -5
    message = f"{path}: 2 rows with unknown label codes -5, 9 (rows 2, 5)"
    with pytest.raises(DatasetError, match=f"^{re.escape(message)}"):
        read_dataset(path)
    with pytest.raises(DatasetError, match=re.escape("(rows 5)")):
        read_rows(path, start=4, stop=8)


def test_empty_truncated_and_foreign_files_are_named_for_what_they_are(tmp_path: Path) -> None:
    good = _written(tmp_path / "good.h5", 200)
    data = good.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "text.h5").write_text("nope")
    for name, problem in (
        ("empty.h5", "empty file (0 bytes)"),
        ("truncated.h5", "truncated HDF5 file"),
        ("text.h5", "not an HDF5 file"),
    ):
        path = tmp_path / name
        with pytest.raises(DatasetError, match=f"^{re.escape(f'{path}: {problem}')}"):
            dataset_info(path)
