"""From a predictions table to a candidate catalogue: cuts, counts, exports, gallery, cross-match.

A candidate is a spectrum whose predicted class is one of the candidate
classes (emission and double-peak by default) with a probability of at least
``min_prob``, and which carries none of the excluding quality flags
(`Quality.NOVEL`: unlike anything the model was trained on; `Quality.LOW_SNR`;
the `spectraldl.core.quality.UNUSABLE` flags: ivar unusable, no positive flux, an
S/N the flux contradicts) unless ``include_flagged``. Other flags (masked
pixels, partial coverage, spikes interpolated over, S/N measured) are kept in
the catalogue for the astronomer to judge: real emission-line stars are often
masked at the H-alpha peak, so a mask is no reason to drop one.

The H-alpha measurements of `spectraldl.prep.measure` (equivalent width, profile
type) can narrow the selection: ``min_ew_aa`` keeps emission at least that
strong (EW <= -min_ew_aa), ``profile_types`` keeps only those profile types.

The predictions are streamed (`spectraldl.io.predictions.iter_predictions`), so
a release-sized table needs the memory of one block plus the candidates.
The catalogue is written with astropy (CSV, ECSV, FITS, VOTable) with units,
descriptions and UCDs on the columns, ready for TOPCAT, and the same provenance
in every format (`CATALOGUE_META`: the cuts, model, precision, versions and the
predictions table).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spectraldl import __version__
from spectraldl.catalogue.crossmatch import (
    DEFAULT_RADIUS_ARCSEC,
    CrossMatch,
    crossmatch,
    known_columns,
    read_known,
)
from spectraldl.catalogue.gallery import GallerySummary, write_gallery
from spectraldl.catalogue.selection import CandidatesError, Selection
from spectraldl.core.atomic import atomic_write
from spectraldl.core.paths import output_over_input
from spectraldl.core.quality import Quality
from spectraldl.io.predictions import (
    ColumnInfo,
    atomic_csv_with_metadata,
    classes_in,
    column_spec,
    iter_predictions,
    read_metadata,
    require_columns,
)
from spectraldl.jobs.files import output_locks

CATALOGUE_SUFFIXES = {
    ".csv": "csv",
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".vot": "votable",
    ".xml": "votable",
    ".votable": "votable",
}

KNOWN_COLUMNS: dict[str, ColumnInfo] = {
    "known_name": ColumnInfo(
        "str", "", "Known emission-line star within the match radius", "meta.id"
    ),
    "known_sep_arcsec": ColumnInfo(
        "f4", "arcsec", "Separation from that known star", "pos.angDistance"
    ),
}

CATALOGUE_META: dict[str, tuple[str, str]] = {
    "classes": ("CLASSES", "Predicted classes of a candidate"),
    "min_prob": ("MIN_PROB", "Least probability of that class"),
    "incflag": ("INCFLAG", "1: NOVEL, LOW_SNR, unusable kept"),
    "min_ew": ("MIN_EW", "[Angstrom] kept: H-alpha EW <= -MIN_EW"),
    "proftype": ("PROFTYPE", "H-alpha profile types kept"),
    "model_id": ("MODEL_ID", "Model that classified"),
    "precision": ("PRECISN", "Arithmetic it ran in: fp32, fp16, int8"),
    "spectraldl_version": ("SDL_VERS", "spectraldl that wrote this catalogue"),
    "predictions_version": ("PRED_VER", "spectraldl that wrote the predictions"),
    "source": ("SOURCE", "Predictions table (absolute path)"),
}
"""The provenance every catalogue records (`find_candidates`): its key in ECSV, VOTable
(INFO elements) and a CSV's ``.meta.json``, its FITS keyword, and what it says."""

SELECTION_COLUMNS = ("id", "predicted_class", "quality")
"""Columns (besides the ``p_*`` ones) every selection reads."""
KNOWN_NEEDS = ("ra", "dec", "object", "source", "quality_flags")
"""Columns the cross-match with known stars reads (positions, designations, the per-star table)."""
GALLERY_NEEDS = ("source", "object", "snr", "novelty", "quality_flags")
"""Columns the gallery reads (the spectrum's file, the titles)."""


@dataclass
class Counts:
    """Spectra per predicted class and per quality flag, as the thesis' table of DR1 results."""

    selection: Selection
    classes: tuple[str, ...] = ()
    total: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    confident: Counter[str] = field(default_factory=Counter)
    candidates: Counter[str] = field(default_factory=Counter)
    by_flag: Counter[str] = field(default_factory=Counter)
    by_flag_confident: Counter[str] = field(default_factory=Counter)

    def add(self, frame: pd.DataFrame) -> None:
        """Count one block of predictions."""
        predicted = frame["predicted_class"].astype(str)
        confident = self.selection.confident(frame)
        selected = self.selection.mask(frame)
        quality = frame["quality"].to_numpy(dtype=np.int64)
        self.total += len(frame)
        self.by_class.update(predicted.value_counts().to_dict())
        self.confident.update(predicted[confident].value_counts().to_dict())
        self.candidates.update(predicted[selected].value_counts().to_dict())
        for flag in Quality:
            has = (quality & int(flag)) != 0
            if has.any():
                self.by_flag[str(flag.name)] += int(has.sum())
                self.by_flag_confident[str(flag.name)] += int((has & confident).sum())

    def rows(self) -> list[dict[str, Any]]:
        """The table as records: one per class, a total, then one per flag."""
        out: list[dict[str, Any]] = []
        percent = 100.0 / self.total if self.total else 0.0
        for name in self.classes:
            n = int(self.by_class.get(name, 0))
            candidate_class = name in self.selection.classes
            out.append(
                {
                    "kind": "class",
                    "name": name,
                    "spectra": n,
                    "percent": n * percent,
                    "p_ge_min": int(self.confident.get(name, 0)) if candidate_class else None,
                    "candidates": int(self.candidates.get(name, 0)) if candidate_class else None,
                }
            )
        out.append(
            {
                "kind": "total",
                "name": "total",
                "spectra": self.total,
                "percent": 100.0 if self.total else 0.0,
                "p_ge_min": sum(self.confident.values()),
                "candidates": sum(self.candidates.values()),
            }
        )
        for flag in Quality:
            name = str(flag.name)
            n = int(self.by_flag.get(name, 0))
            excluding = bool(flag & self.selection.excluding_flags)
            out.append(
                {
                    "kind": "flag",
                    "name": name,
                    "spectra": n,
                    "percent": n * percent,
                    "p_ge_min": int(self.by_flag_confident.get(name, 0)),
                    "candidates": "excluded" if excluding else "kept",
                }
            )
        return out

    def table(self) -> str:
        """The counts as a text table for people (classes, total, then flags)."""

        def number(value: Any) -> str:
            if value is None:
                return ""
            return value if isinstance(value, str) else f"{value:,}".replace(",", " ")

        head = f"p >= {self.selection.min_prob:g}"
        lines = [f"{'predicted class':<18}{'spectra':>12}{'%':>8}{head:>12}{'candidates':>12}"]
        for row in self.rows():
            lines.append(
                f"{row['name']:<18}{number(row['spectra']):>12}{row['percent']:>8.2f}"
                f"{number(row['p_ge_min']):>12}{number(row['candidates']):>12}"
            )
            if row["kind"] == "total":
                lines += [
                    "",
                    f"{'quality flag':<18}{'spectra':>12}{'%':>8}{head:>12}{'catalogue':>12}",
                ]
        return "\n".join(lines)


def catalogue_format(path: str | Path) -> str:
    """The astropy format name for a catalogue path, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in CATALOGUE_SUFFIXES:
        raise CandidatesError(
            f"{path}: unknown catalogue format {suffix or '(none)'!r}; "
            f"use one of {', '.join(CATALOGUE_SUFFIXES)}"
        )
    return CATALOGUE_SUFFIXES[suffix]


def catalogue_table(catalogue: pd.DataFrame, *, meta: dict[str, Any] | None = None) -> Any:
    """An astropy `Table` of the catalogue with units, descriptions and UCDs on its columns."""
    from astropy.table import Column, Table

    classes = classes_in(catalogue.columns)
    spec = {**column_spec(classes), **KNOWN_COLUMNS}
    table = Table(meta=dict(meta or {}))
    for name in catalogue.columns:
        values = catalogue[name].to_numpy()
        info = spec.get(name) or _extra_column(values)
        if info.kind == "str":
            values = (
                np.array([str(v) for v in values], dtype=str) if len(values) else np.zeros(0, "U1")
            )
        else:
            values = values.astype(info.kind)
        table.add_column(
            Column(
                values,
                name=name,
                unit=info.unit or None,
                description=info.description,
                meta={"ucd": info.ucd},
            )
        )
    return table


def _extra_column(values: np.ndarray) -> ColumnInfo:
    """What a column the predictions table does not define is: text, or numbers as they are."""
    kind = values.dtype.str if values.dtype.kind in "biuf" else "str"
    return ColumnInfo(kind, "", "Column of the predictions table (not spectraldl's)", "")


def write_catalogue(
    catalogue: pd.DataFrame, path: str | Path, *, meta: dict[str, Any] | None = None
) -> Path:
    """Write the catalogue to ``path`` (CSV, ECSV, FITS or VOTable by extension), atomically.

    CSV is plain (one header line, readable by any tool); ECSV, FITS and
    VOTable carry the units, descriptions and UCDs (FITS as TUNITn, TCOMMn
    and TUCDn cards, which TOPCAT shows). ``meta`` (the provenance, `CATALOGUE_META`)
    goes into the ECSV header, FITS header cards, VOTable INFO elements, and a CSV's
    ``CAT.csv.meta.json`` beside it (as a predictions CSV has), published just after it.
    FITS text columns hold UTF-8 (the standard asks for ASCII): a non-ASCII file name stays
    the name that opens the file, as astropy and `read_predictions` read it back; the
    header's strings and column names, which astropy keeps ASCII, are escaped (`fits_text`).
    """
    path = Path(path)
    fmt = catalogue_format(path)
    meta = dict(meta or {})
    table = catalogue_table(catalogue, meta=meta if fmt != "csv" else None)
    if fmt == "csv":
        with atomic_csv_with_metadata(path, meta) as tmp:
            # astropy's fast writer prints float32 as float64 (0.95 as 0.949999988079071).
            table.write(tmp, format="csv", fast_writer=False)
        return path
    with atomic_write(path) as tmp:
        if fmt == "fits":
            _write_fits(table, tmp, meta)
        elif fmt == "votable":
            _write_votable(table, tmp, meta)
        else:
            table.write(tmp, format=fmt)
    return path


def _write_votable(table: Any, path: Path, meta: dict[str, Any]) -> None:
    """A VOTable: the description on the table, every other item of ``meta`` an INFO element
    of the resource (what it says as its text, for the `CATALOGUE_META` keys)."""
    import astropy.units as u
    from astropy.io.votable.tree import Info, VOTableFile

    table.meta = {"description": meta.get("description", "spectraldl candidates")}
    for column in table.itercols():
        if column.unit == u.AA:  # VOUnit deprecates Angstrom: the same length as 0.1nm
            column.unit = u.Unit("0.1 nm")
    votable = VOTableFile.from_table(table)
    for key, value in meta.items():
        if key != "description":
            # The ID astropy would give (the name) may be a FIELD's too (source): IDs are unique.
            info = Info(ID=f"info_{key}", name=key, value=str(value))
            info.content = CATALOGUE_META.get(key, ("", ""))[1] or None
            votable.resources[0].infos.append(info)
    votable.to_xml(str(path))


def _fits_columns(table: Any) -> Any:
    """A copy of ``table`` that FITS holds: text as UTF-8 bytes, column names escaped to
    printable ASCII (`fits_text`: another table's ``poznámka`` as ``pozn\\xe1mka``)."""
    from astropy.table import Table

    encoded = Table(table, copy=True)
    encoded.meta = {}
    for name in list(encoded.colnames):
        column = encoded[name]
        if column.dtype.kind == "U":
            # FITS strings are ASCII by the standard; UTF-8 keeps a non-ASCII file name the
            # name that opens the file (astropy and `read_predictions` decode it back).
            encoded.replace_column(
                name,
                type(column)(
                    np.char.encode(np.asarray(column), "utf-8"),
                    name=name,
                    unit=column.unit,
                    description=column.description,
                    meta=column.meta,
                ),
            )
        if fits_text(name) != name:
            encoded.rename_column(name, fits_text(name))
    return encoded


def _write_fits(table: Any, path: Path, meta: dict[str, Any]) -> None:
    """A FITS table: `_fits_columns`, TCOMMn/TUCDn cards, and ``meta`` as `CATALOGUE_META` cards."""
    from astropy.io import fits

    encoded = _fits_columns(table)
    hdu = fits.table_to_hdu(encoded)
    hdu.header["EXTNAME"] = "CANDIDATES"
    hdu.header.add_comment("Text columns are UTF-8: ASCII unless a file name is not.")
    for i, column in enumerate(table.itercols(), start=1):
        if column.description:
            hdu.header[f"TCOMM{i}"] = fits_text(column.description)
        if column.meta.get("ucd"):
            hdu.header[f"TUCD{i}"] = column.meta["ucd"]
    for key, value in meta.items():
        keyword, comment = CATALOGUE_META.get(key, (key.upper(), ""))
        if isinstance(value, str | int | float) and len(keyword) <= 8:
            text = fits_text(value) if isinstance(value, str) else value
            hdu.header[keyword] = (text, comment) if _fits_comment_fits(text, comment) else text
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def _fits_comment_fits(value: str | int | float, comment: str) -> bool:
    """Whether ``comment`` fits on the one card of ``value`` (astropy would cut it short)."""
    if not comment:
        return False
    if isinstance(value, str):  # KEYWORD = 'value' / comment, quotes doubled
        return len(value.replace("'", "''")) + len(comment) <= 65
    return len(comment) <= 47  # a number is right-justified in 20 columns


def fits_text(value: str) -> str:
    """``value`` as a FITS header string: printable ASCII, anything else as a Python escape.

    FITS headers hold only printable ASCII; a predictions file named
    ``prédictions.csv`` goes in as ``pr\\xe9dictions.csv`` (``ř`` as ``\\u0159``, a
    newline as ``\\n``, a backslash doubled), which ``codecs.decode(text, "unicode_escape")``
    turns back.
    Long values need nothing: astropy writes them with the CONTINUE convention.
    """
    return "".join(
        c if " " <= c <= "~" and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in value
    )


@dataclass
class CandidatesSummary:
    """What `find_candidates` found and wrote."""

    catalogue: pd.DataFrame
    counts: Counts
    written: list[Path] = field(default_factory=list)
    crossmatch: CrossMatch | None = None
    known_csv: Path | None = None
    gallery: GallerySummary | None = None


def _blocks(
    predictions: str | Path | pd.DataFrame, chunk_rows: int
) -> Callable[[], Iterable[pd.DataFrame]]:
    if isinstance(predictions, pd.DataFrame):
        return lambda: [predictions]
    return lambda: iter_predictions(predictions, chunk_rows=chunk_rows)


def find_candidates(
    predictions: str | Path | pd.DataFrame,
    outs: Sequence[str | Path] = (),
    *,
    selection: Selection | None = None,
    known: str | Path | None = None,
    radius_arcsec: float | None = None,
    gallery: str | Path | None = None,
    gallery_max: int | None = None,
    workers: int = 1,
    chunk_rows: int = 200_000,
    log: Callable[[str], None] | None = None,
) -> CandidatesSummary:
    """Select candidates from a predictions table, count, and write the catalogue and extras.

    Parameters
    ----------
    predictions
        A predictions table (path in any format of `spectraldl.io.predictions`, or a DataFrame).
    outs
        Catalogue files to write (``.csv``, ``.ecsv``, ``.fits``, ``.vot``); may be empty.
    selection
        The cuts (`Selection`); emission and double-peak, p >= 0.9, flagged excluded by default.
    known
        CSV of known emission-line stars to cross-match by position
        (`spectraldl.catalogue.crossmatch`);
        the per-star result goes to ``<first catalogue>.known.csv``.
    radius_arcsec
        Match radius (10 arcsec by default).
    gallery
        Folder for one PNG per candidate and an ``index.html`` (`spectraldl.catalogue.gallery`).
    gallery_max
        Most candidates drawn (highest probability first); all by default.
    workers
        Processes drawing the gallery.
    chunk_rows
        Rows per block read from the predictions table.
    log
        Called with lines of progress for people.

    Every output is held for the run (`spectraldl.jobs.files.output_locks`): one another run
    writes raises `OutputBusy`, a catalogue in a missing folder `JobIOError`.
    """
    say = log or (lambda _line: None)
    _refuse_outputs_over_inputs(predictions, outs, known)
    selection = selection or Selection()
    # One run per output: `atomic_write`'s temporary names are fixed, so two runs would
    # rename each other's half-written files; a second is refused at once (`OutputBusy`).
    with output_locks(_outputs(outs, known, gallery)):
        blocks = _blocks(predictions, chunk_rows)
        meta = _catalogue_meta(predictions, selection)
        needed = SELECTION_COLUMNS + (KNOWN_NEEDS if known is not None else ())
        needed += GALLERY_NEEDS if gallery is not None else ()
        catalogue, counts = _select(predictions, blocks, selection, needed)
        summary = CandidatesSummary(catalogue=catalogue, counts=counts)
        if known is not None:
            _match_known(summary, blocks, selection, known, radius_arcsec, outs)
        for out in outs:
            summary.written.append(write_catalogue(summary.catalogue, out, meta=meta))
            say(f"wrote {len(summary.catalogue)} candidates to {out}")
        if gallery is not None:
            summary.gallery = write_gallery(
                summary.catalogue, gallery, max_items=gallery_max, workers=workers, log=say
            )
        return summary


def _outputs(
    outs: Sequence[str | Path], known: str | Path | None, gallery: str | Path | None
) -> list[tuple[str | Path, bool]]:
    """Every output of the run (catalogues, ``.known.csv``, gallery), each with whether
    its folder is made: a catalogue's missing folder is an error, as writing it was."""
    files = [*outs, *([_known_csv(outs)] if known is not None and outs else [])]
    return [*((p, False) for p in files), *([(gallery, True)] if gallery is not None else [])]


def _select(
    predictions: str | Path | pd.DataFrame,
    blocks: Callable[[], Iterable[pd.DataFrame]],
    selection: Selection,
    needed: Sequence[str] = SELECTION_COLUMNS,
) -> tuple[pd.DataFrame, Counts]:
    """The candidates (most probable first, then by id) and the counts, in one pass.

    The first block's columns are checked against ``needed`` (and the cuts').
    """
    counts: Counts | None = None
    picked: list[pd.DataFrame] = []
    source = predictions if not isinstance(predictions, pd.DataFrame) else "table"
    for block in blocks():
        if counts is None:
            require_columns(block.columns, dict.fromkeys(needed), source)
            model_classes = classes_in(block.columns)
            selection.check(model_classes)
            selection.check_columns(block.columns, source)
            counts = Counts(selection=selection, classes=model_classes)
        counts.add(block)
        chosen = block[selection.mask(block)]
        if len(chosen):
            picked.append(chosen)
    if counts is None:
        raise CandidatesError(f"{predictions}: the predictions table is empty")
    catalogue = (
        pd.concat(picked, ignore_index=True)
        if picked
        else next(iter(blocks())).iloc[0:0].reset_index(drop=True)
    )
    probability = selection.predicted_probability(catalogue)
    order = np.lexsort((catalogue["id"].astype(str).to_numpy(), -probability))
    return catalogue.iloc[order].reset_index(drop=True), counts


def _match_known(
    summary: CandidatesSummary,
    blocks: Callable[[], Iterable[pd.DataFrame]],
    selection: Selection,
    known: str | Path,
    radius_arcsec: float | None,
    outs: Sequence[str | Path],
) -> None:
    """Cross-match the known stars: name them in the catalogue, per star to ``.known.csv``."""
    stars = read_known(known)
    match = crossmatch(
        stars,
        blocks(),
        selection=selection,
        radius_arcsec=DEFAULT_RADIUS_ARCSEC if radius_arcsec is None else radius_arcsec,
    )
    names, seps = known_columns(summary.catalogue, match)
    summary.catalogue = summary.catalogue.assign(known_name=names, known_sep_arcsec=seps)
    summary.crossmatch = match
    if outs:
        summary.known_csv = _known_csv(outs)
        match.write_csv(summary.known_csv)


def _known_csv(outs: Sequence[str | Path]) -> Path:
    """Where the per-star cross-match goes: beside the first catalogue, ``.known.csv``."""
    first = Path(outs[0])
    return first.with_name(first.stem + ".known.csv")


def _refuse_outputs_over_inputs(
    predictions: str | Path | pd.DataFrame, outs: Sequence[str | Path], known: str | Path | None
) -> None:
    """Raise `CandidatesError` before anything is written when an output is an input."""
    inputs = [p for p in (predictions, known) if isinstance(p, str | Path)]
    outputs = [*outs, *([_known_csv(outs)] if known is not None and outs else [])]
    clash = output_over_input(outputs, inputs)
    if clash:
        raise CandidatesError(
            f"{clash[0]}: is also an input ({clash[1]}) and would be overwritten; "
            "write the catalogue to another file"
        )


def _catalogue_meta(predictions: str | Path | pd.DataFrame, selection: Selection) -> dict[str, Any]:
    """The catalogue's provenance, the same in every format (`CATALOGUE_META`): the cuts, the
    model and its precision, the spectraldl versions and the predictions table it came from."""
    from_file = not isinstance(predictions, pd.DataFrame)
    provenance = (read_metadata(predictions) if from_file else None) or {}
    manifest = provenance.get("manifest")  # a catalogue's own sidecar has it at the top
    precision = (manifest if isinstance(manifest, dict) else provenance).get("precision", "")
    meta: dict[str, Any] = {
        "description": "spectraldl emission-line candidates",
        "classes": ",".join(selection.classes),
        "min_prob": selection.min_prob,
        "incflag": int(selection.include_flagged),
        "model_id": str(provenance.get("model_id", "")),
        "precision": str(precision),
        "spectraldl_version": __version__,
        "predictions_version": str(provenance.get("spectraldl_version", "")),
        # Absolute: the catalogue is read from elsewhere than the folder it was made in.
        "source": os.path.abspath(predictions) if from_file else "",
    }
    if selection.min_ew_aa is not None:
        meta["min_ew"] = selection.min_ew_aa
    if selection.profile_types:
        meta["proftype"] = ",".join(selection.profile_types)
    return meta
