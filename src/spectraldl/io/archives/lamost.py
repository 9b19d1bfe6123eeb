"""LAMOST spectra: low resolution (DR1-DR7 image, DR8+ table) and medium resolution.

Data models followed (LAMOST data release documentation, "Data Production
Description", and the FITS headers themselves):

* **Low resolution, image form (DR1-DR7)**: the primary HDU is a 5-row image,
  one row per quantity as the header key ``EXTEN0`` lists them. DR1:
  ``Flux Inverse Subcontinuum Andmask Ormask`` (float32); DR2 and later:
  ``Flux, Inverse, Wavelength, Andmask, Ormask`` (float64 in DR2-DR5, float32
  from DR6). Vacuum wavelengths on a log10-linear grid,
  ``10**(COEFF0 + COEFF1 * i)`` with ``COEFF1 = 1e-4``. S/N per band in
  ``SN_U..SN_Z`` (DR1-DR5) or ``SNRU..SNRZ`` (DR6+).
* **Low resolution, table form (DR8 and later)**: an empty primary HDU with
  the same keywords, then a one-row BINTABLE (EXTNAME ``COADD``) whose array
  columns are ``FLUX``, ``IVAR``, ``WAVELENGTH``, ``ANDMASK``, ``ORMASK`` and
  ``NORMALIZATION``.
* **Medium resolution (MRS, DR6+)**: empty primary HDU, then BINTABLEs
  ``COADD_B`` and ``COADD_R`` (``FLUX``, ``IVAR``, ``LOGLAM``, ``ANDMASK``,
  ``ORMASK``) and one table per exposure. Only the red arm (about
  6300-6800 Å, R about 7500) covers H-alpha; that is what is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import NoReturn

import numpy as np

from spectraldl.core.errors import SpectrumError
from spectraldl.core.spectrum import Spectrum, SpectrumMeta
from spectraldl.io.archives import register
from spectraldl.io.archives.bintable import field_count, require_columns, table_columns
from spectraldl.io.archives.fitsfile import FitsFile, HeaderValue, spectrum_stem
from spectraldl.io.archives.headers import iso_to_mjd, number, simulated_extra, text
from spectraldl.io.archives.order import by_wavelength, first_out_of_order

LRS_RESOLVING_POWER = 1800.0
"""Nominal R of the LAMOST low-resolution spectrographs (LAMOST overview, Cui et al. 2012)."""

MRS_RESOLVING_POWER = 7500.0
"""Nominal R of the LAMOST medium-resolution survey (Liu et al. 2020)."""

_ROW_NAMES = {"flux", "inverse", "subcontinuum", "wavelength", "andmask", "ormask"}

MASK_LIMIT = 2.0**31
"""A mask row's values are below this: the whole numbers of a bit mask held in a signed
32-bit integer (the real files of every release here set bits 0-6 only)."""

MASK_PREFIX = 128
"""Pixels of each mask row `_refuse_unlike_masks` reads: a row read k pixels early per row
above begins with that row's tail (a DR1 Subcontinuum row ends in 20-50 pixels of 1.0, then
fractions), so the first pixels show any misalignment at a fraction of a whole row's cost."""

_ABSENT = object()


def _is_lamost(header: Mapping[str, HeaderValue]) -> bool:
    return text(header, "TELESCOP").upper().startswith("LAMOST") or text(
        header, "ORIGIN"
    ).upper().startswith("NAOC-LAMOST")


def _rows(header: Mapping[str, HeaderValue]) -> list[str]:
    names = text(header, "EXTEN0").replace(",", " ").lower().split()
    return names


def _release(header: Mapping[str, HeaderValue], rows: list[str]) -> str:
    data_v = text(header, "DATA_V").upper().replace("LAMOST", "").strip()
    if data_v:
        return data_v
    return "DR1" if "subcontinuum" in rows else "DR2-DR5"


def _meta(
    fits_file: FitsFile, header: Mapping[str, HeaderValue], form: str, release: str, snr: float
) -> SpectrumMeta:
    stem = spectrum_stem(text(header, "FILENAME") or fits_file.path.name)
    date_obs = text(header, "DATE-OBS")
    mjd = iso_to_mjd(date_obs) if "T" in date_obs else math.nan
    if not math.isfinite(mjd):
        mjd = number(header, "MJD")
    designation = text(header, "DESIG")
    extra = {
        key.lower(): value
        for key in ("CLASS", "SUBCLASS", "Z", "PLANID", "FIBERID", "SPID", "OBJNAME")
        if (value := header.get(key, _ABSENT)) is not _ABSENT
    }
    extra["release"] = release
    extra.update(simulated_extra(fits_file.header))
    obsid = header.get("OBSID")
    return SpectrumMeta(
        id=stem,
        archive="lamost",
        form=form,
        object=designation,
        ra=number(header, "RA"),
        dec=number(header, "DEC"),
        mjd=mjd,
        date_obs=date_obs,
        snr=snr,
        source=str(fits_file.path),
        obsid="" if obsid is None else str(obsid),
        designation=designation,
        resolving_power=LRS_RESOLVING_POWER if form != "mrs" else MRS_RESOLVING_POWER,
        extra=extra,
    )


def _lrs_spectrum(
    fits_file: FitsFile,
    header: Mapping[str, HeaderValue],
    form: str,
    release: str,
    *,
    flux: np.ndarray,
    ivar: np.ndarray,
    wave: np.ndarray | None,
    andmask: np.ndarray | None,
) -> Spectrum:
    if wave is None:
        coeff0 = number(header, "COEFF0", "CRVAL1")
        coeff1 = number(header, "COEFF1", "CD1_1", "CDELT1")
        if not (math.isfinite(coeff0) and math.isfinite(coeff1)):
            raise SpectrumError(fits_file.path, "no wavelength solution (COEFF0/COEFF1 missing)")
        wave = _log_linear_wavelengths(coeff0, coeff1, flux.size)
    else:
        column = "Wavelength row" if form == "lrs-image" else "COADD table's WAVELENGTH column"
        _refuse_unordered(fits_file, wave, column)
    wave, flux, ivar, andmask = by_wavelength(wave, flux, ivar, andmask)
    return Spectrum(
        wave_aa=wave,
        flux=flux,
        medium="vacuum",
        ivar=ivar,
        mask=None if andmask is None else andmask != 0,
        flux_unit="relative flux (LAMOST calibrated)",
        meta=_meta(fits_file, header, form, release, number(header, "SN_R", "SNRR")),
    )


def _refuse_unordered(fits_file: FitsFile, wave: np.ndarray, column: str) -> None:
    """Raise `SpectrumError` when the file's wavelengths are not monotonic.

    LAMOST writes one log-linear grid in pixel order: wavelengths out of order are
    damaged data, not a layout to sort (sorting would pair them with other pixels' flux).
    """
    at = first_out_of_order(wave)
    if at is not None:
        raise SpectrumError(
            fits_file.path,
            f"the {column} is not in order: pixel {at} holds {wave[at]:.6g} Å after "
            f"{wave[at - 1]:.6g} Å at pixel {at - 1} (corrupt data)",
        )


@lru_cache(maxsize=16)
def _log_linear_wavelengths(coeff0: float, coeff1: float, n: int) -> np.ndarray:
    """``10**(coeff0 + coeff1 * i)``, cached read-only: a release shares a handful of grids."""
    with np.errstate(over="ignore"):  # an absurd solution gives inf, refused by the caller
        wave = 10.0 ** (coeff0 + coeff1 * np.arange(n))
    wave.setflags(write=False)
    return wave


def _refuse_unlike_masks(
    fits_file: FitsFile, header: Mapping[str, HeaderValue], row: Mapping[str, np.ndarray]
) -> None:
    """Raise `SpectrumError` when the and-mask and or-mask rows are not the masks they name.

    A mask holds whole numbers from 0 to `MASK_LIMIT`, and the and-mask (bad in every
    exposure) sets only bits the or-mask (bad in one) sets too. Anything else there is
    another row's data: an image whose NAXIS1 understates its rows (a DR1 file's or-mask ends
    in zeros, so nothing else shows it) or damaged data. Called for images without a
    Wavelength row (DR1), whose order shows a misaligned DR2+ image. Only the first
    `MASK_PREFIX` pixels are looked at, where a misaligned row begins with the row above's
    tail, and of those only set ones: the masks' zeros, the common case, cost one count.
    """
    set_pixels = {}
    for name in ("andmask", "ormask"):
        mask = row.get(name)
        if mask is None:
            continue
        mask = mask[:MASK_PREFIX]
        bits = mask.view(f"u{mask.itemsize}")  # zero tests on the bits: no byte swapping
        if not np.count_nonzero(bits):
            continue
        at = (bits != 0).nonzero()[0]
        values = mask[at].astype(np.float64)  # NaN compares False: no mask value either
        whole = (values >= 0) & (values < MASK_LIMIT) & (np.floor(values) == values)
        if not whole.all():
            bad = int(at[np.argmin(whole)])
            _misaligned(
                fits_file,
                header,
                f"the {name.capitalize()} row is no bit mask: pixel {bad} holds "
                f"{mask[bad]:.6g}, not a whole number from 0 to 2**31 - 1",
            )
        set_pixels[name] = at
    if "andmask" in set_pixels and "ormask" in row:
        at = set_pixels["andmask"]
        extra = row["andmask"][at].astype(np.int64) & ~row["ormask"][at].astype(np.int64)
        if extra.any():
            _misaligned(
                fits_file,
                header,
                f"the Andmask row sets bits at pixel {int(at[np.argmax(extra != 0)])} that the "
                "Ormask row lacks (a pixel bad in every exposure is bad in one)",
            )


def _misaligned(fits_file: FitsFile, header: Mapping[str, HeaderValue], problem: str) -> NoReturn:
    """Raise `SpectrumError`: ``problem`` with the mask rows, and what it means."""
    raise SpectrumError(
        fits_file.path,
        f"{problem}: the rows are read misaligned (NAXIS1 = {header.get('NAXIS1')!r} would "
        "understate them) or the data are corrupt",
    )


def identify_lrs_image(fits_file: FitsFile) -> bool:
    """A LAMOST primary 2-D image whose rows ``EXTEN0`` names (DR1-DR7)."""
    header = fits_file.header
    rows = _rows(header)
    return (
        _is_lamost(header)
        and header.get("NAXIS") == 2
        and bool(rows)
        and rows[0] == "flux"
        and set(rows) <= _ROW_NAMES
    )


def read_lrs_image(fits_file: FitsFile) -> Spectrum:
    """Read a DR1-DR7 image-form low-resolution spectrum (rows per ``EXTEN0``)."""
    header = fits_file.header
    rows = _rows(header)
    if header.get("BITPIX") not in (-32, -64):
        raise SpectrumError(
            fits_file.path,
            f"BITPIX = {header.get('BITPIX')!r}: a LAMOST spectrum image holds floating-point "
            "numbers (BITPIX -32); these bytes would be read as other numbers",
        )
    image = fits_file.primary_array()
    if image.ndim != 2 or image.shape[0] != len(rows):
        raise SpectrumError(
            fits_file.path,
            f"wrong layout: EXTEN0 names {len(rows)} rows but the image is {image.shape} "
            "(rows x pixels)",
        )
    unused = fits_file.unused_bytes_after_primary()
    if unused:
        raise SpectrumError(
            fits_file.path,
            f"the image is smaller than the file holds ({unused} unused non-zero bytes after "
            f"it): NAXIS1 = {header.get('NAXIS1')!r} or NAXIS2 = {header.get('NAXIS2')!r} "
            "understates it, and its rows would be read misaligned",
        )
    row = {name: image[i] for i, name in enumerate(rows)}
    release = _release(header, rows)
    form = "lrs-image-dr1" if "subcontinuum" in rows else "lrs-image"
    spectrum = _lrs_spectrum(
        fits_file,
        header,
        form,
        release,
        flux=row["flux"],
        ivar=row["inverse"] if "inverse" in row else np.full(image.shape[1], np.nan),
        wave=row.get("wavelength"),
        andmask=row.get("andmask"),
    )
    if "wavelength" not in row:  # DR2+: a misaligned image breaks the Wavelength row's order
        _refuse_unlike_masks(fits_file, header, row)
    return spectrum


def _coadd_columns(fits_file: FitsFile, index: int) -> set[str]:
    ext = fits_file.extension_header(index)
    if not ext or text(ext, "XTENSION") != "BINTABLE":
        return set()
    count = field_count(ext) or 0
    return {text(ext, f"TTYPE{i}").upper() for i in range(1, count + 1)}


def identify_lrs_table(fits_file: FitsFile) -> bool:
    """A LAMOST DR8+ file: empty primary and a BINTABLE with FLUX and WAVELENGTH."""
    header = fits_file.header
    if not _is_lamost(header) or header.get("NAXIS") != 0:
        return False
    return {"FLUX", "IVAR", "WAVELENGTH"} <= _coadd_columns(fits_file, 1)


def read_lrs_table(fits_file: FitsFile) -> Spectrum:
    """Read a DR8+ table-form low-resolution spectrum (first row of the COADD table)."""
    rows, found = table_columns(fits_file, 1, ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK"))
    if rows == 0:
        raise SpectrumError(fits_file.path, "the COADD table has no rows")
    first = {name: values[0] for name, values in found.items()}
    header = fits_file.header
    return _lrs_spectrum(
        fits_file,
        header,
        "lrs-table",
        _release(header, []) if text(header, "DATA_V") else "DR8+",
        flux=np.asarray(first["FLUX"], dtype=np.float64),
        ivar=np.asarray(first["IVAR"], dtype=np.float64),
        wave=np.asarray(first["WAVELENGTH"], dtype=np.float64),
        andmask=np.asarray(first["ANDMASK"]) if "ANDMASK" in first else None,
    )


def _red_coadd(fits_file: FitsFile) -> int | None:
    """Which of the first two extensions is the red-arm coadd (``COADD_R``), if either."""
    for index in (1, 2):
        if text(fits_file.extension_header(index) or {}, "EXTNAME").upper() == "COADD_R":
            return index
    return None


def identify_mrs(fits_file: FitsFile) -> bool:
    """A LAMOST medium-resolution file: empty primary and a ``COADD_R`` table."""
    header = fits_file.header
    if not _is_lamost(header) or header.get("NAXIS") != 0:
        return False
    return _red_coadd(fits_file) is not None


def read_mrs(fits_file: FitsFile) -> Spectrum:
    """Read the red-arm coadd (``COADD_R``) of a medium-resolution spectrum."""
    index = _red_coadd(fits_file)
    if index is None:
        raise SpectrumError(fits_file.path, "no COADD_R table in the first two extensions")
    rows, table = table_columns(fits_file, index, ("LOGLAM", "FLUX", "IVAR", "ANDMASK"))
    if rows == 0:
        raise SpectrumError(fits_file.path, "the COADD_R table has no rows")
    require_columns(fits_file, "COADD_R", table, ("LOGLAM", "FLUX", "IVAR"))
    wave = 10.0 ** np.asarray(table["LOGLAM"], dtype=np.float64)
    _refuse_unordered(fits_file, wave, "COADD_R table's LOGLAM column")
    wave, flux, ivar, andmask = by_wavelength(
        wave,
        np.asarray(table["FLUX"], dtype=np.float64),
        np.asarray(table["IVAR"], dtype=np.float64),
        np.asarray(table["ANDMASK"]) if "ANDMASK" in table else None,
    )
    header = fits_file.header
    red: Mapping[str, HeaderValue] = fits_file.extension_header(index) or {}
    meta = _meta(fits_file, header, "mrs", _release(header, []), number(red, "SNR"))
    return Spectrum(
        wave_aa=wave,
        flux=flux,
        medium="vacuum",
        ivar=ivar,
        mask=None if andmask is None else andmask != 0,
        flux_unit="counts",
        meta=meta,
    )


register(
    "lamost-lrs-image",
    identify=identify_lrs_image,
    read=read_lrs_image,
    data_model="LAMOST DR1-DR7 low-resolution spectrum, primary 5-row image per EXTEN0",
)
register(
    "lamost-lrs-table",
    identify=identify_lrs_table,
    read=read_lrs_table,
    data_model="LAMOST DR8+ low-resolution spectrum, one-row COADD BINTABLE",
)
register(
    "lamost-mrs",
    identify=identify_mrs,
    read=read_mrs,
    data_model="LAMOST medium-resolution spectrum, red-arm COADD_R BINTABLE",
)
