"""Measure the blur that makes Ondřejov spectra look like LAMOST ones, on real pairs.

The thesis blurred Ondřejov CCD700 spectra (R about 13 000) with a Gaussian of
sigma 7 native pixels, chosen by eye. Here the sigma is measured on
cross-matched pairs: the same star observed by both archives (on different
nights). For each pair and each trial sigma the Ondřejov spectrum goes
through the preprocessing steps (`blur`, `air_to_vacuum`, `regrid`) and is
compared with the LAMOST spectrum of the star; the sigma of least mismatch
is the pair's estimate. Two things besides resolution differ between the two
spectra of a pair and are fitted as nuisance parameters, so that they cannot
masquerade as blur:

* **a velocity shift**: the two epochs differ in the star's radial velocity
  (binaries), in the barycentric correction (Ondřejov spectra are not
  corrected, LAMOST ones are) and in wavelength-calibration zero point. A
  shift is odd in wavelength and blur is even, so they barely correlate, but
  an unmodelled shift makes line profiles disagree and biases sigma upwards;
* **the continuum**: Ondřejov SSAP spectra are continuum-normalised, raw ones
  are in ADU with the instrument's response, LAMOST ones are flux-calibrated.
  Per-spectrum standardisation removes scale and offset but not a slope, so
  the LAMOST flux is modelled as the blurred Ondřejov one times a low-order
  polynomial in wavelength (fitted by linear least squares for every trial).

The mismatch is the root-mean-square residual of that fit over the standard
deviation of the LAMOST flux in the window (0 is a perfect match; a
dimensionless number, comparable between pairs). Two comparison spaces:

* ``grid`` (default): both spectra on the 140-point grid by the same linear
  interpolation `preprocess` uses. This answers the question the default
  blur must answer: which sigma makes the network's Ondřejov inputs look like
  its LAMOST inputs (the interpolation of LAMOST's 1.5 Å pixels onto the grid
  smooths them a little more, and that belongs to what the network sees);
* ``native``: the model is sampled at LAMOST's own pixels. This measures the
  physical resolution difference of the two instruments and is the one to
  compare with the resolving powers.

Pairs are combined by summing their mismatch curves, each squared and divided
by its own minimum (as if each pair's noise were scaled to a reduced
chi-square of one at its best fit): pairs whose curves are flat (a Be star
whose emission changed between the epochs, a noisy spectrum) then weigh
little. The uncertainty is the standard deviation of the combined minimum
over bootstrap resamples of the pairs.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from spectraldl.analysis.explore import OKABE_ITO, save_figure
from spectraldl.core.errors import NotUTF8Error, SpectrumError, decode_utf8, delimiter_hint
from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import real_dir
from spectraldl.prep.preprocess import (
    FWHM_PER_SIGMA,
    HALPHA_VACUUM_AA,
    PreprocessConfig,
    blur,
    fill_nonfinite,
    regrid,
    sigma_px_for_resolution,
    vacuum_wavelengths,
)

Space = Literal["grid", "native"]

C_KM_S = 299_792.458
THESIS_SIGMA_PX = 7.0
"""The thesis' blur (Ondřejov pixels), chosen by eye."""
ONDREJOV_RESOLVING_POWER = 13_000.0
LAMOST_RESOLVING_POWER = 1_800.0
DEFAULT_SIGMAS_PX = np.round(np.arange(0.0, 16.0 + 1e-9, 0.25), 2)
_SUFFIXES = (".fits.gz", ".fit.gz", ".fits", ".fit")


class CalibrationError(ValueError):
    """Inputs that leave nothing to calibrate (no pairs found, unreadable pairs CSV)."""


@dataclass(frozen=True)
class Pair:
    """One cross-matched pair: the same star in both archives."""

    ondrejov: Path
    lamost: Path

    @property
    def name(self) -> str:
        """``<ondrejov stem>~<lamost stem>``, short and unique per pair."""
        return f"{file_stem(self.ondrejov.name)}~{file_stem(self.lamost.name)}"


@dataclass(frozen=True)
class MissingPair:
    """A pair of the CSV whose files were not found (or could not be read)."""

    ondrejov: str
    lamost: str
    reason: str


def bundled_pairs_csv() -> Path:
    """The thesis' 22 cross-matched pairs (8 with both files bundled under `real_dir`).

    Returns
    -------
    Path
        The bundled pairs CSV (`read_pairs_csv` reads it).
    """
    return real_dir() / "cross-matched.csv"


def file_stem(name: str) -> str:
    """File name without .fits, .fit, .fits.gz or .fit.gz (any case).

    Parameters
    ----------
    name
        A file name (no directory).

    Returns
    -------
    str
        ``name`` without its FITS extension; unchanged when it has none.
    """
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_pairs_csv(path: str | Path) -> list[tuple[str, str]]:
    """Rows of a pairs CSV: two columns, Ondřejov file and LAMOST file, no header.

    Only the file names matter (their directories are ignored). Blank lines
    and lines starting with ``#`` are skipped.

    Parameters
    ----------
    path
        The pairs CSV.

    Returns
    -------
    list of (str, str)
        (Ondřejov file, LAMOST file) per row, in file order.

    Raises
    ------
    CalibrationError
        When the file cannot be read, has no pairs, a row lacks two columns or
        repeats a pair (naming the file and line).
    """
    path = Path(path)
    rows: list[tuple[str, str]] = []
    lines: dict[tuple[str, str], int] = {}
    try:
        text = decode_utf8(path.read_bytes(), path)
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read the pairs CSV ({exc.strerror})") from None
    except NotUTF8Error as exc:
        raise CalibrationError(str(exc)) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise CalibrationError(
                    f"{path}, line {reader.line_num}: expected two columns (Ondřejov file, "
                    f"LAMOST file), got {row}" + delimiter_hint(row)
                )
            key = (file_stem(Path(cells[0]).name), file_stem(Path(cells[1]).name))
            if key in lines:
                raise CalibrationError(
                    f"{path}, line {reader.line_num}: the pair {cells[0]}, {cells[1]} is also on "
                    f"line {lines[key]}; list each pair once (a pair twice counts twice)"
                )
            lines[key] = reader.line_num
            rows.append((cells[0], cells[1]))
    except csv.Error as exc:
        raise CalibrationError(
            f"{path}, line {reader.line_num}: not a readable CSV ({exc})"
        ) from None
    if not rows:
        raise CalibrationError(f"{path}: no pairs in the file")
    return rows


def _index_by_stem(directories: Sequence[str | Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            raise CalibrationError(f"{directory}: not a directory")
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(_SUFFIXES):
                    index.setdefault(file_stem(name), Path(root) / name)
    return index


def find_pairs(
    pairs_csv: str | Path,
    ondrejov_dirs: Sequence[str | Path],
    lamost_dirs: Sequence[str | Path],
) -> tuple[list[Pair], list[MissingPair]]:
    """Locate the files of each pair by name under the given directories.

    A name matches a file with the same stem and any of the extensions .fits,
    .fit, .fits.gz (the CSV's directory part and extension are ignored).

    Parameters
    ----------
    pairs_csv
        The pairs CSV (`read_pairs_csv`).
    ondrejov_dirs, lamost_dirs
        Directories walked for the Ondřejov and the LAMOST files.

    Returns
    -------
    found : list of Pair
        The pairs whose two files were found, in CSV order.
    missing : list of MissingPair
        The pairs with a file not found, and which.

    Raises
    ------
    CalibrationError
        When the CSV cannot be read or a directory does not exist.
    """
    rows = read_pairs_csv(pairs_csv)
    ondrejov = _index_by_stem(ondrejov_dirs)
    lamost = _index_by_stem(lamost_dirs)
    found: list[Pair] = []
    missing: list[MissingPair] = []
    for o_name, l_name in rows:
        o_path = ondrejov.get(file_stem(Path(o_name).name))
        l_path = lamost.get(file_stem(Path(l_name).name))
        if o_path is None or l_path is None:
            what = [
                f"{label} file {Path(name).name} not found"
                for label, name, hit in (("Ondřejov", o_name, o_path), ("LAMOST", l_name, l_path))
                if hit is None
            ]
            missing.append(MissingPair(o_name, l_name, "; ".join(what)))
        else:
            found.append(Pair(o_path, l_path))
    return found, missing


def predicted_sigma_px(
    ondrejov: Spectrum,
    *,
    from_resolving_power: float = ONDREJOV_RESOLVING_POWER,
    to_resolving_power: float = LAMOST_RESOLVING_POWER,
) -> float:
    """The sigma (Ondřejov pixels at H-alpha) the nominal resolving powers predict.

    ``sigma = sqrt(FWHM_LAMOST² - FWHM_Ondřejov²) / 2.355`` over the pixel size,
    FWHM = λ/R at H-alpha (`spectraldl.prep.preprocess.sigma_px_for_resolution`).

    Parameters
    ----------
    ondrejov
        The spectrum to blur: its pixel size at H-alpha converts Å to pixels.
    from_resolving_power, to_resolving_power
        Resolving powers of its spectrograph and of the target (LAMOST).

    Returns
    -------
    float
        The Gaussian sigma in ``ondrejov``'s pixels.
    """
    wave = vacuum_wavelengths(ondrejov)
    return sigma_px_for_resolution(
        wave, from_resolving_power=from_resolving_power, to_resolving_power=to_resolving_power
    )


class _Comparison:
    """Everything about one pair that does not depend on the trial sigma and shift."""

    def __init__(
        self,
        ondrejov: Spectrum,
        lamost: Spectrum,
        *,
        space: Space,
        grid_aa: NDArray[np.float64],
        continuum_degree: int,
        halpha_margin_aa: float,
    ) -> None:
        source = ondrejov.meta.source or ondrejov.id
        o_wave = ondrejov.wave_aa
        if np.isfinite(ondrejov.flux).sum() < 2:
            raise SpectrumError(source, "fewer than two finite flux values")
        self.o_flux = fill_nonfinite(o_wave, ondrejov.flux)
        self.o_wave_vac = vacuum_wavelengths(ondrejov)
        l_wave = vacuum_wavelengths(lamost)
        # The and-mask and finiteness decide, as in `preprocess`; LAMOST DR1 sets ivar
        # to 0 over strong emission lines, the most telling pixels, so ivar does not.
        good = np.isfinite(lamost.flux)
        if lamost.mask is not None:
            good &= ~lamost.mask
        lo, hi = float(grid_aa[0]), float(grid_aa[-1])
        if self.o_wave_vac[0] > lo + 5.0 or self.o_wave_vac[-1] < hi - 5.0:
            raise SpectrumError(
                source,
                f"covers {self.o_wave_vac[0]:.6g}-{self.o_wave_vac[-1]:.6g} Å (vacuum), "
                f"not the window {lo:.0f}-{hi:.0f} Å",
            )
        l_source = lamost.meta.source or lamost.id
        if l_wave[0] > lo or l_wave[-1] < hi:
            raise SpectrumError(l_source, f"does not cover the window {lo:.0f}-{hi:.0f} Å")
        if space == "grid":
            # A grid point counts when both LAMOST pixels around it are good: across
            # a masked gap the interpolation would invent the flux.
            points = np.asarray(grid_aa, dtype=np.float64)
            right = np.clip(np.searchsorted(l_wave, points), 1, l_wave.size - 1)
            valid = good[right - 1] & good[right]
            self.points = points[valid]
            self.data = regrid(l_wave[good], lamost.flux[good], grid_aa=self.points)
        else:
            valid = good & (l_wave >= lo) & (l_wave <= hi)
            self.points = l_wave[valid]
            self.data = lamost.flux[valid].astype(np.float64)
        core = np.abs(self.points - HALPHA_VACUUM_AA) <= halpha_margin_aa
        expected = 2.0 * halpha_margin_aa / float(np.median(np.diff(self.points)))
        if core.sum() < 0.8 * expected:
            raise SpectrumError(
                l_source, f"H-alpha ± {halpha_margin_aa:g} Å is masked in the LAMOST spectrum"
            )
        self.data_std = float(self.data.std())
        if not math.isfinite(self.data_std) or self.data_std == 0:
            raise SpectrumError(lamost.meta.source or lamost.id, "flat flux in the window")
        t = (self.points - self.points.mean()) / (np.ptp(self.points) / 2.0)
        self.basis = np.vander(t, continuum_degree + 1, increasing=True)

    def mismatch(self, blurred: NDArray[np.float64], velocity_km_s: float) -> float:
        """Relative RMS residual of LAMOST ≈ polynomial × shifted, blurred Ondřejov."""
        wave = self.o_wave_vac * (1.0 + velocity_km_s / C_KM_S)
        model = np.interp(self.points, wave, blurred)
        design = self.basis * model[:, None]
        coeffs, *_ = np.linalg.lstsq(design, self.data, rcond=None)
        residual = self.data - design @ coeffs
        return float(np.sqrt(np.mean(residual**2)) / self.data_std)


def _best_velocity(
    comparison: _Comparison,
    blurred: NDArray[np.float64],
    *,
    centre_km_s: float,
    half_range_km_s: float,
    step_km_s: float,
) -> tuple[float, float]:
    """Minimise the mismatch over the velocity shift: a scan, then a bounded refinement."""
    from scipy.optimize import minimize_scalar

    count = max(round(2 * half_range_km_s / step_km_s), 0) + 1
    velocities = np.linspace(centre_km_s - half_range_km_s, centre_km_s + half_range_km_s, count)
    values = np.array([comparison.mismatch(blurred, v) for v in velocities])
    i = int(np.argmin(values))
    if count < 3:
        return float(velocities[i]), float(values[i])
    lo = velocities[max(i - 1, 0)]
    hi = velocities[min(i + 1, len(velocities) - 1)]
    result = minimize_scalar(
        lambda v: comparison.mismatch(blurred, float(v)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 0.05},
    )
    if result.fun < values[i]:
        return float(result.x), float(result.fun)
    return float(velocities[i]), float(values[i])


def _parabolic_minimum(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Location of the minimum of ``y(x)``, refined by a parabola through its neighbours."""
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return float(x[i])
    x0, x1, x2 = x[i - 1 : i + 2]
    y0, y1, y2 = y[i - 1 : i + 2]
    denominator = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denominator
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denominator
    if a <= 0:
        return float(x1)
    return float(np.clip(-b / (2.0 * a), x0, x2))


@dataclass
class PairFit:
    """The mismatch curve of one pair and its best sigma.

    Attributes
    ----------
    name
        ``<ondrejov stem>~<lamost stem>``.
    object
        Target name (Ondřejov OBJECT).
    sigmas_px
        float64 (k,), the trial sigmas (Ondřejov pixels).
    mismatch
        float64 (k,), relative RMS residual at each trial sigma (best velocity).
    velocity_km_s
        float64 (k,), the best velocity shift at each trial sigma (LAMOST
        minus Ondřejov, km/s).
    sigma_px
        Sigma of least mismatch (parabolic refinement between grid points).
    predicted_sigma_px
        What the nominal resolving powers predict for this spectrum's pixels.
    pixel_aa
        Ondřejov pixel size near H-alpha (Å).
    """

    name: str
    object: str
    ondrejov: str
    lamost: str
    sigmas_px: NDArray[np.float64]
    mismatch: NDArray[np.float64]
    velocity_km_s: NDArray[np.float64]
    sigma_px: float
    predicted_sigma_px: float
    pixel_aa: float

    @property
    def min_mismatch(self) -> float:
        """The smallest mismatch on the curve."""
        return float(self.mismatch.min())

    def mismatch_at(self, sigma_px: float) -> float:
        """Mismatch at ``sigma_px`` (linear interpolation of the curve)."""
        return float(np.interp(sigma_px, self.sigmas_px, self.mismatch))

    @property
    def best_velocity_km_s(self) -> float:
        """Velocity shift at the best sigma."""
        return float(np.interp(self.sigma_px, self.sigmas_px, self.velocity_km_s))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (curves as lists)."""
        return {
            "name": self.name,
            "object": self.object,
            "ondrejov": self.ondrejov,
            "lamost": self.lamost,
            "sigma_px": round(self.sigma_px, 3),
            "sigma_aa": round(self.sigma_px * self.pixel_aa, 4),
            "velocity_km_s": round(self.best_velocity_km_s, 2),
            "min_mismatch": round(self.min_mismatch, 5),
            "mismatch_at_thesis_sigma": round(self.mismatch_at(THESIS_SIGMA_PX), 5),
            "predicted_sigma_px": round(self.predicted_sigma_px, 3),
            "pixel_aa": round(self.pixel_aa, 5),
            "sigmas_px": [float(s) for s in self.sigmas_px],
            "mismatch": [round(float(m), 6) for m in self.mismatch],
        }


def fit_pair(
    ondrejov: Spectrum,
    lamost: Spectrum,
    *,
    sigmas_px: Sequence[float] | NDArray[np.float64] = DEFAULT_SIGMAS_PX,
    space: Space = "grid",
    config: PreprocessConfig | None = None,
    continuum_degree: int = 2,
    max_velocity_km_s: float = 150.0,
    velocity_step_km_s: float = 5.0,
) -> PairFit:
    """Mismatch against sigma for one pair, the velocity shift and continuum fitted per trial.

    Parameters
    ----------
    ondrejov, lamost
        The two spectra of the same star (any archives: the first is blurred).
    sigmas_px
        Trial Gaussian sigmas in the first spectrum's native pixels, increasing.
    space
        ``grid``: compare on the preprocessing grid (``config.grid_aa``) after
        the same linear interpolation; ``native``: at LAMOST's own pixels.
    config
        Gives the window and grid (default `PreprocessConfig()`).
    continuum_degree
        Degree of the multiplicative continuum polynomial (0 fits scale only).
    max_velocity_km_s, velocity_step_km_s
        Range and coarse step of the velocity scan (refined to 0.05 km/s): the
        whole range at sigma 7, then ± 25 km/s around that shift at each sigma.

    Returns
    -------
    PairFit
        The mismatch and best velocity at each trial sigma, and the pair's best sigma.

    Raises
    ------
    SpectrumError
        When a spectrum does not cover the window or is flat there.
    ValueError
        When ``sigmas_px`` is not at least three increasing values >= 0.
    """
    config = config or PreprocessConfig()
    sigmas = np.asarray(sigmas_px, dtype=np.float64)
    if sigmas.ndim != 1 or sigmas.size < 3 or np.any(np.diff(sigmas) <= 0) or sigmas[0] < 0:
        raise ValueError("sigmas_px must be at least three increasing values >= 0")
    comparison = _Comparison(
        ondrejov,
        lamost,
        space=space,
        grid_aa=config.grid_aa,
        continuum_degree=continuum_degree,
        halpha_margin_aa=config.halpha_margin_aa,
    )
    # The shift hardly depends on the blur (one is odd in wavelength, the other even):
    # scan the whole range once at the thesis' sigma, then search near that shift.
    reference = float(np.clip(THESIS_SIGMA_PX, sigmas[0], sigmas[-1]))
    centre, _ = _best_velocity(
        comparison,
        blur(comparison.o_flux, sigma_px=reference),
        centre_km_s=0.0,
        half_range_km_s=max_velocity_km_s,
        step_km_s=velocity_step_km_s,
    )
    local = min(max_velocity_km_s, 25.0)
    mismatch = np.empty(sigmas.size)
    velocity = np.empty(sigmas.size)
    for k, sigma in enumerate(sigmas):
        velocity[k], mismatch[k] = _best_velocity(
            comparison,
            blur(comparison.o_flux, sigma_px=float(sigma)),
            centre_km_s=centre,
            half_range_km_s=local,
            step_km_s=velocity_step_km_s,
        )
    near = np.abs(comparison.o_wave_vac - HALPHA_VACUUM_AA) < 100.0
    pixel_vac = float(np.median(np.diff(comparison.o_wave_vac[near])))
    return PairFit(
        name=f"{file_stem(Path(ondrejov.meta.source or ondrejov.id).name)}~"
        f"{file_stem(Path(lamost.meta.source or lamost.id).name)}",
        object=ondrejov.meta.object,
        ondrejov=ondrejov.meta.source,
        lamost=lamost.meta.source,
        sigmas_px=sigmas,
        mismatch=mismatch,
        velocity_km_s=velocity,
        sigma_px=_parabolic_minimum(sigmas, mismatch),
        predicted_sigma_px=predicted_sigma_px(ondrejov),
        pixel_aa=pixel_vac,
    )


def _normalised_curves(fits: Sequence[PairFit]) -> NDArray[np.float64]:
    """(mismatch / its minimum)² of each pair, one row per pair."""
    return np.array([(f.mismatch / f.min_mismatch) ** 2 for f in fits])


def combined_curve(fits: Sequence[PairFit]) -> NDArray[np.float64]:
    """Sum over pairs of (mismatch / its minimum)², on the common sigma grid.

    Parameters
    ----------
    fits
        The pairs' fits (`fit_pair`), on one sigma grid.

    Returns
    -------
    ndarray
        One value per trial sigma; its minimum is the combined estimate.

    Raises
    ------
    CalibrationError
        When ``fits`` is empty.
    """
    if not fits:
        raise CalibrationError("no pairs to combine")
    return _normalised_curves(fits).sum(axis=0)


@dataclass
class BlurCalibration:
    """The measured blur, its uncertainty, the evidence and what was left out.

    Attributes
    ----------
    sigma_px
        Combined best sigma (Ondřejov pixels).
    uncertainty_px
        Standard deviation of the combined best sigma over bootstrap resamples
        of the pairs.
    interval_px
        Central 95 % bootstrap interval.
    median_pair_sigma_px
        Median of the per-pair best sigmas (a cross-check of the combination).
    predicted_sigma_px
        What the nominal resolving powers predict (median over the pairs' pixels).
    thesis_sigma_px
        The thesis' value, 7.
    pairs_preferring_measured
        Pairs whose mismatch at ``sigma_px`` is below their mismatch at 7.
    delta_combined_vs_thesis
        Combined curve (`combined_curve`) at 7 minus its minimum: 0 when 7 is
        as good; each pair contributes at least 1 at any sigma, so a value
        well below 1 means 7 fits about as well as the measured sigma.
    """

    sigma_px: float
    uncertainty_px: float
    interval_px: tuple[float, float]
    median_pair_sigma_px: float
    predicted_sigma_px: float
    thesis_sigma_px: float
    pairs_preferring_measured: int
    delta_combined_vs_thesis: float
    space: str
    n_bootstrap: int
    fits: list[PairFit] = field(default_factory=list)
    skipped: list[MissingPair] = field(default_factory=list)
    bootstrap_sigmas_px: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def pairs(self) -> int:
        """Number of pairs that entered the measurement."""
        return len(self.fits)

    @property
    def thesis_in_interval(self) -> bool:
        """Whether 7 lies inside the 95 % bootstrap interval."""
        return self.interval_px[0] <= self.thesis_sigma_px <= self.interval_px[1]

    def summary(self) -> dict[str, Any]:
        """The three numbers ``--json`` prints: sigma, uncertainty, number of pairs."""
        uncertainty = self.uncertainty_px
        return {
            "sigma_px": round(self.sigma_px, 3),
            "uncertainty_px": round(uncertainty, 3) if math.isfinite(uncertainty) else None,
            "pairs": self.pairs,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON (summary keys first)."""
        pixel = float(np.median([f.pixel_aa for f in self.fits]))
        return {
            **self.summary(),
            "sigma_aa": round(self.sigma_px * pixel, 4),
            "fwhm_kernel_aa": round(self.sigma_px * pixel * FWHM_PER_SIGMA, 4),
            "interval_95_px": [round(v, 3) for v in self.interval_px],
            "median_pair_sigma_px": round(self.median_pair_sigma_px, 3),
            "predicted_sigma_px": round(self.predicted_sigma_px, 3),
            "thesis_sigma_px": self.thesis_sigma_px,
            "thesis_in_interval": self.thesis_in_interval,
            "pairs_preferring_measured": self.pairs_preferring_measured,
            "delta_combined_vs_thesis": round(self.delta_combined_vs_thesis, 4),
            "space": self.space,
            "n_bootstrap": self.n_bootstrap,
            "pixel_aa": round(pixel, 5),
            "per_pair": [f.to_dict() for f in self.fits],
            "skipped": [
                {"ondrejov": m.ondrejov, "lamost": m.lamost, "reason": m.reason}
                for m in self.skipped
            ],
        }


def combine(
    fits: Sequence[PairFit],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    space: str = "grid",
    skipped: Sequence[MissingPair] = (),
) -> BlurCalibration:
    """Combine per-pair curves into one sigma with a bootstrap uncertainty over pairs.

    Parameters
    ----------
    fits
        The pairs' fits (`fit_pair`), on one sigma grid.
    n_bootstrap
        Resamples of the pairs (with replacement) for the uncertainty and interval.
    seed
        Seed of the resampling.
    space
        The comparison space the fits used (recorded).
    skipped
        Pairs left out, with the reason (recorded).

    Returns
    -------
    BlurCalibration
        The combined sigma, its uncertainty and 95 % interval, and the evidence.

    Raises
    ------
    CalibrationError
        When ``fits`` is empty.
    ValueError
        When the fits do not share one sigma grid.
    """
    if not fits:
        raise CalibrationError("no usable pairs: nothing to calibrate")
    sigmas = fits[0].sigmas_px
    if any(not np.array_equal(f.sigmas_px, sigmas) for f in fits):
        raise ValueError("all pairs must share one sigma grid")
    normalised = _normalised_curves(fits)
    total = normalised.sum(axis=0)
    best = _parabolic_minimum(sigmas, total)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(fits), size=(n_bootstrap, len(fits)))
    boot = np.array([_parabolic_minimum(sigmas, normalised[d].sum(axis=0)) for d in draws])
    lo, hi = np.quantile(boot, [0.025, 0.975])
    at_thesis = float(np.interp(THESIS_SIGMA_PX, sigmas, total))
    return BlurCalibration(
        sigma_px=best,
        uncertainty_px=float(boot.std(ddof=1)) if len(fits) > 1 else float("nan"),
        interval_px=(float(lo), float(hi)),
        median_pair_sigma_px=float(np.median([f.sigma_px for f in fits])),
        predicted_sigma_px=float(np.median([f.predicted_sigma_px for f in fits])),
        thesis_sigma_px=THESIS_SIGMA_PX,
        pairs_preferring_measured=int(
            sum(f.mismatch_at(best) < f.mismatch_at(THESIS_SIGMA_PX) for f in fits)
        ),
        delta_combined_vs_thesis=at_thesis - float(total.min()),
        space=space,
        n_bootstrap=n_bootstrap,
        fits=list(fits),
        skipped=list(skipped),
        bootstrap_sigmas_px=boot,
    )


def _read_pair(pair: Pair) -> tuple[Spectrum, Spectrum]:
    """The pair's two spectra; `SpectrumError` when a file is not of its column's archive
    (columns swapped, or the same archive twice: a blur fitted to either means nothing)."""
    paths = (pair.ondrejov, pair.lamost)
    spectra = read_spectrum(paths[0]), read_spectrum(paths[1])
    for spectrum, path, expected in zip(spectra, paths, _PAIR_ARCHIVES, strict=True):
        if spectrum.meta.archive != expected:
            raise SpectrumError(
                path,
                f"archive {spectrum.meta.archive}, not {expected} as its column says; the pairs "
                "CSV lists the Ondřejov file first, then the LAMOST file (columns swapped?)",
            )
    return spectra


_PAIR_ARCHIVES = ("ondrejov", "lamost")
"""The archive of each column of a pairs CSV."""


def calibrate_blur(
    pairs_csv: str | Path,
    ondrejov_dirs: Sequence[str | Path],
    lamost_dirs: Sequence[str | Path],
    *,
    space: Space = "grid",
    sigmas_px: Sequence[float] | NDArray[np.float64] = DEFAULT_SIGMAS_PX,
    continuum_degree: int = 2,
    max_velocity_km_s: float = 150.0,
    n_bootstrap: int = 2000,
    seed: int = 0,
    config: PreprocessConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BlurCalibration:
    """Measure the Ondřejov blur on the cross-matched pairs of ``pairs_csv``.

    Pairs whose files are missing, or that cannot be read or compared, are
    skipped and listed in ``BlurCalibration.skipped`` with the reason.

    Parameters
    ----------
    pairs_csv
        The cross-matched pairs (`read_pairs_csv`; `bundled_pairs_csv` for the thesis').
    ondrejov_dirs, lamost_dirs
        Directories walked for the pairs' files (`find_pairs`).
    space, sigmas_px, continuum_degree, max_velocity_km_s, config
        How each pair is compared (`fit_pair`).
    n_bootstrap, seed
        The bootstrap over pairs (`combine`).
    progress
        Called with (pairs done, pairs) after each pair.

    Returns
    -------
    BlurCalibration
        The measured sigma with its uncertainty, the per-pair fits and the skipped pairs.

    Raises
    ------
    CalibrationError
        When the CSV cannot be read or no pair is usable.
    """
    pairs, skipped = find_pairs(pairs_csv, ondrejov_dirs, lamost_dirs)
    fits: list[PairFit] = []
    for done, pair in enumerate(pairs, start=1):
        try:
            ondrejov, lamost = _read_pair(pair)
            fit = fit_pair(
                ondrejov,
                lamost,
                sigmas_px=sigmas_px,
                space=space,
                config=config,
                continuum_degree=continuum_degree,
                max_velocity_km_s=max_velocity_km_s,
            )
        except SpectrumError as exc:
            skipped.append(MissingPair(str(pair.ondrejov), str(pair.lamost), str(exc)))
        else:
            fits.append(fit)
        if progress:
            progress(done, len(pairs))
    if not fits:
        reasons = "; ".join(f"{Path(m.ondrejov).name}: {m.reason}" for m in skipped[:5])
        raise CalibrationError(f"{pairs_csv}: no usable pair ({reasons})")
    return combine(fits, n_bootstrap=n_bootstrap, seed=seed, space=space, skipped=skipped)


def write_details(result: BlurCalibration, path: str | Path) -> Path:
    """Write every number of ``result`` (`BlurCalibration.to_dict`) as JSON to ``path``.

    Parameters
    ----------
    result
        The calibration (`calibrate_blur`).
    path
        The JSON file to write.

    Returns
    -------
    Path
        ``path``.
    """
    import json

    path = Path(path)
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def save_calibration(result: BlurCalibration, folder: str | Path) -> list[Path]:
    """Write ``blur.json`` (`write_details`) and ``blur.png``/``.svg`` into ``folder``.

    The layout `spectraldl report` shows as its "Blur calibration" section
    when ``folder`` is ``RUN_DIR/calibration``.

    Parameters
    ----------
    result
        The calibration (`calibrate_blur`).
    folder
        Created if missing.

    Returns
    -------
    list of Path
        The files written: the JSON, then the PNG and the SVG.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_details(result, folder / "blur.json"),
        *plot_calibration(result, folder / "blur.png"),
    ]


def plot_pair(
    ondrejov: Spectrum,
    lamost: Spectrum,
    path: str | Path,
    *,
    sigma_px: float,
    window_aa: tuple[float, float] = (6520.0, 6610.0),
) -> list[Path]:
    """The domain adaptation of one pair, step by step, as the thesis' figures show it.

    Three panels around H-alpha, each with the LAMOST spectrum: the Ondřejov
    spectrum as stored (air wavelengths), converted to vacuum, then blurred
    by ``sigma_px``. Fluxes are standardised over the window as the
    preprocessing does (no continuum or velocity fit: what is left is what the
    network would see).

    Parameters
    ----------
    ondrejov, lamost
        The pair's spectra.
    path
        The figure to write; the other of PNG/SVG goes next to it.
    sigma_px
        The blur of the third panel (Ondřejov pixels).
    window_aa
        Wavelengths shown (Å).

    Returns
    -------
    list of Path
        The PNG and the SVG written.
    """
    from matplotlib.figure import Figure

    lo, hi = window_aa

    def scaled(wave: np.ndarray, flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = (wave >= lo) & (wave <= hi) & np.isfinite(flux)
        values = flux[inside]
        return wave[inside], (values - values.mean()) / values.std()

    l_wave = vacuum_wavelengths(lamost)
    o_flux = fill_nonfinite(ondrejov.wave_aa, ondrejov.flux)
    vacuum = vacuum_wavelengths(ondrejov)
    steps = [
        (f"Ondřejov as stored ({ondrejov.medium} wavelengths)", ondrejov.wave_aa, o_flux),
        ("Ondřejov in vacuum wavelengths", vacuum, o_flux),
        (
            f"Ondřejov in vacuum, blurred (sigma {sigma_px:.2f} px)",
            vacuum,
            blur(o_flux, sigma_px=sigma_px),
        ),
    ]
    fig = Figure(figsize=(7.0, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    lx, ly = scaled(l_wave, lamost.flux)
    for ax, (title, wave, flux) in zip(axes, steps, strict=True):
        ox, oy = scaled(wave, flux)
        ax.plot(ox, oy, color="#D55E00", lw=1.0, label="Ondřejov CCD700")
        ax.plot(lx, ly, color="#0072B2", lw=1.4, marker=".", ms=3, label="LAMOST")
        ax.axvline(HALPHA_VACUUM_AA, color="grey", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("standardised flux")
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("wavelength (Å); dotted: H-alpha in vacuum")
    name = ondrejov.meta.object or ondrejov.id
    fig.suptitle(
        f"{name}: {Path(ondrejov.meta.source).name} and {Path(lamost.meta.source).name}",
        fontsize=10,
    )
    return save_figure(fig, path)


def plot_calibration(result: BlurCalibration, path: str | Path) -> list[Path]:
    """Mismatch against sigma per pair, and the combined curve with the estimates.

    Parameters
    ----------
    result
        The calibration (`calibrate_blur`).
    path
        The figure to write; the other of PNG/SVG goes next to it.

    Returns
    -------
    list of Path
        The PNG and the SVG written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    # Yellow is too pale for thin lines on white; the other seven colours cycle with styles.
    colours = [c for c in OKABE_ITO if c != "#F0E442"]
    styles = ["-", "--", ":", "-."]
    for k, fit in enumerate(result.fits):
        colour = colours[k % len(colours)]
        style = styles[(k // len(colours)) % len(styles)]
        label = f"{fit.object or fit.name} ({fit.sigma_px:.1f})"
        left.plot(fit.sigmas_px, fit.mismatch, style, color=colour, lw=1.3, label=label)
        best = np.interp(fit.sigma_px, fit.sigmas_px, fit.mismatch)
        left.plot([fit.sigma_px], [best], "o", color=colour, ms=4)
    left.set_xlabel("Gaussian sigma (Ondřejov pixels)")
    left.set_ylabel("mismatch (RMS residual / std of LAMOST flux)")
    left.set_title("Each cross-matched pair (best sigma in brackets)")
    left.legend(fontsize=7, ncols=2 if len(result.fits) > 8 else 1, framealpha=0.85)
    sigmas = result.fits[0].sigmas_px
    total = combined_curve(result.fits)
    right.axvspan(*result.interval_px, color="#56B4E9", alpha=0.3, label="95 % bootstrap interval")
    right.plot(sigmas, total, color="black", lw=1.8, label="sum over pairs")
    right.axvline(
        result.sigma_px,
        color="#0072B2",
        lw=1.8,
        label=f"measured {result.sigma_px:.2f} ± {result.uncertainty_px:.2f}",
    )
    right.axvline(
        result.thesis_sigma_px,
        color="#CC79A7",
        ls="--",
        lw=1.8,
        label=f"thesis {result.thesis_sigma_px:g}",
    )
    right.axvline(
        result.predicted_sigma_px,
        color="#D55E00",
        ls=":",
        lw=2.0,
        label=f"R 13 000 → 1 800: {result.predicted_sigma_px:.2f}",
    )
    right.set_xlabel("Gaussian sigma (Ondřejov pixels)")
    right.set_ylabel("Σ (mismatch / pair minimum)²")
    right.set_title(f"Combined, {result.pairs} pairs ({result.space} space)")
    right.legend(fontsize=8, loc="upper center", framealpha=0.9)
    return save_figure(fig, path)
