"""Small labelled sets for the training tests: H-alpha profiles on a noisy continuum.

Deliberately simple (a Gaussian line, or two, on a slowly wandering
continuum) so that tests of the training machinery run in seconds; the
realistic synthetic spectra come from `spectraldl.simulate`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectraldl.io.dataset import Rows, append_rows, create_dataset
from spectraldl.io.labels import label_code
from spectraldl.prep.preprocess import HALPHA_VACUUM_AA, PreprocessConfig


def profile_rows(
    counts: dict[str, int],
    *,
    seed: int,
    origin: str = "synthetic",
    prefix: str = "syn",
    config: PreprocessConfig | None = None,
) -> Rows:
    """``counts[class]`` spectra per class (emission, absorption, double-peak), standardised."""
    config = config or PreprocessConfig()
    grid = config.grid_aa
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for name, n in counts.items():
        for _ in range(n):
            centre = HALPHA_VACUUM_AA + rng.normal(0.0, 1.5)
            width = rng.uniform(2.0, 4.5)
            depth = rng.uniform(0.4, 1.5)
            flux = 1.0 + 0.002 * rng.normal(size=grid.size).cumsum()
            if name == "emission":
                flux += depth * np.exp(-0.5 * ((grid - centre) / width) ** 2)
            elif name == "absorption":
                flux -= 0.5 * depth * np.exp(-0.5 * ((grid - centre) / width) ** 2)
            elif name == "double-peak":
                for side in (-1.0, 1.0):
                    flux += depth * np.exp(
                        -0.5 * ((grid - centre - side * width) / (width / 2)) ** 2
                    )
            else:
                raise ValueError(name)
            flux += rng.normal(0.0, 0.02, grid.size)
            xs.append((flux - flux.mean()) / flux.std())
            labels.append(label_code(name))
    n = len(labels)
    order = rng.permutation(n)
    return Rows(
        X=np.array(xs, np.float32)[order],
        ids=np.array([f"{prefix}-{i:05d}" for i in range(n)], dtype=object),
        labels=np.array(labels, np.int8)[order],
        quality=np.zeros(n, np.int32),
        meta={
            "origin": np.full(n, origin, dtype=object),
            "archive": np.full(n, "ondrejov" if origin == "real" else "synthetic", dtype=object),
        },
    )


def write_dataset(path: Path, *blocks: Rows, config: PreprocessConfig | None = None) -> Path:
    """Create the HDF5 dataset ``path`` holding ``blocks`` in order."""
    create_dataset(path, config=config or PreprocessConfig())
    for block in blocks:
        append_rows(path, block)
    return path
