"""The HDF5 dataset: round trips, append, plain-h5py readability, refusals."""

from __future__ import annotations

import json
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
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        read_dataset(tmp_path / "text.h5")
    assert is_dataset(path) and not is_dataset(other) and not is_dataset(tmp_path / "text.h5")
    with pytest.raises(ValueError, match="unknown meta column"):
        Rows(X=np.zeros((1, 140)), ids=["a"], labels=[0], quality=[0], meta={"colour": ["red"]})
