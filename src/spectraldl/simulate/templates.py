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

from spectraldl.bundled import data_dir
from spectraldl.preprocess import air_to_vacuum

SPECTRAL_CLASSES = ("O", "B", "A", "F", "G", "K", "M")

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
