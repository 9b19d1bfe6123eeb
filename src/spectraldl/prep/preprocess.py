"""Domain adaptation: make any spectrum look like a LAMOST one around H-alpha.

The thesis' steps, each a small pure function with keyword-only parameters
and units in the names:

1. `air_to_vacuum` (Ondřejov wavelengths are in air, LAMOST's in vacuum);
2. `blur`, a Gaussian kernel of ``sigma_px`` native pixels (7 for Ondřejov
   CCD700: about 1.8 Å, bringing R about 13 000 down to LAMOST's about 1 800);
3. `regrid` onto 140 points linearly spaced on 6519-6732 Å (vacuum);
4. `standardise` to zero mean and unit variance per spectrum.

`preprocess` chains them for a `Spectrum` according to a `PreprocessConfig`,
which is recorded in every dataset and model card, and reports `Quality`
flags. Problems that leave nothing to classify raise `SpectrumError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectraldl.core.errors import SpectrumError
from spectraldl.core.quality import Quality
from spectraldl.core.spectrum import Spectrum
from spectraldl.prep.lines import (
    FWHM_PER_SIGMA,
    HALPHA_VACUUM_AA,
    air_to_vacuum,
    vacuum_wavelengths,
)
from spectraldl.prep.lines import HALPHA_AIR_AA as HALPHA_AIR_AA
from spectraldl.prep.measure import der_snr, spike_pixels
from spectraldl.prep.smoothing import gaussian_filter1d


def blur(flux: ArrayLike, *, sigma_px: float) -> NDArray[np.float64]:
    """Convolve with a Gaussian of standard deviation ``sigma_px`` pixels.

    Edges are extended with the nearest value, so the window's border pixels
    are not pulled towards zero. ``sigma_px = 0`` returns a copy.

    Parameters
    ----------
    flux
        Flux on evenly spaced pixels, any units.
    sigma_px
        Standard deviation of the kernel (pixels, >= 0); truncated at 4 sigma.

    Returns
    -------
    numpy.ndarray
        The blurred flux (float64, same length).

    Raises
    ------
    ValueError
        When ``sigma_px`` is negative.
    """
    values = np.asarray(flux, dtype=np.float64)
    if sigma_px < 0:
        raise ValueError(f"sigma_px must be >= 0, got {sigma_px}")
    if sigma_px == 0:
        return values.copy()
    return gaussian_filter1d(values, sigma=sigma_px, mode="nearest", truncate=4.0)


def sigma_px_for_resolution(
    wave_aa: ArrayLike, *, from_resolving_power: float, to_resolving_power: float
) -> float:
    """Gaussian sigma (native pixels) that degrades R ``from`` to R ``to`` at the window centre.

    The kernel adds in quadrature: FWHM_kernel² = (λ/R_to)² - (λ/R_from)²,
    divided by the pixel size at H-alpha. Returns 0 when no blur is needed.

    Parameters
    ----------
    wave_aa
        Vacuum wavelengths (Å) of the spectrum's pixels, covering H-alpha ± 100 Å.
    from_resolving_power
        R = λ/Δλ of the spectrum.
    to_resolving_power
        R to degrade it to.

    Returns
    -------
    float
        The kernel's sigma in native pixels; 0 when ``to`` is not below ``from``.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    if to_resolving_power >= from_resolving_power:
        return 0.0
    centre = HALPHA_VACUUM_AA
    fwhm_aa = math.sqrt((centre / to_resolving_power) ** 2 - (centre / from_resolving_power) ** 2)
    pixel_aa = float(np.median(np.diff(wave[np.abs(wave - centre) < 100.0])))
    return fwhm_aa / FWHM_PER_SIGMA / pixel_aa


def make_grid(*, start_aa: float = 6519.0, stop_aa: float = 6732.0, n: int = 140) -> np.ndarray:
    """The thesis' grid: ``n`` points linearly spaced on ``[start_aa, stop_aa]`` (vacuum Å).

    Parameters
    ----------
    start_aa, stop_aa
        First and last point (vacuum Å).
    n
        Number of points.

    Returns
    -------
    numpy.ndarray
        The ``n`` wavelengths (a copy: the caller may write to it).
    """
    return _cached_grid(float(start_aa), float(stop_aa), int(n)).copy()


@lru_cache(maxsize=8)
def _cached_grid(start_aa: float, stop_aa: float, n: int) -> np.ndarray:
    grid = np.linspace(start_aa, stop_aa, n)
    grid.setflags(write=False)
    return grid


def regrid(wave_aa: ArrayLike, flux: ArrayLike, *, grid_aa: ArrayLike) -> NDArray[np.float64]:
    """Linear interpolation of ``flux`` onto ``grid_aa`` (edges extended by the end values).

    Parameters
    ----------
    wave_aa
        Increasing wavelengths (Å) of ``flux``.
    flux
        Flux, any units.
    grid_aa
        Wavelengths to interpolate to, in the same medium as ``wave_aa``.

    Returns
    -------
    numpy.ndarray
        Flux on ``grid_aa`` (float64).
    """
    return np.interp(
        np.asarray(grid_aa, dtype=np.float64),
        np.asarray(wave_aa, dtype=np.float64),
        np.asarray(flux, dtype=np.float64),
    )


def standardise(flux: ArrayLike) -> NDArray[np.float64]:
    """Zero mean, unit variance (population std, as ``sklearn.preprocessing.scale``).

    Parameters
    ----------
    flux
        Flux, any units.

    Returns
    -------
    numpy.ndarray
        ``(flux - mean) / std`` (float64).

    Raises
    ------
    ValueError
        For constant or non-finite input.
    """
    values = np.asarray(flux, dtype=np.float64)
    std = values.std()
    if not np.isfinite(std) or std == 0:
        raise ValueError("the flux is constant or not finite over the window")
    return (values - values.mean()) / std


@dataclass(frozen=True)
class PreprocessConfig:
    """Every parameter of the preprocessing, recorded with each dataset and model.

    Attributes
    ----------
    grid_start_aa, grid_stop_aa, grid_n
        The common grid (vacuum Å): 140 points on 6519-6732 Å in the thesis.
    blur_sigma_px
        Gaussian sigma in native pixels per archive; the thesis blurred
        Ondřejov spectra by 7 pixels and nothing else.
    target_resolving_power
        Other archives with a resolving power above this (LAMOST MRS) are
        blurred down to it by `sigma_px_for_resolution`.
    min_snr
        Spectra whose S/N (the file's, else measured) is below this get `Quality.LOW_SNR`.
    max_snr_ratio
        A file's S/N more than this times the S/N measured from the flux
        (`measure.der_snr` over the window) gets `Quality.SNR_MISMATCH`.
    max_bad_fraction
        Largest fraction of non-finite window pixels that is interpolated
        over (more is an error), and of pixels with ivar <= 0 or NaN
        (more gets `Quality.BAD_IVAR`).
    halpha_margin_aa
        H-alpha ± this margin must be covered, else the file is refused.
    """

    grid_start_aa: float = 6519.0
    grid_stop_aa: float = 6732.0
    grid_n: int = 140
    blur_sigma_px: dict[str, float] = field(default_factory=lambda: {"ondrejov": 7.0})
    target_resolving_power: float = 1800.0
    min_snr: float = 10.0
    max_snr_ratio: float = 5.0
    max_bad_fraction: float = 0.5
    halpha_margin_aa: float = 10.0

    @property
    def grid_aa(self) -> np.ndarray:
        """The grid as a read-only array (vacuum Å)."""
        return _cached_grid(float(self.grid_start_aa), float(self.grid_stop_aa), int(self.grid_n))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in datasets and model cards."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessConfig:
        """Inverse of `to_dict`; unknown keys (a newer format) and wrong types are a `ValueError`.

        Missing keys take their defaults (older files lack the newer thresholds).

        Parameters
        ----------
        values
            The stored form (`to_dict`'s keys, any subset).

        Returns
        -------
        PreprocessConfig
            The configuration.

        Raises
        ------
        ValueError
            For something not a mapping, an unknown key, a value of the wrong
            type or range, or an empty grid.
        """
        if not isinstance(values, dict):
            raise ValueError(f"preprocessing must be a mapping, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {', '.join(map(repr, unknown))}")
        for name, value in values.items():
            if name == "blur_sigma_px":
                ok = isinstance(value, dict) and all(
                    isinstance(k, str) and _is_number(v) and v >= 0 for k, v in value.items()
                )
            elif name == "grid_n":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 2
            else:
                ok = _is_number(value)
            if not ok:
                raise ValueError(f"preprocessing {name!r} has an invalid value {value!r}")
        if "grid_start_aa" in values or "grid_stop_aa" in values:
            start = values.get("grid_start_aa", cls.grid_start_aa)
            stop = values.get("grid_stop_aa", cls.grid_stop_aa)
            if not start < stop:
                raise ValueError(f"preprocessing grid {start:.6g}-{stop:.6g} Å is empty")
        return cls(**values)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not a string)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Preprocessed:
    """A spectrum on the common grid: the network's input, its quality flags and S/N.

    ``snr`` is the file's S/N, or the one measured from the flux over the
    window when the file states none (`Quality.SNR_FROM_DATA`).
    """

    x: NDArray[np.float32]
    quality: Quality
    snr: float = float("nan")


def fill_nonfinite(wave_aa: ArrayLike, flux: ArrayLike) -> NDArray[np.float64]:
    """``flux`` with NaN/inf pixels linearly interpolated from their finite neighbours.

    Done before blurring, which would otherwise spread a NaN over its
    neighbours.

    Parameters
    ----------
    wave_aa
        Increasing wavelengths (Å) of ``flux``.
    flux
        Flux, any units, possibly with NaN or inf pixels.

    Returns
    -------
    numpy.ndarray
        The filled flux; ``flux`` itself when all pixels (or fewer than two)
        are finite.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    values = np.asarray(flux)
    finite = np.isfinite(values)
    if finite.all() or finite.sum() < 2:
        return values
    return np.interp(wave, wave[finite], values[finite])


def blur_sigma_for(
    config: PreprocessConfig,
    *,
    archive: str,
    resolving_power: float,
    wave_aa: ArrayLike,
    medium: str,
) -> float:
    """The Gaussian sigma (native pixels) `preprocess` blurs a spectrum with; 0 for none.

    ``config.blur_sigma_px`` fixes it per archive; a spectrum of another archive
    whose resolving power is above 1.2 times ``config.target_resolving_power``
    (LAMOST MRS) is blurred down to it (`sigma_px_for_resolution`).

    Parameters
    ----------
    config
        The preprocessing.
    archive
        The spectrum's archive (``meta.archive``).
    resolving_power
        Its resolving power (``meta.resolving_power``).
    wave_aa
        Its wavelengths (Å), in ``medium``.
    medium
        ``air`` or ``vacuum``.

    Returns
    -------
    float
        Sigma in native pixels; 0 for no blur.
    """
    sigma = config.blur_sigma_px.get(archive)
    if sigma is not None:
        return float(sigma)
    if resolving_power > 1.2 * config.target_resolving_power:
        return sigma_px_for_resolution(
            air_to_vacuum(wave_aa) if medium == "air" else wave_aa,
            from_resolving_power=resolving_power,
            to_resolving_power=config.target_resolving_power,
        )
    return 0.0


def _window_flux(
    spectrum: Spectrum, config: PreprocessConfig, spikes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vacuum wavelengths and (blurred) flux; spikes interpolated, non-finite pixels dropped."""
    wave = spectrum.wave_aa
    finite = np.isfinite(spectrum.flux)
    flux = fill_nonfinite(wave, np.where(spikes, np.nan, spectrum.flux))
    sigma = blur_sigma_for(
        config,
        archive=spectrum.meta.archive,
        resolving_power=spectrum.meta.resolving_power,
        wave_aa=wave,
        medium=spectrum.medium,
    )
    if sigma:
        flux = blur(flux, sigma_px=sigma)
    if spectrum.medium == "air":
        wave = air_to_vacuum(wave)
    return wave[finite], flux[finite]


def preprocess(spectrum: Spectrum, config: PreprocessConfig | None = None) -> Preprocessed:
    """Turn a `Spectrum` into the network's 140-point input and its quality flags.

    Parameters
    ----------
    spectrum
        Any archive's spectrum covering H-alpha ± ``config.halpha_margin_aa``.
    config
        The preprocessing; `PreprocessConfig()` (the thesis') when None.

    Returns
    -------
    Preprocessed
        The standardised float32 vector on ``config.grid_aa``, its `Quality`
        flags and the S/N used for them.

    Raises
    ------
    SpectrumError
        Naming the source file, when H-alpha is not covered, too much of the
        window is NaN/inf, or the flux is flat.
    """
    config = config or PreprocessConfig()
    source = spectrum.meta.source or spectrum.id
    grid = config.grid_aa
    wave_vac = vacuum_wavelengths(spectrum)
    in_window = (wave_vac >= grid[0]) & (wave_vac <= grid[-1])
    lo, hi = halpha_span(config)
    if wave_vac[0] > lo or wave_vac[-1] < hi or not in_window.any():
        raise SpectrumError(
            source,
            f"no H-alpha coverage: the spectrum spans {wave_vac[0]:.6g}-{wave_vac[-1]:.6g} Å "
            f"(vacuum), H-alpha needs {lo:.6g}-{hi:.6g} Å",
        )
    quality = Quality(0)
    finite = np.isfinite(spectrum.flux)
    bad_in_window = int((~finite & in_window).sum())
    if bad_in_window:
        fraction = bad_in_window / int(in_window.sum())
        if fraction > config.max_bad_fraction:
            raise SpectrumError(
                source,
                f"the flux is NaN or infinite (or beyond float32's range) in {bad_in_window} "
                f"of {int(in_window.sum())} pixels around H-alpha",
            )
        quality |= Quality.NONFINITE
    if spectrum.mask is not None and (spectrum.mask & in_window).any():
        quality |= Quality.MASKED
    if partly_covered(wave_vac, grid):
        quality |= Quality.PARTIAL_COVERAGE
    quality |= ivar_flags(spectrum, in_window, config)
    window = spectrum.flux[in_window & finite]
    if window.size and window.min() == window.max():
        raise SpectrumError(source, f"the flux is constant ({window[0]:g}) over the window")
    if window.size and np.median(window) <= 0:
        quality |= Quality.NONPOSITIVE_FLUX
    spikes = np.zeros(spectrum.flux.size, bool)
    spikes[np.flatnonzero(in_window & finite)] = spike_pixels(window)
    if spikes.any():
        quality |= Quality.SPIKE
    measured = der_snr(window[~spikes[in_window & finite]])
    snr, snr_flags = snr_and_flags(spectrum.meta.snr, measured, config)
    quality |= snr_flags
    wave, flux = _window_flux(spectrum, config, spikes)
    try:
        x = standardise(regrid(wave, flux, grid_aa=grid))
    except ValueError as exc:
        raise SpectrumError(source, str(exc)) from None
    return Preprocessed(x=x.astype(np.float32), quality=quality, snr=snr)


def halpha_span(config: PreprocessConfig) -> tuple[float, float]:
    """H-alpha ± ``config.halpha_margin_aa`` (vacuum Å): what a spectrum must cover."""
    return HALPHA_VACUUM_AA - config.halpha_margin_aa, HALPHA_VACUUM_AA + config.halpha_margin_aa


def partly_covered(wave_vac: np.ndarray, grid: np.ndarray) -> bool:
    """True when the wavelengths miss the grid's ends by more than half a grid step."""
    half_step = (grid[1] - grid[0]) / 2.0
    return bool(wave_vac[0] > grid[0] + half_step or wave_vac[-1] < grid[-1] - half_step)


def ivar_flags(
    spectrum: Spectrum, in_window: np.ndarray | slice, config: PreprocessConfig
) -> Quality:
    """BAD_IVAR when more than ``max_bad_fraction`` of the window has ivar <= 0 or NaN.

    A few such pixels are no reason for doubt: LAMOST zeroes the ivar at the
    peak of strong emission (saturation), so they set no flag at all.
    """
    if spectrum.ivar is None:
        return Quality(0)
    ivar = spectrum.ivar[in_window]
    bad = int((~(ivar > 0) | ~np.isfinite(ivar)).sum())
    return Quality.BAD_IVAR if bad > config.max_bad_fraction * ivar.size else Quality(0)


def snr_and_flags(
    stated: float, measured: float, config: PreprocessConfig
) -> tuple[float, Quality]:
    """The S/N to use (the file's, else the one measured from the flux) and its Quality flags."""
    flags = Quality(0)
    snr = stated
    if not math.isfinite(stated):
        snr = measured
        flags |= Quality.SNR_FROM_DATA
    elif math.isfinite(measured) and stated > config.max_snr_ratio * max(measured, 0.0):
        flags |= Quality.SNR_MISMATCH
    if math.isfinite(snr) and snr < config.min_snr:
        flags |= Quality.LOW_SNR
    return snr, flags
