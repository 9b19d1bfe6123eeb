"""Process pools shared by ingest, simulate, classify and the gallery."""

from __future__ import annotations

import ast
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.spawn
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from types import FrameType
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


def _workers_rerun_main() -> bool:
    """Whether a new worker runs this process's main module again (as ``__mp_main__``).

    The rule of `multiprocessing.spawn`: a script run by path is re-run, a module run
    with ``-m`` is re-imported unless it is a package's ``__main__``.
    """
    data = multiprocessing.spawn.get_preparation_data("worker")
    name = data.get("init_main_from_name")
    if name is not None:
        return name != "__main__" and not name.endswith(".__main__")
    return "init_main_from_path" in data


def _is_main_guard(node: ast.stmt) -> bool:
    """Whether ``node`` is ``if __name__ == "__main__":`` (either side first)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    texts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return names == {"__name__"} and texts == {"__main__"}


def _main_frame() -> FrameType | None:
    """The frame running the main module's top level, if this call comes from it."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            return frame
        frame = frame.f_back
    return None


def unguarded_main_call() -> str | None:
    """``SCRIPT line N`` when this call comes from the main script's top level outside
    ``if __name__ == "__main__":``: every worker re-runs that line at start-up and dies."""
    frame = _main_frame()
    if frame is None or not _workers_rerun_main():
        return None
    path = frame.f_code.co_filename
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in tree.body:
        if _is_main_guard(node) and node.lineno <= line <= (node.end_lineno or node.lineno):
            return None
    return f"{path} line {line}"
