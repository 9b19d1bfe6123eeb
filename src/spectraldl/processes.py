"""Process pools shared by ingest, simulate, classify and the gallery."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context


def pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where the platform has it, else spawn: never fork a process holding threads."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
