"""The first row of each id over chunks, kept in bounded memory: exact, duplicates named."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from spectraldl.core.errors import FileError
from spectraldl.jobs import first_ids
from spectraldl.jobs.first_ids import FirstOfEachId


def _by_dict(chunks, present=()):
    """The plain answer: every id and its file in a dict."""
    seen: dict[str, str] = {}
    masks, errors, already = [], [], 0
    for ids, sources in chunks:
        mask = []
        for ident, source in zip(ids, sources, strict=True):
            if ident in present:
                already += 1
                mask.append(False)
            elif ident in seen:
                reason = f"duplicate id {ident!r}, already read from {seen[ident]}"
                errors.append(FileError(source, reason))
                mask.append(False)
            else:
                seen[ident] = source
                mask.append(True)
        masks.append(np.array(mask))
    return masks, errors, already


def _chunks(seed: int, n_chunks: int = 40, size: int = 64, ids: int = 1500):
    """Chunks of ids drawn with repeats, within and across chunks, each row its own file."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_chunks):
        drawn = rng.integers(0, ids, size=rng.integers(0, size))
        names = np.array([f"spec-{i:05d}" for i in drawn], dtype=object)
        out.append((names, np.array([f"/tree/{c}/{r}.fits" for r in range(len(names))], object)))
    return out


def _run(chunks, present=()):
    first = FirstOfEachId(lambda i: chunks[i], present)
    masks = [first.keep(ids, sources) for ids, sources in chunks]
    return masks, first.errors, first.already_present


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("collide", [False, True], ids=["siphash", "hashes-colliding"])
def test_the_same_rows_and_messages_as_a_dict_of_every_id(
    seed: int, collide: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if collide:  # seven hash values for 1 500 ids: the id check must tell them apart
        real = first_ids.id_hashes
        monkeypatch.setattr(first_ids, "id_hashes", lambda ids: real(ids) % np.uint64(7))
    chunks = _chunks(seed)
    present = {f"spec-{i:05d}" for i in range(0, 1500, 97)}
    got_masks, got_errors, got_already = _run(chunks, present)
    want_masks, want_errors, want_already = _by_dict(chunks, present)
    assert got_already == want_already > 0
    assert got_errors == want_errors and len(want_errors) > 100
    for got, want in zip(got_masks, want_masks, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_million_ids_cost_tens_of_bytes_each_not_their_strings() -> None:
    n, size = 1_000_000, 512
    tracemalloc.start()
    try:
        first = FirstOfEachId(lambda i: pytest.fail("no id repeats: nothing is read back"))
        for start in range(0, n, size):
            rows = range(start, min(n, start + size))
            # New strings per chunk, as a merge reads them from each committed part.
            ids = np.array([f"spec-55859-F5902_sp01-{i:07d}" for i in rows], dtype=object)
            sources = np.array([f"/data/lamost/dr1/F5902/{i:07d}.fits.gz" for i in rows], object)
            assert first.keep(ids, sources).all()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 16 bytes per id in sorted runs; the ids and paths as strings in a dict took 221.
    assert held / n < 24, f"{held / n:.0f} bytes per id"
    assert first.errors == []


def test_ids_with_undecodable_bytes_are_told_apart_and_repeats_found() -> None:
    # The stem of an Ondřejov file whose name is not UTF-8, as os.fsdecode gives it.
    odd = "a201402110019-\udcff"
    chunks = [
        (np.array([odd, "a201402110019-x"], dtype=object), np.array(["/o/1.fit", "/o/2.fit"])),
        (np.array(["a201402110019-x", odd], dtype=object), np.array(["/o/3.fit", "/o/4.fit"])),
    ]
    masks, errors, _ = _run(chunks)
    assert [m.tolist() for m in masks] == [[True, True], [False, False]]
    assert [e.path for e in errors] == ["/o/3.fit", "/o/4.fit"]
    assert errors[1].reason == f"duplicate id {odd!r}, already read from /o/1.fit"
