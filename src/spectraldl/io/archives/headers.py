"""Small, forgiving accessors for header values shared by the archive readers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from spectraldl.io.archives.fitsfile import HeaderValue

_MJD_EPOCH = datetime(1858, 11, 17)


def text(header: Mapping[str, HeaderValue], key: str, default: str = "") -> str:
    """Header value as a stripped string ('' when absent)."""
    value = header.get(key)
    return default if value is None else str(value).strip()


def number(header: Mapping[str, HeaderValue], *keys: str) -> float:
    """First of ``keys`` present with a finite numeric value, else NaN."""
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            result = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(result):
            return result
    return math.nan


def sexagesimal_deg(value: HeaderValue, *, hours: bool) -> float:
    """Degrees from ``'hh:mm:ss.s'``/``'+dd:mm:ss'`` strings or numbers; NaN if unparsable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return math.nan
    parts = value.strip().replace(" ", ":").split(":")
    try:
        sign = -1.0 if parts[0].strip().startswith("-") else 1.0
        fields = [abs(float(parts[0]))] + [float(p) for p in parts[1:3]]
    except ValueError:
        return math.nan
    degrees = sum(f / 60**i for i, f in enumerate(fields)) * sign
    return degrees * 15.0 if hours else degrees


def iso_to_mjd(iso: str) -> float:
    """MJD of an ISO date or date-time (``2011-10-27T20:02:34.19``); NaN if unparsable."""
    iso = iso.strip()
    if not iso:
        return math.nan
    try:
        moment = datetime.fromisoformat(iso.replace("Z", ""))
    except ValueError:
        return math.nan
    return (moment - _MJD_EPOCH).total_seconds() / 86400.0


SIMULATED_KEY = "SIMULATD"
"""The primary-header card `spectraldl simulate` writes (``T``) and no real file has."""


def simulated_extra(primary: Mapping[str, HeaderValue]) -> dict[str, bool]:
    """``{"simulated": True}`` for a file `spectraldl simulate` wrote, else ``{}``.

    Readers merge it into `SpectrumMeta.extra`, so ingest can keep synthetic
    spectra apart from observations whatever folder they came from.
    """
    return {"simulated": True} if primary.get(SIMULATED_KEY) is True else {}
