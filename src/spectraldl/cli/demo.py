"""``spectraldl demo``: the whole method end to end on the bundled data."""

from __future__ import annotations

import os
from pathlib import Path

import click

from spectraldl.cli._options import (
    job_errors,
    out_option,
    seed_option,
    stops_cleanly,
    workers_option,
)
from spectraldl.cli._progress import progress_bar


@click.command("demo")
@out_option("Run directory (resumed if present).", folder=True, default="demo-run")
@click.option(
    "--quick",
    is_flag=True,
    help="Small sizes (about a minute on 2 cores): a check that every step works, for tests; "
    "not a model to use.",
)
@seed_option("Seed of every random step.")
@workers_option("Worker processes (the results do not depend on it).")
@stops_cleanly("the finished steps are kept: run the same command to resume")
def demo_command(out: Path, quick: bool, seed: int, workers: int) -> None:
    """Run the method end to end on bundled real and simulated spectra into OUT.

    Simulates a labelled training set (Ondřejov-like and LAMOST-like) and a
    LAMOST-like archive (with the bundled real spectra among them), ingests
    both, trains the thesis CNN, classifies the archive, selects candidates
    with a gallery and a cross-match, maps both archives, measures the blur
    and writes OUT/report.html. Re-running with the same OUT skips finished steps.

    \b
    Example:
      spectraldl demo --out demo-run        # several minutes (README.md: the measured time)
      spectraldl demo --out quick --quick   # about a minute on 2 cores
    """
    # Idle OpenMP threads spinning on a busy 2-core machine slow everything else.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from spectraldl.demo import DemoError, run_demo

    try:
        with job_errors():
            run = run_demo(
                out, quick=quick, seed=seed, workers=workers, log=click.echo, progress=progress_bar
            )
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"\nResults are in {run.out.resolve()}/ ; open {run.out / 'report.html'}")
    for name in sorted(p.name for p in run.out.iterdir() if not p.name.startswith(".")):
        click.echo(f"  {name}")
    command = _this_command()
    database = f"sqlite:///{run.out.resolve() / 'web.db'}"
    click.echo(
        f"Vet the candidates in the web tool: {command} users add NAME --admin --db {database}"
        f" && {command} serve --db {database}"
    )


def _this_command() -> str:
    """How to type ``spectraldl`` in this shell: the script that runs now, when not on PATH.

    After ``make demo`` the command lives in ``.venv/bin`` and the shell may not
    have that environment active; its path works either way.
    """
    import shutil
    import sys
    from pathlib import Path

    script = Path(sys.argv[0])
    if script.name != "spectraldl" or shutil.which("spectraldl") == str(script.resolve()):
        return "spectraldl"
    try:
        return str(script.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(script.resolve())
