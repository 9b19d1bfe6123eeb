"""The FastAPI application: server-rendered pages, a JSON API, static files.

Pages (Jinja2, autoescaped) carry the CSRF token; the small scripts in
``static/`` draw the spectra on canvases and talk to the JSON API. Every
write needs a logged-in user and the session's CSRF token (a form field or
the ``X-CSRF-Token`` header); user management and deleting catalogues need
an admin. Request bodies are capped and anonymous writes refused before
their bodies are read (`spectraldl.web.limits`), bodies must arrive in time
(`spectraldl.web.bodies`); catalogue uploads are
imported in the background (`spectraldl.web.jobs`). No file is loaded from
another site: the app works offline. The routes live in
`spectraldl.web.routes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from spectraldl import __version__
from spectraldl.io.labels import CLASSES
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.web import auth
from spectraldl.web.bodies import BODY_TIMEOUT_S, BodyDeadline
from spectraldl.web.db import Database, open_database, pool_capacity
from spectraldl.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    refuse_nul_text,
)
from spectraldl.web.gate import LOGIN_SLOTS, RESERVED_CONNECTIONS, RequestGate
from spectraldl.web.jobs import ImportJobs
from spectraldl.web.limits import BodyLimitMiddleware, BodyLimits
from spectraldl.web.routes import grid, labelling, notes, session, users, vetting

__all__ = ["LOGIN_CSRF_COOKIE", "SESSION_COOKIE", "create_app"]

PACKAGE_DIR = Path(__file__).parent

LABEL_KEYS: dict[str, str] = {
    "emission": "e",
    "absorption": "a",
    "unknown": "u",
    "double-peak": "d",
    "noise": "n",
}
"""Keyboard key of each class on the labelling page (digits 1-5 work too, in `CLASSES` order)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_page(request: Request, status: int, detail: Any, headers: Any = None) -> Response:
    """An error as JSON for the API, as a page for people."""
    if is_api(request):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    templates = request.app.state.templates
    context = {"status": status, "detail": detail, "user": None, "csrf_token": ""}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=status, headers=headers
    )


async def login_required(request: Request, exc: Exception) -> Response:
    if is_api(request) or request.method != "GET":
        return JSONResponse({"detail": "login required"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error_page(request, exc.status_code, exc.detail, exc.headers)


async def invalid_request(request: Request, exc: Exception) -> Response:
    """422 with what was wrong: JSON for the API, an error page for a page's bad URL."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    if is_api(request):
        return JSONResponse({"detail": errors}, status_code=422)
    text = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in errors)
    return error_page(request, 422, f"bad request: {text}")


class SecurityHeaders:
    """Adds the security headers to every response (a plain ASGI middleware: it leaves the
    request's body stream alone, so the body limits' 413 reaches the app's handlers)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not cacheable:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    found.env.globals.update(version=__version__, classes=CLASSES, label_keys=LABEL_KEYS)
    return found


def create_app(
    database: Database | str | None = None,
    *,
    config: PreprocessConfig | None = None,
    secure_cookies: bool = False,
    limits: BodyLimits | None = None,
    throttle: auth.LoginThrottle | None = None,
    body_timeout_s: float = BODY_TIMEOUT_S,
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
    limits
        Request-body caps (`BodyLimits`: 2 MiB for JSON and forms, 512 MiB uploads).
    throttle
        The login throttle (`auth.LoginThrottle` with its defaults).
    body_timeout_s
        Seconds a client has to send a request body (`spectraldl.web.bodies`).
    """
    db = database if isinstance(database, Database) else open_database(database)
    jobs = ImportJobs(db)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.recover()
        yield
        jobs.close()

    app = FastAPI(
        title="spectraldl",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served to logged-in users only, by routes.session
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_text)],
    )
    app.state.db = db
    app.state.config = config or PreprocessConfig()
    app.state.secure_cookies = secure_cookies
    app.state.throttle = throttle or auth.LoginThrottle()
    app.state.templates = templates()
    app.state.jobs = jobs
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")
    # The last added runs first: headers on every answer, then the body deadlines (a login's
    # body read whole), then the slots, then the body caps and the session check.
    app.add_middleware(BodyLimitMiddleware, db=db, limits=limits or BodyLimits())
    slots = pool_capacity(db) - RESERVED_CONNECTIONS - LOGIN_SLOTS
    app.add_middleware(RequestGate, slots=slots, login_slots=LOGIN_SLOTS)
    app.add_middleware(BodyDeadline, timeout_s=body_timeout_s)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for module in (session, labelling, vetting, grid, notes, users):
        app.include_router(module.router)
    return app
