"""Rest wavelengths and the air-to-vacuum conversion shared by `preprocess` and `measure`.

Ondřejov wavelengths are stored in air, LAMOST's in vacuum; every step that
compares a spectrum with H-alpha first brings it to vacuum with
`vacuum_wavelengths`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectraldl.core.spectrum import Spectrum

HALPHA_AIR_AA = 6562.80
"""H-alpha rest wavelength in air (Å)."""

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""Full width at half maximum of a Gaussian per standard deviation."""


def air_to_vacuum(wave_aa: ArrayLike) -> NDArray[np.float64]:
    """Convert air wavelengths (Å) to vacuum with the VALD3 formula (N. Piskunov).

    ``n = 1 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s²)
    + 1.599740894897e-4 / (38.92568793293 - s²)`` with ``s = 1e4 / λ_air``
    (λ in Å); ``λ_vac = λ_air · n``. H-alpha 6562.80 Å (air) is 6564.61 Å (vacuum).

    Parameters
    ----------
    wave_aa
        Air wavelengths (Å), a number or an array.

    Returns
    -------
    numpy.ndarray
        Vacuum wavelengths (Å, float64), of the input's shape.
    """
    wave = np.asarray(wave_aa, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):  # 0 Å gives inf: no H-alpha there
        s2 = (1e4 / wave) ** 2
    n = (
        1.0
        + 8.336624212083e-5
        + 2.408926869968e-2 / (130.1065924522 - s2)
        + 1.599740894897e-4 / (38.92568793293 - s2)
    )
    return wave * n


HALPHA_VACUUM_AA = float(air_to_vacuum(HALPHA_AIR_AA))
"""H-alpha rest wavelength in vacuum (Å), about 6564.61."""


def vacuum_wavelengths(spectrum: Spectrum) -> NDArray[np.float64]:
    """The spectrum's wavelengths in vacuum (Å): converted when stored in air, else as stored.

    Parameters
    ----------
    spectrum
        Any spectrum (``medium`` ``air`` or ``vacuum``).

    Returns
    -------
    numpy.ndarray
        Its wavelengths in vacuum (Å, float64).
    """
    if spectrum.medium == "air":
        return air_to_vacuum(spectrum.wave_aa)
    return np.asarray(spectrum.wave_aa, dtype=np.float64)
