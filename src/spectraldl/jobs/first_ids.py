"""The first spectrum of each id over a job's chunks, in 16 bytes per id.

A merge (ingest's, classify's) keeps the first row of each id and lists every
later one as a bad input. Holding each id and its file's path as strings
costs about 0.2 GB per million rows; here an id is a 64-bit hash and the
(chunk, row) where it was first read, in sorted runs merged as they grow.
A hash seen before is checked against the id that row really holds, so the
result is exact, and only duplicates (and hash collisions) read anything back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache

import numpy as np

from spectraldl.core.errors import FileError

Lookup = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""A chunk's (ids, sources) by its number, as given to `FirstOfEachId.keep` in turn."""

_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """64-bit hashes (uint64) of an array of ids: Python's own string hash (SipHash).

    It differs from one process to the next, which is all the merge needs: the
    hashes live in this process's memory only, and a shared hash is checked
    against the ids themselves. Twice as fast as pandas' ``hash_array``, and
    without importing pandas (0.3 s) in every ingest and its workers' server.
    """
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)).view(np.uint64)


class FirstOfEachId:
    """Keeps the first spectrum of each id over a job's chunks, in chunk order.

    A later row with an id already kept becomes a bad input ("duplicate id",
    naming the file it was first read from), as does nothing else; ids in
    ``present`` (already in the output being appended to) are skipped and
    counted in ``already_present``. ``lookup(chunk)`` gives back an earlier
    chunk's ids and sources; it is called only for a row whose id hash was
    seen before.
    """

    def __init__(self, lookup: Lookup, present: Iterable[str] = ()) -> None:
        self.present = set(present)
        self.errors: list[FileError] = []
        self.already_present = 0
        self._lookup = lru_cache(maxsize=8)(lookup)
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # sorted hashes, their positions
        self._others: dict[str, int] = {}  # kept ids whose hash an earlier kept id has
        self._chunk = 0

    def keep(self, ids: Iterable[str], sources: Iterable[str]) -> np.ndarray:
        """The mask of the rows to keep among the next chunk's ``ids`` (read from ``sources``)."""
        chunk, self._chunk = self._chunk, self._chunk + 1
        ids = np.asarray(ids, dtype=object)
        sources = np.asarray(sources, dtype=object)
        n = len(ids)
        mask = np.ones(n, dtype=bool)
        if self.present:
            known = np.fromiter((i in self.present for i in ids), dtype=bool, count=n)
            mask &= ~known
            self.already_present += int(known.sum())
        hashes = id_hashes(ids)
        earlier = self._find(hashes)
        order = np.argsort(hashes, kind="stable")
        repeated = np.zeros(n, dtype=bool)
        same = hashes[order][1:] == hashes[order][:-1]
        repeated[order[1:][same]] = repeated[order[:-1][same]] = True
        suspects = np.flatnonzero(mask & ((earlier >= 0) | repeated))
        run = mask.copy()  # rows whose hash enters the sorted runs
        here: dict[str, int] = {}  # suspects kept in this chunk: id -> row
        here_hashes: set[int] = set()
        for row in suspects:
            ident = ids[row]
            if ident in here:
                self._duplicate(ident, sources[row], sources[here[ident]])
                mask[row] = run[row] = False
                continue
            first = self._others.get(ident, -1)
            if first < 0 and earlier[row] >= 0 and self._id_at(int(earlier[row])) == ident:
                first = int(earlier[row])
            if first >= 0:
                self._duplicate(ident, sources[row], self._source_at(first))
                mask[row] = run[row] = False
                continue
            digest = int(hashes[row])
            if earlier[row] >= 0 or digest in here_hashes:
                # Another id has this hash: this one is looked up by its id.
                self._others[ident] = (chunk << _ROW_BITS) | int(row)
                run[row] = False
            here[ident] = int(row)
            here_hashes.add(digest)
        rows = np.flatnonzero(run)
        self._add(hashes[rows], (np.uint64(chunk) << np.uint64(_ROW_BITS)) | rows.astype(np.uint64))
        return mask

    def _find(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash, the position of an earlier kept row with it, else -1."""
        found = np.full(len(hashes), -1, dtype=np.int64)
        for keys, positions in self._runs:
            at = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
            hit = keys[at] == hashes
            found[hit] = positions[at[hit]].astype(np.int64)
        return found

    def _add(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        """A sorted run of this chunk's kept hashes; runs of similar size are merged."""
        if len(hashes) == 0:
            return
        order = np.argsort(hashes, kind="stable")
        self._runs.append((hashes[order], positions[order]))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (k1, p1), (k2, p2) = self._runs.pop(-2), self._runs.pop()
            keys = np.concatenate([k1, k2])
            merged = np.argsort(keys, kind="stable")
            self._runs.append((keys[merged], np.concatenate([p1, p2])[merged]))

    def _duplicate(self, ident: str, source: object, first: object) -> None:
        reason = f"duplicate id {ident!r}, already read from {first}"
        self.errors.append(FileError(str(source), reason))

    def _id_at(self, position: int) -> str:
        return str(self._lookup(position >> _ROW_BITS)[0][position & _ROW_MASK])

    def _source_at(self, position: int) -> str:
        return str(self._lookup(position >> _ROW_BITS)[1][position & _ROW_MASK])
