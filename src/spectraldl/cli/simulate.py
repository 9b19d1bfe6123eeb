"""``spectraldl simulate``: labelled synthetic archives in the real file layouts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spectraldl.cli._options import FiniteFloatRange, seed_option, stops_cleanly, workers_option
from spectraldl.cli._progress import progress_bar

WORKER_MODULES = ("spectraldl.simulate.archive",)
"""The module of the task local workers run (`_chunk`), which their server imports first."""

if TYPE_CHECKING:
    from spectraldl.simulate import Population


class _SimulatedArchiveChoice(click.Choice):
    """The registered simulated archives (`spectraldl.simulate.registry`).

    Listing them imports every survey's simulation, so they are looked up only
    when the option is shown, or checked by the command (`checked`) once it
    has started its workers' server: parsing would otherwise import them first
    and delay the workers by as much.
    """

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> Sequence[Any]:
        """The registered archives' names."""
        from spectraldl.simulate.registry import simulated_archives

        return tuple(simulated_archives())

    @choices.setter
    def choices(self, value: Sequence[Any]) -> None:
        """Ignored (`click.Choice.__init__` sets it): the registry is the list."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The value as given: `checked` checks it."""
        return value

    @staticmethod
    def checked(value: str) -> str:
        """``value`` if it names a registered archive, else the usage error click gives.

        Checked after the other options, so a missing one is reported first.
        """
        ctx = click.get_current_context()
        param = next(p for p in ctx.command.params if p.name == "archive")
        assert isinstance(param.type, _SimulatedArchiveChoice)
        return str(click.Choice.convert(param.type, value, param, ctx))


@click.command("simulate")
@click.option(
    "--archive",
    type=_SimulatedArchiveChoice(),
    required=True,
    help="Which archive to imitate (its file layouts, instrument and population).",
)
@click.option(
    "-n", "n", type=click.IntRange(min=0), required=True, help="Number of files to write."
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the FITS files, truth.csv and simulation.json into.",
)
@seed_option("Same seed, same bytes (any --workers).")
@click.option(
    "--mix",
    default=None,
    help="Class fractions, e.g. emission=0.4,absorption=0.46,double-peak=0.11,noise=0.03 "
    "(normalised; default per archive).",
)
@click.option(
    "--junk",
    type=FiniteFloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Fraction of broken files (empty, truncated, not FITS, NaN flux, unknown layout, "
    "no H-alpha...).",
)
@click.option(
    "--release",
    type=click.Choice(["dr1", "dr2", "dr6", "dr8"]),
    default="dr1",
    show_default=True,
    help="LAMOST layout: dr1 image (Subcontinuum row), dr2 image (float64), dr6 image, dr8 table.",
)
@click.option(
    "--form",
    type=click.Choice(["ssap", "raw"]),
    default="ssap",
    show_default=True,
    help="Ondřejov layout: ssap (normalised table, as the SSAP service serves) or raw (ADU image).",
)
@workers_option("Worker processes (the files do not depend on it).")
@click.option(
    "--gzip/--no-gzip",
    "compress",
    default=None,
    help="Compress the files (default: LAMOST yes, Ondřejov no).",
)
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Index of the first spectrum (to extend a set).",
)
@click.option(
    "--plate-systematics",
    is_flag=True,
    help="LAMOST: spectra of one plate share their sky residual and spectrograph response, "
    "and plates differ (off: the files of earlier versions, byte for byte).",
)
@click.option(
    "--fibres-per-plate",
    type=click.IntRange(min=1),
    default=None,
    help="With --plate-systematics: spectra per plate [default: LAMOST's 4000].",
)
@stops_cleanly("truth.csv does not list this run's files yet: run the same command to finish")
def simulate_command(
    archive: str,
    n: int,
    out: Path,
    seed: int,
    mix: str | None,
    junk: float,
    release: str,
    form: str,
    workers: int,
    compress: bool | None,
    start: int,
    plate_systematics: bool,
    fibres_per_plate: int | None,
) -> None:
    """Write N synthetic spectra of a real archive's layout, with their truth.

    Spectra are built on real stars (MILES, MaStar), given H-alpha emission or
    a disc's double peak, and observed through a model of the instrument and
    its pipeline (resolution, noise, sky, cosmic rays, masks). OUT/truth.csv
    lists every file with its label and every parameter drawn; pass it to
    `spectraldl ingest --labels`.

    An OUT that holds a simulation already (its simulation.json) is extended
    by a run of the same settings with another --start: truth.csv keeps its
    rows and gains the new ones (in index order), and simulation.json lists
    the indices covered. A run of other settings into it is refused, naming
    those that differ.

    \b
    Example:
      spectraldl simulate --archive lamost -n 30000 -o out/lamost --release dr1 --junk 0.01
      spectraldl simulate --archive lamost -n 1000 --start 30000 -o out/lamost --junk 0.01
    """
    from spectraldl.jobs.backends import prestart_local_workers

    prestart_local_workers("local", workers if n > 1 else 1, WORKER_MODULES)
    archive = _SimulatedArchiveChoice.checked(archive)
    from spectraldl.core.errors import describe_os_error
    from spectraldl.jobs.files import JobIOError, OutputBusy
    from spectraldl.simulate import MixError, simulate_archive
    from spectraldl.simulate.registry import simulated_archive, simulated_archives

    if (plate_systematics or fibres_per_plate) and not simulated_archive(archive).plates:
        with_plates = " or ".join(a.name for a in simulated_archives().values() if a.plates)
        raise click.UsageError(
            f"--plate-systematics and --fibres-per-plate are for --archive {with_plates}"
        )
    if fibres_per_plate and not plate_systematics:
        raise click.UsageError("--fibres-per-plate needs --plate-systematics")
    _refuse_other_archives_layout(archive)

    try:
        with progress_bar("simulate") as update:
            summary = simulate_archive(
                out,
                archive=archive,
                n=n,
                seed=seed,
                mix=mix,
                junk=junk,
                release=release,
                form=form,
                workers=workers,
                compress=compress,
                start=start,
                population=_population(archive, mix, plate_systematics, fibres_per_plate),
                progress=update,
            )
    except (MixError, ValueError, OutputBusy, JobIOError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only folder: the path, not only the errno
        raise click.ClickException(describe_os_error(exc, where=exc.filename or out)) from None
    click.echo(summary.line())


def _refuse_other_archives_layout(archive: str) -> None:
    """A usage error for ``--release`` or ``--form`` given for an archive whose layouts the
    other one picks (``--archive ondrejov --release dr8`` was silently ignored)."""
    from click.core import ParameterSource

    from spectraldl.simulate.registry import simulated_archive, simulated_archives

    ctx = click.get_current_context()
    own = simulated_archive(archive).layout_option
    for option in ("release", "form"):
        given = ctx.get_parameter_source(option) is ParameterSource.COMMANDLINE
        if given and option != own:
            users = " or ".join(
                a.name for a in simulated_archives().values() if a.layout_option == option
            )
            raise click.UsageError(f"--{option} is for --archive {users}; {archive} has --{own}")


def _population(
    archive: str, mix: str | None, plate_systematics: bool, fibres_per_plate: int | None
) -> Population | None:
    """The population the options ask for; None (the default one) without plate systematics."""
    from dataclasses import replace

    from spectraldl.simulate import Population

    if not plate_systematics:
        return None
    population = replace(Population.default(archive, mix), plate_systematics=True)
    if fibres_per_plate:
        population = replace(population, fibres_per_plate=fibres_per_plate)
    return population
