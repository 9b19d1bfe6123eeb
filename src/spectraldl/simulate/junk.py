"""Broken files of the kinds a real archive holds and ingest must survive.

Each is made from a valid simulated file of the same index, then broken the
way real files break: cut off during a copy, emptied, replaced by a log, a
flux of NaN, a layout no reader knows, a setting without H-alpha, a LAMOST red
arm that delivered nothing (as the real spec-55862-B6212_sp06-145 does over
5612-7535 Å). `JUNK_REASONS` holds a word of the error each one must trip.
"""

from __future__ import annotations

import numpy as np

from spectraldl.simulate import fitsbytes as fb
from spectraldl.simulate import lamost, ondrejov
from spectraldl.simulate.fitsbytes import card
from spectraldl.simulate.registry import simulated_archive

JUNK_KINDS = (
    "zero-byte",
    "truncated-header",
    "truncated-data",
    "text",
    "random-bytes",
    "nan-flux",
    "wrong-layout",
    "no-halpha",
    "dead-red-arm",
    "truncated-gzip",
)
"""Every kind of broken file. ``dead-red-arm`` is LAMOST-only and ``truncated-gzip``
needs compressed files; other archives use the rest."""

JUNK_REASONS = {
    "zero-byte": "empty",
    "truncated-header": "END",
    "truncated-data": "truncated|cannot read",
    "text": "not a FITS file",
    "random-bytes": "not a FITS file",
    "nan-flux": "NaN",
    "wrong-layout": "not a spectrum of a known",
    "no-halpha": "no H-alpha",
    "dead-red-arm": "constant",
    "truncated-gzip": "gzip",
}
"""Words (alternatives split by ``|``) that ingest's error reason for each kind contains."""


def kinds_for(archive: str, *, compressed: bool) -> tuple[str, ...]:
    """The junk kinds that make sense for an archive and compression."""
    excluded = simulated_archive(archive).junk_excluded
    kinds = [k for k in JUNK_KINDS if k not in excluded]
    return tuple(k for k in kinds if k != "truncated-gzip" or compressed)


def junk_kind(index: int, *, seed: int, kinds: tuple[str, ...]) -> str:
    """The kind of junk file ``index``: uniform over ``kinds``, from (seed, index) alone."""
    word = int(np.random.SeedSequence([seed, 11, index]).generate_state(1)[0])
    return kinds[word % len(kinds)]


def _first_data_block(data: bytes) -> int:
    end = data.find(b"END" + b" " * 77)
    while end % fb.CARD:
        end = data.find(b"END" + b" " * 77, end + 1)
    return -(-(end + fb.CARD) // fb.BLOCK) * fb.BLOCK


def make_junk(
    kind: str, spec: lamost.LamostSpectrum | ondrejov.OndrejovSpectrum, rng: np.random.Generator
) -> bytes:
    """The (uncompressed, except ``truncated-gzip``) bytes of a broken file of ``kind``."""
    is_lamost = isinstance(spec, lamost.LamostSpectrum)
    good = lamost.file_bytes(spec) if is_lamost else ondrejov.file_bytes(spec)
    if kind == "zero-byte":
        return b""
    if kind == "truncated-header":
        end = good.find(b"END" + b" " * 77)
        return good[: int(rng.integers(min(160, end - 1), end))]
    if kind == "truncated-data":
        start = _first_data_block(good)
        if not is_lamost and spec.form == "ssap":
            start = len(good) - 3 * fb.BLOCK
        return good[: start + int(rng.integers(1, max(2, (len(good) - start) // 2)))]
    if kind == "text":
        return b"observing log: clouds from 23:10, dome closed, see the night report\n"
    if kind == "random-bytes":
        data = rng.bytes(int(rng.integers(3000, 9000)))
        return b"\x00" + data[1:]
    if kind == "truncated-gzip":
        return fb.gzip_bytes(good, level=1)[: int(rng.integers(300, 3000))]
    if kind == "nan-flux":
        return _nan_flux(spec, is_lamost)
    if kind == "wrong-layout":
        return _wrong_layout(spec, is_lamost, good)
    if kind == "no-halpha":
        return _no_halpha(spec, is_lamost, good)
    if kind == "dead-red-arm" and is_lamost:
        dead = (spec.wave > 5612.0) & (spec.wave < 7535.0)
        spec.flux[dead] = 0.0
        spec.ivar[dead] = 0.0
        spec.andmask[dead] = lamost.NODATA
        spec.ormask[dead] = lamost.NODATA
        return lamost.file_bytes(spec)
    raise ValueError(f"unknown junk kind {kind!r}")


def _nan_flux(spec: lamost.LamostSpectrum | ondrejov.OndrejovSpectrum, is_lamost: bool) -> bytes:
    if is_lamost:
        spec.flux[:] = np.nan
        return lamost.file_bytes(spec)
    spec.counts[:] = np.nan
    return ondrejov.file_bytes(spec)


def _wrong_layout(
    spec: lamost.LamostSpectrum | ondrejov.OndrejovSpectrum, is_lamost: bool, good: bytes
) -> bytes:
    """A real-looking FITS file that is not a spectrum: unknown LAMOST rows, or a 2-D CCD frame."""
    if is_lamost and spec.release == "dr8":
        return good.replace(b"'WAVELENGTH'", b"'SKY_LINES '", 1)
    if is_lamost:
        for rows in (
            b"'Flux Inverse Subcontinuum Andmask Ormask'",
            b"'Flux, Inverse, Wavelength, Andmask, Ormask'",
            b"'Flux Inverse Wavelength Andmask Ormask'",
            b"'COADD   '",
        ):
            if rows in good:
                return good.replace(rows, b"'Sky Arc Flat Bias'".ljust(len(rows)), 1)
        raise ValueError("no EXTEN0 card to replace")
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


def _no_halpha(
    spec: lamost.LamostSpectrum | ondrejov.OndrejovSpectrum, is_lamost: bool, good: bytes
) -> bytes:
    """A valid spectrum of another wavelength range (a wrong solution, another CCD700 setting)."""
    if is_lamost:
        old = (
            b"COEFF0  =              3.56820"
            if spec.release == "dr1"
            else b"COEFF0  =               3.5682"
        )
        new = (
            b"COEFF0  =              3.40000"
            if spec.release == "dr1"
            else b"COEFF0  =                  3.4"
        )
        if spec.release in ("dr2", "dr6", "dr8"):
            spec.wave = 10.0 ** (3.4 + lamost.COEFF1 * np.arange(spec.wave.size))
            good = lamost.file_bytes(spec)
        return good.replace(old, new, 1).replace(
            old.replace(b"COEFF0  ", b"CRVAL1  "), new.replace(b"COEFF0  ", b"CRVAL1  "), 1
        )
    spec.wave = spec.wave - 2300.0
    spec.ssap_slice = slice(0, min(spec.wave.size, spec.header["chip"].ssap_rows))
    spec.header["CRVAL1"] = float(spec.wave[0])
    return ondrejov.file_bytes(spec)
