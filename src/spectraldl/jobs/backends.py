"""Where the chunks of a long job run: this process, local worker processes, or Dask.

A job hands a backend a function and a list of tasks (each one repeatable,
self-contained and picklable) and gets the results back as they finish, with
at most a few tasks in flight so that memory stays bounded by the chunk size.
Backends are chosen by the caller and passed in (`open_backend` turns a
``--scheduler`` string into one); Dask is imported only when asked for.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from spectraldl.core.signals import held_stops
from spectraldl.core.versions import versions
from spectraldl.jobs.files import WorkerDied, describe_dead_worker, die_with_parent
from spectraldl.jobs.processes import (
    pool_context,
    preload_in_workers,
    start_forkserver,
    unguarded_main_call,
    usable_cores,
)

T = TypeVar("T")
R = TypeVar("R")

DASK_SCHEMES = ("tcp://", "tls://", "ucx://")
"""The addresses of a running Dask scheduler that `open_backend` joins."""


class Backend(Protocol):
    """Runs tasks and yields their results in completion order."""

    name: str
    threads_per_task: int | None
    """Intra-op threads a task may use (None: leave the library's default)."""

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for every task, in the order they complete."""
        ...

    def warm_up(self, fn: Callable[..., Any]) -> None:
        """Start the workers now and have them load ``fn``'s code (no-op where nothing starts).

        A worker process spends about 0.4 s importing the stages; called before
        the caller lists its inputs, that time overlaps the listing.
        """
        ...


def _loaded(fn: Callable[..., Any]) -> None:
    """Nothing: unpickling ``fn`` to call this has imported its module in the worker."""


class SerialBackend:
    """Every task in this process, one after the other (the default for one worker)."""

    name = "local"
    threads_per_task: int | None = None

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for each task in order."""
        for task in tasks:
            yield fn(task)

    def warm_up(self, fn: Callable[..., Any]) -> None:
        """Nothing to start: tasks run in this process."""


class ProcessBackend:
    """Local worker processes (forkserver), each running one task at a time.

    Workers exit when this process is gone (even after kill -9), and a worker
    that dies (the out-of-memory killer) ends the run with `WorkerDied`.
    """

    name = "local"

    def __init__(self, workers: int, *, in_flight_per_worker: int = 2) -> None:
        self.workers = max(1, workers)
        self.in_flight = self.workers * max(1, in_flight_per_worker)
        self.threads_per_task: int | None = max(1, usable_cores() // self.workers)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=pool_context(),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
        self._started = False

    def warm_up(self, fn: Callable[..., Any]) -> None:
        """Start every worker now, each loading ``fn``'s code, while the caller prepares."""
        self._start(fn)
        for _ in range(self.workers):
            self._pool.submit(_loaded, fn)

    def _start(self, fn: Callable[..., Any]) -> None:
        """Before the first worker starts: its forkserver imports ``fn``'s code once for all."""
        if not self._started:
            self._started = True
            preload_in_workers(fn)

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield results as workers finish, keeping at most ``in_flight`` tasks submitted."""
        self._start(fn)
        pending: set[Future[R]] = set()
        try:
            for task in tasks:
                pending.add(self._pool.submit(fn, task))
                if len(pending) >= self.in_flight:
                    yield from self._finished(pending)
            while pending:
                yield from self._finished(pending)
        except BrokenProcessPool as exc:
            raise WorkerDied(describe_dead_worker(exc, unguarded_main_call())) from None
        finally:
            for future in pending:
                future.cancel()

    @staticmethod
    def _finished(pending: set[Future[R]]) -> Iterator[R]:
        """Wait for at least one task; yield the results of those done, removed from ``pending``."""
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        pending.difference_update(done)
        for future in done:
            yield future.result()

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.shutdown(wait=True, cancel_futures=True)


IN_FLIGHT_RECOUNT_S = 1.0
"""How often a Dask run counts the cluster's threads again (a round trip to the scheduler)."""


class DaskBackend:
    """Tasks on a Dask distributed cluster through a ``distributed.Client``.

    Functions and tasks are pickled to the workers, which must have spectraldl
    installed and see the input files and the model directory at the same
    paths (a shared file system); a shipped model comes from each worker's own
    installed spectraldl. Results come back to this process. Every
    worker is checked before its first task of ours (`checked_call`), however
    late it joined: a worker that cannot run this spectraldl ends the run with
    one line naming it.
    """

    name = "dask"

    def __init__(
        self, client: Any, *, threads_per_task: int | None = 1, in_flight_per_thread: int = 2
    ) -> None:
        self.client = client
        self.threads_per_task = threads_per_task
        self.in_flight_per_thread = in_flight_per_thread
        self.in_flight = self._cluster_in_flight()
        self.code = worker_code()

    def _cluster_in_flight(self) -> int:
        """Tasks to keep submitted for the cluster's threads now: workers come and go."""
        threads = sum(self.client.nthreads().values())
        return max(2, threads * self.in_flight_per_thread)

    def warm_up(self, fn: Callable[..., Any]) -> None:
        """Nothing to start: the cluster's workers are running."""

    def _submit(self, fn: Callable[[T], R], task: T) -> Any:
        """``fn(task)`` as a task that only a worker with this process's code runs.

        The call travels pickled inside the task (`_Call`): a worker without
        spectraldl then fails that task, which reaches us, instead of dying
        while it reads the task, which Dask retries elsewhere or waits on.
        """
        call = pickle.dumps(_Call(checked_call, self.code, fn, task))
        return self.client.submit(pickle.loads, call, pure=False)

    def _result(self, future: Any) -> Any:
        """The result of a finished task; `ConnectionError` for a lost scheduler or a worker
        that cannot run this spectraldl."""
        from distributed.comm import CommClosedError

        try:
            return future.result()
        except (CancelledError, CommClosedError):  # we cancel nothing: it left
            raise ConnectionError(
                f"lost the Dask scheduler at {self.client.scheduler.address}; the finished "
                "chunks are kept: start the cluster again and run the same command to resume"
            ) from None
        except WorkerCodeDiffers as exc:
            raise ConnectionError(f"{exc}; {KEPT}") from None
        except (ImportError, AttributeError) as exc:
            # How a worker that cannot read the task (no spectraldl, or an older one) fails
            # it: the join's check names that worker.
            problem = _workers_problem(self.client, self.code)
            if problem is None and isinstance(exc, ImportError):
                problem = (
                    f"a Dask worker cannot run spectraldl ({type(exc).__name__}: {exc}): {INSTALL}"
                )
            if problem is None:
                raise
            raise ConnectionError(f"{problem}; {KEPT}") from None

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield results as the cluster finishes them, at most ``in_flight`` at a time.

        ``in_flight`` follows the cluster's threads, counted again at most every
        `IN_FLIGHT_RECOUNT_S`: workers that join an adaptive cluster get work.
        """
        from distributed import as_completed

        queue = iter(tasks)
        first = [self._submit(fn, t) for t in itertools.islice(queue, self.in_flight)]
        if not first:
            return
        running = as_completed(first)
        counted = time.monotonic()
        try:
            for future in running:
                result = self._result(future)
                future.release()
                if time.monotonic() - counted >= IN_FLIGHT_RECOUNT_S:
                    self.in_flight, counted = self._cluster_in_flight(), time.monotonic()
                for task in itertools.islice(queue, max(0, self.in_flight - running.count())):
                    running.add(self._submit(fn, task))
                yield result
        finally:
            # A copy: the completion thread still updates the set while we cancel.
            left = list(running.futures)
            if left:
                self.client.cancel(left)


class _Call:
    """``fn(*args)``, called when this object is unpickled (``pickle.loads(pickle.dumps(c))``).

    A Dask task ``pickle.loads(bytes)`` is one that any worker can receive.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Unpickled, this object is the call's result."""
        return self.fn, self.args


class WorkerCodeDiffers(Exception):
    """A Dask worker whose `worker_code` is not the client's: its address, what it runs, and
    what the client runs."""

    def __init__(self, worker: str, found: dict[str, str], here: dict[str, str]) -> None:
        super().__init__(worker, found, here)
        self.worker, self.found, self.here = worker, found, here

    def __str__(self) -> str:
        return _other_code(self.worker, self.found, self.here)


def checked_call(expected: dict[str, str], fn: Callable[[T], R], task: T) -> R:
    """``fn(task)`` on a Dask worker whose `worker_code` is ``expected`` (the client's); else
    raise `WorkerCodeDiffers` naming the worker. The worker's code is digested once."""
    found = worker_code()
    if found != expected:
        from distributed import get_worker

        raise WorkerCodeDiffers(get_worker().address, found, expected)
    return fn(task)


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Dask's logs at CRITICAL, here and in the worker processes started in the block, until
    it ends, a LocalCluster's close included.

    A cluster silences its logs only until its close begins, and its workers' only while they
    start: a run stopped by SIGTERM then printed a worker's "Batched Comm Closed" traceback
    before its one line. Workers read ``DASK_LOGGING__DISTRIBUTED`` when they import Dask.
    """
    handlers = [
        h for h in logging.getLogger("distributed").handlers if isinstance(h, logging.StreamHandler)
    ]
    levels = [h.level for h in handlers]
    before = os.environ.get(DASK_LOG_VARIABLE)
    os.environ[DASK_LOG_VARIABLE] = "critical"
    for handler in handlers:
        handler.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)
        if before is None:
            os.environ.pop(DASK_LOG_VARIABLE, None)
        else:
            os.environ[DASK_LOG_VARIABLE] = before


DASK_LOG_VARIABLE = "DASK_LOGGING__DISTRIBUTED"
"""Dask's setting of the level of its ``distributed`` logger, read from the environment."""


@contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started in the block ignore Ctrl-C (an ignored signal is inherited).

    Ctrl-C then reaches this process only, which stops the run with one
    message instead of a traceback from every Dask worker.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def prestart_local_workers(scheduler: str, workers: int, modules: Sequence[str]) -> None:
    """Where `open_backend` will start local worker processes, start their server now.

    Called first thing by a command, before it imports ``modules`` itself (the
    task's code): both imports then run at once (`start_forkserver`).
    """
    if scheduler == "local" and workers > 1:
        with _children_ignore_ctrl_c():  # Ctrl-C during its imports: no traceback from it
            start_forkserver(modules)


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
        # Workers log heartbeat errors at ERROR when Ctrl-C closes the scheduler first; task
        # failures still reach this process as exceptions.
        with _quiet_dask_logs():
            # SIGTERM waits for the cluster to be up: a half-started one printed pages of
            # tracebacks.
            with held_stops(), _children_ignore_ctrl_c():
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                )
            with cluster, Client(cluster) as client:
                yield DaskBackend(client, threads_per_task=max(1, usable_cores() // n))
        return
    if scheduler.startswith(DASK_SCHEMES):
        with _joined(scheduler) as client:
            yield DaskBackend(client, threads_per_task=1)
        return
    raise ValueError(f"unknown scheduler {scheduler!r}: use local, dask-local or tcp://HOST:PORT")


WORKER_WAIT_S = 60.0
"""How long joining a Dask scheduler waits for its first worker before saying it has none."""


@contextmanager
def _joined(scheduler: str) -> Iterator[Any]:
    """A `distributed.Client` of the running scheduler at ``scheduler``, its workers checked.

    Raises `ConnectionError` saying what to do when the scheduler cannot be
    reached, has no workers, or has workers that cannot run this spectraldl.
    Dask's logs here are silenced until the client is closed (`_quiet_dask_logs`): a lost
    scheduler printed a traceback page ("Batched Comm Closed") before the run's one line.
    """
    from distributed import Client

    _probe(scheduler)
    with _quiet_dask_logs():
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}"
            ) from None
        try:
            _check_workers(client, scheduler)
            yield client
        finally:
            client.close()


INSTALL = "install on every worker the spectraldl this machine runs"
"""What to do about a Dask worker that cannot import spectraldl."""

KEPT = "the finished chunks are kept: run the same command to resume"
"""Said when a worker stops a run that had started."""


PROBE_S = 5.0
"""How long `_probe` waits for a TCP connection to the scheduler before leaving it to Dask."""


def scheduler_address_problem(scheduler: str) -> str | None:
    """Why the ``tcp://`` or ``tls://`` address ``scheduler`` names no port (missing, not a
    number or out of range: Dask, and `_probe`, failed with a traceback); None when it names
    one, or has another scheme."""
    parts = urlsplit(scheduler)
    if parts.scheme not in ("tcp", "tls"):
        return None
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = None
    if not port:
        return f"{scheduler!r} names no port 1-65535: give tcp://HOST:PORT"
    return None


def _probe(scheduler: str) -> None:
    """Raise `ConnectionError` at once when nothing listens at a ``tcp://`` or ``tls://``
    scheduler's host and port (refused, unknown host, no route): Dask would retry for 20 s.
    An address without them is a `ValueError` (`scheduler_address_problem`)."""
    problem = scheduler_address_problem(scheduler)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(scheduler)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=PROBE_S).close()
    except TimeoutError:
        return  # slow, not absent: Dask's own timeout decides
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {scheduler}: {reason}; is it running there? "
            "(`dask scheduler` prints the address to give)"
        ) from None


@functools.cache
def worker_code() -> dict[str, str]:
    """What every Dask worker must share with this process: the versions of `versions` and
    a digest of spectraldl's code (two checkouts of one version differ there). Once a process."""
    sha = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        sha.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    found = versions(("numpy", "torch"))
    found.pop("python")  # another patch release of Python gives the same results
    return {**found, "spectraldl code": sha.hexdigest()[:12]}


def _worker_problem(
    worker: str, found: dict[str, str] | BaseException, here: dict[str, str]
) -> str | None:
    """Why the Dask worker ``worker`` cannot run this spectraldl, given its `worker_code` (or the
    error computing it) and this process's; None when it can."""
    if isinstance(found, BaseException):
        return f"the Dask worker {worker} cannot run spectraldl ({found}): {INSTALL}"
    return None if found == here else _other_code(worker, found, here)


def _other_code(worker: str, found: dict[str, str], here: dict[str, str]) -> str:
    """The Dask worker ``worker`` runs ``found``, not ``here``: what differs, and what to do."""
    differ = ", ".join(
        f"{k} {found.get(k, 'missing')} there, {here[k]} here"
        for k in here
        if found.get(k) != here[k]
    )
    return (
        f"the Dask worker {worker} runs other code ({differ}): install the same versions on "
        "every worker and this machine"
    )


def _workers_problem(client: Any, here: dict[str, str]) -> str | None:
    """Why the first of the workers now on ``client``'s cluster that cannot run this spectraldl
    cannot (`_worker_problem`); None when all can."""
    for worker, found in client.run(worker_code, on_error="return").items():
        problem = _worker_problem(worker, found, here)
        if problem:
            return problem
    return None


def _check_workers(client: Any, scheduler: str) -> None:
    """Raise `ConnectionError` for a cluster without workers or with a worker that cannot run
    this spectraldl (missing, or another version): its tasks would fail, or never run."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ConnectionError(
            f"the Dask scheduler at {scheduler} has no workers (waited {WORKER_WAIT_S:.0f} s): "
            f"start them with `dask worker {scheduler}`"
        ) from None
    problem = _workers_problem(client, worker_code())
    if problem:
        raise ConnectionError(problem)
