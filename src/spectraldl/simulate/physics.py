"""Line profiles and the interstellar and terrestrial effects on a spectrum.

Pure functions on NumPy arrays, velocities in km/s and wavelengths in Å; each
says where its formula or numbers come from.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectraldl.prep.smoothing import gaussian_filter1d

C_KMS = 299792.458
"""Speed of light (km/s)."""

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

VELOCITY_STEP_KMS = 5.0
"""Sampling of the velocity grid on which H-alpha profiles are built."""

VELOCITY_GRID_KMS = np.arange(-3000.0, 3000.0 + VELOCITY_STEP_KMS / 2, VELOCITY_STEP_KMS)
"""Velocity grid (km/s) of the H-alpha emission profiles, wide enough for EW ~ 100 Å wings."""

DIB_6614_AIR_AA = 6613.62
"""Diffuse interstellar band at 6613.6 Å (air; Herbig 1995, ARA&A 33, 19)."""

DIB_6614_EW_PER_EBV_AA = 0.23
"""EW(6614)/E(B-V) in Å per magnitude (Friedman et al. 2011, ApJ 727, 33: about 0.2-0.25)."""

DIB_6614_FWHM_AA = 1.1
"""Intrinsic FWHM of the 6614 band (Å; Herbig 1995, about 1 Å)."""

SKY_LINES_AIR_AA = np.array(
    [6498.73, 6533.04, 6553.62, 6562.80, 6568.78, 6577.28, 6596.64, 6604.28, 6627.62, 6634.23]
)
"""Night-sky lines near H-alpha (air Å): OH Meinel (6-1) band lines and the
geocoronal/urban H-alpha line, after the night-sky atlas of Osterbrock et al.
(1996, PASP 108, 277). Approximate positions: they place sky-subtraction
residuals where real ones appear, they are not a line list for calibration."""

TELLURIC_H2O_AIR_AA = np.array(
    [6532.35, 6543.91, 6547.71, 6548.62, 6552.63, 6557.17, 6560.55, 6564.21, 6572.09, 6574.85]
)
"""Water-vapour lines of the 6500 Å band around H-alpha (air Å) as they appear
in high-resolution ground-based spectra (e.g. the telluric atlas of Hinkle et
al. 2000); approximate positions, depths are scaled by a random water column."""

TELLURIC_H2O_RELATIVE_DEPTH = np.array([0.5, 0.9, 0.6, 0.5, 1.0, 0.8, 0.5, 0.7, 0.6, 0.5])
"""Relative strengths of `TELLURIC_H2O_AIR_AA` (the strongest set to 1)."""


def gaussian(x: ArrayLike, *, centre: float, sigma: float) -> NDArray[np.float64]:
    """Unit-area Gaussian."""
    z = (np.asarray(x, dtype=np.float64) - centre) / sigma
    return np.exp(-0.5 * z * z) / (sigma * math.sqrt(2.0 * math.pi))


def pseudo_voigt_kms(
    velocity_kms: ArrayLike, *, centre_kms: float, fwhm_kms: float, lorentz_fraction: float
) -> NDArray[np.float64]:
    """Unit-area pseudo-Voigt (Gaussian core, Lorentzian wings) in velocity.

    Be-star and T Tauri H-alpha emission has broad wings from non-coherent
    electron scattering and disc kinematics (e.g. Hummel & Dachs 1992, A&A
    262, L17); ``lorentz_fraction`` of the area goes into a Lorentzian of the
    same FWHM.
    """
    v = np.asarray(velocity_kms, dtype=np.float64) - centre_kms
    sigma = fwhm_kms / FWHM_PER_SIGMA
    gauss = np.exp(-0.5 * (v / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))
    gamma = fwhm_kms / 2.0
    lorentz = gamma / math.pi / (v * v + gamma * gamma)
    return (1.0 - lorentz_fraction) * gauss + lorentz_fraction * lorentz


def disc_profile_kms(
    velocity_kms: ArrayLike,
    *,
    peak_separation_kms: float,
    radius_ratio: float,
    emissivity_index: float,
    local_broadening_kms: float,
    vr_ratio: float,
    centre_kms: float = 0.0,
) -> NDArray[np.float64]:
    """Unit-area emission profile of a rotating Keplerian disc (double peaked).

    The disc is a set of rings from the stellar surface to ``radius_ratio``
    stellar radii with emissivity ∝ r^-``emissivity_index``. A ring of
    projected Keplerian speed V contributes 1/(π √(V² - v²)) (the classic
    double-horned profile; Huang 1972, ApJ 171, 549; Horne & Marsh 1986,
    MNRAS 218, 761). The outer edge makes the peaks: its projected speed is
    half ``peak_separation_kms``. Each ring is smoothed by local (thermal and
    turbulent) broadening. ``vr_ratio`` is the violet-to-red peak height ratio
    V/R of the one-armed density waves in Be discs (Okazaki 1991, PASJ 43, 75),
    applied as a smooth tilt across the line.
    """
    v = np.asarray(velocity_kms, dtype=np.float64) - centre_kms
    v_out = peak_separation_kms / 2.0
    radii = np.geomspace(1.0, radius_ratio, 40)
    speeds = v_out * np.sqrt(radius_ratio / radii)
    weights = radii ** (-emissivity_index) * radii * np.gradient(radii)
    profile = np.zeros_like(v)
    for speed, weight in zip(speeds, weights, strict=True):
        inside = np.abs(v) < speed * 0.999
        ring = np.zeros_like(v)
        ring[inside] = 1.0 / (math.pi * np.sqrt(speed * speed - v[inside] ** 2))
        profile += weight * ring / max(ring.sum() * VELOCITY_STEP_KMS, 1e-30)
    sigma_px = local_broadening_kms / VELOCITY_STEP_KMS
    profile = gaussian_filter1d(profile, sigma_px, mode="constant")
    # vr_ratio ** (-tanh(v / v_out) / (2 tanh 1)) makes the peaks (near ±v_out) differ by V/R.
    profile *= vr_ratio ** (-np.tanh(v / max(v_out, 1.0)) / (2.0 * math.tanh(1.0)))
    area = profile.sum() * VELOCITY_STEP_KMS
    return profile / area


def rotation_kernel_kms(
    velocity_kms: ArrayLike, *, vsini_kms: float, epsilon: float = 0.6
) -> NDArray[np.float64]:
    """Unit-area rotational broadening kernel with linear limb darkening (Gray 2005, eq. 18.14)."""
    v = np.asarray(velocity_kms, dtype=np.float64) / vsini_kms
    inside = np.abs(v) < 1.0
    kernel = np.zeros_like(v)
    root = np.sqrt(1.0 - v[inside] ** 2)
    kernel[inside] = (2.0 * (1.0 - epsilon) * root + 0.5 * math.pi * epsilon * root**2) / (
        math.pi * vsini_kms * (1.0 - epsilon / 3.0)
    )
    return kernel


def ccm_extinction_mag(wave_aa: ArrayLike, *, ebv: float, r_v: float = 3.1) -> NDArray[np.float64]:
    """A(λ) in magnitudes for colour excess ``ebv`` (Cardelli, Clayton & Mathis 1989, ApJ 345, 245).

    The optical (1.1-3.3 µm⁻¹) and infrared (0.3-1.1 µm⁻¹) parts of the law,
    which cover 3030-33000 Å.
    """
    x = 1e4 / np.asarray(wave_aa, dtype=np.float64)
    a = np.empty_like(x)
    b = np.empty_like(x)
    ir = x < 1.1
    a[ir] = 0.574 * x[ir] ** 1.61
    b[ir] = -0.527 * x[ir] ** 1.61
    y = x[~ir] - 1.82
    a[~ir] = np.polyval([0.32999, -0.77530, 0.01979, 0.72085, -0.02427, -0.50447, 0.17699, 1.0], y)
    b[~ir] = np.polyval([-2.09002, 5.30260, -0.62251, -5.38434, 1.07233, 2.28305, 1.41338, 0.0], y)
    return ebv * (a * r_v + b)


def absorption_lines(
    wave_aa: ArrayLike, *, centres_aa: ArrayLike, depths: ArrayLike, sigma_aa: float
) -> NDArray[np.float64]:
    """Transmission (≤ 1) of Gaussian absorption lines of given central depths.

    ``wave_aa`` must be increasing; each line is evaluated within ±6 sigma only.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    tau = np.zeros_like(wave)
    reach = 6.0 * sigma_aa
    for centre, depth in zip(np.atleast_1d(centres_aa), np.atleast_1d(depths), strict=True):
        lo, hi = np.searchsorted(wave, (centre - reach, centre + reach))
        if hi > lo and depth > 0:
            optical_depth = -math.log1p(-min(float(depth), 0.99))
            tau[lo:hi] += optical_depth * np.exp(-0.5 * ((wave[lo:hi] - centre) / sigma_aa) ** 2)
    return np.exp(-tau)


def dib_transmission(wave_air_aa: ArrayLike, *, ebv: float, sigma_aa: float) -> NDArray[np.float64]:
    """Transmission of the 6614 Å diffuse band for ``ebv``, seen at resolution ``sigma_aa``.

    EW = `DIB_6614_EW_PER_EBV_AA` · E(B-V), profile Gaussian of width intrinsic
    and instrumental in quadrature. ``wave_air_aa`` must be increasing.
    """
    wave = np.asarray(wave_air_aa, dtype=np.float64)
    out = np.ones_like(wave)
    ew = DIB_6614_EW_PER_EBV_AA * ebv
    if ew <= 0:
        return out
    sigma = math.hypot(DIB_6614_FWHM_AA / FWHM_PER_SIGMA, sigma_aa)
    depth = ew / (sigma * math.sqrt(2.0 * math.pi))
    lo, hi = np.searchsorted(wave, (DIB_6614_AIR_AA - 6 * sigma, DIB_6614_AIR_AA + 6 * sigma))
    out[lo:hi] -= depth * np.exp(-0.5 * ((wave[lo:hi] - DIB_6614_AIR_AA) / sigma) ** 2)
    return out
