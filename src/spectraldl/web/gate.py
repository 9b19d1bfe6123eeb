"""At most as many requests at once as the database has connections for.

A request takes a database connection in one of the server's worker threads
and gives it back only when it ends, which needs a worker thread again. With
more requests at once than connections, every thread could be waiting for a
connection held by a request waiting for a thread: nothing moves until the
pool's 30 s timeout, then errors (40 requests at once were enough). Requests
beyond the slots wait here instead, on the event loop, holding nothing.
Static files need no database and pass straight through.

Logins have slots of their own (`LOGIN_SLOTS`, taken from the same connections): a
crowd of anonymous logins, each checking a password for half a second, queues there
and never in front of the pages of people already logged in. A login that finds no
login slot within ``login_wait_s`` is answered ``503`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

import anyio

from spectraldl.web.limits import OPEN_PATHS, App, Receive, Scope, Send, answer

RESERVED_CONNECTIONS = 4
"""Connections left to the server's own threads (the import jobs' dispatcher)."""

LOGIN_SLOTS = 4
"""Logins (``POST /login``, ``POST /api/login``) in progress at once, beside the other slots."""

LOGIN_WAIT_S = 10.0
"""Seconds a login waits for a login slot before it is answered 503."""

BUSY_DETAIL = "too many logins at once; try again in a few seconds"


class RequestGate:
    """ASGI middleware: an HTTP request past ``slots`` in progress (a login: past
    ``login_slots``) waits for one to end (see the module)."""

    def __init__(
        self,
        app: App,
        *,
        slots: int,
        login_slots: int = LOGIN_SLOTS,
        login_wait_s: float = LOGIN_WAIT_S,
    ) -> None:
        self.app = app
        self.slots = max(1, slots)
        self.login_slots = max(1, login_slots)
        self.login_wait_s = login_wait_s
        self._semaphores: Any = None  # made in the server's event loop, on the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if self._semaphores is None:
            self._semaphores = anyio.Semaphore(self.slots), anyio.Semaphore(self.login_slots)
        pages, logins = self._semaphores
        if scope["path"] not in OPEN_PATHS or scope["method"] != "POST":
            async with pages:
                await self.app(scope, receive, send)
            return
        acquired = False
        with anyio.move_on_after(self.login_wait_s):
            await logins.acquire()
            acquired = True
        if not acquired:
            await answer(send, 503, BUSY_DETAIL, retry_after=round(self.login_wait_s))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            logins.release()
