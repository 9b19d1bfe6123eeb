"""``spectraldl report``: one self-contained HTML report of a run directory."""

from __future__ import annotations

from pathlib import Path

import click

from spectraldl.cli._options import out_option


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@out_option("HTML file to write (default: RUN_DIR/report.html).")
@click.option(
    "--gallery-sample",
    default=12,
    show_default=True,
    help="Candidate gallery images to embed.",
)
def report_command(run_dir: Path, out: Path | None, gallery_sample: int) -> None:
    """Write one HTML file describing the run in RUN_DIR, images embedded.

    Sections: data (archives, counts, classes, quality flags), PCA/t-SNE
    maps, training curves and confusion matrices, classification counts per
    class (beside the thesis' LAMOST DR1 table), a sample of the candidate
    gallery, the benchmarks' performance tables and the provenance. Parts
    missing from the run are named at the top. The file opens offline.

    \b
    Example:
      spectraldl report demo-run -o demo-run/report.html
    """
    from spectraldl.analysis.report import ReportError, write_report

    try:
        report = write_report(run_dir, out, gallery_sample=gallery_sample)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {report.path} ({report.path.stat().st_size / 1e6:.1f} MB)")
    for what in report.missing:
        click.echo(f"missing from the run: {what}")
