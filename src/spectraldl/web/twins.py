"""The two stored forms of one Ondřejov exposure, for the labelling pages.

Ondřejov's archive serves each CCD700 exposure as its raw file (the id is the
file's name) and through SSAP (the publisher's id, ``ivo://.../ccd700/`` and that
name). spectraldl keeps them as two spectra, since their flux differs (ADU
against normalised), and every split keeps both on one side
(`spectraldl.ml.training.keep_observations_together`). A labeller sees each
form's other here, with the labels it has, and the disagreements page lists the
exposures whose two forms carry different labels: for training they should not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spectraldl.io.archives.ondrejov import observation_key, other_form_ident
from spectraldl.web import store
from spectraldl.web.models import SpectrumRow

IN_LIST = 1000
"""Spectrum ids asked for in one query."""


def other_forms(session: Session, row: SpectrumRow, *, user: str) -> list[dict[str, Any]]:
    """The stored other form of ``row``'s exposure (none, or one): its id, form, ``user``'s
    label and the majority label."""
    query = select(SpectrumRow.id, SpectrumRow.ident, SpectrumRow.form).where(
        SpectrumRow.ident == other_form_ident(row.ident)
    )
    found = session.execute(query).first()
    if found is None:
        return []
    sid, ident, form = found
    votes = store.labels_by_spectrum(session, spectrum_ids=[sid]).get(sid, {})
    mine, majority = votes.get(user), store.consensus(votes.values())
    return [{"id": sid, "ident": ident, "form": form, "mine": mine, "consensus": majority}]


@dataclass(frozen=True)
class FormsApart:
    """An exposure whose stored forms have different majority labels."""

    key: str
    forms: list[tuple[int, str, str, str]]
    """(spectrum id, id, form, majority label) of each form, in spectrum order."""


def forms_labelled_apart(
    session: Session, votes: dict[int, dict[str, str]] | None = None
) -> list[FormsApart]:
    """Exposures whose two stored forms have different majority labels (ties left out: the
    disagreements list shows those), most recently stored first (``votes``:
    `store.labels_by_spectrum` when the caller has it already)."""
    by_spectrum = store.labels_by_spectrum(session) if votes is None else votes
    majority = {
        sid: label
        for sid, given in by_spectrum.items()
        if (label := store.consensus(given.values())) is not None
    }
    groups: dict[str, list[tuple[int, str, str, str]]] = defaultdict(list)
    ids = sorted(majority)
    for start in range(0, len(ids), IN_LIST):  # bounded lists: SQLite caps their length
        query = select(SpectrumRow.id, SpectrumRow.ident, SpectrumRow.form).where(
            SpectrumRow.id.in_(ids[start : start + IN_LIST])
        )
        for sid, ident, form in session.execute(query.order_by(SpectrumRow.id)):
            groups[observation_key(ident)].append((sid, ident, form, majority[sid]))
    apart = [
        FormsApart(key, forms)
        for key, forms in groups.items()
        if len(forms) > 1 and len({f[3] for f in forms}) > 1
    ]
    return sorted(apart, key=lambda a: a.forms[-1][0], reverse=True)
