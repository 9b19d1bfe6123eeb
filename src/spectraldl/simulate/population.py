"""Who is in a synthetic archive: class mix, spectral types per class, S/N distribution.

Each number says where it comes from. Where the literature gives no number
that fits, the value is a stated assumption, chosen to make the classes
decidable and the archives look like the real ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from spectraldl.io.labels import CLASSES, label_code
from spectraldl.simulate.registry import simulated_archive

SIMULATED_CLASSES = ("emission", "absorption", "double-peak", "noise")
"""Classes the simulator draws (``unknown`` is a human's doubt, not a spectrum kind)."""

ONDREJOV_MIX = {"emission": 0.40, "absorption": 0.46, "double-peak": 0.11, "noise": 0.03}
"""Thesis' Ondřejov dataset: 5301 emission, 6103 absorption, 1533 double-peak and
398 unknown of 13 335 (bt-spectraldl labels); the unknown share is simulated as noise."""

LAMOST_MIX = {"emission": 0.04, "absorption": 0.88, "double-peak": 0.02, "noise": 0.06}
"""Assumption for a LAMOST-like archive: mostly ordinary stars, a few per cent
emission-line stars (Hou et al. 2016, ApJS 222, 5 found about 1 % of LAMOST DR2
stellar spectra with H-alpha emission; raised here so a demo archive has
candidates to find) and a share of spectra too poor to classify (the thesis'
hand-labelled LAMOST sets held 743 noise spectra beside 425 absorption)."""

LAMOST_TYPES = {
    "absorption": {"B": 0.01, "A": 0.07, "F": 0.30, "G": 0.36, "K": 0.20, "M": 0.06},
    "emission": {"B": 0.20, "A": 0.20, "F": 0.10, "G": 0.10, "K": 0.15, "M": 0.25},
    "double-peak": {"B": 0.55, "A": 0.30, "F": 0.10, "G": 0.05},
}
"""Spectral classes per H-alpha class, LAMOST. Absorption: rounded shares of the
LAMOST DR1-DR5 stellar classifications (mostly F-G-K, some A and M; Luo et al.
2015, RAA 15, 1095 and the DR5 statistics). Emission: Hou et al. (2016) found
both early-type (Be/Ae, Herbig) and late-type (chromospherically active dMe/dKe)
emitters; shares are an assumption. Double-peak: circumstellar discs, mostly
Be/Ae stars (assumption)."""

ONDREJOV_TYPES = {
    "absorption": {"B": 0.45, "A": 0.33, "F": 0.12, "G": 0.06, "K": 0.04},
    "emission": {"B": 0.85, "A": 0.10, "F": 0.03, "G": 0.01, "M": 0.01},
    "double-peak": {"B": 0.88, "A": 0.10, "F": 0.02},
}
"""Spectral classes per H-alpha class, Ondřejov. The CCD700 H-alpha programme
observes mostly Be stars (Šlechta & Škoda 2002, PAICz 90, 1) and B/A/F
comparison and standard stars; shares are an assumption in that spirit."""

LAMOST_SNR_LOGNORMAL = ((33.0, 0.53, 0.8), (9.0, 0.5, 0.2))
"""LAMOST S/N in r (SN_R), a mixture of lognormals ``(median, sigma_ln, weight)``:
the first is the maximum-likelihood fit to the SN_R of the bundled ``dev`` plate
(B6212, censored at DR1's cap of 99); the second, an assumption, stands for the
faint plates that the bright dev plate lacks."""

ONDREJOV_COUNTS_LOGNORMAL = (20000.0, 1.0)
"""Continuum level of an Ondřejov spectrum in ADU (median, sigma_ln): the bundled
raw files hold about 5 600 to 220 000 ADU (assumption: lognormal over that)."""


class MixError(ValueError):
    """A class mix that cannot be used (unknown class, negative or zero total)."""


def parse_mix(mix: str | Mapping[str, float] | None, *, archive: str) -> dict[str, float]:
    """Class fractions from ``"emission=0.4,absorption=0.46,..."`` or a dict, normalised to 1.

    ``None`` gives the archive's default (its registered ``mix``: `ONDREJOV_MIX`, `LAMOST_MIX`).
    Raises `MixError` for an unknown class name or fractions that do not add
    up to something positive.
    """
    if mix is None:
        return dict(simulated_archive(archive).mix)
    if isinstance(mix, str):
        items: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in mix.split(","))):
            name, sep, fraction = part.partition("=")
            if not sep:
                raise MixError(f"mix item {part!r} is not of the form class=fraction")
            try:
                items[name.strip()] = float(fraction)
            except ValueError:
                raise MixError(f"mix item {part!r}: {fraction!r} is not a number") from None
        mix = items
    out: dict[str, float] = {}
    for name, value in mix.items():
        try:
            canonical = CLASSES[label_code(name)]
        except ValueError as exc:
            raise MixError(str(exc)) from None
        if canonical not in SIMULATED_CLASSES:
            raise MixError(f"class {canonical!r} cannot be simulated; use {SIMULATED_CLASSES}")
        if not (math.isfinite(value) and value >= 0):
            raise MixError(f"fraction of {canonical!r} must be >= 0, got {value}")
        out[canonical] = out.get(canonical, 0.0) + float(value)
    total = sum(out.values())
    if total <= 0:
        raise MixError("the class fractions add up to 0")
    return {
        name: out.get(name, 0.0) / total for name in SIMULATED_CLASSES if out.get(name, 0.0) > 0
    }


@dataclass(frozen=True)
class Population:
    """How spectra are drawn: class mix, spectral types per class and S/N.

    Attributes
    ----------
    mix
        Class name -> fraction (sums to 1).
    types
        Class name -> {spectral class O-M: fraction}; ``noise`` uses absorption's.
    snr_values
        Optional S/N values to resample (with a ±10 % jitter) instead of the
        archive's default distribution; the realism benchmark passes the real
        files' SN_R here to compare like with like.
    teff_values
        Optional Teff values (K) to resample (3 % jitter) instead of drawing
        spectral classes from ``types``; e.g. the Teff of real files' LAMOST
        subclasses (`templates.subclass_teff`).
    plate_systematics
        LAMOST only: spectra of one plate share their sky-subtraction residual
        and spectrograph response, and plates differ from each other
        (`spectraldl.simulate.lamost.plate_systematics`). Off by default: the
        spectra are then those of earlier versions, byte for byte.
    fibres_per_plate
        Spectra per plate (index // fibres_per_plate is the plate): LAMOST's
        4000, or fewer to have many plates in a small set.
    """

    archive: str
    mix: dict[str, float]
    types: dict[str, dict[str, float]] = field(default_factory=dict)
    snr_values: tuple[float, ...] = ()
    teff_values: tuple[float, ...] = ()
    plate_systematics: bool = False
    fibres_per_plate: int = 4000

    def __post_init__(self) -> None:
        if not 1 <= self.fibres_per_plate <= 4000:
            raise ValueError(f"fibres_per_plate must be 1-4000, got {self.fibres_per_plate}")

    @classmethod
    def default(
        cls,
        archive: str,
        mix: str | Mapping[str, float] | None = None,
        *,
        types: Mapping[str, Mapping[str, float]] | None = None,
        snr_values: Sequence[float] = (),
        teff_values: Sequence[float] = (),
        plate_systematics: bool = False,
        fibres_per_plate: int = 4000,
    ) -> Population:
        """The archive's defaults, with an optional mix, type override and S/N sample."""
        base = simulated_archive(archive).types
        merged = {k: dict(v) for k, v in base.items()}
        for name, fractions in (types or {}).items():
            merged[name] = dict(fractions)
        return cls(
            archive=archive,
            mix=parse_mix(mix, archive=archive),
            types=merged,
            snr_values=tuple(float(s) for s in snr_values),
            teff_values=tuple(float(t) for t in teff_values),
            plate_systematics=plate_systematics,
            fibres_per_plate=fibres_per_plate,
        )


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_SILVER = math.sqrt(2.0) - 1.0


def weyl(index: int, *, seed: int, irrational: float = _GOLDEN) -> float:
    """The low-discrepancy sequence frac(offset(seed) + index · irrational) in [0, 1).

    Classes and junk are assigned by thresholds on it, so every prefix of an
    archive holds the requested fractions to within a file or two, and file
    ``index`` depends on nothing but the seed and its index.
    """
    return (_weyl_offset(seed) + index * irrational) % 1.0


@lru_cache(maxsize=64)
def _weyl_offset(seed: int) -> float:
    return float(np.random.default_rng(np.random.SeedSequence([seed, 7])).random())


def class_of(index: int, *, seed: int, mix: Mapping[str, float]) -> str:
    """The class of spectrum ``index`` by `weyl` thresholds on the cumulative mix."""
    u = weyl(index, seed=seed)
    cumulative = 0.0
    last = ""
    for name in SIMULATED_CLASSES:
        if name not in mix:
            continue
        cumulative += mix[name]
        last = name
        if u < cumulative:
            return name
    return last


def is_junk(index: int, *, seed: int, fraction: float) -> bool:
    """Whether file ``index`` is a broken one (a second Weyl sequence, independent of class)."""
    return fraction > 0 and weyl(index, seed=seed + 1, irrational=_SILVER) < fraction
