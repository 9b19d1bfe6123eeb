"""Columns of a FITS binary table read straight from the file's bytes, without astropy.

A LAMOST DR8+ spectrum is an empty primary HDU and a one-row ``BINTABLE`` of
array columns (``3909E``: FLUX, IVAR, WAVELENGTH, ...); an Ondřejov spectrum
served by SSAP, and a LAMOST medium-resolution coadd, a table of one row a
pixel. Opening them with astropy (HDU list, column objects, the record array)
cost 3-5 ms a file, five to eight times the reading of a LAMOST DR1-DR7
image; a column of such a table is big-endian numbers at a fixed offset in
each row, which NumPy views in microseconds. Only the plainest tables are read here: fixed-size
rows, the wanted columns numeric without scaling (``TSCALn``/``TZEROn``) or
shape (``TDIMn``); anything else answers None and is read with astropy, so
the arrays are always the ones astropy gives (the tests compare them).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import numpy as np
from numpy.typing import NDArray

from spectraldl.core.errors import SpectrumError
from spectraldl.io.archives.fitsfile import FitsFile, HeaderValue

_TFORM = re.compile(r"(\d*)([LXBIJKAEDCMPQ])(.*)")
_FIELD_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}
_DESCRIPTOR_BYTES = {"P": 8, "Q": 16}
_ARRAY_DTYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
_SHAPING = ("TSCAL", "TZERO", "TDIM")


MAX_FIELDS = 999
"""The most columns a FITS table may have (TFIELDS, the FITS standard's limit)."""


def _int(header: Mapping[str, HeaderValue], key: str) -> int | None:
    value = header.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def field_count(header: Mapping[str, HeaderValue]) -> int | None:
    """A table header's TFIELDS when it is a whole number of 0-999 (0 when absent), else None."""
    fields = _int(header, "TFIELDS") if "TFIELDS" in header else 0
    return fields if fields is not None and 0 <= fields <= MAX_FIELDS else None


def columns(
    fits_file: FitsFile, index: int, names: Collection[str]
) -> tuple[int, dict[str, NDArray[np.generic]]] | None:
    """The table in extension ``index``: its number of rows and its ``names`` columns (upper
    case, those it has) as astropy's ``hdul[index].data[name]`` holds them, read-only views
    of the file's bytes (one value a row, or an array a row); None where astropy must read
    the table.

    Raises `SpectrumError` when the file ends before the rows its header promises, and
    when the header's TFIELDS or NAXIS1 disagrees with its columns.
    """
    found = fits_file.extension(index)
    if found is None:
        return None
    header, start = found
    if header.get("XTENSION") != "BINTABLE" or header.get("NAXIS") != 2:
        return None
    width, rows, fields = _int(header, "NAXIS1"), _int(header, "NAXIS2"), field_count(header)
    if width is None or rows is None or fields is None or width < 0 or rows < 0:
        raise SpectrumError(
            fits_file.path,
            f"table {index}'s header is invalid: NAXIS1 = {header.get('NAXIS1')!r}, "
            f"NAXIS2 = {header.get('NAXIS2')!r}, TFIELDS = {header.get('TFIELDS')!r} "
            f"(whole numbers >= 0, TFIELDS at most {MAX_FIELDS})",
        )
    if header.get("BITPIX") != 8 or header.get("GCOUNT", 1) != 1:
        return None
    _refuse_undefined_fields(fits_file, index, header, fields)
    layout = _layout(header, fields, names)
    if layout is None:
        return None
    wanted, offset = layout
    if offset != width:
        raise SpectrumError(
            fits_file.path,
            f"table {index}'s NAXIS1 ({width}) does not match its columns' width "
            f"({offset} bytes a row by their TFORMs)",
        )
    available = len(fits_file.data) - start
    if width * rows > available:
        raise SpectrumError(
            fits_file.path,
            f"the data unit is truncated: the table's header promises {width * rows} bytes, "
            f"the file holds {max(available, 0)}",
        )
    if rows == 0:
        return 0, {}
    return rows, {
        name: _column(fits_file.data, start + at, width, rows, np.dtype(dtype), repeat)
        for name, (at, dtype, repeat) in wanted.items()
    }


def _layout(
    header: Mapping[str, HeaderValue], fields: int, names: Collection[str]
) -> tuple[dict[str, tuple[int, str, int]], int] | None:
    """Where each of ``names`` lies in a row (offset, dtype, repeat) and the row's width by
    the TFORMs; None when a TFORM is not understood or a wanted column is not plain."""
    wanted: dict[str, tuple[int, str, int]] = {}
    offset = 0
    for i in range(1, fields + 1):
        match = _TFORM.fullmatch(str(header.get(f"TFORM{i}", "")).strip())
        if match is None:
            return None
        repeat = int(match.group(1) or 1)
        code = match.group(2)
        name = str(header.get(f"TTYPE{i}", "")).strip().upper()
        if name in names and name not in wanted:
            plain = code in _ARRAY_DTYPES and repeat > 0 and not match.group(3)
            if not plain or any(f"{key}{i}" in header for key in _SHAPING):
                return None
            wanted[name] = (offset, _ARRAY_DTYPES[code], repeat)
        if code in _DESCRIPTOR_BYTES:
            offset += _DESCRIPTOR_BYTES[code]
        elif code == "X":
            offset += -(-repeat // 8)
        else:
            offset += repeat * _FIELD_BYTES[code]
    return wanted, offset


def _refuse_undefined_fields(
    fits_file: FitsFile, index: int, header: Mapping[str, HeaderValue], fields: int
) -> None:
    """Raise `SpectrumError` when TFIELDS counts columns that have no TFORMn card.

    astropy would fail on such a table with a bare ``'recformat'``; the header itself
    says what is wrong.
    """
    defined = sum(f"TFORM{i}" in header for i in range(1, fields + 1))
    if defined < fields:
        raise SpectrumError(
            fits_file.path,
            f"table {index}'s header declares {fields} fields (TFIELDS) but defines "
            f"{defined} (TFORMn cards)",
        )


def table_columns(
    fits_file: FitsFile, index: int, names: Collection[str]
) -> tuple[int, dict[str, NDArray[np.generic]]]:
    """As `columns`, from the file's bytes where it can be, else as astropy reads the table."""
    fast = columns(fits_file, index, names)
    if fast is not None:
        return fast
    from astropy.io.fits import BinTableHDU, TableHDU
    from astropy.io.fits.verify import VerifyError

    hdu = fits_file.hdul[index] if index < len(fits_file.hdul) else None
    if not isinstance(hdu, BinTableHDU | TableHDU):
        raise SpectrumError(fits_file.path, f"extension {index} is not a readable table")
    try:
        table = hdu.data
        rows = 0 if table is None else len(table)
        present = {name.upper() for name in table.columns.names} if rows else set()
        return rows, {name: table[name] for name in names if name in present}
    except (VerifyError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise SpectrumError(fits_file.path, f"astropy cannot read table {index} ({exc})") from None


def require_columns(
    fits_file: FitsFile, table: str, found: Collection[str], needed: Collection[str]
) -> None:
    """Raise `SpectrumError` naming the file, the table and the columns of ``needed`` it lacks.

    A reader asks for its columns by name; a table without one of them is a file of
    another form or a broken one, which a person is told as such (not a bare KeyError).
    """
    missing = [name for name in needed if name not in found]
    if missing:
        names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} or {missing[-1]}"
        raise SpectrumError(fits_file.path, f"the {table} table has no {names} column")


def _column(
    data: bytes, offset: int, width: int, rows: int, dtype: np.dtype, repeat: int
) -> NDArray[np.generic]:
    """A column in the rows' bytes: (rows,) for one value a row, else (rows, repeat)."""
    if repeat == 1:
        return np.ndarray((rows,), dtype, buffer=data, offset=offset, strides=(width,))
    return np.ndarray(
        (rows, repeat), dtype, buffer=data, offset=offset, strides=(width, dtype.itemsize)
    )
