"""Measurements on spectra: S/N, equivalent widths, and the H-alpha line measured.

`measure_halpha` measures the H-alpha line of a `Spectrum` on its native
pixels (not the 140-point vector): equivalent width and its error, peak
height, width, peak separation and V/R, and the profile type of Hou et al.
(2016, ApJS 225, 19). Every prediction row and catalogue carries these
(`MEASUREMENT_COLUMNS`). A chunk of files is measured at once: each file's
pixels around H-alpha are cut out (`halpha_window`) and the windows measured
together (`measure_halpha_windows`), those on one wavelength grid in a few
vectorised operations, the same numbers to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectraldl.core.spectrum import FLOAT32_MAX, Spectrum
from spectraldl.prep.lines import FWHM_PER_SIGMA, vacuum_wavelengths
from spectraldl.prep.smoothing import correlate1d, gaussian_weights

DER_NOISE_SCALE = 0.6052697
"""DER_SNR's factor from the median absolute second difference to the noise per pixel."""

SPIKE_MIN_NOISE = 20.0
"""`spike_pixels`: least excess over the median, in units of the `der_noise`."""

SPIKE_MAX_NEIGHBOUR = 0.2
"""`spike_pixels`: largest excess of a neighbour on the same side, as a fraction of the spike's."""


def _usable(flux: ArrayLike) -> NDArray[np.float64]:
    """The pixels of ``flux`` that are measurements: finite and within float32's range (a
    pixel of 1e300 would overflow the second differences)."""
    values = np.asarray(flux, dtype=np.float64)
    return values[np.abs(values) <= FLOAT32_MAX]


def der_snr(flux: ArrayLike) -> float:
    """Signal-to-noise ratio by the DER_SNR estimator (Stoehr et al. 2008, ADASS XVII).

    Median flux over the noise estimated from second differences two pixels
    apart, which ignores features broader than a few pixels.

    Parameters
    ----------
    flux
        Flux, any units; non-finite pixels, and those beyond
        `spectraldl.core.spectrum.FLOAT32_MAX` (corrupt), are dropped.

    Returns
    -------
    float
        The S/N per pixel; NaN for fewer than 5 usable pixels or zero noise.
    """
    values = _usable(flux)
    noise = der_noise(values)
    if not noise > 0:
        return float("nan")
    return float(np.median(values) / noise)


def der_noise(flux: ArrayLike) -> float:
    """Noise per pixel by the DER_SNR estimator: the median of second differences two apart.

    Parameters
    ----------
    flux
        Flux, any units; non-finite pixels, and those beyond
        `spectraldl.core.spectrum.FLOAT32_MAX` (corrupt), are dropped.

    Returns
    -------
    float
        The noise in the flux's units; NaN for fewer than 5 usable pixels.
    """
    values = _usable(flux)
    if values.size < 5:
        return float("nan")
    second = np.abs(2.0 * values[2:-2] - values[:-4] - values[4:])
    return float(DER_NOISE_SCALE * np.median(second))


def spike_pixels(
    flux: ArrayLike,
    *,
    min_noise: float = SPIKE_MIN_NOISE,
    max_neighbour: float = SPIKE_MAX_NEIGHBOUR,
) -> NDArray[np.bool_]:
    """True at one-pixel spikes: cosmic rays and corrupt values, not lines.

    A spike stands more than ``min_noise`` times the `der_noise` from the
    median, and neither neighbour reaches ``max_neighbour`` of its excess (a
    line resolved by the spectrograph spans a few pixels, so its peak's
    neighbours stand at half its height or more).

    Parameters
    ----------
    flux
        Flux, any units.
    min_noise
        Least excess over the median, in units of the `der_noise`.
    max_neighbour
        Largest excess of a neighbour on the same side, as a fraction of the spike's.

    Returns
    -------
    numpy.ndarray
        Boolean, True at spikes (never at non-finite pixels; none when fewer
        than 5 pixels are finite).
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


def row_der_noise(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """`der_noise` of each row (all finite, at least 5 pixels), the same arithmetic."""
    second = np.abs(2.0 * values[:, 2:-2] - values[:, :-4] - values[:, 4:])
    return DER_NOISE_SCALE * np.median(second, axis=1)


def row_spikes(
    values: NDArray[np.float64], median: NDArray[np.float64], noise: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """`spike_pixels` of each row (all finite), given the rows' medians and `row_der_noise`."""
    excess = values - median[:, None]
    size = np.abs(excess)
    sign = np.sign(excess)
    padded = np.pad(excess, ((0, 0), (1, 1)))
    same_side = np.maximum(
        np.maximum(padded[:, :-2] * sign, 0.0), np.maximum(padded[:, 2:] * sign, 0.0)
    )
    return (size > SPIKE_MIN_NOISE * noise[:, None]) & (same_side < SPIKE_MAX_NEIGHBOUR * size)


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
    ``line_aa ± half_width_aa`` (trapezoid rule).

    Parameters
    ----------
    wave_aa
        Increasing wavelengths (Å), in the medium of ``line_aa``.
    flux
        Flux, any units; non-finite pixels are left out.
    line_aa
        The line's centre (Å).
    half_width_aa
        Half the integration window (Å).
    continuum_aa
        Inner and outer distance (Å) of the continuum bands from ``line_aa``.

    Returns
    -------
    float
        The equivalent width (Å); NaN when the bands or the core hold fewer
        than 3 finite pixels or the continuum is not positive.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    values = np.asarray(flux, dtype=np.float64)
    offset = np.abs(wave - line_aa)
    side = (offset >= continuum_aa[0]) & (offset <= continuum_aa[1]) & np.isfinite(values)
    core = (offset <= half_width_aa) & np.isfinite(values)
    if side.sum() < 3 or core.sum() < 3:
        return float("nan")
    continuum = finite_median(values[side])
    if continuum <= 0:
        return float("nan")
    depth = 1.0 - values[core] / continuum
    return float(np.trapezoid(depth, wave[core]))


def line_sigma_ratio(wave_aa: ArrayLike, ivar: ArrayLike, *, line_aa: float) -> float:
    """Sigma (from ivar) at a line's pixel over the median sigma 5-12 pixels either side.

    Shows how much a sky line, or the pipeline, raises the stated noise; the
    line's pixel is the largest sigma of the three nearest ``line_aa``.

    Parameters
    ----------
    wave_aa
        Increasing wavelengths (Å), in the medium of ``line_aa``.
    ivar
        Inverse variance of the flux.
    line_aa
        The line's wavelength (Å).

    Returns
    -------
    float
        The ratio; NaN when the line is within 13 pixels of an end, one of
        those three pixels has ivar = 0 or no side pixel has ivar > 0.
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
"""H-alpha rest wavelength in vacuum (Å); `preprocess.HALPHA_VACUUM_AA` to 0.01 Å."""
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
STRUCTURE_SCALE_RESOLUTION = 4.0
"""Correlation length, in resolution elements (λ/R), of the structure under the line.

The continuum bands' smoothed residuals beyond their photon noise (rms ``r``
of the continuum) are taken to lie under the line as well; integrated over
the line's ``W`` Å they add ``r · sqrt(W · ℓ)`` to the EW error (a random
pattern with correlation length ``ℓ``: unresolved weak lines, sky and
telluric residuals), in quadrature with the photon and continuum terms. The
4 resolution elements are set by `benchmarks/measure.py` (simulated LAMOST
and Ondřejov spectra: error bars covering the truth about 68 % of the time at
S/N >= 20, from about 50 % with the noise alone)."""

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
        Its 1-sigma error (Å): the pixels' noise (from the inverse variance,
        scaled up by the continuum fit's reduced chi-square when above 1),
        the fitted continuum's covariance, and the structure seen in the
        continuum bands beyond their noise (weak lines, sky and telluric
        residuals, calibration wiggles), taken to lie under the line too
        (`STRUCTURE_SCALE_RESOLUTION`).
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

SHOWN_MEASUREMENTS: tuple[str, ...] = tuple(
    c for c in MEASUREMENT_COLUMNS if c != "halpha_peak_ratio"
)
"""The measurements shown to people (gallery captions, the web pages), in column order."""


@dataclass(frozen=True)
class HalphaFit:
    """What `fit_halpha` fitted to measure the line, to draw beside its numbers.

    Attributes
    ----------
    continuum
        Coefficients ``(a, b)`` of the continuum ``a + b (λ - 6564.61 Å)``
        (λ vacuum Å), in the spectrum's flux units.
    centre_aa
        Line centre (vacuum Å): the EW is integrated over its ± 15 Å.
    peaks_aa
        Vacuum wavelengths of the measured emission peaks: one, two for a
        double peak, none for an absorption line.
    peak_heights
        Their heights over the continuum (smoothed flux / continuum).
    troughs_aa
        Vacuum wavelengths of the significant absorption troughs in the line.
    """

    continuum: tuple[float, float]
    centre_aa: float
    peaks_aa: tuple[float, ...] = ()
    peak_heights: tuple[float, ...] = ()
    troughs_aa: tuple[float, ...] = ()

    def continuum_at(self, wave_vacuum_aa: ArrayLike) -> NDArray[np.float64]:
        """The fitted continuum at vacuum wavelengths (Å)."""
        a, b = self.continuum
        return a + b * (np.asarray(wave_vacuum_aa, dtype=np.float64) - HALPHA_VACUUM_AA)


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
    return fit_halpha(spectrum, detail=False)[0]


def fit_halpha(
    spectrum: Spectrum, *, detail: bool = True
) -> tuple[LineMeasurement, HalphaFit | None]:
    """Measure H-alpha as `measure_halpha`, and say what was fitted (to draw it).

    Parameters
    ----------
    spectrum
        Any `Spectrum` covering 6504-6625 Å (vacuum).
    detail
        False skips building the `HalphaFit` (`measure_halpha`'s case).

    Returns
    -------
    tuple of LineMeasurement and HalphaFit or None
        The measurement and, when it was measured and ``detail`` is true, the
        fitted continuum, centre, peaks and troughs.
    """
    window = halpha_window(spectrum)
    if isinstance(window, LineMeasurement):
        return window, None
    return _measure_windows([window], detail)[0]


def halpha_window(spectrum: Spectrum) -> HalphaWindow | LineMeasurement:
    """The pixels of a spectrum around H-alpha, cut out to be measured with others.

    A few hundred bytes whatever the spectrum's size: a chunk of files keeps
    their windows, not their spectra, and measures them at once
    (`measure_halpha_windows`).

    Parameters
    ----------
    spectrum
        Any `Spectrum` covering 6504-6625 Å (vacuum).

    Returns
    -------
    HalphaWindow or LineMeasurement
        The window, or the ``unmeasurable`` measurement when there is none
        (``no coverage``, ``ivar zero``).
    """
    resolving_power = spectrum.meta.resolving_power
    if not resolving_power > 0:
        resolving_power = DEFAULT_RESOLVING_POWER.get(spectrum.meta.archive, 2000.0)
    return _window(
        vacuum_wavelengths(spectrum),
        spectrum.flux,
        spectrum.ivar,
        spectrum.mask,
        float(resolving_power),
    )


def measure_halpha_windows(
    windows: Sequence[HalphaWindow | LineMeasurement],
) -> list[LineMeasurement]:
    """Measure many H-alpha windows (`halpha_window`) at once, as `measure_halpha` each.

    Windows on one wavelength grid (LAMOST files share one) are measured
    together, a few vectorised operations for all of them; the numbers are
    those `measure_halpha` gives each spectrum alone. An entry that is already
    a `LineMeasurement` is passed through. A window whose measuring fails
    becomes ``unmeasurable`` with ``measuring failed: <error>`` and never stops
    the others.

    Parameters
    ----------
    windows
        What `halpha_window` returned for each spectrum.

    Returns
    -------
    list of LineMeasurement
        One per window, in order.
    """
    out: list[LineMeasurement | None] = [
        w if isinstance(w, LineMeasurement) else None for w in windows
    ]
    todo = [i for i, w in enumerate(windows) if not isinstance(w, LineMeasurement)]
    try:
        measured = _measure_windows([windows[i] for i in todo], False)  # type: ignore[misc]
        for i, (line, _) in zip(todo, measured, strict=True):
            out[i] = line
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:  # one bad window must not lose the others: measure them one by one
        for i in todo:
            try:
                out[i] = _measure_windows([windows[i]], False)[0][0]  # type: ignore[list-item]
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:
                out[i] = LineMeasurement.unmeasurable(f"measuring failed: {type(exc).__name__}")
    return out  # type: ignore[return-value]


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
    window = _window(wave_vacuum_aa, flux, ivar, mask, float(resolving_power))
    if isinstance(window, LineMeasurement):
        return window
    return _measure_windows([window], False)[0][0]


# How it is measured, fast: a spectrum costs about as much to read as a few hundred numpy calls
# on its ~100 pixels around H-alpha, so the work below is a few dozen such calls. Everything
# that depends on the wavelengths alone (bands, line window, smoothing kernel) is worked out
# once per grid (`_Grid`; LAMOST files share one), the continuum is a weighted straight line
# solved in closed form, and the peaks of the ~20-100 smoothed pixels are found in plain Python.
# Windows of one grid are measured together (`_measure_together`: the same steps over all rows);
# that is what brings a LAMOST file's measuring under a tenth of reading it.


class HalphaWindow:
    """The pixels of one spectrum around H-alpha (`halpha_window`): its grid, flux, good
    pixels and cleaned inverse variance (None when the archive gives none)."""

    __slots__ = ("good", "grid", "ivar", "values")

    def __init__(
        self,
        grid: _Grid,
        values: NDArray[np.float64],
        good: NDArray[np.bool_],
        ivar: NDArray[np.float64] | None,
    ) -> None:
        self.grid = grid
        self.values = values
        self.good = good
        self.ivar = ivar

    def together(self) -> bool:
        """True when it can be measured with others of its grid: every pixel good and ivar
        positive at enough continuum pixels (the rest are measured one by one)."""
        return (
            self.ivar is not None
            and bool(self.good.all())
            and int(np.count_nonzero(self.ivar[self.grid.bands] > 0)) >= 2 * MIN_BAND_PIXELS
        )


def _window(
    wave_vacuum_aa: ArrayLike,
    flux: ArrayLike,
    ivar: ArrayLike | None,
    mask: ArrayLike | None,
    resolving_power: float,
) -> HalphaWindow | LineMeasurement:
    wave = np.asarray(wave_vacuum_aa, dtype=np.float64)
    lo = CONTINUUM_BANDS_AA[0][0]
    hi = CONTINUUM_BANDS_AA[1][1]
    if wave.size < 2 or wave[0] > lo or wave[-1] < hi:
        return LineMeasurement.unmeasurable("no coverage")
    start, stop = wave.searchsorted((lo, hi)).tolist()
    start, stop = max(start - 1, 0), min(stop + 1, wave.size)
    wave = wave[start:stop]
    # Copies, not views: a window must not keep its whole spectrum alive.
    values = np.array(np.asarray(flux)[start:stop], dtype=np.float64)
    good = np.isfinite(values)
    if mask is not None:
        good &= ~np.asarray(np.asarray(mask)[start:stop], dtype=bool)
    weights = None
    if ivar is not None:
        weights = np.array(np.asarray(ivar)[start:stop], dtype=np.float64)
        positive = (weights > 0) & (weights < np.inf)
        if not (positive & good).any():
            return LineMeasurement.unmeasurable("ivar zero")
        if not positive.all():
            weights = np.where(positive, weights, 0.0)
    key = (wave.tobytes(), resolving_power)
    grid = _GRIDS.get(key)
    if grid is None:
        if len(_GRIDS) >= _MAX_GRIDS:
            _GRIDS.clear()
        grid = _GRIDS[key] = _Grid(wave, resolving_power)
    return HalphaWindow(grid, values, good, weights)


BATCH_ROWS = 1024
"""Windows measured together at most (bounds the temporary arrays to a few MB)."""
MIN_TOGETHER = 8
"""Fewest windows of one grid measured together; fewer are measured one by one."""


def _measure_windows(
    windows: Sequence[HalphaWindow], detail: bool
) -> list[tuple[LineMeasurement, HalphaFit | None]]:
    """Each window measured: those of one grid together (`_measure_together`), the rest
    (masked pixels, no ivar) one by one (`_measure_window`)."""
    out: list[tuple[LineMeasurement, HalphaFit | None] | None] = [None] * len(windows)
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        if w.together():
            groups.setdefault(id(w.grid), []).append(i)
        else:
            out[i] = _measure_alone(w, detail)
    for members in groups.values():
        if len(members) < MIN_TOGETHER:  # too few to repay the batch's fixed cost
            for i in members:
                out[i] = _measure_alone(windows[i], detail)
            continue
        for first in range(0, len(members), BATCH_ROWS):
            rows = members[first : first + BATCH_ROWS]
            for i, result in _measure_batch([windows[i] for i in rows], rows, detail):
                out[i] = result
    return out  # type: ignore[return-value]


def _measure_alone(w: HalphaWindow, detail: bool) -> tuple[LineMeasurement, HalphaFit | None]:
    """One window measured by itself, its one-pixel spikes (`spike_pixels`) interpolated over
    as bad pixels, as preprocessing does for the network: a cosmic ray or a corrupt value at
    H-alpha must not become the line."""
    good = w.good.copy()
    good[good] = ~spike_pixels(w.values[good])
    return _measure_window(w.grid, w.values, good, w.ivar, detail)


def _measure_batch(
    batch: Sequence[HalphaWindow], rows: Sequence[int], detail: bool
) -> Iterator[tuple[int, tuple[LineMeasurement, HalphaFit | None]]]:
    """Windows of one grid, every pixel good, measured together; those with a spike (found
    for all at once, `row_spikes`) alone, each as `_measure_alone` would."""
    values = np.stack([w.values for w in batch])
    spikes = row_spikes(values, np.median(values, axis=1), row_der_noise(values))
    spiky = [bool(spike) for spike in np.asarray(spikes.any(axis=1))]
    for k in (k for k, spike in enumerate(spiky) if spike):
        w = batch[k]
        yield rows[k], _measure_window(w.grid, w.values, ~spikes[k], w.ivar, detail)
    clean = [k for k, spike in enumerate(spiky) if not spike]
    if not clean:
        return
    ivar = np.stack([batch[k].ivar for k in clean])  # type: ignore[misc]
    together = _measure_together(batch[0].grid, values[clean], ivar, detail)
    yield from zip((rows[k] for k in clean), together, strict=True)


class _Grid:
    """What depends on a window's wavelengths and R alone, worked out once per grid."""

    __slots__ = (
        "bands",
        "blue",
        "clear_kms",
        "core",
        "dl",
        "inst_sigma_px",
        "kernel",
        "n_blue",
        "n_red",
        "near",
        "noise_div",
        "red",
        "smooth_fwhm_kms",
        "structure_aa",
        "w",
        "w_list",
        "w_near",
        "wave",
        "x",
        "xw",
    )

    def __init__(self, wave: NDArray[np.float64], resolving_power: float) -> None:
        self.wave = wave = wave.copy()  # not a view that keeps a whole spectrum alive
        self.x = x = wave - HALPHA_VACUUM_AA
        bands = _bands(wave, resolving_power)
        self.blue = bands & (wave < HALPHA_VACUUM_AA)
        self.red = bands & (wave > HALPHA_VACUUM_AA)
        self.bands = self.blue | self.red
        self.n_blue = int(np.count_nonzero(self.blue))
        self.n_red = int(np.count_nonzero(self.red))
        self.core = _span(np.abs(x) <= LINE_HALF_WIDTH_AA + MAX_SHIFT_AA)
        self.w = w = wave[self.core]
        self.xw = x[self.core]
        self.w_list = w.tolist()
        step_aa = finite_median(np.diff(w))
        # Smooth by half the instrument's sigma (at least one pixel) to find peaks and troughs.
        inst_sigma_aa = HALPHA_VACUUM_AA / resolving_power / FWHM_PER_SIGMA
        smooth_px = max(1.0, 0.5 * inst_sigma_aa / step_aa)
        self.kernel = gaussian_weights(smooth_px)
        self.noise_div = math.sqrt(2.0 * math.sqrt(math.pi) * smooth_px)
        self.smooth_fwhm_kms = FWHM_PER_SIGMA * smooth_px * step_aa / HALPHA_VACUUM_AA * C_KMS
        self.inst_sigma_px = inst_sigma_aa / step_aa
        self.dl = np.gradient(w) if w.size > 1 else np.zeros(w.size)
        self.near = _span(np.abs(w - HALPHA_VACUUM_AA) <= 10.0)
        self.w_near = w[self.near]
        self.clear_kms = max(C_KMS / resolving_power, 100.0)
        self.structure_aa = STRUCTURE_SCALE_RESOLUTION * HALPHA_VACUUM_AA / resolving_power
        for name in ("wave", "x", "blue", "red", "bands", "w", "xw", "kernel", "dl", "w_near"):
            getattr(self, name).flags.writeable = False


_GRIDS: dict[tuple[bytes, float], _Grid] = {}
_MAX_GRIDS = 64
"""Grids remembered (LAMOST files share one; each Ondřejov file has its own)."""


def _span(flags: NDArray[np.bool_]) -> slice:
    """The slice from the first to the last True of ``flags`` (contiguous on a sorted grid)."""
    idx = np.flatnonzero(flags)
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def finite_median(values: NDArray[np.float64]) -> float:
    """`numpy.median` of finite values (the same bits), without its overhead on small arrays."""
    n = values.size
    if n == 0:
        return float("nan")
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    ordered = np.partition(values, (half - 1, half))
    return float((ordered[half - 1] + ordered[half]) / 2.0)


def _smooth(values: NDArray[np.float64], kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    """``values`` convolved with a symmetric ``kernel``, ends extended with the nearest value.

    As `spectraldl.prep.smoothing.correlate1d` (mode ``nearest``) to rounding, at a
    fraction of its cost on the few dozen pixels of a line.
    """
    n, radius = values.size, kernel.size // 2
    pad = _PADS.get((n, radius))
    if pad is None:
        if len(_PADS) >= _MAX_GRIDS:
            _PADS.clear()
        pad = _PADS[n, radius] = np.clip(np.arange(-radius, n + radius), 0, max(n - 1, 0))
    return np.convolve(values[pad], kernel, mode="valid")


_PADS: dict[tuple[int, int], NDArray[np.intp]] = {}


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
) -> tuple[float, float, float, float, float, float] | None:
    """Weighted straight line ``a + b x`` through (x, y) with two 3-sigma clippings.

    Returns a, b, the covariance's entries (var a, cov ab, var b), scaled
    up by the reduced chi-square when above 1 (the bands' own lines count as
    noise of the continuum), and that reduced chi-square; None when the fit
    is singular.
    """
    weight = 1.0 / sigma**2
    keep: NDArray[np.bool_] | None = None  # None: every pixel
    kept = x.size
    for _ in range(3):
        w = weight if keep is None else weight * keep
        wx = w * x
        s0, s1, s2 = float(w.sum()), float(np.dot(w, x)), float(np.dot(wx, x))
        t0, t1 = float(np.dot(w, y)), float(np.dot(wx, y))
        det = s0 * s2 - s1 * s1
        if not det > 0:
            return None
        a = (s2 * t0 - s1 * t1) / det
        b = (s0 * t1 - s1 * t0) / det
        resid = (y - (a + b * x)) / sigma
        kept_resid = resid if keep is None else resid * keep
        chi2 = float(np.dot(kept_resid, kept_resid)) / max(kept - 2, 1)
        new = np.abs(resid) < 3.0 * math.sqrt(max(chi2, 1.0))
        n_new = int(np.count_nonzero(new))
        same = n_new == x.size if keep is None else bool((new == keep).all())
        if n_new < 2 * MIN_BAND_PIXELS or same:
            break
        keep, kept = new, n_new
    scale = max(chi2, 1.0) / det
    return a, b, s2 * scale, -s1 * scale, s0 * scale, chi2


_NO_CONTINUUM = LineMeasurement.unmeasurable("no continuum"), None


def _measure_window(
    grid: _Grid,
    values: NDArray[np.float64],
    good: NDArray[np.bool_],
    ivar: NDArray[np.float64] | None,
    detail: bool,
) -> tuple[LineMeasurement, HalphaFit | None]:
    """The line in a window around H-alpha: continuum, bad pixels, then `_line`."""
    all_good = bool(good.all())
    bands = _good_bands(grid, good, all_good)
    if bands is None:
        return _NO_CONTINUUM
    in_bands = bands[2]
    y = values[in_bands]
    band_level = finite_median(y)
    has_ivar, inverse = _ivar_sigma(ivar)
    sigma = _pixel_sigma(values, good, bands, band_level, has_ivar, inverse)
    if sigma is None:
        return _NO_CONTINUUM
    xb = grid.x[in_bands]
    fit = _fit_continuum(xb, y, sigma[in_bands])
    if fit is None or not all(map(math.isfinite, fit)):
        return _NO_CONTINUUM
    a, b = fit[0], fit[1]
    core = grid.core
    continuum = a + b * grid.xw
    if not continuum.min() > 0:
        return _NO_CONTINUUM
    line = _core_line(grid, values, good, all_good)
    if line is None:
        return LineMeasurement.unmeasurable("masked core"), None
    note = ""
    if has_ivar is not None and (good[core] & ~has_ivar[core]).any():
        note = "core ivar estimated"
    band_norm = y / (a + b * xb)
    return _line(grid, line, continuum, sigma[core], band_norm, fit, note, detail)


_Bands = tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]


def _good_bands(grid: _Grid, good: NDArray[np.bool_], all_good: bool) -> _Bands | None:
    """The good pixels of the blue band, the red band and both; None when a band is too short."""
    if all_good:
        blue, red, bands = grid.blue, grid.red, grid.bands
        n_blue, n_red = grid.n_blue, grid.n_red
    else:
        blue, red = grid.blue & good, grid.red & good
        n_blue, n_red = int(np.count_nonzero(blue)), int(np.count_nonzero(red))
        bands = blue | red
    if n_blue < MIN_BAND_PIXELS or n_red < MIN_BAND_PIXELS:
        return None
    return blue, red, bands


def _ivar_sigma(
    ivar: NDArray[np.float64] | None,
) -> tuple[NDArray[np.bool_] | None, NDArray[np.float64] | None]:
    """Where ivar is positive (None without ivar) and 1/sqrt(ivar) there (inf elsewhere)."""
    if ivar is None:
        return None, None
    has_ivar = ivar > 0
    if has_ivar.all():
        return has_ivar, 1.0 / np.sqrt(ivar)
    inverse = np.divide(1.0, np.sqrt(ivar), out=np.full(ivar.size, np.inf), where=has_ivar)
    return has_ivar, inverse


def _pixel_sigma(
    values: NDArray[np.float64],
    good: NDArray[np.bool_],
    bands: _Bands,
    band_level: float,
    has_ivar: NDArray[np.bool_] | None,
    inverse: NDArray[np.float64] | None,
) -> NDArray[np.float64] | None:
    """Each pixel's noise: from ivar where it is positive, else the bands' scatter scaled
    by sqrt(flux); ``inverse`` itself when ivar is positive everywhere, None when the
    bands' level or noise is not positive."""
    blue, red, in_bands = bands
    all_ivar = has_ivar is not None and bool(has_ivar.all())
    band_sigma = None
    if has_ivar is not None and inverse is not None:
        with_ivar = in_bands if all_ivar else has_ivar & in_bands
        if all_ivar or np.count_nonzero(with_ivar) >= 2 * MIN_BAND_PIXELS:
            band_sigma = finite_median(inverse[with_ivar])
    if band_sigma is None:  # no (or too little) ivar
        band_sigma = 0.5 * (der_noise(values[blue]) + der_noise(values[red]))
    band_sigma = max(band_sigma, 1e-9 * band_level)  # noise-free flux (a model) still measures
    if not (band_sigma > 0 and band_level > 0):
        return None
    if all_ivar and inverse is not None:
        return inverse
    level = (values if good.all() else np.where(good, values, band_level)) / band_level
    sigma = band_sigma * np.sqrt(np.maximum(level, 0.05))
    if has_ivar is not None and inverse is not None:
        sigma = np.where(has_ivar, inverse, sigma)
    return sigma


def _core_line(
    grid: _Grid, values: NDArray[np.float64], good: NDArray[np.bool_], all_good: bool
) -> NDArray[np.float64] | None:
    """The line window's flux, a few bad pixels interpolated over; None when too many are bad."""
    line = values[grid.core]
    if all_good:
        return line
    bad = ~good[grid.core]
    n_bad = int(np.count_nonzero(bad))
    if n_bad > MAX_BAD_FRACTION * bad.size or _longest_run(bad) > MAX_BAD_RUN_PX:
        return None
    if n_bad:
        line = line.copy()
        line[bad] = np.interp(grid.w[bad], grid.wave[good], values[good])
    return line


def _row_medians(values: NDArray[np.float64], keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Each row's median of its kept values (`finite_median`'s arithmetic), at least one kept."""
    count = np.count_nonzero(keep, axis=1)
    ordered = np.sort(np.where(keep, values, np.inf), axis=1)
    rows = np.arange(values.shape[0])
    return (ordered[rows, (count - 1) // 2] + ordered[rows, count // 2]) / 2.0


def _fit_continua(
    x: NDArray[np.float64], y: NDArray[np.float64], sigma: NDArray[np.float64]
) -> tuple[tuple[NDArray[np.float64], ...], NDArray[np.bool_]]:
    """`_fit_continuum` on every row of ``y`` (one ``x``): (a, b, var a, cov ab, var b,
    reduced chi-square), and True where the fit failed (singular or not finite)."""
    n_rows = y.shape[0]
    weight = 1.0 / sigma**2
    keep = np.ones(y.shape, bool)
    kept = np.full(n_rows, x.size)
    done = np.zeros(n_rows, bool)
    failed = np.zeros(n_rows, bool)
    found = np.zeros((7, n_rows))  # a, b, s0, s1, s2, det, chi2 of each row's last fit
    for _ in range(3):
        w = weight * keep
        wx = w * x
        s0, s1, s2 = w.sum(axis=1), wx.sum(axis=1), (wx * x).sum(axis=1)
        t0, t1 = (w * y).sum(axis=1), (wx * y).sum(axis=1)
        det = s0 * s2 - s1 * s1
        singular = ~(det > 0)
        a = (s2 * t0 - s1 * t1) / det
        b = (s0 * t1 - s1 * t0) / det
        resid = (y - (a[:, None] + b[:, None] * x)) / sigma
        kept_resid = resid * keep
        chi2 = (kept_resid * kept_resid).sum(axis=1) / np.maximum(kept - 2, 1)
        new = np.abs(resid) < 3.0 * np.sqrt(np.maximum(chi2, 1.0))[:, None]
        n_new = np.count_nonzero(new, axis=1)
        stop = (n_new < 2 * MIN_BAND_PIXELS) | (new == keep).all(axis=1)
        active = ~done
        failed |= active & singular
        found[:, active] = np.stack((a, b, s0, s1, s2, det, chi2))[:, active]
        go_on = active & ~stop & ~singular
        done |= ~go_on
        keep[go_on] = new[go_on]
        kept[go_on] = n_new[go_on]
        if done.all():
            break
    a, b, s0, s1, s2, det, chi2 = found
    scale = np.maximum(chi2, 1.0) / det
    fit = (a, b, s2 * scale, -s1 * scale, s0 * scale, chi2)
    failed |= ~np.isfinite(np.stack(fit)).all(axis=0)
    return fit, failed


def _measure_together(
    grid: _Grid, values: NDArray[np.float64], ivar: NDArray[np.float64], detail: bool
) -> list[tuple[LineMeasurement, HalphaFit | None]]:
    """`_measure_window` and `_line` on every row at once (every pixel good, ivar in the bands).

    The same arithmetic as one by one, in operations over all rows; only the
    profile's shape is found row by row (`_profile_shape`).
    """
    core = grid.core
    has_ivar = ivar > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sigma, fit, band_norm, failed = _continua_together(grid, values, ivar, has_ivar)
        a, b = fit[0], fit[1]
        continuum = a[:, None] + b[:, None] * grid.xw
        failed |= ~(continuum.min(axis=1) > 0)
        line = values[:, core]
        norm = line / continuum
        noise = sigma[:, core] / continuum
        smooth = correlate1d(norm, grid.kernel, axis=1, mode="nearest")
        photon_s = np.median(noise, axis=1) / grid.noise_div
        wiggle = correlate1d(band_norm, grid.kernel, axis=1, mode="nearest") - 1.0
        wiggle_s = np.sqrt((wiggle * wiggle).sum(axis=1) / wiggle.shape[1])
        noise_s = np.maximum(photon_s, wiggle_s)
        centre = _centres_together(grid, smooth, noise_s)
        i0, i1, inner = _line_pixels_together(grid, centre)
        dl = grid.dl * inner
        ew = ((1.0 - norm) * dl).sum(axis=1)
        structure = np.maximum(wiggle_s * wiggle_s - photon_s * photon_s, 0.0)
        ew_err = _ew_errors_together(grid, line, continuum, noise, dl, fit, structure)
        top = np.argmax(np.where(inner, smooth, -np.inf), axis=1)
        peak = _peak_values(norm, smooth, top, grid.inst_sigma_px)
    # asarray: numpy types a reduction over an axis as "scalar or array"; here it is an array
    note = np.asarray((~has_ivar[:, core]).any(axis=1) & ~has_ivar.all(axis=1))
    failed |= i1 <= i0
    out: list[tuple[LineMeasurement, HalphaFit | None]] = []
    rows = zip(
        failed.tolist(),
        smooth.tolist(),
        i0.tolist(),
        i1.tolist(),
        noise_s.tolist(),
        ew.tolist(),
        ew_err.tolist(),
        peak.tolist(),
        note.tolist(),
        strict=True,
    )
    for r, (bad, s, start, stop, noise_r, ew_r, err_r, peak_r, noted) in enumerate(rows):
        if bad:
            out.append(
                _measure_window(grid, values[r], np.ones(values.shape[1], bool), ivar[r], detail)
            )
            continue
        s = s[start:stop]
        shape, peaks, troughs = _profile_shape(grid, s, start, noise_r)
        measurement = LineMeasurement(
            halpha_ew_aa=ew_r,
            halpha_ew_err_aa=err_r,
            halpha_peak_ratio=peak_r,
            **shape,
            halpha_flag="core ivar estimated" if noted else "",
        )
        found = None
        if detail:
            continuum_ab = (float(a[r]), float(b[r]))
            found = _halpha_fit(grid, s, start, continuum_ab, float(centre[r]), peaks, troughs)
        out.append((measurement, found))
    return out


def _continua_together(
    grid: _Grid, values: NDArray[np.float64], ivar: NDArray[np.float64], has_ivar: NDArray[np.bool_]
) -> tuple[
    NDArray[np.float64], tuple[NDArray[np.float64], ...], NDArray[np.float64], NDArray[np.bool_]
]:
    """Every row's pixel noise and continuum fit (a, b, var a, cov ab, var b, reduced
    chi-square), its bands over that continuum, and True where it failed."""
    bands = grid.bands
    y = values[:, bands]
    band_level = np.median(y, axis=1)
    inverse = 1.0 / np.sqrt(ivar)  # inf where ivar = 0, replaced below
    band_sigma = np.maximum(_row_medians(inverse[:, bands], has_ivar[:, bands]), 1e-9 * band_level)
    failed = ~((band_sigma > 0) & (band_level > 0))
    scale = np.sqrt(np.maximum(values / band_level[:, None], 0.05))
    sigma = np.where(has_ivar, inverse, band_sigma[:, None] * scale)
    xb = grid.x[bands]
    fit, no_fit = _fit_continua(xb, y, sigma[:, bands])
    a, b = fit[0], fit[1]
    band_norm = y / (a[:, None] + b[:, None] * xb)
    return sigma, fit, band_norm, failed | no_fit


def _centres_together(
    grid: _Grid, smooth: NDArray[np.float64], noise_s: NDArray[np.float64]
) -> NDArray[np.float64]:
    """`_centre` of every row."""
    weight = np.maximum(np.abs(smooth[:, grid.near] - 1.0) - 2.0 * noise_s[:, None], 0.0)
    total = weight.sum(axis=1)
    centroid = (weight * grid.w_near).sum(axis=1) / total
    return np.where(
        total > 0,
        np.clip(centroid, HALPHA_VACUUM_AA - MAX_SHIFT_AA, HALPHA_VACUUM_AA + MAX_SHIFT_AA),
        HALPHA_VACUUM_AA,
    )


def _line_pixels_together(
    grid: _Grid, centre: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    """Every row's first and past-last pixel within its centre ± 15 Å, and those pixels."""
    offset = grid.w - centre[:, None]
    i0 = np.count_nonzero(offset < -LINE_HALF_WIDTH_AA, axis=1)
    i1 = np.count_nonzero(offset <= LINE_HALF_WIDTH_AA, axis=1)
    pixel_index = np.arange(grid.w.size)
    inner = (pixel_index >= i0[:, None]) & (pixel_index < i1[:, None])
    return i0, i1, inner


def _ew_errors_together(
    grid: _Grid,
    line: NDArray[np.float64],
    continuum: NDArray[np.float64],
    noise: NDArray[np.float64],
    dl: NDArray[np.float64],
    fit: tuple[NDArray[np.float64], ...],
    structure: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Every row's EW error (NaN where its variance is not >= 0): pixel noise, the
    continuum's covariance and the bands' structure."""
    _, _, var_a, cov_ab, var_b, chi2 = fit
    slope = line * dl / continuum**2
    d_a = slope.sum(axis=1)
    d_b = (slope * grid.xw).sum(axis=1)
    pixel = dl * noise
    var = (pixel * pixel).sum(axis=1) * np.maximum(chi2, 1.0)
    var += d_a * d_a * var_a + 2.0 * d_a * d_b * cov_ab + d_b * d_b * var_b
    var += structure * dl.sum(axis=1) * grid.structure_aa
    ew_err = np.sqrt(np.maximum(var, 0.0))
    ew_err[~(var >= 0)] = np.nan
    return ew_err


def _halpha_fit(
    grid: _Grid,
    smooth: list[float],
    start: int,
    continuum: tuple[float, float],
    centre: float,
    peaks: tuple[int, ...],
    troughs: list[int],
) -> HalphaFit:
    """What was fitted to the line whose smoothed profile from pixel ``start`` is ``smooth``."""
    w = grid.w_list[start : start + len(smooth)]
    return HalphaFit(
        continuum=continuum,
        centre_aa=centre,
        peaks_aa=tuple(w[p] for p in peaks),
        peak_heights=tuple(smooth[p] for p in peaks),
        troughs_aa=tuple(w[t] for t in troughs),
    )


def _peak_values(
    norm: NDArray[np.float64],
    smooth: NDArray[np.float64],
    top: NDArray[np.intp],
    inst_sigma_px: float,
) -> NDArray[np.float64]:
    """`_peak_value` of every row: the parabola's top where its pixels are all inside."""
    half = max(1, round(inst_sigma_px))
    n = norm.shape[1]
    out = np.empty(norm.shape[0])
    inside = (top >= half) & (top + half + 1 <= n)
    if inside.any():
        rows = np.flatnonzero(inside)
        pixels = top[rows, None] + np.arange(-half, half + 1)
        ys = norm[rows[:, None], pixels]
        c2, c1, c0 = _parabola(-half, half + 1) @ ys.T
        vertex_ok = (c2 < 0) & (np.abs(c1 / (2 * c2)) <= half)
        out[rows] = np.where(vertex_ok, c0 - c1 * c1 / (4 * c2), ys.max(axis=1))
    for r in np.flatnonzero(~inside).tolist():
        out[r] = _peak_value(norm[r], smooth[r], int(top[r]), inst_sigma_px)
    return out


def _longest_run(flags: NDArray[np.bool_]) -> int:
    if not flags.any():
        return 0
    padded = np.r_[0, flags.astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _line(
    grid: _Grid,
    line: NDArray[np.float64],
    continuum: NDArray[np.float64],
    sigma: NDArray[np.float64],
    band_norm: NDArray[np.float64],
    fit: tuple[float, float, float, float, float, float],
    note: str,
    detail: bool,
) -> tuple[LineMeasurement, HalphaFit | None]:
    """EW, its error, the profile's type and its peaks, given the continuum on the line window."""
    norm = line / continuum
    noise = sigma / continuum
    smooth = _smooth(norm, grid.kernel)
    photon_s = finite_median(noise) / grid.noise_div
    # The continuum bands' own wiggles (weak lines, a curved continuum) count as noise too.
    wiggle = _smooth(band_norm, grid.kernel) - 1.0
    wiggle_s = math.sqrt(float(np.dot(wiggle, wiggle)) / wiggle.size)
    noise_s = max(photon_s, wiggle_s)
    centre = _centre(grid, smooth, noise_s)
    # Equivalent width over centre ± 15 Å, and its error: pixel noise, the continuum's
    # covariance and the bands' structure beyond their noise (`STRUCTURE_SCALE_RESOLUTION`).
    offset = grid.w - centre
    i0 = int(offset.searchsorted(-LINE_HALF_WIDTH_AA))
    i1 = int(offset.searchsorted(LINE_HALF_WIDTH_AA, side="right"))
    if i1 <= i0:
        return LineMeasurement.unmeasurable("no coverage"), None
    inner = slice(i0, i1)
    dl = grid.dl[inner]
    ew = float(np.dot(1.0 - norm[inner], dl))
    slope = line[inner] * dl / continuum[inner] ** 2  # d EW / d a; times x: d EW / d b
    d_a = float(slope.sum())
    d_b = float(np.dot(slope, grid.xw[inner]))
    pixel = dl * noise[inner]
    _, _, var_a, cov_ab, var_b, chi2 = fit
    var = float(np.dot(pixel, pixel)) * max(chi2, 1.0)
    var += d_a * d_a * var_a + 2.0 * d_a * d_b * cov_ab + d_b * d_b * var_b
    structure = max(wiggle_s * wiggle_s - photon_s * photon_s, 0.0)
    var += structure * float(dl.sum()) * grid.structure_aa
    top = i0 + int(np.argmax(smooth[inner]))
    shape, peaks, troughs = _profile_shape(grid, smooth[inner].tolist(), i0, noise_s)
    measurement = LineMeasurement(
        halpha_ew_aa=ew,
        halpha_ew_err_aa=math.sqrt(var) if var >= 0 else float("nan"),
        halpha_peak_ratio=_peak_value(norm, smooth, top, grid.inst_sigma_px),
        **shape,
        halpha_flag=note,
    )
    if not detail:
        return measurement, None
    s = smooth[inner].tolist()
    return measurement, _halpha_fit(grid, s, i0, (fit[0], fit[1]), centre, peaks, troughs)


def _centre(grid: _Grid, smooth: NDArray[np.float64], noise: float) -> float:
    """Line centre (Å): centroid of the significant departures from the continuum near rest."""
    weight = np.maximum(np.abs(smooth[grid.near] - 1.0) - 2.0 * noise, 0.0)
    total = float(weight.sum())
    if not total > 0:
        return HALPHA_VACUUM_AA
    centre = float(np.dot(grid.w_near, weight)) / total
    return min(max(centre, HALPHA_VACUUM_AA - MAX_SHIFT_AA), HALPHA_VACUUM_AA + MAX_SHIFT_AA)


def _peak_value(
    norm: NDArray[np.float64], smooth: NDArray[np.float64], top: int, inst_sigma_px: float
) -> float:
    """Highest normalised flux in the line: a parabola through the unsmoothed pixels there.

    The smoothed profile finds the peak at ``top`` (noise does not); the
    parabola over ± one instrumental sigma of unsmoothed pixels reads its
    height without the smoothing's loss.
    """
    half = max(1, round(inst_sigma_px))
    lo, hi = max(top - half, 0), min(top + half + 1, norm.size)
    if hi - lo < 3:
        return float(smooth[top])
    c2, c1, c0 = (_parabola(lo - top, hi - top) @ norm[lo:hi]).tolist()
    if c2 < 0 and abs(c1 / (2 * c2)) <= half:
        return c0 - c1 * c1 / (4 * c2)
    return float(norm[lo:hi].max())


_PARABOLAS: dict[tuple[int, int], NDArray[np.float64]] = {}


def _parabola(lo: int, hi: int) -> NDArray[np.float64]:
    """Least-squares operator from y at t = lo..hi-1 to the parabola's (c2, c1, c0)."""
    operator = _PARABOLAS.get((lo, hi))
    if operator is None:
        if len(_PARABOLAS) >= _MAX_GRIDS:
            _PARABOLAS.clear()
        operator = _PARABOLAS[lo, hi] = np.linalg.pinv(np.vander(np.arange(lo, hi, dtype=float), 3))
    return operator


def _local_maxima(values: list[float]) -> list[int]:
    """Local maxima as `scipy.signal.find_peaks` finds them: a flat top counts at its middle."""
    peaks = []
    i, last = 1, len(values) - 1
    while i < last:
        if values[i - 1] < values[i]:
            ahead = i + 1
            while ahead < last and values[ahead] == values[i]:
                ahead += 1
            if values[ahead] < values[i]:
                peaks.append((i + ahead - 1) // 2)
                i = ahead
        i += 1
    return peaks


def _prominent(values: list[float], threshold: float) -> list[int]:
    """Local maxima whose prominence (as `scipy.signal.peak_prominences`) is >= ``threshold``."""
    out = []
    n = len(values)
    for p in _local_maxima(values):
        height = values[p]
        left = right = height
        i = p - 1
        while i >= 0 and values[i] <= height:
            if values[i] < left:
                left = values[i]
            i -= 1
        i = p + 1
        while i < n and values[i] <= height:
            if values[i] < right:
                right = values[i]
            i += 1
        if height - max(left, right) >= threshold:
            out.append(p)
    return out


def _crossing(wave: list[float], smooth: list[float], start: int, level: float, step: int) -> float:
    """Wavelength where ``smooth`` drops below ``level`` from ``start`` on by ``step``, or NaN."""
    i = start
    while 0 <= i + step < len(smooth):
        j = i + step
        if smooth[j] < level:
            f = (smooth[i] - level) / (smooth[i] - smooth[j])
            return wave[i] + f * (wave[j] - wave[i])
        i = j
    return float("nan")


def _kms(wave_aa: float) -> float:
    return C_KMS * (wave_aa / HALPHA_VACUUM_AA - 1.0)


def _vertex(w: list[float], y: list[float], i: int) -> float:
    """Velocity (km/s) of a local maximum refined by a parabola through its three pixels."""
    if i <= 0 or i >= len(y) - 1:
        return _kms(w[i])
    denom = y[i - 1] - 2.0 * y[i] + y[i + 1]
    shift = 0.5 * (y[i - 1] - y[i + 1]) / denom if denom < 0 else 0.0
    half_step = (_kms(w[i + 1]) - _kms(w[i - 1])) / 2.0
    return _kms(w[i]) + min(max(shift, -0.5), 0.5) * half_step


def _profile_shape(
    grid: _Grid, s: list[float], offset: int, noise: float
) -> tuple[dict[str, Any], tuple[int, ...], list[int]]:
    """Profile type, emission FWHM, peak separation and V/R from the smoothed line ``s``.

    ``s`` is the smoothed profile over the line centre ± 15 Å, from pixel
    ``offset`` of the line window on. Also returns the measured peaks and the
    significant troughs (indices into ``s``).
    """
    w = grid.w_list[offset : offset + len(s)]
    thr = DETECTION_SIGMA * noise
    # [N II] 6548/6583 in emission (an H II region in the fibre) are no H-alpha peaks.
    nii_kms = [_kms(line) for line in NII_VACUUM_AA]
    clear = grid.clear_kms
    peaks = [p for p in _prominent(s, thr) if all(abs(_kms(w[p]) - n) > clear for n in nii_kms)]
    troughs = [t for t in _prominent([-z for z in s], thr) if s[t] < 1.0 - thr]
    level = 1.0 + max(thr, MIN_EMISSION_HEIGHT)
    above = [p for p in peaks if s[p] > level]
    out: dict[str, Any] = {
        "halpha_fwhm_kms": float("nan"),
        "halpha_peak_sep_kms": float("nan"),
        "halpha_vr": float("nan"),
    }
    smooth_fwhm_kms = grid.smooth_fwhm_kms
    if not above:
        # Emission filling an absorption line without reaching the continuum.
        for p in sorted(peaks, key=lambda i: -s[i]):
            left = [t for t in troughs if t < p]
            right = [t for t in troughs if t > p]
            if left and right:
                base = 0.5 * (s[left[-1]] + s[right[0]])
                out["halpha_fwhm_kms"] = _fwhm_kms(w, s, p, p, base, smooth_fwhm_kms)
                out["profile_type"] = "emission-in-absorption"
                return out, (p,), troughs
        out["profile_type"] = "absorption"
        return out, (), troughs
    order = sorted(above, key=lambda i: -s[i])
    double = len(order) >= 2
    first, last = (min(order[:2]), max(order[:2])) if double else (order[0], order[0])
    out["halpha_fwhm_kms"] = _fwhm_kms(w, s, first, last, 1.0, smooth_fwhm_kms)
    blue = any(t < first for t in troughs)
    red = any(t > last for t in troughs)
    if double:
        out["halpha_peak_sep_kms"] = _vertex(w, s, last) - _vertex(w, s, first)
        out["halpha_vr"] = (s[first] - 1.0) / (s[last] - 1.0)
        out["profile_type"] = "double-peak-in-absorption" if blue and red else "double-peak"
        return out, (first, last), troughs
    if blue and red:
        out["profile_type"] = "emission-in-absorption"
    elif blue:
        out["profile_type"] = "p-cygni"
    elif red:
        out["profile_type"] = "inverse-p-cygni"
    else:
        out["profile_type"] = "emission"
    return out, (first,), troughs


def _fwhm_kms(
    w: list[float],
    s: list[float],
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
    return math.sqrt(max(width**2 - smooth_fwhm_kms**2, 0.0))
