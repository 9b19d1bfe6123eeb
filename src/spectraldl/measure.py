"""Measurements on spectra that several stages share (S/N, equivalent width, ivar at lines)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def der_snr(flux: ArrayLike) -> float:
    """Signal-to-noise ratio by the DER_SNR estimator (Stoehr et al. 2008, ADASS XVII).

    Median flux over the noise estimated from second differences two pixels
    apart, which ignores features broader than a few pixels. Non-finite pixels
    are dropped. Returns NaN for fewer than 5 usable pixels or zero noise.
    """
    values = np.asarray(flux, dtype=np.float64)
    values = values[np.isfinite(values)]
    noise = der_noise(values)
    if not noise > 0:
        return float("nan")
    return float(np.median(values) / noise)


def der_noise(flux: ArrayLike) -> float:
    """Noise per pixel by the DER_SNR estimator: the median of second differences two apart.

    Non-finite pixels are dropped; NaN for fewer than 5 usable pixels.
    """
    values = np.asarray(flux, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 5:
        return float("nan")
    return float(0.6052697 * np.median(np.abs(2.0 * values[2:-2] - values[:-4] - values[4:])))


def spike_pixels(
    flux: ArrayLike, *, min_noise: float = 20.0, max_neighbour: float = 0.2
) -> NDArray[np.bool_]:
    """True at one-pixel spikes: cosmic rays and corrupt values, not lines.

    A spike stands more than ``min_noise`` times the `der_noise` from the
    median, and neither neighbour reaches ``max_neighbour`` of its excess (a
    line resolved by the spectrograph spans a few pixels, so its peak's
    neighbours stand at half its height or more). Non-finite pixels are never spikes.
    """
    values = np.asarray(flux, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.sum() < 5:
        return np.zeros(values.shape, bool)
    excess = np.where(finite, values - np.median(values[finite]), 0.0)
    noise = der_noise(values[finite])
    size = np.abs(excess)
    padded = np.pad(excess, 1)
    same_side = np.maximum(
        np.maximum(padded[:-2] * np.sign(excess), 0.0),
        np.maximum(padded[2:] * np.sign(excess), 0.0),
    )
    return finite & (size > min_noise * noise) & (same_side < max_neighbour * size)


def equivalent_width_aa(
    wave_aa: ArrayLike,
    flux: ArrayLike,
    *,
    line_aa: float,
    half_width_aa: float = 15.0,
    continuum_aa: tuple[float, float] = (25.0, 60.0),
) -> float:
    """Equivalent width (Å) of a line, negative for emission, positive for absorption.

    The continuum is the median flux in two side bands ``continuum_aa`` away
    from ``line_aa`` (inner, outer distance); the line is integrated over
    ``line_aa ± half_width_aa``. Returns NaN when a band is empty or the
    continuum is not positive.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    values = np.asarray(flux, dtype=np.float64)
    offset = np.abs(wave - line_aa)
    side = (offset >= continuum_aa[0]) & (offset <= continuum_aa[1]) & np.isfinite(values)
    core = (offset <= half_width_aa) & np.isfinite(values)
    if side.sum() < 3 or core.sum() < 3:
        return float("nan")
    continuum = float(np.median(values[side]))
    if continuum <= 0:
        return float("nan")
    depth = 1.0 - values[core] / continuum
    return float(np.trapezoid(depth, wave[core]))


def line_sigma_ratio(wave_aa: ArrayLike, ivar: ArrayLike, *, line_aa: float) -> float:
    """Sigma (from ivar) at a line's pixel over the median sigma 5-12 pixels either side.

    Shows how much a sky line, or the pipeline, raises the stated noise; the
    line's pixel is the largest sigma of the three nearest ``line_aa``. Returns
    NaN when the line is within 13 pixels of an end, one of those three pixels
    has ivar = 0 or no side pixel has ivar > 0.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    values = np.asarray(ivar, dtype=np.float64)
    i = int(np.argmin(np.abs(wave - line_aa)))
    if i < 13 or i > values.size - 14 or not (values[i - 1 : i + 2] > 0).all():
        return float("nan")
    side = np.r_[values[i - 12 : i - 5], values[i + 6 : i + 13]]
    side = side[side > 0]
    if side.size == 0:
        return float("nan")
    return float(np.sqrt(np.median(side) / values[i - 1 : i + 2].min()))
