"""Ondřejov-like CCD700 spectra around H-alpha: the star, the spectrograph, the file.

Instrument facts followed (the bundled real files and Šlechta & Škoda 2002,
PAICz 90, 1):

* two detectors: SITe 2000x800 (2005-2013; 1997 pixels of 0.2567 Å from about
  6252.9 Å; SSAP tables of 1757 rows, 6282-6733 Å) and PyLoN 2048x512BX (from
  late 2013; 2047 pixels of 0.2309 Å from about 6261.7 Å; 1953 SSAP rows);
  air wavelengths; resolving power about 13 000 (FWHM 0.5 Å);
* the SSAP form is the native spectrum cut to 6282-6733 Å and divided by a
  fitted continuum (normalised, imperfectly: a residual tilt of about 1 %);
  the raw form is in ADU, shaped by the spectrograph's response (a smooth
  curve, assumption: ±10 % tilt and up to 30 % curvature over the chip);
* photon noise from the counts (gain about 1.07 e-/ADU, read noise 7 e-, the
  SITe header values), a continuum of about 5 600 to 220 000 ADU in the
  bundled raw files; cosmic rays survive in a few spectra despite cleaning;
* telluric water lines near H-alpha (not removed by the archive);
* the Be-star programme observes bright stars near the Galactic plane
  (Dec > -25°, visible from 49.9° N).

The MILES templates have 2.5 Å FWHM against CCD700's 0.5 Å: synthetic
Ondřejov photospheres are smoother than real ones (metal and telluric lines
shallower, narrow cores rounder); the H-alpha emission itself is built at
CCD700's resolution. After the thesis' blur of sigma 7 pixels (1.6-1.8 Å, a
4 Å FWHM) the difference mostly disappears: `benchmarks/realism.py` measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from spectraldl.core.spectrum import Spectrum, SpectrumMeta
from spectraldl.io.archives import identify
from spectraldl.io.archives.fitsfile import FitsFile, parse_header
from spectraldl.io.archives.headers import iso_to_mjd
from spectraldl.io.archives.ondrejov import RESOLVING_POWER as READER_R
from spectraldl.prep.measure import der_snr, equivalent_width_aa
from spectraldl.simulate import fitsbytes as fb
from spectraldl.simulate import physics
from spectraldl.simulate.common import (
    choose_template,
    draw_snr,
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
    ONDREJOV_COUNTS_LOGNORMAL,
    ONDREJOV_MIX,
    ONDREJOV_TYPES,
    Population,
    class_of,
)
from spectraldl.simulate.registry import SimulatedArchive, register
from spectraldl.simulate.templates import load_templates

FORMS = ("ssap", "raw")
RESOLVING_POWER = 13000.0
SSAP_RANGE_AA = (6282.0, 6733.0)
PUBLISHER_ID = "ivo://asu.cas.cz/stel/ccd700/"

STRONG_SHARE = 0.7
"""Share of emission/double-peak spectra with a strong line (net peak 0.5-8 x the continuum,
EW about -5 to -60 Å), the rest weak (0.05-0.5): Be stars' H-alpha EWs are mostly -5 to
-50 Å (Jaschek & Egret 1982; Hanuschik 1986), with weak phases in between."""

LINES = LineStyle(
    fill_share=0.2, strong_share=STRONG_SHARE, min_fwhm_kms=150.0, min_separation_kms=100.0
)
"""H-alpha lines (`halpha.draw_line`): 20 % of absorption stars filled in, `STRONG_SHARE`
strong lines, FWHM from 150 km/s for the Be stars (Hanuschik 1989, Ap&SS 161, 61), disc peaks
at least 100 km/s apart (Hanuschik et al. 1996, A&AS 116, 309)."""


@dataclass(frozen=True)
class Chip:
    """One CCD700 detector: pixels, dispersion and the header words that name it."""

    detector: str
    chipid: str
    pixels: int
    step_aa: float
    start_aa: float
    ssap_rows: int
    gain: float
    read_noise: float
    title_range: str


SITE = Chip(
    "SITe 2000x800", "SITe005 800x2000", 1997, 0.25667, 6252.90, 1757, 1.07, 7.0, "6255-6767"
)
PYLON = Chip(
    "PyLoN 2048x512BX", "E2V 42-10 BX", 2047, 0.23092, 6261.68, 1953, 1.0, 4.0, "6260-6735"
)
PYLON_FROM = datetime(2013, 10, 1)
"""First night with the PyLoN chip (assumption; the bundled PyLoN files are from 2014-2015)."""
FIRST_NIGHT = datetime(2012, 6, 1)
SPECTRA_PER_NIGHT = 25
DAYS_PER_NIGHT = 1.5
FIRST_FRAME = 9001
"""Spectrum ``index`` is frame ``9001 + index % 25`` of night ``index // 25``, nights 1.5 days
apart from 2012 June 1: unique observation ids, about 40 % on the PyLoN chip for the
thesis-sized set. Real nights never reach frame 9000, so a synthetic id never equals a
real one (a dataset holding both would otherwise skip one of them as a duplicate)."""
LAST_INDEX = (
    SPECTRA_PER_NIGHT * math.floor((datetime(9999, 1, 1) - FIRST_NIGHT).days / DAYS_PER_NIGHT) - 1
)
"""The last spectrum whose night (and the times after it) Python's dates can hold."""

_GALACTIC_TO_ICRS = np.array(
    [
        [-0.0548755604162154, 0.4941094278755837, -0.8676661490190047],
        [-0.8734370902348850, -0.4448296299600112, -0.1980763734312015],
        [-0.4838350155487132, 0.7469822444972189, 0.4559837761750669],
    ]
)
"""Rotation from Galactic to ICRS unit vectors (Hipparcos, ESA 1997, vol. 1, sect. 1.5.3)."""


@dataclass
class OndrejovSpectrum:
    """One simulated Ondřejov spectrum on its native grid, header values and truth."""

    index: int
    form: str
    wave: np.ndarray
    counts: np.ndarray
    ssap_slice: slice
    normaliser: np.ndarray
    header: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def obs_id(self) -> str:
        """Observation id, e.g. ``a201402110019`` (PyLoN) or ``uk220017`` (SITe)."""
        return str(self.header["obs_id"])

    @property
    def relpath(self) -> str:
        """File name inside an archive directory."""
        return f"{self.obs_id}.fits"

    def ssap_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Air wavelengths and continuum-normalised flux of the SSAP table."""
        s = self.ssap_slice
        return self.wave[s], self.counts[s] / self.normaliser[s]


def _night(index: int) -> tuple[datetime, int]:
    night, frame = divmod(index, SPECTRA_PER_NIGHT)
    return FIRST_NIGHT + timedelta(days=math.floor(night * DAYS_PER_NIGHT)), FIRST_FRAME + frame


def observation_id(night: datetime, frame: int) -> str:
    """The archive's id: ``aYYYYMMDDNNNN`` from PyLoN on, else year and month letters + DDNNNN.

    SITe-era ids code the year as a letter from 1991 ('o' = 2005, 'u' = 2011) and the
    month as a letter ('a' = January): ``oe270005`` is frame 5 of 2005 May 27.
    """
    if night >= PYLON_FROM:
        return f"a{night:%Y%m%d}{frame:04d}"
    year = chr(ord("a") + night.year - 1991)
    month = chr(ord("a") + night.month - 1)
    return f"{year}{month}{night.day:02d}{frame:04d}"


def _galactic_to_radec(l_deg: float, b_deg: float) -> tuple[float, float]:
    lon, lat = math.radians(l_deg), math.radians(b_deg)
    vec = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    x, y, zz = _GALACTIC_TO_ICRS.T @ vec
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, zz))))


def _object_name(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.6:
        return f"HD {int(rng.integers(1, 359084))}"
    if kind < 0.8:
        return f"HR {int(rng.integers(1, 9110))}"
    return f"HIP{int(rng.integers(1, 118218))}"


@lru_cache(maxsize=2)
def _velocity_of_window() -> np.ndarray:
    templates = load_templates()
    return C_KMS * (templates.wave_air / HALPHA_AIR_AA - 1.0)


def simulate_one(
    index: int, *, seed: int, population: Population, form: str = "ssap"
) -> OndrejovSpectrum:
    """Simulate Ondřejov spectrum ``index`` (depends only on seed, population and index)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    templates = load_templates()
    rs = streams(seed, "ondrejov", index)
    night, frame = _night(index)
    chip = PYLON if night >= PYLON_FROM else SITE
    star = _draw_star(rs.star, templates, chip, index=index, seed=seed, population=population)
    meta = rs.meta
    start = chip.start_aa + float(meta.normal(0.0, 0.08))
    if star.partial:
        start -= float(meta.uniform(40.0, 60.0))
    wave = start + chip.step_aa * np.arange(chip.pixels)
    normalised, ew_emission = _normalised(templates, star, wave)
    truth_ew = equivalent_width_aa(
        wave, normalised, line_aa=HALPHA_AIR_AA * (1.0 + star.rv / C_KMS)
    )
    x = (wave - wave.mean()) / (wave[-1] - wave[0]) * 2.0
    shape = 1.0 + star.response[0] * x + star.response[1] * x * x
    expected = star.level * shape * normalised * _transmission(wave, star)
    counts, spikes = _counts(rs.noise, expected, chip)
    tilt = star.tilt
    normaliser = star.level * shape * (1.0 + tilt[0] * x + tilt[1] * x * x)
    lo, hi = np.searchsorted(wave, SSAP_RANGE_AA)
    hi = min(int(hi), int(lo) + chip.ssap_rows)
    header = _header_values(
        meta, index=index, chip=chip, night=night, frame=frame, start=start, level=star.level
    )
    truth = {
        **_star_truth(templates, star),
        "halpha_ew_aa": truth_ew,
        "emission_ew_aa": ew_emission,
        **star.line.as_truth(),
        "telluric_water": star.water,
        "defect_cosmic_rays": spikes,
        "defect_partial_coverage": bool(star.partial),
        "chip": chip.detector,
    }
    return OndrejovSpectrum(
        index=index,
        form=form,
        wave=wave,
        counts=counts,
        ssap_slice=slice(int(lo), hi),
        normaliser=normaliser,
        header=header,
        truth=truth,
    )


@dataclass(frozen=True)
class _Star:
    """What is drawn for one spectrum from its star stream: the star, its line, the counts
    level, telluric water, the continuum fit's tilt, the response, a partial coverage."""

    label: str
    profile: str
    k: int
    level: float
    snr: float
    rv: float
    vsini: float
    ebv: float
    line: LineParams
    water: float
    tilt: tuple[float, float]
    response: tuple[float, float]
    partial: bool


def _draw_star(
    rng: np.random.Generator,
    templates: Any,
    chip: Chip,
    *,
    index: int,
    seed: int,
    population: Population,
) -> _Star:
    """Draw spectrum ``index``'s star, line and instrument values (in this order)."""
    label = class_of(index, seed=seed, mix=population.mix)
    profile = noise_profile(rng, archive="ondrejov") if label == "noise" else label
    fractions = population.types.get(profile, population.types["absorption"])
    k = choose_template(
        rng, templates, fractions, archive="ondrejov", teff_values=population.teff_values
    )
    level = ONDREJOV_COUNTS_LOGNORMAL[0] * math.exp(rng.normal(0.0, ONDREJOV_COUNTS_LOGNORMAL[1]))
    snr = draw_snr(rng, population, label=label, default=math.sqrt(level * chip.gain))
    rv = float(rng.normal(0.0, 25.0))
    vsini = (
        float(rng.uniform(100.0, 300.0))
        if profile in ("emission", "double-peak") and templates.spclass[k] in "OBA"
        else 0.0
    )
    ebv = float(min(rng.exponential(0.15), 1.2))
    line = draw_line(rng, profile, style=LINES, snr=snr, weak=label == "noise")
    return _Star(
        label=label,
        profile=profile,
        k=k,
        level=snr**2 / chip.gain,
        snr=snr,
        rv=rv,
        vsini=vsini,
        ebv=ebv,
        line=line,
        water=float(rng.exponential(0.4)),
        tilt=(float(rng.normal(0.0, 0.01)), float(rng.normal(0.0, 0.006))),
        response=(float(rng.normal(0.0, 0.1)), float(rng.uniform(-0.3, -0.03))),
        partial=bool(rng.random() < 0.01),
    )


def _normalised(templates: Any, star: _Star, wave: np.ndarray) -> tuple[np.ndarray, float]:
    """The star's continuum-normalised spectrum on ``wave`` (rotation and H-alpha line
    included, Doppler-shifted), and the emission's EW (Å) as added."""
    velocity = _velocity_of_window()
    photosphere_rest = templates.flux[star.k] / templates.continuum[star.k]
    if star.vsini > 0:
        photosphere_rest = _rotated(photosphere_rest, velocity, star.vsini)
    sigma_kms = C_KMS / RESOLVING_POWER / FWHM_PER_SIGMA
    photosphere_v = np.interp(VELOCITY_GRID_KMS, velocity, photosphere_rest)
    addition, ew_emission = line_addition(star.line, photosphere_v, instrument_sigma_kms=sigma_kms)
    rest = wave / (1.0 + star.rv / C_KMS)
    normalised = np.interp(rest, templates.wave_air, photosphere_rest)
    normalised += np.interp(
        C_KMS * (rest / HALPHA_AIR_AA - 1.0), VELOCITY_GRID_KMS, addition, left=0.0, right=0.0
    )
    return normalised, ew_emission


def _rotated(flux: np.ndarray, velocity: np.ndarray, vsini: float) -> np.ndarray:
    """``flux`` (on the ``velocity`` grid, km/s) broadened by rotation at ``vsini``."""
    step = float(velocity[1] - velocity[0])
    taps = np.arange(-math.ceil(vsini / step), math.ceil(vsini / step) + 1) * step
    kernel = physics.rotation_kernel_kms(taps, vsini_kms=vsini)
    return np.convolve(np.pad(flux, taps.size, mode="edge"), kernel / kernel.sum(), "same")[
        taps.size : -taps.size
    ]


def _transmission(wave: np.ndarray, star: _Star) -> np.ndarray:
    """Telluric water lines and the 6614 Å band at CCD700's resolution."""
    sigma_aa = HALPHA_AIR_AA / RESOLVING_POWER / FWHM_PER_SIGMA
    transmission = physics.absorption_lines(
        wave,
        centres_aa=physics.TELLURIC_H2O_AIR_AA,
        depths=np.clip(0.06 * star.water * physics.TELLURIC_H2O_RELATIVE_DEPTH, 0.0, 0.6),
        sigma_aa=sigma_aa,
    )
    transmission *= physics.dib_transmission(wave, ebv=star.ebv, sigma_aa=sigma_aa)
    return transmission


def _counts(rng: np.random.Generator, expected: np.ndarray, chip: Chip) -> tuple[np.ndarray, int]:
    """Counts (ADU) with photon and read noise and, in 10 % of spectra, 1-3 cosmic rays;
    and how many."""
    n = expected.size
    variance = np.clip(expected, 0.0, None) / chip.gain + (chip.read_noise / chip.gain) ** 2 * 6.0
    counts = expected + np.sqrt(variance) * rng.standard_normal(n)
    spikes = 0
    if rng.random() < 0.1:
        spikes = int(rng.integers(1, 4))
        for at in rng.integers(5, n - 5, size=spikes):
            counts[at] += rng.uniform(5.0, 60.0) * math.sqrt(variance[at])
    return counts, spikes


def _star_truth(templates: Any, star: _Star) -> dict[str, Any]:
    """The truth row's leading columns: class, template and the star's drawn values."""
    return {
        **template_truth(templates, star.k, label=star.label, profile=star.profile),
        "rv_kms": star.rv,
        "vsini_extra_kms": star.vsini,
        "resolving_power": RESOLVING_POWER,
        "ebv": star.ebv,
        "snr": star.snr,
    }


def _sexagesimal(value: float, *, sign: bool) -> str:
    negative = value < 0
    value = abs(value)
    whole = int(value)
    minutes = (value - whole) * 60.0
    seconds = (minutes - int(minutes)) * 60.0
    text = (
        f"{whole:02d}:{int(minutes):02d}:{seconds:06.3f}"
        if not sign
        else f"{whole:02d}:{int(minutes):02d}:{seconds:05.2f}"
    )
    if sign:
        text = ("-" if negative else "+") + text
    return text


def _header_values(
    rng: np.random.Generator,
    *,
    index: int,
    chip: Chip,
    night: datetime,
    frame: int,
    start: float,
    level: float,
) -> dict[str, Any]:
    del index
    l_deg = float(rng.uniform(0.0, 360.0))
    b_deg = float(np.clip(rng.normal(0.0, 12.0), -89.0, 89.0))
    ra, dec = _galactic_to_radec(l_deg, b_deg)
    if dec < -25.0:
        dec = -dec - 50.0 if dec > -89.0 else 10.0
    exptime = float(rng.choice([300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0]))
    obs_start = night + timedelta(hours=float(rng.uniform(18.5, 28.5)))
    middle = obs_start + timedelta(seconds=exptime / 2.0)
    obs_id = observation_id(night, frame)
    mjd_mid = iso_to_mjd(middle.strftime("%Y-%m-%dT%H:%M:%S"))
    return {
        "obs_id": obs_id,
        "OBJECT": _object_name(rng),
        "RA": ra,
        "DEC": dec,
        "DATE-OBS": obs_start.strftime("%Y-%m-%d"),
        "UT": obs_start.strftime("%H:%M:%S"),
        "EXPTIME": exptime,
        "EXPVAL": round(level * exptime / 3.6e6 * float(rng.uniform(0.5, 2.0)), 6),
        "GRATANG": 30.25,
        "DICHMIR": int(rng.integers(1, 3)),
        "SPECFILT": 1,
        "CRVAL1": start,
        "chip": chip,
        "TMID": mjd_mid,
        "DATE": middle.strftime("%Y-%m-%dT%H:%M:%S"),
        "HJD": mjd_mid + 2400000.5 + float(rng.uniform(-0.006, 0.006)),
        "VHELIO": float(rng.uniform(-30.0, 30.0)),
        "AIRMASS": float(rng.uniform(1.0, 2.2)),
    }


def _object_slug(name: str) -> str:
    return name.lower().replace(" ", "")


def ssap_bytes(spec: OndrejovSpectrum) -> bytes:
    """The SSAP form: empty primary + BINTABLE ``spectral`` (air Å) / ``flux`` (normalised)."""
    h = spec.header
    chip: Chip = h["chip"]
    wave, flux = spec.ssap_arrays()
    primary = fb.empty_primary(
        [
            card("EXTEND", True, "More exts following"),
            card("DATE", "2017-04-07", "Date file was written"),
            fb.synthetic_card(),
        ]
    )
    columns = [
        ("spectral", "D", wave, [card("TUNIT1", "Angstrom")]),
        ("flux", "D", flux, []),
    ]
    after = [
        card("TUTYP1", "spec:spectrum.data.spectralaxis.value"),
        card("TUTYP2", "spec:spectrum.data.fluxaxis.value"),
        card(
            "TITLE", f"ccd700/data/{_object_slug(h['OBJECT'])}/{chip.title_range}/{spec.obs_id}.fit"
        ),
        card("DS_IDPUB", PUBLISHER_ID + spec.obs_id),
        card("DATE", h["DATE"]),
        card("VODATE", "2016-02-02T11:13:43.919765"),
        card("SPECBAND", "Optical"),
        card("OBJECT", h["OBJECT"]),
        card("SRCCLASS", "star"),
        card("RA", float(h["RA"])),
        card("DEC", float(h["DEC"])),
        card("APERTURE", 0.000167, "[deg]"),
        card("TMID", float(h["TMID"]), "[d]"),
        card("TELAPSE", float(h["EXPTIME"]), "[s]"),
        card("SPEC_VAL", float((wave[0] + wave[-1]) / 2.0 * 1e-10), "[m]"),
        card("SPEC_BW", float((wave[-1] - wave[0]) * 1e-10), "[m]"),
        card("TDMIN1", float(wave[0] * 1e-10), "[m]"),
        card("TDMAX1", float(wave[-1] * 1e-10), "[m]"),
        card("RADECSYS", "ICRS"),
        card("SPECSDIM", "Angstrom"),
        card("VOSEGT", "Spectrum"),
        card("VOPUB", "ivo://asu.cas.cz/org"),
        card("DSSOURCE", "pointed"),
        card("CRETYPE", "archival"),
        card("FLUX_CAL", "UNCALIBRATED"),
        card("SPEC_CAL", "ABSOLUTE"),
    ]
    table = fb.bintable_hdu(columns, nrows=wave.size, cards_after=after)
    return primary + table


def raw_bytes(spec: OndrejovSpectrum) -> bytes:
    """The native form: float32 1-D primary image in ADU with a linear air wavelength solution."""
    h = spec.header
    chip: Chip = h["chip"]
    cards = [
        card("EXTEND", True, "File may contain extensions"),
        card("ORIGIN", "NOAO-IRAF FITS Image Kernel July 2003", "FITS file originator"),
        card("OBJECT", h["OBJECT"], "Name of the object observed"),
        card("OBSERVAT", "ONDREJOV", "Name of observatory (IRAF style)"),
        card("LATITUDE", 49.91056, "Telescope latitude  (degrees), +49:54:38.0"),
        card("LONGITUD", 14.78361, "Telescope longitud  (degrees), +14:47:01.0"),
        card("HEIGHT", 528, "Height above sea level [m]."),
        card("TELESCOP", "ZEISS-2m", "2m Ondrejov observatory telescope"),
        card("TELSYST", "COUDE", "Telescope setup - COUDE or CASSegrain"),
        card("INSTRUME", "COUDE700", "Coude spectrograph"),
        card("DETECTOR", chip.detector, "Name of the detector"),
        card("CHIPID", chip.chipid, "Name of CCD chip"),
        card("BUNIT", "ADU", "Unit of the array of image data"),
        card("GAIN", Raw(f"{chip.gain:.2f}"), "Electrons per ADU"),
        card("READNOIS", Raw(f"{chip.read_noise:.2f}"), "Readout noise in electrons per pix"),
        card("IMAGETYP", "object", "Type of observation, eg. FLAT"),
        card("FILENAME", f"{spec.obs_id}.fit"),
        card("SPECFILT", h["SPECFILT"], "Spectral filter"),
        card("UT", h["UT"], "UTC of  start of observation"),
        card("EPOCH", Raw("2000."), "Same as EQUINOX - for back compat"),
        card("EQUINOX", Raw("2000."), "Equinox of RA and DEC"),
        card("DATE-OBS", h["DATE-OBS"], "UTC date start of observation"),
        card("EXPTIME", Raw(f"{h['EXPTIME']:.0f}"), "Length of observation excluding pauses"),
        card("DARKTIME", Raw(f"{h['EXPTIME']:.0f}"), "Length of observation including pauses"),
        card("EXPVAL", float(h["EXPVAL"]), "Exposure value in photon counts [Mcounts]"),
        card("GRATANG", Raw("30.25"), "30:15"),
        card("DICHMIR", h["DICHMIR"], "Dichroic mirror number"),
        card("FLATTYPE", "PROJECT", "Flat type (Projector/Dome)"),
        card("COMPLAMP", "ThAr-BS/15mA", "Comparison arc setup"),
        card("RA", _sexagesimal(h["RA"] / 15.0, sign=False), f"{h['RA'] / 15.0:.6f}"),
        card("DEC", _sexagesimal(h["DEC"], sign=True), f"{h['DEC']:.6f}"),
        card("AIRMASS", round(h["AIRMASS"], 6)),
        card("WCSDIM", 1),
        card("CTYPE1", "LINEAR"),
        card("CRVAL1", float(h["CRVAL1"])),
        card("CRPIX1", Raw("1.")),
        card("CDELT1", chip.step_aa),
        card("CD1_1", chip.step_aa),
        card("DC-FLAG", 0),
        card("HJD", float(h["HJD"])),
        card("VHELIO", float(h["VHELIO"])),
        fb.synthetic_card(),
    ]
    return fb.image_hdu(cards, spec.counts.astype(">f4"))


def file_bytes(spec: OndrejovSpectrum) -> bytes:
    """The file in the spectrum's form."""
    return ssap_bytes(spec) if spec.form == "ssap" else raw_bytes(spec)


def to_spectrum(spec: OndrejovSpectrum, data: bytes, path: str | Path) -> Spectrum:
    """The `Spectrum` the project's reader makes of the file (same values).

    The raw form is read by the reader itself from memory; the SSAP form's
    is rebuilt here from the values the table was written from, which skips
    parsing it back (the tests check the two agree on written files).
    """
    if spec.form == "raw":
        header, start = parse_header(data)
        fits_file = FitsFile(path=Path(path), data=data, header=header, data_start=start)
        return identify(fits_file).read(fits_file)
    h = spec.header
    wave, flux = spec.ssap_arrays()
    chip: Chip = h["chip"]
    title_dir = f"ccd700/data/{_object_slug(h['OBJECT'])}/{chip.title_range}"
    meta = SpectrumMeta(
        id=PUBLISHER_ID + spec.obs_id,
        archive="ondrejov",
        form="ssap",
        object=h["OBJECT"],
        ra=float(h["RA"]),
        dec=float(h["DEC"]),
        mjd=float(h["TMID"]),
        date_obs=h["DATE"],
        snr=der_snr(flux),
        source=str(path),
        resolving_power=READER_R,
        extra={"title": f"{title_dir}/{spec.obs_id}.fit", "simulated": True},
    )
    return Spectrum(wave_aa=wave, flux=flux, medium="air", meta=meta, flux_unit="relative")


NOISE_SNR = (2.0, 8.0)
"""S/N of spectra labelled ``noise`` (log-uniform): too low to decide a profile (assumption)."""

NOISE_PROFILES = ((0.5, "emission"), (0.9, "absorption"), (1.0, "double-peak"))
"""The real profile under a noise-labelled spectrum: the programme's Be stars half the time."""

DWARF_FRACTION = {"O": 0.5, "B": 0.5, "A": 0.6, "F": 0.6, "G": 0.5, "K": 0.5, "M": 0.5}
"""Share of dwarfs (log g >= 3.8) per class: bright stars, luminosity classes III-V alike
(assumption)."""

METALLICITY = (-0.05, 0.25)
"""[Fe/H] (mean, sigma) the templates are weighted to: the targets are bright, nearby, near
solar."""


def _nan_flux_file(spec: OndrejovSpectrum, good: bytes) -> bytes:
    """Junk ``nan-flux``: a valid file whose counts are all NaN."""
    spec.counts[:] = np.nan
    return file_bytes(spec)


def _wrong_layout_file(spec: OndrejovSpectrum, good: bytes) -> bytes:
    """Junk ``wrong-layout``: a real-looking FITS file that is not a spectrum, a 2-D flat frame."""
    frame = np.zeros((32, 64), dtype=np.float32) + 1000.0
    cards = [
        card("OBSERVAT", "ONDREJOV", "Name of observatory (IRAF style)"),
        card("TELESCOP", "ZEISS-2m", "2m Ondrejov observatory telescope"),
        card("INSTRUME", "COUDE700", "Coude spectrograph"),
        card("IMAGETYP", "flat", "Type of observation, eg. FLAT"),
        card("OBJECT", "flat", "Name of the object observed"),
        card("CRVAL1", 6252.9),
    ]
    return fb.image_hdu(cards, frame)


def _no_halpha_file(spec: OndrejovSpectrum, good: bytes) -> bytes:
    """Junk ``no-halpha``: a valid spectrum of another CCD700 setting, 2300 Å bluer."""
    spec.wave = spec.wave - 2300.0
    spec.ssap_slice = slice(0, min(spec.wave.size, spec.header["chip"].ssap_rows))
    spec.header["CRVAL1"] = float(spec.wave[0])
    return file_bytes(spec)


def _data_start(spec: OndrejovSpectrum, good: bytes) -> int:
    """Where ``truncated-data`` junk is cut after: header end (SSAP: 3 blocks before the end)."""
    return len(good) - 3 * fb.BLOCK if spec.form == "ssap" else fb.first_data_block(good)


def _simulate(index: int, *, seed: int, population: Population, layout: str) -> OndrejovSpectrum:
    return simulate_one(index, seed=seed, population=population, form=layout)


def _ident(spec: OndrejovSpectrum) -> str:
    return PUBLISHER_ID + spec.obs_id if spec.form == "ssap" else spec.obs_id


register(
    SimulatedArchive(
        name="ondrejov",
        code=2,
        layout_option="form",
        layouts=FORMS,
        simulate_one=_simulate,
        file_bytes=file_bytes,
        to_spectrum=to_spectrum,
        ident=_ident,
        mix=ONDREJOV_MIX,
        types=ONDREJOV_TYPES,
        noise_snr=NOISE_SNR,
        noise_profiles=NOISE_PROFILES,
        dwarf_fraction=DWARF_FRACTION,
        metallicity=METALLICITY,
        junk_makers={
            "nan-flux": _nan_flux_file,
            "wrong-layout": _wrong_layout_file,
            "no-halpha": _no_halpha_file,
        },
        data_start=_data_start,
        last_index=LAST_INDEX,
    )
)
