"""``spectraldl report``: one self-contained HTML report of a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from spectraldl.cli._options import START_AGAIN, db_option, out_option, stops_cleanly


def vetted_catalogues(db_url: str) -> dict[str, dict[str, Any]]:
    """The precision table of every ready catalogue of the web database, by name and id,
    each with the id of the model that made it (``model_id``: '' when not recorded)."""
    from sqlalchemy import select

    from spectraldl.web.db import open_existing
    from spectraldl.web.models import Catalogue
    from spectraldl.web.precision import catalogue_precision

    db = open_existing(db_url, upgrade=True)
    try:
        with db.session() as session:
            ready = session.scalars(select(Catalogue).where(Catalogue.status == "ready"))
            return {
                f"{c.name} (catalogue {c.id})": {
                    **catalogue_precision(session, c.id),
                    "model_id": c.model_id,
                }
                for c in ready.all()
            }
    finally:
        db.dispose()


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@out_option("HTML file to write (default: RUN_DIR/report.html).")
@click.option(
    "--gallery-sample",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Candidate gallery images to embed.",
)
@db_option(
    "The web tool's database (URL or SQLite file): adds the precision of each "
    "catalogue measured from its verdicts."
)
@stops_cleanly(START_AGAIN)
def report_command(
    run_dir: Path, out: Path | None, gallery_sample: int, db_url: str | None
) -> None:
    """Write one HTML file describing the run in RUN_DIR, images embedded.

    Sections: data (archives, counts, classes, quality flags), PCA/t-SNE
    maps, training curves and confusion matrices, classification counts per
    class (beside the thesis' LAMOST DR1 table), with --db the precision of
    the vetted catalogues (per class and probability bin, Wilson intervals),
    a sample of the candidate gallery, the benchmarks' performance tables and
    the provenance. Parts missing from the run are named at the top. The file
    opens offline.

    \b
    Example:
      spectraldl report demo-run -o demo-run/report.html --db team.db
    """
    from spectraldl.analysis.report import ReportError, write_report
    from spectraldl.core.errors import describe_os_error
    from spectraldl.jobs.files import JobIOError, OutputBusy
    from spectraldl.web.db import DatabaseError

    try:
        vetted = vetted_catalogues(db_url) if db_url else None
        report = write_report(run_dir, out, gallery_sample=gallery_sample, vetted=vetted)
    except (ReportError, DatabaseError, OutputBusy, JobIOError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only or missing folder
        raise click.ClickException(describe_os_error(exc)) from None
    click.echo(f"wrote {report.path} ({report.path.stat().st_size / 1e6:.1f} MB)")
    for what in report.missing:
        click.echo(f"missing from the run: {what}")
