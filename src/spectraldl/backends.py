"""Where the chunks of a long job run: this process, local worker processes, or Dask.

A job hands a backend a function and a list of tasks (each one repeatable,
self-contained and picklable) and gets the results back as they finish, with
at most a few tasks in flight so that memory stays bounded by the chunk size.
Backends are chosen by the caller and passed in (`open_backend` turns a
``--scheduler`` string into one); Dask is imported only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from spectraldl.processes import pool_context

T = TypeVar("T")
R = TypeVar("R")


class Backend(Protocol):
    """Runs tasks and yields their results in completion order."""

    name: str
    threads_per_task: int | None
    """Intra-op threads a task may use (None: leave the library's default)."""

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for every task, in the order they complete."""
        ...


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class SerialBackend:
    """Every task in this process, one after the other (the default for one worker)."""

    name = "local"
    threads_per_task: int | None = None

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for each task in order."""
        for task in tasks:
            yield fn(task)


class ProcessBackend:
    """Local worker processes (forkserver), each running one task at a time."""

    name = "local"

    def __init__(self, workers: int, *, in_flight_per_worker: int = 2) -> None:
        self.workers = max(1, workers)
        self.in_flight = self.workers * max(1, in_flight_per_worker)
        self.threads_per_task: int | None = max(1, _cores() // self.workers)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=pool_context())

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield results as workers finish, keeping at most ``in_flight`` tasks submitted."""
        pending: set[Future[R]] = set()
        queue = iter(tasks)
        try:
            for task in queue:
                pending.add(self._pool.submit(fn, task))
                if len(pending) >= self.in_flight:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskBackend:
    """Tasks on a Dask distributed cluster through a ``distributed.Client``.

    Functions and tasks are pickled to the workers, which must have spectraldl
    installed and see the input files and the model directory at the same
    paths (a shared file system). Results come back to this process.
    """

    name = "dask"

    def __init__(
        self, client: Any, *, threads_per_task: int | None = 1, in_flight_per_thread: int = 2
    ) -> None:
        self.client = client
        self.threads_per_task = threads_per_task
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        self.in_flight = max(2, threads * in_flight_per_thread)

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield results as the cluster finishes them, at most ``in_flight`` at a time."""
        from distributed import as_completed

        queue = iter(tasks)
        first = [
            self.client.submit(fn, t, pure=False)
            for _, t in zip(range(self.in_flight), queue, strict=False)
        ]
        if not first:
            return
        running = as_completed(first)
        try:
            for future in running:
                result = future.result()
                future.release()
                for task in queue:
                    running.add(self.client.submit(fn, task, pure=False))
                    break
                yield result
        finally:
            for future in running.futures:
                future.cancel()


@contextmanager
def open_backend(scheduler: str = "local", *, workers: int = 1) -> Iterator[Backend]:
    """A backend for a ``--scheduler`` value, closed (and a started cluster stopped) on exit.

    Parameters
    ----------
    scheduler
        ``local`` (this process for one worker, else local processes),
        ``dask-local`` (a `distributed.LocalCluster` of ``workers`` processes,
        one thread each) or ``tcp://HOST:PORT`` (an existing Dask scheduler;
        ``workers`` is ignored, the cluster's workers are used).
    workers
        Worker processes for ``local`` and ``dask-local``.
    """
    if scheduler == "local":
        if workers <= 1:
            yield SerialBackend()
            return
        backend = ProcessBackend(workers)
        try:
            yield backend
        finally:
            backend.close()
        return
    if scheduler == "dask-local":
        from distributed import Client, LocalCluster

        n = max(1, workers)
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield DaskBackend(client, threads_per_task=max(1, _cores() // n))
        return
    if scheduler.startswith(("tcp://", "tls://", "ucx://")):
        from distributed import Client

        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}"
            ) from None
        try:
            yield DaskBackend(client, threads_per_task=1)
        finally:
            client.close()
        return
    raise ValueError(f"unknown scheduler {scheduler!r}: use local, dask-local or tcp://HOST:PORT")
