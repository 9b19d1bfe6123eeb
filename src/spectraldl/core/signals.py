"""Stop signals: SIGTERM handled as Ctrl-C is, and short steps held to their end.

Batch schedulers, systemd and ``timeout`` stop a job with SIGTERM, whose
default kills the process at once. While `stops_raise` is in force, SIGTERM
raises `Terminated` (a `KeyboardInterrupt`) in the main thread, so every
cleanup written for Ctrl-C runs for it; a second stop signal ends the process
at once, as ``kill -9`` would (what is committed stays committed), instead of
interrupting that cleanup and leaving it half done. `held_stops` keeps both
signals back for a step that must not stop halfway (two renames that publish
one result); one that came meanwhile acts when the step is done.

Python runs handlers in the main thread only, so elsewhere both do nothing;
a signal that is ignored, or handled outside Python, is left as it is.
Processes started from a fresh interpreter (forkserver, spawn) keep the defaults.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOPS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    """The handler of `stops_raise`: the first stop signal raises, the next one kills."""
    for stop in STOPS:
        signal.signal(stop, signal.SIG_DFL)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


@contextmanager
def _handled(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """``handler`` for the stop signals Python handles, in the block; the previous ones after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {stop: signal.getsignal(stop) for stop in STOPS}
    for stop, before in previous.items():
        if before not in (signal.SIG_IGN, None):
            signal.signal(stop, handler)
    try:
        yield
    finally:
        for stop, before in previous.items():
            if before not in (signal.SIG_IGN, None):
                signal.signal(stop, before)


@contextmanager
def stops_raise() -> Iterator[None]:
    """In the block Ctrl-C raises KeyboardInterrupt and SIGTERM `Terminated`, once."""
    with _handled(_stop):
        yield


@contextmanager
def held_stops() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back in the block; the first that came acts after it."""
    pending: list[int] = []
    with _handled(lambda signum, _frame: pending.append(signum)):
        yield
    if pending:
        signal.raise_signal(pending[0])
