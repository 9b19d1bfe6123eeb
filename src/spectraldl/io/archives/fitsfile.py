"""A FITS file held in memory: its headers parsed fast, its data viewed with NumPy.

A LAMOST low-resolution spectrum is a primary header and one block of
big-endian floats. Opening it with astropy costs milliseconds (card objects,
HDU classes, scaling machinery); parsing the 80-character cards and viewing the
data block with NumPy costs tens of microseconds. Across a whole release that
is the difference between hours and minutes (``benchmarks/ingest.py``). The
tests compare every array read here with astropy's on every real file.

Binary tables of plain numeric columns (LAMOST DR8+ and MRS, Ondřejov SSAP)
are read from the bytes too (`spectraldl.io.archives.bintable`); other
extensions with astropy, from the same in-memory bytes, so a file is read from
disk once.
Gzipped files (how LAMOST distributes its releases) are recognised by their
magic bytes and inflated in one call by libdeflate, about twice zlib's rate
and 1.1-1.3 times ISA-L's streaming one on these files (``benchmarks/ingest.py``);
inflating is the largest single cost of reading a gzipped spectrum. Files of
several gzip members, or too large to inflate blind, stream through ISA-L.

Nothing is trusted before it is checked: only regular files are opened (a
FIFO or a device named ``*.fits`` would block or never end), a gzip stream is
inflated only as far as its FITS headers promise (a small "gzip bomb" that
inflates to gigabytes is refused, not held in memory), and header values with
bytes outside ASCII are decoded without loss, so two such ids never collide.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import deflate
import numpy as np
from isal import isal_zlib
from numpy.typing import NDArray

from spectraldl.core.errors import NO_SUCH_FILE, SpectrumError

if TYPE_CHECKING:
    from astropy.io.fits import HDUList

BLOCK = 2880
CARD = 80
_GZIP_MAGIC = b"\x1f\x8b"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_REASON = (
    "not a FITS file but an HDF5 file: a spectraldl dataset is ingested already "
    "(give it to train, classify or explore as it is)"
)
_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}

SPECTRUM_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
"""File names the spectrum readers accept (any case); the content decides how a file is read."""

_LONGEST_SUFFIX_FIRST = tuple(sorted(SPECTRUM_SUFFIXES, key=len, reverse=True))

MAX_FILE_BYTES = 1 << 28
"""The largest (inflated) FITS file read: 256 MiB. One spectrum of a supported archive is
kilobytes to a few MB (a LAMOST MRS file with every exposure about 10 MB); anything
bigger is a damaged header or a decompression bomb, refused before it is held in memory."""

TRAILING_SLACK = 64 * BLOCK
"""Bytes tolerated after the last HDU a header describes (padding some writers leave)."""

INFLATE_STEP = 64 * BLOCK
"""Bytes inflated at a time while looking for a header's END card (184 kB): a whole LAMOST
spectrum (90 kB) comes out of one call instead of five (10 us less per file)."""

MAX_GZIP_MEMBERS = 10_000
"""The most gzip members (streams one after the other) a file may hold: a spectrum is one,
or a few dozen blocks from ``bgzip``; each costs a copy of the rest of the file."""

WHOLE_INFLATE_BYTES = 1 << 24
"""The largest gzip stream (by its trailer's size field) inflated in one call: 16 MiB, a
LAMOST MRS file with room to spare. Larger ones inflate step by step, only as far as their
FITS headers promise, so that a bomb is refused before it is held in memory."""

MAX_HEADER_BYTES = 1000 * BLOCK
"""The longest header searched for its END card (36 000 cards; LAMOST's have about 130)."""

HeaderValue = str | int | float | bool | None


_STRING_VALUE = re.compile(r"'([^']*(?:''[^']*)*)'")
"""A quoted string value, ``''`` inside it a quote; the loop unrolled (runs of other characters
matched at once), 8x faster than one alternative per character on a 40-character value."""


def spectrum_stem(name: str) -> str:
    """``name`` without a spectrum suffix (`SPECTRUM_SUFFIXES`, any case)."""
    lower = name.lower()
    for suffix in _LONGEST_SUFFIX_FIRST:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unprintable(body: str) -> str:
    """A string value holding bytes FITS allows in none (outside printable ASCII), decoded
    without loss.

    Headers are decoded byte for byte (latin-1), so cards stay 80 characters.
    Valid UTF-8 becomes its characters; other bytes, and control characters
    (a NUL, which no HDF5 string holds, or a newline in an id), become
    ``\\xNN`` escapes. Either way distinct bytes give distinct strings, never U+FFFD.
    """
    raw = body.encode("latin-1")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("ascii", errors="backslashreplace")
    return _CONTROL.sub(lambda control: f"\\x{ord(control.group()):02x}", text)


def _parse_value(text: str) -> HeaderValue:
    """Parse the value part of a FITS card (after ``= ``), dropping the comment."""
    text = text.strip()
    if not text:
        return None
    if text[0] == "'":
        match = _STRING_VALUE.match(text)
        body = match.group(1) if match else text[1:]
        body = body.replace("''", "'").rstrip()
        return body if body.isascii() and body.isprintable() else _unprintable(body)
    value = text.split("/", 1)[0].strip()
    if not value:  # only a comment: an undefined value, as astropy reads it
        return None
    if value == "T":
        return True
    if value == "F":
        return False
    if "." not in value:  # int() refuses any text with a point: no need to try
        try:
            return int(value)
        except ValueError:
            pass
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value if value.isascii() and value.isprintable() else _unprintable(value)


_CARD_FIELDS = np.dtype([("key", "S8"), ("indicator", "S2"), ("rest", "S70")])
"""A header card's fixed columns: keyword, value indicator (``= ``), value and comment."""

_CARD_HEADS = np.dtype([("head", "V10"), ("rest", "V70")])
"""A card's keyword and value indicator as one field: all a header's index depends on."""

_INDEXES: dict[bytes, dict[bytes, int]] = {}
"""Card indexes by the header's card heads (every card's first ten bytes): the files of one
release share a layout, so most headers reuse an index instead of building one."""

_MAX_INDEXES = 64

_MAX_SHARED_CARDS = 1000
"""Headers of more cards than this (the archives' have a few hundred) get an index of their
own, freed with them: the table then holds at most 64 x 1000 cards whatever files are read."""


_ABSENT: Any = object()


@lru_cache(maxsize=1024)
def _card_key(key: str) -> bytes:
    """A keyword as its card's first eight bytes (blank-padded), the index's key."""
    return f"{key:<8}".encode("latin-1", errors="replace")


class Header(Mapping[str, HeaderValue]):
    """A primary or extension header: keyword -> value, parsed on first access.

    A LAMOST header has about 130 cards of which a reader uses a dozen: the
    keywords are indexed by their card offsets (found by one NumPy view of the
    cards' fixed columns, once per layout: `_card_index`), values are parsed only
    when asked for. The first occurrence of a keyword wins; COMMENT, HISTORY and
    blank cards are not values.
    """

    __slots__ = ("_index", "_text", "_values")

    def __init__(self, text: str) -> None:
        self._text = text
        whole = len(text) - len(text) % CARD
        self._index = _card_index(text[:whole].encode("latin-1"))
        self._values: dict[str, HeaderValue] = {}

    def __getitem__(self, key: str) -> HeaderValue:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The keyword's value, or ``default`` when the header has no such card."""
        value = self._values.get(key, _ABSENT)
        if value is _ABSENT:
            pos = self._index.get(_card_key(key)) if isinstance(key, str) else None
            if pos is None:
                return default
            value = _parse_value(self._text[pos + 10 : pos + CARD])
            self._values[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _card_key(key) in self._index

    def __iter__(self) -> Iterator[str]:
        in_file_order = sorted(self._index, key=self._index.__getitem__)
        return (key.decode("latin-1").rstrip() for key in in_file_order)

    def __len__(self) -> int:
        return len(self._index)


def _card_index(cards: bytes) -> dict[bytes, int]:
    """Keyword (card bytes 0-8) -> byte offset of its first valued card, for whole cards.

    Shared, never changed: built once per layout of card heads (`_INDEXES`), except for
    headers longer than `_MAX_SHARED_CARDS`.
    """
    if len(cards) > _MAX_SHARED_CARDS * CARD:
        return _new_index(cards)
    heads = np.frombuffer(cards, dtype=_CARD_HEADS)["head"].tobytes()
    index = _INDEXES.get(heads)
    if index is None:
        index = _new_index(cards)
        if len(_INDEXES) >= _MAX_INDEXES:
            _INDEXES.clear()  # one call: safe beside threads reading other headers
        _INDEXES[heads] = index
    return index


def _new_index(cards: bytes) -> dict[bytes, int]:
    """`_card_index` built from the cards."""
    fields = np.frombuffer(cards, dtype=_CARD_FIELDS)
    valued = np.flatnonzero(fields["indicator"] == b"= ")
    keys = fields["key"][valued].tolist()
    offsets = (valued * CARD).tolist()
    index = dict(zip(reversed(keys), reversed(offsets), strict=True))
    for commentary in (b"COMMENT ", b"HISTORY "):  # commentary even when written "KEY = "
        index.pop(commentary, None)
    return index


_END_CARD = b"END" + b" " * 77


def parse_header(data: bytes | bytearray, start: int = 0) -> tuple[Header, int]:
    """Parse a FITS header starting at byte ``start``.

    Returns the `Header` and the byte offset where the data unit begins.
    Raises `ValueError` when no END card is found, or none within `MAX_HEADER_BYTES`
    (a damaged file: its header would take gigabytes to index).
    """
    limit = start + MAX_HEADER_BYTES + CARD
    end = _find_end(data, start, start, limit)
    if end < 0 and len(data) > limit:
        raise ValueError(f"no END card in the first {MAX_HEADER_BYTES} bytes of the header")
    if end < 0:
        raise ValueError("the header has no END card (file truncated or not FITS)")
    text = bytes(data[start:end]).decode("latin-1")
    return Header(text), start + -(-(end - start + CARD) // BLOCK) * BLOCK


def _axis(header: Mapping[str, HeaderValue], key: str) -> int:
    value = header.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} = {value!r} is not an axis length (a whole number >= 0)")
    return value


def _bitpix_and_naxis(header: Mapping[str, HeaderValue]) -> tuple[int, int]:
    """BITPIX (one of `_BITPIX_DTYPES`) and NAXIS (0-999); `ValueError` for others."""
    bitpix = header.get("BITPIX")
    naxis = header.get("NAXIS")
    if bitpix not in _BITPIX_DTYPES or not isinstance(naxis, int) or not 0 <= naxis <= 999:
        raise ValueError(f"unsupported BITPIX={bitpix!r} or NAXIS={naxis!r}")
    return int(bitpix), naxis


def _dtype_and_shape(header: Mapping[str, HeaderValue]) -> tuple[str, tuple[int, ...]]:
    bitpix, naxis = _bitpix_and_naxis(header)
    shape = tuple(_axis(header, f"NAXIS{i}") for i in range(naxis, 0, -1))
    return _BITPIX_DTYPES[bitpix], shape


def data_unit_bytes(header: Mapping[str, HeaderValue]) -> int:
    """Bytes of the data unit ``header`` describes, before padding (FITS 4.0, eq. 1-2).

    ``|BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn)``; random groups
    (``GROUPS = T``, ``NAXIS1 = 0``) leave ``NAXIS1`` out. Raises `ValueError`
    for an unsupported BITPIX or a negative axis.
    """
    bitpix, naxis = _bitpix_and_naxis(header)
    if naxis == 0:
        return 0
    first = 2 if header.get("GROUPS") is True and _axis(header, "NAXIS1") == 0 else 1
    count = 1
    for i in range(first, naxis + 1):
        count *= _axis(header, f"NAXIS{i}")
    pcount = _axis(header, "PCOUNT")
    gcount = _axis(header, "GCOUNT") if "GCOUNT" in header else 1
    return abs(bitpix) // 8 * gcount * (pcount + count)


def _padded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``, ``a character device``, ...)."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, refusing anything but a regular file before opening it.

    A FIFO would block and a device never end; the file is opened without
    blocking and checked again (it could have been swapped in between). Read
    by `os.read` on the descriptor, without the buffered file object that
    `open` would build around it (a fifth of this function's time per file).
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise SpectrumError(path, f"{file_kind(mode)}, not a regular file; never opened")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise SpectrumError(path, NO_SUCH_FILE) from None
    except OSError as exc:
        raise SpectrumError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpectrumError(path, f"{file_kind(info.st_mode)}, not a regular file; not read")
        return _read_to_end(path, fd, info.st_size)
    except OSError as exc:
        raise SpectrumError(path, f"cannot read the file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_to_end(path: Path, fd: int, size: int) -> bytes:
    """Everything ``fd`` holds, ``size`` bytes as its stat said, or more if it has grown since;
    `SpectrumError` beyond `MAX_FILE_BYTES`."""
    chunks: list[bytes] = []
    total = 0
    while True:
        known = max(size, total)
        if known > MAX_FILE_BYTES:
            raise SpectrumError(
                path,
                f"the file is {known} bytes, more than any spectrum "
                f"(limit {MAX_FILE_BYTES}); not read",
            )
        chunk = os.read(fd, max(size - total, 0) + 1)  # one byte more: the end, or growth
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Truncated(ValueError):
    """A file that ends inside an HDU: in its header, or before its data unit's last byte."""


class _Bomb(ValueError):
    """A gzip stream that inflates beyond what its FITS headers promise."""


def _find_end(
    data: bytes | bytearray, start: int, search_from: int, stop: int | None = None
) -> int:
    """Offset of the END card of the header starting at ``start`` (card-aligned, wholly
    before ``stop``), or -1."""
    end = data.find(_END_CARD, search_from, stop)
    while end >= 0 and (end - start) % CARD:
        end = data.find(_END_CARD, end + 1, stop)
    return end


def _inflate_whole(raw: bytes) -> bytes | None:
    """``raw`` inflated in one libdeflate call when it is a single gzip member of at most
    `WHOLE_INFLATE_BYTES`; None otherwise (several members, a damaged stream or trailer).

    libdeflate inflates a LAMOST file 1.1-1.3 times as fast as ISA-L's streaming
    decompressor (``benchmarks/ingest.py``). It checks the first member's CRC and size against that
    member's trailer; the same CRC and size in the file's last 8 bytes make it the only one
    (or the first of identical members, read as a plain file whose copy trails it).
    """
    size = int.from_bytes(raw[-4:], "little")
    if not 0 < size <= WHOLE_INFLATE_BYTES:
        return None
    try:
        out = deflate.gzip_decompress(raw, size)
    except deflate.DeflateError:
        return None  # the streaming path says what is wrong, or reads the members in turn
    if len(out) != size or deflate.crc32(out) != int.from_bytes(raw[-8:-4], "little"):
        return None
    return bytes(out)


class _Inflater:
    """A gzip stream inflated on demand into ``out`` (members one after the other).

    A single-member stream of a spectrum's size is inflated whole at once
    (`_inflate_whole`). Otherwise ``out`` is the first inflated piece itself while it
    is the only one, and a bytearray the later pieces extend.
    """

    def __init__(self, raw: bytes) -> None:
        whole = _inflate_whole(raw)
        self.out: bytes | bytearray = whole or b""
        self._whole = whole is not None
        self._inflater = isal_zlib.decompressobj(wbits=31)
        self._pending = b"" if self._whole else raw
        self._members = 1

    def fill(self, size: int) -> bool:
        """Inflate until ``out`` holds ``size`` bytes; False when the stream ended first."""
        if self._whole:
            return len(self.out) >= size
        while len(self.out) < size:
            if self._inflater.eof:  # a gzip file may hold several members, one after the other
                self._pending = self._inflater.unused_data
                if not self._pending.strip(b"\0"):
                    return False
                self._members += 1
                if self._members > MAX_GZIP_MEMBERS:
                    raise _Bomb(f"it holds more than {MAX_GZIP_MEMBERS} gzip members")
                self._inflater = isal_zlib.decompressobj(wbits=31)
            if not self._pending:
                raise EOFError("the gzip stream ends before its end-of-stream marker")
            piece = self._inflater.decompress(self._pending, size - len(self.out))
            self._pending = self._inflater.unconsumed_tail
            if not self.out:
                self.out = piece
            elif piece:
                if isinstance(self.out, bytes):
                    self.out = bytearray(self.out)
                self.out.extend(piece)
        return True

    def data(self) -> bytes:
        """What was inflated, as bytes."""
        return self.out if isinstance(self.out, bytes) else bytes(self.out)

    def header_end(self, start: int) -> int:
        """Inflate as far as the END card of the header at ``start``: its offset, or -1 when
        the stream ends first. Raises `_Bomb` when none comes within `MAX_HEADER_BYTES`."""
        search_from, ended = start, False  # bytes inflated earlier past ``start`` count too
        while True:
            end = _find_end(self.out, start, search_from)
            searched_to = end if end >= 0 else len(self.out)
            if searched_to - start > MAX_HEADER_BYTES:
                raise _Bomb(f"no END card in the first {MAX_HEADER_BYTES} inflated bytes")
            if end >= 0 or ended:
                return end
            search_from = max(start, len(self.out) - CARD)
            ended = not self.fill(len(self.out) + INFLATE_STEP)

    def refuse_beyond(self, limit: int, what: str) -> None:
        """Raise `_Bomb` (``what``) when the stream inflates to more than ``limit`` bytes."""
        if self.fill(limit + 1):
            raise _Bomb(what)


def _inflate(raw: bytes) -> tuple[bytes, tuple[Header, int] | None]:
    """Inflate a gzip stream only as far as the FITS headers inside it promise.

    Returns the inflated bytes and the primary header parsed on the way (with
    the offset of its data unit), or None when no complete header was found.

    HDU by HDU: inflate until the header's END card, then exactly the data unit
    it describes, then look for another extension. Raises `_Bomb` when the
    stream holds more than that (plus `TRAILING_SLACK`), when a header promises
    more than `MAX_FILE_BYTES`, or when no END card comes within
    `MAX_HEADER_BYTES`; gzip errors propagate as the decompressor raises them.
    """
    stream = _Inflater(raw)
    primary: tuple[Header, int] | None = None
    start = 0
    while True:
        if stream.header_end(start) < 0:
            return stream.data(), primary  # no END card: parse_header says so
        header, data_start = parse_header(stream.out, start)
        primary = primary or (header, data_start)
        try:
            size = data_unit_bytes(header)
        except ValueError:  # unsizable: inflate what there is (within the limit)
            stream.refuse_beyond(MAX_FILE_BYTES, f"it inflates to more than {MAX_FILE_BYTES}")
            return stream.data(), primary
        if data_start + size > MAX_FILE_BYTES:
            raise _Bomb(
                f"its header promises {data_start + size} bytes, more than any "
                f"spectrum (limit {MAX_FILE_BYTES})"
            )
        start = data_start + _padded(size)
        if not stream.fill(start) or not stream.fill(start + BLOCK):
            return stream.data(), primary
        if not stream.out.startswith(b"XTENSION=", start):
            stream.refuse_beyond(
                start + TRAILING_SLACK,
                f"it inflates to more than its FITS headers promise ({start} bytes "
                f"and {TRAILING_SLACK} of slack)",
            )
            return stream.data(), primary


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
    _extensions: dict[int, tuple[Header, int] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def open(cls, path: str | Path) -> FitsFile:
        """Read ``path`` (plain or gzip, recognised by content) and parse its primary header.

        Raises `SpectrumError` with a readable reason for empty, truncated,
        corrupt or non-FITS files.
        """
        path = Path(path)
        raw = _read_regular_file(path)
        if not raw:
            raise SpectrumError(path, "the file is empty (0 bytes)")
        parsed = None
        if raw[:2] == _GZIP_MAGIC:
            try:
                raw, parsed = _inflate(raw)
            except _Bomb as exc:
                raise SpectrumError(path, f"refused to inflate the gzip stream: {exc}") from None
            # isal's stub declares ``error`` as an Exception instance; it is the class IsalError
            except (EOFError, OSError, zlib.error, isal_zlib.error) as exc:  # type: ignore[misc]
                reason = f"the gzip stream is truncated or corrupt ({exc})"
                raise SpectrumError(path, reason) from None
        if raw.startswith(_HDF5_MAGIC):
            raise SpectrumError(path, _HDF5_REASON)
        if not raw.startswith(b"SIMPLE  ="):
            raise SpectrumError(path, "not a FITS file (it does not start with a SIMPLE card)")
        try:
            header, data_start = parsed or parse_header(raw)
        except ValueError as exc:
            raise SpectrumError(path, str(exc)) from None
        fits_file = cls(path=path, data=raw, header=header, data_start=data_start)
        fits_file._refuse_truncated()
        return fits_file

    def primary_array(self) -> NDArray[Any]:
        """Return the primary data array exactly as astropy would (BSCALE/BZERO applied).

        Raises `SpectrumError` when the data unit is shorter than the header says.
        """
        try:
            dtype, shape = _dtype_and_shape(self.header)
        except ValueError as exc:
            raise SpectrumError(self.path, str(exc)) from None
        count = math.prod(shape) if shape else 0
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
            with np.errstate(over="ignore", invalid="ignore"):  # inf or NaN: refused by callers
                array = array * float(bscale or 1) + float(bzero or 0)
        return array

    def unused_bytes_after_primary(self) -> int:
        """Non-zero bytes in the padding of the primary data unit (zeros in FITS).

        A primary header whose axes understate its image leaves the image's last pixels
        there, just after the unit it states. Bytes after the padding are not counted: a
        newline or blanks appended to a whole file are trailing junk astropy reads past.
        """
        size = data_unit_bytes(self.header)
        end, stop = self.data_start + size, self.data_start + _padded(size)
        padding = self.data[end:stop]
        return len(padding) - padding.count(0)

    @cached_property
    def hdul(self) -> HDUList:
        """All HDUs, opened by astropy from the in-memory bytes (lazily, once).

        Header keywords astropy finds non-standard (Ondřejov raw files carry
        ``HISTORY1``-style keys) are accepted silently: they are archive facts,
        not user errors.
        """
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyWarning

        self._refuse_unsizable_hdus()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            try:
                hdul = fits.open(io.BytesIO(self.data), memmap=False, lazy_load_hdus=False)
            # a damaged header can make astropy fail in many ways (huge BITPIX: OverflowError)
            except (OSError, ValueError, TypeError, OverflowError, AttributeError) as exc:
                raise SpectrumError(self.path, f"astropy cannot parse the file ({exc})") from None
        return hdul

    def _refuse_unsizable_hdus(self) -> None:
        """Raise `SpectrumError` when a header in the HDU chain states no valid data size.

        astropy walks such a chain back and forth without end (GCOUNT = -1 held
        600 MB after 20 s and grew), so it is never given one. The walk stops
        where no header parses: what follows is astropy's to judge.
        """
        walked = 0
        try:
            for _ in self._chain():
                walked += 1
        except ValueError as exc:  # raised after the offending header was yielded
            message = f"HDU {walked - 1}'s header is invalid ({exc})"
            raise SpectrumError(self.path, message) from None

    def _refuse_truncated(self) -> None:
        """Raise `SpectrumError` when the file ends inside an HDU, its header or its data unit.

        Walks every HDU once (keeping the extensions' headers for `extension`): a reader
        looks at one or two of them, and a cut further on would otherwise pass unseen, or
        read as a file of another layout. A header that states no valid size ends the
        walk: its readers, or astropy, say what is wrong with it.
        """
        try:
            for index, found in enumerate(self._chain()):
                if index:
                    self._extensions[index] = found
        except _Truncated as exc:
            raise SpectrumError(self.path, f"truncated: {exc}") from None
        except ValueError:
            return

    def _chain(self) -> Iterator[tuple[Header, int]]:
        """Each HDU's header and where its data unit starts, the primary first, walked by the
        sizes the headers state, without astropy.

        Ends at the end of the file or at bytes that begin no extension (the padding some
        writers leave). Raises `_Truncated` where the file ends inside a data unit or an
        extension's header, and `ValueError` after yielding a header that states no valid
        size.
        """
        header, pos, index = self.header, self.data_start, 0
        while True:
            yield header, pos
            size = data_unit_bytes(header)
            if pos + size > len(self.data):
                raise _Truncated(
                    f"the file ends inside HDU {index}'s data unit: its header promises "
                    f"{size} bytes, the file holds {max(len(self.data) - pos, 0)}"
                )
            pos += _padded(size)
            if not self.data.startswith(b"XTENSION=", pos):
                return
            index += 1
            try:
                header, pos = parse_header(self.data, pos)
            except ValueError:
                if len(self.data) - pos > MAX_HEADER_BYTES + CARD:
                    return  # a header too long to search: not a cut, left to astropy
                raise _Truncated(
                    f"the file ends inside HDU {index}'s header (no END card follows)"
                ) from None

    def ends_inside_an_hdu(self) -> str:
        """Where the file ends inside an HDU (its header or its data unit), or '' when every
        HDU is whole: a last data unit short of only its block's zero padding is whole (some
        writers leave it so, and readers take it)."""
        try:
            for _ in self._chain():
                pass
        except _Truncated as exc:
            return str(exc)
        except ValueError:
            pass
        return ""

    def extension_header(self, index: int) -> Header | None:
        """Parse the header of extension ``index`` (1-based) without astropy, or None.

        Used by readers to identify table forms cheaply.
        """
        found = self.extension(index)
        return None if found is None else found[0]

    def extension(self, index: int) -> tuple[Header, int] | None:
        """The header of extension ``index`` (1-based) and where its data unit starts, parsed
        without astropy by walking the HDUs by their sizes (once: identifying the layout and
        reading it ask again); None when there is no such HDU."""
        if index not in self._extensions:
            self._extensions[index] = self._walk_to(index)
        return self._extensions[index]

    def _walk_to(self, index: int) -> tuple[Header, int] | None:
        try:
            return next(islice(self._chain(), index, None), None)
        except ValueError:  # a header before it states no valid size
            return None
