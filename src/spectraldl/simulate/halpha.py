"""The H-alpha line of a synthetic star: which profile, how strong, how wide.

`draw_line` draws the line's parameters for a class; `line_addition` turns them
into the flux added to (or taken from) the continuum-normalised photospheric
spectrum, on the velocity grid `physics.VELOCITY_GRID_KMS`, at a given
instrumental resolution. Emission strengths are set by the *net* height of
the profile above the continuum (so that an ``emission`` label is decidable),
solved against the star's own photospheric absorption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spectraldl.prep.smoothing import gaussian_filter1d
from spectraldl.simulate import physics
from spectraldl.simulate.physics import C_KMS, VELOCITY_GRID_KMS, VELOCITY_STEP_KMS

HALPHA_AIR_AA = 6562.80


@dataclass(frozen=True)
class LineParams:
    """Parameters of the H-alpha emission component (all zero for a pure absorption star).

    Attributes
    ----------
    kind
        ``none``, ``fill`` (emission partly filling the absorption, below the
        continuum), ``single`` (single-peaked emission) or ``disc`` (double peak).
    net_height
        Target height of the net profile's peak over the continuum (relative to
        the continuum, at the instrument's resolution); for ``fill`` the
        fraction of the photospheric core depth filled in.
    fwhm_kms, lorentz_fraction
        Single-peak width and wing share.
    centre_kms
        Offset of the emission from the star's velocity.
    peak_separation_kms, radius_ratio, emissivity_index, local_broadening_kms, vr_ratio
        Disc profile (see `physics.disc_profile_kms`).
    shell_depth, shell_fwhm_kms
        Central shell absorption of an edge-on disc (depth relative to continuum).
    """

    kind: str = "none"
    net_height: float = 0.0
    fwhm_kms: float = 0.0
    lorentz_fraction: float = 0.0
    centre_kms: float = 0.0
    peak_separation_kms: float = 0.0
    radius_ratio: float = 0.0
    emissivity_index: float = 0.0
    local_broadening_kms: float = 0.0
    vr_ratio: float = 1.0
    shell_depth: float = 0.0
    shell_fwhm_kms: float = 0.0

    def as_truth(self) -> dict[str, float | str]:
        """Columns for truth.csv (prefixed ``line_``)."""
        return {f"line_{k}": v for k, v in vars(self).items()}


@dataclass(frozen=True)
class LineStyle:
    """How one archive's H-alpha lines are drawn (`draw_line`); each survey module has one.

    Attributes
    ----------
    fill_share
        Share of absorption stars with emission filling their core.
    strong_share
        Share of emission and double-peak lines that are strong (net peak
        0.5-8, discs 0.5-4), the rest weak (0.05-0.5); None: heights from
        6/S/N to 6, so that the line stands out of the noise.
    min_fwhm_kms
        Least FWHM of a single-peaked emission line (km/s).
    min_separation_kms
        Least separation of a disc's two peaks (km/s).
    """

    fill_share: float
    strong_share: float | None
    min_fwhm_kms: float
    min_separation_kms: float


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_line(
    rng: np.random.Generator, profile: str, *, style: LineStyle, snr: float, weak: bool = False
) -> LineParams:
    """Draw the H-alpha emission parameters of one spectrum of class ``profile``.

    Ranges (and where they come from):

    * single-peaked emission: net peak 0.1-6 x continuum at LAMOST (at least
      6/S/N so that it stands out of the noise, log-uniform: most LAMOST
      emitters are weak, Hou et al. 2016); at Ondřejov 70 % strong (0.5-8)
      and 30 % weak (0.05-0.5), see `LineStyle.strong_share`; FWHM
      60-600 km/s at LAMOST (nebular-like and dMe to broad Be/T Tauri lines),
      150-600 km/s for the Be stars at Ondřejov (Hanuschik 1989, Ap&SS 161, 61);
      up to 40 % of the area in Lorentzian wings;
      centre within ±30 km/s of the star.
    * double peak: peak separation 100-600 km/s at Ondřejov (Hanuschik et al.
      1996, A&AS 116, 309: Be-star discs); at LAMOST at least 250 km/s, since
      R ~ 1800 (166 km/s FWHM) cannot separate closer peaks; disc outer radius
      5-25 stellar radii, emissivity index 2-3.5, V/R 0.6-1.6, central shell
      absorption in a quarter of them; strong Ondřejov discs peak at 0.5-4.
    * absorption stars: 20 % (Ondřejov) or 12 % (LAMOST) have emission filling
      10-80 % of the photospheric core without reaching the continuum
      (Be stars in a weak phase, chromospheric activity); assumption.
    * ``weak``: a noise-class spectrum's underlying line, capped at 0.3.
    """
    if profile == "absorption":
        if rng.random() < style.fill_share:
            return LineParams(
                kind="fill",
                net_height=float(rng.uniform(0.1, 0.8)),
                fwhm_kms=_loguniform(rng, 80.0, 400.0),
                lorentz_fraction=float(rng.uniform(0.0, 0.3)),
                centre_kms=float(rng.normal(0.0, 15.0)),
            )
        return LineParams()
    if style.strong_share is not None:
        strong = rng.random() < style.strong_share
        low, high = (0.5, 8.0 if profile == "emission" else 4.0) if strong else (0.05, 0.5)
    else:
        low, high = max(0.1, 6.0 / max(snr, 1e-3)), 6.0
    if weak:
        low, high = 0.02, 0.3
    low = min(low, high / 2)
    height = _loguniform(rng, low, high)
    if profile == "emission":
        return LineParams(
            kind="single",
            net_height=height,
            fwhm_kms=_loguniform(rng, style.min_fwhm_kms, 600.0),
            lorentz_fraction=float(rng.uniform(0.0, 0.4)),
            centre_kms=float(rng.normal(0.0, 15.0)),
        )
    if profile == "double-peak":
        shell = rng.random() < 0.25
        return LineParams(
            kind="disc",
            net_height=height,
            centre_kms=float(rng.normal(0.0, 10.0)),
            peak_separation_kms=float(rng.uniform(style.min_separation_kms, 600.0)),
            radius_ratio=float(rng.uniform(5.0, 25.0)),
            emissivity_index=float(rng.uniform(2.0, 3.5)),
            local_broadening_kms=float(rng.uniform(10.0, 35.0)),
            vr_ratio=_loguniform(rng, 0.6, 1.6),
            shell_depth=float(rng.uniform(0.1, 0.7)) if shell else 0.0,
            shell_fwhm_kms=float(rng.uniform(30.0, 90.0)) if shell else 0.0,
        )
    raise ValueError(f"no H-alpha line model for class {profile!r}")


def _unit_profile(line: LineParams) -> NDArray[np.float64]:
    """Unit-area emission shape on the velocity grid (intrinsic, before the instrument)."""
    v = VELOCITY_GRID_KMS
    if line.kind in ("single", "fill"):
        return physics.pseudo_voigt_kms(
            v,
            centre_kms=line.centre_kms,
            fwhm_kms=line.fwhm_kms,
            lorentz_fraction=line.lorentz_fraction,
        )
    return physics.disc_profile_kms(
        v,
        peak_separation_kms=line.peak_separation_kms,
        radius_ratio=line.radius_ratio,
        emissivity_index=line.emissivity_index,
        local_broadening_kms=line.local_broadening_kms,
        vr_ratio=line.vr_ratio,
        centre_kms=line.centre_kms,
    )


def line_addition(
    line: LineParams, photosphere: NDArray[np.float64], *, instrument_sigma_kms: float
) -> tuple[NDArray[np.float64], float]:
    """Flux to add to the normalised spectrum (velocity grid) and the emission EW (Å, > 0).

    Parameters
    ----------
    line
        What to add.
    photosphere
        The star's normalised spectrum on `VELOCITY_GRID_KMS` (rest frame of
        H-alpha) at the instrument's resolution; used to solve the emission
        amplitude for the requested net height or fill fraction.
    instrument_sigma_kms
        Gaussian sigma of the instrument's line spread function.

    The shell absorption, if any, is part of the returned addition (negative).
    """
    if line.kind == "none":
        return np.zeros_like(VELOCITY_GRID_KMS), 0.0
    sigma_px = instrument_sigma_kms / VELOCITY_STEP_KMS
    shape = gaussian_filter1d(_unit_profile(line), sigma_px, mode="constant")
    shell = np.zeros_like(shape)
    if line.shell_depth > 0:
        shell_sigma = math.hypot(line.shell_fwhm_kms / physics.FWHM_PER_SIGMA, instrument_sigma_kms)
        intrinsic = line.shell_fwhm_kms / physics.FWHM_PER_SIGMA
        depth = line.shell_depth * intrinsic / shell_sigma
        shell = -depth * np.exp(-0.5 * ((VELOCITY_GRID_KMS - line.centre_kms) / shell_sigma) ** 2)
    near = np.abs(VELOCITY_GRID_KMS) < 1500.0
    base = (photosphere + shell)[near]
    if line.kind == "fill":
        core = np.abs(VELOCITY_GRID_KMS - line.centre_kms) < 100.0
        depth = max(float(1.0 - photosphere[core].min()), 0.0)
        amplitude = line.net_height * depth / float(shape.max())
    else:
        target = float(photosphere[near].max()) + line.net_height
        amplitude = _solve_amplitude(base, shape[near], target)
    ew_aa = amplitude * HALPHA_AIR_AA / C_KMS
    return amplitude * shape + shell, ew_aa


def _solve_amplitude(base: NDArray[np.float64], shape: NDArray[np.float64], target: float) -> float:
    """Smallest amplitude a with max(base + a·shape) = target (monotone in a), to 1e-6 relative.

    Two vectorised passes over 64 candidates each, then linear interpolation.
    """
    low, high = 0.0, (target + abs(float(base.min())) + 1.0) / float(shape.max())
    for _ in range(3):
        candidates = np.linspace(low, high, 64)
        peaks = (base[None, :] + candidates[:, None] * shape[None, :]).max(axis=1)
        above = int(np.searchsorted(peaks, target))
        if above == 0:
            return float(candidates[0])
        if above >= candidates.size:
            return float(candidates[-1])
        low, high = float(candidates[above - 1]), float(candidates[above])
    return 0.5 * (low + high)
