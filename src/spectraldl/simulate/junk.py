"""Broken files of the kinds a real archive holds and ingest must survive.

Each is made from a valid simulated file of the same index, then broken the
way real files break: cut off during a copy, emptied, replaced by a log, a
flux of NaN, a layout no reader knows, a setting without H-alpha, a LAMOST red
arm that delivered nothing (as the real spec-55862-B6212_sp06-145 does over
5612-7535 Å). `JUNK_REASONS` holds a word of the error each one must trip.

The kinds that only break bytes are made here; those that need to know a
survey's file (`SURVEY_KINDS`) are made by the survey's module, registered as
its ``junk_makers`` (`spectraldl.simulate.registry`).
"""

from __future__ import annotations

import numpy as np

from spectraldl.simulate import fitsbytes as fb
from spectraldl.simulate.registry import SimulatedArchive, simulated_archive

JUNK_KINDS = (
    "zero-byte",
    "truncated-header",
    "truncated-data",
    "text",
    "random-bytes",
    "nan-flux",
    "wrong-layout",
    "no-halpha",
    "dead-red-arm",
    "truncated-gzip",
)
"""Every kind of broken file. ``dead-red-arm`` is LAMOST-only and ``truncated-gzip``
needs compressed files; other archives use the rest."""

JUNK_REASONS = {
    "zero-byte": "empty",
    "truncated-header": "END",
    "truncated-data": "truncated|cannot read",
    "text": "not a FITS file",
    "random-bytes": "not a FITS file",
    "nan-flux": "NaN",
    "wrong-layout": "not a spectrum of a known",
    "no-halpha": "no H-alpha",
    "dead-red-arm": "constant",
    "truncated-gzip": "gzip",
}
"""Words (alternatives split by ``|``) that ingest's error reason for each kind contains."""

SURVEY_KINDS = frozenset({"nan-flux", "wrong-layout", "no-halpha", "dead-red-arm"})
"""Kinds made by each survey's own ``junk_makers``; a survey without a maker has none of them."""


def kinds_for(archive: str, *, compressed: bool) -> tuple[str, ...]:
    """The junk kinds that make sense for an archive and compression."""
    makers = simulated_archive(archive).junk_makers
    kinds = [k for k in JUNK_KINDS if k not in SURVEY_KINDS or k in makers]
    return tuple(k for k in kinds if k != "truncated-gzip" or compressed)


def junk_kind(index: int, *, seed: int, kinds: tuple[str, ...]) -> str:
    """The kind of junk file ``index``: uniform over ``kinds``, from (seed, index) alone."""
    word = int(np.random.SeedSequence([seed, 11, index]).generate_state(1)[0])
    return kinds[word % len(kinds)]


def make_junk(kind: str, spec: object, rng: np.random.Generator, *, archive: str) -> bytes:
    """The (uncompressed, except ``truncated-gzip``) bytes of a broken file of ``kind``.

    ``spec`` is a spectrum simulated for ``archive``; survey kinds may change it.
    """
    survey = simulated_archive(archive)
    good = survey.file_bytes(spec)
    if kind in survey.junk_makers:
        return survey.junk_makers[kind](spec, good)
    return _broken_bytes(kind, spec, good, rng, survey)


def _broken_bytes(
    kind: str, spec: object, good: bytes, rng: np.random.Generator, survey: SimulatedArchive
) -> bytes:
    """A junk file of a kind any FITS file can be broken into, from its valid bytes ``good``."""
    if kind == "zero-byte":
        return b""
    if kind == "truncated-header":
        end = good.find(b"END" + b" " * 77)
        return good[: int(rng.integers(min(160, end - 1), end))]
    if kind == "truncated-data":
        start = survey.data_start(spec, good)
        return good[: start + int(rng.integers(1, max(2, (len(good) - start) // 2)))]
    if kind == "text":
        return b"observing log: clouds from 23:10, dome closed, see the night report\n"
    if kind == "random-bytes":
        data = rng.bytes(int(rng.integers(3000, 9000)))
        return b"\x00" + data[1:]
    if kind == "truncated-gzip":
        return fb.gzip_bytes(good, level=1)[: int(rng.integers(300, 3000))]
    raise ValueError(f"unknown junk kind {kind!r}")
