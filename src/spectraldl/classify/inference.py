"""Classify a dataset or a whole FITS release into a predictions table, resumably, anywhere.

The inputs (HDF5 datasets and FITS files or trees) are cut into fixed chunks:
a range of dataset rows, or a list of files that are read and preprocessed on
the fly (no intermediate dataset, memory bounded by the chunk). Each chunk is
one repeatable task, run by whatever backend is passed in (this process,
local processes, a Dask cluster: `spectraldl.jobs.backends`), and returns its rows
of predictions; this process commits each chunk atomically to
``PRED.parts/chunk-NNNNNNN.parquet`` (temporary name, then rename). A killed
run leaves finished chunks behind and the same command finishes the rest.
When every chunk is there they are streamed, in chunk order, into ``PRED``
(format by extension; `spectraldl.io.predictions`), so the table does not depend
on the backend, the number of workers or interruptions.

Every row carries the preprocessing `Quality` flags plus `Quality.NOVEL`
where the novelty score (`spectraldl.ml.novelty`, computed from the network's
penultimate features in the same forward pass) exceeds the model's threshold.
Files that cannot be read go to ``PRED.errors.csv`` (``path,reason``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from spectraldl import __version__
from spectraldl.core.errors import FileError
from spectraldl.core.quality import Quality, flag_counts, flag_names_array
from spectraldl.io.discovery import walk
from spectraldl.io.predictions import (
    MEASUREMENT_COLUMNS,
    format_of,
    iter_predictions,
    probability_column,
    read_metadata,
    read_predictions,
    write_predictions,
)
from spectraldl.jobs.files import (
    FirstOfEachId,
    JobIOError,
    atomic_write,
    describe_os_error,
    errors_csv_path,
    inputs_fingerprint,
    is_output_error,
    output_lock,
    read_errors_csv,
    write_errors_csv,
)

if TYPE_CHECKING:
    import torch

    from spectraldl.io.dataset import Rows
    from spectraldl.jobs.backends import Backend
    from spectraldl.ml.modelcard import TrainedModel

CHUNK_FILES = 512
"""FITS files per chunk: fixed for a run (recorded), so a resumed run cuts the list the same way."""
CHUNK_ROWS = 32768
"""Dataset rows per chunk."""
CPU_BATCH = 256
"""Spectra per forward pass on CPU: small enough for the activations to stay in cache."""
GPU_BATCH = 65536
"""Spectra per forward pass on a GPU: large enough to keep it busy."""
PRECISIONS = ("fp32", "auto", "bf16", "fp16", "int8")
DEFAULT_PRECISION = "fp32"
"""The default everywhere: the same probabilities (to float32 rounding) on every CPU and GPU.
Faster, machine-dependent arithmetic (``auto``, ``bf16``, ``fp16``, ``int8``) is a choice."""
CPU_BF16_ENV = "SPECTRALDL_CPU_BF16"
"""``1`` or ``0`` overrides the detection of native bf16 (tests run both paths on any CPU)."""


class ClassifyError(RuntimeError):
    """Classification cannot start or go on; the message says what to do."""


# --- planning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One repeatable task: a list of FITS files, or a row range of a dataset."""

    index: int
    files: tuple[str, ...] = ()
    dataset: str = ""
    start: int = 0
    stop: int = 0

    @property
    def size(self) -> int:
        """Inputs in the chunk (files or rows)."""
        return len(self.files) if self.dataset == "" else self.stop - self.start

    def part_name(self) -> str:
        """The committed chunk's file name; a file that changed since gives another name."""
        if self.dataset:
            return f"chunk-{self.index:07d}.parquet"  # a changed dataset changes the plan
        return f"chunk-{self.index:07d}-{inputs_fingerprint(self.files)}.parquet"


@dataclass(frozen=True)
class Source:
    """One input: a dataset (its row count) or a FITS file or directory tree."""

    path: str
    dataset_rows: int = -1

    @property
    def is_dataset(self) -> bool:
        """True for an HDF5 dataset."""
        return self.dataset_rows >= 0


def iter_fits_files(root: str, bad: list[FileError] | None = None) -> Iterator[str]:
    """Absolute paths of the spectrum files under ``root`` (`spectraldl.io.discovery.walk`).

    A generator: a release of millions of files is walked, never held in
    memory (the file list of a run is never built; chunks are cut as it streams).
    Entries that cannot be read (link loops, unreadable folders, FIFOs named
    like spectra) are added to ``bad`` when the walk ends.
    """
    found = walk([os.path.abspath(root)])
    yield from found
    if bad is not None:
        bad.extend(found.bad)


@dataclass(frozen=True)
class Plan:
    """The inputs of a run, counted and fingerprinted; `iter_chunks` cuts them into chunks.

    Only counts and a digest are kept, so planning a release of millions of
    files takes constant memory; the chunks are produced by walking again.
    """

    sources: tuple[Source, ...]
    chunk_files: int
    chunk_rows: int
    files: int
    dataset_rows: int
    chunks: int
    digest: str
    unread: tuple[FileError, ...] = ()
    """Entries of the FITS trees that cannot be read (`spectraldl.io.discovery`), with reasons."""

    @property
    def datasets(self) -> list[str]:
        """The dataset sources."""
        return [s.path for s in self.sources if s.is_dataset]

    @property
    def inputs(self) -> int:
        """Files plus dataset rows."""
        return self.files + self.dataset_rows

    def iter_chunks(self) -> Iterator[Chunk]:
        """Yield the chunks in order (deterministic: same inputs, same chunks).

        Raises `ClassifyError` when the FITS trees changed since planning.
        """
        index = 0
        files = 0
        pending: list[str] = []
        for source in self.sources:
            if source.is_dataset:
                if pending:
                    yield Chunk(index=index, files=tuple(pending))
                    index, pending = index + 1, []
                for start in range(0, source.dataset_rows, self.chunk_rows):
                    stop = min(start + self.chunk_rows, source.dataset_rows)
                    yield Chunk(index=index, dataset=source.path, start=start, stop=stop)
                    index += 1
                continue
            for path in iter_fits_files(source.path):
                pending.append(path)
                files += 1
                if len(pending) == self.chunk_files:
                    yield Chunk(index=index, files=tuple(pending))
                    index, pending = index + 1, []
        if pending:
            yield Chunk(index=index, files=tuple(pending))
            index += 1
        if files != self.files or index != self.chunks:
            raise ClassifyError(
                f"the input trees changed during the run ({self.files} files when planned, "
                f"{files} now); run the command again"
            )


def _nested(path: str, roots: Sequence[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def plan_chunks(
    sources: Sequence[str | Path], *, chunk_files: int = CHUNK_FILES, chunk_rows: int = CHUNK_ROWS
) -> Plan:
    """Count and fingerprint ``sources`` (datasets, FITS files, directories) for chunking.

    A ``.h5``/``.hdf5`` source must be a spectraldl dataset; anything else is
    walked for spectrum files (`spectraldl.io.discovery`, as ingest). Paths
    are made absolute, so that workers on other machines find the same files.
    A source given twice, or inside a directory given before it, is read once.
    Chunks follow the order of ``sources``: rows of a dataset, or files.
    Raises `ClassifyError` for a missing source or an HDF5 file that is not a dataset.
    """
    from spectraldl.io.dataset import DatasetError, dataset_info, is_dataset

    if chunk_files < 1 or chunk_rows < 1:
        raise ValueError("chunk sizes must be >= 1")
    sha = hashlib.sha256(f"chunk_files={chunk_files};chunk_rows={chunk_rows}".encode())
    planned: list[Source] = []
    roots: list[str] = []
    files = rows = chunks = 0
    run = 0  # files since the last chunk boundary
    unread: list[FileError] = []
    for raw in sources:
        path = os.path.abspath(raw)
        if not os.path.lexists(path):
            raise ClassifyError(f"{raw}: no such file or directory")
        if _nested(path, roots):
            continue
        roots.append(os.path.realpath(path))
        if os.path.isfile(path) and path.lower().endswith((".h5", ".hdf5")):
            if not is_dataset(path):
                raise ClassifyError(f"{raw}: not a spectraldl dataset (no format attribute)")
            try:
                info = dataset_info(path)
            except DatasetError as exc:
                raise ClassifyError(str(exc)) from None
            stamp = f"{info.attrs.get('created', '')}/{info.attrs.get('last_ingest', '')}"
            sha.update(f"dataset:{path}:{info.n_rows}:{stamp}\0".encode())
            planned.append(Source(path, dataset_rows=info.n_rows))
            chunks += (run > 0) + -(-info.n_rows // chunk_rows)
            run = 0
            rows += info.n_rows
            continue
        planned.append(Source(path))
        for found in iter_fits_files(path, unread):
            sha.update(found.encode("utf-8", "surrogateescape") + b"\0")
            files += 1
            run += 1
            if run == chunk_files:
                chunks, run = chunks + 1, 0
    chunks += run > 0
    return Plan(
        sources=tuple(planned),
        chunk_files=chunk_files,
        chunk_rows=chunk_rows,
        files=files,
        dataset_rows=rows,
        chunks=chunks,
        digest=sha.hexdigest(),
        unread=tuple(unread),
    )


# --- prediction ---------------------------------------------------------------------------


def cpu_has_native_bf16() -> bool:
    """True when this CPU runs bf16 matrix products natively (AVX-512 BF16 or AMX).

    ``SPECTRALDL_CPU_BF16=1`` (or ``0``) says so whatever the CPU: the test suite
    forces each answer so that both code paths run on every machine.
    """
    import torch

    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision that runs: ``auto`` is bf16 on CUDA and native-bf16 CPUs, else fp32.

    ``auto`` is never the default (`DEFAULT_PRECISION` is fp32): its results
    depend on the machine, by up to about 1e-2 in probability.

    ``int8`` (CPU only, `spectraldl.ml.quantized`) is never chosen by ``auto``.
    Raises `ValueError` for an unknown name, fp16 on CPU or int8 on a GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use fp32, bf16 or int8 on CPU")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("precision int8 runs on CPU only; use bf16 or fp16 on a GPU")
    return precision


class Predictor:
    """Class probabilities and novelty scores of preprocessed spectra in one forward pass.

    The network's penultimate features feed both the output layer and the
    novelty score, so the network runs once per spectrum. The softmax (with
    the model's temperature) and the Mahalanobis distance to the class means
    run on the same device in float32, so only (n, k + 1) numbers per batch
    leave a GPU. Under bf16/fp16 the network runs in autocast; the scoring
    after it always runs in float32.

    Parameters
    ----------
    model
        A loaded `TrainedModel` with its novelty model.
    precision
        ``fp32`` (the default: the same results on every machine), ``bf16``,
        ``fp16``, ``int8`` or ``auto`` (`resolve_precision`).
    batch_size
        Spectra per forward pass; by default 256 on CPU (the activations stay in
        cache: faster than large batches for the thesis CNN) and 65536 on CUDA.
    channels_last
        Run a CNN's convolutions as 2-D ones on channels-last tensors
        (`spectraldl.ml.channels_last`; same outputs, cuDNN's tensor-core layout).
    """

    def __init__(
        self,
        model: TrainedModel,
        *,
        precision: str = DEFAULT_PRECISION,
        batch_size: int | None = None,
        channels_last: bool = False,
    ):
        import torch

        if model.novelty is None:
            raise ClassifyError(
                f"{model.path or 'the model'}: no novelty.npz beside the weights; "
                "train the model again with this version of spectraldl"
            )
        self.model = model
        self.device = model.device
        if batch_size is None:
            batch_size = GPU_BATCH if self.device.type == "cuda" else CPU_BATCH
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        novelty = model.novelty
        if novelty.dim != model.network.embedding_dim:
            raise ClassifyError(
                f"{model.path}: novelty.npz has {novelty.dim} features, the network "
                f"{model.network.embedding_dim}"
            )
        whitening = torch.as_tensor(novelty.whitening, dtype=torch.float32, device=self.device)
        means = torch.as_tensor(novelty.means, dtype=torch.float32, device=self.device)
        self._whitening = whitening
        self._means_w = means @ whitening
        self._means_w2 = (self._means_w * self._means_w).sum(dim=1)
        self.threshold = float(novelty.threshold)
        self.temperature = float(model.temperature)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._forward = model.network.forward_with_features
        from spectraldl.ml.channels_last import ChannelsLastNet, has_convolutions

        if channels_last and self.precision != "int8" and has_convolutions(model.network):
            self._forward = ChannelsLastNet(model.network).forward_with_features
        if self.precision == "int8":
            from spectraldl.ml.quantized import calibration_rows, quantize_network

            self._forward = quantize_network(model.network, calibration_rows(model.config))

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "fp32" and self.device.type == "cuda":
            # Plain float32, not TF32 tensor cores: the default gives CPU's numbers on a GPU.
            return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False)
        if self.precision in ("fp32", "int8"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _batches(self, array: np.ndarray) -> Iterator[tuple[int, Any]]:
        """(start, batch tensor on the device) over the rows of ``array``.

        On a GPU each batch goes through one of two reusable pinned buffers
        and is uploaded without blocking the host, so the host fills the next
        buffer while the device uploads and computes this batch (upload and
        compute share one stream: they do not overlap each other); an event
        per buffer says when its upload is done and it may be refilled.
        Pinning the whole input instead costs more than the network itself at
        millions of spectra per second.
        """
        import torch

        data = torch.from_numpy(array)
        if self.device.type == "cpu":
            for start in range(0, len(data), self.batch_size):
                yield start, data[start : start + self.batch_size]
            return
        size = min(self.batch_size, len(data))
        staging = [torch.empty((size, data.shape[1]), pin_memory=True) for _ in range(2)]
        copied = [None, None]
        for i, start in enumerate(range(0, len(data), self.batch_size)):
            chunk = data[start : start + self.batch_size]
            buffer = staging[i % 2]
            if copied[i % 2] is not None:
                copied[i % 2].synchronize()
            buffer[: len(chunk)].copy_(chunk)
            batch = buffer[: len(chunk)].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))  # the copy's stream
            copied[i % 2] = event
            yield start, batch

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities float32 (n, k) and novelty scores float32 (n,) for X (n, grid_n)."""
        import torch

        array = np.ascontiguousarray(x, dtype=np.float32)
        if not array.flags.writeable:  # torch.from_numpy needs a writable array
            array = array.copy()
        n = len(array)
        k = len(self.model.classes)
        if array.ndim != 2 or array.shape[1] != self.model.grid_n:
            raise ClassifyError(
                f"input has shape {array.shape}; the model expects (n, {self.model.grid_n})"
            )
        with torch.inference_mode():
            result = torch.empty((n, k + 1), dtype=torch.float32, device=self.device)
            for start, batch in self._batches(array):
                with self._autocast():
                    logits, features = self._forward(batch)
                proba = torch.softmax(logits.float() / self.temperature, dim=1)
                z = features.float() @ self._whitening
                d2 = (z * z).sum(dim=1, keepdim=True) - 2.0 * z @ self._means_w.T
                d2 = d2 + self._means_w2[None, :]
                result[start : start + len(batch), :k] = proba
                result[start : start + len(batch), k] = d2.clamp_min(0.0).min(dim=1).values.sqrt()
            out = result.cpu().numpy()
        return out[:, :k], out[:, k]


def predictions_frame(
    rows: Rows,
    proba: np.ndarray,
    novelty: np.ndarray,
    *,
    classes: Sequence[str],
    threshold: float,
    model_id: str,
) -> pd.DataFrame:
    """The predictions table of ``rows`` (columns as `spectraldl.io.predictions.column_spec`).

    The H-alpha measurements come from the rows' metadata: measured when the
    files were read, stored by ingest in a dataset (NaN and ``unmeasurable``
    in a dataset written before them).
    """
    n = len(rows)
    quality = rows.quality.astype(np.int32) | np.where(
        novelty > threshold, np.int32(Quality.NOVEL), np.int32(0)
    )
    names = np.asarray(classes, dtype=object)
    data: dict[str, Any] = {
        "id": rows.ids,
        "source": rows.meta["source"],
        "archive": rows.meta["archive"],
        "origin": rows.meta["origin"],
        "object": rows.meta["object"],
        "ra": rows.meta["ra"].astype(np.float64),
        "dec": rows.meta["dec"].astype(np.float64),
        "mjd": rows.meta["mjd"].astype(np.float64),
        "snr": rows.meta["snr"].astype(np.float32),
        "predicted_class": names[np.argmax(proba, axis=1)] if n else np.zeros(0, object),
    }
    for i, name in enumerate(classes):
        data[probability_column(name)] = proba[:, i].astype(np.float32)
    data["quality"] = quality.astype(np.int32)
    data["quality_flags"] = flag_names_array(quality) if n else np.zeros(0, object)
    data["novelty"] = novelty.astype(np.float32)
    data["model_id"] = np.full(n, model_id, dtype=object)
    for name, info in MEASUREMENT_COLUMNS.items():  # H-alpha measured at ingest or read time
        values = rows.meta[name]
        data[name] = values if info.kind == "str" else values.astype(info.kind)
    return pd.DataFrame(data)


# --- one chunk: the task a worker runs ----------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What a worker needs besides the chunk: where the model is and how to run it."""

    model_dir: str
    model_id: str
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


_PREDICTORS: dict[tuple[str, str, str, str, int | None], Predictor] = {}


def _load(model_dir: str | Path, device: str) -> TrainedModel:
    from spectraldl.ml.modelcard import load_model

    return load_model(model_dir, device=device)


def _predictor(settings: Settings) -> Predictor:
    """The worker's predictor for ``settings``, loaded once per process."""
    key = (
        settings.model_dir,
        settings.model_id,
        settings.device,
        settings.precision,
        settings.batch_size,
    )
    predictor = _PREDICTORS.get(key)
    if predictor is None:
        model = _load(settings.model_dir, settings.device)
        if model.model_id != settings.model_id:
            raise ClassifyError(
                f"{settings.model_dir}: the model changed during the run (id {model.model_id}, "
                f"the run started with {settings.model_id})"
            )
        predictor = Predictor(model, precision=settings.precision, batch_size=settings.batch_size)
        _PREDICTORS.clear()
        _PREDICTORS[key] = predictor
    return predictor


def classify_chunk(chunk: Chunk, settings: Settings) -> ChunkResult:
    """Read (or preprocess) one chunk and predict it: the one task every backend runs."""
    import torch

    from spectraldl.io.dataset import read_rows
    from spectraldl.jobs.ingest import read_and_preprocess

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
    """Where a run keeps its committed chunks until the table is complete: ``PRED.parts/``."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _commit(path: Path, result: ChunkResult, classes: Sequence[str], manifest_id: str) -> None:
    meta = {
        "chunk": result.index,
        "run": manifest_id,
        "rows": len(result.frame),
        "errors": [[e.path, e.reason] for e in result.errors],
        "timings": result.timings,
    }
    write_predictions(
        path,
        result.frame,
        classes=classes,
        metadata=meta,
        astropy_metadata=False,
    )


def _prepare_parts(out: Path, parts: Path, manifest: dict[str, Any], overwrite: bool) -> bool:
    """Make ``parts`` ready for this run; True when ``out`` is already this run's complete table."""
    marker = parts / "merged"
    if parts.exists() and marker.exists() and out.exists():
        # Killed after the final rename: the table is complete, only clean-up is left.
        shutil.rmtree(parts)
    if out.exists():
        try:
            existing = read_metadata(out)
        except ValueError:
            existing = None
        if existing is not None and existing.get("manifest") == manifest and not overwrite:
            # Complete; chunks left by a kill between the final rename and the clean-up go.
            shutil.rmtree(parts, ignore_errors=True)
            return True
        if not overwrite:
            what = (
                "was made by another model, other sources or other settings"
                if existing is not None
                else "is not a spectraldl predictions table"
            )
            raise ClassifyError(f"{out} exists and {what}; use --overwrite to replace it")
    manifest_path = parts / "manifest.json"
    if parts.exists():
        same = manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest
        if same:
            return False
        if not overwrite:
            raise ClassifyError(
                f"{parts} holds an unfinished run of another model, other sources or other "
                "settings; re-run that command to finish it, or use --overwrite to start over"
            )
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    with atomic_write(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return False


def _without_duplicates(
    paths: Sequence[Path],
) -> tuple[list[np.ndarray], list[FileError], Counter[str], Counter[str]]:
    """Per committed chunk, the rows to keep: the first spectrum of each id (as ingest keeps).

    A later file with an id already read is listed as a bad file, not given a
    second row. Also counts the kept rows per class and per quality flag.
    """
    first = FirstOfEachId()
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
    parts = paths[0].parent if paths else parts_dir(out)
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
    errors_csv = errors_csv_path(out)
    write_errors_csv(errors_csv, errors)
    write_predictions(
        out,
        lambda: (
            frame if keep.all() else frame[keep].reset_index(drop=True)
            for frame, keep in zip((read_predictions(p) for p in paths), keeps, strict=True)
        ),
        classes=classes,
        metadata=metadata,
    )
    if parts.exists():
        (parts / "merged").write_text(manifest["model_id"])
        shutil.rmtree(parts)
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
        or a shipped model's name (`spectraldl.ml.pretrained`).
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
    from spectraldl.io.dataset import dataset_info
    from spectraldl.jobs.backends import DaskBackend, SerialBackend
    from spectraldl.ml.modelcard import select_device
    from spectraldl.ml.pretrained import resolve_model

    started = time.perf_counter()
    out = Path(out)
    model_dir = resolve_model(model_dir)
    try:
        format_of(out)
    except ValueError as exc:
        raise ClassifyError(str(exc)) from None
    backend = backend if backend is not None else SerialBackend()
    if not isinstance(backend, DaskBackend):
        resolved = select_device(device)  # a clear error for cuda without a GPU, before any work
        precision_used = resolve_precision(precision, resolved)
    else:
        precision_used = precision
    model = _load(model_dir, "cpu")
    # Build a predictor once here: refuses a model without (or with a mismatched) novelty file.
    Predictor(model, precision="fp32", batch_size=batch_size)
    plan = plan_chunks(sources, chunk_files=chunk_files, chunk_rows=chunk_rows)
    for path in plan.datasets:
        model.check_compatible(dataset_info(path))
    manifest = {
        "format": "spectraldl-classify-run",
        "model_id": model.model_id,
        "classes": list(model.classes),
        "preprocessing": model.config.to_dict(),
        "sources": plan.digest,
        "files": plan.files,
        "dataset_rows": plan.dataset_rows,
        "chunks": plan.chunks,
        "precision": precision_used,
    }
    parts = parts_dir(out)
    errors_csv = errors_csv_path(out)
    settings = Settings(
        model_dir=os.path.abspath(model_dir),
        model_id=model.model_id,
        device=device,
        precision=precision_used,
        batch_size=batch_size,
        threads=_threads(threads, backend, plan),
    )
    try:
        with output_lock(out):
            if _prepare_parts(out, parts, manifest, overwrite):
                return _already_complete(out, plan, errors_csv, started)
            paths, resumed = _run_chunks(plan, parts, backend, settings, model.classes, progress)
            rows, errors, class_counts, flag_counts, timings = _merge(
                out, paths, model.classes, manifest, plan.unread
            )
    except OSError as exc:
        if is_output_error(exc):
            raise JobIOError(describe_os_error(exc)) from None
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


def _already_complete(out: Path, plan: Plan, errors_csv: Path, started: float) -> ClassifySummary:
    """The summary of a run whose table was already complete."""
    meta = read_metadata(out) or {}
    return ClassifySummary(
        out=out,
        inputs=plan.inputs + len(plan.unread),
        rows=int(meta.get("rows", 0)),
        errors=read_errors_csv(errors_csv),
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
    parts: Path,
    backend: Backend,
    settings: Settings,
    classes: Sequence[str],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[Path], int]:
    """Classify and commit every chunk not committed yet: (each chunk's part, chunks resumed).

    A chunk whose part exists under its current name (its files unchanged) is
    kept; one whose files changed since has another name and is done again.
    """
    paths: list[Path] = []
    sizes: dict[int, int] = {}
    done = resumed = 0

    def todo() -> Iterator[Chunk]:
        nonlocal done, resumed
        for chunk in plan.iter_chunks():
            paths.append(parts / chunk.part_name())
            if paths[-1].exists():
                done += chunk.size
                resumed += 1
                continue
            sizes[chunk.index] = chunk.size
            yield chunk

    if progress:
        progress(0, plan.inputs)
    for result in backend.run(partial(classify_chunk, settings=settings), todo()):
        _commit(paths[result.index], result, classes, settings.model_id)
        done += sizes.pop(result.index)
        if progress:
            progress(done, plan.inputs)
    return paths, resumed
