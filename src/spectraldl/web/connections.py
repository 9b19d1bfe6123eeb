"""How the server's connections are handled: uvicorn's HTTP/1.1 protocol with a deadline for
each request's head.

uvicorn waits for a request's head (its line and headers) as long as the client
likes: a client that opens connections and sends nothing, or a byte now and then,
kept each one, until the server ran out of file handles and refused everyone.
Here a connection whose request head is not complete within ``head_timeout_s`` of
its opening (or of the previous response) is closed. Bodies are not timed:
catalogue uploads may take minutes, and only logged-in users send large ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def head_deadline_protocol(head_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol (``uvicorn.run(http=...)``) closing a connection whose
    request head has not arrived within ``head_timeout_s``."""

    class HeadDeadlineProtocol(H11Protocol):
        """`H11Protocol` with a deadline for every request head."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(head_timeout_s, self._expire)

        def _expire(self) -> None:
            """Close the connection if it is still waiting for a whole request head."""
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol
