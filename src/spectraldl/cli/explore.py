"""``spectraldl explore``: PCA and t-SNE maps of datasets, as figures and coordinates."""

from __future__ import annotations

from pathlib import Path

import click

from spectraldl.cli._options import (
    START_AGAIN,
    FiniteFloatRange,
    out_option,
    seed_option,
    stops_cleanly,
    workers_option,
)


def _all_or_at_least(least: int, param: click.Parameter, value: int) -> int:
    """``value`` when it is 0 (all) or at least ``least``; else click's usage error."""
    if 0 < value < least:
        raise click.BadParameter(f"{value} is too few: 0 (all) or at least {least}", param=param)
    return value


@click.command("explore")
@click.argument(
    "datasets", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@out_option(
    "Directory for the figures (PNG, SVG), coordinates (CSV) and summary.json.",
    folder=True,
    dest="out_dir",
    required=True,
)
@click.option(
    "--method",
    type=click.Choice(["pca", "tsne", "both"]),
    default="both",
    show_default=True,
    help="Which maps to make.",
)
@click.option(
    "--color-by",
    "colour_by",
    type=click.Choice(["label", "archive", "class"]),
    default="label",
    show_default=True,
    help="Colour points by dataset label, by archive, or by predicted class (--predictions).",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Predictions table (any classify format) with id and predicted_class (--color-by class).",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=50_000,
    show_default=True,
    callback=lambda ctx, param, value: _all_or_at_least(2, param, value),
    help="Random subset of each larger dataset (0: all rows; else at least 2).",
)
@click.option(
    "--tsne-max",
    type=click.IntRange(min=5),
    default=20_000,
    show_default=True,
    help="Most spectra in the t-SNE map, shared evenly between archives.",
)
@click.option(
    "--perplexity",
    type=FiniteFloatRange(min=1.0),
    default=40.0,
    show_default=True,
    help="t-SNE perplexity (about the neighbours each point keeps; lowered to a third of "
    "the spectra mapped when larger).",
)
@click.option(
    "--tsne-backend",
    type=click.Choice(["opentsne", "sklearn"]),
    default="opentsne",
    show_default=True,
    help="t-SNE implementation (openTSNE measured faster at equal quality).",
)
@workers_option("Threads for t-SNE.")
@seed_option("Random seed (subsets, PCA, t-SNE).")
@stops_cleanly(START_AGAIN)
def explore_command(
    datasets: tuple[Path, ...],
    out_dir: Path,
    method: str,
    colour_by: str,
    predictions: Path | None,
    max_rows: int,
    tsne_max: int,
    perplexity: float,
    tsne_backend: str,
    workers: int,
    seed: int,
) -> None:
    """Map DATASETS (spectraldl .h5 files) with PCA and t-SNE, all in one projection.

    Writes pca.png/.svg/.csv (the union of all datasets in one PCA), for
    several archives also pca-<archive>.* (each archive's own PCA; the
    Ondřejov one coloured by label is the thesis' figure), tsne.* (PCA to
    30 dimensions, then t-SNE with perplexity 40) and summary.json, which
    says how well the archives can be told apart in PCA space (ROC AUC 0.5:
    not at all; 1: perfectly).

    \b
    Example:
      spectraldl explore run/training.h5 run/archive.h5 -o run/explore
    """
    import os

    # Idle OpenMP threads (scikit-learn, openTSNE) sleep instead of spinning. Spinning
    # threads collapse on a machine shared with other jobs (a 0.3 s fit took 23 s);
    # it must be set before the OpenMP runtime loads, so here, not in the library.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from spectraldl.analysis.explore import ExploreError, explore
    from spectraldl.core.errors import describe_os_error
    from spectraldl.io.dataset import DatasetError
    from spectraldl.jobs.files import JobIOError, OutputBusy

    if colour_by == "class" and predictions is None:
        raise click.UsageError("--color-by class needs --predictions TABLE")
    try:
        result = explore(
            datasets,
            out_dir,
            method=method,  # type: ignore[arg-type]
            colour_by=colour_by,  # type: ignore[arg-type]
            predictions=predictions,
            max_rows_per_dataset=max_rows or None,
            tsne_max_points=tsne_max,
            tsne_backend=tsne_backend,  # type: ignore[arg-type]
            perplexity=perplexity,
            n_jobs=workers,
            seed=seed,
        )
    except (DatasetError, ExploreError, OutputBusy, JobIOError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only or missing folder
        raise click.ClickException(describe_os_error(exc)) from None
    summary = result.summary
    click.echo(f"{summary['rows_mapped']} spectra mapped into {result.out_dir}:")
    for name in summary["files"]:
        click.echo(f"  {name}")
    for entry in summary.get("pca", {}).get("separation", []):
        a, b = entry["groups"]
        auc = entry["auc"]
        auc_text = "n/a" if auc is None else f"{auc:.3f}"
        click.echo(
            f"{a} vs {b}: ROC AUC {auc_text} in PCA space (0.5 = indistinguishable), "
            f"centroid distance {entry['centroid_distance']:.2f} x spread"
        )
    if "tsne" in summary:
        tsne = summary["tsne"]
        click.echo(
            f"t-SNE of {tsne['rows']} spectra ({tsne['backend']}, perplexity "
            f"{tsne['perplexity']:g}) took {tsne['seconds']:.1f} s"
        )
