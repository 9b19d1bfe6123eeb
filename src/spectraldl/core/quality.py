"""Quality flags: the reasons a spectrum or a prediction is doubtful, as an `IntFlag`.

Flags travel with every row of a dataset and every prediction, so that a
candidate list can be filtered by them instead of by guesswork. `UNUSABLE`
holds the flags of data that cannot be classified at all (the archive's own
ivar says so, no continuum, a stated S/N the flux contradicts).
"""

from __future__ import annotations

from enum import IntFlag

import numpy as np
from numpy.typing import ArrayLike


class Quality(IntFlag):
    """Bit flags of doubtful spectra (0 means no doubt)."""

    NO_HALPHA = 1
    """H-alpha itself is not covered (such spectra are refused, never stored)."""
    NONFINITE = 2
    """NaN or infinite flux in the window, or corrupt values held as NaN (beyond float32's range,
    or 10^6 times the median absolute non-zero flux: `spectraldl.core.spectrum.CORRUPT_FACTOR`),
    interpolated over."""
    MASKED = 4
    """Pixels in the window flagged bad by the archive's and-mask.

    Not set for ivar = 0 alone: LAMOST zeroes the ivar at the peak of strong
    emission; ivar unusable over most of the window is `BAD_IVAR`.
    """
    LOW_SNR = 8
    """Signal-to-noise ratio below the configured minimum."""
    PARTIAL_COVERAGE = 16
    """The window 6519-6732 Å is only partly covered; the edge was extended."""
    NOVEL = 32
    """Unlike the training data (set by classification, not by preprocessing)."""
    BAD_IVAR = 64
    """The inverse variance is zero, negative or NaN over most of the window: no usable data."""
    NONPOSITIVE_FLUX = 128
    """The median flux over the window is zero or negative: no continuum to judge a line by."""
    SPIKE = 256
    """One-pixel spikes in the window (cosmic rays, corrupt values), interpolated over."""
    SNR_MISMATCH = 512
    """The archive's S/N is far above the S/N measured from the flux: its noise is understated."""
    SNR_FROM_DATA = 1024
    """The file states no S/N; the one used (for LOW_SNR and the snr column) was measured."""


UNUSABLE = Quality.BAD_IVAR | Quality.NONPOSITIVE_FLUX | Quality.SNR_MISMATCH
"""Flags of data that cannot support a classification; a candidate list drops them."""


def flag_names(value: int) -> str:
    """Names of the set flags joined by ``|`` ('' when none are set)."""
    return "|".join(f.name for f in Quality if f.name and value & f)


def flag_names_array(values: ArrayLike) -> np.ndarray:
    """`flag_names` for an array of flag integers, as an object array of strings."""
    array = np.asarray(values, dtype=np.int64)
    unique = {int(v): flag_names(int(v)) for v in np.unique(array)}
    return np.array([unique[int(v)] for v in array], dtype=object)


def flag_counts(values: ArrayLike) -> dict[str, int]:
    """How many of ``values`` (quality integers) carry each flag; flags none carries left out."""
    quality = np.asarray(values, dtype=np.int64)
    counts = {str(bit.name): int(np.count_nonzero(quality & int(bit))) for bit in Quality}
    return {name: n for name, n in counts.items() if n}
