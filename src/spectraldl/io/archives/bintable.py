"""Columns of a FITS binary table read straight from the file's bytes, without astropy.

A LAMOST DR8+ spectrum is an empty primary HDU and a one-row ``BINTABLE`` of
array columns (``3909E``: FLUX, IVAR, WAVELENGTH, ...). Opening it with
astropy (HDU list, column objects, the record array) cost about 5 ms a file,
eight times the reading of a DR1-DR7 image; a column of such a table is a
run of big-endian numbers at a fixed offset in its row, which NumPy views in
microseconds. Only the plainest tables are read here: fixed-size rows, the
wanted columns numeric arrays without scaling (``TSCALn``/``TZEROn``) or
shape (``TDIMn``); anything else answers None and is read with astropy, so
the arrays are always the ones astropy gives (the tests compare them).
"""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np
from numpy.typing import NDArray

from spectraldl.core.errors import SpectrumError
from spectraldl.io.archives.fitsfile import FitsFile, Header

_TFORM = re.compile(r"(\d*)([LXBIJKAEDCMPQ])(.*)")
_FIELD_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}
_DESCRIPTOR_BYTES = {"P": 8, "Q": 16}
_ARRAY_DTYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
_SHAPING = ("TSCAL", "TZERO", "TDIM")


def _int(header: Header, key: str) -> int | None:
    value = header.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def first_row(
    fits_file: FitsFile, index: int, names: Collection[str]
) -> tuple[int, dict[str, NDArray[np.generic]]] | None:
    """The table in extension ``index``: its number of rows and its first row's ``names``
    columns (upper-case names, those it has), as astropy's ``hdul[index].data[0]`` holds
    them (read-only views of the file's bytes); None where astropy must read the table.

    Raises `SpectrumError` when the file ends before the rows its header promises.
    """
    found = fits_file.extension(index)
    if found is None:
        return None
    header, start = found
    if header.get("XTENSION") != "BINTABLE" or header.get("NAXIS") != 2:
        return None
    width, rows, fields = _int(header, "NAXIS1"), _int(header, "NAXIS2"), _int(header, "TFIELDS")
    if width is None or rows is None or fields is None or rows < 0 or fields < 0:
        return None
    if header.get("BITPIX") != 8 or header.get("GCOUNT", 1) != 1:
        return None
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
            plain = code in _ARRAY_DTYPES and repeat > 1 and not match.group(3)
            if not plain or any(f"{key}{i}" in header for key in _SHAPING):
                return None
            wanted[name] = (offset, _ARRAY_DTYPES[code], repeat)
        if code in _DESCRIPTOR_BYTES:
            offset += _DESCRIPTOR_BYTES[code]
        elif code == "X":
            offset += -(-repeat // 8)
        else:
            offset += repeat * _FIELD_BYTES[code]
    if offset != width:
        return None
    available = len(fits_file.data) - start
    if width * rows > available:
        raise SpectrumError(
            fits_file.path,
            f"the data unit is truncated: the table's header promises {width * rows} bytes, "
            f"the file holds {max(available, 0)}",
        )
    row = (
        {
            name: np.frombuffer(fits_file.data, dtype=dtype, count=count, offset=start + at)
            for name, (at, dtype, count) in wanted.items()
        }
        if rows
        else {}
    )
    return rows, row
