"""Catalogue uploads imported in the background, one at a time, in a separate process.

A web upload is saved to a temporary folder and recorded as an `ImportJob`
row; a dispatcher thread runs each job in a fresh process (``spawn``), so a
million-row table neither blocks the server's event loop nor competes with
it for the interpreter lock, and its memory is returned when it ends. The
job reports its progress (rows read of rows in the table) in its row, which
the pages and ``GET /api/imports/{id}`` show. A job whose process dies is
marked failed and its partial catalogue deleted; jobs left unfinished by a
stopped server are marked failed when the next one starts, and the upload
folders of servers that are gone are deleted then. A job's process ends with
its server, even one killed with kill -9 (`die_with_parent`), and once a job
is marked finished nothing overwrites its row.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from spectraldl.jobs.files import die_with_parent, process_alive
from spectraldl.web.db import Database, open_database
from spectraldl.web.importing import ImportFailed, delete_catalogue, import_predictions
from spectraldl.web.models import Catalogue, ImportJob, utcnow

log = logging.getLogger(__name__)

FINISHED = ("done", "failed")

UPLOAD_PREFIX = "spectraldl-upload-"
"""Upload folders are ``UPLOAD_PREFIX`` + the server's process id + ``-`` + a random part,
in the system's temporary folder."""


def upload_folder() -> Path:
    """A new temporary folder for one upload, named after this server process."""
    return Path(tempfile.mkdtemp(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-"))


def remove_stale_uploads() -> None:
    """Delete the upload folders of server processes that are gone (killed mid-import)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{UPLOAD_PREFIX}*-*"):
        pid = folder.name[len(UPLOAD_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class JobSpec:
    """What a job imports: the saved upload, its original name, who uploaded it."""

    job_id: int
    path: str
    name: str
    user_id: int | None


def _set(db: Database, job_id: int, **values: Any) -> None:
    """Update an unfinished job's row (a finished one keeps what it says)."""
    unfinished = (ImportJob.id == job_id, ImportJob.status.not_in(FINISHED))
    with db.session() as session:
        session.execute(update(ImportJob).where(*unfinished).values(**values))
        session.commit()


def run_job(db: Database, spec: JobSpec) -> None:
    """Import one upload as a catalogue, recording progress and the outcome in its job row."""
    _set(db, spec.job_id, status="running")

    def progress(done: int, total: int) -> None:
        _set(db, spec.job_id, rows_done=done, rows_total=total)

    try:
        summary = import_predictions(
            db,
            spec.path,
            name=spec.name,
            source=f"uploaded file {spec.name}",
            created_by=spec.user_id,
            progress=progress,
            started=lambda catalogue_id: _set(db, spec.job_id, catalogue_id=catalogue_id),
        )
    except ImportFailed as exc:
        _fail(db, spec.job_id, str(exc).replace(spec.path, spec.name))
        return
    except Exception as exc:  # the job's row must say what happened, whatever it was
        log.exception("import job %s failed", spec.job_id)
        _fail(
            db, spec.job_id, f"unexpected {type(exc).__name__}: {exc}".replace(spec.path, spec.name)
        )
        return
    _set(
        db,
        spec.job_id,
        status="done",
        catalogue_id=summary.catalogues[0][0],
        finished_at=utcnow(),
    )


def _fail(db: Database, job_id: int, reason: str) -> None:
    _set(db, job_id, status="failed", error=reason[:2000], finished_at=utcnow())


def _process_main(url: str, spec: JobSpec, server: int) -> None:
    """The job process: open the database by URL and run the job, ending if process
    ``server`` goes."""
    die_with_parent(server)
    db = open_database(url, upgrade=False)
    try:
        run_job(db, spec)
    finally:
        db.dispose()


class ImportJobs:
    """The queue of background imports of one server (see the module)."""

    def __init__(self, db: Database, *, processes: bool | None = None) -> None:
        self.db = db
        self.processes = not db.in_memory if processes is None else processes
        self._queue: queue.Queue[JobSpec | None] = queue.Queue()
        self._finished: set[int] = set()
        self._process: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def recover(self) -> None:
        """Mark jobs a stopped server left unfinished as failed (their catalogues deleted)
        and delete the upload folders of servers that are gone."""
        remove_stale_uploads()
        with self.db.session() as session:
            stale = session.scalars(select(ImportJob.id).where(ImportJob.status.not_in(FINISHED)))
            for job_id in list(stale):
                self._abandon(job_id, "interrupted: the server stopped during the import")

    def submit(self, path: Path, *, name: str, user_id: int | None) -> int:
        """Queue the import of a saved upload (its folder is deleted afterwards); the job id."""
        with self.db.session() as session:
            job = ImportJob(name=name[:256], status="queued", created_by=user_id)
            session.add(job)
            session.commit()
            job_id = job.id
        self._queue.put(JobSpec(job_id=job_id, path=str(path), name=name, user_id=user_id))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._dispatch, name="spectraldl-imports", daemon=True
                )
                self._thread.start()
        return job_id

    async def wait(self, job_id: int, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) up to ``timeout_s`` for a job to end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while job_id not in self._finished:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def close(self) -> None:
        """Stop taking jobs and end a running job's process (called at server shutdown)."""
        self._queue.put(None)
        process = self._process
        if process is not None and process.is_alive():
            process.kill()  # it ignores SIGTERM (die_with_parent)

    def _dispatch(self) -> None:
        while (spec := self._queue.get()) is not None:
            try:
                self._run(spec)
            except Exception as exc:  # the dispatcher must survive any one job
                log.exception("import job %s", spec.job_id)
                _fail(self.db, spec.job_id, f"unexpected {type(exc).__name__}: {exc}")
            finally:
                shutil.rmtree(Path(spec.path).parent, ignore_errors=True)
                self._finished.add(spec.job_id)

    def _run(self, spec: JobSpec) -> None:
        if not self.processes:
            run_job(self.db, spec)
            return
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_process_main,
            args=(self.db.url, spec, os.getpid()),
            name=f"import-{spec.job_id}",
        )
        self._process.start()
        self._process.join()
        code = self._process.exitcode
        self._process = None
        if code != 0:
            self._abandon(spec.job_id, f"the import process ended unexpectedly (exit code {code})")

    def _abandon(self, job_id: int, reason: str) -> None:
        """A job whose process died: failed, with its partial catalogue deleted."""
        with self.db.session() as session:
            job = session.get(ImportJob, job_id)
            if job is None or job.status in FINISHED:
                return
            catalogue = session.get(Catalogue, job.catalogue_id) if job.catalogue_id else None
            partial = catalogue.id if catalogue and catalogue.status == "importing" else None
        if partial is not None:
            delete_catalogue(self.db, partial)
        _fail(self.db, job_id, reason)
