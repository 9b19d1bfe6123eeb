"""Health, login and logout (form and JSON), who is logged in, and the API description."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from spectraldl import __version__
from spectraldl.web import auth
from spectraldl.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentAuth,
    DbSession,
    JsonBody,
    WriteAuth,
    form_with_csrf,
    render,
)
from spectraldl.web.models import User

router = APIRouter()


class LoginIn(JsonBody):
    """Credentials for ``POST /api/login``."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/label"
    return target


def client_address(request: Request) -> str:
    """The client's address: the socket's peer, or what a trusted proxy reported
    (``spectraldl serve --forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


PASSWORD_CHECKS = 2
"""Passwords checked at once: each Argon2 check takes 64 MiB and half a second of a core."""

REFUSED = {
    "pair": "too many failed logins for this user from this address",
    "address": "too many failed logins from this address (whatever the user name)",
}


def password_limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's threads for password checks, apart from the shared thread pool (made on
    first use, in the server's event loop)."""
    state = request.app.state
    if getattr(state, "password_limiter", None) is None:
        state.password_limiter = anyio.CapacityLimiter(PASSWORD_CHECKS)
    return state.password_limiter


async def check_login(session: Session, request: Request, name: str, password: str) -> User | None:
    """`auth.authenticate` behind the throttle: 429 while the pair or address is refused,
    a pause first while the name is slowed; the password is checked off the event loop,
    `PASSWORD_CHECKS` at a time, in threads of its own so that pages never wait behind it."""
    throttle: auth.LoginThrottle = request.app.state.throttle
    address = client_address(request)
    admission = throttle.attempt(name, address)
    if admission.wait_s > 0:
        minutes = max(1, round(admission.wait_s / 60))
        raise HTTPException(
            429,
            f"{REFUSED[admission.refused]}; try again in {minutes} min",
            headers={"Retry-After": str(int(admission.wait_s) + 1)},
        )
    if admission.delay_s > 0:
        await asyncio.sleep(admission.delay_s)
    user = await anyio.to_thread.run_sync(
        auth.authenticate, session, name, password, limiter=password_limiter(request)
    )
    if user is not None:
        throttle.succeeded(name, address)
    return user


def conclude_login(session: Session, user: User | None) -> tuple[str, str] | None:
    """Commit a login attempt: a new session's cookie token and CSRF token, or None for a
    failed one (run off the event loop: a busy database must not stall the server)."""
    if user is None:
        session.commit()
        return None
    token, login = auth.start_session(session, user)
    session.commit()
    return token, login.csrf_token


def end_login(session: Session, token: str | None) -> None:
    """Delete the session of a cookie token and commit."""
    auth.end_session(session, token)
    session.commit()


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """The login cookie: HttpOnly, SameSite=Lax, Secure with ``--secure-cookies``; kept by
    the browser for the longest a login can last (the server ends an unused one sooner)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(auth.SESSION_MAX_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.app.state.secure_cookies,
        path="/",
    )


@router.get("/api/health")
def health(request: Request, session: DbSession) -> dict[str, Any]:
    """Liveness and database check (no login needed)."""
    session.execute(select(1))
    return {"status": "ok", "version": __version__, "database": request.app.state.db.dialect}


@router.get("/api/openapi.json", include_in_schema=False)
def openapi(request: Request, current: CurrentAuth) -> dict[str, Any]:
    """The API's OpenAPI description (logged-in users only)."""
    return request.app.openapi()


def unsaved_count(value: str | None) -> int:
    """A number of things a page lost or kept when its session ended (``unsaved=`` and the
    others of `ENDED_COUNTS` in the login page's address, set by the viewer's script); 0 for
    anything but a small whole number."""
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0


ENDED_COUNTS = ("unsaved", "undone", "drafts")
"""What a page lost or kept when its session ended, counted in the login page's address:
decisions not saved, undos not done (offered again after the login), note drafts kept."""


def ended_query(ended: str | None, counts: dict[str, int]) -> str:
    """The login page's query parameters that keep saying the session ended (empty if not)."""
    if ended != "1":
        return ""
    return "&ended=1" + "".join(
        f"&{name}={counts.get(name, 0)}"
        for name in ENDED_COUNTS
        if name == "unsaved" or counts.get(name)
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    next: str = "/label",
    error: str = "",
    ended: str = "",
    unsaved: str = "",
    undone: str = "",
    drafts: str = "",
) -> Response:
    """The login form; after a session ended under a page, it says how many decisions that
    page could not save and undos it could not do, and that its unsaved notes are kept."""
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        next=safe_next(next),
        error=error,
        login_csrf=token,
        ended=ended == "1",
        unsaved=unsaved_count(unsaved),
        undone=unsaved_count(undone),
        drafts=unsaved_count(drafts),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.secure_cookies,
        path="/login",
    )
    return response


@router.post("/login")
async def login_submit(request: Request, session: DbSession) -> Response:
    form = await request.form(max_files=0)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = safe_next(str(form.get("next") or "/label"))
    if not cookie or not auth.tokens_match(cookie, str(form.get("csrf_token") or "")):
        raise HTTPException(403, "missing or wrong CSRF token; reload the login page")
    name = str(form.get("username") or "")[:64]
    user = await check_login(session, request, name, str(form.get("password") or "")[:1024])
    tokens = await run_in_threadpool(conclude_login, session, user)
    if tokens is None:
        counts = {name: unsaved_count(str(form.get(name))) for name in ENDED_COUNTS}
        ended = ended_query(str(form.get("ended") or ""), counts)
        return RedirectResponse(
            f"/login?next={quote(target, safe='')}&error=1{ended}", status_code=303
        )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, tokens[0])
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout_submit(request: Request, session: DbSession, current: CurrentAuth) -> Response:
    await form_with_csrf(request, current)
    await run_in_threadpool(end_login, session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/api/login")
async def api_login(body: LoginIn, request: Request, session: DbSession) -> Response:
    """Log in from a script: sets the session cookie and returns the CSRF token."""
    if "application/json" not in request.headers.get("content-type", ""):
        raise HTTPException(415, "send the credentials as application/json")
    user = await check_login(session, request, body.username, body.password)
    tokens = await run_in_threadpool(conclude_login, session, user)
    if user is None or tokens is None:
        raise HTTPException(401, "wrong user name or password")
    response = JSONResponse({"user": user.name, "is_admin": user.is_admin, "csrf_token": tokens[1]})
    set_session_cookie(request, response, tokens[0])
    return response


@router.post("/api/logout")
def api_logout(request: Request, session: DbSession, current: WriteAuth) -> dict[str, str]:
    """End this session."""
    end_login(session, request.cookies.get(SESSION_COOKIE))
    return {"status": "logged out"}


@router.get("/api/me")
def me(current: CurrentAuth) -> dict[str, Any]:
    """Who is logged in, and the CSRF token for writes."""
    return {
        "user": current.user.name,
        "is_admin": current.user.is_admin,
        "csrf_token": current.csrf_token,
    }
