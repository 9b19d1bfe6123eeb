"""Classify's plan: the inputs (datasets, FITS files and trees) cut into repeatable chunks.

A chunk is a range of dataset rows or a list of files; its committed part is
named after its files' paths, sizes and times, so a changed file is classified
again, and lists of files are cut where their paths say
(`spectraldl.jobs.engine.ChunkCutter`), so a file added or deleted since changes
only the chunks around it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from spectraldl.core.errors import FileError
from spectraldl.core.paths import within
from spectraldl.io.dataset import HDF5_SUFFIXES, DatasetError, dataset_info
from spectraldl.io.discovery import walk
from spectraldl.jobs.engine import ChunkCutter
from spectraldl.jobs.files import inputs_fingerprint

CHUNK_FILES = 512
"""FITS files per chunk on average: fixed for a run (recorded), so a resumed run cuts the list
the same way."""
CHUNK_ROWS = 32768
"""Dataset rows per chunk."""


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
    name: str = ""
    """The part's name as planned (`Plan`), else worked out by `part_name`."""

    @property
    def size(self) -> int:
        """Inputs in the chunk (files or rows)."""
        return len(self.files) if self.dataset == "" else self.stop - self.start

    def part_name(self) -> str:
        """The committed chunk's file name; a file or dataset that changed since gives another."""
        if self.name:
            return self.name
        if self.dataset:
            stamp = inputs_fingerprint([self.dataset])
            return f"rows-{stamp}-{self.start:09d}-{self.stop:09d}.parquet"
        return files_part_name(self.files)


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

    Only counts, a digest and each chunk of files' name are kept (not its files), so
    planning a release of millions of files takes little memory; the chunks are produced
    by walking again.
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
    named: tuple[tuple[str, str], ...] = ()
    """Per chunk, in order: a digest of its files' paths and its part's name (from their
    `file_stamp` when planned, so no file is looked at twice); empty for rows of a dataset."""

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
        cutter = ChunkCutter(self.chunk_files)
        for source in self.sources:
            if source.is_dataset:
                if pending:
                    yield self._files_chunk(index, pending)
                    index, pending = index + 1, []
                cutter.restart()
                for start in range(0, source.dataset_rows, self.chunk_rows):
                    stop = min(start + self.chunk_rows, source.dataset_rows)
                    yield Chunk(index=index, dataset=source.path, start=start, stop=stop)
                    index += 1
                continue
            for path in iter_fits_files(source.path):
                pending.append(path)
                files += 1
                if cutter.cut_after(path):
                    yield self._files_chunk(index, pending)
                    index, pending = index + 1, []
        if pending:
            yield self._files_chunk(index, pending)
            index += 1
        if files != self.files or index != self.chunks:
            raise self._changed(files)

    def _files_chunk(self, index: int, files: list[str]) -> Chunk:
        """The chunk ``index`` of ``files``, named as planned; the trees changed if it is
        not the planned chunk."""
        if index >= len(self.named) or self.named[index][0] != paths_digest(files):
            raise self._changed(None)
        return Chunk(index=index, files=tuple(files), name=self.named[index][1])

    def _changed(self, files: int | None) -> ClassifyError:
        """The error for trees that changed since planning."""
        now = "other files" if files is None else f"{files} now"
        return ClassifyError(
            f"the input trees changed during the run ({self.files} files when planned, "
            f"{now}); run the command again"
        )


def paths_digest(paths: Sequence[str]) -> str:
    """A digest of the paths alone: which files a chunk holds."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.encode("utf-8", "surrogateescape") + b"\0")
    return sha.hexdigest()[:16]


def plan_chunks(
    sources: Sequence[str | Path], *, chunk_files: int = CHUNK_FILES, chunk_rows: int = CHUNK_ROWS
) -> Plan:
    """Count and fingerprint ``sources`` (datasets, FITS files, directories) for chunking.

    A ``.h5``/``.hdf5`` source must be a spectraldl dataset; anything else is
    walked for spectrum files (`spectraldl.io.discovery`, as ingest). Paths
    are made absolute, so that workers on other machines find the same files.
    A source given twice, or inside a directory given before it, is read once.
    Chunks follow the order of ``sources``: rows of a dataset, or files. The digest covers
    every file's size, time and inode (`file_stamp`, through the chunks' names), so a
    complete table is known to be stale once a file under the sources changed.
    Raises `ClassifyError` for a missing source or an HDF5 file that is not a dataset.
    """

    if chunk_rows < 1:
        raise ValueError("chunk sizes must be >= 1")
    cutter = ChunkCutter(chunk_files)
    names = _ChunkNames(f"chunk_files={chunk_files};chunk_rows={chunk_rows}")
    planned: list[Source] = []
    roots: list[str] = []
    files = rows = 0
    unread: list[FileError] = []
    for raw in sources:
        path = os.path.abspath(raw)
        if not os.path.lexists(path):
            raise ClassifyError(f"{raw}: no such file or directory")
        if within(os.path.realpath(path), roots):
            continue
        roots.append(os.path.realpath(path))
        if os.path.isfile(path) and path.lower().endswith(HDF5_SUFFIXES):
            try:
                info = dataset_info(path)
            except DatasetError as exc:
                raise ClassifyError(str(exc)) from None
            stamp = f"{info.attrs.get('created', '')}/{info.attrs.get('last_ingest', '')}"
            names.add_rows(f"dataset:{path}:{info.n_rows}:{stamp}", -(-info.n_rows // chunk_rows))
            planned.append(Source(path, dataset_rows=info.n_rows))
            cutter.restart()
            rows += info.n_rows
            continue
        planned.append(Source(path))
        for found in iter_fits_files(path, unread):
            files += 1
            names.add_file(found, cut=cutter.cut_after(found))
    names.close()
    return Plan(
        sources=tuple(planned),
        chunk_files=chunk_files,
        chunk_rows=chunk_rows,
        files=files,
        dataset_rows=rows,
        chunks=len(names.named),
        digest=names.sha.hexdigest(),
        unread=tuple(unread),
        named=tuple(names.named),
    )


def files_part_name(files: Sequence[str]) -> str:
    """The part's name of a chunk of files: their `inputs_fingerprint`."""
    return f"chunk-{inputs_fingerprint(files)}.parquet"


class _ChunkNames:
    """Planning's chunks as they are cut: each chunk of files named from its files' stamps,
    the names and the datasets' stamps making the plan's digest."""

    def __init__(self, settings: str) -> None:
        self.sha = hashlib.sha256(settings.encode())
        self.pending: list[str] = []
        self.named: list[tuple[str, str]] = []

    def add_file(self, path: str, *, cut: bool) -> None:
        """One more file of the current chunk, the chunk's last when ``cut``."""
        self.pending.append(path)
        if cut:
            self.close()

    def add_rows(self, stamp: str, chunks: int) -> None:
        """A dataset's ``chunks`` of rows, after the chunk of files before it."""
        self.close()
        self.sha.update(stamp.encode() + b"\0")
        self.named.extend([("", "")] * chunks)

    def close(self) -> None:
        """End the current chunk of files, if any."""
        if self.pending:
            name = files_part_name(self.pending)
            self.sha.update(name.encode() + b"\0")
            self.named.append((paths_digest(self.pending), name))
            self.pending = []
