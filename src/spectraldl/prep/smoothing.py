"""Gaussian smoothing and 1-D correlation along an axis, bit for bit as `scipy.ndimage`.

`scipy.ndimage.gaussian_filter1d` and `correlate1d` give the values every
stage relies on (the blur of the domain adaptation, the line measurements, the
simulated instrument), but importing `scipy.ndimage` takes 0.15-0.25 s, in
every command and in every worker's server before the first file is read. These
use NumPy alone and sum in scipy's order (`NI_Correlate1D`): the same float64
bits, which the tests check against scipy itself on many inputs and kernels.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Mode = Literal["nearest", "constant"]
"""How the ends are extended: with the end value, or with ``cval``."""

_EPS = float(np.finfo(np.float64).eps)


def gaussian_weights(sigma: float, truncate: float = 4.0) -> NDArray[np.float64]:
    """The weights `scipy.ndimage.gaussian_filter1d` correlates with: a unit-sum Gaussian of
    ``sigma`` pixels cut at ``truncate`` sigma (radius rounded to the nearest pixel)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return np.ascontiguousarray((phi / phi.sum())[::-1])


def gaussian_filter1d(
    values: ArrayLike,
    sigma: float,
    *,
    axis: int = -1,
    mode: Mode = "nearest",
    cval: float = 0.0,
    truncate: float = 4.0,
) -> NDArray[Any]:
    """``values`` smoothed along ``axis`` by a Gaussian of ``sigma`` pixels, as
    `scipy.ndimage.gaussian_filter1d` with the same arguments."""
    return correlate1d(values, gaussian_weights(sigma, truncate), axis=axis, mode=mode, cval=cval)


def correlate1d(
    values: ArrayLike,
    weights: ArrayLike,
    *,
    axis: int = -1,
    mode: Mode = "nearest",
    cval: float = 0.0,
) -> NDArray[Any]:
    """``values`` correlated with ``weights`` along ``axis`` (centred on the middle weight), as
    `scipy.ndimage.correlate1d`: sums in float64 in the same order, result in the input's
    float type.

    Raises
    ------
    ValueError
        For no weights, weights that are not 1-D, a ``mode`` other than the two here, or
        values that are not real floats.
    """
    array = np.asarray(values)
    if array.dtype.kind != "f":
        raise ValueError(f"values must be real floats, got {array.dtype}")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be 1-D and not empty, got shape {w.shape}")
    if mode not in ("nearest", "constant"):
        raise ValueError(f"mode must be 'nearest' or 'constant', got {mode!r}")
    # The filtered axis first: every step below then runs over whole rows of pixels at once.
    first = axis in (0, -array.ndim)
    lines = array if first else np.moveaxis(array, axis, 0)
    with np.errstate(all="ignore"):  # scipy's C loop does not warn on inf or NaN
        out = _correlate_axis0(lines, w, mode, cval).astype(array.dtype, copy=False)
    # In C order as scipy's, whatever the axis: later sums over it depend on the layout.
    return out if first else np.ascontiguousarray(np.moveaxis(out, 0, axis))


def _correlate_axis0(
    lines: NDArray[np.floating], w: NDArray[np.float64], mode: Mode, cval: float
) -> NDArray[np.float64]:
    """`correlate1d` along the first axis, in float64."""
    n, size = lines.shape[0], w.size
    left = size // 2
    padded = _extend(lines, left, size - left - 1, mode, cval)
    # Row k of `shifted` is the input k - left pixels from each output pixel (a view).
    step = padded.strides[0]
    shifted = np.lib.stride_tricks.as_strided(
        padded, (size, n, *lines.shape[1:]), (step, *padded.strides), writeable=False
    )
    mirrored = _mirrored(w.tolist()) if size % 2 else 0
    # The terms scipy adds for each output pixel (NI_Correlate1D), one row each, in its order.
    terms = np.empty((left + 1 if mirrored else size, *lines.shape))
    weights = w.reshape(-1, *([1] * lines.ndim))
    if mirrored:
        # For (anti)symmetric weights: the centre, then the pairs from the outside in.
        np.multiply(shifted[left], w[left], out=terms[0])
        pair = np.add if mirrored > 0 else np.subtract
        pair(shifted[:left], shifted[:left:-1], out=terms[1:])
        terms[1:] *= weights[:left]
    else:
        # For any other weights: the last, then from the first on.
        np.multiply(shifted[-1], w[-1], out=terms[0])
        np.multiply(shifted[:-1], weights[:-1], out=terms[1:])
    return _sum_rows(terms)


def _sum_rows(terms: NDArray[np.float64]) -> NDArray[np.float64]:
    """The rows of ``terms`` (axis 0) added one after the other, first to last, as scipy does.

    NumPy's reduction over the outermost axis adds row after row too, but it starts from
    +0.0, not from the first row: the sums differ only where every term is -0.0 (scipy's
    stays -0.0), which is put right. With one value per row the rows would become the
    innermost axis, which NumPy sums pairwise: rounded otherwise, so added in a loop.
    """
    if terms[0].size < 2:
        out = terms[0].copy()
        for row in terms[1:]:
            out += row
        return out
    out = np.add.reduce(terms, axis=0)
    zero = out == 0
    if zero.any():
        out[zero & np.signbit(terms).all(axis=0)] = -0.0
    return out


def _mirrored(w: list[float]) -> int:
    """1 if the (odd number of) weights are symmetric about the centre, -1 if antisymmetric,
    else 0: within scipy's tolerance of one float64 epsilon, tested as scipy does."""
    centre = len(w) // 2
    pairs = [(w[centre + i], w[centre - i]) for i in range(1, centre + 1)]
    if all(abs(right - left) <= _EPS for right, left in pairs):
        return 1
    if all(abs(right + left) <= _EPS for right, left in pairs):
        return -1
    return 0


def _extend(
    lines: NDArray[np.floating], left: int, right: int, mode: Mode, cval: float
) -> NDArray[np.float64]:
    """The lines (along the first axis) in float64, with ``left`` and ``right`` pixels added
    at their ends."""
    n = lines.shape[0]
    out = np.empty((left + n + right, *lines.shape[1:]))
    out[left : left + n] = lines
    if mode == "constant" or n == 0:
        out[:left] = cval
        out[left + n :] = cval
    else:
        out[:left] = lines[:1]
        out[left + n :] = lines[-1:]
    return out
