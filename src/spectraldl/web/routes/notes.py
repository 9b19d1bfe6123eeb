"""Notes and flags: a person's free-text note and named flags on a spectrum or candidate,
set from the labelling and vetting pages, searched on the Notes page and the API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from spectraldl.web import store
from spectraldl.web.deps import CurrentAuth, DbSession, JsonBody, WriteAuth, render, store_errors
from spectraldl.web.models import NOTE_FLAGS

router = APIRouter()


class NoteIn(JsonBody):
    """The note and flags of one spectrum or candidate (by its id in the archive)."""

    ident: str = Field(min_length=1, max_length=512)
    text: str = Field(default="", max_length=store.MAX_NOTE_CHARS)
    flags: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=store.MAX_FLAGS
    )


@router.get("/api/note-flags")
def get_note_flags(current: CurrentAuth) -> dict[str, Any]:
    """The named flags offered on every page (any other a-z, 0-9, '-' flag is allowed too)."""
    return {"flags": NOTE_FLAGS}


@router.post("/api/notes")
def post_note(body: NoteIn, session: DbSession, current: WriteAuth) -> dict[str, Any]:
    """Set one's note and flags on a spectrum or candidate (empty ones delete the note)."""
    with store_errors():
        note = store.save_note(
            session, user=current.user, ident=body.ident, text=body.text, flags=body.flags
        )
    session.commit()
    return {"note": note}


@router.get("/api/notes")
def get_notes(
    session: DbSession,
    current: CurrentAuth,
    ident: Annotated[str | None, Query(max_length=512)] = None,
    q: Annotated[str, Query(max_length=200)] = "",
    flag: Annotated[str, Query(max_length=32)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    """Notes, newest first: of one spectrum or candidate (``ident``), whose text or id
    contains ``q``, carrying ``flag``."""
    with store_errors():
        notes, total = store.search_notes(
            session,
            idents=None if ident is None else [ident],
            text=q,
            flag=flag,
            limit=limit,
            offset=offset,
        )
    return {"notes": notes, "total": total}


@router.get("/notes", response_class=HTMLResponse)
def notes_page(
    request: Request,
    session: DbSession,
    current: CurrentAuth,
    q: Annotated[str, Query(max_length=200)] = "",
    flag: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    with store_errors():
        notes, total = store.search_notes(session, text=q, flag=flag, limit=500)
    return render(
        request, "notes.html", current, notes=notes, total=total, q=q, flag=flag, flags=NOTE_FLAGS
    )
