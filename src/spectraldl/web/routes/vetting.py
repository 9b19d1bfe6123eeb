"""Vetting: catalogues (uploaded as background import jobs, deleted by admins), the queue of
candidates, verdicts and undo, the vetted export, and the pages that show them."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from spectraldl.web import importing, precision, store
from spectraldl.web.deps import (
    ID_MAX,
    AdminAuth,
    AdminWriteAuth,
    Auth,
    CurrentAuth,
    DbSession,
    Id,
    JsonBody,
    WriteAuth,
    form_with_csrf,
    parse_ids,
    render,
    store_errors,
)
from spectraldl.web.jobs import ImportJobs, upload_folder
from spectraldl.web.models import VERDICTS, Catalogue, ImportJob, Prediction, SpectrumRow, User
from spectraldl.web.similarity import ensure_order

router = APIRouter()

UPLOAD_SUFFIXES = (".parquet", ".csv", ".tsv", ".fits", ".fit", ".vot", ".xml")

UPLOAD_WAIT_S = 15.0
"""How long an upload's answer waits for its import to finish before answering 202."""

VERDICT_KEYS: dict[str, str] = {"confirm": "c", "reject": "r", "noise": "n"}
"""Keyboard key of each verdict on the vetting page (digits 1-3 too)."""


class VerdictIn(JsonBody):
    """A vetting verdict: confirm, reject, noise, or null to withdraw."""

    prediction_id: int = Field(ge=1, le=ID_MAX)
    verdict: str | None = Field(default=None, max_length=16)


class UndoIn(JsonBody):
    """The verdict to undo."""

    decision_id: int = Field(ge=1, le=ID_MAX)


BoundedId = Annotated[int, Field(ge=1, le=ID_MAX)]


class BulkVerdictIn(JsonBody):
    """One verdict (confirm, reject, noise) on many candidates."""

    prediction_ids: list[BoundedId] = Field(min_length=1, max_length=store.MAX_BULK)
    verdict: str = Field(max_length=16)


class BulkUndoIn(JsonBody):
    """Verdicts to undo together (a page of the grid view)."""

    decision_ids: list[BoundedId] = Field(min_length=1, max_length=store.MAX_BULK)


def catalogue_or_404(session: Session, catalogue_id: int, *, ready: bool = True) -> Catalogue:
    """The catalogue; 404 when there is none (or, with ``ready``, while it is importing)."""
    catalogue = session.get(Catalogue, catalogue_id)
    if catalogue is None or (ready and catalogue.status != "ready"):
        raise HTTPException(404, f"no catalogue with id {catalogue_id} (or still importing)")
    return catalogue


def catalogue_summary(session: Session, catalogue: Catalogue, user: User) -> dict[str, Any]:
    return {
        "id": catalogue.id,
        "name": catalogue.name,
        "source": catalogue.source,
        "status": catalogue.status,
        "classes": catalogue.classes,
        "model_id": catalogue.model_id,
        "n_rows": catalogue.n_rows,
        "created_at": catalogue.created_at.isoformat(),
        "progress": store.vet_progress(session, user=user, catalogue_id=catalogue.id),
    }


def job_summary(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "rows_done": job.rows_done,
        "rows_total": job.rows_total,
        "error": job.error,
        "catalogue_id": job.catalogue_id,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def all_catalogues(session: Session, user: User) -> list[dict[str, Any]]:
    catalogues = session.scalars(select(Catalogue).order_by(Catalogue.id.desc()))
    return [catalogue_summary(session, c, user) for c in catalogues]


def recent_jobs(session: Session, limit: int = 10) -> list[dict[str, Any]]:
    jobs = session.scalars(select(ImportJob).order_by(ImportJob.id.desc()).limit(limit))
    return [job_summary(j) for j in jobs]


def job_or_404(session: Session, job_id: int) -> ImportJob:
    job = session.get(ImportJob, job_id)
    if job is None:
        raise HTTPException(404, f"no import job {job_id}")
    return job


def upload_suffix(name: str) -> str:
    """The table format's suffix of an uploaded file's name; 422 for any other file."""
    suffix = next((s for s in UPLOAD_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        raise HTTPException(422, f"{name}: use a .parquet, .csv, .tsv, .fits or .vot file")
    return suffix


async def save_upload(form: Any) -> tuple[Path, str]:
    """The ``file`` field of a posted form, saved in a new temporary folder; (path, name)."""
    upload = form.get("file")
    if upload is None or not getattr(upload, "filename", ""):
        raise HTTPException(422, "choose a predictions file to upload")
    name = Path(str(upload.filename)).name
    suffix = upload_suffix(name)
    folder = upload_folder()
    path = folder / f"upload{suffix}"
    try:
        with path.open("wb") as handle:
            while chunk := await upload.read(1 << 20):
                await run_in_threadpool(handle.write, chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path, name


async def start_import(request: Request, current: Auth, form: Any) -> int:
    """Save the form's upload and queue its import; the job id."""
    path, name = await save_upload(form)
    jobs: ImportJobs = request.app.state.jobs
    return await run_in_threadpool(jobs.submit, path, name=name, user_id=current.user.id)


async def finished_job(request: Request, job_id: int, wait_s: float) -> ImportJob | None:
    """The job's row once it has ended, or None when it is still running after ``wait_s``."""
    if not await request.app.state.jobs.wait(job_id, wait_s):
        return None
    with request.app.state.db.session() as session:
        return session.get(ImportJob, job_id)


@router.get("/api/catalogues")
def list_catalogues(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """The loaded predictions files and catalogues (``status`` importing or ready)."""
    return {"catalogues": all_catalogues(session, current.user)}


@router.post("/api/catalogues", status_code=201)
async def upload_catalogue(
    request: Request,
    current: WriteAuth,
    wait: Annotated[float, Query(ge=0, le=60)] = UPLOAD_WAIT_S,
) -> Response:
    """Load a predictions file (multipart field ``file``) as a new catalogue, in the
    background: 201 with its id when the import ends within ``wait`` seconds (422 when it
    fails), else 202 with the job to follow at ``/api/imports/{job}``."""
    form = await request.form(max_files=1)
    try:
        job_id = await start_import(request, current, form)
    finally:
        await form.close()
    job = await finished_job(request, job_id, wait)
    if job is None:
        return JSONResponse(
            {"job": job_id, "status": "running", "url": f"/api/imports/{job_id}"}, status_code=202
        )
    if job.status == "failed":
        raise HTTPException(422, job.error)
    return JSONResponse({"id": job.catalogue_id, "job": job_id}, status_code=201)


@router.get("/api/imports")
def list_imports(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """The latest catalogue imports, newest first, with their state and progress."""
    return {"imports": recent_jobs(session, limit=50)}


@router.get("/api/imports/{job_id}")
def get_import(job_id: Id, session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """One import: ``status`` (queued, running, done, failed), rows done of rows in the file."""
    return job_summary(job_or_404(session, job_id))


@router.delete("/api/catalogues/{catalogue_id}")
def delete_catalogue(catalogue_id: Id, request: Request, current: AdminWriteAuth) -> dict[str, Any]:
    """Delete a catalogue with its rows and verdicts (admins only)."""
    if not importing.delete_catalogue(request.app.state.db, catalogue_id):
        raise HTTPException(404, f"no catalogue with id {catalogue_id}")
    return {"deleted": catalogue_id}


@router.get("/api/catalogues/{catalogue_id}/queue")
def get_vet_queue(
    catalogue_id: Id,
    session: DbSession,
    current: CurrentAuth,
    order: str = "probability",
    classes: Annotated[str, Query(max_length=200)] = ",".join(store.CANDIDATE_CLASSES),
    all_rows: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    exclude: Annotated[str, Query(max_length=20000)] = "",
    seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = 0,
) -> dict[str, Any]:
    """Candidates to vet next (ids) and how many remain; ``order=sample`` is a stratified
    random sample drawn with ``seed``."""
    catalogue_or_404(session, catalogue_id)
    skip = parse_ids(exclude)
    wanted = [c for c in classes.split(",") if c.strip()] or None
    with store_errors():
        if order == "similarity":
            ensure_order(session, catalogue_id)
        ids, remaining = store.vet_queue(
            session,
            user=current.user,
            catalogue_id=catalogue_id,
            order=order,
            classes=wanted,
            unvetted_only=not all_rows,
            limit=limit,
            exclude=skip,
            seed=seed,
        )
    return {"order": order, "ids": ids, "remaining": remaining}


@router.get("/api/predictions/{prediction_id}")
def get_prediction(
    prediction_id: Id, request: Request, session: DbSession, current: CurrentAuth
) -> dict[str, Any]:
    """A candidate: its table row, verdicts and (when stored) its spectrum's arrays."""
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        raise HTTPException(404, f"no candidate with id {prediction_id}")
    payload = store.prediction_payload(session, prediction, user=current.user)
    payload["measurement"] = store.measurement_of(prediction.row)
    spectrum = session.get(SpectrumRow, prediction.spectrum_id) if prediction.spectrum_id else None
    payload["spectrum"] = (
        store.spectrum_payload(spectrum, config=request.app.state.config) if spectrum else None
    )
    return payload


@router.post("/api/vet", status_code=201)
def post_verdict(body: VerdictIn, session: DbSession, current: WriteAuth) -> dict[str, Any]:
    """Record a vetting verdict (a new row; earlier ones are kept)."""
    with store_errors():
        decision = store.record_verdict(
            session, user=current.user, prediction_id=body.prediction_id, verdict=body.verdict
        )
    session.commit()
    return {
        "decision_id": decision.id,
        "prediction_id": decision.prediction_id,
        "verdict": decision.verdict,
    }


@router.post("/api/vet/undo", status_code=201)
def post_vet_undo(body: UndoIn, session: DbSession, current: WriteAuth) -> dict[str, Any]:
    """Undo one's latest verdict on a candidate."""
    with store_errors(conflict=True):
        decision = store.undo_verdict(session, user=current.user, decision_id=body.decision_id)
    session.commit()
    return {
        "decision_id": decision.id,
        "prediction_id": decision.prediction_id,
        "verdict": decision.verdict,
        "undo_of": decision.undo_of,
    }


@router.post("/api/vet/bulk", status_code=201)
def post_bulk_verdicts(
    body: BulkVerdictIn, session: DbSession, current: WriteAuth
) -> dict[str, Any]:
    """One verdict on up to `store.MAX_BULK` candidates in one transaction: all are stored,
    or none (404 naming the unknown ids)."""
    with store_errors():
        decisions = store.record_verdicts(
            session, user=current.user, prediction_ids=body.prediction_ids, verdict=body.verdict
        )
    session.commit()
    return {
        "stored": len(decisions),
        "verdict": decisions[0].verdict,
        "decision_ids": [d.id for d in decisions],
    }


@router.post("/api/vet/bulk/undo", status_code=201)
def post_bulk_undo(body: BulkUndoIn, session: DbSession, current: WriteAuth) -> dict[str, Any]:
    """Undo many of one's latest verdicts in one transaction (all or none: 409 when one is
    not the latest on its candidate)."""
    with store_errors(conflict=True):
        restored = store.undo_verdicts(session, user=current.user, decision_ids=body.decision_ids)
    session.commit()
    return {"undone": len(restored), "decision_ids": [d.id for d in restored]}


@router.get("/api/catalogues/{catalogue_id}/precision")
def get_precision(catalogue_id: Id, session: DbSession, current: CurrentAuth) -> dict[str, Any]:
    """The catalogue's precision measured from its verdicts, per class and probability bin
    (`spectraldl.web.precision`)."""
    catalogue_or_404(session, catalogue_id)
    return precision.catalogue_precision(session, catalogue_id)


def vetted_file(frame: Any, format: str) -> tuple[bytes, str, str]:
    """The vetted table as (bytes, media type, suffix). CSV cells a spreadsheet would run as
    formulas get a leading ``'`` (`store.csv_safe`); FITS and VOTable keep every value."""
    if format == "csv":
        from pandas.api.types import is_numeric_dtype

        text_columns = [c for c in frame.columns if not is_numeric_dtype(frame[c])]
        safe = frame.assign(**{c: frame[c].map(store.csv_safe) for c in text_columns})
        return safe.to_csv(index=False).encode(), "text/csv", "csv"
    if format not in ("fits", "votable"):
        raise HTTPException(422, "format must be csv, fits or votable")
    from astropy.table import Table

    table = Table.from_pandas(
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
    )
    buffer = io.BytesIO()
    table.write(buffer, format=format)
    if format == "fits":
        return buffer.getvalue(), "application/fits", "fits"
    return buffer.getvalue(), "application/x-votable+xml", "vot"


@router.get("/api/catalogues/{catalogue_id}/vetted")
def export_vetted(
    catalogue_id: Id, session: DbSession, current: CurrentAuth, format: str = "csv"
) -> Response:
    """The catalogue with the vetting result columns, as CSV, FITS or VOTable."""
    catalogue = catalogue_or_404(session, catalogue_id)
    body, media, suffix = vetted_file(store.vetted_frame(session, catalogue_id), format)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(catalogue.name).stem)
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{stem}-vetted.{suffix}"'},
    )


# --- pages ----------------------------------------------------------------------------------


PLOT_SIZE, PLOT_MARGIN = 200, 28
"""The calibration plot's drawing area and margin (SVG pixels)."""

CLASS_COLOURS = {"emission": "#c0392b", "double-peak": "#2471a3"}


def calibration_points(bins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The vetted bins of a precision table as points of the calibration plot (SVG
    coordinates): x the bin's middle probability, y the vetted precision, with its
    Wilson interval as an error bar."""

    def to_x(p: float) -> float:
        return round(PLOT_MARGIN + PLOT_SIZE * p, 1)

    def to_y(p: float) -> float:
        return round(PLOT_MARGIN + PLOT_SIZE * (1 - p), 1)

    return [
        {
            "class": b["class"],
            "colour": CLASS_COLOURS.get(b["class"], "#555"),
            "x": to_x((b["p_min"] + b["p_max"]) / 2),
            "y": to_y(b["precision"]),
            "y_low": to_y(b["interval"][0]),
            "y_high": to_y(b["interval"][1]),
            "label": f"{b['class']} p {b['p_min']:.1f}-{b['p_max']:.1f}: "
            f"{b['confirmed']} of {b['vetted']} confirmed",
        }
        for b in bins
        if b["vetted"]
    ]


def vet_index_page(
    request: Request, session: Session, current: Auth, status: int = 200, error: str = ""
) -> Response:
    catalogues = all_catalogues(session, current.user)
    for summary in catalogues:
        if summary["status"] == "ready":
            table = precision.catalogue_precision(session, summary["id"])
            summary["precision"] = table
            summary["calibration"] = calibration_points(table["bins"])
    return render(
        request,
        "vet_index.html",
        current,
        status,
        catalogues=catalogues,
        jobs=recent_jobs(session),
        error=error,
        plot={"size": PLOT_SIZE, "margin": PLOT_MARGIN, "colours": CLASS_COLOURS},
    )


@router.get("/vet", response_class=HTMLResponse)
def vet_index(request: Request, session: DbSession, current: CurrentAuth) -> Response:
    return vet_index_page(request, session, current)


@router.post("/vet/upload")
async def vet_upload(request: Request, session: DbSession, current: CurrentAuth) -> Response:
    form = await form_with_csrf(request, current, max_files=1)
    try:
        job_id = await start_import(request, current, form)
    finally:
        await form.close()
    job = await finished_job(request, job_id, UPLOAD_WAIT_S)
    if job is None:
        return RedirectResponse(f"/vet/imports/{job_id}", status_code=303)
    if job.status == "failed":
        return await run_in_threadpool(vet_index_page, request, session, current, 422, job.error)
    return RedirectResponse(f"/vet/{job.catalogue_id}", status_code=303)


@router.get("/vet/imports/{job_id}", response_class=HTMLResponse)
def import_page(job_id: Id, request: Request, session: DbSession, current: CurrentAuth) -> Response:
    return render(request, "import.html", current, job=job_summary(job_or_404(session, job_id)))


@router.post("/vet/{catalogue_id}/delete")
async def vet_delete(catalogue_id: Id, request: Request, current: AdminAuth) -> Response:
    await form_with_csrf(request, current)
    if not await run_in_threadpool(importing.delete_catalogue, request.app.state.db, catalogue_id):
        raise HTTPException(404, f"no catalogue with id {catalogue_id}")
    return RedirectResponse("/vet", status_code=303)


@router.get("/vet/{catalogue_id}", response_class=HTMLResponse)
def vet_page(
    catalogue_id: Id,
    request: Request,
    session: DbSession,
    current: CurrentAuth,
    order: str = "probability",
    classes: Annotated[str, Query(max_length=200)] = ",".join(store.CANDIDATE_CLASSES),
) -> Response:
    catalogue = catalogue_or_404(session, catalogue_id)
    if order not in store.VET_ORDERS:
        raise HTTPException(404, f"no order {order!r}")
    n_spectra = session.scalar(
        select(func.count(Prediction.id)).where(
            Prediction.catalogue_id == catalogue_id, Prediction.spectrum_id.is_not(None)
        )
    )
    return render(
        request,
        "vet.html",
        current,
        catalogue=catalogue,
        order=order,
        classes=classes,
        candidate_classes=",".join(store.CANDIDATE_CLASSES),
        orders=store.VET_ORDERS,
        verdict_keys=VERDICT_KEYS,
        verdicts=VERDICTS,
        n_spectra=n_spectra or 0,
    )
