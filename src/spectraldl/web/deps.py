"""What the routes share: the request's database session and login, CSRF checks, bounded
integer inputs, text without NUL characters, and turning the store's errors into HTTP ones.

The login dependencies raise `LoginRequired`, which the app answers with 401
(API, writes) or a redirect to the login page (pages).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from spectraldl.web import auth, store
from spectraldl.web.db import Database
from spectraldl.web.models import LoginSession, User

SESSION_COOKIE = "spectraldl_session"
LOGIN_CSRF_COOKIE = "spectraldl_login_csrf"

ID_MAX = 2**31 - 1
"""The largest id any table can hold (PostgreSQL ``integer``); larger ones are refused (422)."""

Id = Annotated[int, Path(ge=1, le=ID_MAX)]
"""A row id in a URL path: 422 unless 1 <= id <= `ID_MAX`."""


class JsonBody(BaseModel):
    """A JSON request body, validated strictly: ``true`` or ``"6"`` is no id (they were
    taken as 1 and 6), ``1`` is no name."""

    model_config = ConfigDict(strict=True)


NUL_REFUSED = "text may not contain NUL characters (U+0000)"

_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
"""A NUL written as JSON writes it (``\\u0000`` after an even run of backslashes)."""


async def refuse_nul_text(request: Request) -> None:
    """400 for a NUL character in the path, the query or a JSON or form body (not in file
    uploads; a GET's body is never read): PostgreSQL cannot store one in text (it answered
    with an error page) and SQLite would keep it in names and notes."""
    if "\x00" in request.url.path or any(
        "\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()
    ):
        raise HTTPException(400, NUL_REFUSED)
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return  # their bodies are never read
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        if _JSON_NUL.search(await request.body()):
            raise HTTPException(400, NUL_REFUSED)
    elif kind == "application/x-www-form-urlencoded":
        form = await request.form()
        if any("\x00" in key or "\x00" in str(value) for key, value in form.multi_items()):
            raise HTTPException(400, NUL_REFUSED)


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


def renew_login(request: Request, login: LoginSession) -> None:
    """Renew a used login (`auth.renew_session`) in a short transaction of its own, so that
    the request's session keeps its objects; a database too busy to take the write leaves
    the login as it was (it stays valid until its expiry, and the next use tries again)."""
    database: Database = request.app.state.db
    with database.session() as session:
        try:
            if auth.renew_session(session, login):
                session.commit()
        except OperationalError:
            session.rollback()


def optional_auth(request: Request, session: DbSession) -> Auth | None:
    """The request's login, if its cookie names a valid session (renewed by this use)."""
    found = auth.find_session(session, request.cookies.get(SESSION_COOKIE))
    if found is None:
        return None
    renew_login(request, found[1])
    return Auth(user=found[0], login=found[1])


OptionalAuth = Annotated[Auth | None, Depends(optional_auth)]


def require_auth(current: OptionalAuth) -> Auth:
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
        raise HTTPException(403, "only admins may do this")
    return current


AdminAuth = Annotated[Auth, Depends(require_admin)]


def require_admin_write(request: Request, current: AdminAuth) -> Auth:
    """A logged-in admin with the CSRF header."""
    return require_csrf_header(request, current)


AdminWriteAuth = Annotated[Auth, Depends(require_admin_write)]


def check_form_csrf(form: Any, current: Auth) -> None:
    """403 unless a parsed form's ``csrf_token`` field is the session's CSRF token."""
    if not auth.tokens_match(current.csrf_token, form.get("csrf_token")):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")


async def form_with_csrf(request: Request, current: Auth, *, max_files: int = 0) -> Any:
    """The posted form (at most ``max_files`` files), after `check_form_csrf`."""
    form = await request.form(max_files=max_files)
    try:
        check_form_csrf(form, current)
    except HTTPException:
        await form.close()
        raise
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
        ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HTTPException(422, "exclude must be comma-separated integers") from None
    if any(not 0 <= i <= ID_MAX for i in ids):
        raise HTTPException(422, f"exclude: ids must be between 0 and {ID_MAX}")
    return ids


def bounded_id(text: str, what: str) -> int:
    """A form field holding a row id; 422 unless it is an integer in 1..`ID_MAX`."""
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(422, f"{what} must be an integer") from None
    if not 1 <= value <= ID_MAX:
        raise HTTPException(422, f"{what} must be between 1 and {ID_MAX}")
    return value


def render(
    request: Request, name: str, current: Auth | None, status: int = 200, **context: Any
) -> Response:
    """A page from the app's templates, with the user and CSRF token every page needs."""
    context.update(
        user=current.user if current else None,
        csrf_token=current.csrf_token if current else "",
    )
    templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)
