"""Real stars to build synthetic spectra on: the compact MILES + MaStar template set.

``spectraldl/data/templates/templates.npz`` is derived by
``tools/derive_templates.py`` (provenance and the stars left out in the README
beside it). Per MILES star it holds the flux on 6200-6850 Å (air, 2.5 Å FWHM,
0.9 Å pixels), its continuum, parameters and spectral class, and the MaStar
template that gives it a realistic shape over LAMOST's full 3700-9100 Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from spectraldl.io.bundled import data_dir
from spectraldl.prep.lines import air_to_vacuum
from spectraldl.simulate.registry import simulated_archive

SPECTRAL_CLASSES = ("O", "B", "A", "F", "G", "K", "M")

CLASS_TEFF_K = {
    "O": (31000.0, 45000.0),
    "B": (10000.0, 31000.0),
    "A": (7400.0, 10000.0),
    "F": (6000.0, 7400.0),
    "G": (5300.0, 6000.0),
    "K": (3900.0, 5300.0),
    "M": (2300.0, 3900.0),
}
"""Teff range of each spectral class (subtype 9 at the low end, 0 at the high end), rounded
from the dwarf sequence of Pecaut & Mamajek (2013, ApJS 208, 9); the template set classes
its stars by these (tools/derive_templates.py)."""


def subclass_teff(subclass: str) -> float:
    """Teff (K) of a subclass such as ``K5``, ``A1IV`` or ``F9`` on the `CLASS_TEFF_K` scale.

    Returns NaN for anything without a class letter O-M (LAMOST's ``Non``, ``''``).
    """
    text = subclass.strip()
    if not text or text[0] not in CLASS_TEFF_K:
        return float("nan")
    low, high = CLASS_TEFF_K[text[0]]
    digits = "".join(c for c in text[1:4] if c.isdigit() or c == ".")
    try:
        subtype = min(max(float(digits), 0.0), 9.5) if digits else 5.0
    except ValueError:
        subtype = 5.0
    # Log-linear in Teff between the class edges: subtype 0 is `high`, 10 would be `low`.
    return float(np.exp(np.log(high) + (np.log(low) - np.log(high)) * subtype / 10.0))


MILES_FWHM_AA = 2.5
"""MILES resolution: 2.5 Å FWHM over the whole range (Falcón-Barroso et al. 2011)."""


@dataclass(frozen=True)
class TemplateSet:
    """The template stars and their broad shapes (see the module docstring).

    Attributes
    ----------
    name, sptype, spclass, subclass
        str (n,): star name, MILES spectral type, class O-M, LAMOST-like subclass.
    teff, logg, feh
        float (n,): MILES parameters (K, dex, dex).
    wave_air, wave_vac
        float64 (723,): window wavelengths (Å), air and vacuum.
    flux
        float64 (n, 723): window flux, median 1 per star.
    continuum
        float64 (n, 723): the upper-envelope continuum of ``flux``.
    mastar_index
        int (n,): MaStar template giving the shape outside the window.
    shape_coeffs
        float64 (n, 3): quadratic in ``(λ - 5500) / 2000`` of ln(MILES / MaStar).
    mastar_wave, mastar_flux
        LAMOST's vacuum grid (3909,) and the MaStar templates on it (65, 3909).
    """

    name: NDArray[np.str_]
    sptype: NDArray[np.str_]
    spclass: NDArray[np.str_]
    subclass: NDArray[np.str_]
    teff: NDArray[np.float64]
    logg: NDArray[np.float64]
    feh: NDArray[np.float64]
    wave_air: NDArray[np.float64]
    wave_vac: NDArray[np.float64]
    flux: NDArray[np.float64]
    continuum: NDArray[np.float64]
    mastar_index: NDArray[np.int64]
    shape_coeffs: NDArray[np.float64]
    shape_x0_aa: float
    shape_scale_aa: float
    mastar_wave: NDArray[np.float64]
    mastar_flux: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.name.size)

    def of_class(self, spclass: str) -> NDArray[np.int64]:
        """Indices of the stars of one spectral class (O-M)."""
        return np.flatnonzero(self.spclass == spclass)

    def broad_shape(self, index: int) -> NDArray[np.float64]:
        """The star's shape on LAMOST's grid (rest frame): its MaStar template, corrected.

        The quadratic log-ratio fitted on 3700-7400 Å is held constant beyond
        that range rather than extrapolated.
        """
        x = (self.mastar_wave - self.shape_x0_aa) / self.shape_scale_aa
        lo, hi = (
            (3700.0 - self.shape_x0_aa) / self.shape_scale_aa,
            (7400.0 - self.shape_x0_aa) / self.shape_scale_aa,
        )
        correction = np.exp(np.polyval(self.shape_coeffs[index], np.clip(x, lo, hi)))
        return self.mastar_flux[self.mastar_index[index]] * correction


BRIGHT_GIANT_WEIGHT = 0.2
"""Relative weight of log g < 1.5 (bright giants, supergiants): rare among survey targets."""


def template_weights(templates: TemplateSet, archive: str) -> NDArray[np.float64]:
    """Probability of each template within its spectral class for an archive (sums to 1 per class).

    Dwarfs and giants get the class's shares of the archive's registered
    ``dwarf_fraction``, and within those [Fe/H] is weighted to its
    ``metallicity`` (a 2 % floor keeps metal-poor stars possible). MILES
    over-represents giants and metal-poor stars (it was built for stellar
    populations), hence the weights.
    """
    survey = simulated_archive(archive)
    mean, sigma = survey.metallicity
    feh_weight = np.exp(-0.5 * ((templates.feh - mean) / sigma) ** 2) + 0.02
    feh_weight = feh_weight * np.where(templates.logg < 1.5, BRIGHT_GIANT_WEIGHT, 1.0)
    dwarf = templates.logg >= 3.8
    weights = np.zeros(len(templates))
    for letter in np.unique(templates.spclass):
        members = templates.spclass == letter
        share = survey.dwarf_fraction.get(str(letter), 0.5)
        for group, fraction in ((members & dwarf, share), (members & ~dwarf, 1.0 - share)):
            if group.any():
                weights[group] = fraction * feh_weight[group] / feh_weight[group].sum()
        weights[members] /= weights[members].sum()
    return weights


@lru_cache(maxsize=1)
def load_templates() -> TemplateSet:
    """Load the bundled template set once per process."""
    path = data_dir() / "templates" / "templates.npz"
    with np.load(path) as npz:
        raw = {key: npz[key] for key in npz.files}
    start = float(raw["window_start_aa"])
    step = float(raw["window_step_aa"])
    n_pix = raw["flux_u16"].shape[1]
    wave_air = start + step * np.arange(n_pix)
    flux = raw["flux_u16"].astype(np.float64) / 65535.0 * raw["flux_scale"][:, None]
    x = (wave_air - float(raw["cont_x0_aa"])) / float(raw["cont_scale_aa"])
    coeffs = raw["cont_coeffs"]
    continuum = coeffs[:, 0:1] * x**2 + coeffs[:, 1:2] * x + coeffs[:, 2:3]
    mastar_wave = 10.0 ** (
        float(raw["mastar_coeff0"])
        + float(raw["mastar_coeff1"]) * np.arange(raw["mastar_flux"].shape[1])
    )
    return TemplateSet(
        name=raw["name"],
        sptype=raw["sptype"],
        spclass=raw["spclass"],
        subclass=raw["subclass"],
        teff=raw["teff"].astype(np.float64),
        logg=raw["logg"].astype(np.float64),
        feh=raw["feh"].astype(np.float64),
        wave_air=wave_air,
        wave_vac=air_to_vacuum(wave_air),
        flux=flux,
        continuum=continuum,
        mastar_index=raw["mastar_index"].astype(np.int64),
        shape_coeffs=raw["shape_coeffs"],
        shape_x0_aa=float(raw["shape_x0_aa"]),
        shape_scale_aa=float(raw["shape_scale_aa"]),
        mastar_wave=mastar_wave,
        mastar_flux=raw["mastar_flux"].astype(np.float64),
    )
