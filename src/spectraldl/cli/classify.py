"""``spectraldl classify``: a dataset or a FITS release into a predictions table."""

from __future__ import annotations

from pathlib import Path

import click

from spectraldl.cli._options import (
    RESUME_CHUNKS,
    WORKERS_PER_CORE,
    capped_per_core,
    device_option,
    job_errors,
    scheduler_option,
    stops_cleanly,
    workers_option,
)
from spectraldl.cli._progress import progress_bar

WORKER_MODULES = ("spectraldl.classify.run",)
"""The module of the task local workers run (`classify_chunk`), which their server imports first."""


@click.command("classify")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--model",
    "-m",
    "model",
    default=None,
    help="Model directory or shipped model's name (`spectraldl models`); default: the first "
    "argument when it is one, else pretrained.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Predictions table; the format follows the extension: .parquet, .fits, .csv, .h5.",
)
@device_option()
@click.option(
    "--precision",
    type=click.Choice(["fp32", "auto", "bf16", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Arithmetic of the network. fp32 gives the same probabilities on every machine; "
    "the others are faster and differ by up to about 0.01: bf16, fp16 (CUDA), int8 "
    "(quantized, CPU only; see docs/classify.md for its speed), auto (bf16 on CUDA and "
    "bf16-capable CPUs, else fp32). Recorded in the output's metadata.",
)
@workers_option("Worker processes (local, dask-local); the result does not depend on it.")
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="Spectra per forward pass (default: 256 on CPU, 65536 on CUDA).",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    callback=capped_per_core,
    help="PyTorch threads per worker (default: cores / workers; 1 per Dask worker thread; "
    f"at most {WORKERS_PER_CORE} per usable core).",
)
@click.option(
    "--chunk-files",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="FITS files per committed chunk on average, twice that at most (bounds memory; fixed "
    "for a run).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=32768,
    show_default=True,
    help="Dataset rows per committed chunk.",
)
@scheduler_option()
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an output (or unfinished run) made by another model, sources or settings.",
)
@stops_cleanly(RESUME_CHUNKS)
def classify_command(
    inputs: tuple[str, ...],
    model: str | None,
    out: Path,
    device: str,
    precision: str,
    workers: int,
    batch_size: int | None,
    threads: int | None,
    chunk_files: int,
    chunk_rows: int,
    scheduler: str,
    overwrite: bool,
) -> None:
    """Classify every spectrum in [MODEL] SOURCES... into the table OUT.

    MODEL is a model directory (`spectraldl train`) or the name of a model
    shipped with spectraldl (`spectraldl models`); without it (or --model)
    the shipped `pretrained` model is used. SOURCES are datasets (.h5, from
    `spectraldl ingest`) or FITS files and directory trees, which are read
    and preprocessed on the fly in chunks
    (no intermediate dataset; memory is bounded by the chunk). Each row gets
    the class probabilities, the quality flags of preprocessing and NOVEL
    where the spectrum is unlike the training data.

    Chunks are committed as they finish: an interrupted run (Ctrl-C, SIGTERM,
    even kill -9) resumes where it stopped when the same command is given
    again. Given again after files under the sources were added, changed or
    deleted, it updates OUT, classifying only the chunks that changed (kept in
    OUT.parts/). Bad files never stop the run; they are listed with a reason in
    OUT.errors.csv (OUT's whole name: dr1.parquet.errors.csv); a spectrum
    found twice gets one row.

    \b
    Example:
      spectraldl classify /data/lamost/dr1/ -o dr1.parquet -j 8
      spectraldl classify demo-run/model dataset.h5 -o predictions.parquet --device cuda
    """
    from spectraldl.jobs.backends import open_backend, prestart_local_workers

    prestart_local_workers(scheduler, workers, WORKER_MODULES)
    from spectraldl.classify.plan import ClassifyError
    from spectraldl.classify.run import classify
    from spectraldl.io.dataset import DatasetError
    from spectraldl.ml.modelcard import ModelDirError, ModelMismatch
    from spectraldl.ml.novelty import NoveltyError

    model_dir, sources = _model_and_sources(model, inputs)
    try:
        with (
            job_errors(),
            open_backend(scheduler, workers=workers) as backend,
            progress_bar("classify") as bar,
        ):
            summary = classify(
                model_dir,
                sources,
                out,
                device=device,
                precision=precision,
                batch_size=batch_size,
                chunk_files=chunk_files,
                chunk_rows=chunk_rows,
                backend=backend,
                threads=threads,
                overwrite=overwrite,
                progress=bar,
            )
    except (
        ClassifyError,
        ModelDirError,
        ModelMismatch,
        NoveltyError,
        DatasetError,
        ConnectionError,
        ValueError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary.line())


def _model_and_sources(model: str | None, inputs: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """The model and the sources: --model, else the first input when it is a model, else
    the shipped default."""
    from spectraldl.ml.pretrained import DEFAULT_MODEL, missing_model, resolve_model

    if model is not None:
        return resolve_model(model), [Path(raw) for raw in inputs]
    first = resolve_model(inputs[0])
    named_as_model = inputs[0].endswith("/") or "model" in first.name.lower()
    if len(inputs) > 1 and not first.exists() and named_as_model:
        # `classify my-model/ DIR` before `spectraldl train`: a missing model, not a source
        raise click.ClickException(missing_model(inputs[0]))
    if (first / "card.json").exists():
        if len(inputs) == 1:
            raise click.UsageError(f"{inputs[0]} is a model: give the SOURCES to classify too")
        return first, [Path(raw) for raw in inputs[1:]]
    parts = [name for name in ("model.pt", "novelty.npz") if (first / name).is_file()]
    if parts:  # a model whose card was lost: never classify with the default model instead
        raise click.ClickException(
            f"{inputs[0]}: not a model directory (no card.json), though it holds "
            f"{' and '.join(parts)}; restore its card.json"
        )
    return resolve_model(DEFAULT_MODEL), [Path(raw) for raw in inputs]
