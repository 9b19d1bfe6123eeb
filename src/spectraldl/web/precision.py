"""A catalogue's precision measured from its verdicts, per class and probability bin.

A candidate counts as *vetted* when its vetters' current verdicts have a
majority (`store.consensus`: each vetter's latest verdict, an undone one
gone; a tie is left out and counted in ``ties``); *confirmed* when that
majority is ``confirm``; ``noise`` counts as vetted and not confirmed.
``precision`` = confirmed / vetted with its Wilson 95 % interval;
``expected_true`` = precision x the class's candidates (right when the vetted
ones are a fair sample of the class, e.g. the ``sample`` order);
``expected_true_by_bins`` sums precision x candidates over the probability
bins instead, which stays fair when the most probable were vetted first (None
while a bin with candidates has none vetted).

Counting follows the verdicts as they come: the first request for a
catalogue reads its candidates' classes and bins and every vetted
candidate's outcome; each later one reads only the verdicts added since (ids
above the last one counted) and recounts just their candidates, so the table
is current after every verdict in milliseconds on 100 000 verdicts. When the
number of verdicts does not match (one committed out of id order, as
PostgreSQL can, or verdicts deleted with a catalogue) the tally is rebuilt.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spectraldl.web.models import Catalogue, Prediction, VetDecision
from spectraldl.web.store import (
    CANDIDATE_CLASSES,
    PRECISION_BINS,
    NotFound,
    consensus,
    not_withdrawn,
)

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""

TALLIES_KEPT = 32
"""Catalogue tallies kept in memory, the least recently used dropped first."""

TIE = "tie"
OUTCOMES = ("confirm", "reject", "noise", TIE)


def wilson_interval(confirmed: int, vetted: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (0, 1) when nothing is
    vetted. Unlike the normal approximation it stays inside 0-1 and is honest for few
    verdicts and for proportions near 0 or 1."""
    if vetted <= 0:
        return 0.0, 1.0
    p = confirmed / vetted
    z2 = z * z / vetted
    centre = (p + z2 / 2) / (1 + z2)
    half = z / (1 + z2) * math.sqrt(p * (1 - p) / vetted + z2 / (4 * vetted))
    return max(0.0, centre - half), min(1.0, centre + half)


def resolved_verdicts(
    session: Session, catalogue_id: int, *, only: Iterable[int] | None = None
) -> dict[int, str | None]:
    """``{prediction_id: verdict}`` of every candidate someone has vetted (or of those in
    ``only``): each vetter's latest verdict (an undone one is gone), resolved by
    majority; None for a tie."""
    latest = (
        select(func.max(VetDecision.id).label("last_id"))
        .join(Prediction, Prediction.id == VetDecision.prediction_id)
        .where(Prediction.catalogue_id == catalogue_id)
        .group_by(VetDecision.prediction_id, VetDecision.user_id)
    )
    if only is not None:
        latest = latest.where(VetDecision.prediction_id.in_(list(only)))
    recent = latest.subquery()
    query = (
        select(VetDecision.prediction_id, VetDecision.verdict)
        .join(recent, VetDecision.id == recent.c.last_id)
        .where(VetDecision.verdict.is_not(None))
    )
    votes: dict[int, list[str]] = defaultdict(list)
    for prediction_id, verdict in session.execute(query):
        votes[int(prediction_id)].append(not_withdrawn(verdict))
    return {pid: consensus(given) for pid, given in votes.items()}


def probability_bins(probability: np.ndarray, bins: int) -> np.ndarray:
    """Each probability's bin of equal width on 0-1 (the last bin closed); -1 for none."""
    edges = np.arange(1, bins) / bins
    index = np.searchsorted(edges, probability, side="right")
    return np.where(np.isnan(probability), -1, index)


@dataclass
class Tally:
    """A catalogue's counts per (class, bin), and what they were counted from."""

    cells: dict[int, tuple[str, int]]
    outcomes: dict[int, str]
    counts: dict[tuple[str, int], Counter[str]]
    verdicts: int
    last_id: int

    def set_outcome(self, prediction_id: int, outcome: str | None) -> None:
        """Recount one candidate whose verdicts changed (None: no current verdict)."""
        cell = self.cells.get(prediction_id)
        if cell is None:
            return
        old = self.outcomes.pop(prediction_id, None)
        if old is not None:
            self.counts[cell][old] -= 1
        if outcome is not None:
            self.outcomes[prediction_id] = outcome
            self.counts[cell][outcome] += 1


def _verdict_count(session: Session) -> tuple[int, int]:
    """Verdicts in the database and the highest id (verdicts are only ever added)."""
    count, last = session.execute(
        select(func.count(VetDecision.id), func.max(VetDecision.id))
    ).one()
    return int(count), int(last or 0)


def _outcome(verdict: str | None) -> str:
    return TIE if verdict is None else verdict


def new_tally(session: Session, catalogue_id: int, bins: int) -> Tally:
    """Count a catalogue from scratch: its candidates' cells, then every vetted one's outcome."""
    verdicts, last_id = _verdict_count(session)
    rows = session.execute(
        select(Prediction.id, Prediction.predicted_class, Prediction.probability).where(
            Prediction.catalogue_id == catalogue_id,
            Prediction.predicted_class.in_(CANDIDATE_CLASSES),
        )
    ).all()
    probability = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64)
    index = probability_bins(probability, bins)
    cells = {int(r[0]): (str(r[1]), int(i)) for r, i in zip(rows, index, strict=True)}
    counts: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for cell in cells.values():
        counts[cell]["total"] += 1
    tally = Tally(cells, {}, counts, verdicts, last_id)
    for pid, verdict in resolved_verdicts(session, catalogue_id).items():
        tally.set_outcome(pid, _outcome(verdict))
    return tally


def catch_up(session: Session, tally: Tally, catalogue_id: int) -> bool:
    """Recount the candidates of the verdicts added since ``tally`` was counted; False when
    the verdicts cannot be followed that way (the tally must be rebuilt)."""
    verdicts, last_id = _verdict_count(session)
    if (verdicts, last_id) == (tally.verdicts, tally.last_id):
        return True
    added = session.scalars(
        select(VetDecision.prediction_id).where(VetDecision.id > tally.last_id)
    ).all()
    if verdicts - tally.verdicts != len(added):
        return False
    touched = {int(pid) for pid in added} & tally.cells.keys()
    if touched:
        now = resolved_verdicts(session, catalogue_id, only=touched)
        for pid in touched:
            tally.set_outcome(pid, _outcome(now[pid]) if pid in now else None)
    tally.verdicts, tally.last_id = verdicts, last_id
    return True


def _cell(total: int | None, vetted: int, confirmed: int, extra: dict) -> dict:
    low, high = wilson_interval(confirmed, vetted)
    cell = dict(extra)
    if total is not None:
        cell["total"] = total
    cell.update(
        vetted=vetted,
        confirmed=confirmed,
        precision=confirmed / vetted if vetted else None,
        interval=[low, high],
    )
    return cell


def _class_cell(counts: dict[str, int], own: list[dict[str, Any]]) -> dict[str, Any]:
    """A class's precision cell, with its expected true candidates (module docstring)."""
    cell = _cell(counts["total"], counts["vetted"], counts["confirmed"], {})
    cell["ties"], cell["noise"] = counts["ties"], counts["noise"]
    precision = cell["precision"]
    cell["expected_true"] = None if precision is None else precision * counts["total"]
    fair = own and all(b["vetted"] for b in own)
    cell["expected_true_by_bins"] = sum(b["precision"] * b["total"] for b in own) if fair else None
    return cell


def precision_table(tally: Tally, catalogue_id: int, bins: int) -> dict[str, Any]:
    """The answer of ``GET /api/catalogues/{id}/precision`` from a tally."""
    fields = ("total", "vetted", "confirmed", "ties", "noise")
    per_class = {name: dict.fromkeys(fields, 0) for name in CANDIDATE_CLASSES}
    bin_cells = []
    ordered = sorted(tally.counts, key=lambda c: (CANDIDATE_CLASSES.index(c[0]), c[1]))
    for name, index in ordered:
        found = tally.counts[(name, index)]
        voted = sum(found[o] for o in OUTCOMES)
        counts = {
            "total": found["total"],
            "vetted": voted - found[TIE],
            "confirmed": found["confirm"],
            "ties": found[TIE],
            "noise": found["noise"],
        }
        for key, value in counts.items():
            per_class[name][key] += value
        if index < 0:
            continue
        head = {"class": name, "p_min": index / bins, "p_max": (index + 1) / bins}
        cell = _cell(counts["total"], counts["vetted"], counts["confirmed"], head)
        cell["ties"], cell["noise"] = counts["ties"], counts["noise"]
        bin_cells.append(cell)
    classes = {
        name: _class_cell(counts, [b for b in bin_cells if b["class"] == name])
        for name, counts in per_class.items()
    }
    return {"catalogue": catalogue_id, "classes": classes, "bins": bin_cells}


_tallies: OrderedDict[tuple[Any, ...], Tally] = OrderedDict()
_lock = threading.Lock()


def _tally_key(session: Session, catalogue: Catalogue, bins: int) -> tuple[Any, ...]:
    """The database, the catalogue as imported, and the bins: what a tally is counted for."""
    bind = session.get_bind()
    url = bind.url.render_as_string(hide_password=True) if hasattr(bind, "url") else id(bind)
    return (url, catalogue.id, catalogue.created_at.isoformat(), catalogue.n_rows, bins)


def catalogue_precision(
    session: Session, catalogue_id: int, *, bins: int = PRECISION_BINS
) -> dict[str, Any]:
    """The catalogue's precision per candidate class and probability bin (module docstring)."""
    catalogue = session.get(Catalogue, catalogue_id)
    if catalogue is None:
        raise NotFound(f"no catalogue with id {catalogue_id}")
    key = _tally_key(session, catalogue, bins)
    with _lock:
        tally = _tallies.pop(key, None)
        if tally is None or not catch_up(session, tally, catalogue_id):
            tally = new_tally(session, catalogue_id, bins)
        _tallies[key] = tally
        while len(_tallies) > TALLIES_KEPT:
            _tallies.popitem(last=False)
        return precision_table(tally, catalogue_id, bins)
