"""Put a spectrum's pixels in wavelength order, whatever order the file stores them in."""

from __future__ import annotations

from typing import overload

import numpy as np


@overload
def by_wavelength(wave: np.ndarray, flux: np.ndarray, /) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def by_wavelength(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None, /
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]: ...


@overload
def by_wavelength(
    wave: np.ndarray, *arrays: np.ndarray | None
) -> tuple[np.ndarray | None, ...]: ...


def by_wavelength(wave: np.ndarray, *arrays: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
    """``wave`` ascending and every array of ``arrays`` in the same order (None stays None).

    Files may store wavelengths descending (a negative CDELT1, a table written
    red to blue): that is a layout, not an error. Arrays already ascending are
    returned as they are, without a copy.
    """
    wave = np.asarray(wave)
    if wave.size < 2 or bool((wave[1:] >= wave[:-1]).all()):
        return (wave, *arrays)
    order = np.argsort(wave, kind="stable")
    return (wave[order], *(None if a is None else np.asarray(a)[order] for a in arrays))


def first_out_of_order(wave: np.ndarray) -> int | None:
    """The first pixel at which finite ``wave`` stops being strictly monotonic, or None.

    None too when ``wave`` holds NaN or infinities: the spectrum's own check refuses those
    with its own words. Either direction is monotonic (see `by_wavelength`).
    """
    wave = np.asarray(wave)
    if wave.size < 3 or bool((wave[1:] > wave[:-1]).all()):  # ascending: the common case
        return None
    if not np.isfinite(wave).all():
        return None
    step = np.sign(np.diff(wave))
    broken = np.flatnonzero(step != step[0]) if step[0] else np.array([0])
    return None if broken.size == 0 else int(broken[0]) + 1
