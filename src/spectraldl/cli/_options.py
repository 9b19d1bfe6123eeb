"""Options and error handling shared by the commands: one name and one meaning everywhere."""

from __future__ import annotations

import functools
import math
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from spectraldl.core.signals import Terminated, stops_raise
from spectraldl.jobs.backends import DASK_SCHEMES, scheduler_address_problem
from spectraldl.jobs.processes import usable_cores


class FiniteFloatRange(click.FloatRange):
    """A float range that also refuses ``nan`` and ``inf`` (click's ranges let ``nan`` through:
    every comparison with it is false), for options whose value must be a real number."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The value as a float in the range, or click's usage error naming the option."""
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


LEARNING_RATE = FiniteFloatRange(0.0, 1.0, min_open=True)
"""Adam's step size (``--lr`` of train and learn): 0 trains nothing, above 1 only diverges."""

SEED_RANGE = click.IntRange(0, 2**32 - 1)
"""Seeds every random library accepts (NumPy, scikit-learn's random_state, PyTorch)."""

WORKERS_PER_CORE = 4
"""``--workers`` (and ``--threads``) above this many per usable core is lowered to it, with a
note on stderr: more only compete for the same cores (and each worker process costs memory)."""


def capped_per_core(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """An option's callback: ``value``, or `WORKERS_PER_CORE` per usable core when it asks for
    more (said once on stderr)."""
    limit = WORKERS_PER_CORE * usable_cores()
    if value is not None and value > limit:
        click.echo(
            f"{param.opts[0]} {value} is more than {WORKERS_PER_CORE} per usable core "
            f"({usable_cores()} here): using {limit}",
            err=True,
        )
        return limit
    return value


def workers_option(help_text: str) -> Callable[[Any], Any]:
    """``--workers``/``-j``: worker processes or threads, all usable cores by default, at most
    `WORKERS_PER_CORE` per usable core (more would only compete for the same cores)."""
    return click.option(
        "--workers",
        "-j",
        type=click.IntRange(min=1),
        default=usable_cores(),
        show_default="number of CPUs",
        callback=capped_per_core,
        help=f"{help_text} At most {WORKERS_PER_CORE} per usable core: more are lowered to that.",
    )


def _known_scheduler(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--scheduler``'s value when `open_backend` knows it, else a usage error before any work."""
    if value.startswith(DASK_SCHEMES):
        problem = scheduler_address_problem(value)
        if problem:
            raise click.BadParameter(problem)
        return value
    if value in ("local", "dask-local"):
        return value
    raise click.BadParameter(
        f"unknown scheduler {value!r}: use local, dask-local or tcp://HOST:PORT"
    )


def scheduler_option() -> Callable[[Any], Any]:
    """``--scheduler``: where a job's chunks run (`spectraldl.jobs.backends.open_backend`)."""
    return click.option(
        "--scheduler",
        default="local",
        show_default=True,
        callback=_known_scheduler,
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
    return click.option("--seed", type=SEED_RANGE, default=0, show_default=True, help=help_text)


class _Device(click.ParamType):
    """auto, cpu, cuda or cuda:N (the N-th GPU of a machine with several)."""

    name = "[auto|cpu|cuda|cuda:N]"

    def get_metavar(self, *_args: Any, **_kwargs: Any) -> str:
        return self.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip().lower()
        if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
            return text
        self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N", param, ctx)


def device_option(
    help_text: str = "Where the network runs (auto: CUDA when available).",
) -> Callable[[Any], Any]:
    """``--device``: where PyTorch runs the network (`spectraldl.ml.modelcard.select_device`)."""
    return click.option(
        "--device", type=_Device(), default="auto", show_default=True, help=help_text
    )


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

    Another run on the same output, a full or read-only disk and a dead worker
    each end the command with a message that says what to do; the finished
    chunks stay for the resumed run (Ctrl-C and SIGTERM: `stops_cleanly`).
    """
    from spectraldl.jobs.files import InputsUnseen, JobIOError, OutputBusy, WorkerDied

    try:
        yield
    except (JobIOError, OutputBusy, WorkerDied, InputsUnseen) as exc:
        raise click.ClickException(str(exc)) from None


RESUME_CHUNKS = "the finished chunks are kept: run the same command to resume"
"""What an interrupted ingest or classify keeps and how it goes on (`stops_cleanly`)."""

START_AGAIN = "run the same command to start again"
"""What to do after interrupting a command that does not resume (`stops_cleanly`)."""


class _TerminatedExit(click.ClickException):
    """The one line of a command stopped by SIGTERM; exit status 143 (128 + 15), what a
    shell reports for a process killed by SIGTERM."""

    exit_code = 128 + signal.SIGTERM


P = ParamSpec("P")
R = TypeVar("R")


def stops_cleanly(resume: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A long command's decorator: Ctrl-C and SIGTERM end it with one line, no traceback.

    The line says it was interrupted (exit status 1) or terminated (143) and
    then ``resume``: what is kept and how to go on, or what the interrupted step
    put in the exception's first argument where it knows better. A second
    signal ends the command at once (`spectraldl.core.signals`). Put it under
    the click decorators, on the command's function.
    """

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with stops_raise():
                try:
                    return command(*args, **kwargs)
                except Terminated as stop:
                    then = stop.args[0] if stop.args else resume
                    raise _TerminatedExit(f"terminated (SIGTERM); {then}") from None
                except KeyboardInterrupt as stop:
                    then = stop.args[0] if stop.args else resume
                    raise click.ClickException(f"interrupted; {then}") from None

        return run

    return decorate
