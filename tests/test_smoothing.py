"""`spectraldl.prep.smoothing` gives scipy.ndimage's bits, and the stages no longer import scipy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from spectraldl.prep import smoothing

SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf])


def _values(rng: np.random.Generator, case: int) -> np.ndarray:
    """Spectra-like and awkward inputs: 1 to 5 lines, 1 pixel to thousands, float32 or 64,
    any scale, some with NaN, infinities and runs of negative zeros."""
    n = int(rng.integers(1, 3000 if case % 10 == 0 else 200))
    shape = (n,) if case % 3 else (int(rng.integers(1, 5)), n)
    dtype = np.float32 if case % 4 == 1 else np.float64
    values = (rng.normal(size=shape) * 10 ** rng.uniform(-5, 5)).astype(dtype)
    if case % 4 == 0:
        values.flat[rng.integers(0, values.size, 3)] = rng.choice(SPECIAL, 3)
    if case % 6 == 0:
        values[..., : n // 2] = -0.0
    return values


def _same_bits(ours: np.ndarray, scipys: np.ndarray) -> bool:
    """Same values, bit for bit, in the same layout (NumPy sums a C- and an F-ordered array
    in different orders, so a layout difference would change later sums)."""
    return (
        ours.dtype == scipys.dtype
        and ours.shape == scipys.shape
        and ours.flags.c_contiguous == scipys.flags.c_contiguous
        and ours.flags.f_contiguous == scipys.flags.f_contiguous
        and (ours.tobytes() == scipys.tobytes())
    )


@pytest.mark.parametrize("mode", ["nearest", "constant"])
def test_gaussian_filter1d_gives_scipys_bits(mode: str) -> None:
    rng = np.random.default_rng(11)
    for case in range(600):
        values = _values(rng, case)
        sigma = float(rng.uniform(0.05, 3.0) if case % 2 else rng.uniform(3.0, 40.0))
        cval = (float(rng.normal()), -0.0, 0.0)[case % 3] if mode == "constant" else 0.0
        axis = -1 if case % 5 else 0
        expected = ndimage.gaussian_filter1d(values, sigma, axis=axis, mode=mode, cval=cval)
        found = smoothing.gaussian_filter1d(values, sigma, axis=axis, mode=mode, cval=cval)
        assert _same_bits(found, expected), (case, values.shape, sigma, axis)


@pytest.mark.parametrize("mode", ["nearest", "constant"])
def test_correlate1d_gives_scipys_bits_for_any_weights(mode: str) -> None:
    """Odd and even lengths; symmetric (to scipy's tolerance), antisymmetric and lopsided
    weights take different loops in scipy, each summing in its own order."""
    rng = np.random.default_rng(12)
    for case in range(600):
        values = _values(rng, case)
        weights = rng.normal(size=int(rng.integers(1, 14)))
        if case % 4 == 1 and weights.size % 2:
            weights = weights - weights[::-1]
        elif case % 4 == 2:
            weights = weights + weights[::-1] + rng.choice([0.0, 1e-17], weights.size)
        if case % 7 == 0:
            weights[rng.integers(0, weights.size)] = 0.0
        for axis in (-1, 0) if values.ndim == 2 else (-1,):
            expected = ndimage.correlate1d(values, weights, axis=axis, mode=mode, cval=0.5)
            found = smoothing.correlate1d(values, weights, axis=axis, mode=mode, cval=0.5)
            assert _same_bits(found, expected), (case, values.shape, weights, axis)


@pytest.mark.parametrize("mode", ["nearest", "constant"])
@pytest.mark.parametrize(
    "shape", [(0,), (1,), (2,), (3,), (1, 1), (40, 1), (1, 40), (3, 4, 5)], ids=str
)
def test_tiny_and_thin_arrays_give_scipys_bits(shape: tuple[int, ...], mode: str) -> None:
    """One value per row (summed in a loop, not by a reduction), empty lines, every axis,
    kernels far longer than the lines."""
    values = np.random.default_rng(13).normal(size=shape)
    for axis in range(len(shape)):
        for sigma in (0.4, 3.0, 30.0):
            expected = ndimage.gaussian_filter1d(values, sigma, axis=axis, mode=mode)
            found = smoothing.gaussian_filter1d(values, sigma, axis=axis, mode=mode)
            assert _same_bits(found, expected), (axis, sigma)


def test_gaussian_weights_are_scipys() -> None:
    """The weights scipy correlates with (its private kernel, reversed)."""
    from scipy.ndimage._filters import _gaussian_kernel1d

    for sigma in (0.3, 1.0, 1.99, 7.0, 19.0):
        radius = int(4.0 * sigma + 0.5)
        expected = _gaussian_kernel1d(sigma, 0, radius)[::-1]
        assert smoothing.gaussian_weights(sigma).tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("values", "weights", "mode", "message"),
    [
        (np.arange(5), [1.0], "nearest", "values must be real floats, got int64"),
        (np.ones(5), [], "nearest", r"weights must be 1-D and not empty, got shape \(0,\)"),
        (np.ones(5), [[1.0]], "nearest", r"weights must be 1-D and not empty, got shape \(1, 1\)"),
        (np.ones(5), [1.0], "reflect", "mode must be 'nearest' or 'constant', got 'reflect'"),
    ],
)
def test_correlate1d_says_what_is_wrong(
    values: np.ndarray, weights: list[float], mode: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        smoothing.correlate1d(values, weights, mode=mode)  # type: ignore[arg-type]


def test_the_modules_workers_run_do_not_import_scipy() -> None:
    """In a fresh process: scipy.ndimage alone took 0.15-0.25 s of every worker server's
    start, before the first file (it is still used elsewhere, e.g. calibration)."""
    from spectraldl.cli import classify, ingest, simulate

    modules = [*classify.WORKER_MODULES, *ingest.WORKER_MODULES, *simulate.WORKER_MODULES]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
