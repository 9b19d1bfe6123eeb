"""Labelling: the spectra and their three views, the queues, decisions and undo, the labels
CSV, disagreements, and the pages that show them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy.orm import Session

from spectraldl.web import store, twins
from spectraldl.web.deps import (
    ID_MAX,
    CurrentAuth,
    DbSession,
    Id,
    JsonBody,
    WriteAuth,
    parse_ids,
    render,
    store_errors,
)
from spectraldl.web.models import SpectrumRow

router = APIRouter()

PER_PAGE = 50
"""Spectra per page of the Spectra list."""


class LabelIn(JsonBody):
    """A labelling decision: a class name, or null to withdraw."""

    spectrum_id: int = Field(ge=1, le=ID_MAX)
    label: str | None = Field(default=None, max_length=32)


class UndoIn(JsonBody):
    """The decision to undo."""

    decision_id: int = Field(ge=1, le=ID_MAX)


Archive = Annotated[str, Query(max_length=32)]


def spectrum_or_404(session: Session, spectrum_id: int) -> SpectrumRow:
    row = session.get(SpectrumRow, spectrum_id)
    if row is None:
        raise HTTPException(404, f"no spectrum with id {spectrum_id}")
    return row


@router.get("/api/spectra")
def list_spectra(
    session: DbSession,
    current: CurrentAuth,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> dict[str, Any]:
    """Spectra whose object or id contains ``q``."""
    rows, total = store.search_spectra(session, text=q, limit=limit, offset=offset)
    return {"total": total, "spectra": [store.spectrum_summary(r) for r in rows]}


@router.get("/api/spectra/{spectrum_id}")
def get_spectrum(
    spectrum_id: Id, request: Request, session: DbSession, current: CurrentAuth
) -> dict[str, Any]:
    """A spectrum with its arrays for the three views, the labels given to it, its H-alpha
    measurement from its latest catalogue row with one (`store.spectrum_measurement`) and the
    other stored form of its exposure with that one's labels (`twins.other_forms`)."""
    row = spectrum_or_404(session, spectrum_id)
    payload = store.spectrum_payload(row, config=request.app.state.config)
    payload["measurement"] = store.spectrum_measurement(session, row.id)
    votes = store.labels_by_spectrum(session, spectrum_ids=[row.id]).get(row.id, {})
    payload["labels"] = {
        "mine": votes.get(current.user.name),
        "votes": votes,
        "consensus": store.consensus(votes.values()),
    }
    payload["other_forms"] = twins.other_forms(session, row, user=current.user.name)
    # The annotated return type lets pydantic serialise the long arrays quickly
    # (an unannotated dict goes through FastAPI's per-element encoder, 3-4 times slower).
    return payload


@router.get("/api/spectra/{spectrum_id}/history")
def spectrum_history(spectrum_id: Id, session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """Every labelling decision on a spectrum, oldest first."""
    spectrum_or_404(session, spectrum_id)
    return {"spectrum_id": spectrum_id, "decisions": store.label_history(session, spectrum_id)}


@router.get("/api/archives")
def get_archives(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """The archives the stored spectra come from (``ondrejov``, ``lamost``, ...)."""
    return {"archives": store.archives(session)}


@router.get("/api/queue")
def get_queue(
    session: DbSession,
    current: CurrentAuth,
    mode: str = "mine",
    archive: Archive = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    exclude: Annotated[str, Query(max_length=20000)] = "",
) -> dict[str, Any]:
    """The next spectra to label (ids) and how many remain (of one archive, when given)."""
    skip = parse_ids(exclude)
    with store_errors():
        ids, remaining = store.queue(
            session, user=current.user, mode=mode, limit=limit, exclude=skip, archive=archive
        )
    return {"mode": mode, "archive": archive, "ids": ids, "remaining": remaining}


@router.get("/api/progress")
def get_progress(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """The labeller's counts and pace."""
    return store.progress(session, user=current.user)


@router.post("/api/labels", status_code=201)
def post_label(body: LabelIn, session: DbSession, current: WriteAuth) -> dict[str, Any]:
    """Record a labelling decision (a new row; earlier ones are kept)."""
    with store_errors():
        decision = store.record_label(
            session, user=current.user, spectrum_id=body.spectrum_id, label=body.label
        )
    session.commit()
    return {
        "decision_id": decision.id,
        "spectrum_id": decision.spectrum_id,
        "label": decision.label,
        "user": current.user.name,
        "time": decision.created_at.isoformat(),
    }


@router.post("/api/labels/undo", status_code=201)
def post_undo(body: UndoIn, session: DbSession, current: WriteAuth) -> dict[str, Any]:
    """Undo one's latest decision on a spectrum (a new row restores the label before it)."""
    with store_errors(conflict=True):
        decision = store.undo_label(session, user=current.user, decision_id=body.decision_id)
    session.commit()
    return {
        "decision_id": decision.id,
        "spectrum_id": decision.spectrum_id,
        "label": decision.label,
        "undo_of": decision.undo_of,
    }


@router.get("/api/labels.csv")
def labels_csv(
    session: DbSession,
    current: CurrentAuth,
    policy: str = "majority",
    user: Annotated[str | None, Query(max_length=64)] = None,
    notes: bool = False,
) -> Response:
    """The current labels as ``id,label`` CSV (``spectraldl ingest --labels`` reads it);
    with ``notes``, also ``flags`` and ``notes`` columns."""
    with store_errors():
        rows = store.export_labels(session, policy=policy, user=user)  # type: ignore[arg-type]
    return Response(
        store.labels_csv(rows, notes=store.notes_by_ident(session) if notes else None),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
    )


@router.get("/api/disagreements")
def get_disagreements(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """Spectra whose labellers disagree, with everyone's label, and the exposures whose two
    stored forms have different majority labels."""
    votes = store.labels_by_spectrum(session)  # read once for both lists
    items = store.disagreements(session, votes=votes)
    return {
        "forms_apart": [
            {
                "key": a.key,
                "forms": [
                    {"spectrum_id": sid, "ident": ident, "form": form, "consensus": label}
                    for sid, ident, form, label in a.forms
                ],
            }
            for a in twins.forms_labelled_apart(session, votes)
        ],
        "disagreements": [
            {
                "spectrum_id": d.spectrum_id,
                "ident": d.ident,
                "object": d.object,
                "votes": d.votes,
                "consensus": d.consensus,
            }
            for d in items
        ],
    }


# --- pages ----------------------------------------------------------------------------------


@router.get("/")
def index() -> Response:
    return RedirectResponse("/label", status_code=303)


@router.get("/label", response_class=HTMLResponse)
def label_page(
    request: Request,
    session: DbSession,
    current: CurrentAuth,
    mode: str = "mine",
    archive: Archive = "",
) -> Response:
    if mode not in store.QUEUE_MODES:
        raise HTTPException(404, f"no queue {mode!r}")
    archives = store.archives(session)
    if archive and archive not in archives:
        raise HTTPException(404, f"no spectra of the archive {archive!r}")
    return render(
        request, "label.html", current, mode=mode, start=None, archive=archive, archives=archives
    )


@router.get("/label/{spectrum_id}", response_class=HTMLResponse)
def label_one(
    spectrum_id: Id, request: Request, session: DbSession, current: CurrentAuth
) -> Response:
    spectrum_or_404(session, spectrum_id)
    return render(
        request,
        "label.html",
        current,
        mode="mine",
        start=spectrum_id,
        archive="",
        archives=store.archives(session),
    )


@router.get("/spectra", response_class=HTMLResponse)
def spectra_page(
    request: Request,
    session: DbSession,
    current: CurrentAuth,
    q: Annotated[str, Query(max_length=200)] = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=ID_MAX // PER_PAGE)] = 1,
) -> Response:
    rows, total = store.search_spectra(
        session, text=q, limit=PER_PAGE, offset=(page_no - 1) * PER_PAGE
    )
    votes = store.labels_by_spectrum(session, spectrum_ids=[r.id for r in rows])
    items = [
        {
            "row": r,
            "summary": store.spectrum_summary(r),
            "votes": votes.get(r.id, {}),
            "consensus": store.consensus(votes.get(r.id, {}).values()),
        }
        for r in rows
    ]
    return render(
        request,
        "spectra.html",
        current,
        q=q,
        items=items,
        total=total,
        page_no=page_no,
        pages=max(1, -(-total // PER_PAGE)),
    )


@router.get("/disagreements", response_class=HTMLResponse)
def disagreements_page(request: Request, session: DbSession, current: CurrentAuth) -> Response:
    votes = store.labels_by_spectrum(session)  # read once for both lists
    return render(
        request,
        "disagreements.html",
        current,
        items=store.disagreements(session, votes=votes),
        apart=twins.forms_labelled_apart(session, votes),
    )
