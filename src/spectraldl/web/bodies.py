"""Request bodies on a deadline, and login bodies read before the request takes a slot.

uvicorn waits for a request's body as long as the client likes. Sixty anonymous
``POST /api/login`` with ``Content-Length: 1000`` and one byte of body held every
one of the server's request slots (`spectraldl.web.gate`) until they closed: nobody
else was served, and a SIGTERM waited for them. Here

* a login body (the only body an anonymous client may send) is read before the
  request queues for a slot, capped at `LOGIN_BODY_BYTES`, and must be complete within
  ``timeout_s``; the app then gets it from memory;
* any other body must be complete within ``timeout_s`` of the app's first read of it
  (a catalogue upload: each part within ``timeout_s`` of the previous one, as uploads
  may take minutes);
* a body that does not arrive in time is answered ``408`` and its connection closed; a
  client that goes away halfway through its body is logged in one line.
"""

from __future__ import annotations

import logging

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from spectraldl.web.limits import (
    OPEN_PATHS,
    UPLOAD_PATHS,
    App,
    Message,
    Receive,
    Scope,
    Send,
    answer,
    declared_length,
    too_large_detail,
)

log = logging.getLogger("uvicorn.error")
"""The server's log (uvicorn's, shown at its --log-level)."""

BODY_TIMEOUT_S = 30.0
"""Default seconds a client has to send a request body (``spectraldl serve --body-timeout``)."""

LOGIN_BODY_BYTES = 16 * 1024
"""Cap of a login body: a name, a password and a CSRF token need far less."""

TIMEOUT_DETAIL = "the request body did not arrive in time (within {:g} s)"


class BodyTimeout(HTTPException):
    """A body not complete in time (an HTTP 408 closing the connection)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, TIMEOUT_DETAIL.format(timeout_s), headers={"Connection": "close"})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "a client"


def _gone(scope: Scope) -> None:
    """Log, in one line, a client that closed its connection before its body was complete."""
    log.info("%s closed the connection before sending all of %s", _client(scope), scope["path"])


class BodyDeadline:
    """ASGI middleware: the body deadlines and login bodies read up front (see the module)."""

    def __init__(self, app: App, *, timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if scope["path"] in OPEN_PATHS and scope["method"] == "POST":
                await self._login(scope, receive, send)
            else:
                await self.app(scope, self._timed(scope, receive), send)
        except ClientDisconnect:
            pass  # logged once by the timed receive

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read a login body (capped, on the deadline), then run the app on it."""
        declared = declared_length(scope)
        body: bytes | None = None
        try:
            if declared is not None and declared > LOGIN_BODY_BYTES:
                raise _LoginTooLarge
            with anyio.move_on_after(self.timeout_s):
                body = await _read_login(scope, receive)
        except _LoginTooLarge:
            await answer(send, 413, too_large_detail(LOGIN_BODY_BYTES))
            return
        if body is None:
            await answer(send, 408, TIMEOUT_DETAIL.format(self.timeout_s))
            return
        await self.app(scope, _replay(body, receive), send)

    def _timed(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` raising `BodyTimeout` when the body is not complete in time."""
        per_part = scope["path"] in UPLOAD_PATHS
        deadline: float | None = None
        complete = False

        async def timed() -> Message:
            nonlocal deadline, complete
            if complete:
                return await receive()
            now = anyio.current_time()
            if deadline is None or per_part:
                deadline = now + self.timeout_s
            try:
                with anyio.fail_after(max(0.0, deadline - now)):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.disconnect":
                _gone(scope)
            complete = not message.get("more_body", False)
            return message

        return timed


class _LoginTooLarge(Exception):
    """A login body past `LOGIN_BODY_BYTES`."""


async def _read_login(scope: Scope, receive: Receive) -> bytes:
    """A whole login body; `ClientDisconnect` when the client goes, `_LoginTooLarge` past
    the cap."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            _gone(scope)
            raise ClientDisconnect
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > LOGIN_BODY_BYTES:
            raise _LoginTooLarge
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` giving ``body`` first, then what the connection sends (its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
