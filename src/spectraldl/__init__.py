"""spectraldl: find emission-line stars in large spectral archives with deep learning.

The stages meet through typed containers: `Spectrum` (one observed spectrum),
the HDF5 dataset (`spectraldl.io.dataset`), and the predictions table.

The names below are looked up on first use (PEP 562), so that importing a
submodule, as every ``spectraldl`` command does first, loads neither NumPy nor
the package metadata: a command that runs worker processes starts their
server that much sooner (`spectraldl.jobs.processes.start_forkserver`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spectraldl.core.spectrum import Spectrum, SpectrumMeta

    __version__: str

__all__ = ["Spectrum", "SpectrumMeta", "__version__"]


def _version() -> str:
    """The installed distribution's version; ``0+unknown`` when run from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spectraldl")
    except PackageNotFoundError:
        return "0+unknown"


if not TYPE_CHECKING:  # type checkers see the names above, and no catch-all for typos

    def __getattr__(name: str) -> Any:
        """`Spectrum`, `SpectrumMeta` and ``__version__``, each made once, when first asked for."""
        if name == "__version__":
            value = _version()
        elif name in ("Spectrum", "SpectrumMeta"):
            from spectraldl.core import spectrum

            value = getattr(spectrum, name)
        else:
            raise AttributeError(f"module 'spectraldl' has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names with those made on first use, for ``dir()``, ``help()`` and completion."""
    return sorted({*globals(), *__all__})
