"""The one resumable-job engine: shards of work run on a backend and committed one by one.

A job (ingest, classify) cuts its inputs into shards. A shard is one
repeatable task: a picklable function of picklable arguments, run in this
process, in local worker processes or on a Dask cluster (`backends`). Its
result comes back to this process and is committed to ``OUT.parts/NAME``
through `atomic_write`, so a part is complete or absent, never half written.
Part names carry a fingerprint of their inputs (paths, sizes and times of the
files), so a changed input gives a new name and is done again. Lists of files
are cut where their names say (`ChunkCutter`), not every N files, so a file
added or deleted since changes the chunk it falls in and at most a few after
it, and a resumed run keeps the others' parts.

``OUT.parts/`` also holds the run's manifest (the inputs and settings a
resumed run must match) and, between the final rename of ``OUT`` and the
removal of the folder, a ``merged`` marker: a run killed there (even by
kill -9) is complete, and the next one only cleans up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from spectraldl.core.atomic import atomic_write
from spectraldl.jobs.backends import Backend, open_backend

T = TypeVar("T")
R = TypeVar("R")

MANIFEST = "manifest.json"
MERGED = "merged"


class ChunkCutter:
    """Where a list of files is cut into chunks: after a file whose name hashes to a boundary.

    A boundary depends on the file name there and on the distance from the previous
    one, not on its position in the list: after a file is added or deleted the
    boundaries fall again where they fell before within a chunk or two, so the
    other chunks keep their files and their committed parts. Chunks hold
    ``target`` files on average, between ``target // 4`` and ``2 * target``.
    """

    def __init__(self, target: int) -> None:
        if target < 1:
            raise ValueError("chunk sizes must be >= 1")
        self.smallest = max(1, target // 4)
        self.largest = 2 * target
        self._modulus = target - self.smallest + 1  # the mean is smallest - 1 + modulus
        self._size = 0

    def cut_after(self, path: str) -> bool:
        """Count ``path`` into the chunk; True when the chunk ends with it."""
        self._size += 1
        if self._size < self.smallest:
            return False
        name = os.fsencode(os.path.basename(path))  # the same wherever the tree is mounted
        if self._size < self.largest and zlib.crc32(name) % self._modulus:
            return False
        self._size = 0
        return True

    def restart(self) -> None:
        """Begin a new chunk here (where something other than files comes between)."""
        self._size = 0


def cut_files(paths: Iterable[str], target: int) -> Iterator[list[str]]:
    """The chunks `ChunkCutter` cuts ``paths`` into, in order."""
    cutter = ChunkCutter(target)
    chunk: list[str] = []
    for path in paths:
        chunk.append(path)
        if cutter.cut_after(path):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class Shard(Generic[T]):
    """One unit of work: the part it commits, how many inputs it covers, and its task."""

    name: str
    size: int
    task: T


@dataclass
class ShardsDone:
    """Every shard's part, in shard order, and how many were already committed before this run."""

    paths: list[Path] = field(default_factory=list)
    resumed: int = 0


class PartsFolder:
    """``OUT.parts/``: the committed parts of one run of a job, its manifest and its marker."""

    def __init__(self, out: str | Path) -> None:
        out = Path(out)
        self.path = out.with_name(out.name + ".parts")
        self._staging = out.with_name(out.name + ".parts.new")
        self._discarded = out.with_name(out.name + ".parts.old")

    def prepare(
        self,
        manifest: dict[str, Any],
        *,
        merged: Callable[[str], bool],
        conflict: Exception | None,
        inputs: Collection[str] = (),
    ) -> None:
        """Make the folder ready to resume or start a run of ``manifest``.

        ``merged(marker)`` says whether the output is the complete result the
        marker names (the folder is then removed). Parts of another run raise
        ``conflict``, or are removed when it is None (the caller's overwrite).
        The manifest's keys named in ``inputs`` describe what the given paths
        hold (files added or deleted since): a run that differs only there is
        resumed, its parts of unchanged chunks kept.
        """
        # The folder appears with its manifest and goes as a whole, each by one rename: a
        # folder without its manifest would read as another run's parts and refuse the
        # resume. What a run killed in between leaves is one of these siblings, cleared
        # here (runs of one output are locked, `output_lock`).
        for stale in (self._staging, self._discarded):
            shutil.rmtree(stale, ignore_errors=True)
        marker = self.path / MERGED
        if marker.exists() and merged(marker.read_text()):
            self.remove()
        if self.path.exists():
            if self._manifest() == manifest:
                return
            if self.of_run(manifest, inputs):
                with atomic_write(self.path / MANIFEST) as tmp:
                    tmp.write_text(json.dumps(manifest, indent=1))
                return
            if conflict is not None:
                raise conflict
            self.remove()
        self._staging.mkdir(parents=True)
        (self._staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        self._staging.rename(self.path)

    def merged(self) -> bool:
        """Whether the folder's parts are marked merged into their complete output."""
        return (self.path / MERGED).exists()

    def of_run(self, manifest: dict[str, Any], inputs: Collection[str]) -> bool:
        """Whether the folder holds parts of the run of ``manifest``, what the paths hold
        (the keys ``inputs``) aside: an unfinished run that `prepare` resumes."""
        found = self._manifest()
        return found is not None and same_run(found, manifest, inputs)

    def _manifest(self) -> dict[str, Any] | None:
        """The manifest in the folder (None without one)."""
        try:
            found: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        return found

    def keep_only(self, names: Iterable[str]) -> None:
        """Remove parts not in ``names`` (of inputs changed since) and unfinished temporaries."""
        keep = {*names, MANIFEST}
        for path in self.path.iterdir():
            if path.name not in keep:
                path.unlink()

    def mark_merged(self, marker: str) -> None:
        """Record that the output holding ``marker`` is (or is about to be) the complete result."""
        if self.path.exists():
            (self.path / MERGED).write_text(marker)

    def remove(self) -> None:
        """Remove the folder (once the output is complete, or to start over)."""
        shutil.rmtree(self._discarded, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.rename(self._discarded)
        shutil.rmtree(self._discarded, ignore_errors=True)


def same_run(found: dict[str, Any], manifest: dict[str, Any], inputs: Collection[str]) -> bool:
    """Whether two manifests are of one run, what the paths hold (the keys ``inputs``) aside."""
    return {k: v for k, v in found.items() if k not in inputs} == {
        k: v for k, v in manifest.items() if k not in inputs
    }


def numbered(work: Callable[[T], R], item: tuple[int, T]) -> tuple[int, R]:
    """``(index, work(task))`` for ``(index, task)``: results that say which task they are."""
    index, task = item
    return index, work(task)


def map_in_order(
    work: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int,
    finished: Callable[[int], None] | None = None,
) -> list[R]:
    """``work(task)`` for every task on the local job backends, results in task order.

    For jobs that are not resumed (simulate, the gallery): worker processes
    that die with this one when ``workers`` > 1 and there is more than one
    task, else this process. ``finished(i)`` is called as task ``i`` completes.
    """
    results: dict[int, R] = {}
    with open_backend("local", workers=workers if len(tasks) > 1 else 1) as backend:
        for index, result in backend.run(partial(numbered, work), enumerate(tasks)):
            results[index] = result
            if finished:
                finished(index)
    return [results[index] for index in range(len(tasks))]


HELD_RESULTS = 8
"""Finished shards whose results are kept in memory until their turn (`run_shards`'s
``in_order``); later ones are read back from their parts, so a slow shard cannot make
this process hold the results of all those that overtook it."""


def run_shards(
    shards: Iterable[Shard[T]],
    work: Callable[[T], R],
    commit: Callable[[Path, R], None],
    *,
    parts: PartsFolder,
    backend: Backend,
    progress: Callable[[int], None] | None = None,
    in_order: Callable[[Path, R | None], None] | None = None,
) -> ShardsDone:
    """Run every shard whose part is not committed yet and commit its result.

    ``work(task)`` runs where the backend puts it; ``commit(tmp, result)``
    writes the part here, to a temporary path renamed when it returns.
    ``progress`` gets the inputs covered by each shard as it is skipped or
    committed. ``in_order(part, result)`` is called for every shard in shard
    order as soon as it and all before it are committed, so a job can merge
    while later shards run; ``result`` is None where the part must be read
    back (a resumed shard, or one kept waiting past `HELD_RESULTS`). Shards
    are read lazily, so a plan of millions of files is never all in memory
    with its results.
    """
    done = ShardsDone()
    sizes: dict[int, int] = {}
    finished: dict[int, R | None] = {}  # committed, waiting for their turn in in_order
    turn = held = 0

    def hand_on(index: int, result: R | None) -> None:
        nonlocal turn, held
        if in_order is None:
            return
        if result is not None and index != turn and held >= HELD_RESULTS:
            result = None
        finished[index] = result
        held += result is not None
        while turn in finished:
            ready = finished.pop(turn)
            held -= ready is not None
            in_order(done.paths[turn], ready)
            turn += 1

    def todo() -> Iterator[tuple[int, T]]:
        for shard in shards:
            index = len(done.paths)
            done.paths.append(parts.path / shard.name)
            if done.paths[-1].exists():
                done.resumed += 1
                hand_on(index, None)
                if progress:
                    progress(shard.size)
                continue
            sizes[index] = shard.size
            yield index, shard.task

    for index, result in backend.run(partial(numbered, work), todo()):
        with atomic_write(done.paths[index], keep_suffix=True) as tmp:
            commit(tmp, result)
        hand_on(index, result)
        size = sizes.pop(index)
        if progress:
            progress(size)
    return done
