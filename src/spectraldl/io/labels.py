"""Class names of H-alpha profiles and the reading of label lists.

The codes follow the thesis' Ondřejov dataset (0 emission, 1 absorption,
2 unknown, 3 double-peak) so its published label files work as they are;
``noise`` (4) marks spectra where no profile can be decided.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from spectraldl.core.errors import NotUTF8Error, decode_utf8, delimiter_hint
from spectraldl.core.paths import first_repeated

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
    """Labels read from a CSV, keyed by every form of each id (see `id_keys`).

    ``entries`` maps each id as written to its code; ``conflicts`` maps ids the
    file gives different labels (under any of their forms) to those labels;
    they are left unlabelled, as a guess would be worse than no label.
    """

    by_key: dict[str, int]
    source: str
    entries: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def lookup(self, *identifiers: str) -> int:
        """Return the label of the first identifier found in the list, else `NO_LABEL`."""
        for identifier in identifiers:
            for key in id_keys(identifier) if identifier else ():
                if key in self.by_key:
                    return self.by_key[key]
        return NO_LABEL

    def matcher(self) -> LabelMatcher:
        """A `LabelMatcher` to find the entries that no spectrum matches."""
        return LabelMatcher(self)


class LabelMatcher:
    """Collects which entries of a `LabelList` some spectrum matched (memory: the list's size)."""

    def __init__(self, labels: LabelList) -> None:
        self.labels = labels
        self._entry_of = {key: entry for entry in labels.entries for key in id_keys(entry)}
        self._matched: set[str] = set()

    def see(self, *identifiers: str) -> None:
        """Mark the entries that any of one spectrum's identifiers (id, file name) matches."""
        for identifier in identifiers:
            for key in id_keys(identifier) if identifier else ():
                entry = self._entry_of.get(key)
                if entry is not None:
                    self._matched.add(entry)

    def report(self, relabelled: int = 0) -> LabelReport:
        """The entries seen by no spectrum, the conflicting ones and ``relabelled``."""
        unmatched = [e for e in self.labels.entries if e not in self._matched]
        return LabelReport(
            source=self.labels.source,
            unmatched=unmatched,
            conflicting=list(self.labels.conflicts),
            relabelled=relabelled,
            listed=len(self.labels.entries) + len(self.labels.conflicts),
        )


@dataclass
class LabelReport:
    """How a label list met the spectra of a dataset."""

    source: str
    unmatched: list[str] = field(default_factory=list)
    """Ids of the list that no spectrum has."""
    conflicting: list[str] = field(default_factory=list)
    """Ids the list gives different labels (left unlabelled)."""
    relabelled: int = 0
    """Spectra already in the dataset whose label the list set or changed."""
    listed: int | None = None
    """Ids the list labels (None: not counted); 0 is a list of a header alone."""

    @property
    def problems(self) -> int:
        """Unmatched plus conflicting ids: what ``--strict`` refuses."""
        return len(self.unmatched) + len(self.conflicting)

    def line(self) -> str:
        """One line for people, with a few examples of each problem."""
        parts = []
        if self.unmatched:
            parts.append(
                f"{len(self.unmatched)} ids match no spectrum ({_examples(self.unmatched)})"
            )
        if self.conflicting:
            parts.append(
                f"{len(self.conflicting)} ids have conflicting labels, left unlabelled "
                f"({_examples(self.conflicting)})"
            )
        if self.relabelled:
            parts.append(f"{self.relabelled} spectra already there relabelled")
        if not parts:
            parts.append("no ids under its header" if self.listed == 0 else "every id matched")
        return f"labels {self.source}: " + "; ".join(parts)


def _examples(ids: list[str], n: int = 3) -> str:
    shown = ", ".join(ids[:n])
    return f"e.g. {shown}" + (", ..." if len(ids) > n else "")


def read_labels(*paths: str | Path) -> LabelList:
    """Read one or more labels CSVs with columns ``id,label`` (UTF-8, with or without Excel's BOM).

    ``id`` is a file name (with or without extension), stem or ivo:// id;
    ``label`` a class name or the thesis' integer. An unknown label, another
    encoding (UTF-16, latin-1) or a missing header is a `LabelError` naming
    the file. Ids given different labels, in one file or across files, are
    listed in ``conflicts`` and left unlabelled; an id repeated with the same
    label is harmless. A file named twice is refused: its labels would only
    seem to agree with themselves.
    """
    if not paths:
        raise TypeError("read_labels needs at least one path")
    repeated = first_repeated(paths)
    if repeated is not None:
        again, earlier = (str(path) for path in repeated)
        spelled = "" if again == earlier else f" (also as {earlier})"
        raise LabelError(f"{again}: given twice{spelled}; give each list once")
    given: dict[str, set[int]] = {}
    for path in paths:
        _read_one(Path(path), given)
    # Ids sharing any form (a file name and its stem) must agree, else all of them are conflicts.
    sharing: dict[str, set[str]] = {}
    for ident in given:
        for key in id_keys(ident):
            sharing.setdefault(key, set()).add(ident)
    conflicts: dict[str, tuple[str, ...]] = {}
    for ident, codes in given.items():
        seen = set(codes).union(*(given[o] for k in id_keys(ident) for o in sharing[k]))
        if len(seen) > 1:
            conflicts[ident] = tuple(CLASSES[c] for c in sorted(seen))
    entries = {i: min(codes) for i, codes in given.items() if i not in conflicts}
    by_key = {key: code for ident, code in entries.items() for key in id_keys(ident)}
    source = ", ".join(str(path) for path in paths)
    return LabelList(by_key=by_key, source=source, entries=entries, conflicts=conflicts)


def _read_one(path: Path, given: dict[str, set[int]]) -> None:
    """Add the codes the CSV ``path`` gives each id to ``given``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = decode_utf8(raw, path)
    except NotUTF8Error as exc:
        raise LabelError(str(exc)) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "id" not in fields or "label" not in fields:
        raise LabelError(
            f"{path}: needs a header with columns 'id' and 'label', got {fields}"
            + delimiter_hint(fields)
        )
    reader.fieldnames = fields
    try:
        for line, row in enumerate(reader, start=2):
            try:
                code = label_code(row["label"] or "")
            except ValueError as exc:
                raise LabelError(f"{path}, line {line}: {exc}") from None
            ident = (row["id"] or "").strip()
            if not ident:
                raise LabelError(f"{path}, line {line}: no id")
            given.setdefault(ident, set()).add(code)
    except csv.Error as exc:
        raise LabelError(f"{path}: not a readable CSV ({exc})") from None
