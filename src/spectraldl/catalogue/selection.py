"""The cuts that make a spectrum a candidate: classes, least probability, flags, measurements.

Shared by the catalogue (`spectraldl.catalogue.candidates`) and the
cross-match (`spectraldl.catalogue.crossmatch`), which says why a known star
missed them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from spectraldl.core.quality import UNUSABLE, Quality
from spectraldl.io.predictions import classes_in, probability_column
from spectraldl.prep.measure import PROFILE_TYPES

DEFAULT_CLASSES = ("emission", "double-peak")
DEFAULT_MIN_PROB = 0.9
"""Arg-max alone made 14 % of LAMOST DR1 candidates in the thesis, mostly noise; 0.9 cuts that."""
EXCLUDING_FLAGS = Quality.NOVEL | Quality.LOW_SNR | UNUSABLE


class CandidatesError(ValueError):
    """Candidates cannot be selected or written (bad class name, unknown format, ...)."""


@dataclass(frozen=True)
class Selection:
    """The cuts that make a spectrum a candidate."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    min_prob: float = DEFAULT_MIN_PROB
    include_flagged: bool = False
    min_ew_aa: float | None = None
    """Least emission equivalent width (Å, > 0): keeps rows with ``halpha_ew_aa <= -min_ew_aa``."""
    profile_types: tuple[str, ...] = ()
    """Measured profile types kept (`spectraldl.prep.measure.PROFILE_TYPES`); all when empty."""

    @property
    def uses_measurements(self) -> bool:
        """True when the cuts read the H-alpha measurement columns."""
        return self.min_ew_aa is not None or bool(self.profile_types)

    @property
    def excluding_flags(self) -> Quality:
        """Flags that drop a spectrum from the catalogue (none with ``include_flagged``)."""
        return Quality(0) if self.include_flagged else EXCLUDING_FLAGS

    def check(self, model_classes: Sequence[str]) -> None:
        """Raise `CandidatesError` when a candidate class is not one of the model's."""
        unknown = [c for c in self.classes if c not in model_classes]
        if unknown:
            raise CandidatesError(
                f"class {', '.join(unknown)} is not predicted by this model; "
                f"its classes are {', '.join(model_classes) or 'none (no p_<class> column)'}"
            )
        if not 0.0 <= self.min_prob <= 1.0:
            raise CandidatesError(f"min-prob must be in [0, 1], got {self.min_prob}")
        unknown = [t for t in self.profile_types if t not in PROFILE_TYPES]
        if unknown:
            raise CandidatesError(
                f"profile type {', '.join(unknown)} is unknown; use {', '.join(PROFILE_TYPES)}"
            )

    def check_columns(self, columns: Iterable[str], source: Any = "") -> None:
        """Raise `CandidatesError` when the cuts need measurement columns the table lacks."""
        needed = (["halpha_ew_aa"] if self.min_ew_aa is not None else []) + (
            ["profile_type"] if self.profile_types else []
        )
        missing = [c for c in needed if c not in set(columns)]
        if missing:
            raise CandidatesError(
                f"{source}: the predictions table has no {', '.join(missing)} column (written "
                "before H-alpha was measured); classify the spectra again to select on it"
            )

    def predicted_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of each row's predicted class (float32)."""
        classes = classes_in(frame.columns)
        matrix = frame[[probability_column(c) for c in classes]].to_numpy(dtype=np.float32)
        index = pd.Index(classes).get_indexer(frame["predicted_class"].astype(str))
        out = np.full(len(frame), np.nan, np.float32)
        ok = index >= 0
        out[ok] = matrix[np.flatnonzero(ok), index[ok]]
        return out

    def confident(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows predicted as a candidate class with at least ``min_prob``."""
        in_class = frame["predicted_class"].astype(str).isin(self.classes).to_numpy()
        return in_class & (self.predicted_probability(frame) >= self.min_prob)

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows that are candidates."""
        clean = (frame["quality"].to_numpy(dtype=np.int64) & int(self.excluding_flags)) == 0
        keep = self.confident(frame) & clean
        if self.min_ew_aa is not None:  # NaN (unmeasurable) never passes
            keep &= frame["halpha_ew_aa"].to_numpy(dtype=np.float64) <= -self.min_ew_aa
        if self.profile_types:
            keep &= frame["profile_type"].astype(str).isin(self.profile_types).to_numpy()
        return keep
