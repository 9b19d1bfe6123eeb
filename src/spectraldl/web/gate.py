"""At most as many requests at once as the database has connections for.

A request takes a database connection in one of the server's worker threads
and gives it back only when it ends, which needs a worker thread again. With
more requests at once than connections, every thread could be waiting for a
connection held by a request waiting for a thread: nothing moves until the
pool's 30 s timeout, then errors (40 requests at once were enough). Requests
beyond the slots wait here instead, on the event loop, holding nothing.
Static files need no database and pass straight through.
"""

from __future__ import annotations

from typing import Any

import anyio

from spectraldl.web.limits import App, Receive, Scope, Send

RESERVED_CONNECTIONS = 4
"""Connections left to the server's own threads (the import jobs' dispatcher)."""


class RequestGate:
    """ASGI middleware: an HTTP request past ``slots`` in progress waits for one to end."""

    def __init__(self, app: App, *, slots: int) -> None:
        self.app = app
        self.slots = max(1, slots)
        self._semaphore: Any = None  # made in the server's event loop, on the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(self.slots)
        async with self._semaphore:
            await self.app(scope, receive, send)
