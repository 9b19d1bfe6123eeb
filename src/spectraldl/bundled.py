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
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path


def data_dir() -> Path:
    """Folder of the bundled data (``spectraldl/data``)."""
    return Path(str(files("spectraldl") / "data"))


def real_dir() -> Path:
    """Folder of the bundled real spectra, with ``lamost/`` and ``ondrejov/`` below it."""
    return data_dir() / "real"


def real_labels_csv() -> Path:
    """``id,label,label_source`` CSV of the bundled labelled spectra."""
    return real_dir() / "labels.csv"


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
