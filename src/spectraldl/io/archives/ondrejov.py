"""Ondřejov 2 m Perek telescope, CCD700 coudé spectrograph (R about 13 000 at H-alpha).

Data models followed (the archive's own files, Astronomical Institute of the
Czech Academy of Sciences; the SSAP service at ``https://voarchive.asu.cas.cz``):

* **SSAP form**: what the archive's SSAP service serves. An empty primary HDU,
  then a BINTABLE with columns ``spectral`` (air wavelength, Å) and ``flux``
  (continuum-normalised). Header keys OBJECT, RA, DEC (degrees), DATE, TMID
  (MJD), DS_IDPUB (``ivo://asu.cas.cz/stel/ccd700/<obs>``), TITLE.
* **Raw (native) form**: a float32 1-D primary image in ADU with a linear
  wavelength solution ``CRVAL1 + (i + 1 - CRPIX1) * CDELT1`` (air, Å) and the
  observing log in the header (OBJECT, DATE-OBS, UT, EXPVAL, GRATANG,
  DETECTOR, CHIPID, SPECFILT, DICHMIR, HJD).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from spectraldl.core.errors import SpectrumError
from spectraldl.core.spectrum import Spectrum, SpectrumMeta
from spectraldl.io.archives import register
from spectraldl.io.archives.bintable import field_count, table_columns
from spectraldl.io.archives.fitsfile import FitsFile, HeaderValue, spectrum_stem
from spectraldl.io.archives.headers import (
    iso_to_mjd,
    number,
    sexagesimal_deg,
    simulated_extra,
    text,
)
from spectraldl.io.archives.order import by_wavelength
from spectraldl.prep.measure import der_snr

RESOLVING_POWER = 13000.0
"""Nominal R of CCD700 at H-alpha (Šlechta & Škoda 2002)."""

PUBLISHER = "asu.cas.cz"
PUBLISHER_ID_PREFIX = "ivo://asu.cas.cz/stel/ccd700/"
"""What an SSAP spectrum's id (DS_IDPUB) starts with; the exposure's file name follows."""

_LOG_KEYS = ("EXPVAL", "GRATANG", "DETECTOR", "CHIPID", "SPECFILT", "DICHMIR", "EXPTIME", "HJD")


def _table_header(fits_file: FitsFile) -> Mapping[str, HeaderValue]:
    return fits_file.extension_header(1) or {}


def identify_ssap(fits_file: FitsFile) -> bool:
    """An Ondřejov SSAP file: BINTABLE ``spectral`` + ``flux`` from the asu.cas.cz publisher."""
    if fits_file.header.get("NAXIS") != 0:
        return False
    ext = _table_header(fits_file)
    if text(ext, "XTENSION") != "BINTABLE":
        return False
    count = field_count(ext) or 0
    columns = {text(ext, f"TTYPE{i}").lower() for i in range(1, count + 1)}
    publisher = " ".join(text(ext, k) for k in ("DS_IDPUB", "VOPUB", "TITLE")).lower()
    return {"spectral", "flux"} <= columns and (PUBLISHER in publisher or "ccd700" in publisher)


def read_ssap(fits_file: FitsFile) -> Spectrum:
    """Read the SSAP form (air wavelengths, continuum-normalised flux), in wavelength order.

    Header values come from the package's own parser, which keeps bytes outside
    ASCII distinct (astropy turns each into ``?``, so two ids could collide).
    """
    rows, table = table_columns(fits_file, 1, ("SPECTRAL", "FLUX"))
    if rows < 2:
        raise SpectrumError(fits_file.path, "the spectrum table has fewer than two rows")
    header = _table_header(fits_file)
    wave, flux = by_wavelength(
        np.asarray(table["SPECTRAL"], dtype=np.float64),
        np.asarray(table["FLUX"], dtype=np.float64),
    )
    ident = text(header, "DS_IDPUB") or spectrum_stem(fits_file.path.name)
    date_obs = text(header, "DATE")
    mjd = number(header, "TMID")
    meta = SpectrumMeta(
        id=ident,
        archive="ondrejov",
        form="ssap",
        object=text(header, "OBJECT"),
        ra=number(header, "RA"),
        dec=number(header, "DEC"),
        mjd=mjd if math.isfinite(mjd) else iso_to_mjd(date_obs),
        date_obs=date_obs,
        snr=der_snr(flux),
        source=str(fits_file.path),
        resolving_power=RESOLVING_POWER,
        extra={"title": text(header, "TITLE"), **simulated_extra(fits_file.header)},
    )
    return Spectrum(wave_aa=wave, flux=flux, medium="air", meta=meta, flux_unit="relative")


def identify_raw(fits_file: FitsFile) -> bool:
    """An Ondřejov native 1-D image: observatory ONDREJOV (or the 2 m telescope) with CRVAL1."""
    header = fits_file.header
    site = " ".join(text(header, k) for k in ("OBSERVAT", "TELESCOP", "INSTRUME")).upper()
    return (
        header.get("NAXIS") == 1
        and ("ONDREJOV" in site or "ZEISS-2M" in site or "COUDE700" in site)
        and "CRVAL1" in header
    )


def read_raw(fits_file: FitsFile) -> Spectrum:
    """Read the native image form (linear air wavelengths, flux in ADU)."""
    header = fits_file.header
    flux = fits_file.primary_array().astype(np.float64)
    step = number(header, "CDELT1", "CD1_1")
    start = number(header, "CRVAL1")
    ref = number(header, "CRPIX1")
    if not (math.isfinite(step) and math.isfinite(start)):
        raise SpectrumError(fits_file.path, "no linear wavelength solution (CRVAL1/CDELT1)")
    ref = ref if math.isfinite(ref) else 1.0
    wave, flux = by_wavelength(start + (np.arange(flux.size) + 1.0 - ref) * step, flux)
    date = text(header, "DATE-OBS")
    ut = text(header, "UT")
    iso = f"{date}T{ut}" if date and ut and "T" not in date else date
    mjd = iso_to_mjd(iso)
    exptime = number(header, "EXPTIME")
    if math.isfinite(mjd) and math.isfinite(exptime):
        mjd += exptime / 2.0 / 86400.0
    if not math.isfinite(mjd):
        hjd = number(header, "HJD")
        mjd = hjd - 2400000.5 if math.isfinite(hjd) else math.nan
    meta = SpectrumMeta(
        id=spectrum_stem(text(header, "FILENAME") or fits_file.path.name),
        archive="ondrejov",
        form="raw",
        object=text(header, "OBJECT"),
        ra=sexagesimal_deg(header.get("RA"), hours=True),
        dec=sexagesimal_deg(header.get("DEC"), hours=False),
        mjd=mjd,
        date_obs=iso,
        snr=der_snr(flux),
        source=str(fits_file.path),
        resolving_power=RESOLVING_POWER,
        extra={
            **{k.lower(): header[k] for k in _LOG_KEYS if k in header},
            **simulated_extra(header),
        },
    )
    return Spectrum(
        wave_aa=wave, flux=flux, medium="air", meta=meta, flux_unit=text(header, "BUNIT") or "ADU"
    )


register(
    "ondrejov-ssap",
    identify=identify_ssap,
    read=read_ssap,
    data_model="Ondřejov CCD700 as served by SSAP: BINTABLE spectral (air Å) + flux",
)
register(
    "ondrejov-raw",
    identify=identify_raw,
    read=read_raw,
    data_model="Ondřejov CCD700 native 1-D image in ADU, linear CRVAL1/CDELT1 (air Å)",
)


def observation_key(ident: str) -> str:
    """The observation a spectrum id names: an Ondřejov SSAP id (``ivo://.../ccd700/X``) and
    its raw file's (``X``) are one exposure in two forms, which a split must not part."""
    return ident.removeprefix(PUBLISHER_ID_PREFIX)


def other_form_ident(ident: str) -> str:
    """The id the other form of ``ident``'s exposure would have: its SSAP id for a raw file's,
    the raw file's for an SSAP id (an id of no Ondřejov exposure gets one nothing has)."""
    key = observation_key(ident)
    return PUBLISHER_ID_PREFIX + key if key == ident else key
