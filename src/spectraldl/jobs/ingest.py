"""Many spectrum files to one dataset: parallel, resumable, bad files logged.

The file list is cut into chunks where the file names say
(`spectraldl.jobs.engine.ChunkCutter`). Each chunk is one repeatable task on
the job engine: a worker (a local process or a
Dask worker) reads and preprocesses its files, and the rows come back to be
written as a shard (an uncompressed ``.npz`` of its columns) in ``OUT.parts/`` under a temporary
name, renamed when complete. A killed run leaves finished shards behind; the
same command again skips them.
Shards are merged in chunk order, each as soon as those before it are
written, into a new copy of ``OUT`` that replaces it by a rename once all
are in: the merge runs beside the workers, one worker and many give the
same file, and nothing already in ``OUT`` is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import (
    FileError,
    SpectrumError,
    describe_os_error,
    is_output_error,
    printable_path,
)
from spectraldl.core.paths import within
from spectraldl.core.spectrum import FLOAT32_MAX, Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.io.dataset import (
    META_COLUMNS,
    Rows,
    append_rows,
    create_dataset,
    dataset_info,
    read_ids,
)
from spectraldl.io.discovery import walk
from spectraldl.io.labels import NO_LABEL, LabelList, LabelReport, read_labels
from spectraldl.jobs.backends import Backend, SerialBackend, open_backend
from spectraldl.jobs.engine import PartsFolder, Shard, cut_files, run_shards
from spectraldl.jobs.files import (
    ErrorsFileDamaged,
    JobIOError,
    check_inputs_seen,
    errors_csv_path,
    inputs_fingerprint,
    output_lock,
    read_errors_csv,
    write_errors_csv,
)
from spectraldl.jobs.first_ids import FirstOfEachId
from spectraldl.prep.batch import preprocess_many
from spectraldl.prep.measure import (
    MEASUREMENT_COLUMNS,
    HalphaWindow,
    LineMeasurement,
    halpha_window,
    measure_halpha_windows,
)
from spectraldl.prep.preprocess import PreprocessConfig, Preprocessed

CHUNK_FILES = 256
"""Files per shard on average (`spectraldl.jobs.engine.ChunkCutter`): fixed, so a resumed run
cuts the list the same way whatever --workers."""

MERGE_ROWS = 65_536
"""Rows gathered from the shards before one append to the dataset (about 37 MB of flux):
merging 5 000 spectra took 0.42 s with one append per shard, 0.26 s batched."""


class IngestFailed(RuntimeError):
    """Ingest cannot go on (inputs changed under a resumable run, --strict with bad files)."""


@dataclass
class IngestSummary:
    """What an ingest did."""

    out: Path
    files: int
    added: int
    already_present: int
    errors: list[FileError] = field(default_factory=list)
    errors_csv: Path | None = None
    earlier_errors: int = 0
    """Bad files of earlier ingests into ``out`` that this run did not read, still listed."""
    seconds: float = 0.0
    labels: LabelReport | None = None
    """How the ``--labels`` list met the dataset (ids matching nothing, conflicts, relabelled)."""

    def line(self) -> str:
        """One line for people: counts of good and bad files and where the bad ones are listed."""
        text = f"{self.added} spectra added to {self.out}"
        if self.already_present:
            text += f", {self.already_present} already there"
        text += f"; {len(self.errors)} bad files"
        if self.errors_csv is not None:
            earlier = f", with {self.earlier_errors} of earlier runs" if self.earlier_errors else ""
            text += f" (listed in {self.errors_csv}{earlier})"
        rate = self.files / self.seconds if self.seconds > 0 else float("inf")
        text = f"{text}; {self.files} files in {self.seconds:.1f} s ({rate:.0f} files/s)"
        return text if self.labels is None else f"{text}\n{self.labels.line()}"


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """The spectrum files under ``paths`` (`spectraldl.io.discovery.walk`), without the bad entries.

    Raises `FileNotFoundError` for a path that does not exist.
    """
    return [Path(p) for p in walk(paths)]


def _unexpected(path: str | Path, exc: Exception) -> FileError:
    """A reader or preprocessing bug, reported for the file instead of stopping the run."""
    return FileError(str(path), f"unexpected {type(exc).__name__}: {exc}")


def _read(path: str | Path) -> Spectrum | FileError:
    """One file read, or why it cannot be."""
    try:
        return read_spectrum(path)
    except SpectrumError as exc:
        return FileError(str(path), exc.reason)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a reader bug must not stop a release-sized run
        return _unexpected(path, exc)


PREPROCESS_BATCH = 32
"""Files read, then preprocessed together (`preprocess_many`). Their spectra are held
until then (about 70 kB each for LAMOST), so memory is bounded by this, not the chunk."""


def _read_all(
    paths: Sequence[str | Path], config: PreprocessConfig
) -> Iterator[tuple[Spectrum, Preprocessed] | FileError]:
    """Each file read and preprocessed, or why it cannot be, in batches of `PREPROCESS_BATCH`
    (those on a shared wavelength grid at once)."""
    for start in range(0, len(paths), PREPROCESS_BATCH):
        batch = paths[start : start + PREPROCESS_BATCH]
        read = [_read(path) for path in batch]
        outcomes = iter(preprocess_many([r for r in read if isinstance(r, Spectrum)], config))
        for path, spectrum in zip(batch, read, strict=True):
            if isinstance(spectrum, FileError):
                yield spectrum
                continue
            outcome = next(outcomes)
            if isinstance(outcome, SpectrumError):
                yield FileError(str(path), outcome.reason)
            elif isinstance(outcome, Exception):
                yield _unexpected(path, outcome)
            else:
                yield spectrum, outcome


def _window(spectrum: Spectrum) -> HalphaWindow | LineMeasurement:
    """The H-alpha window to measure; a measuring bug must not lose the spectrum's prediction."""
    try:
        return halpha_window(spectrum)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        return LineMeasurement.unmeasurable(f"measuring failed: {type(exc).__name__}")


def _meta_values(
    spectrum: Spectrum, result: Preprocessed, path: str | Path, origin: str
) -> dict[str, object]:
    """A row's metadata columns (all but the line measurements)."""
    m = spectrum.meta
    return {
        "archive": m.archive,
        "form": m.form,
        "object": m.object,
        "ra": m.ra,
        "dec": m.dec,
        "mjd": m.mjd,
        "date_obs": m.date_obs,
        "snr": result.snr,
        "source": str(path),
        "obsid": m.obsid,
        "designation": m.designation,
        "origin": "synthetic" if m.extra.get("simulated") else origin,
    }


@dataclass
class _Columns:
    """The rows of a chunk as they are read, column by column."""

    xs: list[np.ndarray] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)
    meta: dict[str, list] = field(default_factory=lambda: {name: [] for name in META_COLUMNS})

    def rows(self, grid_n: int) -> Rows:
        """The columns as `Rows` (an empty chunk has no rows on a ``grid_n`` grid)."""
        return Rows(
            X=np.stack(self.xs) if self.xs else np.zeros((0, grid_n), np.float32),
            ids=np.array(self.ids, dtype=object),
            labels=np.array(self.labels, dtype=np.int8),
            quality=np.array(self.quality, dtype=np.int32),
            meta={k: _meta_column(v, META_COLUMNS[k]) for k, v in self.meta.items()},
        )


def _meta_column(values: list, kind: str) -> np.ndarray:
    """One metadata column as its dataset kind (`META_COLUMNS`).

    A finite number beyond what a float32 column holds (an H-alpha width measured on
    corrupt flux) is stored as NaN, not measured, rather than overflowing to infinity.
    """
    if kind == "str":
        return np.array(values, dtype=object)
    column = np.array(values, dtype=np.float64)
    if kind == "f4":
        column[np.isfinite(column) & (np.abs(column) > FLOAT32_MAX)] = np.nan
    return column.astype(kind)


def read_and_preprocess(
    paths: Sequence[str | Path],
    *,
    config: PreprocessConfig,
    labels: LabelList | None = None,
    origin: str = "real",
) -> tuple[Rows, list[FileError]]:
    """Read and preprocess files into rows; unreadable files become `FileError` entries.

    Never raises for a bad file: every problem is reported with the path and
    a reason. Rows keep the order of ``paths``. Each spectrum's H-alpha line
    is measured on its native pixels (`spectraldl.prep.measure.measure_halpha`, the
    whole chunk's windows at once: `spectraldl.prep.measure.measure_halpha_windows`)
    into the rows' measurement columns.
    """
    columns = _Columns()
    errors: list[FileError] = []
    windows: list[HalphaWindow | LineMeasurement] = []
    for path, read in zip(paths, _read_all(paths, config), strict=True):
        if isinstance(read, FileError):
            errors.append(read)
            continue
        spectrum, result = read
        windows.append(_window(spectrum))
        columns.xs.append(result.x)
        columns.ids.append(spectrum.meta.id)
        code = labels.lookup(spectrum.meta.id, Path(path).name) if labels is not None else NO_LABEL
        columns.labels.append(code)
        columns.quality.append(int(result.quality))
        values = _meta_values(spectrum, result, path, origin)
        for name in META_COLUMNS:
            if name not in MEASUREMENT_COLUMNS:
                columns.meta[name].append(values[name])
    for line in measure_halpha_windows(windows):
        for name, value in line.as_dict().items():
            columns.meta[name].append(value)
    return columns.rows(config.grid_n), errors


# --- shards -----------------------------------------------------------------------------


def _shard_name(files: Sequence[str]) -> str:
    """A chunk's shard, named after its files' paths, sizes and times: a changed file, a new
    shard."""
    return f"chunk-{inputs_fingerprint(files)}.npz"


@dataclass(frozen=True)
class ChunkSettings:
    """What reading a chunk needs besides its files (sent with every task)."""

    config: PreprocessConfig
    origin: str


ShardArrays = dict[str, np.ndarray]
"""A shard's rows and bad files as named arrays, text as NumPy unicode: the ``.npz`` of its
part and, until merged, the result a worker sends back (`_shard_arrays`)."""


def read_chunk(files: list[str], settings: ChunkSettings) -> ShardArrays:
    """The task of one shard: read and preprocess its files (`read_and_preprocess`)."""
    return _shard_arrays(
        *read_and_preprocess(files, config=settings.config, origin=settings.origin)
    )


def _text(values: Iterable[str]) -> np.ndarray:
    """Strings as a NumPy unicode array (stored without pickling)."""
    return np.array(list(values), dtype=str)


def _shard_arrays(rows: Rows, errors: Sequence[FileError]) -> ShardArrays:
    """A chunk's rows and bad files as the arrays of its shard (made in the worker, so the
    parent, which commits and merges every shard, only writes them)."""
    arrays = {
        "X": rows.X,
        "ids": _text(rows.ids),
        "labels": rows.labels,
        "quality": rows.quality,
        "error_paths": _text(e.path for e in errors),
        "error_reasons": _text(e.reason for e in errors),
    }
    for name, values in rows.meta.items():
        arrays[f"meta.{name}"] = _text(values) if META_COLUMNS[name] == "str" else values
    return arrays


def _write_shard(path: Path, arrays: ShardArrays) -> None:
    """A shard as one uncompressed ``.npz``: a few milliseconds, where an HDF5 file of the
    same rows took tens (the parent writes every shard; its time is the workers' wait).
    A shard read where its files cannot be seen is refused (`check_inputs_seen`)."""
    check_inputs_seen(_shard_errors(arrays))
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool


def _shard_rows(shard: Mapping[str, np.ndarray]) -> Rows:
    """The rows of a shard's arrays (held, or read from its ``.npz``)."""
    return Rows(
        X=shard["X"],
        ids=shard["ids"],
        labels=shard["labels"],
        quality=shard["quality"],
        meta={name: shard[f"meta.{name}"] for name in META_COLUMNS if f"meta.{name}" in shard},
    )


def _shard_errors(shard: Mapping[str, np.ndarray]) -> list[FileError]:
    """The bad files of a shard's arrays."""
    return [
        FileError(str(p), str(r))
        for p, r in zip(shard["error_paths"], shard["error_reasons"], strict=True)
    ]


def _shard_ids(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A committed shard's ids and sources, without its rows (read lazily from the file)."""
    with np.load(path, allow_pickle=False) as shard:
        return shard["ids"], shard["meta.source"]


def _digest(items: Iterable[str]) -> str:
    sha = hashlib.sha256()
    for item in items:
        sha.update(item.encode("utf-8", "surrogateescape"))
        sha.update(b"\0")
    return sha.hexdigest()


def _check_existing(out: Path, config: PreprocessConfig) -> None:
    """Refuse to append to a dataset made with other preprocessing."""
    if out.exists():
        existing = dataset_info(out).config
        if existing != config:
            raise IngestFailed(
                f"{out} was made with other preprocessing ({existing.to_dict()}); "
                "write to a new file instead"
            )


INPUTS = ("files", "n_files")
"""The manifest's keys that describe what the given paths hold: a run resumed after files
were added or deleted under them keeps the parts of the chunks that did not change."""


def _manifest(
    paths: Sequence[str | Path], files: Sequence[str], config: PreprocessConfig, origin: str
) -> dict[str, Any]:
    """What a resumed run must match: the paths given and the settings (and, in `INPUTS`, the
    files found under the paths). Not the label lists: the chunks hold no labels, which the
    merge sets from the lists given then, so a run stopped on a list resumes with it mended."""
    return {
        "paths": [os.path.abspath(path) for path in paths],
        "files": _digest(files),
        "n_files": len(files),
        "config": config.to_dict(),
        "origin": origin,
        "chunk_files": CHUNK_FILES,
    }


def ingest(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    labels_csv: str | Path | Sequence[str | Path] | None = None,
    workers: int = 1,
    backend: Backend | None = None,
    strict: bool = False,
    config: PreprocessConfig | None = None,
    origin: str = "real",
    progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Read, preprocess and store every spectrum under ``paths`` into the dataset ``out``.

    Parameters
    ----------
    paths
        Files and directories (walked recursively by `spectraldl.io.discovery`).
    out
        Dataset to create or, when it exists, to append to (ids already there
        are skipped and counted, not duplicated).
    labels_csv
        Optional ``id,label`` CSV, or several read as one list (see
        `spectraldl.io.labels.read_labels`).
    workers
        Worker processes when no ``backend`` is given; 1 runs in this process.
        The result does not depend on it.
    backend
        Where the chunks run (`spectraldl.jobs.backends.open_backend`: local
        processes or Dask); the result does not depend on it.
    strict
        Raise `IngestFailed` if any file is bad (nothing is merged into ``out``).
    config
        Preprocessing parameters; must match an existing ``out``'s.
    origin
        ``real`` or ``synthetic``, stored per row in ``meta/origin``; a file
        `spectraldl simulate` wrote (``SIMULATD = T``) is ``synthetic`` whatever
        this says.
    progress
        Called with (files done, files total) as chunks complete.

    Returns
    -------
    IngestSummary
        Counts, the bad files with reasons, and the path of ``OUT.errors.csv``.
    """
    started = time.perf_counter()
    out = Path(out)
    config = config or PreprocessConfig()
    label_files = [labels_csv] if isinstance(labels_csv, str | Path) else list(labels_csv or ())
    labels = read_labels(*label_files) if label_files else None
    if strict and labels is not None and labels.conflicts:
        # Conflicts only: no spectrum has been read yet, so every id would seem unmatched.
        report = LabelReport(labels.source, conflicting=list(labels.conflicts))
        raise IngestFailed(f"--strict: {report.line()}")
    _check_existing(out, config)
    settings = ChunkSettings(config, origin)  # no labels: the merge sets them (`_manifest`)
    try:
        with output_lock(out), ExitStack() as stack:
            if backend is None:
                backend = stack.enter_context(open_backend("local", workers=workers))
            backend.warm_up(partial(read_chunk, settings=settings))
            found = walk(paths)
            files = list(found)
            unread = list(found.bad)
            manifest = _manifest(paths, files, config, origin)
            earlier = _earlier_errors(out, paths, files, unread)
            parts = _prepare_parts(out, manifest)
            with atomic_write(out) as tmp:
                merge = _Merge(tmp, out, config)
                _run(files, parts, settings, backend, progress, merge.add)
                summary = merge.finish(
                    parts, strict=strict, files=len(files) + len(unread), unread=unread,
                    labels=labels, earlier=earlier,
                )  # fmt: skip
            parts.remove()
    except OSError as exc:
        if is_output_error(exc):
            raise JobIOError(describe_os_error(exc)) from None
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _earlier_errors(
    out: Path, paths: Sequence[str | Path], files: Sequence[str], unread: Sequence[FileError]
) -> list[FileError]:
    """The bad files that earlier ingests into ``out`` listed outside this run's ``paths``.

    They are still missing from ``out``, so its errors file keeps them; what lies
    under the paths given now (bad again, repaired or deleted since) is listed,
    or not, by this run's walk alone. The errors file lists absolute paths; a
    relative one (written by an older spectraldl, from a working folder unknown
    now) is dropped only where this run reads that very path again.
    """
    if not out.exists():
        return []
    try:
        listed = read_errors_csv(errors_csv_path(out))
    except ErrorsFileDamaged as exc:
        raise IngestFailed(str(exc)) from None
    roots = [_absolute(path) for path in paths]
    kept = [e for e in listed if not (os.path.isabs(e.path) and within(e.path, roots))]
    if any(not os.path.isabs(error.path) for error in kept):
        read = {printable_path(path) for path in files} | {error.path for error in unread}
        kept = [error for error in kept if error.path not in read]
    return kept


def _absolute(path: str | Path) -> str:
    """``path`` made absolute, as the errors file writes it."""
    return printable_path(os.path.abspath(path))


def _prepare_parts(out: Path, manifest: dict[str, Any]) -> PartsFolder:
    """``OUT.parts/`` ready to resume or start the run of ``manifest``."""
    parts = PartsFolder(out)
    conflict = IngestFailed(
        f"{parts.path} holds an unfinished ingest of other paths or settings, or one an older "
        "spectraldl started; re-run the command that started it to finish it, or delete the "
        "folder to start over"
    )
    parts.prepare(manifest, merged=partial(_merged_into, out), conflict=conflict, inputs=INPUTS)
    return parts


def _run(
    files: Sequence[str],
    parts: PartsFolder,
    settings: ChunkSettings,
    backend: Backend,
    progress: Callable[[int, int], None] | None,
    in_order: Callable[[Path, ShardArrays | None], None],
) -> None:
    """Write the shard of every chunk not written yet (on ``backend``), each handed to
    ``in_order`` in chunk order as soon as it and those before it are written."""
    shards = [Shard(_shard_name(c), len(c), c) for c in cut_files(files, CHUNK_FILES)]
    parts.keep_only(shard.name for shard in shards)
    done = 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        if progress:
            progress(done, len(files))

    if progress:
        progress(0, len(files))
    if len(shards) <= 1:
        backend = SerialBackend()
    run_shards(
        shards,
        partial(read_chunk, settings=settings),
        _write_shard,
        parts=parts,
        backend=backend,
        progress=advance,
        in_order=in_order,
    )


def _merged_into(out: Path, marker: str) -> bool:
    """True when ``out`` is the result of merging the parts the marker names (its run id)."""
    if not out.exists():
        return False
    with h5py.File(out, "r") as h5:
        return str(h5.attrs.get("last_ingest", "")) == marker


class _Merge:
    """The new dataset ``tmp`` (a copy of ``out``, or empty), growing shard by shard in chunk
    order while later chunks are still read: the first row of each id is appended (ids
    already in ``out`` are skipped), later ones are listed as duplicates."""

    def __init__(self, tmp: Path, out: Path, config: PreprocessConfig) -> None:
        self.tmp = tmp
        self.out = out
        self._parts: list[Path] = []
        present = read_ids(out) if out.exists() else np.array([], dtype=object)
        self._first = FirstOfEachId(self._lookup, present)
        self._errors: list[FileError] = []
        self._pending: list[Rows] = []
        self._pending_rows = 0
        self.added = 0
        self.existing = len(present)
        """Rows ``out`` held before this run: the rows of ``tmp`` before its new ones."""
        if out.exists():
            shutil.copyfile(out, tmp)
        else:
            create_dataset(tmp, config=config)

    def _lookup(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return _shard_ids(self._parts[index])

    def add(self, part: Path, arrays: ShardArrays | None) -> None:
        """Merge the next shard: its arrays as held, or read back from its ``part``."""
        self._parts.append(part)
        if arrays is not None:
            self._take(arrays)
            return
        with np.load(part, allow_pickle=False) as shard:  # arrays read as used: rows if kept
            self._take(shard)

    def _take(self, shard: Mapping[str, np.ndarray]) -> None:
        self._errors += _shard_errors(shard)
        keep = self._first.keep(shard["ids"].astype(object), shard["meta.source"].astype(object))
        kept = int(keep.sum())
        if kept:
            self._pending.append(_shard_rows(shard).take(keep))
            self._pending_rows += kept
            self.added += kept
        if self._pending_rows >= MERGE_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            append_rows(self.tmp, Rows.concat(self._pending))
        self._pending, self._pending_rows = [], 0

    def finish(
        self,
        parts: PartsFolder,
        *,
        strict: bool,
        files: int,
        unread: Sequence[FileError] = (),
        labels: LabelList | None = None,
        earlier: Sequence[FileError] = (),
    ) -> IngestSummary:
        """Complete ``tmp`` once every shard is merged: labels, the run's mark, the bad files'
        list (this run's after the ``earlier`` runs' still missing from ``out``). With
        ``strict``, any bad file raises `IngestFailed` (``tmp`` is then dropped)."""
        errors = [
            FileError(_absolute(error.path), error.reason)
            for error in (*unread, *self._errors, *self._first.errors)
        ]
        errors_csv = errors_csv_path(self.out)
        if strict and errors:
            write_errors_csv(errors_csv, [*earlier, *errors])
            listing = "; ".join(f"{e.path}: {e.reason}" for e in errors[:3])
            raise IngestFailed(
                f"{len(errors)} bad files with --strict, {self.out} not written; all listed in "
                f"{errors_csv}; first: {listing}"
            )
        self._flush()
        report = _apply_labels(self.tmp, labels, self.existing) if labels is not None else None
        if strict and report is not None and report.problems:
            raise IngestFailed(
                f"--strict: {report.line()}; {self.out} not written; the spectra read are kept "
                f"in {parts.path}: mend the list and run the command again"
            )
        run = uuid.uuid4().hex
        with h5py.File(self.tmp, "r+") as h5:
            h5.attrs["last_ingest"] = run
        write_errors_csv(errors_csv, [*earlier, *errors])
        parts.mark_merged(run)
        return IngestSummary(
            out=self.out,
            files=files,
            added=self.added,
            already_present=self._first.already_present,
            errors=errors,
            errors_csv=errors_csv,
            earlier_errors=len(earlier),
            labels=report,
        )


def _apply_labels(path: Path, labels: LabelList, existing: int) -> LabelReport:
    """Set the list's labels on every row of the dataset ``path``: this run's rows (read
    unlabelled) and the ``existing`` ones before them.

    A re-run with ``--labels`` into an existing dataset relabels the spectra
    it already holds instead of ignoring the list; the report counts them.
    """
    matcher = labels.matcher()
    with h5py.File(path, "r+") as h5:
        ids = h5["ids"].asstr()[...]
        sources = h5["meta/source"].asstr()[...]
        stored = h5["labels"][...]
        wanted = stored.copy()
        for i, (ident, source) in enumerate(zip(ids, sources, strict=True)):
            name = Path(source).name
            matcher.see(ident, name)
            code = labels.lookup(ident, name)
            if code != NO_LABEL:
                wanted[i] = code
        relabelled = int((wanted[:existing] != stored[:existing]).sum())
        if (wanted != stored).any():
            h5["labels"][...] = wanted
    return matcher.report(relabelled=relabelled)
