"""Simulated archives that register themselves, as the readers do (`spectraldl.io.archives`).

Each survey's module in this package (`lamost`, `ondrejov`) calls `register`
with a `SimulatedArchive`: its file layouts, how to simulate, write and read
back one spectrum, and its default population. The factory functions
(`spectraldl.simulate.archive`), `Population` and the ``simulate`` command
look the archive up here and never branch on its name: adding a survey is
adding one module that registers it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spectraldl.core.spectrum import Spectrum


@dataclass(frozen=True)
class SimulatedArchive:
    """What the generic simulation code needs of one survey.

    Attributes
    ----------
    name
        The archive's name (``--archive``, truth.csv's ``archive``).
    code
        Its key in every spectrum's random streams (`common.streams`): fixed
        for ever, as it seeds every spectrum of the archive.
    layout_option
        The keyword that picks a file layout (``release`` or ``form``).
    layouts
        The file layouts it writes; the first is the default.
    simulate_one
        ``(index, *, seed, population, layout)`` -> the simulated spectrum
        (an object with ``header``, ``truth``, ``index`` and ``relpath``).
    file_bytes
        The FITS file of a simulated spectrum.
    to_spectrum
        ``(spec, data, path)`` -> the `Spectrum` the project's reader makes of it.
    ident
        The id the reader gives a simulated spectrum's file.
    mix, types
        Default class mix and spectral types per class (`Population.default`).
    noise_snr
        S/N range (log-uniform) of spectra labelled ``noise``.
    noise_profiles
        The real profile under a noise-labelled spectrum: ``(limit, profile)``
        pairs, the first whose limit exceeds a uniform draw.
    dwarf_fraction
        Share of dwarfs (log g >= 3.8) per spectral class among its targets
        (`templates.template_weights`; 0.5 for a class not named).
    metallicity
        [Fe/H] (mean, sigma) its templates are weighted to.
    compress
        Whether its files are gzipped by default (as the archive serves them).
    plates
        Whether it has plates (``plate_systematics`` applies).
    junk_makers
        Its own kinds of broken file (`spectraldl.simulate.junk`): kind ->
        ``(spec, good)`` -> the broken file's bytes, made from the spectrum and
        its valid file ``good``. Kinds it has no maker for are not drawn for it.
    data_start
        ``(spec, good)`` -> the offset in the valid file after which a
        ``truncated-data`` junk file is cut.
    last_index
        The largest spectrum index it can name (its dates and ids end there);
        the factory functions refuse indices beyond it. Default `LAST_INDEX`.
    """

    name: str
    code: int
    layout_option: str
    layouts: tuple[str, ...]
    simulate_one: Callable[..., Any]
    file_bytes: Callable[[Any], bytes]
    to_spectrum: Callable[[Any, bytes, str], Spectrum]
    ident: Callable[[Any], str]
    mix: Mapping[str, float]
    types: Mapping[str, Mapping[str, float]]
    noise_snr: tuple[float, float]
    noise_profiles: tuple[tuple[float, str], ...]
    dwarf_fraction: Mapping[str, float]
    metallicity: tuple[float, float]
    junk_makers: Mapping[str, Callable[[Any, bytes], bytes]]
    data_start: Callable[[Any, bytes], int]
    compress: bool = False
    plates: bool = False
    last_index: int = 2**40 - 1

    def layout(self, **options: str) -> str:
        """The layout chosen among ``options`` (``release=..., form=...``), checked.

        Raises `ValueError` when it is not one of `layouts`.
        """
        chosen = options[self.layout_option]
        if chosen not in self.layouts:
            raise ValueError(
                f"{self.layout_option} must be one of {', '.join(self.layouts)}, not {chosen!r}"
            )
        return chosen


LAST_INDEX = SimulatedArchive.__dataclass_fields__["last_index"].default
"""2**40 - 1: classes and junk are thresholds on frac(index x an irrational) in float64, whose
fraction keeps about 13 bits there (every spectrum had one class beyond 2**53)."""

_ARCHIVES: dict[str, SimulatedArchive] = {}


def register(archive: SimulatedArchive) -> None:
    """Add a survey to the registry (called by its module at import)."""
    if archive.name in _ARCHIVES:
        raise ValueError(f"a simulated archive named {archive.name!r} is already registered")
    if any(other.code == archive.code for other in _ARCHIVES.values()):
        raise ValueError(f"stream code {archive.code} of {archive.name!r} is already taken")
    _ARCHIVES[archive.name] = archive


def simulated_archives() -> dict[str, SimulatedArchive]:
    """The registered surveys by name, in the order their codes give."""
    _load_archive_modules()
    return dict(sorted(_ARCHIVES.items(), key=lambda item: item[1].code))


def simulated_archive(name: str) -> SimulatedArchive:
    """The registered survey ``name``.

    Raises `ValueError` naming the known ones when there is none of that name.
    """
    _load_archive_modules()
    if name not in _ARCHIVES:
        known = " or ".join(repr(n) for n in simulated_archives())
        raise ValueError(f"archive must be {known}, not {name!r}")
    return _ARCHIVES[name]


_loaded = False


def _load_archive_modules() -> None:
    """Import every module of the package, so that each survey's has registered itself."""
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__name__.rpartition(".")[0])
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True
