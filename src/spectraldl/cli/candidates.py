"""``spectraldl candidates``: predictions into a catalogue, gallery and cross-match."""

from __future__ import annotations

from pathlib import Path

import click

from spectraldl.cli._options import (
    START_AGAIN,
    FiniteFloatRange,
    out_option,
    stops_cleanly,
    workers_option,
)

MAX_RADIUS_ARCSEC = 3600.0
"""The widest cross-match (1 degree): wider, every known star is "recovered" by chance."""


@click.command("candidates")
@click.argument("predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@out_option(
    "Catalogue to write: .csv, .ecsv, .fits or .vot (repeat for several formats).",
    dest="outs",
    multiple=True,
)
@click.option(
    "--classes",
    default="emission,double-peak",
    show_default=True,
    help="Predicted classes that make a candidate (comma-separated).",
)
@click.option(
    "--min-prob",
    default=0.9,
    show_default=True,
    type=FiniteFloatRange(0.0, 1.0),
    help="Least probability of the predicted class.",
)
@click.option(
    "--include-flagged",
    is_flag=True,
    help="Keep candidates flagged NOVEL, LOW_SNR or unusable (excluded by default).",
)
@click.option(
    "--min-ew",
    "min_ew",
    type=FiniteFloatRange(min=0.0),
    default=None,
    metavar="AA",
    help="Keep only H-alpha emission at least this strong: equivalent width <= -AA Å "
    "(measured; unmeasurable lines never pass).",
)
@click.option(
    "--profile-type",
    "profile_types",
    default=None,
    metavar="NAMES",
    help="Keep only these measured H-alpha profile types (comma-separated): emission, "
    "double-peak, emission-in-absorption, double-peak-in-absorption, p-cygni, "
    "inverse-p-cygni, absorption, unmeasurable.",
)
@click.option(
    "--gallery",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for one PNG per candidate and an offline index.html contact sheet.",
)
@click.option(
    "--gallery-max",
    type=click.IntRange(min=1),
    default=None,
    help="Draw only the N most probable candidates.",
)
@workers_option("Processes drawing the gallery.")
@click.option(
    "--known",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of known emission-line stars (designation, or ra and dec columns) to cross-match.",
)
@click.option(
    "--radius-arcsec",
    type=FiniteFloatRange(0.0, MAX_RADIUS_ARCSEC, min_open=True),
    default=10.0,
    show_default=True,
    help="Cross-match radius in arcseconds.",
)
@stops_cleanly(START_AGAIN)
def candidates_command(
    predictions: Path,
    outs: tuple[Path, ...],
    classes: str,
    min_prob: float,
    include_flagged: bool,
    min_ew: float | None,
    profile_types: str | None,
    gallery: Path | None,
    gallery_max: int | None,
    workers: int,
    known: Path | None,
    radius_arcsec: float,
) -> None:
    """Select emission-line candidates from PREDICTIONS (from `spectraldl classify`).

    A candidate is predicted as one of --classes with at least --min-prob and
    carries none of NOVEL (unlike the training data), LOW_SNR and the flags of
    unusable data (BAD_IVAR, NONPOSITIVE_FLUX, SNR_MISMATCH), unless
    --include-flagged; --min-ew and --profile-type cut on the H-alpha line
    measured in each spectrum (`spectraldl.prep.measure`). Prints the spectra per
    class and per quality flag, writes the catalogue (units and descriptions
    on every column in .fits, .vot and .ecsv), the gallery, and with --known, which known stars were
    recovered and why the others were missed (CATALOGUE.known.csv).

    \b
    Example:
      spectraldl candidates dr1.parquet -o candidates.csv -o candidates.fits --gallery gallery/
      spectraldl candidates dr1.parquet --min-ew 5 --profile-type double-peak -o discs.vot
    """
    from spectraldl.catalogue.candidates import CandidatesError, Selection, find_candidates
    from spectraldl.catalogue.crossmatch import KnownListError
    from spectraldl.core.errors import describe_os_error
    from spectraldl.io.predictions import PredictionsError
    from spectraldl.jobs.files import JobIOError, OutputBusy

    selection = Selection(
        classes=_class_names(classes),
        min_prob=min_prob,
        include_flagged=include_flagged,
        min_ew_aa=min_ew,
        profile_types=_names(profile_types, "--profile-type") if profile_types is not None else (),
    )
    try:
        summary = find_candidates(
            predictions,
            outs,
            selection=selection,
            known=known,
            radius_arcsec=radius_arcsec,
            gallery=gallery,
            gallery_max=gallery_max,
            workers=workers,
            log=click.echo,
        )
    except (CandidatesError, KnownListError, PredictionsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OutputBusy, JobIOError) as exc:  # another run writes an output; no such folder
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only or missing folder
        raise click.ClickException(describe_os_error(exc)) from None
    click.echo("")
    click.echo(summary.counts.table())
    click.echo("")
    click.echo(f"{len(summary.catalogue)} candidates")
    if summary.crossmatch is not None:
        click.echo("")
        for line in summary.crossmatch.lines():
            click.echo(line)
        if summary.known_csv is not None:
            click.echo(f"per-star cross-match: {summary.known_csv}")


def _names(text: str, option: str) -> tuple[str, ...]:
    """The comma-separated names of ``option``; none at all is a usage error."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise click.BadParameter(f"{text!r} names nothing: give at least one", param_hint=option)
    return names


def _class_names(text: str) -> tuple[str, ...]:
    """``--classes`` as class names (`spectraldl.io.labels.CLASSES`; codes and aliases taken)."""
    from spectraldl.io.labels import CLASSES, label_code

    try:
        codes = [label_code(name.replace("_", "-")) for name in _names(text, "--classes")]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--classes") from None
    return tuple(dict.fromkeys(CLASSES[code] for code in codes))
