"""Preprocessing a chunk of spectra at once: the numbers of `preprocess`, in fewer steps.

`preprocess` spends its time in about eighty small NumPy calls per spectrum
(window checks, medians, spike search, S/N, interpolation, scaling), each a
few microseconds of call overhead on a hundred pixels. The spectra of a
release mostly share one wavelength grid (every LAMOST DR1 file does), so
`preprocess_many` groups them by grid and runs each step once over the whole
group as a 2-D array. A spectrum the grouped path does not cover (non-finite
or spiky pixels near H-alpha, a blur, a constant window, a grid of its own)
goes through `preprocess` itself. The tests hold both paths to the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spectraldl.core.quality import Quality
from spectraldl.core.spectrum import Spectrum
from spectraldl.prep.lines import vacuum_wavelengths
from spectraldl.prep.measure import row_der_noise, row_spikes
from spectraldl.prep.preprocess import (
    PreprocessConfig,
    Preprocessed,
    blur_sigma_for,
    halpha_span,
    ivar_flags,
    partly_covered,
    preprocess,
    snr_and_flags,
)

MIN_GROUP = 8
"""Fewer spectra than this on one grid are preprocessed one by one (no gain below)."""

Outcome = Preprocessed | Exception
"""What `preprocess_many` gives for one spectrum: its result, or what `preprocess` raised."""


@dataclass(frozen=True)
class _GridPlan:
    """What one wavelength grid needs, computed once for all the spectra on it.

    ``window`` is the slice of pixels inside the grid's range; ``used`` the
    slice `np.interp` reads (the window and the pixels bracketing the grid's
    ends); ``left``/``weight``/``step``/``exact`` reproduce `np.interp`'s
    arithmetic for each grid point on ``used``'s pixels.
    """

    window: slice
    used: slice
    left: NDArray[np.intp]
    offset: NDArray[np.float64]
    step: NDArray[np.float64]
    exact: NDArray[np.bool_]
    partial: bool


def _plan(wave_vac: NDArray[np.float64], config: PreprocessConfig) -> _GridPlan | None:
    """The grid's plan, or None when `preprocess` must see each spectrum (coverage refused)."""
    grid = np.asarray(config.grid_aa, dtype=np.float64)
    inside = np.flatnonzero((wave_vac >= grid[0]) & (wave_vac <= grid[-1]))
    lo, hi = halpha_span(config)
    if wave_vac[0] > lo or wave_vac[-1] < hi or inside.size < 5:
        return None
    # np.interp: j with xp[j] <= x < xp[j+1]; before the first pixel the first value,
    # from the last pixel on the last value, on a pixel that pixel's value.
    last = wave_vac.size - 1
    j = np.clip(np.searchsorted(wave_vac, grid, side="right") - 1, -1, last)
    start = int(min(max(j.min(), 0), inside[0]))
    stop = int(max(min(j.max() + 1, last), inside[-1])) + 1
    inner = (j >= 0) & (j < last)
    jj = np.clip(j, 0, last - 1)
    exact = ~inner | (wave_vac[jj] == grid)
    return _GridPlan(
        window=slice(int(inside[0]) - start, int(inside[-1]) + 1 - start),
        used=slice(start, stop),
        left=np.where(j < 0, 0, np.where(j >= last, last, j)) - start,
        offset=grid - wave_vac[jj],
        step=wave_vac[jj + 1] - wave_vac[jj],
        exact=exact,
        partial=partly_covered(wave_vac, grid),
    )


def _spiky(
    values: NDArray[np.float64], median: NDArray[np.float64], noise: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Rows with a spike by `spectraldl.prep.measure.spike_pixels` (all pixels finite)."""
    return np.asarray(row_spikes(values, median, noise).any(axis=1))


def _interp(flux: NDArray[np.float64], plan: _GridPlan) -> NDArray[np.float64]:
    """`np.interp` of each row onto the grid, the same operations in the same order."""
    left = flux[:, plan.left]
    right = flux[:, np.minimum(plan.left + 1, flux.shape[1] - 1)]
    slope = (right - left) / plan.step
    return np.where(plan.exact, left, slope * plan.offset + left)


def _flags(spectra: Sequence[Spectrum], plan: _GridPlan, config: PreprocessConfig) -> list[int]:
    """Each spectrum's MASKED, BAD_IVAR and PARTIAL_COVERAGE flags."""
    window = slice(plan.used.start + plan.window.start, plan.used.start + plan.window.stop)
    base = Quality.PARTIAL_COVERAGE if plan.partial else Quality(0)
    flags = []
    for spectrum in spectra:
        quality = base
        if spectrum.mask is not None and spectrum.mask[window].any():
            quality |= Quality.MASKED
        quality |= ivar_flags(spectrum, window, config)
        flags.append(int(quality))
    return flags


def _group_outcomes(
    spectra: Sequence[Spectrum], plan: _GridPlan, config: PreprocessConfig
) -> list[Outcome | None]:
    """The group's results; None where `preprocess` must see the spectrum itself."""
    flux = np.stack([s.flux[plan.used] for s in spectra])
    window = flux[:, plan.window]
    # Rows with inf or NaN give NaN here without a word: they go to `preprocess` (not simple).
    with np.errstate(invalid="ignore", over="ignore"):
        median = np.median(window, axis=1)
        noise = row_der_noise(window)
        simple = (
            np.isfinite(flux).all(axis=1)
            & (window.min(axis=1) != window.max(axis=1))
            & ~_spiky(window, median, noise)
        )
        values = _interp(flux, plan)
        mean = values.mean(axis=1, keepdims=True)
        std = values.std(axis=1)
        simple &= np.isfinite(std) & (std != 0)
        x = ((values - mean) / np.where(simple, std, 1.0)[:, None]).astype(np.float32)
    flags = _flags(spectra, plan, config)
    out: list[Outcome | None] = []
    for i, spectrum in enumerate(spectra):
        if not simple[i]:
            out.append(None)
            continue
        measured = float(median[i] / noise[i]) if noise[i] > 0 else math.nan
        snr, snr_flags = snr_and_flags(spectrum.meta.snr, measured, config)
        quality = Quality(flags[i]) | snr_flags
        if median[i] <= 0:
            quality |= Quality.NONPOSITIVE_FLUX
        out.append(Preprocessed(x=x[i], quality=quality, snr=snr))
    return out


def _grids(spectra: Sequence[Spectrum], config: PreprocessConfig) -> list[list[int]]:
    """Indices of the spectra sharing one grid and medium with no blur (groups of any size)."""
    groups: dict[tuple, list[tuple[np.ndarray, list[int]]]] = {}
    for i, spectrum in enumerate(spectra):
        wave = spectrum.wave_aa
        meta = spectrum.meta
        if blur_sigma_for(
            config,
            archive=meta.archive,
            resolving_power=meta.resolving_power,
            wave_aa=wave,
            medium=spectrum.medium,
        ):
            continue
        candidates = groups.setdefault((spectrum.medium, wave.size, wave[0], wave[-1]), [])
        for first, members in candidates:
            if first is wave or np.array_equal(first, wave):
                members.append(i)
                break
        else:
            candidates.append((wave, [i]))
    return [members for lists in groups.values() for _, members in lists]


def _one(spectrum: Spectrum, config: PreprocessConfig) -> Outcome:
    """`preprocess` of one spectrum, or the exception it raised (never MemoryError)."""
    try:
        return preprocess(spectrum, config)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # reported per spectrum, as the caller reports a bad file
        return exc


def preprocess_many(
    spectra: Sequence[Spectrum], config: PreprocessConfig | None = None
) -> list[Outcome]:
    """`preprocess` of each spectrum, those sharing a wavelength grid together.

    Parameters
    ----------
    spectra
        Spectra of any archives and grids.
    config
        The preprocessing; `PreprocessConfig()` when None.

    Returns
    -------
    list
        For each spectrum, in order, its `Preprocessed` (the same bits as
        `preprocess` gives), or the exception `preprocess` raised for it
        (a `spectraldl.core.errors.SpectrumError` for a refused spectrum).
    """
    config = config or PreprocessConfig()
    outcomes: list[Outcome | None] = [None] * len(spectra)
    for members in _grids(spectra, config):
        plan = _plan(vacuum_wavelengths(spectra[members[0]]), config)
        if plan is None or len(members) < MIN_GROUP:
            continue
        group = _group_outcomes([spectra[i] for i in members], plan, config)
        for i, outcome in zip(members, group, strict=True):
            outcomes[i] = outcome
    return [
        _one(spectrum, config) if outcome is None else outcome
        for spectrum, outcome in zip(spectra, outcomes, strict=True)
    ]
