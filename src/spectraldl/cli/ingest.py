"""``spectraldl ingest``: many spectrum files into one HDF5 dataset."""

from __future__ import annotations

from pathlib import Path

import click

from spectraldl.cli._options import (
    RESUME_CHUNKS,
    job_errors,
    scheduler_option,
    stops_cleanly,
    workers_option,
)
from spectraldl.cli._progress import progress_bar

WORKER_MODULES = ("spectraldl.jobs.ingest",)
"""The module of the task local workers run (`read_chunk`), which their server imports first."""

DATASET_SUFFIXES = (".h5", ".hdf5")
"""`spectraldl.io.dataset.HDF5_SUFFIXES`, named here so that parsing imports no h5py."""


def _dataset_path(_ctx: click.Context, _param: click.Parameter, value: Path) -> Path:
    """OUT named as what it is, an HDF5 dataset: ``x.fits`` would hide one under a FITS name."""
    if value.suffix.lower() not in DATASET_SUFFIXES:
        raise click.BadParameter(
            f"{value}: the dataset ingest writes is an HDF5 file; name it .h5 or .hdf5 "
            "(FITS files are its inputs)"
        )
    return value


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_dataset_path,
    help="Dataset (.h5 or .hdf5) to create, resume or append to.",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="CSV with columns id,label (file name, stem or ivo:// id; class name or code 0-4); "
    "repeat for several lists, read as one (an id they label differently is left unlabelled).",
)
@workers_option("Worker processes (the result does not depend on it).")
@scheduler_option()
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 1), writing nothing, if any file is bad or any label conflicts or matches "
    "no spectrum.",
)
@click.option(
    "--origin",
    type=click.Choice(["real", "synthetic"]),
    default="real",
    show_default=True,
    help="Recorded per row in meta/origin; files spectraldl simulate wrote are synthetic anyway.",
)
@stops_cleanly(RESUME_CHUNKS)
def ingest_command(
    paths: tuple[Path, ...],
    out: Path,
    labels_csv: tuple[Path, ...],
    workers: int,
    scheduler: str,
    strict: bool,
    origin: str,
) -> None:
    """Read, preprocess and store spectra from PATHS (files or directory trees).

    Directories are walked for .fits, .fit and .fts files, each also gzipped
    (.fits.gz, .fit.gz, .fts.gz), in any letter case; a file named here is
    always tried. Bad files never stop the run: they are listed with a
    reason in OUT.errors.csv (OUT's whole name: all.h5.errors.csv). Another run
    writing OUT at the same time is refused at once. An interrupted run (Ctrl-C,
    SIGTERM, even kill -9) resumes where it stopped when the same command is
    given again; a file changed since it was read is read again.

    With --scheduler the chunks run on a Dask cluster (the workers must see
    the files at the same paths); the dataset is the same file.

    \b
    Example:
      spectraldl ingest ondrejov/ -o training.h5 --labels labels.csv -j 4
    """
    from spectraldl.jobs.backends import open_backend, prestart_local_workers

    prestart_local_workers(scheduler, workers, WORKER_MODULES)
    from spectraldl.io.dataset import DatasetError
    from spectraldl.io.labels import LabelError
    from spectraldl.jobs.ingest import IngestFailed, ingest

    try:
        with (
            job_errors(),
            open_backend(scheduler, workers=workers) as backend,
            progress_bar("ingest") as update,
        ):
            summary = ingest(
                paths,
                out,
                labels_csv=labels_csv,
                backend=backend,
                strict=strict,
                origin=origin,
                progress=update,
            )
    except (IngestFailed, LabelError, DatasetError, FileNotFoundError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary.line())
