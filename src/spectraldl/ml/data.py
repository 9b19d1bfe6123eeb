"""Labelled data for the networks: read either layout, stack datasets, compare preprocessing.

Shared by training (`spectraldl.ml.training`), the model card's
compatibility check (`spectraldl.ml.modelcard`) and evaluation
(`spectraldl.ml.evaluation`); it sits below all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectraldl.core.paths import first_repeated
from spectraldl.io.dataset import (
    HDF5_SUFFIXES,
    Dataset,
    DatasetError,
    Rows,
    is_hdf5,
    read_dataset,
)
from spectraldl.io.published_csv import is_published_csv, read_published_csv
from spectraldl.prep.preprocess import PreprocessConfig

NOT_AFFECTING_FLUX = frozenset({"min_snr", "max_snr_ratio", "max_bad_fraction", "halpha_margin_aa"})
"""Preprocessing parameters that only set quality flags or refuse files; they may differ."""


class TrainingError(ValueError):
    """Training cannot start or go on: the message says why and which file is at fault."""


def flux_relevant(config: PreprocessConfig) -> dict[str, Any]:
    """The preprocessing parameters that change the flux (all but `NOT_AFFECTING_FLUX`)."""
    return {k: v for k, v in config.to_dict().items() if k not in NOT_AFFECTING_FLUX}


def describe_config(config: PreprocessConfig) -> str:
    """Grid and flux-affecting preprocessing in one line, for messages."""
    parts = [
        f"grid {config.grid_start_aa:g}-{config.grid_stop_aa:g} Å x {config.grid_n}",
        f"blur_sigma_px {config.blur_sigma_px}",
        f"target_resolving_power {config.target_resolving_power:g}",
    ]
    return ", ".join(parts)


def read_dataset_any(path: str | Path) -> Dataset:
    """Read a spectraldl HDF5 dataset or a CSV in the thesis' published layout.

    A file named .h5/.hdf5 or starting with the HDF5 signature is read as a dataset, so
    that an empty, truncated or foreign one is refused for what it is.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() in HDF5_SUFFIXES or is_hdf5(path):
        return read_dataset(path)  # refuses a damaged or foreign HDF5 file saying how
    if is_published_csv(path):
        return read_published_csv(path)
    raise DatasetError(
        f"{path}: neither a spectraldl dataset (HDF5) nor a CSV in the published layout "
        "(id, label, object, ra, dec, expval, gratang, detector, chipid, specfilt, "
        "date-obs, dichmir, flux...)"
    )


@dataclass
class LabelledRows:
    """Rows of one or more datasets, with the dataset each came from."""

    rows: Rows
    source: NDArray[np.int64]
    paths: list[str]
    config: PreprocessConfig


def _check_same_preprocessing(datasets: Sequence[Dataset]) -> None:
    """Refuse datasets preprocessed otherwise than the first one."""
    first = datasets[0]
    for other in datasets[1:]:
        if flux_relevant(other.config) != flux_relevant(first.config):
            raise TrainingError(
                f"{other.path} was preprocessed otherwise than {first.path}: "
                f"{describe_config(other.config)} vs {describe_config(first.config)}"
            )


def _check_unique_ids(datasets: Sequence[Dataset]) -> None:
    """Refuse a dataset named twice, and an id that appears twice, in one or across them."""
    repeated = first_repeated(ds.path for ds in datasets if ds.path)  # in memory: no path
    if repeated is not None:
        raise TrainingError(
            f"{repeated[0]}: given twice (also as {repeated[1]}); name each dataset once"
        )
    seen: dict[str, str] = {}
    for ds in datasets:
        for ident in ds.ids:
            if ident in seen:
                where = (
                    f"twice in {ds.path}"
                    if seen[ident] == ds.path
                    else (f"in both {seen[ident]} and {ds.path}")
                )
                raise TrainingError(
                    f"id {ident!r} is {where}: a spectrum listed twice could land in "
                    "training and test at once"
                )
            seen[ident] = ds.path


def combine_datasets(datasets: Sequence[Dataset]) -> LabelledRows:
    """Stack datasets that share a grid and preprocessing; ids must be unique across them."""
    if not datasets:
        raise TrainingError("no dataset given")
    _check_same_preprocessing(datasets)
    rows = Rows.concat(datasets)
    _check_unique_ids(datasets)
    source = np.concatenate([np.full(len(ds), i, np.int64) for i, ds in enumerate(datasets)])
    return LabelledRows(
        rows=rows, source=source, paths=[ds.path for ds in datasets], config=datasets[0].config
    )
