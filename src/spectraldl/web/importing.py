"""Fill the web tool's database: spectra from FITS files or datasets, predictions for vetting.

Spectra are stored whole (wavelengths, flux, the preprocessed vector and the
metadata), so the app never needs the original files again. A spectraldl
dataset (.h5) keeps only the 140-point vectors, and so do the spectra
imported from it. An id already in the database is skipped, so an interrupted
import is finished by running it again. Bad files are listed with the reason
and never stop the import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, defer

from spectraldl.classify.predictor import Predictor, predictions_frame
from spectraldl.core.errors import FileError, SpectrumError
from spectraldl.core.jsonsafe import json_safe
from spectraldl.core.quality import flag_names
from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.io.archives.ssap import (
    DownloadFolderUnusable,
    SsapError,
    download_spectrum,
    query_ssap,
)
from spectraldl.io.dataset import Rows, dataset_info, is_dataset, iter_rows
from spectraldl.io.discovery import is_spectrum_name, walk
from spectraldl.io.labels import CLASSES, label_code
from spectraldl.io.predictions import PredictionsError, class_of_column, format_of, read_predictions
from spectraldl.ml.modelcard import load_model
from spectraldl.prep.preprocess import PreprocessConfig, preprocess
from spectraldl.web.db import Database, begin_write
from spectraldl.web.models import Catalogue, Prediction, SpectrumRow, VetDecision, utcnow
from spectraldl.web.store import CANDIDATE_CLASSES

PREDICTIONS_TABLE = cast(Table, Prediction.__table__)
"""The predictions table, for bulk inserts through SQLAlchemy Core (no ORM objects)."""

BATCH = 64
"""Spectra per transaction: an interrupted import loses at most this many (they are redone)."""

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".vot", ".xml", ".ecsv")


class ImportFailed(ValueError):
    """A file that cannot be imported as a whole (a predictions table without ids, ...)."""


@dataclass
class ImportSummary:
    """What an import did."""

    added: int = 0
    already_present: int = 0
    errors: list[FileError] = field(default_factory=list)
    catalogues: list[tuple[int, str, int]] = field(default_factory=list)

    def merge(self, other: ImportSummary) -> None:
        """Add another summary's counts to this one."""
        self.added += other.added
        self.already_present += other.already_present
        self.errors.extend(other.errors)
        self.catalogues.extend(other.catalogues)

    def line(self) -> str:
        """One line for people."""
        text = f"{self.added} spectra added"
        if self.already_present:
            text += f", {self.already_present} already in the database"
        for cid, name, rows in self.catalogues:
            text += f"; catalogue {cid} {name!r} with {rows} rows"
        return f"{text}; {len(self.errors)} bad files"


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def spectrum_row(
    spectrum: Spectrum,
    *,
    config: PreprocessConfig,
    origin: str = "real",
    imported_from: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> SpectrumRow:
    """A database row for a `Spectrum` (preprocessed with ``config``).

    A file `spectraldl simulate` wrote (``SIMULATD = T``, ``meta.extra["simulated"]``)
    is stored ``synthetic`` whatever ``origin`` says, as `spectraldl.jobs.ingest` does:
    the learning loop evaluates on the real ones only.
    Raises `SpectrumError` when the spectrum cannot be preprocessed.
    """
    result = preprocess(spectrum, config)
    m = spectrum.meta
    origin = "synthetic" if m.extra.get("simulated") else origin
    meta = {**m.extra, "resolving_power": m.resolving_power, "obsid": m.obsid}
    if m.designation:
        meta["designation"] = m.designation
    if extra_meta:
        meta.update(extra_meta)
    return SpectrumRow(
        ident=m.id,
        archive=m.archive,
        form=m.form,
        object=m.object[:256],
        ra=_finite_or_none(m.ra),
        dec=_finite_or_none(m.dec),
        mjd=_finite_or_none(m.mjd),
        date_obs=m.date_obs[:64],
        snr=_finite_or_none(m.snr),
        source=(m.source or imported_from)[:1024],
        origin=origin,
        medium=spectrum.medium,
        flux_unit=spectrum.flux_unit[:32],
        quality=int(result.quality),
        wave=np.ascontiguousarray(spectrum.wave_aa, dtype="<f8").tobytes(),
        flux=np.ascontiguousarray(spectrum.flux, dtype="<f4").tobytes(),
        x=np.ascontiguousarray(result.x, dtype="<f4").tobytes(),
        grid_start_aa=config.grid_start_aa,
        grid_stop_aa=config.grid_stop_aa,
        meta=json_safe(meta),
        imported_from=imported_from[:1024],
        imported_at=utcnow(),
    )


def existing_idents(session: Session, idents: Iterable[str]) -> set[str]:
    """The subset of ``idents`` already stored."""
    wanted = list(dict.fromkeys(idents))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(session.scalars(select(SpectrumRow.ident).where(SpectrumRow.ident.in_(chunk))))
    return found


def link_predictions(session: Session) -> int:
    """Point predictions at the stored spectrum with the same id; returns rows linked."""
    match = select(SpectrumRow.id).where(SpectrumRow.ident == Prediction.ident).scalar_subquery()
    result = session.execute(
        update(Prediction)
        .where(Prediction.spectrum_id.is_(None))
        .values(spectrum_id=match)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)  # an UPDATE answers with a cursor
    return int(result.rowcount or 0)


def store_spectra(
    db: Database,
    spectra: Iterable[tuple[str, Callable[[], SpectrumRow]]],
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Store rows made lazily by the callables, ``BATCH`` per transaction; ids present are skipped.

    Each item is ``(source, make_row)``; ``make_row`` may raise `SpectrumError`
    (or any error of a bad file), which is recorded against ``source``; a download folder
    that cannot take more (`DownloadFolderUnusable`) stops the import, the rows stored so
    far kept.
    """
    summary = ImportSummary()
    seen: dict[str, str] = {}
    batch: list[SpectrumRow] = []

    def flush() -> None:
        if not batch:
            return
        with db.session() as session:
            present = existing_idents(session, (row.ident for row in batch))
            fresh = [row for row in batch if row.ident not in present]
            summary.already_present += len(batch) - len(fresh)
            session.add_all(fresh)
            session.flush()
            link_predictions(session)
            session.commit()
            summary.added += len(fresh)
        batch.clear()

    for done, (source, make_row) in enumerate(spectra, start=1):
        try:
            row = make_row()
        except SpectrumError as exc:
            summary.errors.append(FileError(source, exc.reason))
        except (MemoryError, KeyboardInterrupt, DownloadFolderUnusable):
            raise
        except Exception as exc:  # one bad file must not stop an import
            summary.errors.append(FileError(source, f"unexpected {type(exc).__name__}: {exc}"))
        else:
            if row.ident in seen:
                reason = f"duplicate id {row.ident!r}, already read from {seen[row.ident]}"
                summary.errors.append(FileError(source, reason))
            else:
                seen[row.ident] = source
                batch.append(row)
                if len(batch) >= BATCH:
                    flush()
        if progress:
            progress(done)
    flush()
    return summary


def import_fits(
    db: Database,
    paths: Sequence[str | Path],
    *,
    config: PreprocessConfig | None = None,
    origin: str = "real",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Read FITS files and trees (`spectraldl.io.discovery.walk`) into the database.

    Entries the walk cannot read (link loops, unreadable folders, FIFOs) are
    listed among the summary's bad files, as ingest lists them.
    """
    config = config or PreprocessConfig()
    found = walk(paths)
    files = [Path(p) for p in found]

    def make(path: Path) -> Callable[[], SpectrumRow]:
        return lambda: spectrum_row(
            read_spectrum(path), config=config, origin=origin, imported_from=str(path)
        )

    summary = store_spectra(
        db,
        ((str(path), make(path)) for path in files),
        progress=(lambda done: progress(done, len(files))) if progress else None,
    )
    summary.errors[:0] = found.bad
    return summary


def import_dataset(
    db: Database, path: str | Path, *, progress: Callable[[int, int], None] | None = None
) -> ImportSummary:
    """Import a spectraldl dataset (.h5): its 140-point vectors, metadata and labels.

    A dataset holds no wavelengths or fluxes, only the preprocessed vectors:
    such spectra show the vector view only. A label in the dataset becomes
    the spectrum's reference label (shown, never counted as anyone's vote).
    """
    info = dataset_info(path)
    summary = ImportSummary()
    done = 0
    for rows in iter_rows(path, chunk_rows=4096):
        items = [
            (f"{path}[{done + i}]", partial(_dataset_row, rows, i, info.config, str(path)))
            for i in range(len(rows))
        ]
        summary.merge(store_spectra(db, items))
        done += len(rows)
        if progress:
            progress(done, info.n_rows)
    return summary


def _dataset_row(rows: Rows, i: int, config: PreprocessConfig, path: str) -> SpectrumRow:
    m = {k: v[i] for k, v in rows.meta.items()}
    code = int(rows.labels[i])
    return SpectrumRow(
        ident=str(rows.ids[i]),
        archive=str(m["archive"]),
        form=str(m["form"])[:32],
        object=str(m["object"])[:256],
        ra=_finite_or_none(m["ra"]),
        dec=_finite_or_none(m["dec"]),
        mjd=_finite_or_none(m["mjd"]),
        date_obs=str(m["date_obs"])[:64],
        snr=_finite_or_none(m["snr"]),
        source=str(m["source"])[:1024],
        origin=str(m["origin"] or "real")[:16],
        medium=None,
        quality=int(rows.quality[i]),
        reference_label=CLASSES[code] if 0 <= code < len(CLASSES) else None,
        wave=None,
        flux=None,
        x=np.ascontiguousarray(rows.X[i], dtype="<f4").tobytes(),
        grid_start_aa=config.grid_start_aa,
        grid_stop_aa=config.grid_stop_aa,
        meta=json_safe({"obsid": m["obsid"], "designation": m["designation"]}),
        imported_from=path[:1024],
        imported_at=utcnow(),
    )


# --- predictions ----------------------------------------------------------------------------


def _read_astropy_table(path: Path) -> Any:
    """A VOTable (.vot, .xml) or ECSV file as a DataFrame, read by astropy."""
    from astropy.table import Table

    format = "ascii.ecsv" if path.name.lower().endswith(".ecsv") else "votable"
    return Table.read(path, format=format).to_pandas()


def _table_read_errors() -> tuple[type[BaseException], ...]:
    """What readers raise for a file that is not the table it claims to be."""
    from xml.parsers.expat import ExpatError

    from astropy.io.registry import IORegistryError

    return (
        PredictionsError,
        IORegistryError,
        ExpatError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        UnicodeDecodeError,
    )


def read_table(path: str | Path) -> Any:
    """A predictions table or catalogue as a pandas DataFrame.

    Predictions tables (.parquet, .fits, .csv, .h5) are read by
    `spectraldl.io.predictions.read_predictions`; .tsv and VOTable (.vot, .xml)
    catalogues by pandas/astropy. Raises `ImportFailed` naming the file when
    it cannot be read (a malformed file of any of these formats) or has no
    ``id`` column.
    """
    import pandas as pd

    path = Path(path)
    name = path.name.lower()
    try:
        try:
            format_of(path)
        except ValueError:
            if name.endswith(".tsv"):
                frame = pd.read_csv(path, sep="\t", dtype={"id": str})
            elif name.endswith((".vot", ".xml", ".ecsv")):
                frame = _read_astropy_table(path)
            else:
                raise ImportFailed(
                    f"{path}: unknown table format; use .parquet, .csv, .fits, .h5, .tsv or .vot"
                ) from None
        else:
            frame = read_predictions(path)
    except ImportFailed:
        raise
    except _table_read_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportFailed(f"{path}: cannot read as a table ({reason})") from None
    frame.columns = [str(c) for c in frame.columns]
    if "id" not in frame.columns:
        raise ImportFailed(
            f"{path}: a predictions table needs an 'id' column; found {', '.join(frame.columns)}"
        )
    return frame


def is_predictions_table(path: str | Path) -> bool:
    """True for a table file, a FITS table with an ``id`` column, or an HDF5 predictions table."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(TABLE_SUFFIXES):
        return True
    if name.endswith((".h5", ".hdf5")):
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                return "predictions" in h5
        except OSError:
            return False
    if not is_spectrum_name(name):
        return False
    try:
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU | fits.TableHDU):
                return False
            names = {n.lower() for n in hdul[1].columns.names}
    except (OSError, ValueError):
        return False
    return "id" in names and ("predicted_class" in names or any(n.startswith("p_") for n in names))


def _probability_columns(frame: Any) -> tuple[list[str], np.ndarray]:
    """Class names of the ``p_<class>`` columns and their values (rows x classes)."""
    p_columns = [c for c in frame.columns if c.startswith("p_")]
    if not p_columns:
        return [], np.zeros((len(frame), 0), dtype=np.float64)
    return [class_of_column(c) for c in p_columns], frame[p_columns].to_numpy(dtype=np.float64)


def _entropy_and_margin(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy normalised to 0-1 and the margin of the two largest probabilities, per row."""
    n, k = probs.shape
    entropy, margin = np.full(n, np.nan), np.full(n, np.nan)
    if k:
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = probs / probs.sum(axis=1, keepdims=True)
            terms = np.where(norm > 0, norm * np.log(np.where(norm > 0, norm, 1.0)), 0.0)
            entropy = -terms.sum(axis=1) / math.log(max(k, 2))
    if k >= 2:
        ordered = -np.sort(-probs, axis=1)
        margin = ordered[:, 0] - ordered[:, 1]
    return entropy, margin


def _arg_max_classes(classes: list[str], probs: np.ndarray) -> list[str]:
    """The class of each row's largest finite probability ('' for a row without any)."""
    if not classes:
        return [""] * len(probs)
    finite = np.isfinite(probs)
    best = np.where(finite, probs, -np.inf).argmax(axis=1)
    found = finite.any(axis=1).tolist()
    return [classes[j] if ok else "" for j, ok in zip(best.tolist(), found, strict=True)]


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def prediction_records(frame: Any, *, first_row: int = 0) -> tuple[list[str], list[dict[str, Any]]]:
    """Class names (from the ``p_<class>`` columns) and one record per row for `Prediction`.

    The predicted class is the ``predicted_class`` column, else the arg-max;
    ``entropy`` is normalised to 0-1 by log(number of classes); ``margin`` is
    the difference of the two largest probabilities. ``first_row`` is the
    ``row_index`` of the frame's first row (for a slice of a larger table).
    """
    classes, probs = _probability_columns(frame)
    entropy, margin = _entropy_and_margin(probs)
    arg_max = _arg_max_classes(classes, probs)
    column = {c: j for j, c in enumerate(classes)}
    prob_rows = [_none_if_nan(row) for row in probs]
    flags = functools.lru_cache(maxsize=None)(flag_names)
    records = []
    for i, raw in enumerate(frame.to_dict(orient="records")):
        row = json_safe(raw)
        predicted = str(row.get("predicted_class") or "") or arg_max[i]
        quality = _finite_or_none(row.get("quality"))
        quality_int = int(quality) if quality is not None else 0
        records.append(
            {
                "row_index": first_row + i,
                "ident": str(row["id"])[:512],
                "object": str(row.get("object") or "")[:256],
                "predicted_class": predicted[:16],
                "probability": prob_rows[i][column[predicted]] if predicted in column else None,
                "novelty": _finite_or_none(row.get("novelty")),
                "entropy": _finite_or_none(entropy[i]),
                "margin": _finite_or_none(margin[i]),
                "quality": quality_int,
                "quality_flags": str(row.get("quality_flags") or flags(quality_int))[:256],
                "probs": dict(zip(classes, prob_rows[i], strict=True)),
                "row": row,
            }
        )
    return classes, records


CHUNK_ROWS = 5000
"""Catalogue rows per transaction: a long import never holds the database's write lock long."""


def shortest_floats(frame: Any) -> Any:
    """``frame`` with float32 columns as float64 of their shortest decimal form, so that a
    stored 0.9f comes back as 0.9, not 0.8999999761581421."""
    narrow = [c for c in frame.columns if frame[c].dtype in (np.float32, np.float16)]
    if not narrow:
        return frame
    frame = frame.copy()
    for column in narrow:
        frame[column] = frame[column].astype(str).astype(np.float64)
    return frame


def _keep(
    records: list[dict[str, Any]], min_probability: float | None, classes: Sequence[str] | None
) -> list[dict[str, Any]]:
    if min_probability is not None:
        records = [r for r in records if (r["probability"] or 0.0) >= min_probability]
    if classes:
        wanted = {CLASSES[label_code(c)] for c in classes}
        records = [r for r in records if r["predicted_class"] in wanted]
    return records


def _new_catalogue(db: Database, **values: Any) -> int:
    with db.session() as session:
        catalogue = Catalogue(status="importing", created_at=utcnow(), **values)
        session.add(catalogue)
        session.commit()
        return catalogue.id


def _store_predictions(db: Database, catalogue_id: int, records: list[dict[str, Any]]) -> None:
    """Insert one chunk of rows, pointed at the stored spectra with their ids, and commit."""
    with db.session() as session:
        found = dict(
            session.execute(
                select(SpectrumRow.ident, SpectrumRow.id).where(
                    SpectrumRow.ident.in_({r["ident"] for r in records})
                )
            ).all()
        )
        rows = [
            {**r, "catalogue_id": catalogue_id, "spectrum_id": found.get(r["ident"])}
            for r in records
        ]
        if rows:
            session.execute(insert(PREDICTIONS_TABLE), rows)
        session.commit()


def _finish_catalogue(db: Database, catalogue_id: int, n_rows: int, model_ids: set[str]) -> None:
    with db.session() as session:
        catalogue = session.get(Catalogue, catalogue_id)
        assert catalogue is not None
        catalogue.n_rows = n_rows
        catalogue.model_id = ",".join(sorted(model_ids - {""}))[:128]
        catalogue.status = "ready"
        session.commit()


def delete_catalogue(db: Database, catalogue_id: int) -> bool:
    """Delete a catalogue with its rows and their verdicts; False when there is none."""
    with db.session() as session:
        begin_write(session)
        if session.get(Catalogue, catalogue_id) is None:
            return False
        predictions = select(Prediction.id).where(Prediction.catalogue_id == catalogue_id)
        session.execute(delete(VetDecision).where(VetDecision.prediction_id.in_(predictions)))
        session.execute(delete(Prediction).where(Prediction.catalogue_id == catalogue_id))
        session.execute(delete(Catalogue).where(Catalogue.id == catalogue_id))
        session.commit()
    return True


def import_frame(
    db: Database,
    frame: Any,
    *,
    name: str,
    source: str = "",
    created_by: int | None = None,
    fetch_sources: bool = False,
    config: PreprocessConfig | None = None,
    min_probability: float | None = None,
    classes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Store a predictions DataFrame (docs/CONVENTIONS.md columns) as a new catalogue.

    Rows are stored ``CHUNK_ROWS`` per transaction; the catalogue is
    ``importing`` (not shown for vetting) until the last one, and deleted
    again when the import fails.

    Parameters
    ----------
    frame
        At least an ``id`` column; ``predicted_class``, ``p_<class>``,
        ``novelty``, ``quality``, ``quality_flags``, ``model_id``, ``source``
        are used when present; every column is kept for the vetted export.
    name, source
        Catalogue name and where it came from.
    fetch_sources
        Also import the spectra of candidate rows (predicted emission or
        double-peak) from their ``source`` files when those exist here and
        the spectrum is not stored yet.
    min_probability, classes
        Keep only rows whose predicted-class probability is at least this /
        whose predicted class is one of these (to keep big tables small).
    progress
        Called with (rows read, rows in the table) after each chunk.
    started
        Called with the new catalogue's id before its rows are stored.
    """
    frame = shortest_floats(frame)
    class_names, _ = prediction_records(frame.iloc[:0])
    catalogue_id = _new_catalogue(
        db,
        name=name[:256],
        source=source[:1024],
        classes=class_names,
        columns=list(frame.columns),
        created_by=created_by,
    )
    summary = ImportSummary()
    n_rows, model_ids = 0, set[str]()
    try:
        if started:
            started(catalogue_id)
        for start in range(0, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start : start + CHUNK_ROWS]
            records = _keep(prediction_records(chunk, first_row=start)[1], min_probability, classes)
            if fetch_sources:
                summary.merge(_fetch_sources(db, records, config=config))
            _store_predictions(db, catalogue_id, records)
            n_rows += len(records)
            model_ids.update(str(r["row"].get("model_id") or "") for r in records)
            if progress:
                progress(start + len(chunk), len(frame))
        _finish_catalogue(db, catalogue_id, n_rows, model_ids)
    except BaseException:
        delete_catalogue(db, catalogue_id)
        raise
    summary.catalogues.append((catalogue_id, name[:256], n_rows))
    return summary


def import_predictions(
    db: Database, path: str | Path, *, name: str | None = None, **options: Any
) -> ImportSummary:
    """Load a predictions file or catalogue (`read_table`) as a catalogue (see `import_frame`)."""
    path = Path(path)
    options.setdefault("source", str(path))
    return import_frame(db, read_table(path), name=name or path.name, **options)


def score_with_model(
    db: Database,
    model_dir: str | Path,
    *,
    device: str = "cpu",
    batch_size: int = 4096,
    created_by: int | None = None,
) -> ImportSummary:
    """Run a trained model on every stored spectrum; store the predictions as a catalogue.

    The catalogue feeds the "most uncertain first" labelling queue (active
    learning) and can be vetted like any other. Spectra whose vector grid
    differs from the model's are left out (counted as errors).
    """
    model = load_model(model_dir, device=device)
    predictor = Predictor(model, precision="fp32", batch_size=batch_size)
    grid = model.config
    summary = ImportSummary()
    with db.session() as session:
        # Only the vectors and metadata: the whole spectra are not needed here.
        query = select(SpectrumRow).options(defer(SpectrumRow.wave), defer(SpectrumRow.flux))
        rows = list(session.scalars(query.order_by(SpectrumRow.id)))
    fits = []
    for r in rows:
        if (
            len(r.x) // 4 == grid.grid_n
            and math.isclose(r.grid_start_aa, grid.grid_start_aa)
            and math.isclose(r.grid_stop_aa, grid.grid_stop_aa)
        ):
            fits.append(r)
        else:
            summary.errors.append(
                FileError(r.ident, "preprocessed on another grid than the model's")
            )
    block = Rows(
        X=np.stack([r.vector() for r in fits]) if fits else np.zeros((0, grid.grid_n), np.float32),
        ids=np.array([r.ident for r in fits], dtype=object),
        labels=np.full(len(fits), -1, dtype=np.int8),
        quality=np.array([r.quality for r in fits], dtype=np.int32),
        meta={
            "source": np.array([r.source for r in fits], dtype=object),
            "archive": np.array([r.archive for r in fits], dtype=object),
            "object": np.array([r.object for r in fits], dtype=object),
            "ra": np.array([np.nan if r.ra is None else r.ra for r in fits], dtype="f8"),
            "dec": np.array([np.nan if r.dec is None else r.dec for r in fits], dtype="f8"),
            "mjd": np.array([np.nan if r.mjd is None else r.mjd for r in fits], dtype="f8"),
            "snr": np.array([np.nan if r.snr is None else r.snr for r in fits], dtype="f4"),
        },
    )
    proba, novelty = predictor(block.X)
    frame = predictions_frame(
        block,
        proba,
        novelty,
        classes=model.classes,
        threshold=predictor.threshold,
        model_id=model.model_id,
    )
    summary.merge(
        import_frame(
            db,
            frame,
            name=f"model {model.model_id} on the stored spectra",
            source=str(model_dir),
            created_by=created_by,
        )
    )
    return summary


def _fetch_sources(
    db: Database, records: list[dict[str, Any]], *, config: PreprocessConfig | None
) -> ImportSummary:
    """Import the candidates' spectra from their source files, with the table's origin."""
    wanted = [
        r for r in records if r["predicted_class"] in CANDIDATE_CLASSES and r["row"].get("source")
    ]
    with db.session() as session:
        present = existing_idents(session, (r["ident"] for r in wanted))
    by_origin: dict[str, dict[Path, None]] = {"real": {}, "synthetic": {}}
    for record in wanted:
        source = Path(str(record["row"]["source"]))
        if record["ident"] not in present and source.is_file():
            # The table's origin (ingest's --origin or the file's SIMULATD) stays the spectrum's.
            synthetic = str(record["row"].get("origin") or "") == "synthetic"
            by_origin["synthetic" if synthetic else "real"][source] = None
    summary = ImportSummary()
    for origin, paths in by_origin.items():
        if paths:
            summary.merge(import_fits(db, list(paths), config=config, origin=origin))
    return summary


def import_paths(
    db: Database,
    paths: Sequence[str | Path],
    *,
    config: PreprocessConfig | None = None,
    origin: str = "real",
    fetch_sources: bool = True,
    created_by: int | None = None,
    min_probability: float | None = None,
    classes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import whatever each path is: a dataset (.h5), a predictions table, FITS files or trees.

    ``min_probability`` and ``classes`` filter the rows of predictions tables
    (see `import_frame`).

    Raises `FileNotFoundError` for a path that does not exist; bad spectrum
    files are listed in the summary, never raised.
    """
    summary = ImportSummary()
    fits_paths: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if path.is_file() and path.suffix.lower() in (".h5", ".hdf5") and is_dataset(path):
            summary.merge(import_dataset(db, path, progress=progress))
        elif path.is_file() and is_predictions_table(path):
            summary.merge(
                import_predictions(
                    db,
                    path,
                    fetch_sources=fetch_sources,
                    config=config,
                    created_by=created_by,
                    min_probability=min_probability,
                    classes=classes,
                )
            )
        else:
            fits_paths.append(path)
    if fits_paths:
        summary.merge(import_fits(db, fits_paths, config=config, origin=origin, progress=progress))
    return summary


@dataclass
class SsapSummary(ImportSummary):
    """What an SSAP import did: records found, files downloaded now or reused from earlier runs."""

    found: int = 0
    downloaded: int = 0
    reused: int = 0

    def line(self) -> str:
        """One line for people."""
        return (
            f"{self.found} spectra found; {self.downloaded} downloaded, {self.reused} reused "
            f"from an earlier run; {super().line()}"
        )


def import_ssap(
    db: Database,
    service_url: str,
    *,
    download_dir: str | Path,
    pos: tuple[float, float] | None = None,
    size_deg: float | None = None,
    target: str | None = None,
    band_aa: tuple[float, float] | None = None,
    time: tuple[str, str] | None = None,
    format: str | None = None,
    limit: int | None = None,
    config: PreprocessConfig | None = None,
    timeout_s: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> SsapSummary:
    """Query an SSAP service, download each spectrum found and store it with its metadata.

    Spectra whose publisher id is already in the database are not downloaded
    again; files already in ``download_dir`` are reused; each spectrum is
    committed in batches, so a rerun of an interrupted import finishes it.
    The SSAP record's columns are kept in the spectrum's ``meta["ssap"]``.
    Raises `spectraldl.io.archives.ssap.SsapError` when the query itself fails.
    """
    config = config or PreprocessConfig()
    records = query_ssap(
        service_url,
        pos=pos,
        size_deg=size_deg,
        target=target,
        band_aa=band_aa,
        time=time,
        format=format,
        limit=limit,
        timeout_s=timeout_s,
    )
    summary = SsapSummary(found=len(records))
    with db.session() as session:
        present = existing_idents(session, (r.pubdid for r in records if r.pubdid))
    todo = [r for r in records if not (r.pubdid and r.pubdid in present)]
    summary.already_present += len(records) - len(todo)

    def make(record: Any) -> Callable[[], SpectrumRow]:
        def build() -> SpectrumRow:
            try:
                path, fresh = download_spectrum(record, download_dir, timeout_s=timeout_s)
            except SsapError as exc:
                raise SpectrumError(record.url, str(exc).removeprefix(f"{record.url}: ")) from None
            if fresh:
                summary.downloaded += 1
            else:
                summary.reused += 1
            row = spectrum_row(
                read_spectrum(path),
                config=config,
                imported_from=service_url,
                extra_meta={"ssap": record.meta, "ssap_service": service_url, "file": str(path)},
            )
            row.source = record.url[:1024]
            return row

        return build

    stored = store_spectra(
        db,
        ((record.url, make(record)) for record in todo),
        progress=(lambda done: progress(done, len(todo))) if progress else None,
    )
    summary.merge(stored)
    return summary
