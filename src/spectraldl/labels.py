"""Class names of H-alpha profiles and the reading of label lists.

The codes follow the thesis' Ondřejov dataset (0 emission, 1 absorption,
2 unknown, 3 double-peak) so its published label files work as they are;
``noise`` (4) marks spectra where no profile can be decided.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

CLASSES: tuple[str, ...] = ("emission", "absorption", "unknown", "double-peak", "noise")
"""Every class name, indexed by its integer code."""

NO_LABEL = -1
"""Label code of a spectrum nobody has labelled."""

_ALIASES = {"double_peak": "double-peak", "doublepeak": "double-peak", "double peak": "double-peak"}


class LabelError(ValueError):
    """A label list that cannot be read: names the file and line."""


def label_code(name: str) -> int:
    """Return the integer code of a class given by name or by its thesis integer.

    Raises `ValueError` for anything else.
    """
    text = name.strip().lower()
    text = _ALIASES.get(text, text)
    if text in CLASSES:
        return CLASSES.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(CLASSES):
        return int(text)
    raise ValueError(f"unknown class {name!r}; expected one of {', '.join(CLASSES)} or 0-4")


def id_keys(identifier: str) -> set[str]:
    """All the forms under which a label list may name a spectrum.

    A file name with or without its extension (``.fits``, ``.fit``, ``.fits.gz``),
    its stem, or an ivo:// publisher id (whose last path part is the stem).
    """
    text = identifier.strip()
    keys = {text}
    name = text.rsplit("/", 1)[-1]
    keys.add(name)
    for suffix in (".fits.gz", ".fit.gz", ".fits", ".fit"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    keys.add(name)
    return {k for k in keys if k}


@dataclass(frozen=True)
class LabelList:
    """Labels read from a CSV, keyed by every form of each id (see `id_keys`)."""

    by_key: dict[str, int]
    source: str

    def lookup(self, *identifiers: str) -> int:
        """Return the label of the first identifier found in the list, else `NO_LABEL`."""
        for identifier in identifiers:
            for key in id_keys(identifier) if identifier else ():
                if key in self.by_key:
                    return self.by_key[key]
        return NO_LABEL


def read_labels(path: str | Path) -> LabelList:
    """Read a labels CSV with columns ``id,label``.

    ``id`` is a file name (with or without extension), stem or ivo:// id;
    ``label`` a class name or the thesis' integer. An unknown label is a
    `LabelError` naming the file and line.
    """
    path = Path(path)
    by_key: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "id" not in fields or "label" not in fields:
            raise LabelError(f"{path}: needs a header with columns 'id' and 'label', got {fields}")
        reader.fieldnames = fields
        for line, row in enumerate(reader, start=2):
            try:
                code = label_code(row["label"] or "")
            except ValueError as exc:
                raise LabelError(f"{path}, line {line}: {exc}") from None
            for key in id_keys(row["id"] or ""):
                by_key[key] = code
    return LabelList(by_key=by_key, source=str(path))
