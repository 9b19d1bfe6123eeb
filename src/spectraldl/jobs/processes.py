"""Process pools shared by ingest, simulate, classify and the gallery."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any


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


def task_modules(fn: Callable[..., Any]) -> list[str]:
    """The modules of ``fn`` and of the functions it wraps (`functools.partial`, its arguments)."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, partial):
            yield from walk(value.func)
            for arg in (*value.args, *value.keywords.values()):
                yield from walk(arg)
        elif callable(value) and isinstance(getattr(value, "__module__", None), str):
            yield value.__module__

    return list(dict.fromkeys(walk(fn)))


def preload_in_workers(fn: Callable[..., Any]) -> None:
    """Have the forkserver import ``fn``'s modules before it forks the first worker.

    Workers then start with PyTorch and the stages imported (a fork, milliseconds)
    instead of each importing them (about a second each, all at once on few
    cores). No effect once this process's forkserver is running, or without one.
    """
    context = pool_context()
    if isinstance(context, multiprocessing.context.ForkServerContext):
        context.set_forkserver_preload(task_modules(fn))


def start_forkserver(modules: Sequence[str]) -> None:
    """Start this process's forkserver now, importing ``modules``, while this process goes on.

    A command that will run local workers calls it before its own imports: the
    server's import of the stages (PyTorch's included, about 2 s) then runs on
    another core beside this process's instead of after it, and the workers
    later fork from it ready. No effect once the forkserver runs, or without one.
    """
    context = pool_context()
    if isinstance(context, multiprocessing.context.ForkServerContext):
        context.set_forkserver_preload(list(modules))
        multiprocessing.forkserver.ensure_running()
