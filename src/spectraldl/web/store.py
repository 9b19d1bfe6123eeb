"""Labelling and vetting logic shared by the pages, the JSON API and scripts.

Every decision is a new row (`LabelDecision`, `VetDecision`); nothing is ever
updated or deleted. A user's current label of a spectrum is their latest row
for it (NULL after an undo); the consensus across users is the label most
users gave, when one label has more votes than any other. All queries are
SQLAlchemy constructs with bound parameters.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from spectraldl.core.quality import flag_names
from spectraldl.io.labels import CLASSES, label_code
from spectraldl.prep.measure import SHOWN_MEASUREMENTS
from spectraldl.prep.preprocess import (
    HALPHA_AIR_AA,
    HALPHA_VACUUM_AA,
    PreprocessConfig,
    blur,
    blur_sigma_for,
    fill_nonfinite,
)
from spectraldl.web.db import begin_write
from spectraldl.web.models import (
    NOTE_FLAGS,
    VERDICTS,
    Catalogue,
    LabelDecision,
    Note,
    Prediction,
    SpectrumRow,
    User,
    VetDecision,
    utcnow,
)

QueueMode = Literal["mine", "nobody", "uncertain"]
QUEUE_MODES: tuple[str, ...] = ("mine", "nobody", "uncertain")
"""Labelling queues: not labelled by me; by nobody; not by me, most uncertain model first."""

CANDIDATE_CLASSES: tuple[str, ...] = ("emission", "double-peak")
"""Predicted classes that make a spectrum an emission-line candidate."""

ZOOM_HALF_WIDTH_AA = 50.0
"""Half width of the H-alpha zoom view (Å)."""

MAX_EXCLUDE = 2000


class DecisionError(ValueError):
    """A label or verdict that cannot be recorded (unknown class, unknown spectrum, ...)."""


class NotFound(LookupError):
    """A spectrum, prediction, catalogue or decision that does not exist."""


def canonical_label(label: str) -> str:
    """The class name of ``label`` (a name or alias, any case); `DecisionError` otherwise.

    Numbers are refused: the thesis' integer codes and the labelling page's
    digit keys number the classes differently, so only names are unambiguous.
    """
    text = label.strip()
    names = ", ".join(CLASSES)
    if text.lstrip("+-").isdigit():
        raise DecisionError(f"use a class name, not a number: {names}")
    try:
        return CLASSES[label_code(text)]
    except ValueError:
        raise DecisionError(f"unknown class {label!r}; expected one of {names}") from None


def _lock_row(session: Session, model: Any, row_id: int) -> bool:
    """Start a writing transaction and lock one row (a spectrum or prediction) until commit;
    False when it does not exist. Decisions on the row are serialised by it."""
    begin_write(session)
    return session.scalar(select(model.id).where(model.id == row_id).with_for_update()) is not None


CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a CSV cell as a formula."""


def csv_safe(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run as a formula
    (numbers, including negative ones, are left alone)."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


# --- labels ---------------------------------------------------------------------------------


def record_label(
    session: Session, *, user: User, spectrum_id: int, label: str | None
) -> LabelDecision:
    """Append a labelling decision (``label`` None withdraws the user's label); caller commits."""
    name = None if label is None else canonical_label(label)
    if not _lock_row(session, SpectrumRow, spectrum_id):
        raise NotFound(f"no spectrum with id {spectrum_id}")
    decision = LabelDecision(
        spectrum_id=spectrum_id, user_id=user.id, label=name, created_at=utcnow()
    )
    session.add(decision)
    session.flush()
    return decision


def _latest_label_ids(user_id: int | None = None) -> Any:
    query = select(
        LabelDecision.spectrum_id,
        LabelDecision.user_id,
        func.max(LabelDecision.id).label("last_id"),
    ).group_by(LabelDecision.spectrum_id, LabelDecision.user_id)
    if user_id is not None:
        query = query.where(LabelDecision.user_id == user_id)
    return query.subquery()


def undo_label(session: Session, *, user: User, decision_id: int) -> LabelDecision:
    """Undo one of the user's decisions: append a row restoring the label they had before it.

    Only the user's latest decision on that spectrum can be undone (a later
    one would otherwise be silently replaced). The check and the new row are
    one transaction with the spectrum locked, so a decision made at the same
    time is either before the check (and the undo refused) or after the undo.
    """
    begin_write(session)
    decision = session.get(LabelDecision, decision_id)
    if decision is None or decision.user_id != user.id:
        raise NotFound(f"no decision {decision_id} of user {user.name!r}")
    _lock_row(session, SpectrumRow, decision.spectrum_id)
    latest = session.scalar(
        select(func.max(LabelDecision.id)).where(
            LabelDecision.spectrum_id == decision.spectrum_id, LabelDecision.user_id == user.id
        )
    )
    if latest != decision.id:
        raise DecisionError(f"decision {decision_id} is not your latest on this spectrum")
    before = session.scalar(
        select(LabelDecision.label)
        .where(
            LabelDecision.spectrum_id == decision.spectrum_id,
            LabelDecision.user_id == user.id,
            LabelDecision.id < decision.id,
        )
        .order_by(LabelDecision.id.desc())
        .limit(1)
    )
    restored = LabelDecision(
        spectrum_id=decision.spectrum_id,
        user_id=user.id,
        label=before,
        undo_of=decision.id,
        created_at=utcnow(),
    )
    session.add(restored)
    session.flush()
    return restored


@dataclass(frozen=True)
class CurrentLabel:
    """A user's current label of a spectrum."""

    spectrum_id: int
    user: str
    label: str
    time: datetime


def current_labels(
    session: Session, *, spectrum_ids: Sequence[int] | None = None, user_id: int | None = None
) -> list[CurrentLabel]:
    """Every user's current (latest, not withdrawn) label, optionally for some spectra or a user."""
    latest = _latest_label_ids(user_id)
    query = (
        select(LabelDecision.spectrum_id, User.name, LabelDecision.label, LabelDecision.created_at)
        .join(latest, LabelDecision.id == latest.c.last_id)
        .join(User, User.id == LabelDecision.user_id)
        .where(LabelDecision.label.is_not(None))
        .order_by(LabelDecision.spectrum_id, User.name)
    )
    if spectrum_ids is not None:
        query = query.where(LabelDecision.spectrum_id.in_(list(spectrum_ids)))
    rows = session.execute(query)
    return [CurrentLabel(int(s), u, not_withdrawn(lab), t) for s, u, lab, t in rows]


def not_withdrawn(decision: str | None) -> str:
    """A label or verdict from a query that keeps only current ones (``IS NOT NULL``).

    Raises `ValueError` when a withdrawn one (NULL) got through: the query is wrong.
    """
    if decision is None:
        raise ValueError("a withdrawn decision (NULL) came from a query that leaves them out")
    return decision


def consensus(labels: Iterable[str]) -> str | None:
    """The label with more votes than any other (None for no votes or a tie)."""
    counts = Counter(labels).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def labels_by_spectrum(session: Session, **filters: Any) -> dict[int, dict[str, str]]:
    """``{spectrum_id: {user: label}}`` of the current labels."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for item in current_labels(session, **filters):
        out[item.spectrum_id][item.user] = item.label
    return dict(out)


ExportPolicy = Literal["majority", "unanimous"]


def export_labels(
    session: Session, *, policy: ExportPolicy = "majority", user: str | None = None
) -> list[tuple[str, str]]:
    """``(ident, label)`` pairs for the labels CSV, in spectrum order.

    ``majority``: the consensus label (ties left out); ``unanimous``: only
    spectra all labellers agree on; ``user``: that user's current labels only.
    """
    if policy not in ("majority", "unanimous"):
        raise DecisionError(f"unknown policy {policy!r}; use majority or unanimous")
    user_id = None
    if user is not None:
        user_id = session.scalar(select(User.id).where(User.name == user))
        if user_id is None:
            raise NotFound(f"no user named {user!r}")
    by_spectrum = labels_by_spectrum(session, user_id=user_id)
    idents = dict(
        session.execute(select(SpectrumRow.id, SpectrumRow.ident).order_by(SpectrumRow.id)).all()
    )
    rows = []
    for spectrum_id, ident in idents.items():
        votes = list(by_spectrum.get(spectrum_id, {}).values())
        if not votes:
            continue
        if policy == "unanimous" and len(set(votes)) != 1:
            continue
        label = consensus(votes)
        if label is not None:
            rows.append((ident, label))
    return rows


def labels_csv(
    rows: Iterable[tuple[str, str]], *, notes: dict[str, list[dict]] | None = None
) -> str:
    """The ``id,label`` CSV text that `spectraldl.io.labels.read_labels` reads (an id that a
    spreadsheet would take for a formula gets a leading ``'``: see `csv_safe`); with
    ``notes`` (`notes_by_ident`) also ``flags`` and ``notes`` columns (`note_columns`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if notes is None:
        writer.writerow(["id", "label"])
        writer.writerows((csv_safe(ident), label) for ident, label in rows)
    else:
        writer.writerow(["id", "label", "flags", "notes"])
        for ident, label in rows:
            flags, text = note_columns(notes.get(ident, []))
            writer.writerow([csv_safe(ident), label, flags, csv_safe(text)])
    return buffer.getvalue()


@dataclass(frozen=True)
class Disagreement:
    """A spectrum whose labellers do not all agree."""

    spectrum_id: int
    ident: str
    object: str
    votes: dict[str, str]
    consensus: str | None

    @property
    def counts(self) -> dict[str, int]:
        """Votes per class, most first."""
        return dict(Counter(self.votes.values()).most_common())


def disagreements(
    session: Session, *, limit: int = 200, votes: dict[int, dict[str, str]] | None = None
) -> list[Disagreement]:
    """Spectra with at least two different current labels, most recently labelled first
    (``votes``: `labels_by_spectrum` when the caller has it already)."""
    by_spectrum = labels_by_spectrum(session) if votes is None else votes
    ids = [s for s, votes in by_spectrum.items() if len(set(votes.values())) > 1]
    ids.sort(reverse=True)
    ids = ids[:limit]
    meta = {
        sid: (ident, obj)
        for sid, ident, obj in session.execute(
            select(SpectrumRow.id, SpectrumRow.ident, SpectrumRow.object).where(
                SpectrumRow.id.in_(ids)
            )
        )
    }
    return [
        Disagreement(
            spectrum_id=s,
            ident=meta[s][0],
            object=meta[s][1],
            votes=by_spectrum[s],
            consensus=consensus(by_spectrum[s].values()),
        )
        for s in ids
        if s in meta
    ]


def label_history(session: Session, spectrum_id: int) -> list[dict[str, Any]]:
    """Every decision on a spectrum, oldest first (user, label, time, undo)."""
    query = (
        select(LabelDecision, User.name)
        .join(User, User.id == LabelDecision.user_id)
        .where(LabelDecision.spectrum_id == spectrum_id)
        .order_by(LabelDecision.id)
    )
    return [
        {
            "decision_id": d.id,
            "user": name,
            "label": d.label,
            "undo_of": d.undo_of,
            "time": d.created_at.isoformat(),
        }
        for d, name in session.execute(query)
    ]


def _labelled_by(user_id: int | None) -> Select[Any]:
    """Spectrum ids with a current label (by ``user_id``, or by anyone when None)."""
    latest = _latest_label_ids(user_id)
    return (
        select(LabelDecision.spectrum_id)
        .join(latest, LabelDecision.id == latest.c.last_id)
        .where(LabelDecision.label.is_not(None))
    )


def _latest_prediction_ids() -> Any:
    return (
        select(Prediction.spectrum_id, func.max(Prediction.id).label("pid"))
        .where(Prediction.spectrum_id.is_not(None), Prediction.entropy.is_not(None))
        .group_by(Prediction.spectrum_id)
        .subquery()
    )


def archives(session: Session) -> list[str]:
    """The archives of the stored spectra, sorted (for the labelling queue's choice)."""
    found = session.scalars(select(SpectrumRow.archive).distinct().order_by(SpectrumRow.archive))
    return [a for a in found if a]


def _queue_query(user: User, mode: str, archive: str = "") -> Select[Any]:
    if mode not in QUEUE_MODES:
        raise DecisionError(f"unknown queue {mode!r}; use one of {', '.join(QUEUE_MODES)}")
    user_filter = None if mode == "nobody" else user.id
    query = select(SpectrumRow.id).where(SpectrumRow.id.not_in(_labelled_by(user_filter)))
    if archive:
        query = query.where(SpectrumRow.archive == archive)
    if mode == "uncertain":
        latest = _latest_prediction_ids()
        query = (
            query.join(latest, latest.c.spectrum_id == SpectrumRow.id)
            .join(Prediction, Prediction.id == latest.c.pid)
            .order_by(Prediction.entropy.desc(), SpectrumRow.id)
        )
    else:
        query = query.order_by(SpectrumRow.id)
    return query


def queue(
    session: Session,
    *,
    user: User,
    mode: str = "mine",
    limit: int = 20,
    exclude: Sequence[int] = (),
    archive: str = "",
) -> tuple[list[int], int]:
    """The next spectra to label and how many remain in the queue (``exclude`` not counted).

    ``mine``: not labelled by this user, in import order; ``nobody``: not
    labelled by anyone; ``uncertain`` (active learning): not labelled by this
    user and scored by a model, highest predictive entropy first. ``archive``
    (``ondrejov``, ``lamost``, ...) keeps that archive's spectra only.
    """
    query = _queue_query(user, mode, archive)
    exclude = [int(i) for i in exclude][:MAX_EXCLUDE]
    if exclude:
        query = query.where(SpectrumRow.id.not_in(exclude))
    ids = [int(i) for i in session.scalars(query.limit(max(1, min(limit, 500))))]
    remaining = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return ids, int(remaining or 0)


def progress(session: Session, *, user: User) -> dict[str, Any]:
    """Counts for the labeller: spectra, labelled by me / anyone, my last hour and median pace."""
    total = session.scalar(select(func.count(SpectrumRow.id))) or 0
    mine = session.scalar(select(func.count()).select_from(_labelled_by(user.id).subquery())) or 0
    labelled = _labelled_by(None).subquery()
    anyone = session.scalar(select(func.count(func.distinct(labelled.c.spectrum_id)))) or 0
    since = utcnow() - timedelta(hours=1)
    times = list(
        session.scalars(
            select(LabelDecision.created_at)
            .where(
                LabelDecision.user_id == user.id,
                LabelDecision.created_at >= since,
                LabelDecision.label.is_not(None),
            )
            .order_by(LabelDecision.id)
        )
    )
    gaps = np.diff([t.timestamp() for t in times]) if len(times) > 1 else np.zeros(0)
    gaps = gaps[gaps < 600]
    return {
        "total": int(total),
        "labelled_by_me": int(mine),
        "labelled_by_anyone": int(anyone),
        "remaining_for_me": int(total) - int(mine),
        "last_hour": len(times),
        "median_seconds": float(np.median(gaps)) if gaps.size else None,
    }


# --- spectra --------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rounded(values: np.ndarray, digits: int = 6) -> list[float | None]:
    """Values rounded to about ``digits`` significant digits (compact JSON), NaN as None."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    scale = float(np.max(np.abs(array[finite]))) if finite.any() else 1.0
    decimals = max(0, digits - 1 - math.floor(math.log10(scale))) if scale > 0 else digits
    rounded = np.round(array, decimals)
    return [float(v) if ok else None for v, ok in zip(rounded.tolist(), finite, strict=True)]


def spectrum_summary(row: SpectrumRow) -> dict[str, Any]:
    """Identity and metadata of a stored spectrum (no arrays)."""
    return {
        "id": row.id,
        "ident": row.ident,
        "archive": row.archive,
        "form": row.form,
        "object": row.object,
        "ra": _finite(row.ra),
        "dec": _finite(row.dec),
        "mjd": _finite(row.mjd),
        "date_obs": row.date_obs,
        "snr": _finite(row.snr),
        "source": row.source,
        "origin": row.origin,
        "medium": row.medium,
        "flux_unit": row.flux_unit,
        "quality": row.quality,
        "quality_flags": flag_names(row.quality),
        "reference_label": row.reference_label,
        "has_flux": row.has_flux,
    }


def _blur_sigma_px(row: SpectrumRow, wave: np.ndarray, config: PreprocessConfig) -> float:
    """The Gaussian sigma (pixels) the preprocessing blurs this spectrum with (0: none)."""
    power = (row.meta or {}).get("resolving_power")
    return blur_sigma_for(
        config,
        archive=row.archive,
        resolving_power=float(power) if isinstance(power, int | float) else math.nan,
        wave_aa=wave,
        medium=row.medium or "vacuum",
    )


def spectrum_payload(row: SpectrumRow, *, config: PreprocessConfig | None = None) -> dict[str, Any]:
    """What the three views draw: whole spectrum, H-alpha zoom (raw and blurred), vector.

    Wavelengths are in the spectrum's own medium for the first two views
    (``halpha_aa`` marks the line there) and vacuum Å for the vector.
    Spectra imported from a dataset have only the vector (``full`` and
    ``zoom`` are None).
    """
    config = config or PreprocessConfig()
    payload = spectrum_summary(row)
    payload["meta"] = row.meta or {}
    wave, flux = row.wave_aa(), row.flux_values()
    centre = HALPHA_AIR_AA if row.medium == "air" else HALPHA_VACUUM_AA
    payload["halpha_aa"] = centre
    payload["halpha_vacuum_aa"] = HALPHA_VACUUM_AA
    if wave is not None and flux is not None:
        payload["full"] = {"wave": _rounded(wave, 9), "flux": _rounded(flux)}
        sigma = _blur_sigma_px(row, wave, config)
        window = np.abs(wave - centre) <= ZOOM_HALF_WIDTH_AA
        blurred = blur(fill_nonfinite(wave, flux), sigma_px=sigma) if sigma else None
        payload["zoom"] = {
            "wave": _rounded(wave[window], 9),
            "flux": _rounded(flux[window]),
            "blurred": None if blurred is None else _rounded(blurred[window]),
            "sigma_px": sigma,
        }
    else:
        payload["full"] = None
        payload["zoom"] = None
    payload["vector"] = {"grid_aa": _rounded(row.grid_aa(), 9), "x": _rounded(row.vector())}
    return payload


def measurement_of(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The H-alpha measurement columns of a catalogue row (NaN as None), or None for a row
    written before they existed (no ``profile_type``, or read as ``not measured``)."""
    if not row or not row.get("profile_type") or row.get("halpha_flag") == "not measured":
        return None
    out = {}
    for name in SHOWN_MEASUREMENTS:
        value = row.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[name] = value
    return out


def spectrum_measurement(session: Session, spectrum_id: int) -> dict[str, Any] | None:
    """The H-alpha measurement of a stored spectrum: that of its latest catalogue row which
    has one (`measurement_of`), or None."""
    rows = session.scalars(
        select(Prediction.row)
        .where(Prediction.spectrum_id == spectrum_id)
        .order_by(Prediction.id.desc())
        .limit(20)
    )
    for row in rows:
        measured = measurement_of(row)
        if measured is not None:
            return measured
    return None


def search_spectra(
    session: Session, *, text: str = "", limit: int = 50, offset: int = 0
) -> tuple[list[SpectrumRow], int]:
    """Spectra whose object or id contains ``text`` (case-insensitive, literal), and the count."""
    query = select(SpectrumRow)
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped.lower()}%"
        query = query.where(
            or_(
                func.lower(SpectrumRow.object).like(pattern, escape="\\"),
                func.lower(SpectrumRow.ident).like(pattern, escape="\\"),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(SpectrumRow.id).limit(limit).offset(offset)))
    return rows, int(total)


# --- vetting --------------------------------------------------------------------------------

VetOrder = Literal["probability", "novelty", "uncertainty", "sample", "similarity"]
VET_ORDERS: tuple[str, ...] = ("probability", "novelty", "uncertainty", "sample", "similarity")
"""Vetting orders; ``sample`` is a seeded random sample stratified by class and probability
bin (`sample_order`), for an unbiased precision estimate; ``similarity`` the grid view's
order of similar spectra (`spectraldl.web.similarity`, computed before it is asked for)."""


def sample_order(rows: Iterable[tuple[int, str, float | None]], *, seed: int = 0) -> list[int]:
    """Candidate ids ``(id, predicted class, probability)`` in a seeded random order
    stratified by class and probability bin (`PRECISION_BINS` bins of the probability).

    Within each stratum the candidates are shuffled and the k-th of n gets the key
    (k + u) / n, u uniform in 0-1; all are then sorted by key. So every prefix of the
    order holds each stratum in proportion to its size (to within one candidate): a
    proportional stratified random sample, whatever its length, and the same for
    everyone with the same seed (strata are visited in a fixed order, ids sorted).
    """
    strata: dict[tuple[str, int], list[int]] = defaultdict(list)
    for pid, name, probability in rows:
        index = -1
        if probability is not None and math.isfinite(probability):
            index = min(PRECISION_BINS - 1, max(0, int(probability * PRECISION_BINS)))
        strata[(name or "", index)].append(int(pid))
    rng = np.random.default_rng(seed)
    keyed: list[tuple[float, int]] = []
    for stratum in sorted(strata):
        ids = np.sort(np.asarray(strata[stratum], dtype=np.int64))
        n = len(ids)
        shuffled = ids[rng.permutation(n)]
        keys = (np.arange(n) + rng.random(n)) / n
        keyed.extend(zip(keys.tolist(), shuffled.tolist(), strict=True))
    keyed.sort()
    return [pid for _, pid in keyed]


def canonical_verdict(verdict: str) -> str:
    """``confirm``, ``reject`` or ``noise`` (case-insensitive); `DecisionError` otherwise."""
    name = verdict.strip().lower()
    if name not in VERDICTS:
        raise DecisionError(f"unknown verdict {verdict!r}; expected one of {', '.join(VERDICTS)}")
    return name


def record_verdict(
    session: Session, *, user: User, prediction_id: int, verdict: str | None
) -> VetDecision:
    """Append a vetting verdict (None withdraws the user's verdict); the caller commits."""
    name = None if verdict is None else canonical_verdict(verdict)
    if not _lock_row(session, Prediction, prediction_id):
        raise NotFound(f"no candidate with id {prediction_id}")
    decision = VetDecision(
        prediction_id=prediction_id, user_id=user.id, verdict=name, created_at=utcnow()
    )
    session.add(decision)
    session.flush()
    return decision


MAX_BULK = 5000
"""Most candidates one bulk verdict or bulk undo may name."""


def _unique_ids(ids: Sequence[int]) -> list[int]:
    """``ids`` without repeats, in their first order; `DecisionError` for none or too many."""
    unique = list(dict.fromkeys(int(i) for i in ids))
    if not unique:
        raise DecisionError("name at least one candidate")
    if len(unique) > MAX_BULK:
        raise DecisionError(f"at most {MAX_BULK} candidates per call, not {len(unique)}")
    return unique


def _lock_predictions(session: Session, ids: Sequence[int]) -> None:
    """Start a writing transaction and lock the candidates (in id order, so two bulk calls
    cannot deadlock); `NotFound` naming the ids that do not exist."""
    begin_write(session)
    found: set[int] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), 1000):
        chunk = ordered[start : start + 1000]
        query = select(Prediction.id).where(Prediction.id.in_(chunk)).order_by(Prediction.id)
        found.update(int(i) for i in session.scalars(query.with_for_update()))
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise NotFound(f"no candidates with ids {shown} ({len(missing)} unknown); nothing stored")


def record_verdicts(
    session: Session, *, user: User, prediction_ids: Sequence[int], verdict: str
) -> list[VetDecision]:
    """One verdict on many candidates, in one transaction with all of them locked: every
    verdict is stored, or none (`NotFound` when an id is unknown). Repeated ids count once.
    The caller commits."""
    name = canonical_verdict(verdict)
    ids = _unique_ids(prediction_ids)
    _lock_predictions(session, ids)
    now = utcnow()
    decisions = [
        VetDecision(prediction_id=i, user_id=user.id, verdict=name, created_at=now) for i in ids
    ]
    session.add_all(decisions)
    session.flush()
    return decisions


def undo_verdicts(
    session: Session, *, user: User, decision_ids: Sequence[int]
) -> list[VetDecision]:
    """Undo the user's verdicts (one, or a page of the grid view): all or none, in one
    transaction with their candidates locked; each must be the user's latest on its candidate
    and is undone by a row restoring the verdict before it."""
    ids = _unique_ids(decision_ids)
    begin_write(session)
    decisions = {
        d.id: d
        for start in range(0, len(ids), 1000)
        for d in session.scalars(
            select(VetDecision).where(
                VetDecision.id.in_(ids[start : start + 1000]), VetDecision.user_id == user.id
            )
        )
    }
    missing = [i for i in ids if i not in decisions]
    if missing:
        raise NotFound(f"no verdicts {', '.join(map(str, missing[:20]))} of user {user.name!r}")
    _lock_predictions(session, sorted({d.prediction_id for d in decisions.values()}))
    restored = []
    for decision_id in ids:
        decision = decisions[decision_id]
        rows = list(
            session.execute(
                select(VetDecision.id, VetDecision.verdict)
                .where(
                    VetDecision.prediction_id == decision.prediction_id,
                    VetDecision.user_id == user.id,
                )
                .order_by(VetDecision.id.desc())
                .limit(2)
            )
        )
        if rows[0][0] != decision.id:
            raise DecisionError(f"verdict {decision_id} is not your latest on its candidate")
        restored.append(
            VetDecision(
                prediction_id=decision.prediction_id,
                user_id=user.id,
                verdict=rows[1][1] if len(rows) > 1 else None,
                undo_of=decision.id,
                created_at=utcnow(),
            )
        )
    session.add_all(restored)
    session.flush()
    return restored


def undo_verdict(session: Session, *, user: User, decision_id: int) -> VetDecision:
    """Undo the user's latest verdict on a candidate (appends a row restoring the one before);
    one transaction with the candidate locked, like `undo_label` (`undo_verdicts` of one)."""
    return undo_verdicts(session, user=user, decision_ids=[decision_id])[0]


def _latest_verdict_ids(user_id: int | None = None) -> Any:
    query = select(
        VetDecision.prediction_id,
        VetDecision.user_id,
        func.max(VetDecision.id).label("last_id"),
    ).group_by(VetDecision.prediction_id, VetDecision.user_id)
    if user_id is not None:
        query = query.where(VetDecision.user_id == user_id)
    return query.subquery()


def _vetted_by(user_id: int | None) -> Select[Any]:
    """Prediction ids with a current verdict (by ``user_id``, or by anyone when None)."""
    latest = _latest_verdict_ids(user_id)
    return (
        select(VetDecision.prediction_id)
        .join(latest, VetDecision.id == latest.c.last_id)
        .where(VetDecision.verdict.is_not(None))
    )


def vet_queue(
    session: Session,
    *,
    user: User,
    catalogue_id: int,
    order: str = "probability",
    classes: Sequence[str] | None = CANDIDATE_CLASSES,
    unvetted_only: bool = True,
    limit: int = 20,
    exclude: Sequence[int] = (),
    seed: int = 0,
) -> tuple[list[int], int]:
    """Candidates of a catalogue to vet next, and how many remain.

    ``order``: ``probability`` (of the predicted class, highest first),
    ``novelty`` (most novel first), ``uncertainty`` (highest entropy first) or
    ``sample`` (`sample_order` with ``seed``: a stratified random sample) or
    ``similarity`` (the stored ``similarity_rank``: `spectraldl.web.similarity`).
    ``classes`` filters by predicted class (None: every row).
    """
    if order not in VET_ORDERS:
        raise DecisionError(f"unknown order {order!r}; use one of {', '.join(VET_ORDERS)}")
    query = select(Prediction.id).where(Prediction.catalogue_id == catalogue_id)
    if classes:
        query = query.where(Prediction.predicted_class.in_(list(classes)))
    if unvetted_only:
        query = query.where(Prediction.id.not_in(_vetted_by(user.id)))
    exclude = [int(i) for i in exclude][:MAX_EXCLUDE]
    if exclude:
        query = query.where(Prediction.id.not_in(exclude))
    if order == "sample":
        everyone = select(Prediction.id, Prediction.predicted_class, Prediction.probability).where(
            Prediction.catalogue_id == catalogue_id
        )
        if classes:
            everyone = everyone.where(Prediction.predicted_class.in_(list(classes)))
        wanted = {int(i) for i in session.scalars(query)}
        ordered_ids = [i for i in sample_order(session.execute(everyone), seed=seed) if i in wanted]
        return ordered_ids[: max(1, min(limit, 500))], len(wanted)
    if order == "similarity":
        ordered = query.order_by(Prediction.similarity_rank, Prediction.id)
    else:
        column = {
            "probability": Prediction.probability,
            "novelty": Prediction.novelty,
            "uncertainty": Prediction.entropy,
        }[order]
        ordered = query.order_by(column.is_(None), column.desc(), Prediction.row_index)
    ids = [int(i) for i in session.scalars(ordered.limit(max(1, min(limit, 500))))]
    remaining = session.scalar(select(func.count()).select_from(query.subquery()))
    return ids, int(remaining or 0)


def verdicts_by_prediction(
    session: Session,
    *,
    catalogue_id: int,
    user_id: int | None = None,
    prediction_ids: Sequence[int] | None = None,
) -> dict[int, dict[str, str]]:
    """``{prediction_id: {user: verdict}}`` of the current verdicts in a catalogue.

    ``user_id`` and ``prediction_ids`` restrict it to one user's verdicts or to some rows.
    """
    latest = _latest_verdict_ids(user_id)
    query = (
        select(VetDecision.prediction_id, User.name, VetDecision.verdict)
        .join(latest, VetDecision.id == latest.c.last_id)
        .join(User, User.id == VetDecision.user_id)
        .join(Prediction, Prediction.id == VetDecision.prediction_id)
        .where(Prediction.catalogue_id == catalogue_id, VetDecision.verdict.is_not(None))
    )
    if prediction_ids is not None:
        query = query.where(VetDecision.prediction_id.in_(list(prediction_ids)))
    rows = session.execute(query)
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for prediction_id, name, verdict in rows:
        out[int(prediction_id)][name] = not_withdrawn(verdict)
    return dict(out)


def prediction_payload(
    session: Session, prediction: Prediction, *, user: User | None = None
) -> dict[str, Any]:
    """A candidate for the vetting page: its table values, the verdicts, its spectrum's id."""
    votes = verdicts_by_prediction(
        session, catalogue_id=prediction.catalogue_id, prediction_ids=[prediction.id]
    ).get(prediction.id, {})
    return {
        "id": prediction.id,
        "catalogue_id": prediction.catalogue_id,
        "ident": prediction.ident,
        "spectrum_id": prediction.spectrum_id,
        "object": prediction.object,
        "predicted_class": prediction.predicted_class,
        "probability": _finite(prediction.probability),
        "novelty": _finite(prediction.novelty),
        "entropy": _finite(prediction.entropy),
        "quality": prediction.quality,
        "quality_flags": prediction.quality_flags,
        "probs": prediction.probs,
        "row": prediction.row,
        "verdicts": votes,
        "my_verdict": votes.get(user.name) if user is not None else None,
        "consensus": consensus(votes.values()),
    }


def vetted_frame(session: Session, catalogue_id: int) -> Any:
    """The catalogue's rows (every original column) with the vetting result appended.

    Added columns: ``vetted`` (consensus verdict, '' when none), ``n_confirm``,
    ``n_reject``, ``n_noise``, ``vetted_by`` (user names joined by ``|``), and the
    notes: ``flags`` (everyone's, comma-separated) and ``notes`` ("user: text" joined
    by " | ").
    """
    import pandas as pd

    catalogue = session.get(Catalogue, catalogue_id)
    if catalogue is None:
        raise NotFound(f"no catalogue with id {catalogue_id}")
    votes = verdicts_by_prediction(session, catalogue_id=catalogue_id)
    in_catalogue = select(Prediction.ident).where(Prediction.catalogue_id == catalogue_id)
    notes = notes_by_ident(session, in_catalogue)
    records = []
    for pid, ident, row in session.execute(
        select(Prediction.id, Prediction.ident, Prediction.row)
        .where(Prediction.catalogue_id == catalogue_id)
        .order_by(Prediction.row_index)
    ):
        record = dict(row)
        given = votes.get(int(pid), {})
        counts = Counter(given.values())
        record["vetted"] = consensus(given.values()) or ""
        for verdict in VERDICTS:
            record[f"n_{verdict}"] = counts.get(verdict, 0)
        record["vetted_by"] = "|".join(sorted(given))
        record["flags"], record["notes"] = note_columns(notes.get(ident, []))
        records.append(record)
    extra = ["vetted", *(f"n_{v}" for v in VERDICTS), "vetted_by", "flags", "notes"]
    return pd.DataFrame.from_records(records, columns=[*catalogue.columns, *extra])


def vet_progress(session: Session, *, user: User, catalogue_id: int) -> dict[str, int]:
    """Candidates in a catalogue, vetted by me, vetted by anyone."""
    total = session.scalar(
        select(func.count(Prediction.id)).where(Prediction.catalogue_id == catalogue_id)
    )
    votes = verdicts_by_prediction(session, catalogue_id=catalogue_id)
    mine = sum(1 for v in votes.values() if user.name in v)
    return {"total": int(total or 0), "vetted_by_me": mine, "vetted_by_anyone": len(votes)}


# --- precision measured from the verdicts ---------------------------------------------------

PRECISION_BINS = 10
"""Bins of the predicted class's probability (equal width on 0-1) for the precision table."""

# --- notes and flags ------------------------------------------------------------------------

MAX_NOTE_CHARS = 4000
MAX_FLAGS = 12
FLAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
"""A flag: lower-case letters, digits and '-', 1-32 characters (the named ones or any other)."""


def canonical_flags(flags: Iterable[str]) -> list[str]:
    """The flags lower-cased, without repeats, the named ones (`NOTE_FLAGS`) first;
    `DecisionError` for a flag that is not a-z, 0-9 and '-' or for too many."""
    names = list(dict.fromkeys(f.strip().lower() for f in flags if f.strip()))
    bad = [f for f in names if not FLAG_PATTERN.match(f)]
    if bad:
        raise DecisionError(f"flag {bad[0]!r}: use 1-32 characters a-z, 0-9 and '-'")
    if len(names) > MAX_FLAGS:
        raise DecisionError(f"at most {MAX_FLAGS} flags per note")
    named = [f for f in NOTE_FLAGS if f in names]
    return named + sorted(f for f in names if f not in NOTE_FLAGS)


def _note_dict(note: Note, user: str) -> dict[str, Any]:
    return {
        "ident": note.ident,
        "user": user,
        "text": note.text,
        "flags": [f for f in note.flags.split("|") if f],
        "time": note.updated_at.isoformat(),
    }


def save_note(
    session: Session, *, user: User, ident: str, text: str, flags: Iterable[str]
) -> dict[str, Any] | None:
    """Set the user's note and flags on the spectrum or candidate ``ident`` (one note per
    person and ident; an empty note without flags deletes it: None). `NotFound` when
    no spectrum or candidate has that id. The caller commits."""
    text = text.strip()
    if len(text) > MAX_NOTE_CHARS:
        raise DecisionError(f"a note holds at most {MAX_NOTE_CHARS} characters")
    names = canonical_flags(flags)
    known = session.scalar(select(SpectrumRow.id).where(SpectrumRow.ident == ident)) or (
        session.scalar(select(Prediction.id).where(Prediction.ident == ident).limit(1))
    )
    if not known:
        raise NotFound(f"no spectrum or candidate with id {ident!r}")
    begin_write(session)
    note = session.scalar(
        select(Note).where(Note.ident == ident, Note.user_id == user.id).with_for_update()
    )
    if not text and not names:
        if note is not None:
            session.delete(note)
            session.flush()
        return None
    if note is None:
        note = Note(ident=ident, user_id=user.id)
        session.add(note)
    note.text = text
    note.flags = "|" + "|".join(names) + "|" if names else ""
    note.updated_at = utcnow()
    session.flush()
    return _note_dict(note, user.name)


def search_notes(
    session: Session,
    *,
    idents: Sequence[str] | None = None,
    text: str = "",
    flag: str = "",
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Notes (newest first) of some idents, whose text or id contains ``text``
    (case-insensitive, literal) and that carry ``flag``; and how many match."""
    query = select(Note, User.name).join(User, User.id == Note.user_id)
    if idents is not None:
        query = query.where(Note.ident.in_(list(idents)))
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped.lower()}%"
        query = query.where(
            or_(
                func.lower(Note.text).like(pattern, escape="\\"),
                func.lower(Note.ident).like(pattern, escape="\\"),
            )
        )
    if flag:
        query = query.where(Note.flags.like(f"%|{canonical_flags([flag])[0]}|%"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        query.order_by(Note.updated_at.desc(), Note.id.desc()).limit(limit).offset(offset)
    )
    return [_note_dict(note, name) for note, name in rows], int(total)


def notes_by_ident(session: Session, idents: Any = None) -> dict[str, list[dict]]:
    """``{ident: [note, ...]}`` (every person's), for some idents (a list or a select of
    them) or all."""
    out: dict[str, list[dict]] = defaultdict(list)
    query = (
        select(Note, User.name).join(User, User.id == Note.user_id).order_by(Note.ident, User.name)
    )
    if idents is not None:
        query = query.where(Note.ident.in_(idents if isinstance(idents, Select) else list(idents)))
    for note, name in session.execute(query):
        out[note.ident].append(_note_dict(note, name))
    return dict(out)


def note_columns(notes: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The export's ``flags`` (everyone's, comma-separated) and ``notes`` ("user: text",
    joined by " | ") cells of one spectrum or candidate."""
    flags = canonical_flags(f for note in notes for f in note["flags"])
    texts = [f"{note['user']}: {note['text']}" for note in notes if note["text"]]
    return ",".join(flags), " | ".join(texts)
