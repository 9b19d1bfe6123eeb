"""LAMOST-like low-resolution spectra: the star, the instrument, the pipeline's traces, the file.

Instrument and pipeline facts followed (numbers and their sources):

* grid: vacuum wavelengths ``10**(3.5682 + 1e-4 i)``, 3904 pixels in DR1 and
  3909 from DR2 (the bundled real files); nominal resolving power 1800 at
  5500 Å (Cui et al. 2012, RAA 12, 1197), but about 1350 effective at H-alpha
  as measured on the dev files (`RESOLVING_POWER`), drawn per spectrum;
* radial velocities: LAMOST stars span about ±100 km/s (Luo et al. 2015);
  as the lines sit in the H-alpha window (including the pipeline's wavelength
  zero point) they are normal, +25 ± 55 km/s (`RADIAL_VELOCITY_KMS`);
* interstellar reddening E(B-V): exponential, mean 0.12 mag (assumption; most
  LAMOST fields are off the plane), with the CCM law and the 6614 Å band;
* flux calibration: LAMOST's relative calibration leaves smooth slopes
  (Xiang et al. 2015, MNRAS 448, 90, about 10 % over the range): a
  multiplicative exp(c1 x + c2 x²), x = (λ - 6500)/2500;
* noise: per pixel from the object, the sky continuum and sky lines (each line as strong
  as the dev files' ivar shows it, `SKY_LINE_STRENGTH`), scaled so
  that the median of flux·sqrt(ivar) over 5500-6900 Å is the drawn SN_R (the
  bundled files' SN_R agrees with that median to a few per cent), through a
  two-arm throughput (`THROUGHPUT`); the noise realised in the flux is
  correlated between neighbouring pixels (the pipeline resamples and co-adds
  exposures) and somewhat smaller than ivar claims: both measured on the
  bundled ``dev`` files (`NOISE_SCALE`, `NOISE_CORRELATION_PX`);
* the 6500 Å telluric water band and the calibration's response near H-alpha
  (`WINDOW_RESPONSE`), sky-subtraction residuals shaped as measured on the dev
  files (`SKY_RESIDUAL_LINES`);
* pipeline traces seen in the real files: ivar inflated at geocoronal H-alpha and two
  lines beside it, lowered at 6579 Å, with no extra scatter in the flux
  (`PIPELINE_SIGMA_NEAR_HALPHA`); ivar = 0 (not ANDMASK) over the peak
  of strong H-alpha emission (spec-56284-GAC122S02V2_sp14-183,
  spec-56342-GAC121N02V2_sp14-101) and at scattered pixels; runs of ivar = 0 at
  the blue end, in the telluric A band (7581-7679 Å) and at red sky lines; zero
  flux at the last pixels; sky-subtraction residuals; cosmic-ray spikes;
  masked runs (ANDMASK bits after the LAMOST DR1 data description: 1 BADCCD,
  2 BADPROFILE, 4 NOSKY, 8 BRIGHTSKY, 16 BADCENTER, 32 NODATA); rarely a red
  arm that lost its end (zero flux, NODATA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives import identify
from spectraldl.io.archives.fitsfile import FitsFile, parse_header
from spectraldl.prep.measure import equivalent_width_aa, finite_median
from spectraldl.prep.preprocess import HALPHA_VACUUM_AA, air_to_vacuum
from spectraldl.prep.smoothing import gaussian_filter1d
from spectraldl.simulate import fitsbytes as fb
from spectraldl.simulate import physics
from spectraldl.simulate.common import (
    choose_template,
    clamp,
    correlated_normal,
    draw_snr,
    lognormal_mixture,
    noise_profile,
    streams,
    template_truth,
)
from spectraldl.simulate.fitsbytes import Raw, card
from spectraldl.simulate.halpha import (
    HALPHA_AIR_AA,
    LineParams,
    LineStyle,
    draw_line,
    line_addition,
)
from spectraldl.simulate.physics import C_KMS, FWHM_PER_SIGMA, VELOCITY_GRID_KMS
from spectraldl.simulate.population import (
    LAMOST_MIX,
    LAMOST_SNR_LOGNORMAL,
    LAMOST_TYPES,
    Population,
    class_of,
)
from spectraldl.simulate.registry import SimulatedArchive, register
from spectraldl.simulate.templates import MILES_FWHM_AA, load_templates

RELEASES = ("dr1", "dr2", "dr6", "dr8")
COEFF0 = 3.5682
COEFF1 = 1e-4
N_PIXELS = {"dr1": 3904, "dr2": 3909, "dr6": 3909, "dr8": 3909}
FIRST_LMJD = {"dr1": 55859, "dr2": 56170, "dr6": 58000, "dr8": 58730}
"""First local MJD of each release's observing season (DR1 from 2011 Oct 24; DR2
2012 Sep; DR6 2017 Sep; DR8 2019 Sep)."""
NIGHTS = 250
FIBRES_PER_PLATE = 4000
"""16 spectrographs x 250 fibres (Cui et al. 2012)."""

RADIAL_VELOCITY_KMS = (25.0, 55.0)
"""Velocity of the lines in the window (mean, sigma): MILES templates fitted to the dev files'
6420-6800 Å give a median of +40 km/s and a spread of about ±60 (the header Z of that early
DR1 plate disagrees by tens of km/s); the mean is pulled towards the survey's ~0."""

RESOLVING_POWER = (1350.0, 150.0)
"""Effective resolving power at H-alpha (mean, sigma): fitting MILES stars degraded to
R = 1000-2100 to the dev files' 6420-6800 Å gives a median best R of 1200-1400 (1600 for the
brightest G-K stars): LAMOST's nominal R 1800 (at 5500 Å) is not reached in the red arm."""

NOISE_SCALE = (0.65, 1.0)
"""Range of (real scatter)/(sigma from ivar): template fits to the low-S/N dev files leave a
reduced chi-square of 0.34-0.8 against their ivar (scatter 0.58-0.9 of what ivar claims),
and their second-difference scatter is 0.6-0.8 of it; `benchmarks/realism.py` compares."""
LINES = LineStyle(fill_share=0.12, strong_share=None, min_fwhm_kms=60.0, min_separation_kms=250.0)
"""H-alpha lines (`halpha.draw_line`): 12 % of absorption stars filled in, emission heights
from the S/N, FWHM from 60 km/s (nebular-like and dMe lines), disc peaks at least 250 km/s
apart (R ~ 1800, 166 km/s FWHM, cannot separate closer ones)."""

NOISE_CORRELATION_PX = (0.25, 0.45)
"""Gaussian sigma (pixels) of the correlation of neighbouring pixels' noise: the dev files'
high-passed residuals have lag-1 autocorrelation 0.25-0.45 at low S/N, and this range makes
the power spectrum of the preprocessed vectors' highest frequencies match theirs."""

SKY_LINES_VAC_AA = air_to_vacuum(
    np.concatenate(
        [
            [5577.34, 5889.95, 5895.92, 6300.30, 6363.78],
            physics.SKY_LINES_AIR_AA,
            [6863.96, 7316.28, 7340.89, 7750.64, 7794.11, 7913.71, 7993.33, 8344.60, 8399.17],
            [8430.17, 8465.36, 8827.10, 8885.85, 8919.62, 8958.08, 8988.38],
        ]
    )
)
"""Night-sky emission lines (vacuum Å): [O I] 5577/6300/6364, Na D, OH Meinel
bands (Osterbrock et al. 1996), the ones near H-alpha from `physics`."""
SKY_LINE_STRENGTH = np.concatenate(
    [
        [20.0, 1.0, 0.35, 3.6, 0.75],
        [0.18, 0.08, 0.0, 0.0, 0.0, 0.0, 0.0, 0.28, 0.08, 0.13],
        [0.28, 0.57, 1.0, 2.9, 0.77, 2.5, 1.2, 7.7, 3.1],
        [3.25, 5.1, 20.0, 5.0, 5.65, 4.5, 0.25],
    ]
)
"""Peak of each `SKY_LINES_VAC_AA` line over the sky continuum, as the photon noise sees it,
measured on the dev files' ivar: each strength makes the median sigma at the line's pixel over
sigma 5-12 px away (real 0.99-4.9) come out as in the dev files. The faint OH lines near
H-alpha barely raise the noise (ratio 1.0-1.13; the holdout files agree within 0.07); the red
OH bands and [O I] do (2-5x). [O I] 5577 varies most between plates (7.1 dev, 2.3 holdout)
and sits between. The lines at 6555-6579 Å are 0 here: what the real ivar shows there does
not come with extra scatter in the flux (`PIPELINE_SIGMA_NEAR_HALPHA`)."""

PIPELINE_SIGMA_NEAR_HALPHA = tuple(
    (float(air_to_vacuum(air)), ratio)
    for air, ratio in ((6553.62, 3.35), (6562.80, 4.15), (6568.78, 3.85), (6577.28, 0.84))
)
"""Ratio of the pipeline's sigma (from ivar) to the flux's scatter at these lines (air Å in
the table, stored in vacuum), chosen so that sigma at each line over sigma 5-12 px away comes out
as the dev files' median (2.43, 3.66, 3.20, 0.78; holdout 2.42, 3.35, 3.16, 0.77; the lines
overlap each other's neighbourhoods, hence larger values here): the real ivar is inflated at
geocoronal H-alpha and two lines beside it and lowered at 6579 Å vacuum, while the flux's
scatter there is not larger than elsewhere (the dev stack's high-passed variance is 0.2-0.3 of
the synthetic's where the synthetic had it in the flux). Applied to ivar only."""

SKY_RESIDUAL_AMPLITUDE = 0.045
"""Peak of the sky-subtraction residual, relative to the star's continuum, at SN_R 30; scaled
by (30/SN_R)^0.8 (the dev stack's residuals grow towards low S/N) and per spectrum by a
lognormal of sigma `SKY_RESIDUAL_SPREAD`; the sign is the dev stack's in 85 % of spectra."""
SKY_RESIDUAL_SPREAD = 0.5
"""Sigma of the per-spectrum lognormal factor of the sky residual (assumption)."""
RESPONSE_SPREAD = 0.5
"""Sigma of the per-spectrum factor N(1, sigma) on `WINDOW_RESPONSE` (assumption)."""

SKY_RESIDUAL_LINES = tuple(
    (float(air_to_vacuum(air)), factor, excess)
    for air, factor, excess in (
        (6498.73, 1.07, 0.0),
        (6522.40, 0.30, 0.0),
        (6533.04, 0.93, 0.0),
        (6553.62, 1.10, 0.15),
        (6562.80, 1.80, 0.70),
        (6568.78, 0.45, 0.0),
        (6577.28, 0.95, 0.0),
        (6596.64, 0.22, 0.0),
        (6604.28, 0.50, 0.27),
        (6627.62, 0.18, 0.0),
        (6634.23, 0.20, 0.0),
    )
)
"""Sky lines near H-alpha (air Å in the table, stored in vacuum) with the size of their
derivative-shaped residual and of an under-subtracted excess, in units of
`SKY_RESIDUAL_AMPLITUDE`. Fitted to the dev files only: the median over the 33 stars of
(flux / best-fitting MILES template - 1) x (SN_R/30)^0.8 is a negative-then-positive pair
(Gaussian sigma 2.2 Å, centres 0.2 Å redward) on each OH line and on H-alpha; fitting the
pairs' amplitudes leaves 0.008 of its 0.021 rms. H-alpha's excess is the G-M stars' (0.03;
A-F stars add a stellar core mismatch). The holdout stars show the same pattern at about
two thirds of the amplitude."""

_SKY_RESIDUAL_CENTRES, _SKY_RESIDUAL_FACTORS, _SKY_RESIDUAL_EXCESS = np.array(
    SKY_RESIDUAL_LINES
).T.copy()

WINDOW_RESPONSE = (
    (6400.0, -0.0018),
    (6410.0, -0.0025),
    (6420.0, -0.0031),
    (6430.0, -0.0050),
    (6440.0, -0.0090),
    (6450.0, -0.0131),
    (6460.0, -0.0127),
    (6470.0, -0.0067),
    (6480.0, -0.0040),
    (6490.0, -0.0073),
    (6500.0, -0.0047),
    (6510.0, +0.0010),
    (6520.0, -0.0021),
    (6530.0, -0.0029),
    (6540.0, +0.0023),
    (6550.0, +0.0072),
    (6560.0, +0.0115),
    (6570.0, +0.0142),
    (6580.0, +0.0141),
    (6590.0, +0.0098),
    (6600.0, +0.0059),
    (6610.0, +0.0055),
    (6620.0, +0.0049),
    (6630.0, +0.0053),
    (6640.0, +0.0054),
    (6650.0, +0.0029),
    (6660.0, +0.0013),
    (6670.0, +0.0028),
    (6680.0, +0.0038),
    (6690.0, +0.0018),
    (6700.0, +0.0001),
    (6710.0, +0.0009),
    (6720.0, +0.0024),
    (6730.0, +0.0030),
    (6740.0, +0.0038),
    (6750.0, +0.0039),
    (6760.0, +0.0032),
    (6770.0, +0.0030),
    (6780.0, +0.0024),
    (6790.0, +0.0008),
    (6800.0, -0.0024),
    (6810.0, -0.0084),
)
"""Smooth multiplicative difference (vacuum Å, fraction) between real LAMOST spectra and their
best-fitting MILES templates around H-alpha, measured on the dev files only (median over the 33
stars, H-alpha ±14 Å interpolated over, smoothed by 8 Å): a 1 % depression at 6440-6530 Å where
the weak 6500 Å telluric water band lies (LAMOST does not correct it) and a 1 % rise across
H-alpha (the flux calibration's response near the standards' H-alpha; shallower real wings).
Each spectrum gets it times N(1, 0.5); the holdout files show the same shape at 60 %."""
_RESPONSE_WAVE, _RESPONSE_VALUE = np.array(WINDOW_RESPONSE).T.copy()

ANDMASK_BITS = (1, 2, 4, 8, 16)
NODATA = 32

PLATE_RIPPLE = 0.015
"""Amplitude (fraction, normal sigma) of each of a plate's four smooth response bumps in the
window (Gaussians 15-60 Å wide): the spectrograph's and flux calibration's own shape on that
plate, on top of the shared `WINDOW_RESPONSE`. Assumption sized to the realism benchmark's plate
yardstick (real F-G-K stars of one plate are told from other plates' with AUC 0.95-0.99, from
other fibres of their own plate at 0.5)."""
PLATE_SKY_SHIFT_AA = 0.4
"""Sigma (Å) of a plate's offset between the subtracted sky model and the object's sky lines,
which sets the shape of the derivative-like residuals (assumption: a sixth of a pixel)."""
PLATE_SHARE = 0.8
"""Share of the per-spectrum spread of response weight, flux-calibration slopes, resolving
power and sky-residual size that the plate sets (all its fibres alike); the rest is per fibre."""


@lru_cache(maxsize=256)
def plate_systematics(seed: int, release: str, plate: int) -> dict[str, Any]:
    """What all spectra of one plate share (`Population.plate_systematics`): deterministic.

    The sky-subtraction residual (size, sign, the sky model's wavelength
    offset, the under-subtracted excess), the spectrograph response (weight of
    `WINDOW_RESPONSE`, a plate's own smooth bumps, `PLATE_RIPPLE`), the flux
    calibration's slopes and the resolving power. Plates differ as these draws do.
    """
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(entropy=int(seed), spawn_key=(2, 10**9 + plate)))
    )
    return {
        "plate": plate,
        "response_weight": float(rng.normal(1.0, RESPONSE_SPREAD)),
        "bumps": tuple(
            (float(rng.uniform(6450.0, 6800.0)), float(rng.uniform(15.0, 60.0)), float(a))
            for a in rng.normal(0.0, PLATE_RIPPLE, 4)
        ),
        "flux_cal": (float(rng.normal(0.0, 0.15)), float(rng.normal(0.0, 0.10))),
        "resolving_power": float(np.clip(rng.normal(*RESOLVING_POWER), 1050.0, 1800.0)),
        "sky_log_factor": float(rng.normal(0.0, SKY_RESIDUAL_SPREAD)),
        "sky_sign": 1.0 if rng.random() < 0.85 else -1.0,
        "sky_shift_aa": float(rng.normal(0.0, PLATE_SKY_SHIFT_AA)),
        "sky_excess_factor": float(math.exp(rng.normal(0.0, 0.4))),
    }


def _with_plate(own: float, plate: float, mean: float) -> float:
    """A fibre's value: the plate's, plus the rest of the spread drawn for the fibre."""
    return plate + math.sqrt(1.0 - PLATE_SHARE) * (own - mean)


@lru_cache(maxsize=8)
def grid(release: str) -> np.ndarray:
    """Vacuum wavelengths (Å) of a release's pixels (read-only)."""
    wave = 10.0 ** (COEFF0 + COEFF1 * np.arange(N_PIXELS[release]))
    wave.setflags(write=False)
    return wave


@dataclass(frozen=True)
class _GridInfo:
    """Per-release constants of the LAMOST grid, computed once."""

    wave: np.ndarray
    pixel: np.ndarray
    pixel_mastar: np.ndarray
    x: np.ndarray
    extinction_term: np.ndarray
    rband: slice
    splice: slice
    window: slice
    window_pixels: np.ndarray
    dib_offset_aa: float
    throughput: np.ndarray
    sky_pixels: np.ndarray
    sky_offsets_aa: np.ndarray
    sky_residual_span: slice
    halpha_span: slice
    snr_band_edges: tuple[int, ...]


@lru_cache(maxsize=8)
def _grid_info(release: str) -> _GridInfo:
    wave = grid(release)
    templates = load_templates()
    a_per_ebv = physics.ccm_extinction_mag(wave, ebv=1.0)
    a_halpha = float(physics.ccm_extinction_mag(np.array([HALPHA_VACUUM_AA]), ebv=1.0)[0])
    offset = round((math.log10(templates.mastar_wave[0]) - COEFF0) / COEFF1)

    def span(lo: float, hi: float) -> slice:
        a, b = np.searchsorted(wave, (lo, hi))
        return slice(int(a), int(b))

    window = span(6519.0, 6732.0)
    throughput = np.array(THROUGHPUT)
    sky_pixels = np.clip(
        np.searchsorted(wave, SKY_LINES_VAC_AA)[:, None] + np.arange(-8, 9)[None, :],
        0,
        wave.size - 1,
    )
    return _GridInfo(
        wave=wave,
        pixel=np.arange(wave.size, dtype=np.float64),
        pixel_mastar=np.arange(templates.mastar_wave.size, dtype=np.float64) + offset,
        x=(wave - 6500.0) / 2500.0,
        extinction_term=-0.4 * math.log(10.0) * (a_per_ebv - a_halpha),
        rband=span(5500.0, 6900.0),
        splice=span(6200.0, 6860.0),
        window=window,
        window_pixels=np.arange(window.start, window.stop),
        dib_offset_aa=float(air_to_vacuum(physics.DIB_6614_AIR_AA) - physics.DIB_6614_AIR_AA),
        throughput=np.interp(wave, throughput[:, 0], throughput[:, 1]),
        sky_pixels=sky_pixels,
        sky_offsets_aa=wave[sky_pixels] - SKY_LINES_VAC_AA[:, None],
        sky_residual_span=span(6450.0, 6750.0),
        halpha_span=span(HALPHA_VACUUM_AA - 40.0, HALPHA_VACUUM_AA + 40.0),
        snr_band_edges=tuple(np.searchsorted(wave, _SNR_BAND_EDGES).tolist()),
    )


@lru_cache(maxsize=1024)
def _window_broad_mean(k: int) -> float:
    """Mean of the star's broad shape over the MILES window (to scale the window onto it)."""
    templates = load_templates()
    return float(np.interp(templates.wave_vac, templates.mastar_wave, _broad_shape(k)).mean())


@lru_cache(maxsize=1024)
def _broad_shape(k: int) -> np.ndarray:
    shape = load_templates().broad_shape(k)
    shape.setflags(write=False)
    return shape


@dataclass
class LamostSpectrum:
    """One simulated LAMOST spectrum: arrays as the pipeline writes them, header values, truth."""

    index: int
    release: str
    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    andmask: np.ndarray
    ormask: np.ndarray
    continuum: np.ndarray
    header: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """File name without extension (``spec-LMJD-PLANID_spSS-FFF``)."""
        return str(self.header["FILENAME"])[: -len(".fits")]

    @property
    def relpath(self) -> str:
        """Path inside an archive tree: ``YYYYMMDD/PLANID/spec-....fits``."""
        return f"{self.header['_night']}/{self.header['PLANID']}/{self.header['FILENAME']}"


# --- plates, ids and positions -----------------------------------------------------------


@lru_cache(maxsize=64)
def _plate(seed: int, release: str, plate: int) -> dict[str, Any]:
    """Plate-level values: centre, plan id, night, observing conditions (deterministic)."""
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(entropy=int(seed), spawn_key=(1, 10**9 + plate)))
    )
    ra0 = float(rng.uniform(0.0, 360.0))
    dec0 = float(
        np.degrees(np.arcsin(rng.uniform(math.sin(math.radians(-8)), math.sin(math.radians(62)))))
    )
    lmjd = FIRST_LMJD[release] + plate % NIGHTS
    sign = "N" if dec0 >= 0 else "S"
    if release in ("dr1", "dr2"):
        planid = f"GAC{ra0:03.0f}{sign}{abs(dec0):02.0f}V{1 + plate // NIGHTS}"
    else:
        hh, mm, ss = _sexagesimal(ra0 / 15.0)
        dd, dm, ds = _sexagesimal(abs(dec0))
        kind = "BMF"[int(rng.integers(3))]
        position = f"{hh:02d}{mm:02d}{int(ss):02d}{sign}{dd:02d}{dm:02d}{int(ds):02d}"
        planid = f"HD{position}{kind}{1 + plate // NIGHTS:02d}"
    night = datetime(1858, 11, 17) + timedelta(days=lmjd)
    start_utc = night - timedelta(days=1) + timedelta(hours=float(rng.uniform(12.5, 18.0)))
    return {
        "ra0": ra0,
        "dec0": dec0,
        "lmjd": lmjd,
        "planid": planid,
        "night": night.strftime("%Y%m%d"),
        "start": start_utc,
        "nexp": int(rng.integers(2, 5)),
        "expt": float(rng.choice([600.0, 900.0, 1200.0, 1800.0])),
        "seeing": float(rng.uniform(2.0, 4.5)),
        "moon": float(rng.uniform(0.0, 29.5)),
        "helio": float(rng.uniform(-30.0, 30.0)),
        "skychi2": float(rng.uniform(1.5, 3.0)),
        "temp": float(rng.uniform(-10.0, 25.0)),
    }


def _sexagesimal(value: float) -> tuple[int, int, float]:
    whole = int(value)
    minutes = (value - whole) * 60.0
    return whole, int(minutes), (minutes - int(minutes)) * 60.0


def designation(ra: float, dec: float) -> str:
    """``LAMOST Jhhmmss.ss+ddmmss.s`` (truncated, as IAU designations are)."""
    hh, mm, ss = _sexagesimal(ra / 15.0)
    dd, dm, ds = _sexagesimal(abs(dec))
    sign = "+" if dec >= 0 else "-"
    ra_text = f"{hh:02d}{mm:02d}{math.floor(ss * 100) / 100:05.2f}"
    dec_text = f"{dd:02d}{dm:02d}{math.floor(ds * 10) / 10:04.1f}"
    return f"LAMOST J{ra_text}{sign}{dec_text}"


# --- the spectrum ------------------------------------------------------------------------


def simulate_one(
    index: int, *, seed: int, population: Population, release: str = "dr1"
) -> LamostSpectrum:
    """Simulate LAMOST spectrum ``index`` (depends only on seed, population and index)."""
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, not {release!r}")
    templates = load_templates()
    rs = streams(seed, "lamost", index)
    star = _draw_star(rs.star, templates, index=index, seed=seed, population=population)
    plate = None
    if population.plate_systematics:
        plate = plate_systematics(seed, release, index // population.fibres_per_plate)
        _apply_plate(star, plate)
    g = _grid_info(release)
    model, continuum, line_only, ew_emission = _model(templates, star, g, plate)
    sigma_kms = C_KMS / star.resolving_power / FWHM_PER_SIGMA
    noisy = _observe(
        rs.noise,
        g,
        model,
        line_only,
        continuum,
        snr=star.snr,
        flux_level=star.flux_level,
        line=star.line,
        sigma_kms=sigma_kms,
        plate=plate,
    )
    ws = g.splice
    ew_net = equivalent_width_aa(
        g.wave[ws], model[ws] / continuum[ws], line_aa=HALPHA_VACUUM_AA * (1 + star.rv / C_KMS)
    )
    header = _header_values(
        rs.meta,
        seed=seed,
        index=index,
        release=release,
        templates=templates,
        k=star.k,
        label=star.label,
        rv=star.rv,
        noisy=noisy,
        g=g,
        flux_level=star.flux_level,
        fibres_per_plate=population.fibres_per_plate,
    )
    truth = _truth(templates, star, noisy, g, ew_net=ew_net, ew_emission=ew_emission)
    if plate is not None:
        truth["plate"] = plate["plate"]
        truth["plate_sky_shift_aa"] = plate["sky_shift_aa"]
    return LamostSpectrum(
        index=index,
        release=release,
        wave=g.wave,
        flux=noisy["flux"],
        ivar=noisy["ivar"],
        andmask=noisy["andmask"],
        ormask=noisy["ormask"],
        continuum=continuum,
        header=header,
        truth=truth,
    )


@dataclass
class _Star:
    """What is drawn for one spectrum before it is observed: the star, its line and the
    instrument's state (resolving power, flux calibration, window response)."""

    label: str
    profile: str
    k: int
    snr: float
    rv: float
    resolving_power: float
    ebv: float
    line: LineParams
    flux_level: float
    cal: tuple[float, float]
    response_weight: float


def _draw_star(
    rng: np.random.Generator, templates: Any, *, index: int, seed: int, population: Population
) -> _Star:
    """Draw spectrum ``index``'s class, template, S/N, velocity, resolution, reddening, line
    and calibration from its star stream (in this order)."""
    label = class_of(index, seed=seed, mix=population.mix)
    profile = noise_profile(rng, archive="lamost") if label == "noise" else label
    types = population.types["absorption" if profile not in population.types else profile]
    k = choose_template(rng, templates, types, archive="lamost", teff_values=population.teff_values)
    default_snr = lognormal_mixture(rng, LAMOST_SNR_LOGNORMAL)
    snr = draw_snr(rng, population, label=label, default=default_snr)
    rv = clamp(rng.normal(*RADIAL_VELOCITY_KMS), -250.0, 250.0)
    resolving_power = clamp(rng.normal(*RESOLVING_POWER), 1000.0, 1900.0)
    ebv = float(min(rng.exponential(0.12), 1.5))
    line = draw_line(rng, profile, style=LINES, snr=snr, weak=label == "noise")
    flux_level = 3.0 * snr**1.3 * math.exp(rng.normal(0.0, 0.3))
    cal = (float(rng.normal(0.0, 0.15)), float(rng.normal(0.0, 0.10)))
    response_weight = float(rng.normal(1.0, RESPONSE_SPREAD))
    return _Star(
        label=label,
        profile=profile,
        k=k,
        snr=snr,
        rv=rv,
        resolving_power=resolving_power,
        ebv=ebv,
        line=line,
        flux_level=flux_level,
        cal=cal,
        response_weight=response_weight,
    )


def _apply_plate(star: _Star, plate: dict[str, Any]) -> None:
    """Pull the star's window response, flux calibration and resolving power towards its
    plate's (`plate_systematics`)."""
    star.response_weight = _with_plate(star.response_weight, plate["response_weight"], 1.0)
    star.cal = (
        _with_plate(star.cal[0], plate["flux_cal"][0], 0.0),
        _with_plate(star.cal[1], plate["flux_cal"][1], 0.0),
    )
    star.resolving_power = float(
        np.clip(
            _with_plate(star.resolving_power, plate["resolving_power"], RESOLVING_POWER[0]),
            1000.0,
            1900.0,
        )
    )


def _model(
    templates: Any, star: _Star, g: _GridInfo, plate: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The noiseless spectrum on the release's grid, its continuum and its added line, in
    flux units; and the emission's EW (Å) as added."""
    wave = g.wave
    window, added, ew_emission = _window_flux(templates, star.k, star.line, star.resolving_power)
    z = star.rv / C_KMS
    broad = np.interp(g.pixel - math.log10(1.0 + z) / COEFF1, g.pixel_mastar, _broad_shape(star.k))
    scale = float(_window_broad_mean(star.k) / window.mean())
    ws = g.splice
    rest = wave[ws] / (1.0 + z)
    ramp = np.clip((rest - 6215.0) / 40.0, 0.0, 1.0) * np.clip((6840.0 - rest) / 40.0, 0.0, 1.0)
    model = broad.copy()
    model[ws] = (1.0 - ramp) * broad[ws] + ramp * scale * np.interp(
        rest, templates.wave_vac, window
    )
    continuum = broad.copy()
    continuum[ws] = (1.0 - ramp) * broad[ws] + ramp * scale * np.interp(
        rest, templates.wave_vac, templates.continuum[star.k]
    )
    line_only = np.zeros_like(model)
    line_only[ws] = ramp * scale * np.interp(rest, templates.wave_vac, added)
    shaping = _shaping(star, g, plate)
    model *= shaping
    norm = star.flux_level / float(model[g.rband].mean())
    model *= norm
    continuum *= shaping * norm
    line_only *= shaping * norm
    return model, continuum, line_only, ew_emission


def _shaping(star: _Star, g: _GridInfo, plate: dict[str, Any] | None) -> np.ndarray:
    """What multiplies the star's flux on its way: reddening, flux calibration, the window's
    response (and the plate's bumps), the 6614 Å band."""
    wave, ws = g.wave, g.splice
    cal = star.cal
    shaping = np.exp(star.ebv * g.extinction_term + cal[0] * g.x + cal[1] * g.x * g.x)
    shaping[ws] *= 1.0 + star.response_weight * np.interp(
        wave[ws], _RESPONSE_WAVE, _RESPONSE_VALUE, 0.0, 0.0
    )
    if plate is not None:
        for centre, width, amplitude in plate["bumps"]:
            shaping[ws] *= 1.0 + amplitude * np.exp(-0.5 * ((wave[ws] - centre) / width) ** 2)
    shaping[ws] *= physics.dib_transmission(
        wave[ws] - g.dib_offset_aa,
        ebv=star.ebv,
        sigma_aa=HALPHA_VACUUM_AA / star.resolving_power / FWHM_PER_SIGMA,
    )
    return shaping


def _truth(
    templates: Any,
    star: _Star,
    noisy: dict[str, Any],
    g: _GridInfo,
    *,
    ew_net: float,
    ew_emission: float,
) -> dict[str, Any]:
    """The truth row's drawn values, in truth.csv's column order."""
    return {
        **template_truth(templates, star.k, label=star.label, profile=star.profile),
        "rv_kms": star.rv,
        "vsini_extra_kms": 0.0,
        "resolving_power": star.resolving_power,
        "ebv": star.ebv,
        "snr": star.snr,
        "halpha_ew_aa": ew_net,
        "emission_ew_aa": ew_emission,
        **star.line.as_truth(),
        "flux_cal_c1": star.cal[0],
        "flux_cal_c2": star.cal[1],
        "window_response_weight": star.response_weight,
        **{
            key: value
            for key, value in noisy.items()
            if key.startswith("defect_") or key.startswith("noise_")
        },
        "window_ivar_zero": int((noisy["ivar"][g.window] == 0).sum()),
    }


def _window_flux(
    templates: Any, k: int, line: LineParams, resolving_power: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """The MILES window at LAMOST's resolution plus the H-alpha line (rest frame, air grid)."""
    fwhm_inst = HALPHA_AIR_AA / resolving_power
    kernel_sigma_aa = math.sqrt(max(fwhm_inst**2 - MILES_FWHM_AA**2, 0.01)) / FWHM_PER_SIGMA
    step = float(templates.wave_air[1] - templates.wave_air[0])
    flux = gaussian_filter1d(templates.flux[k], kernel_sigma_aa / step, mode="nearest")
    continuum = templates.continuum[k]
    velocity = C_KMS * (templates.wave_air / HALPHA_AIR_AA - 1.0)
    photosphere = np.interp(VELOCITY_GRID_KMS, velocity, flux / continuum)
    addition, ew = line_addition(
        line, photosphere, instrument_sigma_kms=C_KMS / resolving_power / FWHM_PER_SIGMA
    )
    added = continuum * np.interp(velocity, VELOCITY_GRID_KMS, addition, left=0.0, right=0.0)
    return flux + added, added, ew


def _observe(
    rng: np.random.Generator,
    g: _GridInfo,
    model: np.ndarray,
    line_only: np.ndarray,
    continuum: np.ndarray,
    *,
    snr: float,
    flux_level: float,
    line: LineParams,
    sigma_kms: float,
    plate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Noise, ivar, masks and the pipeline's traces for a noiseless model.

    ``plate`` (`plate_systematics`) makes the sky residual the plate's.
    """
    frame, out = _noisy_frame(rng, g, model, snr=snr, flux_level=flux_level, sigma_kms=sigma_kms)
    out["defect_sky_residual"] = _add_sky_residuals(
        rng, frame, continuum, snr=snr, sigma_kms=sigma_kms, plate=plate
    )
    out["defect_cosmic_rays"] = _add_cosmic_rays(rng, frame)
    out["defect_ivar_zero_peak"] = _zero_ivar_at_emission(
        rng, frame, model, line_only, continuum, line
    )
    out["defect_ivar_zero_scattered"] = _zero_ivar_scattered(rng, frame)
    out["defect_masked_pixels"] = _mask_run(rng, frame)
    _clip_pipeline_edges(rng, frame, snr)
    out["defect_red_end_lost_aa"] = _lose_red_end(rng, frame)
    out.update(flux=frame.flux, ivar=frame.ivar, andmask=frame.andmask, ormask=frame.ormask)
    return out


@dataclass
class _Frame:
    """A spectrum being observed on its release's grid: flux and its noise sigma, ivar and
    the masks; the pipeline's traces are added to it in place."""

    grid: _GridInfo
    flux: np.ndarray
    sigma: np.ndarray
    ivar: np.ndarray
    andmask: np.ndarray
    ormask: np.ndarray

    @property
    def wave(self) -> np.ndarray:
        """The pixels' vacuum wavelengths (Å)."""
        return self.grid.wave

    @property
    def window(self) -> np.ndarray:
        """The pixels of the H-alpha window, 6519-6732 Å."""
        return self.grid.window_pixels


def _noisy_frame(
    rng: np.random.Generator,
    g: _GridInfo,
    model: np.ndarray,
    *,
    snr: float,
    flux_level: float,
    sigma_kms: float,
) -> tuple[_Frame, dict[str, Any]]:
    """The model with correlated noise scaled to ``snr`` and the ivar the pipeline states;
    the noise's drawn parameters (``noise_*``)."""
    n = g.wave.size
    scale = float(rng.uniform(*NOISE_SCALE))
    corr = float(rng.uniform(*NOISE_CORRELATION_PX))
    beta = clamp(
        math.exp(rng.uniform(math.log(0.1), math.log(1.0))) * 30.0 / max(snr, 0.5), 0.02, 30.0
    )
    sky_lines = _sky_lines(g, sigma_kms)
    sky = beta * flux_level * (1.0 + 4.0 * sky_lines)
    # Counts are flux x throughput: the noise in flux units is sqrt(counts) / throughput.
    variance = (np.clip(model, 0.0, None) + sky) / g.throughput
    rband = g.rband
    c = finite_median(model[rband] / np.sqrt(variance[rband])) / snr
    sigma = c * np.sqrt(variance)
    flux = model + scale * sigma * correlated_normal(rng, n, sigma_px=corr)
    frame = _Frame(
        grid=g,
        flux=flux,
        sigma=sigma,
        ivar=1.0 / sigma**2 / _pipeline_sigma_excess(g, sigma_kms),
        andmask=np.zeros(n),
        ormask=np.zeros(n),  # no BRIGHTSKY at sky lines: none of the 87 bundled real files has it
    )
    return frame, {"noise_scale": scale, "noise_correlation_px": corr, "noise_sky_ratio": beta}


def _add_sky_residuals(
    rng: np.random.Generator,
    frame: _Frame,
    continuum: np.ndarray,
    *,
    snr: float,
    sigma_kms: float,
    plate: dict[str, Any] | None,
) -> float:
    """Sky-subtraction residuals: derivative-shaped (the subtracted sky sits slightly blueward
    of the object's own), at every sky line near H-alpha including H-alpha itself; returns
    their signed amplitude."""
    wave = frame.wave
    log_factor = rng.normal(0.0, SKY_RESIDUAL_SPREAD)
    sign = 1.0 if rng.random() < 0.85 else -1.0
    shift, excess_factor = 0.0, 1.0
    if plate is not None:
        log_factor = _with_plate(log_factor, plate["sky_log_factor"], 0.0)
        sign, shift = plate["sky_sign"], plate["sky_shift_aa"]
        excess_factor = plate["sky_excess_factor"]
    amplitude = SKY_RESIDUAL_AMPLITUDE * math.exp(log_factor) * (30.0 / max(snr, 3.0)) ** 0.8
    span = frame.grid.sky_residual_span  # 6450-6750 Å
    # Every line's shape at once (lines x pixels), then added line by line as before.
    x = (wave[span] - _SKY_RESIDUAL_CENTRES[:, None] - shift) / (
        _SKY_RESIDUAL_CENTRES[:, None] * sigma_kms / C_KMS
    )
    excess = _SKY_RESIDUAL_EXCESS[:, None] * excess_factor
    shapes = sign * _SKY_RESIDUAL_FACTORS[:, None] * x * np.exp(0.5 - 0.5 * x * x)
    shapes += excess * np.exp(-0.5 * x * x)
    shapes *= amplitude
    shapes *= continuum[span]
    flux = frame.flux[span]
    for shape in shapes:
        flux += shape
    return sign * amplitude


def _add_cosmic_rays(rng: np.random.Generator, frame: _Frame) -> int:
    """Cosmic-ray spikes surviving the co-add; returns how many fell in the window.

    An assumption: none of the 33 dev spectra shows one in the window, so 2 % of
    spectra have 1-2 there, and Poisson(1) over the whole range.
    """
    flux, sigma = frame.flux, frame.sigma
    spikes = 0
    if rng.random() < 0.02:
        spikes = int(rng.integers(1, 3))
        for at in rng.choice(frame.window, size=spikes, replace=False):
            flux[at] += rng.uniform(5.0, 25.0) * sigma[at]
    elsewhere = rng.poisson(1.0)
    for at in rng.integers(0, frame.wave.size, size=elsewhere):
        flux[at] += rng.uniform(5.0, 25.0) * sigma[at]
    return spikes


def _zero_ivar_at_emission(
    rng: np.random.Generator,
    frame: _Frame,
    model: np.ndarray,
    line_only: np.ndarray,
    continuum: np.ndarray,
    line: LineParams,
) -> int:
    """ivar = 0 where strong emission rises above the continuum; returns the pixels zeroed.

    The real pipeline's habit: in both real emission stars every pixel more
    than 4-15 % above it, flux kept, no mask.
    """
    ivar = frame.ivar
    peak_zero = 0
    if line.kind in ("single", "disc") and line.net_height >= 0.3 and rng.random() < 0.7:
        near_line = (line_only != 0) & (continuum > 0)
        excess = np.where(near_line, model / np.where(continuum > 0, continuum, 1.0) - 1.0, 0.0)
        threshold = rng.uniform(0.04, 0.15)
        hit = excess > threshold
        peak_zero = int(hit.sum())
        edges = np.flatnonzero(np.diff(hit.astype(np.int8)) != 0)
        for e in edges:
            for j in (e, e + 1):
                if not hit[j]:
                    ivar[j] *= 0.1
        ivar[hit] = 0.0
    return peak_zero


def _zero_ivar_scattered(rng: np.random.Generator, frame: _Frame) -> int:
    """Scattered ivar = 0 pixels in the window (8 % of spectra; the dev/holdout files show 3-5)."""
    scattered = 0
    if rng.random() < 0.08:
        scattered = int(rng.integers(1, 6))
        frame.ivar[rng.choice(frame.window, size=scattered, replace=False)] = 0.0
    return scattered


def _mask_run(rng: np.random.Generator, frame: _Frame) -> int:
    """A masked run in the window (2 %): ANDMASK and ORMASK set, ivar = 0, flux kept."""
    masked = 0
    if rng.random() < 0.02:
        window = frame.window
        masked = int(rng.integers(2, 11))
        start = int(rng.integers(window[0], window[-1] - masked))
        bit = float(rng.choice(ANDMASK_BITS))
        frame.andmask[start : start + masked] = bit
        frame.ormask[start : start + masked] = bit
        frame.ivar[start : start + masked] = 0.0
    return masked


def _clip_pipeline_edges(rng: np.random.Generator, frame: _Frame, snr: float) -> None:
    """Pipeline edges: ivar = 0 runs at the blue end (longer at low S/N), in the A band and
    5-pixel clips outside the window; zero flux and ivar at the last pixels."""
    wave, ivar, window = frame.wave, frame.ivar, frame.window
    blue = int(clamp(rng.exponential(40.0 * 30.0 / max(snr, 1.0)), 0, 600))
    ivar[:blue] = 0.0
    if rng.random() < 0.3:
        ivar[(wave > 7581.0) & (wave < 7679.0)] = 0.0
    for at in rng.integers(0, wave.size - 5, size=rng.poisson(6.0)):
        if not (window[0] - 5 <= at <= window[-1]):
            ivar[at : at + 5] = 0.0
    tail = int(rng.integers(2, 20))
    frame.flux[-tail:] = 0.0
    ivar[-tail:] = 0.0


def _lose_red_end(rng: np.random.Generator, frame: _Frame) -> float:
    """A red arm that lost its end (0.5 %): zero flux from 6620-6720 Å on, NODATA; returns
    where it starts (Å), 0 when it did not happen."""
    lost = 0.0
    if rng.random() < 0.005:
        lost = float(rng.uniform(6620.0, 6720.0))
        gone = frame.wave > lost
        frame.flux[gone] = 0.0
        frame.ivar[gone] = 0.0
        frame.andmask[gone] = NODATA
        frame.ormask[gone] = NODATA
    return lost


# --- header ------------------------------------------------------------------------------


THROUGHPUT = (
    (3700.0, 0.25),
    (4000.0, 0.5),
    (4500.0, 0.8),
    (5000.0, 0.9),
    (5500.0, 0.7),
    (5800.0, 0.3),
    (5950.0, 0.25),
    (6150.0, 0.45),
    (6400.0, 0.85),
    (6600.0, 1.0),
    (7600.0, 1.0),
    (8500.0, 0.75),
    (9100.0, 0.45),
)
"""Relative throughput of telescope + spectrograph (Å, fraction): two arms meeting at the
dichroic near 5900 Å (Cui et al. 2012). The shape is an assumption, scaled so that, as in the
dev files, the ivar-based S/N in 6519-6732 Å is about 1.3 x SN_R (the r-band median, which
includes the dichroic's low-throughput 5500-6100 Å)."""


def _band_snr(snr: np.ndarray, good: np.ndarray, a: int, b: int) -> float:
    """The (upper) median of the per-pixel S/N ``snr`` over the ``good`` pixels of a:b."""
    values = snr[a:b][good[a:b]]
    if not values.size:
        return 0.0
    middle = values.size // 2
    return float(np.partition(values, middle)[middle])  # without np.median's overhead


def _pipeline_sigma_excess(g: _GridInfo, sigma_kms: float) -> np.ndarray:
    """Squared ratio of the pipeline's sigma to the flux's within 40 Å of H-alpha (1 elsewhere)."""
    out = np.ones(g.wave.size)
    near = g.halpha_span
    for centre, ratio in PIPELINE_SIGMA_NEAR_HALPHA:
        x = (g.wave[near] - centre) / (centre * sigma_kms / C_KMS)
        out[near] += (ratio**2 - 1.0) * np.exp(-0.5 * x * x)
    return out


def _sky_lines(g: _GridInfo, sigma_kms: float) -> np.ndarray:
    """Night-sky lines at the instrument's resolution, peak 1 per unit `SKY_LINE_STRENGTH`."""
    sigma_aa = SKY_LINES_VAC_AA[:, None] * sigma_kms / C_KMS
    shapes = np.exp(-0.5 * (g.sky_offsets_aa / sigma_aa) ** 2)
    # Summed pixel by pixel in the order of the lines (as np.add.at adds), 20x faster.
    return np.bincount(
        g.sky_pixels.ravel(),
        weights=(SKY_LINE_STRENGTH[:, None] * shapes).ravel(),
        minlength=g.wave.size,
    )


def _header_values(
    rng: np.random.Generator,
    *,
    seed: int,
    index: int,
    release: str,
    templates: Any,
    k: int,
    label: str,
    rv: float,
    noisy: dict[str, Any],
    g: _GridInfo,
    flux_level: float,
    fibres_per_plate: int = FIBRES_PER_PLATE,
) -> dict[str, Any]:
    """Header values of spectrum ``index``: its plate, fibre, position, times, magnitudes,
    the pipeline's class and redshift, the S/N per band (drawn from ``rng`` in this order)."""
    plate_no, slot = divmod(index, fibres_per_plate)
    plate = _plate(seed, release, plate_no)
    spid, fibre = divmod(slot, 250)
    spid += 1
    fibre += 1
    ra, dec = _fibre_position(rng, plate)
    bands = _band_snrs(g, noisy["flux"], noisy["ivar"])
    mag_r = 17.0 - 2.5 * math.log10(max(flux_level, 1e-3) / 300.0) + rng.normal(0.0, 0.15)
    poor = bands["R"] < 4.0
    start = plate["start"] + timedelta(seconds=float(rng.uniform(0, 60)))
    middle = start + timedelta(seconds=plate["nexp"] * plate["expt"] / 2.0)
    return {
        "_night": plate["night"],
        "FILENAME": f"spec-{plate['lmjd']}-{plate['planid']}_sp{spid:02d}-{fibre:03d}.fits",
        "OBSID": 100_000_000 + (plate["lmjd"] - 55000) * 100_000 + spid * 1000 + fibre,
        "DATE-OBS": middle.strftime("%Y-%m-%dT%H:%M:%S.") + f"{middle.microsecond // 10000:02d}",
        "DATE-BEG": (start + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S.0"),
        "DATE-END": (
            start + timedelta(hours=8, seconds=plate["nexp"] * plate["expt"] + 300)
        ).strftime("%Y-%m-%dT%H:%M:%S.0"),
        "LMJD": plate["lmjd"],
        "MJD": plate["lmjd"] + 1,
        "PLANID": plate["planid"],
        "RA": ra,
        "DEC": dec,
        "DESIG": designation(ra, dec),
        "FIBERID": fibre,
        "SPID": spid,
        "SPRA": plate["ra0"],
        "SPDEC": plate["dec0"],
        "OBJNAME": f"{int(rng.integers(10**14, 10**15))}",
        "MAG": [
            99.0,
            round(mag_r + 0.6, 2),
            round(mag_r, 2),
            round(mag_r - 0.2, 2),
            99.0,
            99.0,
            99.0,
        ],
        "CELL_ID": f"{'ABCDEFGHJK'[int(rng.integers(10))]}{int(rng.integers(1000, 4000)):04d}",
        "X_VALUE": float(rng.uniform(-900.0, 900.0)),
        "Y_VALUE": float(rng.uniform(-900.0, 900.0)),
        "plate": plate,
        "CLASS": "Unknown" if poor else "STAR",
        "SUBCLASS": "Non" if poor else _subclass(templates, k),
        "Z": rv / C_KMS + rng.normal(0.0, 1e-5),
        "Z_ERR": abs(rng.normal(2e-5, 1e-5)),
        "SN": bands,
    }


def _fibre_position(rng: np.random.Generator, plate: dict[str, Any]) -> tuple[float, float]:
    """RA and Dec (deg) of a fibre drawn uniformly on the plate's 2.5 deg radius."""
    radius = 2.5 * math.sqrt(rng.random())
    angle = rng.uniform(0.0, 2.0 * math.pi)
    dec = clamp(plate["dec0"] + radius * math.sin(angle), -89.9, 89.9)
    ra = (plate["ra0"] + radius * math.cos(angle) / max(math.cos(math.radians(dec)), 0.05)) % 360.0
    return ra, dec


SNR_BANDS_AA = {
    "U": (3700.0, 4000.0),
    "G": (4000.0, 5500.0),
    "R": (5500.0, 6900.0),
    "I": (6900.0, 8500.0),
    "Z": (8500.0, 9100.0),
}
"""The wavelength ranges (Å) of the header's S/N per band."""
_SNR_BAND_EDGES = np.array([edge for band in SNR_BANDS_AA.values() for edge in band])


def _band_snrs(g: _GridInfo, flux: np.ndarray, ivar: np.ndarray) -> dict[str, float]:
    """The S/N of each band of `SNR_BANDS_AA`, as the header states them."""
    good = ivar > 0
    snr = flux * np.sqrt(np.where(good, ivar, 0.0))
    edges = g.snr_band_edges
    return {
        band: _band_snr(snr, good, *edges[2 * i : 2 * i + 2]) for i, band in enumerate(SNR_BANDS_AA)
    }


def _subclass(templates: Any, k: int) -> str:
    """The pipeline's subclass of template ``k``: its type, with a luminosity class for A and B."""
    subclass = str(templates.subclass[k])
    if subclass[0] in "AB":
        subclass += "V" if templates.logg[k] > 3.9 else "IV" if templates.logg[k] > 3.5 else "III"
    return subclass


def _f(value: float, decimals: int) -> Raw:
    return Raw(f"{value:.{decimals}f}")


class _Card(NamedTuple):
    """One card of the LAMOST primary header as data: ``value`` is a constant or a function
    of the `_CardContext`; written only for ``releases``."""

    keyword: str
    value: Any = None
    comment: str = ""
    releases: tuple[str, ...] = RELEASES


@dataclass(frozen=True)
class _CardContext:
    """What card values are made from: the header values, the plate, the release."""

    h: dict[str, Any]
    plate: dict[str, Any]
    release: str

    @property
    def dr1(self) -> bool:
        """True for DR1, whose headers differ most."""
        return self.release == "dr1"


def _h(key: str, decimals: int | None = None, dr1_decimals: int | None = None) -> Any:
    """Header value ``key``, formatted with ``decimals`` (``dr1_decimals`` in DR1) when given."""
    if decimals is None:
        return lambda c: c.h[key]
    return lambda c: _f(c.h[key], dr1_decimals if c.dr1 and dr1_decimals else decimals)


def _p(key: str, decimals: int) -> Any:
    """Plate value ``key`` with ``decimals``."""
    return lambda c: _f(c.plate[key], decimals)


def _dr1_or(dr1: Any, other: Any) -> Any:
    """``dr1`` in DR1 headers, else ``other``."""
    return lambda c: dr1 if c.dr1 else other


def _exposure(c: _CardContext) -> Raw:
    return _f(c.plate["expt"] * c.plate["nexp"], 2)


def _created(c: _CardContext) -> str:
    created = datetime(2013 + RELEASES.index(c.release) * 2, 11, 13, 1, 49, 27)
    return created.strftime("%Y-%m-%dT%H:%M:%S")


_NEW = ("dr6", "dr8")
_NOT_DR1 = ("dr2", "dr6", "dr8")

HEADER_CARDS = (
    _Card("EXTEND", True, "Extensions may be present", ("dr1",)),
    _Card("EXTEND", True, "", _NOT_DR1),
    _Card("", releases=_NOT_DR1),
    _Card("COMMENT", comment="--------FILE INFORMATION"),
    _Card("FILENAME", _h("FILENAME")),
    _Card("OBSID", _h("OBSID"), "Unique number ID of this spectrum", _NEW),
    _Card("AUTHOR", "LAMOST Pipeline", "Who compiled the information"),
    _Card("DATA_V", lambda c: f"LAMOST {c.release.upper()}", "Data release version", _NEW),
    _Card("EXTEN0", "COADD", "The extension name of the coadded spectrum", ("dr8",)),
    _Card("N_EXTEN", 1, "The extension number", ("dr1",)),
    _Card("EXTEN0", "Flux Inverse Subcontinuum Andmask Ormask", releases=("dr1",)),
    _Card("EXTEN0", "Flux Inverse Wavelength Andmask Ormask", releases=("dr2",)),
    _Card("EXTEN0", "Flux, Inverse, Wavelength, Andmask, Ormask", releases=("dr6",)),
    _Card("N_EXTEN", 1, "The extension number", _NOT_DR1),
    _Card("EXTNAME", "Flux", "The extension name", ("dr2", "dr6")),
    _Card("ORIGIN", "NAOC-LAMOST", "Organization responsible for creating this file"),
    _Card("DATE", _created, "Time when this HDU is created (UTC)"),
    _Card("COMMENT", comment="--------TELESCOPE PARAMETERS"),
    _Card("TELESCOP", "LAMOST", "GuoShouJing Telescope"),
    _Card("LONGITUD", _dr1_or(_f(117.58, 3), _f(117.58, 2)), "[deg] Longitude of site"),
    _Card("LATITUDE", _dr1_or(_f(40.39, 4), _f(40.39, 2)), "[deg] Latitude of site"),
    _Card("FOCUS", 19964, "[mm] Telescope focus"),
    _Card("CAMPRO", "NEWCAM", "Camera program name"),
    _Card("CAMVER", "v2.0", "Camera program version"),
    _Card("COMMENT", comment="--------OBSERVATION PARAMETERS"),
    _Card("DATE-OBS", _h("DATE-OBS"), "The observation median UTC"),
    _Card("DATE-BEG", _h("DATE-BEG"), "The observation start local time"),
    _Card("DATE-END", _h("DATE-END"), "The observation end local time"),
    _Card("LMJD", _h("LMJD"), "Local Modified Julian Day"),
    _Card("MJD", _h("MJD"), "Modified Julian Day"),
    _Card("PLANID", _h("PLANID"), "Plan ID in use"),
    _Card("RA", _h("RA", 6, dr1_decimals=10), "[deg] Right ascension of object"),
    _Card("DEC", _h("DEC", 6, dr1_decimals=10), "[deg] Declination of object"),
    _Card("RA_OBS", _h("RA", 6), "[deg] Right ascension during observing", _NOT_DR1),
    _Card("DEC_OBS", _h("DEC", 6), "[deg] Declination during observing", _NOT_DR1),
    _Card("OFFSET", False, "Whether there's a offset during observing", _NOT_DR1),
    _Card("DESIG", _h("DESIG"), "Designation of LAMOST target"),
    _Card("FIBERID", _h("FIBERID"), "Fiber ID of Object"),
    _Card("CELL_ID", _h("CELL_ID"), "Fiber Unit ID on the focal plane"),
    _Card("X_VALUE", _h("X_VALUE", 9), "[mm] X coordinate of object on the focal plane"),
    _Card("Y_VALUE", _h("Y_VALUE", 9), "[mm] Y coordinate of object on the focal plane"),
    _Card("OBJNAME", _h("OBJNAME"), "Name of object"),
    _Card("OBJTYPE", "star", "Object type from input catalog"),
    _Card("OBJSOURC", "PILOT", "Name of input catalog"),
    _Card("T_INFO", "NULL", "Target information"),
    _Card("T_FROM", "NULL", "Target catalog"),
    _Card("FIBERTYP", "Obj", "Fiber type of object"),
    _Card("MAGTYPE", "ugrizjh", "Magnitude type of object"),
    *(
        _Card(f"MAG{i + 1}", lambda c, i=i: _f(c.h["MAG"][i], 2), f"[mag] Mag{i + 1} of object")
        for i in range(7)
    ),
    _Card("OBS_TYPE", "OBJ", "The type of target (OBJ, FLAT, ARC or BIAS)"),
    _Card("OBSCOMM", "Science", "Science, Test"),
    _Card("RADECSYS", "FK5", "Equatorial coordinate system"),
    _Card("EQUINOX", _f(2000.0, 2), "Equinox in years"),
    _Card("COMMENT", comment="--------SPECTROGRAPH PARAMETERS"),
    _Card("SPID", _h("SPID"), "Spectrograph ID"),
    _Card("SPRA", _h("SPRA", 4), "[deg] Average RA of this spectrograph"),
    _Card("SPDEC", _h("SPDEC", 4), "[deg] Average DEC of this spectrograph"),
    _Card("SLIT_MOD", "x2/3", "Slit mode, x1 ,x2/3 or x1/2"),
    _Card("COMMENT", comment="--------WEATHER CONDITION"),
    _Card("SEEING", _p("seeing", 2), "[arcsecond] Seeing during exposure"),
    _Card("MOONPHA", _p("moon", 2), "[day] Moon phase for a 29.53 days period"),
    _Card("TEMP_AIR", _p("temp", 2), "[deg] Temperature outside dome"),
    _Card("COMMENT", comment="--------DATA REDUCTION PARAMETERS"),
    _Card("SKYLIST", "skylines.dat", "Sky emission line list"),
    _Card("NEXP", lambda c: c.plate["nexp"], "Number of valid exposures"),
    _Card("NEXP_B", lambda c: c.plate["nexp"], "Number of valid blue exposures"),
    _Card("NEXP_R", lambda c: c.plate["nexp"], "Number of valid red exposures"),
    _Card("EXPT_B", _exposure, "[s] Blue exposure duration time"),
    _Card("EXPT_R", _exposure, "[s] Red exposure duration time"),
    _Card("EXPTIME", _exposure, "[s] Minimum of exposure time for all cameras"),
    _Card("EXTRACT", "aperture", "Extraction method"),
    _Card("SFLATTEN", True, "Super flat has been applied"),
    _Card("PCASKYSB", True, "PCA sky-subtraction has been applied"),
    _Card("NSKIES", 20, "Sky fiber number"),
    _Card("SKYCHI2", _p("skychi2", 2), "Mean chi^2 of sky-subtraction"),
    _Card("HELIO", True, "Heliocentric correction"),
    _Card("HELIO_RV", _p("helio", 5), "[km/s] Heliocentric correction"),
    _Card("VACUUM", True, "Wavelengths are in vacuum"),
    _Card("NWORDER", 2, "Number of linear-log10 coefficients"),
    _Card("WFITTYPE", "LOG-LINEAR", "Linear-log10 dispersion"),
    _Card(
        "COEFF0",
        _dr1_or(Raw("3.56820"), Raw("3.5682")),
        "Central wavelength (log10) of first pixel",
    ),
    _Card("COEFF1", _dr1_or(Raw("0.000100000"), Raw("0.0001")), "Log10 dispersion per pixel"),
    _Card("WAT0_001", "system=linear"),
    _Card("WAT1_001", "wtype=linear label=Wavelength units=Angstroms"),
    _Card(
        "CRVAL1",
        _dr1_or(Raw("3.56820"), Raw("3.5682")),
        "Central wavelength (log10) of first pixel",
    ),
    _Card("CD1_1", _dr1_or(Raw("0.000100000"), Raw("0.0001")), "Log10 dispersion per pixel"),
    _Card("CRPIX1", 1, "Starting pixel (1-indexed)"),
    _Card("CTYPE1", "LINEAR"),
    _Card("DC-FLAG", 1, "Log-linear flag"),
    _Card("COMMENT", comment="--------SPECTRA ANALYSIS RESULTS"),
    _Card("VERSPIPE", "v2.6.4", "Version of Pipeline", ("dr1",)),
    _Card("VERSPIPE", "2.7.5", "Version of Pipeline", ("dr2",)),
    _Card("VERSPIPE", "v2.9.7", "Version of Pipeline", _NEW),
    _Card("CLASS", _h("CLASS"), "Class of object"),
    _Card("SUBCLASS", _h("SUBCLASS"), "Subclass of object"),
    _Card("Z", _h("Z", 8), "Redshift of object"),
    _Card("Z_ERR", _h("Z_ERR", 8), "Redshift error of object"),
    *(
        _Card(
            f"SN_{band}",
            lambda c, band=band: _f(_cap(c.h["SN"][band], c.dr1), 2),
            f"SNR of {band.lower()} filter",
            ("dr1", "dr2"),
        )
        for band in "UGRIZ"
    ),
    *(
        _Card(
            f"SNR{band}",
            lambda c, band=band: _f(c.h["SN"][band], 2),
            f"SNR of {band.lower()} filter",
            _NEW,
        )
        for band in "UGRIZ"
    ),
)
"""The primary header after the axis cards, in the order and format of the real files of
each release (`header_cards`); the simulated-file card (`fitsbytes.synthetic_card`) follows."""


@lru_cache(maxsize=len(RELEASES))
def _release_cards(release: str) -> tuple[bytes | _Card, ...]:
    """A release's rows of `HEADER_CARDS`: constant cards written once, the rest to fill."""
    return tuple(
        row if callable(row.value) else card(row.keyword, row.value, row.comment)
        for row in HEADER_CARDS
        if release in row.releases
    )


def header_cards(spec: LamostSpectrum) -> list[bytes]:
    """The primary header after the axis cards, in the order and format of the real files."""
    context = _CardContext(h=spec.header, plate=spec.header["plate"], release=spec.release)
    cards = [
        row if isinstance(row, bytes) else card(row.keyword, row.value(context), row.comment)
        for row in _release_cards(spec.release)
    ]
    cards.append(fb.synthetic_card())
    return cards


def _cap(value: float, dr1: bool) -> float:
    """DR1 headers cap the S/N at 99 (the bundled DR1 files' SN_* never exceed 99.00)."""
    return min(value, 99.0) if dr1 else value


# --- files -------------------------------------------------------------------------------


_SUBCONTINUUM_BLOCK = 64


@lru_cache(maxsize=8)
def _subcontinuum_blocks(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel positions, block numbers and block centres of `subcontinuum` for ``n`` pixels."""
    width = _SUBCONTINUUM_BLOCK
    block = np.arange(-(-n // width))
    centres = block * width + np.minimum(width, n - block * width) / 2.0
    return np.arange(n), block, centres


def subcontinuum(flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DR1's Subcontinuum row: flux over a smooth upper continuum (80th percentile per 64 px)."""
    n = flux.size
    width = _SUBCONTINUUM_BLOCK
    pixels, block, centres = _subcontinuum_blocks(n)
    padded = np.full(block.size * width, -np.inf)
    padded[:n] = np.where(ivar > 0, flux, -np.inf)
    table = np.sort(padded.reshape(block.size, width), axis=1)
    good = np.isfinite(table).sum(axis=1)
    usable = good >= 8
    if usable.sum() < 2:
        return np.zeros(n), np.ones(n)
    pick = width - good + np.floor(0.8 * (good - 1)).astype(int)
    levels = table[block, np.clip(pick, 0, width - 1)]
    cont = np.interp(pixels, centres[usable], levels[usable])
    ratio = np.where(cont > 0, flux / np.where(cont > 0, cont, 1.0), 0.0)
    return ratio, cont


def file_bytes(spec: LamostSpectrum) -> bytes:
    """The FITS file of ``spec`` in its release's layout (uncompressed)."""
    release = spec.release
    cards = header_cards(spec)
    if release == "dr8":
        n = spec.wave.size
        columns = [
            ("FLUX", f"{n}E", spec.flux[None, :], ()),
            ("IVAR", f"{n}E", spec.ivar[None, :], ()),
            ("WAVELENGTH", f"{n}E", spec.wave[None, :], ()),
            ("ANDMASK", f"{n}E", spec.andmask[None, :], ()),
            ("ORMASK", f"{n}E", spec.ormask[None, :], ()),
            ("NORMALIZATION", f"{n}E", spec.continuum[None, :], ()),
        ]
        return fb.empty_primary(cards) + fb.bintable_hdu(
            columns,
            nrows=1,
            cards_after=[card("EXTNAME", "COADD", "name of this binary table extension")],
        )
    if release == "dr1":
        third, _ = subcontinuum(spec.flux, spec.ivar)
    else:
        third = spec.wave
    rows = (spec.flux, spec.ivar, third, spec.andmask, spec.ormask)
    # Converted once, straight to FITS' big-endian floats.
    image = np.empty((len(rows), spec.flux.size), ">f8" if release == "dr2" else ">f4")
    for row, values in zip(image, rows, strict=True):
        row[:] = values
    return fb.image_hdu(cards, image)


def to_spectrum(spec: LamostSpectrum, data: bytes, path: str | Path) -> Spectrum:
    """The `Spectrum` the project's reader makes of ``data`` (read from memory, same code)."""
    header, start = parse_header(data)
    fits_file = FitsFile(path=Path(path), data=data, header=header, data_start=start)
    return identify(fits_file).read(fits_file)


NOISE_SNR = (0.8, 4.0)
"""S/N of spectra labelled ``noise`` (log-uniform): too low to decide a profile
(assumption, as the thesis' hand-labelled LAMOST noise set)."""

NOISE_PROFILES = ((0.7, "absorption"), (0.95, "emission"), (1.0, "double-peak"))
"""The real profile under a noise-labelled spectrum: mostly ordinary stars."""

DWARF_FRACTION = {"O": 0.5, "B": 0.6, "A": 0.8, "F": 0.85, "G": 0.75, "K": 0.75, "M": 0.85}
"""Share of dwarfs (log g >= 3.8) per class: mostly dwarfs, giants a quarter of the G-K
stars (LAMOST DR1 stellar parameters, Luo et al. 2015, RAA 15, 1095; Wu et al. 2014), M stars
nearly all dwarfs (the dev files' K3-M2 stars look like dwarfs)."""

METALLICITY = (-0.2, 0.35)
"""[Fe/H] (mean, sigma) the templates are weighted to: LAMOST stars peak near -0.2 with most
between -1 and +0.4 (Luo et al. 2015)."""


def _nan_flux_file(spec: LamostSpectrum, good: bytes) -> bytes:
    """Junk ``nan-flux``: a valid file whose flux is all NaN."""
    spec.flux[:] = np.nan
    return file_bytes(spec)


_KNOWN_ROWS = (
    b"'Flux Inverse Subcontinuum Andmask Ormask'",
    b"'Flux, Inverse, Wavelength, Andmask, Ormask'",
    b"'Flux Inverse Wavelength Andmask Ormask'",
    b"'COADD   '",
)
"""The EXTEN0 (or DR8 EXTNAME) values by which the reader knows a release's rows."""


def _wrong_layout_file(spec: LamostSpectrum, good: bytes) -> bytes:
    """Junk ``wrong-layout``: rows no reader knows (DR8: no WAVELENGTH column)."""
    if spec.release == "dr8":
        return good.replace(b"'WAVELENGTH'", b"'SKY_LINES '", 1)
    for rows in _KNOWN_ROWS:
        if rows in good:
            return good.replace(rows, b"'Sky Arc Flat Bias'".ljust(len(rows)), 1)
    raise ValueError("no EXTEN0 card to replace")


def _no_halpha_file(spec: LamostSpectrum, good: bytes) -> bytes:
    """Junk ``no-halpha``: a valid file whose wavelength solution starts at 10**3.4 Å."""
    dr1 = spec.release == "dr1"
    old = b"COEFF0  =              3.56820" if dr1 else b"COEFF0  =               3.5682"
    new = b"COEFF0  =              3.40000" if dr1 else b"COEFF0  =                  3.4"
    if spec.release in ("dr2", "dr6", "dr8"):
        spec.wave = 10.0 ** (3.4 + COEFF1 * np.arange(spec.wave.size))
        good = file_bytes(spec)
    return good.replace(old, new, 1).replace(
        old.replace(b"COEFF0  ", b"CRVAL1  "), new.replace(b"COEFF0  ", b"CRVAL1  "), 1
    )


def _dead_red_arm_file(spec: LamostSpectrum, good: bytes) -> bytes:
    """Junk ``dead-red-arm``: flux, ivar 0 and NODATA at 5612-7535 Å (spec-55862-B6212_sp06-145)."""
    dead = (spec.wave > 5612.0) & (spec.wave < 7535.0)
    spec.flux[dead] = 0.0
    spec.ivar[dead] = 0.0
    spec.andmask[dead] = NODATA
    spec.ormask[dead] = NODATA
    return file_bytes(spec)


def _data_start(spec: LamostSpectrum, good: bytes) -> int:
    """Where a ``truncated-data`` junk file is cut after: the primary header's end."""
    return fb.first_data_block(good)


def _simulate(index: int, *, seed: int, population: Population, layout: str) -> LamostSpectrum:
    return simulate_one(index, seed=seed, population=population, release=layout)


def _ident(spec: LamostSpectrum) -> str:
    return spec.stem


register(
    SimulatedArchive(
        name="lamost",
        code=1,
        layout_option="release",
        layouts=RELEASES,
        simulate_one=_simulate,
        file_bytes=file_bytes,
        to_spectrum=to_spectrum,
        ident=_ident,
        mix=LAMOST_MIX,
        types=LAMOST_TYPES,
        noise_snr=NOISE_SNR,
        noise_profiles=NOISE_PROFILES,
        dwarf_fraction=DWARF_FRACTION,
        metallicity=METALLICITY,
        junk_makers={
            "nan-flux": _nan_flux_file,
            "wrong-layout": _wrong_layout_file,
            "no-halpha": _no_halpha_file,
            "dead-red-arm": _dead_red_arm_file,
        },
        data_start=_data_start,
        compress=True,
        plates=True,
    )
)
