"""Measurements on spectra: S/N, equivalent widths, and the H-alpha line measured.

`measure_halpha` measures the H-alpha line of a `Spectrum` on its native
pixels (not the 140-point vector): equivalent width and its error, peak
height, width, peak separation and V/R, and the profile type of Hou et al.
(2016, ApJS 225, 19). Every prediction row and catalogue carries these
(`MEASUREMENT_COLUMNS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from spectraldl.spectrum import Spectrum

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


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


# --- the H-alpha line ----------------------------------------------------------------------

C_KMS = 299_792.458
HALPHA_VACUUM_AA = 6564.61
"""H-alpha rest wavelength in vacuum (Å); `spectraldl.preprocess.HALPHA_VACUUM_AA` to 0.01 Å."""
NII_VACUUM_AA = (6549.86, 6585.27)
"""The [N II] nebular lines beside H-alpha (vacuum Å), kept out of the continuum bands."""
HEI_VACUUM_AA = 6679.99
"""He I 6678 (vacuum Å), kept out of the continuum bands."""
LINE_HALF_WIDTH_AA = 15.0
"""The line is integrated over its centre ± this (Å), as `simulate`'s truth EW."""
CONTINUUM_BANDS_AA = ((6504.6, 6539.6), (6589.6, 6624.6))
"""Blue and red continuum bands (vacuum Å): 25-60 Å from H-alpha, as `simulate`'s truth EW."""
MAX_SHIFT_AA = 6.0
"""Largest shift of the line centre from rest that is searched (about 275 km/s)."""
DETECTION_SIGMA = 4.0
"""A peak or trough is real when it stands this many noise sigmas out (height and prominence)."""
MIN_EMISSION_HEIGHT = 0.02
"""Least height of an emission peak over the continuum (fraction of it), whatever the S/N."""
MAX_BAD_FRACTION = 0.2
"""Most of the line window that may be masked or non-finite (interpolated over) before the
line counts as unmeasurable; no run of more than `MAX_BAD_RUN_PX` pixels either."""
MAX_BAD_RUN_PX = 3
MIN_BAND_PIXELS = 5
DEFAULT_RESOLVING_POWER = {"lamost": 1800.0, "ondrejov": 13000.0}

PROFILE_TYPES = (
    "emission",
    "double-peak",
    "emission-in-absorption",
    "double-peak-in-absorption",
    "p-cygni",
    "inverse-p-cygni",
    "absorption",
    "unmeasurable",
)
"""H-alpha profile types (after Hou et al. 2016, ApJS 225, 19), plus ``unmeasurable``."""
EMISSION_TYPES = frozenset(PROFILE_TYPES[:6])
"""Profile types with an emission component."""
DOUBLE_TYPES = frozenset({"double-peak", "double-peak-in-absorption"})


@dataclass(frozen=True)
class LineMeasurement:
    """The H-alpha line of one spectrum, measured on the native pixels.

    Attributes
    ----------
    halpha_ew_aa
        Equivalent width (Å) over the line centre ± 15 Å against a linear
        continuum fitted on 25-60 Å side bands: positive for absorption,
        negative for emission (as ``simulate``'s truth.csv).
    halpha_ew_err_aa
        Its 1-sigma error (Å) from the inverse variance, continuum included.
    halpha_peak_ratio
        Highest flux in the line window over the continuum (1 for a flat
        line, above 1 for emission above the continuum).
    halpha_fwhm_kms
        Observed full width at half maximum (km/s) of the emission component,
        instrument included; NaN without an emission component.
    halpha_peak_sep_kms
        Separation (km/s) of the two peaks of a double-peaked profile, else NaN.
    halpha_vr
        Violet over red peak height above the continuum for a double peak, else NaN.
    profile_type
        One of `PROFILE_TYPES`.
    halpha_flag
        Why the line is unmeasurable (``no coverage``, ``no continuum``,
        ``masked core``, ``ivar zero``), or a note on a measured line
        (``core ivar estimated``: the archive gave zero inverse variance at
        line pixels with finite flux, as the LAMOST pipeline does at strong
        emission lines; their noise was estimated from the continuum's);
        empty when there is nothing to say.
    """

    halpha_ew_aa: float = float("nan")
    halpha_ew_err_aa: float = float("nan")
    halpha_peak_ratio: float = float("nan")
    halpha_fwhm_kms: float = float("nan")
    halpha_peak_sep_kms: float = float("nan")
    halpha_vr: float = float("nan")
    profile_type: str = "unmeasurable"
    halpha_flag: str = ""

    @classmethod
    def unmeasurable(cls, reason: str) -> LineMeasurement:
        """A line that could not be measured, with the reason; every number NaN."""
        return cls(profile_type="unmeasurable", halpha_flag=reason)

    @property
    def measured(self) -> bool:
        """True when the line was measured (``profile_type`` is not ``unmeasurable``)."""
        return self.profile_type != "unmeasurable"

    def as_dict(self) -> dict[str, float | str]:
        """The fields by name, in `MEASUREMENT_COLUMNS` order."""
        return {name: getattr(self, name) for name in MEASUREMENT_COLUMNS}


MEASUREMENT_COLUMNS: dict[str, str] = {
    "halpha_ew_aa": "f4",
    "halpha_ew_err_aa": "f4",
    "halpha_peak_ratio": "f4",
    "halpha_fwhm_kms": "f4",
    "halpha_peak_sep_kms": "f4",
    "halpha_vr": "f4",
    "profile_type": "str",
    "halpha_flag": "str",
}
"""`LineMeasurement` fields as table columns and their kinds."""


def measure_halpha(spectrum: Spectrum) -> LineMeasurement:
    """Measure the H-alpha line of a spectrum on its native pixels.

    Wavelengths in air (Ondřejov) are converted to vacuum first. The archive's
    mask and non-finite fluxes mark bad pixels; pixels with zero inverse
    variance but finite flux are kept with a noise estimated from the
    continuum (see `LineMeasurement.halpha_flag`).

    Parameters
    ----------
    spectrum
        Any `Spectrum` covering 6504-6625 Å (vacuum).

    Returns
    -------
    LineMeasurement
        The measurement, or an ``unmeasurable`` one with the reason.
    """
    from spectraldl.preprocess import vacuum_wavelengths

    resolving_power = spectrum.meta.resolving_power
    if not resolving_power > 0:
        resolving_power = DEFAULT_RESOLVING_POWER.get(spectrum.meta.archive, 2000.0)
    return measure_halpha_arrays(
        wave_vacuum_aa=vacuum_wavelengths(spectrum),
        flux=spectrum.flux,
        ivar=spectrum.ivar,
        mask=spectrum.mask,
        resolving_power=float(resolving_power),
    )


def measure_halpha_arrays(
    *,
    wave_vacuum_aa: ArrayLike,
    flux: ArrayLike,
    ivar: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    resolving_power: float = 2000.0,
) -> LineMeasurement:
    """Measure H-alpha on arrays: the work of `measure_halpha`.

    Parameters
    ----------
    wave_vacuum_aa
        Increasing vacuum wavelengths (Å).
    flux
        Flux in any units (the continuum must be positive).
    ivar
        Inverse variance of ``flux``; None estimates the noise from the
        continuum bands (scaled with the square root of the flux).
    mask
        True at bad pixels, or None.
    resolving_power
        R = λ/Δλ of the spectrograph: sets the smoothing used to find peaks.

    Returns
    -------
    LineMeasurement
        See `measure_halpha`.
    """
    wave = np.asarray(wave_vacuum_aa, dtype=np.float64)
    values = np.asarray(flux, dtype=np.float64)
    lo = CONTINUUM_BANDS_AA[0][0]
    hi = CONTINUUM_BANDS_AA[1][1]
    if wave.size < 2 or wave[0] > lo or wave[-1] < hi:
        return LineMeasurement.unmeasurable("no coverage")
    start, stop = np.searchsorted(wave, [lo, hi])
    start, stop = max(start - 1, 0), min(stop + 1, wave.size)
    wave = wave[start:stop]
    values = values[start:stop]
    good = np.isfinite(values)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool)[start:stop]
    if ivar is not None:
        weights = np.asarray(ivar, dtype=np.float64)[start:stop]
        weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0)
        if not (weights[good] > 0).any():
            return LineMeasurement.unmeasurable("ivar zero")
    else:
        weights = None
    return _measure_window(wave, values, good, weights, resolving_power)


def _bands(wave: NDArray[np.float64], resolving_power: float) -> NDArray[np.bool_]:
    """Pixels of the continuum bands, clear of [N II] and He I by two resolution elements."""
    inside = np.zeros(wave.shape, bool)
    for lo, hi in CONTINUUM_BANDS_AA:
        inside |= (wave >= lo) & (wave <= hi)
    for line in (*NII_VACUUM_AA, HEI_VACUUM_AA):
        inside &= np.abs(wave - line) > max(4.0, 2.0 * line / resolving_power)
    return inside


def _fit_continuum(
    x: NDArray[np.float64], y: NDArray[np.float64], sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], float]:
    """Weighted straight line through (x, y) with two 3-sigma clippings.

    Returns the coefficients (a, b) of ``a + b x``, their covariance (scaled
    up by the reduced chi-square when above 1: the bands' own lines count as
    noise of the continuum), the pixels kept and the reduced chi-square.
    """
    keep = np.ones(x.size, bool)
    design = np.stack([np.ones_like(x), x], axis=1)
    w = 1.0 / sigma**2
    coef = np.zeros(2)
    cov = np.full((2, 2), np.inf)
    chi2 = 1.0
    for _ in range(3):
        a = design[keep] * w[keep, None]
        normal = design[keep].T @ a
        try:
            cov = np.linalg.inv(normal)
        except np.linalg.LinAlgError:
            return coef, np.full((2, 2), np.inf), keep, np.inf
        coef = cov @ (a.T @ y[keep])
        resid = (y - design @ coef) / sigma
        dof = max(int(keep.sum()) - 2, 1)
        chi2 = float(np.sum(resid[keep] ** 2) / dof)
        new = np.abs(resid) < 3.0 * math.sqrt(max(chi2, 1.0))
        if new.sum() < 2 * MIN_BAND_PIXELS or (new == keep).all():
            break
        keep = new
    return coef, cov * max(chi2, 1.0), keep, chi2


def _measure_window(
    wave: NDArray[np.float64],
    values: NDArray[np.float64],
    good: NDArray[np.bool_],
    ivar: NDArray[np.float64] | None,
    resolving_power: float,
) -> LineMeasurement:
    bands = _bands(wave, resolving_power)
    blue = bands & (wave < HALPHA_VACUUM_AA) & good
    red = bands & (wave > HALPHA_VACUUM_AA) & good
    if blue.sum() < MIN_BAND_PIXELS or red.sum() < MIN_BAND_PIXELS:
        return LineMeasurement.unmeasurable("no continuum")
    # Noise: from ivar where it is positive, else the bands' scatter scaled by sqrt(flux).
    band_pixels = blue | red
    has_ivar = ivar is not None and ivar > 0 if ivar is not None else np.zeros(wave.shape, bool)
    if ivar is not None and (has_ivar & band_pixels).sum() >= 2 * MIN_BAND_PIXELS:
        band_sigma = float(np.median(1.0 / np.sqrt(ivar[has_ivar & band_pixels])))
    else:
        band_sigma = 0.5 * (der_noise(values[blue]) + der_noise(values[red]))
    band_level = float(np.median(values[band_pixels]))
    band_sigma = max(band_sigma, 1e-9 * band_level)  # noise-free flux (a model) still measures
    if not (band_sigma > 0 and band_level > 0):
        return LineMeasurement.unmeasurable("no continuum")
    x = wave - HALPHA_VACUUM_AA
    sigma = np.full(wave.shape, band_sigma)
    if ivar is not None:
        sigma[has_ivar] = 1.0 / np.sqrt(ivar[has_ivar])
    estimated = ~has_ivar
    scale = np.sqrt(np.clip(np.where(good, values, band_level) / band_level, 0.05, None))
    sigma[estimated] = band_sigma * scale[estimated]
    coef, cov, _, _ = _fit_continuum(x[band_pixels], values[band_pixels], sigma[band_pixels])
    if not np.isfinite(cov).all():
        return LineMeasurement.unmeasurable("no continuum")
    continuum = coef[0] + coef[1] * x
    core = np.abs(x) <= LINE_HALF_WIDTH_AA + MAX_SHIFT_AA
    if not (continuum[core] > 0).all():
        return LineMeasurement.unmeasurable("no continuum")
    # Bad pixels in the line: a few are interpolated over, more make it unmeasurable.
    window = np.abs(x) <= LINE_HALF_WIDTH_AA + MAX_SHIFT_AA
    bad = window & ~good
    if bad.sum() > MAX_BAD_FRACTION * window.sum() or _longest_run(bad) > MAX_BAD_RUN_PX:
        return LineMeasurement.unmeasurable("masked core")
    if bad.any():
        values = values.copy()
        values[bad] = np.interp(wave[bad], wave[good], values[good])
    note = "core ivar estimated" if ivar is not None and (estimated & window & good).any() else ""
    return _line(wave, values, continuum, sigma, cov, x, band_pixels, resolving_power, note)


def _longest_run(flags: NDArray[np.bool_]) -> int:
    if not flags.any():
        return 0
    padded = np.r_[0, flags.astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _line(
    wave: NDArray[np.float64],
    values: NDArray[np.float64],
    continuum: NDArray[np.float64],
    sigma: NDArray[np.float64],
    cov: NDArray[np.float64],
    x: NDArray[np.float64],
    bands: NDArray[np.bool_],
    resolving_power: float,
    note: str,
) -> LineMeasurement:
    """EW, its error, the profile's type and its peaks, given the continuum."""
    from scipy.ndimage import gaussian_filter1d

    search = np.abs(x) <= LINE_HALF_WIDTH_AA + MAX_SHIFT_AA
    idx = np.flatnonzero(search)
    w = wave[idx]
    norm = values[idx] / continuum[idx]
    noise = sigma[idx] / continuum[idx]
    step_aa = float(np.median(np.diff(w)))
    # Smooth by half the instrument's sigma (at least one pixel) to find peaks and troughs.
    inst_sigma_aa = HALPHA_VACUUM_AA / resolving_power / FWHM_PER_SIGMA
    smooth_px = max(1.0, 0.5 * inst_sigma_aa / step_aa)
    smooth = gaussian_filter1d(norm, smooth_px, mode="nearest")
    noise_s = float(np.median(noise)) / math.sqrt(2.0 * math.sqrt(math.pi) * smooth_px)
    # The continuum bands' own wiggles (weak lines, a curved continuum) count as noise too.
    band_smooth = gaussian_filter1d(values[bands] / continuum[bands], smooth_px, mode="nearest")
    noise_s = max(noise_s, float(np.sqrt(np.mean((band_smooth - 1.0) ** 2))))
    centre = _centre(w, smooth, noise_s)
    # Equivalent width and its error: pixel noise plus the continuum's covariance.
    inner = np.abs(w - centre) <= LINE_HALF_WIDTH_AA
    dl = np.gradient(w)[inner]
    ew = float(np.sum((1.0 - norm[inner]) * dl))
    cont = continuum[idx][inner]
    grad = np.stack([np.ones(inner.sum()), x[idx][inner]], axis=1)
    d_ew = (values[idx][inner] * dl / cont**2) @ grad
    var = float(np.sum((dl * noise[inner]) ** 2) + d_ew @ cov @ d_ew)
    ew_err = math.sqrt(var) if var >= 0 else float("nan")
    shape = _profile_shape(w, smooth, noise_s, centre, smooth_px * step_aa, resolving_power)
    return LineMeasurement(
        halpha_ew_aa=ew,
        halpha_ew_err_aa=ew_err,
        halpha_peak_ratio=_peak_value(norm, smooth, inner, inst_sigma_aa / step_aa),
        **shape,
        halpha_flag=note,
    )


def _centre(wave: NDArray[np.float64], smooth: NDArray[np.float64], noise: float) -> float:
    """Line centre (Å): centroid of the significant departures from the continuum near rest."""
    near = np.abs(wave - HALPHA_VACUUM_AA) <= 10.0
    weight = np.clip(np.abs(smooth[near] - 1.0) - 2.0 * noise, 0.0, None)
    if not weight.sum() > 0:
        return HALPHA_VACUUM_AA
    centre = float(np.sum(wave[near] * weight) / weight.sum())
    return float(np.clip(centre, HALPHA_VACUUM_AA - MAX_SHIFT_AA, HALPHA_VACUUM_AA + MAX_SHIFT_AA))


def _peak_value(
    norm: NDArray[np.float64],
    smooth: NDArray[np.float64],
    inner: NDArray[np.bool_],
    inst_sigma_px: float,
) -> float:
    """Highest normalised flux in the line: a parabola through the unsmoothed pixels there.

    The smoothed profile finds the peak (noise does not); the parabola over
    ± one instrumental sigma of unsmoothed pixels reads its height without
    the smoothing's loss.
    """
    idx = np.flatnonzero(inner)
    top = int(idx[np.argmax(smooth[idx])])
    half = max(1, round(inst_sigma_px))
    lo, hi = max(top - half, 0), min(top + half + 1, norm.size)
    if hi - lo < 3:
        return float(smooth[top])
    t = np.arange(lo, hi) - top
    c2, c1, c0 = np.polyfit(t, norm[lo:hi], 2)
    if c2 < 0 and abs(c1 / (2 * c2)) <= half:
        return float(c0 - c1 * c1 / (4 * c2))
    return float(norm[lo:hi].max())


def _crossing(
    wave: NDArray[np.float64], smooth: NDArray[np.float64], start: int, level: float, step: int
) -> float:
    """Wavelength where ``smooth`` drops below ``level`` from ``start`` on by ``step``, or NaN."""
    i = start
    while 0 <= i + step < smooth.size:
        j = i + step
        if smooth[j] < level:
            f = (smooth[i] - level) / (smooth[i] - smooth[j])
            return float(wave[i] + f * (wave[j] - wave[i]))
        i = j
    return float("nan")


def _vertex(v: NDArray[np.float64], y: NDArray[np.float64], i: int) -> float:
    """Position of a local maximum refined by a parabola through its three pixels."""
    if i <= 0 or i >= y.size - 1:
        return float(v[i])
    denom = y[i - 1] - 2.0 * y[i] + y[i + 1]
    shift = 0.5 * (y[i - 1] - y[i + 1]) / denom if denom < 0 else 0.0
    return float(v[i] + np.clip(shift, -0.5, 0.5) * (v[i + 1] - v[i - 1]) / 2.0)


def _profile_shape(
    wave: NDArray[np.float64],
    smooth: NDArray[np.float64],
    noise: float,
    centre: float,
    smooth_aa: float,
    resolving_power: float,
) -> dict[str, Any]:
    """Profile type, emission FWHM, peak separation and V/R from the smoothed profile."""
    from scipy.signal import find_peaks

    region = np.abs(wave - centre) <= LINE_HALF_WIDTH_AA
    w = wave[region]
    s = smooth[region]
    v = C_KMS * (w / HALPHA_VACUUM_AA - 1.0)
    thr = DETECTION_SIGMA * noise
    peaks, _ = find_peaks(s, prominence=thr)
    # [N II] 6548/6583 in emission (an H II region in the fibre) are no H-alpha peaks.
    nii_kms = [C_KMS * (line / HALPHA_VACUUM_AA - 1.0) for line in NII_VACUUM_AA]
    clear = max(C_KMS / resolving_power, 100.0)
    peaks = np.array(
        [p for p in peaks if all(abs(v[p] - n) > clear for n in nii_kms)], dtype=np.int64
    )
    troughs, _ = find_peaks(-s, prominence=thr)
    troughs = troughs[s[troughs] < 1.0 - thr]
    above = peaks[s[peaks] > 1.0 + max(thr, MIN_EMISSION_HEIGHT)] if peaks.size else peaks
    none = {
        "halpha_fwhm_kms": float("nan"),
        "halpha_peak_sep_kms": float("nan"),
        "halpha_vr": float("nan"),
    }
    smooth_fwhm_kms = FWHM_PER_SIGMA * smooth_aa / HALPHA_VACUUM_AA * C_KMS
    if above.size == 0:
        # Emission filling an absorption line without reaching the continuum.
        for p in peaks[np.argsort(-s[peaks])] if peaks.size else ():
            left, right = troughs[troughs < p], troughs[troughs > p]
            if left.size and right.size:
                base = 0.5 * (s[left[-1]] + s[right[0]])
                fwhm = _fwhm_kms(w, s, int(p), int(p), base, smooth_fwhm_kms)
                return {**none, "halpha_fwhm_kms": fwhm, "profile_type": "emission-in-absorption"}
        return {**none, "profile_type": "absorption"}
    order = above[np.argsort(-s[above])]
    double = order.size >= 2
    first, last = (int(min(order[:2])), int(max(order[:2]))) if double else (order[0], order[0])
    fwhm = _fwhm_kms(w, s, first, last, 1.0, smooth_fwhm_kms)
    blue = troughs[troughs < first].size > 0
    red = troughs[troughs > last].size > 0
    out = {**none, "halpha_fwhm_kms": fwhm}
    if double:
        out["halpha_peak_sep_kms"] = _vertex(v, s, last) - _vertex(v, s, first)
        heights = s[first] - 1.0, s[last] - 1.0
        out["halpha_vr"] = float(heights[0] / heights[1])
        out["profile_type"] = "double-peak-in-absorption" if blue and red else "double-peak"
    elif blue and red:
        out["profile_type"] = "emission-in-absorption"
    elif blue:
        out["profile_type"] = "p-cygni"
    elif red:
        out["profile_type"] = "inverse-p-cygni"
    else:
        out["profile_type"] = "emission"
    return out


def _fwhm_kms(
    w: NDArray[np.float64],
    s: NDArray[np.float64],
    first: int,
    last: int,
    base: float,
    smooth_fwhm_kms: float,
) -> float:
    """Full width at half the highest peak above ``base`` (km/s), the smoothing taken out."""
    level = base + 0.5 * (max(s[first], s[last]) - base)
    lo = _crossing(w, s, first, level, -1)
    hi = _crossing(w, s, last, level, +1)
    width = (hi - lo) / HALPHA_VACUUM_AA * C_KMS
    if not width > 0:
        return float("nan")
    return float(math.sqrt(max(width**2 - smooth_fwhm_kms**2, 0.0)))
