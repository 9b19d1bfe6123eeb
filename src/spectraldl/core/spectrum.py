"""The `Spectrum` type: one observed 1-D spectrum, whatever archive it came from.

Every reader returns a `Spectrum`; every later stage (preprocessing, the web
tool, the gallery) takes one. Arrays are validated once, here, so that the
science functions downstream can trust shapes and dtypes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Medium = Literal["air", "vacuum"]

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest value a flux or an S/N can have as a measurement (3.4e38, float32's largest).

LAMOST stores float32, and the dataset's S/N column is float32. A larger number (1e300 in
a damaged float64 table or header) is a corrupt value, whose squares and differences
overflow: a spectrum holds such a flux pixel as NaN, and such an S/N as unknown.
"""


@dataclass(frozen=True)
class SpectrumMeta:
    """Who and what a spectrum is: identity, target, time and quality.

    Attributes
    ----------
    id
        Unique identifier: a LAMOST file stem (``spec-55862-B6212_sp06-005``),
        an Ondřejov ivo:// publisher id, or a file stem.
    archive
        The archive: ``lamost`` or ``ondrejov`` (or another registered one).
    form
        The file form within the archive (``lrs-image-dr1``, ``lrs-image``,
        ``lrs-table``, ``mrs``, ``ssap``, ``raw``).
    object
        Target name (Ondřejov OBJECT; LAMOST designation).
    ra, dec
        ICRS/FK5 J2000 position in degrees (NaN when unknown).
    mjd
        Modified Julian Date of the observation (NaN when unknown).
    date_obs
        ISO date (and time when known) of the observation.
    snr
        Signal-to-noise ratio near H-alpha (LAMOST r band; NaN when unknown).
    source
        Path of the file the spectrum was read from.
    obsid
        LAMOST OBSID where the file has one.
    designation
        LAMOST designation (``LAMOST Jhhmmss.ss+ddmmss.s``) where known.
    resolving_power
        Nominal R = λ/Δλ of the instrument at H-alpha.
    extra
        Other header values worth keeping (EXPVAL, GRATANG, CLASS, ...).
    """

    id: str
    archive: str
    form: str = ""
    object: str = ""
    ra: float = float("nan")
    dec: float = float("nan")
    mjd: float = float("nan")
    date_obs: str = ""
    snr: float = float("nan")
    source: str = ""
    obsid: str = ""
    designation: str = ""
    resolving_power: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A header's impossible values become unknown (NaN), never numbers to trust.

        A position outside the sky (RA not in [0, 360), Dec not in [-90, 90]) and
        an S/N that is not positive or beyond `FLOAT32_MAX` are what a damaged or lying
        header says; S/N unknown is then measured from the data
        (`spectraldl.prep.preprocess`, `spectraldl.core.quality.Quality.SNR_FROM_DATA`).
        """
        checks = {
            "ra": 0.0 <= self.ra < 360.0,
            "dec": -90.0 <= self.dec <= 90.0,
            "snr": 0.0 < self.snr <= FLOAT32_MAX,
        }
        for name, plausible in checks.items():
            if not plausible:
                object.__setattr__(self, name, float("nan"))


CORRUPT_FACTOR = 1e6
"""A flux pixel beyond this many times the spectrum's median absolute flux is a corrupt value.

Archives' flux units differ by 10^4, so no absolute bound serves, but one relative to the
spectrum's own scale does: real emission lines, even planetary nebulae's, stay orders of
magnitude below it (the real spectra here peak at most 20 times their median). A block of
1e30 at H-alpha, which no spike test sees, would otherwise be measured as a line.
"""


def _absurd_as_nan(flux: NDArray[np.float64]) -> NDArray[np.float64]:
    """``flux`` with its corrupt values as NaN, which every later stage then treats as it
    treats NaN; itself when it has none.

    Corrupt: finite and beyond `FLOAT32_MAX`, or beyond `CORRUPT_FACTOR` times the median
    absolute flux of its non-zero pixels (zeros are no data: a LAMOST arm that failed is all
    0.0, and would make the median 0 and the bound vanish). The median is only computed when
    more than half the pixels stay below the peak / `CORRUPT_FACTOR`.
    """
    size = np.abs(flux)
    peak = np.fmax.reduce(size)  # NaN left out; NaN itself when every pixel is NaN
    if not peak > 0:
        return flux
    if peak <= FLOAT32_MAX and 2 * np.count_nonzero(size >= peak / CORRUPT_FACTOR) > size.size:
        return flux  # the median reaches peak / CORRUPT_FACTOR: nothing lies beyond
    usable = size[(size > 0) & (size <= FLOAT32_MAX)]
    scale = float(np.median(usable)) if usable.size else 0.0
    bound = min(FLOAT32_MAX, CORRUPT_FACTOR * scale) if scale > 0 else FLOAT32_MAX
    absurd = (size > bound) & np.isfinite(flux)
    if not absurd.any():
        return flux
    return np.where(absurd, np.nan, flux)


@dataclass(frozen=True)
class Spectrum:
    """A spectrum: wavelengths (Å) in a stated medium, flux, optional ivar and mask.

    Attributes
    ----------
    wave_aa
        float64 (n,), strictly increasing wavelengths in Ångström.
    flux
        float64 (n,), flux in the archive's units (see ``flux_unit``); a corrupt value
        (beyond `FLOAT32_MAX`, or `CORRUPT_FACTOR` times the median absolute flux) is held
        as NaN.
    medium
        ``"air"`` or ``"vacuum"``: the medium the wavelengths are measured in.
    meta
        `SpectrumMeta` with identity, position, time and S/N.
    ivar
        float64 (n,) inverse variance of ``flux`` or None.
    mask
        bool (n,), True where a pixel is bad (the archive's and-mask), or None.
    flux_unit
        Unit of the flux as the archive states it (``ADU``, ``relative``, ...).
    """

    wave_aa: NDArray[np.float64]
    flux: NDArray[np.float64]
    medium: Medium
    meta: SpectrumMeta
    ivar: NDArray[np.float64] | None = None
    mask: NDArray[np.bool_] | None = None
    flux_unit: str = ""

    def __post_init__(self) -> None:
        wave = np.asarray(self.wave_aa, dtype=np.float64)
        flux = np.asarray(self.flux, dtype=np.float64)
        if wave.ndim != 1 or flux.shape != wave.shape:
            raise ValueError(
                f"wavelength and flux must be 1-D of equal length, got {wave.shape} and "
                f"{flux.shape}"
            )
        if wave.size < 2:
            raise ValueError("a spectrum needs at least two pixels")
        # Increasing, so finite when both ends are (an infinite end passes the comparison).
        if not (
            math.isfinite(wave[0]) and math.isfinite(wave[-1]) and (wave[1:] > wave[:-1]).all()
        ):
            raise ValueError("wavelengths must be finite and strictly increasing")
        if self.medium not in ("air", "vacuum"):
            raise ValueError(f"medium must be 'air' or 'vacuum', not {self.medium!r}")
        object.__setattr__(self, "wave_aa", wave)
        object.__setattr__(self, "flux", _absurd_as_nan(flux))
        if self.ivar is not None:
            ivar = np.asarray(self.ivar, dtype=np.float64)
            if ivar.shape != wave.shape:
                raise ValueError(f"ivar shape {ivar.shape} differs from flux {wave.shape}")
            object.__setattr__(self, "ivar", ivar)
        if self.mask is not None:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.shape != wave.shape:
                raise ValueError(f"mask shape {mask.shape} differs from flux {wave.shape}")
            object.__setattr__(self, "mask", mask)

    @property
    def id(self) -> str:
        """The spectrum's unique identifier (``meta.id``)."""
        return self.meta.id

    def __len__(self) -> int:
        return int(self.wave_aa.size)
