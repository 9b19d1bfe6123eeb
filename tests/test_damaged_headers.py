"""Damaged headers and streams that fuzzing real files turned up: each is refused with a
`SpectrumError` naming the file, at once (no other exception, no hang, no gigabytes).

Every case is a real fixture with one or two header cards changed (or its gzip stream
repeated); the readers must not trust a table's TFIELDS, NAXIS1 or BITPIX, astropy's
fallback must not escape with its own errors, and an infinite wavelength is no spectrum.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from spectraldl.core.errors import SpectrumError
from spectraldl.io.archives import read_spectrum

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


CASES = {
    "ssap-tfields-text": (lambda: changed(SSAP, 1, TFIELDS="'abc'"), "not a spectrum of a known"),
    "ssap-tfields-huge": (lambda: changed(SSAP, 1, TFIELDS="1000000000"), "not a spectrum"),
    "dr8-tfields-nan": (lambda: changed(DR8, 1, TFIELDS="NAN"), "not a spectrum of a known"),
    "ssap-tform-unknown": (lambda: changed(SSAP, 1, TFORM2="5"), "astropy cannot read table"),
    "ssap-bitpix-huge": (lambda: changed(SSAP, 1, BITPIX="1E38"), "astropy cannot parse"),
    "mrs-table-is-image": (lambda: changed(MRS, 2, XTENSION="'IMAGE   '"), "not a readable table"),
    "mrs-negative-width": (lambda: changed(MRS, 2, NAXIS1="-1"), "NAXIS1 = -1"),
    "mrs-tfields-1e8": (lambda: changed(MRS, 2, TFIELDS="100000000"), "TFIELDS at most 999"),
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
