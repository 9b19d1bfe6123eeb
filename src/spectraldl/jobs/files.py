"""What every resumable job shares: bad-file records, the errors file, atomic writes,
one run per output at a time, workers that die with their parent, and clear I/O failures.

`spectraldl.jobs.ingest` and `spectraldl.classify.run` (classify) both cut their inputs into
chunks committed one by one under ``OUT.parts/``; the pieces here are the parts of
that protocol that must behave the same in both.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import (
    NO_SUCH_FILE,
    FileError,
    describe_os_error,
    is_not_writable,
    printable_path,
)


class OutputBusy(RuntimeError):
    """Another run is writing the same output right now."""


class JobIOError(RuntimeError):
    """The output cannot be written (disk full, read-only, no permission): one line for people."""


class WorkerDied(RuntimeError):
    """A worker process died (killed, perhaps by the out-of-memory killer)."""


class InputsUnseen(RuntimeError):
    """A worker found no file where this process sees one: it does not share the file system."""


def check_inputs_seen(errors: Iterable[FileError]) -> None:
    """Raise `InputsUnseen` for a file a worker found missing that this process sees.

    Called before a chunk is committed: such a chunk would list every file as
    bad, and a resumed run would keep it (its files unchanged here).
    """
    for error in errors:
        if error.reason == NO_SUCH_FILE and os.path.lexists(error.path):
            raise InputsUnseen(
                f"{printable_path(error.path)}: a worker found no such file, though this machine "
                "sees it now: workers must see the inputs at the same absolute paths (a shared "
                "file system); the finished chunks are kept: run the same command once they do "
                "(or at once, if the file was only now created)"
            )


def errors_csv_path(out: str | Path) -> Path:
    """Where the bad inputs of ``out`` are listed: the whole output name plus ``.errors.csv``.

    ``all.h5`` and ``all.parquet`` get ``all.h5.errors.csv`` and
    ``all.parquet.errors.csv``: outputs never share an errors file.
    """
    out = Path(out)
    return out.with_name(out.name + ".errors.csv")


def write_errors_csv(path: str | Path, errors: Sequence[FileError]) -> None:
    """Write ``path,reason`` rows atomically."""
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        for error in errors:
            writer.writerow([printable_path(error.path), error.reason])


class ErrorsFileDamaged(ValueError):
    """An errors file that is not the ``path,reason`` CSV a job writes: names the file."""


def read_errors_csv(path: str | Path) -> list[FileError]:
    """The rows of an errors file (none when it does not exist).

    Raises `ErrorsFileDamaged` when it is not UTF-8 ``path,reason`` CSV.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != ["path", "reason"]:
                raise ErrorsFileDamaged(
                    f"{path}: not an errors file (its header is not 'path,reason'); "
                    "move it away or delete it"
                )
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ErrorsFileDamaged(
            f"{path}: not an errors file ({exc}); move it away or delete it"
        ) from None
    if any(row["reason"] is None or None in row for row in rows):
        raise ErrorsFileDamaged(
            f"{path}: not an errors file (a row without exactly two fields); "
            "move it away or delete it"
        )
    return [FileError(row["path"], row["reason"]) for row in rows]


def file_stamp(path: str) -> bytes:
    """The path with its file's size, modification time and inode: what changes when the file
    is repaired, replaced or truncated."""
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    except OSError as exc:
        stamp = f"error:{exc.errno}"
    return path.encode("utf-8", "surrogateescape") + b"\0" + stamp.encode() + b"\0"


def inputs_fingerprint(paths: Iterable[str]) -> str:
    """A short digest of the paths' `file_stamp`.

    A chunk committed under this name is stale once any of its files changed
    (repaired, replaced, truncated): a resumed run reads it again.
    """
    sha = hashlib.sha256()
    for path in paths:
        sha.update(file_stamp(path))
    return sha.hexdigest()[:16]


def lock_path(out: str | Path) -> Path:
    """The lock file of an output: ``OUT.lock`` beside it, there while a run writes ``OUT``.

    ``.`` and ``..`` (a folder output) name the folder they stand for, from any working folder.
    """
    out = Path(os.path.abspath(out))
    return out.with_name(out.name + ".lock")


@contextmanager
def output_lock(out: str | Path, *, make_folder: bool = True) -> Iterator[None]:
    """Hold the only right to write ``out`` for the block; refuse at once if another run has it.

    The lock is an ``flock`` on ``OUT.lock``, so the kernel releases it when the
    holder dies (even by kill -9): a later run never waits for a dead one.
    Raises `OutputBusy` naming the holder (pid, host, start time). ``out``'s folder is
    created unless ``make_folder`` is false: then a missing one is a `JobIOError` naming ``out``.
    """
    path = lock_path(out)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd, path, writable = _open_lock(path, out)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputBusy(
                f"{out} is being written by another run ({holder}); wait for it to finish "
                "or stop it, then run the command again"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and lock
    if writable:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}".encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # another user's file in a sticky folder stays
            path.unlink(missing_ok=True)
        os.close(fd)


def _open_lock(path: Path, out: str | Path) -> tuple[int, Path, bool]:
    """``out``'s lock file opened: (descriptor, its path, whether it was opened to write).

    Another user's lock file is opened to read (``flock`` works so too). A
    folder output whose parent cannot be written (``--out .`` in a folder of a
    read-only one) is locked by ``OUT/.lock`` inside it instead.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), path, True
    except FileNotFoundError as exc:  # no folder: name the output people gave, not its lock
        raise JobIOError(describe_os_error(exc, out)) from None
    except OSError as exc:
        if not is_not_writable(exc):
            raise JobIOError(describe_os_error(exc, path)) from None
        refused = exc
    try:
        return os.open(path, os.O_RDONLY), path, False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise JobIOError(describe_os_error(exc, path)) from None
    inside = Path(os.path.abspath(out), ".lock")
    if inside != path and inside.parent.is_dir():
        return _open_lock(inside, out)
    raise JobIOError(describe_os_error(refused, path))


@contextmanager
def output_locks(outputs: Iterable[tuple[str | Path, bool]]) -> Iterator[None]:
    """`output_lock` on each ``(out, make_folder)`` for the block: a run of several outputs
    holds them all, and an output named twice (``c.csv``, ``./c.csv``) is locked once."""
    with ExitStack() as stack:
        held: set[Path] = set()
        for out, make_folder in outputs:
            if lock_path(out) not in held:
                held.add(lock_path(out))
                stack.enter_context(output_lock(out, make_folder=make_folder))
        yield


# --- worker processes ---------------------------------------------------------------------


def _watch_parent(parent: int, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        if not process_alive(parent):
            os._exit(1)  # the run is gone: stop before writing anything else


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's counts; so does one
    the system will not say about: what it guards is kept).

    A zombie, dead and waiting for its parent to notice (a run killed under a
    harness that has not reaped it), is not running.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return True  # another PID namespace's /proc: it cannot say
    except OSError:
        return True  # no /proc (not Linux)
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False  # gone since
    except OSError:
        return True
    state = stat[stat.rfind(b")") + 2 :][:1]  # the field after "(command)"
    return state not in (b"Z", b"X")


def die_with_parent(parent: int, *, every_s: float = 0.5) -> None:
    """In a worker process: exit when process ``parent`` (the run) is gone.

    A run killed with kill -9 leaves no workers behind to write shards beside a
    resumed run. Ctrl-C and SIGTERM are left to the parent, which stops the pool:
    a worker ignores them, so that an interrupted run prints one message, not a
    traceback per worker, and a worker stopped with its process group (as
    ``timeout`` and batch schedulers stop a job) cannot die halfway through
    sending a result, which left the pool waiting for the rest of it for ever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    thread = threading.Thread(
        target=_watch_parent, args=(parent, every_s), name="die-with-parent", daemon=True
    )
    thread.start()


def describe_dead_worker(exc: BaseException, unguarded: str | None = None) -> str:
    """The message for a worker that died under a run (``BrokenProcessPool``).

    ``unguarded`` (`spectraldl.jobs.processes.unguarded_main_call`) names the script line
    that every worker re-ran at start-up: the cause then, not memory.
    """
    if unguarded is not None:
        return (
            "a worker process died at start-up: each worker runs the main script again, "
            f'and {unguarded} starts this work outside `if __name__ == "__main__":`, '
            "so every worker started it once more and failed. Put the code that starts "
            "the work under that guard (e.g. a main() called from it)"
        )
    return (
        f"a worker process died ({exc}); it may have been killed by the out-of-memory killer. "
        "The finished chunks are kept: run the same command to resume, with fewer --workers "
        "if memory is short"
    )
