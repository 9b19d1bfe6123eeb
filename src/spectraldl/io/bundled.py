"""The real spectra shipped with the package (for the demo, tests and benchmarks).

``data/real/manifest.csv`` lists each file with its archive, label, the label's
source and a role that keeps our own checks honest:

* ``dev``: ordinary LAMOST stars (plate B6212, fibres <= 125) that simulation
  and realism work may be tuned against;
* ``holdout``: ordinary LAMOST stars never used for tuning (the other B6212
  fibres, other DR1 plates, DR2, DR6, DR7, MRS): the check that ordinary stars
  stay ordinary;
* ``eval``: labelled spectra (Ondřejov thesis labels; LAMOST counterparts with
  weak labels of another epoch), never trained on, reported separately.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from spectraldl.io.archives.fitsfile import BLOCK, CARD, FitsFile


def data_dir() -> Path:
    """Folder of the bundled data (``spectraldl/data``)."""
    return Path(str(files("spectraldl") / "data"))


def real_dir() -> Path:
    """Folder of the bundled real spectra, with ``lamost/`` and ``ondrejov/`` below it."""
    return data_dir() / "real"


def real_labels_csv() -> Path:
    """``id,label,label_source`` CSV of the bundled labelled spectra."""
    return real_dir() / "labels.csv"


def known_be_stars_csv() -> Path:
    """``id,designation`` CSV of 203 known Be stars in LAMOST DR1 (for cross-matching)."""
    return real_dir() / "known-be-stars.csv"


@dataclass(frozen=True)
class BundledFile:
    """One bundled real spectrum and what it is for."""

    path: Path
    archive: str
    label: str
    label_source: str
    role: str
    subclass: str


def bundled_files(*, archive: str | None = None, role: str | None = None) -> list[BundledFile]:
    """Bundled real spectra, optionally only of one archive (``lamost``/``ondrejov``) or role."""
    base = real_dir()
    with (base / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = [
        BundledFile(
            path=base / row["path"],
            archive=row["archive"].split("-")[0],
            label=row["label"],
            label_source=row["label_source"],
            role=row["role"],
            subclass=row["class_subclass"],
        )
        for row in rows
    ]
    return [
        f
        for f in out
        if (archive is None or f.archive == archive) and (role is None or f.role == role)
    ]


def replicate_real_tree(
    out_dir: str | Path,
    n: int,
    *,
    compress: bool = False,
    shared_tail: bool = False,
    first: int = 0,
) -> list[Path]:
    """Write ``n`` copies of the bundled real LAMOST low-resolution files as distinct spectra.

    Each copy gets a unique FILENAME header card (the LAMOST id) and file name,
    so a tree of real bytes can stand for a release in benchmarks and resume
    tests. Copies are numbered from ``first`` (trees written in parts, or
    grown, stay distinct). Returns the paths written, in sorted order.

    With ``compress`` and ``shared_tail``, a copy is two gzip members: its
    first 2 880-byte block (with the FILENAME card) and the rest of the
    original, compressed once per original (a whole member where FILENAME lies
    beyond that block). That writes million-file trees about twenty times
    faster; gzip readers read the members as one stream.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [f.path for f in bundled_files(archive="lamost") if "/dr7-mrs/" not in str(f.path)]
    originals = [FitsFile.open(p) for p in sources]
    tails = [gzip.compress(o.data[BLOCK:], mtime=0) for o in originals] if shared_tail else []
    written = []
    for i in range(first, first + n):
        original = originals[i % len(originals)]
        stem = str(original.header["FILENAME"]).removesuffix(".fits")
        name = f"{stem}-r{i:07d}.fits"
        card = f"FILENAME= '{name}'".ljust(CARD).encode("ascii")
        at = original.data.find(b"FILENAME= ")
        folder = out_dir / f"{i // 1000:04d}"
        if i % 1000 == 0 or i == first:
            folder.mkdir(exist_ok=True)
        path = folder / (name + (".gz" if compress else ""))
        if compress and shared_tail and at + CARD <= BLOCK:
            head = original.data[:at] + card + original.data[at + CARD : BLOCK]
            content = gzip.compress(head, compresslevel=1, mtime=0) + tails[i % len(originals)]
        else:
            data = original.data[:at] + card + original.data[at + CARD :]
            content = gzip.compress(data, mtime=0) if compress else data
        path.write_bytes(content)
        written.append(path)
    return sorted(written)
