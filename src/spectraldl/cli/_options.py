"""Options and error handling shared by the commands: one name and one meaning everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from spectraldl.jobs.processes import usable_cores


def workers_option(help_text: str) -> Callable[[Any], Any]:
    """``--workers``/``-j``: worker processes or threads, all usable cores by default."""
    return click.option(
        "--workers",
        "-j",
        type=click.IntRange(min=1),
        default=usable_cores(),
        show_default="number of CPUs",
        help=help_text,
    )


def scheduler_option() -> Callable[[Any], Any]:
    """``--scheduler``: where a job's chunks run (`spectraldl.jobs.backends.open_backend`)."""
    return click.option(
        "--scheduler",
        default="local",
        show_default=True,
        help="local, dask-local (starts a Dask LocalCluster) or tcp://HOST:PORT (joins a "
        "running Dask scheduler).",
    )


class _OutPath(click.Path):
    """`click.Path` that refuses an empty name (it would mean the current folder)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path names no file or folder", param, ctx)
        return super().convert(value, param, ctx)


def out_option(
    help_text: str,
    *,
    folder: bool = False,
    dest: str = "out",
    required: bool = False,
    default: str | None = None,
    multiple: bool = False,
) -> Callable[[Any], Any]:
    """``--out``/``-o``: the file a command writes (a directory with ``folder``)."""
    shown: dict[str, Any] = {"default": default, "show_default": True} if default else {}
    return click.option(
        "-o",
        "--out",
        dest,
        required=required,
        multiple=multiple,
        type=_OutPath(file_okay=not folder, dir_okay=folder, path_type=Path),
        help=help_text,
        **shown,
    )


def seed_option(help_text: str) -> Callable[[Any], Any]:
    """``--seed``: the seed of a command's random steps, 0 by default."""
    return click.option("--seed", default=0, show_default=True, help=help_text)


DB_HELP = (
    "Database URL: a SQLite file (sqlite:///path.db or a plain path) or PostgreSQL "
    "(postgresql+psycopg://user:password@host/db). Default: $SPECTRALDL_DB, else "
    "./spectraldl.db."
)


def db_option(help_text: str = DB_HELP, *, required: bool = False) -> Callable[[Any], Any]:
    """``--db URL``: the web tool's database (`spectraldl.web.db.open_database`)."""
    return click.option(
        "--db", "db_url", metavar="URL", default=None, required=required, help=help_text
    )


@contextmanager
def job_errors() -> Iterator[None]:
    """Turn the failures of a resumable job into one line for people, exit status 1.

    Another run on the same output, a full or read-only disk, a dead worker
    and Ctrl-C each end the command with a message that says what to do;
    the finished chunks stay for the resumed run.
    """
    from spectraldl.jobs.files import JobIOError, OutputBusy, WorkerDied

    try:
        yield
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted; the finished chunks are kept: run the same command to resume"
        ) from None
    except (JobIOError, OutputBusy, WorkerDied) as exc:
        raise click.ClickException(str(exc)) from None
