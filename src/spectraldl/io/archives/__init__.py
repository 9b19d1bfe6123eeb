"""Archive readers that register themselves: identify a file by its header, read it.

Each module in this package covers one archive and calls `register` for every
file form it reads, pairing an ``identify(fits_file)`` predicate with a
``read(fits_file)`` function (as astropy/specutils' default loaders do).
Adding a survey is adding one module here; nothing else branches on its name.
The archive is always recognised from the header, never from the path.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spectraldl.core.errors import SpectrumError
from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives.fitsfile import FitsFile

_NOT_READERS = {"fitsfile", "headers", "order", "ssap"}


@dataclass(frozen=True)
class Reader:
    """A registered file form: its name, how to recognise it, how to read it."""

    name: str
    identify: Callable[[FitsFile], bool]
    read: Callable[[FitsFile], Spectrum]
    data_model: str


_READERS: list[Reader] = []


def register(
    name: str,
    *,
    identify: Callable[[FitsFile], bool],
    read: Callable[[FitsFile], Spectrum],
    data_model: str,
) -> None:
    """Add a file form to the registry (called by the archive modules at import)."""
    if any(r.name == name for r in _READERS):
        raise ValueError(f"a reader named {name!r} is already registered")
    _READERS.append(Reader(name=name, identify=identify, read=read, data_model=data_model))


def readers() -> tuple[Reader, ...]:
    """The registered readers, in the order they are tried."""
    _load_archive_modules()
    return tuple(_READERS)


_loaded = False


def _load_archive_modules() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_READERS:
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def _header_alone(fits_file: FitsFile) -> bool:
    """A primary header without a data unit or an extension, only zeros (if anything) after it:
    what is left of a file cut after its first header."""
    return (
        fits_file.header.get("NAXIS") == 0
        and fits_file.extension(1) is None
        and not fits_file.data[fits_file.data_start :].strip(b"\0")
    )


def identify(fits_file: FitsFile) -> Reader:
    """Return the reader whose ``identify`` accepts the file.

    Raises `SpectrumError` when no registered form matches.
    """
    for reader in readers():
        if reader.identify(fits_file):
            return reader
    header = fits_file.header
    if _header_alone(fits_file):
        follows = ", although EXTEND = T says extensions may follow" if header.get("EXTEND") else ""
        raise SpectrumError(
            fits_file.path,
            f"no spectrum: the file is a primary header alone, without data or extensions"
            f"{follows} (was it cut after its first header?)",
        )
    hint = ", ".join(f"{k}={header[k]!r}" for k in ("TELESCOP", "INSTRUME", "NAXIS") if k in header)
    raise SpectrumError(
        fits_file.path,
        f"not a spectrum of a known archive or layout ({hint or 'no identifying keys'}); "
        f"known forms: {', '.join(sorted(r.name for r in readers()))}",
    )


def read_spectrum(path: str | Path) -> Spectrum:
    """Read one spectrum file of any registered archive and form.

    Raises `SpectrumError` naming the file and the problem for anything that
    cannot be read: empty, truncated, not FITS, unknown layout, corrupt data.
    """
    fits_file = FitsFile.open(path)
    reader = identify(fits_file)
    try:
        return reader.read(fits_file)
    except SpectrumError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, OSError) as exc:
        raise SpectrumError(path, f"cannot read as {reader.name}: {exc}") from None


__all__ = ["FitsFile", "Reader", "identify", "read_spectrum", "readers", "register"]
