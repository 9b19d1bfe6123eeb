"""Process pools shared by ingest, simulate, classify and the gallery."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os


def pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where the platform has it, else spawn: never fork a process holding threads."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), the default worker count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
