"""Classify a dataset or a whole FITS release into a predictions table, resumably, anywhere.

The inputs (HDF5 datasets and FITS files or trees) are cut into repeatable chunks
(`spectraldl.classify.plan`): a range of dataset rows, or a list of files that
are read and preprocessed on the fly (no intermediate dataset, memory bounded by
the chunk). Each chunk is one repeatable task, run by whatever backend is passed
in (this process, local processes, a Dask cluster: `spectraldl.jobs.backends`),
and returns its rows of predictions; this process commits each chunk atomically
to ``PRED.parts/`` under a name its inputs fingerprint (temporary name, then rename). A killed
run leaves finished chunks behind and the same command finishes the rest.
When every chunk is there they are streamed, in chunk order, into ``PRED``
(format by extension; `spectraldl.io.predictions`), so the table does not depend
on the backend, the number of workers or interruptions. The parts stay beside the
table: after files under the sources were added, changed or deleted, the same
command classifies only the chunks that changed and merges the table again.

Every row carries the preprocessing `Quality` flags plus `Quality.NOVEL`
where the novelty score (`spectraldl.ml.novelty`, computed from the network's
penultimate features in the same forward pass) exceeds the model's threshold.
Files that cannot be read go to ``PRED.errors.csv`` (``path,reason``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectraldl import __version__
from spectraldl.classify.plan import (
    CHUNK_FILES,
    CHUNK_ROWS,
    Chunk,
    ClassifyError,
    Plan,
    plan_chunks,
)
from spectraldl.classify.predictor import (
    DEFAULT_PRECISION,
    Predictor,
    predictions_frame,
    resolve_precision,
)
from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import FileError, describe_os_error, is_output_error
from spectraldl.core.paths import output_over_input
from spectraldl.core.quality import flag_counts
from spectraldl.io.dataset import dataset_info, read_rows
from spectraldl.io.predictions import (
    format_of,
    iter_predictions,
    read_metadata,
    read_parquet_table,
    write_predictions,
)
from spectraldl.jobs.backends import Backend, DaskBackend, SerialBackend
from spectraldl.jobs.engine import PartsFolder, Shard, run_shards, same_run
from spectraldl.jobs.files import (
    ErrorsFileDamaged,
    JobIOError,
    check_inputs_seen,
    errors_csv_path,
    output_lock,
    read_errors_csv,
    write_errors_csv,
)
from spectraldl.jobs.first_ids import FirstOfEachId
from spectraldl.jobs.ingest import read_and_preprocess
from spectraldl.ml.modelcard import CARD, TrainedModel, load_model, select_device
from spectraldl.ml.pretrained import resolve_model, shipped_dir, shipped_name

# --- one chunk: the task a worker runs ----------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What a worker needs besides the chunk: which model and how to run it."""

    model: str
    """The model folder's absolute path, or with ``shipped`` a shipped model's name."""
    model_id: str
    shipped: bool = False
    """A model of the package: each worker loads it from its own installed spectraldl, wherever
    that is, not from this machine's path (the id must still be the same)."""
    device: str = "auto"
    precision: str = DEFAULT_PRECISION
    batch_size: int | None = None
    threads: int | None = None


@dataclass
class ChunkResult:
    """A classified chunk: its predictions, bad files and where the time went (seconds)."""

    index: int
    frame: pd.DataFrame
    errors: list[FileError]
    timings: dict[str, float]


KEPT = "the finished chunks are kept: run the same command once they do"
"""How a message about what the workers must see ends: nothing committed is lost."""
INSTALL = (
    "install the same spectraldl, with its shipped models, on every worker; the finished "
    "chunks are kept: run the same command once they have it"
)
"""How a message about a worker's shipped model ends."""


class ModelUnseen(ClassifyError):
    """Raised where a task runs that finds no model folder at the path it was given."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: no such model folder where the task ran"


def model_unseen(path: str) -> ClassifyError:
    """The error for a model folder a worker could not see: workers must see it where this
    machine does, or, where this machine no longer sees it either, it was deleted."""
    if os.path.isdir(path):
        return ClassifyError(
            f"{path}: a worker could not see this model folder, though this machine sees it "
            "now: workers must see the model at the same absolute path (a shared file "
            f"system); {KEPT}"
        )
    return ClassifyError(
        f"{path}: the model folder was deleted during the run; the finished chunks are kept"
    )


_PREDICTORS: dict[tuple[str, str, str, str, int | None], Predictor] = {}


def _load(model_dir: str | Path, device: str) -> TrainedModel:
    return load_model(model_dir, device=device)


def _model_folder(settings: Settings) -> str:
    """Where the task finds the model: a shipped one in the spectraldl installed where it runs
    (a Dask worker's may be at another path than this machine's), any other at its path."""
    if not settings.shipped:
        if not os.path.exists(settings.model):
            raise ModelUnseen(settings.model)
        return settings.model
    folder = shipped_dir(settings.model)
    if not (folder / CARD).is_file():
        raise ClassifyError(
            f"{folder}: the spectraldl where a task ran has no shipped model {settings.model}: "
            f"{INSTALL}"
        )
    return str(folder)


def _other_model(settings: Settings, folder: str, found: str) -> str:
    """Why the model ``folder`` (id ``found``) is not the one the run started with."""
    if settings.shipped:
        return (
            f"{folder}: the shipped model {settings.model} where a task ran is not this "
            f"machine's (id {found} there, {settings.model_id} here): {INSTALL}"
        )
    return (
        f"{folder}: the model changed during the run (id {found}, the run started with "
        f"{settings.model_id})"
    )


def _predictor(settings: Settings) -> Predictor:
    """The worker's predictor for ``settings``, loaded once per process."""
    key = (
        settings.model,
        settings.model_id,
        settings.device,
        settings.precision,
        settings.batch_size,
    )
    predictor = _PREDICTORS.get(key)
    if predictor is None:
        folder = _model_folder(settings)
        model = _load(folder, settings.device)
        if model.model_id != settings.model_id:
            raise ClassifyError(_other_model(settings, folder, model.model_id))
        predictor = Predictor(model, precision=settings.precision, batch_size=settings.batch_size)
        _PREDICTORS.clear()
        _PREDICTORS[key] = predictor
    return predictor


def classify_chunk(chunk: Chunk, settings: Settings) -> ChunkResult:
    """Read (or preprocess) one chunk and predict it: the one task every backend runs."""
    if settings.threads is not None and torch.get_num_threads() != settings.threads:
        torch.set_num_threads(settings.threads)
    predictor = _predictor(settings)
    model = predictor.model
    started = time.perf_counter()
    if chunk.dataset:
        rows = read_rows(chunk.dataset, start=chunk.start, stop=chunk.stop)
        errors: list[FileError] = []
    else:
        rows, errors = read_and_preprocess(list(chunk.files), config=model.config)
    read_s = time.perf_counter() - started
    proba, novelty = predictor(rows.X)
    predict_s = time.perf_counter() - started - read_s
    frame = predictions_frame(
        rows,
        proba,
        novelty,
        classes=model.classes,
        threshold=predictor.threshold,
        model_id=model.model_id,
    )
    table_s = time.perf_counter() - started - read_s - predict_s
    timings = {"read_preprocess": read_s, "predict": predict_s, "table": table_s}
    return ChunkResult(index=chunk.index, frame=frame, errors=errors, timings=timings)


# --- the run ------------------------------------------------------------------------------


@dataclass
class ClassifySummary:
    """What a classification run did."""

    out: Path
    inputs: int
    rows: int
    errors: list[FileError] = field(default_factory=list)
    errors_csv: Path | None = None
    seconds: float = 0.0
    chunks: int = 0
    chunks_resumed: int = 0
    already_complete: bool = False
    class_counts: dict[str, int] = field(default_factory=dict)
    flag_counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """One line for people: rows, bad files, classes, speed."""
        if self.already_complete:
            return f"{self.out} is already complete ({self.rows} spectra); nothing to do"
        text = f"{self.rows} spectra classified into {self.out}; {len(self.errors)} bad files"
        if self.errors and self.errors_csv is not None:
            text += f" (listed in {self.errors_csv})"
        if self.chunks_resumed:
            text += f"; {self.chunks_resumed} of {self.chunks} chunks were already done"
        counts = ", ".join(f"{name} {n}" for name, n in self.class_counts.items())
        if counts:
            text += f"; {counts}"
        rate = self.inputs / self.seconds if self.seconds > 0 else float("inf")
        return f"{text}; {self.inputs} inputs in {self.seconds:.1f} s ({rate:.0f}/s)"


def parts_dir(out: str | Path) -> Path:
    """Where a run keeps its committed chunks, beside the table once complete: ``PRED.parts/``."""
    return PartsFolder(out).path


def _commit(path: Path, result: ChunkResult, *, classes: Sequence[str], run: str) -> None:
    """Write a classified chunk as a part: its rows, with its bad files and timings as metadata.

    A chunk read where its files cannot be seen is refused (`check_inputs_seen`)."""
    check_inputs_seen(result.errors)
    meta = {
        "chunk": result.index,
        "run": run,
        "rows": len(result.frame),
        "errors": [[e.path, e.reason] for e in result.errors],
        "timings": result.timings,
    }
    write_predictions(path, result.frame, classes=classes, metadata=meta, astropy_metadata=False)


def _table_manifest(out: Path, overwrite: bool) -> dict[str, Any] | None:
    """The manifest of the existing table ``out`` (None without one); a file that is not a
    spectraldl predictions table is refused without overwrite."""
    if not out.exists():
        return None
    try:
        existing = read_metadata(out)
    except ValueError:
        existing = None
    if existing is None and not overwrite:
        raise ClassifyError(
            f"{out} exists and is not a spectraldl predictions table; use --overwrite to replace it"
        )
    return None if existing is None else existing.get("manifest", {})


def _prepare_parts(out: Path, manifest: dict[str, Any], overwrite: bool) -> bool:
    """Make ``PRED.parts/`` ready for this run; True when ``out`` is already its complete table.

    The parts stay beside a complete table (marked merged), so that a later run after files
    under the sources were added, changed or deleted redoes only the chunks that changed.
    """
    parts = PartsFolder(out)
    existing = _table_manifest(out, overwrite)
    if overwrite:
        if parts.merged():
            parts.remove()  # a complete run's parts: --overwrite classifies everything again
    elif existing == manifest:
        if parts.merged():
            return True  # complete, its parts kept for a later update
        if not parts.of_run(manifest, INPUTS):
            parts.remove()  # complete; parts beside it of no run (killed while made) go
            return True
        # Parts of this run beside its table, not marked merged: killed between the renames
        # of the table and of its errors file (or, for a CSV, of its metadata), perhaps while
        # updating it. The run is finished from them, and the table merged again.
    elif existing is not None and not same_run(existing, manifest, INPUTS):
        raise ClassifyError(
            f"{out} exists and was made by another model, other sources or other settings "
            "(or by an older spectraldl); use --overwrite to replace it"
        )
    conflict = ClassifyError(
        f"{parts.path} holds an unfinished run of another model, other sources or other "
        "settings, or one an older spectraldl started; re-run the command that started it, "
        "or use --overwrite to start over"
    )
    parts.prepare(
        manifest,
        merged=lambda _: False,
        conflict=None if overwrite else conflict,
        inputs=INPUTS,
    )
    return False


def _without_duplicates(
    paths: Sequence[Path],
) -> tuple[list[np.ndarray], list[FileError], Counter[str], Counter[str]]:
    """Per committed chunk, the rows to keep: the first spectrum of each id (as ingest keeps).

    A later file with an id already read is listed as a bad file, not given a
    second row. Also counts the kept rows per class and per quality flag.
    """

    def lookup(index: int) -> tuple[np.ndarray, np.ndarray]:
        frame = pd.concat(iter_predictions(paths[index], columns=["id", "source"]))
        return frame["id"].to_numpy(dtype=object), frame["source"].to_numpy(dtype=object)

    first = FirstOfEachId(lookup)
    keeps: list[np.ndarray] = []
    classes: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for path in paths:
        columns = ["id", "source", "predicted_class", "quality"]
        frame = pd.concat(iter_predictions(path, columns=columns), ignore_index=True)
        keep = first.keep(frame["id"], frame["source"])
        keeps.append(keep)
        classes.update(frame["predicted_class"][keep].tolist())
        flags.update(flag_counts(frame["quality"].to_numpy()[keep]))
    return keeps, first.errors, classes, flags


def _merge(
    out: Path,
    paths: Sequence[Path],
    classes: Sequence[str],
    manifest: dict[str, Any],
    unread: Sequence[FileError] = (),
) -> tuple[int, list[FileError], dict[str, int], dict[str, int], dict[str, float]]:
    metas = [read_metadata(p) or {} for p in paths]
    errors = [*unread, *(FileError(p, r) for m in metas for p, r in m.get("errors", []))]
    keeps, duplicates, classes_count, flags_count = _without_duplicates(paths)
    errors += duplicates
    timings: Counter[str] = Counter()
    for m in metas:
        timings.update(m.get("timings", {}))
    rows = int(sum(int(k.sum()) for k in keeps))
    metadata = {
        "manifest": manifest,
        "model_id": manifest["model_id"],
        "rows": rows,
        "bad_files": len(errors),
        "class_counts": dict(classes_count),
        "flag_counts": dict(flags_count),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spectraldl_version": __version__,
    }
    # The errors file is renamed just after the table, kept back if writing the table fails
    # (a full disk): the two always describe one run.
    with atomic_write(errors_csv_path(out)) as errors_csv:
        write_errors_csv(errors_csv, errors)
        write_predictions(
            out,
            lambda: (
                table if keep.all() else table.filter(keep)
                for table, keep in zip((read_parquet_table(p) for p in paths), keeps, strict=True)
            ),
            classes=classes,
            metadata=metadata,
        )
    PartsFolder(out).mark_merged(manifest["model_id"])
    ordered = {c: int(classes_count.get(c, 0)) for c in classes}
    return rows, errors, ordered, dict(flags_count), dict(timings)


def _threads(threads: int | None, backend: Backend, plan: Plan) -> int | None:
    """PyTorch threads per task: as asked, else the backend's choice.

    In this process, chunks of FITS files get one thread: reading and
    preprocessing are single-threaded Python, so between two forward passes
    PyTorch's idle threads go to sleep, and on a busy machine waking them
    costs milliseconds per operation (measured: 5x slower end to end with 2
    threads than with 1 on a loaded 2-core machine). Use ``-j`` for more cores.
    """
    if threads is not None:
        return threads
    if backend.threads_per_task is None and plan.files > 0:
        return 1
    return backend.threads_per_task


def classify(
    model_dir: str | Path,
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "auto",
    precision: str = DEFAULT_PRECISION,
    batch_size: int | None = None,
    chunk_files: int = CHUNK_FILES,
    chunk_rows: int = CHUNK_ROWS,
    backend: Backend | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ClassifySummary:
    """Classify every spectrum of ``sources`` with the model in ``model_dir`` into ``out``.

    Parameters
    ----------
    model_dir
        A model directory (`spectraldl.ml.training.load_model`), with ``novelty.npz``,
        or a shipped model's name (`spectraldl.ml.pretrained`). Workers load a model
        directory at its absolute path (Dask: a shared file system), and a shipped model
        (by name, or by its folder in this package) from their own installed spectraldl.
    sources
        Datasets (``.h5``) and FITS files or directory trees, in any mix.
    out
        The predictions table; the format follows the extension (``.parquet``,
        ``.fits``, ``.csv``, ``.h5``). Bad files go to ``OUT.errors.csv``.
    device
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    precision
        ``fp32`` (the default: the same probabilities on every CPU and GPU, to
        float32 rounding), or a faster machine-dependent choice: ``bf16``,
        ``fp16`` (CUDA only), ``int8`` (CPU only) or ``auto``; see `resolve_precision`.
        The precision that ran is in the output's metadata (``manifest.precision``).
    batch_size
        Spectra per forward pass (256 on CPU, 65536 on CUDA by default).
    chunk_files, chunk_rows
        Files or dataset rows per chunk: the unit of work, of commit and of memory.
    backend
        Where chunks run (`spectraldl.jobs.backends.open_backend`); this process by default.
    threads
        PyTorch threads per task; by default the backend's choice (cores / workers
        for local processes, 1 per Dask worker thread; in this process 1 for FITS
        sources and PyTorch's default for datasets only). On a busy machine 1
        avoids threads waiting for each other.
    overwrite
        Replace an existing ``out`` or unfinished run made with another model,
        sources or settings (otherwise refused).
    progress
        Called with (inputs done, inputs total) as chunks are committed.

    Returns
    -------
    ClassifySummary
        Counts, bad files, per-class and per-flag counts and timings.

    Raises
    ------
    ClassifyError
        Missing sources, a refused existing output, a model without novelty.
    spectraldl.ml.modelcard.ModelDirError, spectraldl.ml.modelcard.ModelMismatch
        A missing or corrupt model directory, or a dataset preprocessed otherwise.
    """
    started = time.perf_counter()
    out = Path(out)
    model_dir = resolve_model(model_dir)
    try:
        format_of(out)
    except ValueError as exc:
        raise ClassifyError(str(exc)) from None
    if output_over_input([out, errors_csv_path(out)], sources):
        raise ClassifyError(f"{out}: is an input of this run; write the predictions elsewhere")
    backend = backend if backend is not None else SerialBackend()
    backend.warm_up(classify_chunk)  # workers import PyTorch while this process plans
    precision_used = _precision_here(precision, device, backend)
    model = _load(model_dir, "cpu")
    # Build a predictor once here: refuses a model without (or with a mismatched) novelty file.
    Predictor(model, precision="fp32", batch_size=batch_size)
    plan = plan_chunks(sources, chunk_files=chunk_files, chunk_rows=chunk_rows)
    for path in plan.datasets:
        model.check_compatible(dataset_info(path))
    manifest = _manifest(model, plan, precision_used)
    errors_csv = errors_csv_path(out)
    shipped = shipped_name(model_dir)
    settings = Settings(
        model=shipped or os.path.abspath(model_dir),
        model_id=model.model_id,
        shipped=shipped is not None,
        device=device,
        precision=precision_used,
        batch_size=batch_size,
        threads=_threads(threads, backend, plan),
    )
    try:
        with output_lock(out):
            if _prepare_parts(out, manifest, overwrite):
                return _already_complete(out, plan, errors_csv, started)
            paths, resumed = _run_chunks(plan, out, backend, settings, model.classes, progress)
            rows, errors, class_counts, flag_counts, timings = _merge(
                out, paths, model.classes, manifest, plan.unread
            )
    except OSError as exc:
        if is_output_error(exc):
            raise JobIOError(describe_os_error(exc, where=exc.filename or out)) from None
        raise
    return ClassifySummary(
        out=out,
        inputs=plan.inputs + len(plan.unread),
        rows=rows,
        errors=errors,
        errors_csv=errors_csv,
        seconds=time.perf_counter() - started,
        chunks=plan.chunks,
        chunks_resumed=resumed,
        class_counts=class_counts,
        flag_counts=flag_counts,
        timings=timings,
    )


def _precision_here(precision: str, device: str, backend: Backend) -> str:
    """The precision the run records: resolved for this machine's device, or as asked when
    Dask workers choose (a clear error for CUDA without a GPU comes before any work)."""
    if isinstance(backend, DaskBackend):
        return precision
    return resolve_precision(precision, select_device(device))


INPUTS = ("sources", "files", "dataset_rows", "chunks")
"""The manifest's keys that describe what the sources hold: a run resumed after files were
added, changed or deleted under them keeps the parts of the chunks that did not change, and so
does a run that updates a complete table made from the sources as they were."""


def _manifest(model: TrainedModel, plan: Plan, precision: str) -> dict[str, Any]:
    """What a resumed run must match: the model, its classes and preprocessing, the sources
    given (and, in `INPUTS`, what they hold)."""
    return {
        "format": "spectraldl-classify-run",
        "model_id": model.model_id,
        "classes": list(model.classes),
        "preprocessing": model.config.to_dict(),
        "paths": [source.path for source in plan.sources],
        "chunk_files": plan.chunk_files,
        "chunk_rows": plan.chunk_rows,
        "sources": plan.digest,
        "files": plan.files,
        "dataset_rows": plan.dataset_rows,
        "chunks": plan.chunks,
        "precision": precision,
    }


def _already_complete(out: Path, plan: Plan, errors_csv: Path, started: float) -> ClassifySummary:
    """The summary of a run whose table was already complete."""
    meta = read_metadata(out) or {}
    try:
        errors = read_errors_csv(errors_csv)
    except ErrorsFileDamaged as exc:
        raise ClassifyError(str(exc)) from None
    return ClassifySummary(
        out=out,
        inputs=plan.inputs + len(plan.unread),
        rows=int(meta.get("rows", 0)),
        errors=errors,
        errors_csv=errors_csv,
        seconds=time.perf_counter() - started,
        chunks=plan.chunks,
        chunks_resumed=plan.chunks,
        already_complete=True,
        class_counts=meta.get("class_counts", {}),
        flag_counts=meta.get("flag_counts", {}),
    )


def _run_chunks(
    plan: Plan,
    out: Path,
    backend: Backend,
    settings: Settings,
    classes: Sequence[str],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[Path], int]:
    """Classify and commit every chunk not committed yet: (each chunk's part, chunks resumed).

    A chunk whose part exists under its current name (its files unchanged) is
    kept; one whose files changed since has another name and is done again.
    """
    done = 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        if progress:
            progress(done, plan.inputs)

    if progress:
        progress(0, plan.inputs)
    shards = (Shard(chunk.part_name(), chunk.size, chunk) for chunk in plan.iter_chunks())
    parts = PartsFolder(out)
    try:
        result = run_shards(
            shards,
            partial(classify_chunk, settings=settings),
            partial(_commit, classes=classes, run=settings.model_id),
            parts=parts,
            backend=backend,
            progress=advance,
        )
    except ModelUnseen as exc:
        raise model_unseen(exc.path) from None
    # Parts of chunks whose files changed since go, and with them the merged marker of an
    # earlier complete table: the folder now holds this run's parts only, not yet merged.
    parts.keep_only(path.name for path in result.paths)
    return result.paths, result.resumed
