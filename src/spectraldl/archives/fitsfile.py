"""A FITS file held in memory: the primary header parsed fast, the rest via astropy.

A LAMOST low-resolution spectrum is a primary header and one block of
big-endian floats. Opening it with astropy costs milliseconds (card objects,
HDU classes, scaling machinery); parsing the 80-character cards and viewing the
data block with NumPy costs tens of microseconds. Across a whole release that
is the difference between hours and minutes (``benchmarks/ingest.py``). The
tests compare every array read here with astropy's on every real file.

Files with extensions (tables) are still read with astropy, from the same
in-memory bytes, so a file is read from disk once. Gzipped files (how LAMOST
distributes its releases) are recognised by their magic bytes and inflated
with ISA-L (python-isal), about 1.6 times faster than zlib on these files;
inflating is the largest single cost of reading a gzipped spectrum.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from isal import igzip, isal_zlib
from numpy.typing import NDArray

from spectraldl.errors import SpectrumError

if TYPE_CHECKING:
    from astropy.io.fits import HDUList

BLOCK = 2880
CARD = 80
_GZIP_MAGIC = b"\x1f\x8b"
_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}

HeaderValue = str | int | float | bool | None


_STRING_VALUE = re.compile(r"'((?:[^']|'')*)'")


def _parse_value(text: str) -> HeaderValue:
    """Parse the value part of a FITS card (after ``= ``), dropping the comment."""
    text = text.strip()
    if not text:
        return None
    if text[0] == "'":
        match = _STRING_VALUE.match(text)
        body = match.group(1) if match else text[1:]
        return body.replace("''", "'").rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value


class Header(Mapping[str, HeaderValue]):
    """A primary or extension header: keyword -> value, parsed on first access.

    A LAMOST header has about 130 cards of which a reader uses a dozen: the
    keywords are indexed once (their card offsets), values are parsed only
    when asked for. The first occurrence of a keyword wins; COMMENT, HISTORY
    and blank cards are not values.
    """

    __slots__ = ("_index", "_text", "_values")

    def __init__(self, text: str) -> None:
        self._text = text
        offsets = range(0, len(text), CARD)
        keys = [text[i : i + 8].rstrip() for i in offsets]
        self._index = {
            key: i
            for key, i in zip(reversed(keys), reversed(offsets), strict=True)
            if text[i + 8 : i + 10] == "= "
        }
        self._values: dict[str, HeaderValue] = {}

    def __getitem__(self, key: str) -> HeaderValue:
        try:
            return self._values[key]
        except KeyError:
            pos = self._index[key]
            value = _parse_value(self._text[pos + 10 : pos + CARD])
            self._values[key] = value
            return value

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


_END_CARD = b"END" + b" " * 77


def parse_header(data: bytes, start: int = 0) -> tuple[Header, int]:
    """Parse a FITS header starting at byte ``start``.

    Returns the `Header` and the byte offset where the data unit begins.
    Raises `ValueError` when no END card is found.
    """
    end = data.find(_END_CARD, start)
    while end >= 0 and (end - start) % CARD:
        end = data.find(_END_CARD, end + 1)
    if end < 0:
        raise ValueError("the header has no END card (file truncated or not FITS)")
    text = data[start:end].decode("ascii", errors="replace")
    return Header(text), start + -(-(end - start + CARD) // BLOCK) * BLOCK


def _dtype_and_shape(header: Mapping[str, HeaderValue]) -> tuple[str, tuple[int, ...]]:
    bitpix = header.get("BITPIX")
    naxis = header.get("NAXIS")
    if bitpix not in _BITPIX_DTYPES or not isinstance(naxis, int):
        raise ValueError(f"unsupported BITPIX={bitpix!r} or NAXIS={naxis!r}")
    shape = tuple(int(header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1))
    return _BITPIX_DTYPES[bitpix], shape


@dataclass
class FitsFile:
    """One FITS file read into memory (gunzipped when compressed).

    Attributes
    ----------
    path
        Where the file came from; used in every error message.
    data
        The whole (decompressed) file.
    header
        The primary header as a keyword -> value dict.
    data_start
        Byte offset of the primary data unit.
    """

    path: Path
    data: bytes
    header: Header
    data_start: int

    @classmethod
    def open(cls, path: str | Path) -> FitsFile:
        """Read ``path`` (plain or gzip, recognised by content) and parse its primary header.

        Raises `SpectrumError` with a readable reason for empty, truncated,
        corrupt or non-FITS files.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SpectrumError(path, f"cannot read the file ({exc.strerror or exc})") from None
        if not raw:
            raise SpectrumError(path, "the file is empty (0 bytes)")
        if raw[:2] == _GZIP_MAGIC:
            try:
                raw = igzip.decompress(raw)
            except (EOFError, OSError, zlib.error, isal_zlib.error) as exc:
                reason = f"the gzip stream is truncated or corrupt ({exc})"
                raise SpectrumError(path, reason) from None
        if not raw.startswith(b"SIMPLE  ="):
            raise SpectrumError(path, "not a FITS file (it does not start with a SIMPLE card)")
        try:
            header, data_start = parse_header(raw)
        except ValueError as exc:
            raise SpectrumError(path, str(exc)) from None
        return cls(path=path, data=raw, header=header, data_start=data_start)

    def primary_array(self) -> NDArray[Any]:
        """Return the primary data array exactly as astropy would (BSCALE/BZERO applied).

        Raises `SpectrumError` when the data unit is shorter than the header says.
        """
        try:
            dtype, shape = _dtype_and_shape(self.header)
        except ValueError as exc:
            raise SpectrumError(self.path, str(exc)) from None
        count = int(np.prod(shape)) if shape else 0
        nbytes = count * np.dtype(dtype).itemsize
        available = len(self.data) - self.data_start
        if available < nbytes:
            raise SpectrumError(
                self.path,
                f"the data unit is truncated: the header promises {nbytes} bytes, "
                f"the file holds {max(available, 0)}",
            )
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.data_start)
        array = array.reshape(shape)
        bscale = self.header.get("BSCALE", 1)
        bzero = self.header.get("BZERO", 0)
        if bscale not in (1, None) or bzero not in (0, None):
            array = array * float(bscale or 1) + float(bzero or 0)
        return array

    @cached_property
    def hdul(self) -> HDUList:
        """All HDUs, opened by astropy from the in-memory bytes (lazily, once).

        Header keywords astropy finds non-standard (Ondřejov raw files carry
        ``HISTORY1``-style keys) are accepted silently: they are archive facts,
        not user errors.
        """
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            try:
                hdul = fits.open(io.BytesIO(self.data), memmap=False, lazy_load_hdus=False)
            except (OSError, ValueError, TypeError) as exc:
                raise SpectrumError(self.path, f"astropy cannot parse the file ({exc})") from None
        return hdul

    def extension_header(self, index: int) -> Header | None:
        """Parse the header of extension ``index`` (1-based) without astropy, or None.

        Walks the HDUs by their sizes; used by readers to identify table forms
        cheaply.
        """
        pos = self.data_start
        header = self.header
        for _ in range(index):
            try:
                dtype, shape = _dtype_and_shape(header)
            except ValueError:
                return None
            count = int(np.prod(shape)) if shape else 0
            size = count * np.dtype(dtype).itemsize + int(header.get("PCOUNT", 0) or 0)
            pos += -(-size // BLOCK) * BLOCK
            if pos >= len(self.data):
                return None
            try:
                header, pos = parse_header(self.data, pos)
            except ValueError:
                return None
        return header
