"""``spectraldl demo``: the whole method end to end on the bundled data."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--out",
    "-o",
    default="demo-run",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory (resumed if present).",
)
@click.option("--quick", is_flag=True, help="Small sizes (seconds, not minutes): for tests.")
@click.option("--seed", default=0, show_default=True, help="Seed of every random step.")
@click.option("--workers", "-j", default=2, show_default=True, help="Worker processes.")
def demo_command(out: Path, quick: bool, seed: int, workers: int) -> None:
    """Run the method end to end on bundled real and simulated spectra into OUT.

    Writes OUT/archive/ (a FITS tree), OUT/training.h5, OUT/archive.h5 and the
    later stages' outputs, then prints where the results are. Re-running with
    the same OUT skips finished steps.
    """
    from spectraldl.demo import run_demo

    run = run_demo(out, quick=quick, seed=seed, workers=workers, log=click.echo)
    click.echo(f"\nResults are in {run.out.resolve()}/")
    for name in sorted(p.name for p in run.out.iterdir()):
        click.echo(f"  {name}")
