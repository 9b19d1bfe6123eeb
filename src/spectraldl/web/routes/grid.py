"""The grid view of vetting: pages of similar candidates ("small multiples"), one key per
page (`spectraldl.web.similarity`); verdicts go through the bulk API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from spectraldl.web import store
from spectraldl.web.deps import CurrentAuth, DbSession, Id, parse_ids, render, store_errors
from spectraldl.web.routes.vetting import catalogue_or_404
from spectraldl.web.similarity import GRID_MAX, GRID_MIN, GRID_SIZE, grid_page

router = APIRouter()

GridSize = Annotated[int, Query(ge=GRID_MIN, le=GRID_MAX)]
Classes = Annotated[str, Query(max_length=200)]
CANDIDATES = ",".join(store.CANDIDATE_CLASSES)

GRID_KEYS: dict[str, str] = {
    "c or Enter": "confirm the page (toggled tiles: reject)",
    "r": "reject the page (toggled tiles: confirm)",
    "1-9": "toggle tile 1-9",
    "arrows, space": "move the cursor, toggle the tile under it",
    "u": "undo the last page",
    "l": "line markers on or off",
}
"""The grid page's keys, shown on the page."""


@router.get("/api/catalogues/{catalogue_id}/grid")
def get_grid(
    catalogue_id: Id,
    session: DbSession,
    current: CurrentAuth,
    size: GridSize = GRID_SIZE,
    classes: Classes = CANDIDATES,
    exclude: Annotated[str, Query(max_length=20000)] = "",
) -> dict[str, Any]:
    """The next page of the grid: up to ``size`` candidates you have not vetted, similar
    ones together, each with its class, probability, measured EW and vector."""
    catalogue_or_404(session, catalogue_id)
    wanted = [c for c in classes.split(",") if c.strip()] or None
    with store_errors():
        return grid_page(
            session,
            user=current.user,
            catalogue_id=catalogue_id,
            size=size,
            classes=wanted,
            exclude=parse_ids(exclude),
        )


@router.get("/vet/{catalogue_id}/grid", response_class=HTMLResponse)
def grid_view(
    catalogue_id: Id,
    request: Request,
    session: DbSession,
    current: CurrentAuth,
    size: GridSize = GRID_SIZE,
    classes: Classes = CANDIDATES,
) -> Response:
    """The grid page: a page of similar candidates, vetted with the keyboard."""
    catalogue = catalogue_or_404(session, catalogue_id)
    return render(
        request,
        "vet_grid.html",
        current,
        catalogue=catalogue,
        size=size,
        classes=classes,
        candidate_classes=CANDIDATES,
        keys=GRID_KEYS,
    )
