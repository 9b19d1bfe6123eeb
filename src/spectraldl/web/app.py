"""The FastAPI application: server-rendered pages, a JSON API, static files.

Pages (Jinja2, autoescaped) carry the CSRF token; the small scripts in
``static/`` draw the spectra on canvases and talk to the JSON API. Every
write needs a logged-in user and the session's CSRF token (a form field or
the ``X-CSRF-Token`` header); user management needs an admin. No file is
loaded from another site: the app works offline.
"""

from __future__ import annotations

import io
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from spectraldl import __version__
from spectraldl.labels import CLASSES
from spectraldl.preprocess import PreprocessConfig
from spectraldl.web import auth, store
from spectraldl.web.db import Database, open_database
from spectraldl.web.models import VERDICTS, Catalogue, LoginSession, Prediction, SpectrumRow, User

PACKAGE_DIR = Path(__file__).parent
SESSION_COOKIE = "spectraldl_session"
LOGIN_CSRF_COOKIE = "spectraldl_login_csrf"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024

LABEL_KEYS: dict[str, str] = {
    "emission": "e",
    "absorption": "a",
    "unknown": "u",
    "double-peak": "d",
    "noise": "n",
}
"""Keyboard key of each class on the labelling page (digits 1-5 work too, in `CLASSES` order)."""

VERDICT_KEYS: dict[str, str] = {"confirm": "c", "reject": "r", "noise": "n"}
"""Keyboard key of each verdict on the vetting page (digits 1-3 too)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class LoginRequired(Exception):
    """Raised by dependencies when a request needs a logged-in user."""


@dataclass
class Auth:
    """The logged-in user of a request and their session."""

    user: User
    login: LoginSession

    @property
    def csrf_token(self) -> str:
        """The session's CSRF token."""
        return self.login.csrf_token


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request."""
    database: Database = request.app.state.db
    with database.session() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def optional_auth(request: Request, session: DbSession) -> Auth | None:
    """The request's login, if its cookie names a valid session."""
    found = auth.find_session(session, request.cookies.get(SESSION_COOKIE))
    return None if found is None else Auth(user=found[0], login=found[1])


def require_auth(current: Annotated[Auth | None, Depends(optional_auth)]) -> Auth:
    """The request's login; `LoginRequired` (401 or a redirect to the login page) without one."""
    if current is None:
        raise LoginRequired()
    return current


CurrentAuth = Annotated[Auth, Depends(require_auth)]


def require_csrf_header(request: Request, current: CurrentAuth) -> Auth:
    """A logged-in user whose request carries the session's CSRF token in ``X-CSRF-Token``."""
    if not auth.tokens_match(current.csrf_token, request.headers.get("x-csrf-token")):
        raise HTTPException(403, "missing or wrong CSRF token (send it in X-CSRF-Token)")
    return current


WriteAuth = Annotated[Auth, Depends(require_csrf_header)]


def require_admin(current: CurrentAuth) -> Auth:
    """A logged-in admin (403 for other users)."""
    if not current.user.is_admin:
        raise HTTPException(403, "only admins may manage users")
    return current


AdminAuth = Annotated[Auth, Depends(require_admin)]


async def form_with_csrf(request: Request, current: Auth) -> Any:
    """The posted form, after checking its ``csrf_token`` field against the session."""
    form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
    if not auth.tokens_match(current.csrf_token, form.get("csrf_token")):  # type: ignore[arg-type]
        await form.close()
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    return form


@contextmanager
def store_errors(*, conflict: bool = False) -> Iterator[None]:
    """Turn the store's errors into HTTP ones: 404 for an unknown id, 422 (409 with
    ``conflict``) for a decision or request the store refuses."""
    try:
        yield
    except store.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except store.DecisionError as exc:
        raise HTTPException(409 if conflict else 422, str(exc)) from None


def parse_ids(text: str) -> list[int]:
    """The ids of a comma-separated ``exclude`` parameter; 422 for anything else."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HTTPException(422, "exclude must be comma-separated integers") from None


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/label"
    return target


# --- request bodies -------------------------------------------------------------------------


class LoginIn(BaseModel):
    """Credentials for ``POST /api/login``."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class LabelIn(BaseModel):
    """A labelling decision: a class name (or thesis integer), or null to withdraw."""

    spectrum_id: int
    label: str | None = Field(default=None, max_length=32)


class UndoIn(BaseModel):
    """The decision to undo."""

    decision_id: int


class VerdictIn(BaseModel):
    """A vetting verdict: confirm, reject, noise, or null to withdraw."""

    prediction_id: int
    verdict: str | None = Field(default=None, max_length=16)


class UserIn(BaseModel):
    """A new user (admins only)."""

    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    admin: bool = False


def create_app(
    database: Database | str | None = None,
    *,
    config: PreprocessConfig | None = None,
    secure_cookies: bool = False,
) -> FastAPI:
    """Build the web app on ``database`` (an open `Database`, a URL, or None for the default).

    Parameters
    ----------
    database
        Opened (and migrated) with `open_database` when given as a URL or None.
    config
        Preprocessing whose blur the H-alpha zoom view shows.
    secure_cookies
        Mark cookies ``Secure`` (serve over HTTPS, e.g. behind a proxy).
    """
    db = database if isinstance(database, Database) else open_database(database)
    app = FastAPI(
        title="spectraldl",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.db = db
    app.state.config = config or PreprocessConfig()
    app.state.secure_cookies = secure_cookies
    throttle = auth.LoginThrottle()

    def check_login(session: Session, request: Request, name: str, password: str) -> User | None:
        """`auth.authenticate` behind the throttle: 429 while a name or address is locked."""
        address = request.client.host if request.client else "unknown"
        wait = throttle.attempt(name, address)
        if wait > 0:
            minutes = max(1, round(wait / 60))
            raise HTTPException(
                429,
                f"too many failed logins for this user or address; try again in {minutes} min",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        user = auth.authenticate(session, name, password)
        if user is not None:
            throttle.succeeded(name, address)
        return user

    templates = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    templates.env.globals.update(version=__version__, classes=CLASSES, label_keys=LABEL_KEYS)
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def page(
        request: Request, name: str, current: Auth | None, status: int = 200, **context: Any
    ) -> Response:
        context.update(
            user=current.user if current else None,
            csrf_token=current.csrf_token if current else "",
        )
        return templates.TemplateResponse(request, name, context, status_code=status)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if is_api(request) or request.method != "GET":
            return JSONResponse({"detail": "login required"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_api(request):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status_code, "detail": exc.detail, "user": None, "csrf_token": ""},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    def set_session_cookie(response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(auth.SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=app.state.secure_cookies,
            path="/",
        )

    # --- health and login -------------------------------------------------------------------

    @app.get("/api/health")
    def health(session: DbSession) -> dict[str, Any]:
        """Liveness and database check (no login needed)."""
        session.execute(select(1))
        return {"status": "ok", "version": __version__, "database": db.dialect}

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/label", error: str = "") -> Response:
        token = secrets.token_urlsafe(32)
        response = page(
            request, "login.html", None, next=safe_next(next), error=error, login_csrf=token
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=app.state.secure_cookies,
            path="/login",
        )
        return response

    @app.post("/login")
    async def login_submit(request: Request, session: DbSession) -> Response:
        form = await request.form()
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        target = safe_next(str(form.get("next") or "/label"))
        if not cookie or not auth.tokens_match(cookie, str(form.get("csrf_token") or "")):
            raise HTTPException(403, "missing or wrong CSRF token; reload the login page")
        user = await run_in_threadpool(  # argon2 takes tens of ms: not on the event loop
            check_login,
            session,
            request,
            str(form.get("username") or "")[:64],
            str(form.get("password") or "")[:1024],
        )
        if user is None:
            session.commit()
            return RedirectResponse(
                f"/login?next={quote(target, safe='')}&error=1", status_code=303
            )
        token, _ = auth.start_session(session, user)
        session.commit()
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(response, token)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout")
    async def logout_submit(request: Request, session: DbSession, current: CurrentAuth) -> Response:
        await form_with_csrf(request, current)
        auth.end_session(session, request.cookies.get(SESSION_COOKIE))
        session.commit()
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.post("/api/login")
    def api_login(body: LoginIn, request: Request, session: DbSession) -> Response:
        """Log in from a script: sets the session cookie and returns the CSRF token."""
        if "application/json" not in request.headers.get("content-type", ""):
            raise HTTPException(415, "send the credentials as application/json")
        user = check_login(session, request, body.username, body.password)
        if user is None:
            session.commit()
            raise HTTPException(401, "wrong user name or password")
        token, login = auth.start_session(session, user)
        session.commit()
        response = JSONResponse(
            {"user": user.name, "is_admin": user.is_admin, "csrf_token": login.csrf_token}
        )
        set_session_cookie(response, token)
        return response

    @app.post("/api/logout")
    def api_logout(request: Request, session: DbSession, current: WriteAuth) -> dict[str, str]:
        """End this session."""
        auth.end_session(session, request.cookies.get(SESSION_COOKIE))
        session.commit()
        return {"status": "logged out"}

    @app.get("/api/me")
    def me(current: CurrentAuth) -> dict[str, Any]:
        """Who is logged in, and the CSRF token for writes."""
        return {
            "user": current.user.name,
            "is_admin": current.user.is_admin,
            "csrf_token": current.csrf_token,
        }

    # --- spectra and labels -----------------------------------------------------------------

    def spectrum_or_404(session: Session, spectrum_id: int) -> SpectrumRow:
        row = session.get(SpectrumRow, spectrum_id)
        if row is None:
            raise HTTPException(404, f"no spectrum with id {spectrum_id}")
        return row

    @app.get("/api/spectra")
    def list_spectra(
        session: DbSession,
        current: CurrentAuth,
        q: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Spectra whose object or id contains ``q``."""
        rows, total = store.search_spectra(session, text=q, limit=limit, offset=offset)
        return {"total": total, "spectra": [store.spectrum_summary(r) for r in rows]}

    @app.get("/api/spectra/{spectrum_id}")
    def get_spectrum(spectrum_id: int, session: DbSession, current: CurrentAuth) -> dict[str, Any]:
        """A spectrum with its arrays for the three views, and the labels given to it."""
        row = spectrum_or_404(session, spectrum_id)
        payload = store.spectrum_payload(row, config=app.state.config)
        votes = store.labels_by_spectrum(session, spectrum_ids=[row.id]).get(row.id, {})
        payload["labels"] = {
            "mine": votes.get(current.user.name),
            "votes": votes,
            "consensus": store.consensus(votes.values()),
        }
        # The annotated return type lets pydantic serialise the long arrays quickly
        # (an unannotated dict goes through FastAPI's per-element encoder, 3-4 times slower).
        return payload

    @app.get("/api/spectra/{spectrum_id}/history")
    def spectrum_history(
        spectrum_id: int, session: DbSession, current: CurrentAuth
    ) -> dict[str, Any]:
        """Every labelling decision on a spectrum, oldest first."""
        spectrum_or_404(session, spectrum_id)
        return {"spectrum_id": spectrum_id, "decisions": store.label_history(session, spectrum_id)}

    @app.get("/api/queue")
    def get_queue(
        session: DbSession,
        current: CurrentAuth,
        mode: str = "mine",
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
        exclude: Annotated[str, Query(max_length=20000)] = "",
    ) -> dict[str, Any]:
        """The next spectra to label (ids) and how many remain."""
        skip = parse_ids(exclude)
        with store_errors():
            ids, remaining = store.queue(
                session, user=current.user, mode=mode, limit=limit, exclude=skip
            )
        return {"mode": mode, "ids": ids, "remaining": remaining}

    @app.get("/api/progress")
    def get_progress(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
        """The labeller's counts and pace."""
        return store.progress(session, user=current.user)

    @app.post("/api/labels", status_code=201)
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

    @app.post("/api/labels/undo", status_code=201)
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

    @app.get("/api/labels.csv")
    def labels_csv(
        session: DbSession,
        current: CurrentAuth,
        policy: str = "majority",
        user: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """The current labels as ``id,label`` CSV (``spectraldl ingest --labels`` reads it)."""
        with store_errors():
            rows = store.export_labels(session, policy=policy, user=user)  # type: ignore[arg-type]
        return Response(
            store.labels_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
        )

    @app.get("/api/disagreements")
    def get_disagreements(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
        """Spectra whose labellers disagree, with everyone's label."""
        items = store.disagreements(session)
        return {
            "disagreements": [
                {
                    "spectrum_id": d.spectrum_id,
                    "ident": d.ident,
                    "object": d.object,
                    "votes": d.votes,
                    "consensus": d.consensus,
                }
                for d in items
            ]
        }

    # --- catalogues and vetting -------------------------------------------------------------

    def catalogue_or_404(session: Session, catalogue_id: int) -> Catalogue:
        catalogue = session.get(Catalogue, catalogue_id)
        if catalogue is None:
            raise HTTPException(404, f"no catalogue with id {catalogue_id}")
        return catalogue

    def catalogue_summary(session: Session, catalogue: Catalogue, user: User) -> dict[str, Any]:
        return {
            "id": catalogue.id,
            "name": catalogue.name,
            "source": catalogue.source,
            "classes": catalogue.classes,
            "model_id": catalogue.model_id,
            "n_rows": catalogue.n_rows,
            "created_at": catalogue.created_at.isoformat(),
            "progress": store.vet_progress(session, user=user, catalogue_id=catalogue.id),
        }

    @app.get("/api/catalogues")
    def list_catalogues(session: DbSession, current: CurrentAuth) -> dict[str, Any]:
        """The loaded predictions files and catalogues."""
        catalogues = session.scalars(select(Catalogue).order_by(Catalogue.id.desc()))
        return {"catalogues": [catalogue_summary(session, c, current.user) for c in catalogues]}

    async def load_upload(current: Auth, form: Any) -> int:
        """Import the ``file`` field of a posted form as a catalogue; returns its id."""
        upload = form.get("file")
        if upload is None or not getattr(upload, "filename", ""):
            raise HTTPException(422, "choose a predictions file to upload")
        name = Path(str(upload.filename)).name
        lower = name.lower()
        suffix = next(
            (
                s
                for s in (".parquet", ".csv", ".tsv", ".fits", ".fit", ".vot", ".xml")
                if lower.endswith(s)
            ),
            None,
        )
        if suffix is None:
            raise HTTPException(422, f"{name}: use a .parquet, .csv, .tsv, .fits or .vot file")
        from spectraldl.web.importing import ImportFailed, import_predictions

        with tempfile.TemporaryDirectory(prefix="spectraldl-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            with path.open("wb") as handle:
                while chunk := await upload.read(1 << 20):
                    handle.write(chunk)
            try:
                summary = import_predictions(db, path, name=name, created_by=current.user.id)
            except ImportFailed as exc:
                raise HTTPException(422, str(exc).replace(str(path), name)) from None
        return summary.catalogues[0][0]

    @app.post("/api/catalogues", status_code=201)
    async def upload_catalogue(request: Request, current: WriteAuth) -> dict[str, Any]:
        """Load a predictions file (multipart field ``file``) as a new catalogue."""
        form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
        try:
            catalogue_id = await load_upload(current, form)
        finally:
            await form.close()
        return {"id": catalogue_id}

    @app.get("/api/catalogues/{catalogue_id}/queue")
    def get_vet_queue(
        catalogue_id: int,
        session: DbSession,
        current: CurrentAuth,
        order: str = "probability",
        classes: Annotated[str, Query(max_length=200)] = ",".join(store.CANDIDATE_CLASSES),
        all_rows: bool = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
        exclude: Annotated[str, Query(max_length=20000)] = "",
    ) -> dict[str, Any]:
        """Candidates to vet next (ids) and how many remain."""
        catalogue_or_404(session, catalogue_id)
        skip = parse_ids(exclude)
        wanted = [c for c in classes.split(",") if c.strip()] or None
        with store_errors():
            ids, remaining = store.vet_queue(
                session,
                user=current.user,
                catalogue_id=catalogue_id,
                order=order,
                classes=wanted,
                unvetted_only=not all_rows,
                limit=limit,
                exclude=skip,
            )
        return {"order": order, "ids": ids, "remaining": remaining}

    @app.get("/api/predictions/{prediction_id}")
    def get_prediction(
        prediction_id: int, session: DbSession, current: CurrentAuth
    ) -> dict[str, Any]:
        """A candidate: its table row, verdicts and (when stored) its spectrum's arrays."""
        prediction = session.get(Prediction, prediction_id)
        if prediction is None:
            raise HTTPException(404, f"no candidate with id {prediction_id}")
        payload = store.prediction_payload(session, prediction, user=current.user)
        spectrum = (
            session.get(SpectrumRow, prediction.spectrum_id) if prediction.spectrum_id else None
        )
        payload["spectrum"] = (
            store.spectrum_payload(spectrum, config=app.state.config) if spectrum else None
        )
        return payload

    @app.post("/api/vet", status_code=201)
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

    @app.post("/api/vet/undo", status_code=201)
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

    @app.get("/api/catalogues/{catalogue_id}/vetted")
    def export_vetted(
        catalogue_id: int, session: DbSession, current: CurrentAuth, format: str = "csv"
    ) -> Response:
        """The catalogue with the vetting result columns, as CSV, FITS or VOTable."""
        catalogue = catalogue_or_404(session, catalogue_id)
        frame = store.vetted_frame(session, catalogue_id)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(catalogue.name).stem)
        if format == "csv":
            body, media, suffix = frame.to_csv(index=False).encode(), "text/csv", "csv"
        elif format in ("fits", "votable"):
            from astropy.table import Table

            table = Table.from_pandas(
                frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
            )
            buffer = io.BytesIO()
            if format == "fits":
                table.write(buffer, format="fits")
                media, suffix = "application/fits", "fits"
            else:
                table.write(buffer, format="votable")
                media, suffix = "application/x-votable+xml", "vot"
            body = buffer.getvalue()
        else:
            raise HTTPException(422, "format must be csv, fits or votable")
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{stem}-vetted.{suffix}"'},
        )

    # --- users ------------------------------------------------------------------------------

    def user_summary(user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "name": user.name,
            "is_admin": user.is_admin,
            "is_active": user.is_active,
            "created_at": user.created_at.isoformat(),
        }

    @app.get("/api/users")
    def list_users(session: DbSession, current: AdminAuth) -> dict[str, Any]:
        """Every user (admins only)."""
        return {"users": [user_summary(u) for u in session.scalars(select(User).order_by(User.id))]}

    @app.post("/api/users", status_code=201)
    def post_user(
        body: UserIn, request: Request, session: DbSession, current: AdminAuth
    ) -> dict[str, Any]:
        """Create a user (admins only, with the CSRF header)."""
        require_csrf_header(request, current)
        try:
            user = auth.add_user(session, body.name, body.password, admin=body.admin)
        except auth.UserError as exc:
            raise HTTPException(422, str(exc)) from None
        session.commit()
        return user_summary(user)

    # --- pages ------------------------------------------------------------------------------

    @app.get("/")
    def index() -> Response:
        return RedirectResponse("/label", status_code=303)

    @app.get("/label", response_class=HTMLResponse)
    def label_page(
        request: Request, session: DbSession, current: CurrentAuth, mode: str = "mine"
    ) -> Response:
        if mode not in store.QUEUE_MODES:
            raise HTTPException(404, f"no queue {mode!r}")
        return page(request, "label.html", current, mode=mode, start=None)

    @app.get("/label/{spectrum_id}", response_class=HTMLResponse)
    def label_one(
        spectrum_id: int, request: Request, session: DbSession, current: CurrentAuth
    ) -> Response:
        spectrum_or_404(session, spectrum_id)
        return page(request, "label.html", current, mode="mine", start=spectrum_id)

    @app.get("/spectra", response_class=HTMLResponse)
    def spectra_page(
        request: Request,
        session: DbSession,
        current: CurrentAuth,
        q: Annotated[str, Query(max_length=200)] = "",
        page_no: Annotated[int, Query(alias="page", ge=1)] = 1,
    ) -> Response:
        per_page = 50
        rows, total = store.search_spectra(
            session, text=q, limit=per_page, offset=(page_no - 1) * per_page
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
        return page(
            request,
            "spectra.html",
            current,
            q=q,
            items=items,
            total=total,
            page_no=page_no,
            pages=max(1, -(-total // per_page)),
        )

    @app.get("/disagreements", response_class=HTMLResponse)
    def disagreements_page(request: Request, session: DbSession, current: CurrentAuth) -> Response:
        return page(request, "disagreements.html", current, items=store.disagreements(session))

    @app.get("/vet", response_class=HTMLResponse)
    def vet_index(request: Request, session: DbSession, current: CurrentAuth) -> Response:
        catalogues = session.scalars(select(Catalogue).order_by(Catalogue.id.desc()))
        return page(
            request,
            "vet_index.html",
            current,
            catalogues=[catalogue_summary(session, c, current.user) for c in catalogues],
        )

    @app.post("/vet/upload")
    async def vet_upload(request: Request, current: CurrentAuth) -> Response:
        form = await form_with_csrf(request, current)
        try:
            catalogue_id = await load_upload(current, form)
        finally:
            await form.close()
        return RedirectResponse(f"/vet/{catalogue_id}", status_code=303)

    @app.get("/vet/{catalogue_id}", response_class=HTMLResponse)
    def vet_page(
        catalogue_id: int,
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
        return page(
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

    @app.get("/admin/users", response_class=HTMLResponse)
    def users_page(
        request: Request, session: DbSession, current: AdminAuth, error: str = ""
    ) -> Response:
        users = list(session.scalars(select(User).order_by(User.id)))
        return page(request, "users.html", current, users=users, error=error)

    @app.post("/admin/users")
    async def users_submit(request: Request, session: DbSession, current: AdminAuth) -> Response:
        form = await form_with_csrf(request, current)
        action = str(form.get("action") or "add")
        try:
            if action == "add":
                auth.add_user(
                    session,
                    str(form.get("name") or ""),
                    str(form.get("password") or ""),
                    admin=form.get("admin") == "on",
                )
            elif action in ("deactivate", "activate", "make-admin", "drop-admin"):
                target = session.get(User, int(str(form.get("user_id") or 0)))
                if target is None:
                    raise auth.UserError("no such user")
                if target.id == current.user.id:
                    raise auth.UserError("you cannot change your own account here")
                if action in ("deactivate", "activate"):
                    target.is_active = action == "activate"
                else:
                    target.is_admin = action == "make-admin"
            else:
                raise auth.UserError(f"unknown action {action!r}")
        except (auth.UserError, ValueError) as exc:
            session.rollback()
            users = list(session.scalars(select(User).order_by(User.id)))
            return page(request, "users.html", current, 422, users=users, error=str(exc))
        session.commit()
        return RedirectResponse("/admin/users", status_code=303)

    return app
