"""The versions a result was made with: one record for model cards, reports and runs."""

from __future__ import annotations

import platform
from collections.abc import Iterable

LIBRARIES = (
    "numpy",
    "scipy",
    "astropy",
    "h5py",
    "torch",
    "scikit-learn",
    "imbalanced-learn",
    "openTSNE",
    "matplotlib",
    "pandas",
)
"""The libraries whose versions change results, in the order records list them."""


def versions(libraries: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """``{"spectraldl": ..., "python": ..., library: version}`` for the installed ``libraries``."""
    out = {"spectraldl": _version("spectraldl") or "0+unknown", "python": platform.python_version()}
    for name in libraries:
        found = _version(name)
        if found is not None:
            out[name] = found
    return out


def _version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None (importlib.metadata is imported
    here: modules that commands load before their workers start import this one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
