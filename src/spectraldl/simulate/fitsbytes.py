"""FITS files composed as bytes: header cards, image and binary-table HDUs, gzip.

astropy's writer costs a few milliseconds per file (card objects, verification,
HDU classes); a simulated LAMOST spectrum is a header and one block of
big-endian floats, which NumPy and string formatting write in tens of
microseconds. Everything here follows the FITS 4.0 standard (Pence et al.
2010, A&A 524, A42): 80-character cards, fixed-format values, 2880-byte
blocks, data padded with zeros and headers with spaces. The tests read every
layout back with astropy (``verify('exception')``) and with the project's
readers and compare values and arrays.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from zlib_ng import zlib_ng

from spectraldl.io.archives.headers import SIMULATED_KEY

BLOCK = 2880
CARD = 80

Value = str | int | float | bool | None


class Raw(str):
    """A value already formatted as FITS value text (e.g. ``3.56820`` as LAMOST writes it)."""


def format_value(value: Value) -> str:
    """The value field of a card (columns 11 onward), fixed format."""
    if isinstance(value, Raw):
        text = str(value)
        return text if text.startswith("'") else text.rjust(20)
    if value is None:
        return ""
    if isinstance(value, bool):
        return ("T" if value else "F").rjust(20)
    if isinstance(value, int | np.integer):
        return str(int(value)).rjust(20)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"FITS header values must be finite, got {number}")
        text = repr(number).upper()
        if "." not in text and "E" not in text:
            text += ".0"
        return text.rjust(20)
    text = str(value).replace("'", "''")
    return f"'{text.ljust(8)}'".ljust(20)


@lru_cache(maxsize=8192, typed=True)
def card(keyword: str, value: Value = None, comment: str = "") -> bytes:
    """One 80-byte card ``KEYWORD = value / comment`` (comment cut to fit).

    ``COMMENT``/``HISTORY`` take their text in ``comment``; a blank keyword
    gives a blank card. Raises `ValueError` for a value too long for a card.
    Cached (by value and type): most cards of a simulated archive repeat.
    """
    if keyword in ("COMMENT", "HISTORY", ""):
        text = f"{keyword:<8}{comment}" if keyword else ""
        return text[:CARD].ljust(CARD).encode("ascii")
    if len(keyword) > 8:
        raise ValueError(f"keyword {keyword!r} is longer than 8 characters")
    text = f"{keyword:<8}= {format_value(value)}"
    if len(text) > CARD:
        raise ValueError(f"the value of {keyword} does not fit in one card")
    if comment:
        text = f"{text} / {comment}" if len(text) < CARD - 3 else text
    return text[:CARD].ljust(CARD).encode("ascii")


def synthetic_card() -> bytes:
    """``SIMULATD = T``: the card every simulated file carries in its primary header.

    The headers copy the real archives' so that the readers and catalogues
    meet what they meet in real files; this card is what tells a person (or
    `astropy.io.fits.getval(path, "SIMULATD")`) that the file is no observation.
    """
    return card(SIMULATED_KEY, True, "spectraldl simulate: synthetic, not an observation")


def header_block(cards: Sequence[bytes]) -> bytes:
    """Cards plus END, padded with spaces to a whole number of 2880-byte blocks."""
    body = b"".join(cards) + b"END".ljust(CARD)
    return body + b" " * (-len(body) % BLOCK)


def data_block(data: bytes) -> bytes:
    """A data unit padded with zero bytes to a whole number of blocks."""
    return data + b"\0" * (-len(data) % BLOCK)


def first_data_block(data: bytes) -> int:
    """The offset of the block after the primary header's END card in a FITS file."""
    end_card = b"END" + b" " * (CARD - 3)
    end = data.find(end_card)
    while end % CARD:
        end = data.find(end_card, end + 1)
    return -(-(end + CARD) // BLOCK) * BLOCK


def image_hdu(
    cards_after_axes: Sequence[bytes], array: np.ndarray, *, primary: bool = True
) -> bytes:
    """A primary (or IMAGE extension) HDU holding ``array`` (big-endian float/int).

    ``cards_after_axes`` follow the mandatory SIMPLE/BITPIX/NAXISn cards.
    """
    dtype = array.dtype.newbyteorder(">")
    bitpix = {"f4": -32, "f8": -64, "i2": 16, "i4": 32, "u1": 8}[dtype.str[1:]]
    first = card("SIMPLE", True) if primary else card("XTENSION", "IMAGE")
    cards = [first, card("BITPIX", bitpix), card("NAXIS", array.ndim)]
    cards += [card(f"NAXIS{i + 1}", n) for i, n in enumerate(reversed(array.shape))]
    return header_block(cards + list(cards_after_axes)) + data_block(
        np.ascontiguousarray(array, dtype=dtype).tobytes()
    )


def empty_primary(cards_after: Sequence[bytes]) -> bytes:
    """A primary HDU without data (NAXIS = 0), as table-form files have."""
    cards = [card("SIMPLE", True), card("BITPIX", 8), card("NAXIS", 0)]
    return header_block(cards + list(cards_after))


def bintable_hdu(
    columns: Sequence[tuple[str, str, np.ndarray, Sequence[bytes]]],
    *,
    nrows: int,
    cards_before_columns: Sequence[bytes] = (),
    cards_after: Sequence[bytes] = (),
) -> bytes:
    """A BINTABLE extension.

    Parameters
    ----------
    columns
        ``(name, tform, values, extra_cards)`` per column; ``values`` has shape
        (nrows,) for scalar columns or (nrows, n) for ``nE``/``nD`` array
        columns; ``extra_cards`` (TUNITn, ...) follow the column's TFORMn.
    nrows
        Number of rows.
    cards_before_columns, cards_after
        Cards placed after TFIELDS, and after the column cards.
    """
    codes = {"E": ">f4", "D": ">f8", "J": ">i4", "I": ">i2", "K": ">i8", "B": "u1"}
    fields = []
    for name, tform, _, _ in columns:
        repeat = int(tform[:-1] or 1)
        fields.append((name, codes[tform[-1]], (repeat,) if repeat > 1 else ()))
    table = np.zeros(nrows, dtype=np.dtype([(n, c, s) for n, c, s in fields]))
    for (name, _, values, _), (_, _, shape) in zip(columns, fields, strict=True):
        table[name] = np.asarray(values).reshape((nrows, *shape))
    cards = [
        card("XTENSION", "BINTABLE", "binary table extension"),
        card("BITPIX", 8, "array data type"),
        card("NAXIS", 2, "number of array dimensions"),
        card("NAXIS1", table.dtype.itemsize, "length of dimension 1"),
        card("NAXIS2", nrows, "length of dimension 2"),
        card("PCOUNT", 0, "number of group parameters"),
        card("GCOUNT", 1, "number of groups"),
        card("TFIELDS", len(columns), "number of table fields"),
        *cards_before_columns,
    ]
    for i, (name, tform, _, extra) in enumerate(columns, start=1):
        cards.append(card(f"TTYPE{i}", name))
        cards.append(card(f"TFORM{i}", tform))
        cards.extend(extra)
    cards.extend(cards_after)
    return header_block(cards) + data_block(table.tobytes())


def gzip_bytes(data: bytes, *, level: int = 1) -> bytes:
    """gzip ``data`` reproducibly: mtime 0, no file name, OS byte 255, run-length deflate.

    The header is written here (zlib's own gzip header carries the build's OS
    code); the deflate stream uses the RLE strategy, which on simulated
    spectra (incompressible noise, runs of zeros in masks and ivar) is twice
    as fast as the default at level 1 for a 3 % larger file. zlib-ng runs it
    twice as fast again and, with no hashing in RLE, writes the very bytes
    zlib writes (the tests compare them). Any gzip reader reads it.
    """
    compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 9, zlib_ng.Z_RLE)
    body = compressor.compress(data) + compressor.flush()
    xfl = b"\x04" if level == 1 else b"\x02" if level == 9 else b"\x00"
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + xfl + b"\xff"
    trailer = struct.pack("<II", zlib_ng.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer
