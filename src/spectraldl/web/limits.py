"""Request-body limits, checked before any body is read.

A pure ASGI middleware in front of the app: a body larger than its cap is
answered 413 at once (from ``Content-Length``, or as soon as a streamed body
passes the cap), and a write to anything but the login endpoints without a
valid session is answered 401 before its body is read, so an anonymous
client cannot make the server read, buffer or parse anything large.
JSON and forms get ``body_bytes``; catalogue uploads, for logged-in users
only, get ``upload_bytes``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from spectraldl.web import auth
from spectraldl.web.db import Database
from spectraldl.web.deps import SESSION_COOKIE

BODY_BYTES = 2 * 1024 * 1024
"""Default cap of a JSON or form body (2 MiB)."""

UPLOAD_BYTES = 512 * 1024 * 1024
"""Default cap of a catalogue upload (512 MiB), logged-in users only."""

UPLOAD_PATHS = frozenset({"/api/catalogues", "/vet/upload"})
"""Where catalogue files are uploaded."""

OPEN_PATHS = frozenset({"/login", "/api/login"})
"""Writes that need no session."""

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class BodyLimits:
    """The caps, in bytes."""

    body_bytes: int = BODY_BYTES
    upload_bytes: int = UPLOAD_BYTES


def too_large_detail(cap: int) -> str:
    """The 413 answer's text."""
    return f"request body too large (the limit here is {cap // (1024 * 1024)} MiB)"


class BodyTooLarge(HTTPException):
    """A streamed body passed its cap (an HTTP 413, answered by the app's error handler)."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, too_large_detail(cap))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _session_token(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel else None


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None (absent or not a number)."""
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def answer(send: Send, status: int, detail: str, *, retry_after: int | None = None) -> None:
    """Answer ``{"detail": ...}`` with ``status`` (and ``Retry-After``), closing the connection."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuses large or anonymous bodies before the app reads them (see the module)."""

    def __init__(self, app: App, *, db: Database, limits: BodyLimits) -> None:
        self.app = app
        self.db = db
        self.limits = limits

    def _has_session(self, token: str | None) -> bool:
        with self.db.session() as session:
            return auth.find_session(session, token) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        upload = path in UPLOAD_PATHS
        declared = declared_length(scope)
        most = self.limits.upload_bytes if upload else self.limits.body_bytes
        if declared is not None and declared > most:
            await answer(send, 413, too_large_detail(most))
            return
        cap = self.limits.body_bytes
        if scope.get("method") not in ("GET", "HEAD", "OPTIONS") and path not in OPEN_PATHS:
            if not await run_in_threadpool(self._has_session, _session_token(scope)):
                await answer(send, 401, "login required")
                return
            cap = most
        if declared is not None and declared > cap:
            await answer(send, 413, too_large_detail(cap))
            return
        await self._guarded(scope, receive, send, cap)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        """Run the app with a ``receive`` that stops a body passing ``cap``."""
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge(cap)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await answer(send, 413, too_large_detail(cap))
