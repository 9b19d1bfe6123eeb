"""``spectraldl calibrate-blur``: measure the Ondřejov blur on cross-matched real pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spectraldl.cli._options import START_AGAIN, FiniteFloatRange, seed_option, stops_cleanly
from spectraldl.cli._progress import progress_bar

if TYPE_CHECKING:
    from spectraldl.analysis.calibrate import BlurCalibration


@click.command("calibrate-blur")
@click.option(
    "--pairs",
    "pairs_csv",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV, no header: Ondřejov file, LAMOST file (only the names are used).",
)
@click.argument(
    "directories",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--space",
    type=click.Choice(["grid", "native"]),
    default="grid",
    show_default=True,
    help="Compare on the 140-point grid (what the network sees) or at LAMOST's own pixels.",
)
@click.option(
    "--max-sigma",
    type=FiniteFloatRange(0.0, 100.0, min_open=True),
    default=16.0,
    show_default=True,
    help="Largest trial sigma (px).",
)
@click.option(
    "--step",
    type=FiniteFloatRange(0.01, 10.0),
    default=0.25,
    show_default=True,
    help="Trial sigma step (px).",
)
@click.option(
    "--continuum-degree",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Degree of the fitted continuum ratio polynomial.",
)
@click.option(
    "--max-velocity",
    type=FiniteFloatRange(0.0, 1000.0),
    default=150.0,
    show_default=True,
    help="Largest velocity shift between the epochs searched (km/s).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=2),
    default=2000,
    show_default=True,
    help="Bootstrap resamples.",
)
@seed_option("Bootstrap seed.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"sigma_px", "uncertainty_px", "pairs"} only.'
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the mismatch-against-sigma figure here (PNG and SVG).",
)
@click.option(
    "--pair-plots",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for one figure per pair: as stored, in vacuum, blurred (the thesis' figures).",
)
@click.option(
    "--details",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every number (per-pair curves, skipped pairs) as JSON here.",
)
@stops_cleanly(START_AGAIN)
def calibrate_blur_command(
    pairs_csv: Path,
    directories: tuple[Path, ...],
    space: str,
    max_sigma: float,
    step: float,
    continuum_degree: int,
    max_velocity: float,
    bootstrap: int,
    seed: int,
    as_json: bool,
    plot: Path | None,
    pair_plots: Path | None,
    details: Path | None,
) -> None:
    """Measure the Gaussian blur (Ondřejov pixels) that matches LAMOST, on real pairs.

    DIRECTORIES (the Ondřejov and the LAMOST ones, in any order) are walked
    for the files the pairs CSV names, by file name (.fits, .fit or .fits.gz;
    the CSV's directories are ignored). Pairs whose files are missing or
    unusable are skipped and listed with the reason.
    For each pair a velocity shift and a continuum ratio are fitted as
    nuisance parameters at every trial sigma; the pairs are combined and a
    bootstrap over pairs gives the uncertainty. The thesis used 7.

    \b
    Example:
      spectraldl calibrate-blur --pairs cross-matched.csv data/ondrejov data/lamost --plot blur.png
    """
    import numpy as np

    from spectraldl.analysis.calibrate import CalibrationError, calibrate_blur, write_details
    from spectraldl.jobs.files import JobIOError, OutputBusy, output_locks

    if step <= 0 or max_sigma <= 2 * step:
        raise click.UsageError("--step must be > 0 and --max-sigma at least two steps")
    sigmas = np.round(np.arange(0.0, max_sigma + 1e-9, step), 4)
    # One run per output: two would rename each other's half-written figures or write
    # --details (not atomic) at once; the figures' folders are made, --details' is not.
    outputs = [(p, True) for p in (plot, pair_plots) if p is not None]
    outputs += [(details, False)] if details is not None else []
    try:
        with output_locks(outputs):
            with progress_bar("pairs", enabled=None if not as_json else False) as update:
                result = calibrate_blur(
                    pairs_csv,
                    directories,
                    directories,
                    space=space,  # type: ignore[arg-type]
                    sigmas_px=sigmas,
                    continuum_degree=continuum_degree,
                    max_velocity_km_s=max_velocity,
                    n_bootstrap=bootstrap,
                    seed=seed,
                    progress=update,
                )
            if details is not None:
                write_details(result, details)
            written = _draw(result, plot, pair_plots)
    except (CalibrationError, OutputBusy, JobIOError) as exc:
        raise click.ClickException(str(exc)) from None
    for missing in result.skipped:
        click.echo(
            f"skipped {Path(missing.ondrejov).name} / {Path(missing.lamost).name}: "
            f"{missing.reason}",
            err=True,
        )
    if as_json:
        click.echo(json.dumps(result.summary()))
        return
    _print_result(result, space)
    for path in written:
        click.echo(f"wrote {path}")


def _draw(result: BlurCalibration, plot: Path | None, pair_plots: Path | None) -> list[Path]:
    """The figures asked for: mismatch against sigma, and one per pair; the files written."""
    from spectraldl.analysis.calibrate import plot_calibration, plot_pair
    from spectraldl.io.archives import read_spectrum

    written = plot_calibration(result, plot) if plot is not None else []
    if pair_plots is not None:
        for fit in result.fits:
            written += plot_pair(
                read_spectrum(fit.ondrejov),
                read_spectrum(fit.lamost),
                pair_plots / fit.name,
                sigma_px=result.sigma_px,
            )
    return written


def _print_result(result: BlurCalibration, space: str) -> None:
    """Each pair's fit, then the measured sigma beside the prediction and the thesis' 7."""
    click.echo(f"{'pair':<48} {'object':<12} {'sigma px':>8} {'v km/s':>7} {'mismatch':>8}")
    for fit in result.fits:
        click.echo(
            f"{fit.name:<48} {fit.object[:12]:<12} {fit.sigma_px:8.2f} "
            f"{fit.best_velocity_km_s:7.1f} {fit.min_mismatch:8.4f}"
        )
    d = result.to_dict()
    lo, hi = result.interval_px
    click.echo(
        f"\nsigma = {result.sigma_px:.2f} ± {result.uncertainty_px:.2f} Ondřejov pixels "
        f"({d['sigma_aa']:.2f} Å; 95 % interval {lo:.2f}-{hi:.2f}) from {result.pairs} pairs "
        f"({space} space, {len(result.skipped)} skipped)"
    )
    click.echo(
        f"median of the pairs: {result.median_pair_sigma_px:.2f}; resolving powers "
        f"13 000 -> 1 800 predict {result.predicted_sigma_px:.2f}; thesis: 7 "
        f"({'inside' if result.thesis_in_interval else 'outside'} the interval; "
        f"{result.pairs_preferring_measured} of {result.pairs} pairs fit better at "
        f"{result.sigma_px:.2f} than at 7)"
    )
