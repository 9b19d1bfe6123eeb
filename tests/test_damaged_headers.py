"""Damaged headers and streams that fuzzing real files turned up: each is refused with a
`SpectrumError` naming the file, at once (no other exception, no hang, no gigabytes).

Every case is a real fixture with one or two header cards changed (or its gzip stream
repeated); the readers must not trust a table's TFIELDS, NAXIS1 or BITPIX, astropy's
fallback must not escape with its own errors, and an infinite wavelength is no spectrum.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from spectraldl.core.errors import SpectrumError
from spectraldl.core.quality import Quality
from spectraldl.io.archives import read_spectrum
from spectraldl.io.archives.fitsfile import FitsFile, data_unit_bytes
from spectraldl.jobs.ingest import ingest, read_and_preprocess
from spectraldl.prep.preprocess import PreprocessConfig

DATA = Path(__file__).parent / "data"
SSAP = DATA / "ondrejov-ssap" / "uk220017.fits"
RAW = DATA / "ondrejov-raw" / "uk220017.fits"
DR1 = DATA / "lamost-dr1" / "spec-55862-B6212_sp06-003.fits"
DR8 = DATA / "lamost-dr8-table" / "spec-58397-EG014118N254444M01_sp03-031.fits"
MRS = DATA / "lamost-mrs" / "med-58408-TD230151N343645T01_sp01-015.fits.gz"
BLOCK = 2880


def _hdu_starts(data: bytes) -> list[int]:
    """Where each HDU's header begins (the primary's, then every XTENSION block)."""
    return [0] + [at for at in range(BLOCK, len(data), BLOCK) if data[at : at + 9] == b"XTENSION="]


def changed(path: Path, hdu: int, **cards: str) -> bytes:
    """The (inflated) file with cards of HDU ``hdu`` set to the given raw values."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    start = _hdu_starts(data)[hdu]
    for key, value in cards.items():
        at = start
        while data[at : at + 8] != f"{key:<8}".encode():
            at += 80
        data = data[:at] + f"{key:<8}= {value}".ljust(80).encode() + data[at + 80 :]
    return data


def added(path: Path, **cards: str) -> bytes:
    """The (plain) file with cards added to its primary header, in place of its END card and
    the blank cards after it."""
    data = path.read_bytes()
    end = next(at for at in range(0, len(data), 80) if data[at : at + 8] == b"END     ")
    new = b"".join(f"{key:<8}= {value}".ljust(80).encode() for key, value in cards.items())
    assert data[end + 80 : end + 80 + len(new)].strip() == b"", "no room in the header block"
    return data[:end] + new + data[end : end + 80] + data[end + 80 + len(new) :]


CASES = {
    "ssap-tfields-text": (lambda: changed(SSAP, 1, TFIELDS="'abc'"), "not a spectrum of a known"),
    "ssap-tfields-huge": (lambda: changed(SSAP, 1, TFIELDS="1000000000"), "not a spectrum"),
    "dr8-tfields-nan": (lambda: changed(DR8, 1, TFIELDS="NAN"), "not a spectrum of a known"),
    "ssap-tform-unknown": (lambda: changed(SSAP, 1, TFORM2="5"), "astropy cannot read table"),
    "ssap-bitpix-huge": (lambda: changed(SSAP, 1, BITPIX="1E38"), "HDU 1's header is invalid"),
    "mrs-table-is-image": (lambda: changed(MRS, 2, XTENSION="'IMAGE   '"), "not a readable table"),
    "mrs-negative-width": (lambda: changed(MRS, 2, NAXIS1="-1"), "NAXIS1 = -1"),
    "mrs-tfields-1e8": (lambda: changed(MRS, 2, TFIELDS="100000000"), "TFIELDS at most 999"),
    # astropy re-reads such a chain without end, its memory growing
    "mrs-negative-gcount": (lambda: changed(MRS, 2, GCOUNT="-1"), "HDU 2's header is invalid"),
    "dr1-last-wavelength-infinite": (
        lambda: changed(DR1, 0, COEFF0="0.0", COEFF1=repr(308.3 / 3903)),
        "finite and strictly increasing",
    ),
    "raw-after-20000-empty-gzip-members": (
        lambda: gzip.compress(b"", mtime=0) * 20_000 + gzip.compress(RAW.read_bytes()),
        "gzip members",
    ),
}


@pytest.mark.timeout(60)  # a hang (a loop over TFIELDS = 10**9) fails here, not at 10 min
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_file_is_refused_naming_it(case: str, tmp_path: Path) -> None:
    make, says = CASES[case]
    path = tmp_path / f"{case}.fits"
    path.write_bytes(make())
    with pytest.raises(SpectrumError) as caught:
        read_spectrum(path)
    assert path.name in str(caught.value) and says in str(caught.value)


def test_the_cases_change_files_that_read() -> None:
    """Unchanged, every fixture the cases start from is a spectrum (so each case's refusal
    comes from its damage)."""
    for path in (SSAP, RAW, DR1, DR8, MRS):
        assert read_spectrum(path).wave_aa.size > 100


def _image_extension(size: int) -> bytes:
    """An IMAGE extension of ``size`` zero bytes (none: NAXIS = 0), padded to its blocks."""
    axes = ("NAXIS", "1"), ("NAXIS1", str(size))
    cards = [("XTENSION", "'IMAGE   '"), ("BITPIX", "8"), *(axes if size else [("NAXIS", "0")])]
    cards += [("PCOUNT", "0"), ("GCOUNT", "1")]
    header = b"".join(f"{k:<8}= {v:>20}".ljust(80).encode() for k, v in cards)
    header += b"END".ljust(80)
    padded = -(-size // BLOCK) * BLOCK
    return header.ljust(BLOCK) + bytes(padded)


def test_a_gzipped_file_of_many_hdus_reads_as_its_plain_bytes(tmp_path: Path) -> None:
    """Headers already inflated with an earlier data unit are searched for their END card
    (they were not: every HDU inflated 184 kB more, until the file counted as a bomb)."""
    data = RAW.read_bytes() + _image_extension(0) * 20 + _image_extension(3_000_000)
    plain, packed = tmp_path / "many.fits", tmp_path / "many.fits.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data, mtime=0))
    expected, got = read_spectrum(plain), read_spectrum(packed)
    assert np.array_equal(got.flux, expected.flux) and got.meta.id == expected.meta.id


def test_control_characters_in_header_strings_are_escaped(tmp_path: Path) -> None:
    """A NUL in a header string (which no HDF5 string holds: the whole ingest failed at
    its merge) or a newline reads as a visible escape, and the file is ingested."""
    path = tmp_path / "nul.fits"
    path.write_bytes(changed(DR1, 0, DESIG="'LAMOST J0\x001'", OBJNAME="'a\nb'"))
    spectrum = read_spectrum(path)
    assert spectrum.meta.designation == "LAMOST J0\\x001"
    summary = ingest([path], tmp_path / "out.h5")
    assert summary.added == 1 and not summary.errors


def test_overflowing_values_are_refused_without_numpy_warnings(tmp_path: Path) -> None:
    """BSCALE = 1E300 (flux overflows) and a wavelength solution from 0 Å are bad files,
    reported as such, with no RuntimeWarning printed on the way."""
    files = [tmp_path / "bscale.fits", tmp_path / "zero-wave.fits", tmp_path / "good.fits"]
    files[0].write_bytes(added(DR1, BSCALE="1E300"))
    files[1].write_bytes(changed(DR1, 0, COEFF0="0.0", COEFF1="1E-6"))
    files[2].write_bytes(DR1.read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows, errors = read_and_preprocess(files, config=PreprocessConfig())
    assert [error.path for error in errors] == [str(p) for p in files[:2]]
    assert len(rows.ids) == 1
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


# --- files cut short, and data that contradicts its header (reader review, items 1-4) -----

DR2 = DATA / "lamost-dr2" / "spec-56257-GAC089N38V2_sp01-009.fit"  # its or-mask ends non-zero


def _mrs(extra: int = 0) -> bytes:
    """The MRS fixture (primary, COADD_B, COADD_R) and ``extra`` bytes of one more HDU after
    them (a copy of COADD_R, as a full file's exposures follow its coadds)."""
    data = gzip.decompress(MRS.read_bytes())
    return data + data[_hdu_starts(data)[2] :][:extra]


def _wavelength_row_shuffled() -> bytes:
    """The DR2 fixture with its Wavelength row (row 2) in a shuffled order."""
    fits_file = FitsFile.open(DR2)
    image = np.array(fits_file.primary_array())
    np.random.default_rng(1).shuffle(image[2])
    start, data = fits_file.data_start, fits_file.data
    return data[:start] + image.tobytes() + data[start + image.nbytes :]


def _dr1_mask_pixel(row: int, value: float) -> bytes:
    """The DR1 fixture with pixel 100 of mask row ``row`` (3 and-mask, 4 or-mask) = ``value``."""
    fits_file = FitsFile.open(DR1)
    image = np.array(fits_file.primary_array())
    image[row, 100] = value
    start, data = fits_file.data_start, fits_file.data
    return data[:start] + image.tobytes() + data[start + image.nbytes :]


def _image_spilling() -> bytes:
    """The DR2 fixture with non-zero bytes in its image's padding: where the last pixels of an
    image whose axes understate it lie."""
    fits_file = FitsFile.open(DR2)
    end = fits_file.data_start + data_unit_bytes(fits_file.header)
    data = bytearray(fits_file.data)
    data[end : end + 40] = b"\x01" * 40
    return bytes(data)


CUT = {  # what is left of a real file -> the words its refusal must hold
    "mrs-cut-after-its-coadds": (
        lambda: _mrs(extra=30000),
        "truncated: the file ends inside HDU 3's data unit",
    ),
    "mrs-cut-in-coadd-b": (lambda: _mrs()[:30000], "truncated: the file ends inside HDU 1's data"),
    "mrs-cut-in-a-header": (
        lambda: _mrs(extra=1000),
        "truncated: the file ends inside HDU 3's header",
    ),
    "ssap-cut-after-primary": (
        lambda: SSAP.read_bytes()[: _hdu_starts(SSAP.read_bytes())[1]],
        "a primary header alone",
    ),
    "dr2-naxis1-understated": (
        lambda: changed(DR2, 0, NAXIS1="3799"),
        "the Wavelength row is not in order",
    ),
    "dr2-image-spilling-into-its-padding": (_image_spilling, "unused non-zero bytes"),
    # DR1 (WCS wavelengths, no Wavelength row to fall out of order; its or-mask ends in
    # zeros): each row r starts r pixels early per pixel understated, so the and-mask row
    # begins with the Subcontinuum row's tail (1.0 there, then fractions) and the or-mask
    # row with the and-mask's zeros.
    "dr1-naxis1-understated-by-1": (
        lambda: changed(DR1, 0, NAXIS1="3903"),
        "the Andmask row sets bits at pixel 0 that the Ormask row lacks",
    ),
    "dr1-naxis1-understated-by-9": (
        lambda: changed(DR1, 0, NAXIS1="3895"),
        "misaligned (NAXIS1 = 3895 would understate them)",
    ),
    "dr1-naxis1-understated-by-1000": (
        lambda: changed(DR1, 0, NAXIS1="2904"),
        "the Andmask row is no bit mask: pixel 0 holds 0.95",
    ),
    "dr1-andmask-fraction": (lambda: _dr1_mask_pixel(3, 0.5), "pixel 100 holds 0.5, not a whole"),
    "dr1-ormask-negative": (lambda: _dr1_mask_pixel(4, -1.0), "the Ormask row is no bit mask"),
    "dr1-ormask-nan": (lambda: _dr1_mask_pixel(4, np.nan), "pixel 100 holds nan"),
    "dr1-ormask-2-to-the-31": (lambda: _dr1_mask_pixel(4, 2.0**31), "holds 2.14748e+09"),
    "dr2-wavelengths-shuffled": (_wavelength_row_shuffled, "the Wavelength row is not in order"),
    "ssap-tfields-undefined": (
        lambda: changed(SSAP, 1, TFIELDS="9"),
        "table 1's header declares 9 fields (TFIELDS) but defines 2",
    ),
    "ssap-naxis1-narrow": (
        lambda: changed(SSAP, 1, NAXIS1="8"),
        "table 1's NAXIS1 (8) does not match its columns' width (16",
    ),
}


@pytest.mark.parametrize("case", sorted(CUT))
@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_a_cut_or_contradicted_file_is_refused_for_what_it_is(
    case: str, packed: bool, tmp_path: Path
) -> None:
    """A cut inside any HDU (not only the ones a reader uses) is called truncated, where it
    read as a spectrum or as an unknown layout; a header the data contradicts says how."""
    make, says = CUT[case]
    data = make()
    path = tmp_path / (f"{case}.fits.gz" if packed else f"{case}.fits")
    path.write_bytes(gzip.compress(data, mtime=0) if packed else data)
    with pytest.raises(SpectrumError) as caught:
        read_spectrum(path)
    assert path.name in str(caught.value) and says in str(caught.value)


def test_a_file_that_ends_at_an_hdu_boundary_or_in_zeros_reads(tmp_path: Path) -> None:
    """An MRS file that ends where an HDU ends (here its coadds and one more), or with zero
    blocks after that, is whole."""
    whole = _mrs(extra=10**6)
    short, padded = tmp_path / "short.fits", tmp_path / "padded.fits"
    short.write_bytes(whole)
    padded.write_bytes(whole + bytes(2 * BLOCK))
    expected = read_spectrum(MRS)
    for path in (short, padded):
        assert np.array_equal(read_spectrum(path).flux, expected.flux)
    assert read_spectrum(DR2).wave_aa.size > 100  # the fixture reads, undamaged
    # A newline or a block of blanks appended to a whole LAMOST image: junk astropy reads past.
    for tail in (b"\n", b" " * BLOCK):
        junk = tmp_path / f"junk-{len(tail)}.fits"
        junk.write_bytes(DR2.read_bytes() + tail)
        assert np.array_equal(read_spectrum(junk).flux, read_spectrum(DR2).flux)


def test_descending_lamost_wavelengths_still_read_in_order(tmp_path: Path) -> None:
    """Only wavelengths out of order are refused: a monotonic row, either way, is sorted."""
    fits_file = FitsFile.open(DR2)
    image = np.array(fits_file.primary_array())[:, ::-1]
    start, data = fits_file.data_start, fits_file.data
    path = tmp_path / "reversed.fits"
    path.write_bytes(
        data[:start] + np.ascontiguousarray(image).tobytes() + data[start + image.nbytes :]
    )
    a, b = read_spectrum(DR2), read_spectrum(path)
    assert np.array_equal(a.wave_aa, b.wave_aa) and np.array_equal(a.flux, b.flux)


def test_absurd_numbers_are_handled_without_runtime_warnings(tmp_path: Path) -> None:
    """SN_R = 1E300 is no S/N (measured from the data instead: SNR_FROM_DATA, a finite snr),
    and a flux pixel of 1E300 or float64's largest is a corrupt pixel (NaN, NONFINITE);
    nothing overflows on the way, so no RuntimeWarning reaches the terminal."""
    files = {name: tmp_path / f"{name}.fits" for name in ("snr", "spike", "max")}
    files["snr"].write_bytes(changed(DR1, 0, SN_R="1E300"))
    for name, value in (("spike", 1e300), ("max", np.finfo(np.float64).max)):
        fits_file = FitsFile.open(SSAP)
        header, start = fits_file.extension(1)
        table = np.frombuffer(fits_file.data, ">f8", count=2 * header["NAXIS2"], offset=start)
        table = table.copy().reshape(-1, 2)
        table[np.argmin(np.abs(table[:, 0] - 6562.8)), 1] = value
        data = fits_file.data
        files[name].write_bytes(data[:start] + table.tobytes() + data[start + table.nbytes :])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows, errors = read_and_preprocess(list(files.values()), config=PreprocessConfig())
    assert not errors and not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert np.isfinite(rows.meta["snr"]).all()
    assert rows.quality[0] & Quality.SNR_FROM_DATA
    assert (rows.quality[1:] & Quality.NONFINITE).all()
    assert np.isnan(read_spectrum(files["snr"]).meta.snr)


def test_wavelengths_in_messages_are_compact(tmp_path: Path) -> None:
    """CDELT1 = 1E300 is told in a few digits, not the 300 of a fixed-point number."""
    path = tmp_path / "wide.fits"
    path.write_bytes(changed(RAW, 0, CDELT1="1E300"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, errors = read_and_preprocess([path], config=PreprocessConfig())
    reason = errors[0].reason
    assert reason.startswith("no H-alpha coverage") and "e+303 Å" in reason and len(reason) < 120
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
