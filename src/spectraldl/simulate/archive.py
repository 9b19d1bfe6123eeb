"""Synthetic archives in memory and on disk: the public factory functions.

`simulate_spectra` returns labelled `Spectrum` objects, `simulate_vectors`
their preprocessed 140-point vectors, `simulate_archive` writes FITS files
and ``truth.csv``. Spectrum ``i`` depends only on (seed, archive, i) and the
population, so any chunking, worker count or ``start`` gives the same spectra.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from spectraldl import __version__
from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import SpectrumError
from spectraldl.core.spectrum import Spectrum
from spectraldl.io.labels import label_code
from spectraldl.jobs.engine import map_in_order
from spectraldl.jobs.files import output_lock
from spectraldl.prep.preprocess import PreprocessConfig, preprocess
from spectraldl.simulate import fitsbytes
from spectraldl.simulate import junk as junkfiles
from spectraldl.simulate.common import streams
from spectraldl.simulate.population import Population, is_junk
from spectraldl.simulate.registry import simulated_archive

CHUNK = 200
"""Most spectra per task of a parallel run (fewer for small runs, so every worker gets work)."""

TRUTH_FIRST_COLUMNS = ("file", "id", "label", "junk", "archive", "layout", "index")
"""The leading columns of truth.csv; every physical parameter drawn follows."""


@dataclass
class SimulatedSpectra:
    """Labelled synthetic spectra in memory.

    Attributes
    ----------
    spectra
        The spectra, exactly as the project's readers read the written files
        (``meta.source`` is the path the file would have inside the archive).
    truth
        One dict per spectrum with the columns of truth.csv.
    """

    spectra: list[Spectrum]
    truth: list[dict[str, Any]]

    @property
    def labels(self) -> list[str]:
        """Class name of each spectrum."""
        return [row["label"] for row in self.truth]

    def truth_frame(self) -> Any:
        """The truth rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.truth)


@dataclass
class SimulatedVectors:
    """Preprocessed synthetic spectra: the network's input with labels and truth.

    Attributes
    ----------
    X
        float32 (m, grid_n): preprocessed flux of the spectra preprocessing accepted.
    labels
        int8 (m,): class codes (`spectraldl.io.labels.CLASSES`).
    ids
        str (m,): spectrum ids.
    quality
        int32 (m,): `spectraldl.core.quality.Quality` bits.
    truth
        The m truth rows (same order).
    rejected
        (id, reason) of the spectra preprocessing refused (rare: e.g. no H-alpha
        after a partial-coverage shift).
    config
        The preprocessing used.
    """

    X: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    quality: np.ndarray
    truth: list[dict[str, Any]]
    rejected: list[tuple[str, str]]
    config: PreprocessConfig


@dataclass
class ArchiveSummary:
    """What `simulate_archive` wrote."""

    out_dir: Path
    archive: str
    layout: str
    files: int
    junk: int
    classes: dict[str, int]
    truth_csv: Path
    seconds: float
    workers: int
    junk_kinds: dict[str, int] = field(default_factory=dict)
    truth_rows: int | None = None
    """Rows of truth.csv: this run's files and those of earlier runs it extended."""

    def line(self) -> str:
        """One line for people."""
        rate = self.files / self.seconds if self.seconds > 0 else float("inf")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.classes.items())) or "no spectra"
        listed = self.truth_rows if self.truth_rows is not None else self.files
        in_all = f" ({listed} files in all)" if listed != self.files else ""
        return (
            f"{self.files} {self.archive} files ({self.layout}) in {self.out_dir}: {counts}; "
            f"{self.junk} junk; truth in {self.truth_csv}{in_all}; {self.seconds:.1f} s "
            f"({rate:.0f} files/s, {self.workers} workers)"
        )


def _check(archive: str, release: str, form: str, *, start: int, n: int) -> str:
    """The layout ``release`` or ``form`` names, whichever the archive's layouts are.

    Raises ValueError when indices ``start`` .. ``start + n - 1`` pass the archive's
    `SimulatedArchive.last_index` (its dates and ids end there), before anything is written.
    """
    survey = simulated_archive(archive)
    if start < 0 or start + max(n, 1) - 1 > survey.last_index:
        asked = f"spectra {start} to {start + n - 1}" if n > 1 else f"spectrum {start}"
        raise ValueError(
            f"{asked} asked: the {archive} simulation names spectra "
            f"0 to {survey.last_index} only (its dates and ids end there); "
            "give a smaller start (--start) or -n"
        )
    return survey.layout(release=release, form=form)


def _population(
    archive: str, mix: str | Mapping[str, float] | None, population: Population | None
) -> Population:
    if population is not None:
        if population.archive != archive:
            raise ValueError(f"the population is for {population.archive}, not {archive}")
        return population
    return Population.default(archive, mix)


def _simulate(index: int, *, archive: str, seed: int, population: Population, layout: str) -> Any:
    return simulated_archive(archive).simulate_one(
        index, seed=seed, population=population, layout=layout
    )


def _truth_row(spec: Any, *, archive: str, layout: str, relpath: str, ident: str) -> dict[str, Any]:
    header = spec.header
    row: dict[str, Any] = {
        "file": relpath,
        "id": ident,
        "label": spec.truth["label"],
        "junk": "",
        "archive": archive,
        "layout": layout,
        "index": spec.index,
        "ra": header["RA"],
        "dec": header["DEC"],
        "object": header.get("DESIG", header.get("OBJECT", "")),
    }
    row.update({k: v for k, v in spec.truth.items() if k != "label"})
    return row


def simulate_spectra(
    n: int,
    *,
    archive: str = "ondrejov",
    seed: int = 0,
    mix: str | Mapping[str, float] | None = None,
    release: str = "dr1",
    form: str = "ssap",
    start: int = 0,
    population: Population | None = None,
) -> SimulatedSpectra:
    """Simulate ``n`` labelled spectra in memory (indices ``start`` .. ``start + n - 1``).

    Parameters
    ----------
    n
        Number of spectra.
    archive
        ``lamost`` or ``ondrejov``.
    seed
        Seed; spectrum i depends only on (seed, archive, i) and the population.
    mix
        Class fractions (dict or ``"emission=0.4,absorption=0.46,..."``); the
        archive's default when None (`population.ONDREJOV_MIX`, `LAMOST_MIX`).
    release, form
        File layout whose reading the spectra reproduce (LAMOST release, Ondřejov form).
    start
        Index of the first spectrum.
    population
        A full `Population` (overrides ``mix``), e.g. with real S/N values.

    Returns
    -------
    SimulatedSpectra
        The spectra and their truth rows (no junk: junk exists only as files).
    """
    layout = _check(archive, release, form, start=start, n=n)
    population = _population(archive, mix, population)
    survey = simulated_archive(archive)
    spectra, truth = [], []
    for index in range(start, start + n):
        spec = _simulate(index, archive=archive, seed=seed, population=population, layout=layout)
        relpath = spec.relpath
        spectrum = survey.to_spectrum(spec, survey.file_bytes(spec), relpath)
        spectra.append(spectrum)
        truth.append(
            _truth_row(spec, archive=archive, layout=layout, relpath=relpath, ident=spectrum.id)
        )
    return SimulatedSpectra(spectra=spectra, truth=truth)


def simulate_vectors(
    n: int,
    *,
    archive: str = "ondrejov",
    seed: int = 0,
    mix: str | Mapping[str, float] | None = None,
    release: str = "dr1",
    form: str = "ssap",
    start: int = 0,
    population: Population | None = None,
    config: PreprocessConfig | None = None,
) -> SimulatedVectors:
    """Simulate ``n`` spectra and preprocess them (`spectraldl.prep.preprocess.preprocess`).

    The same spectra as `simulate_spectra` with the same arguments, as the
    ingest of the written files would store them. Parameters as there, plus
    ``config`` (default `PreprocessConfig()`).
    """
    config = config or PreprocessConfig()
    sim = simulate_spectra(
        n,
        archive=archive,
        seed=seed,
        mix=mix,
        release=release,
        form=form,
        start=start,
        population=population,
    )
    xs, labels, ids, quality, truth, rejected = [], [], [], [], [], []
    for spectrum, row in zip(sim.spectra, sim.truth, strict=True):
        try:
            result = preprocess(spectrum, config)
        except SpectrumError as exc:
            rejected.append((spectrum.id, exc.reason))
            continue
        xs.append(result.x)
        labels.append(label_code(row["label"]))
        ids.append(spectrum.id)
        quality.append(int(result.quality))
        truth.append(row)
    return SimulatedVectors(
        X=np.stack(xs) if xs else np.zeros((0, config.grid_n), np.float32),
        labels=np.array(labels, dtype=np.int8),
        ids=np.array(ids, dtype=object),
        quality=np.array(quality, dtype=np.int32),
        truth=truth,
        rejected=rejected,
        config=config,
    )


# --- archives on disk --------------------------------------------------------------------


def _write(path: Path, data: bytes, folders: set[Path] | None = None) -> None:
    """Write through `atomic_write`, so a killed run never leaves half a file.

    ``folders`` are those known to exist already (the folder is added): each
    folder is made once per chunk, not once per file (one deleted during the
    chunk is not made again: the write fails, naming the file).
    """
    folder = path.parent
    if folders is None or folder not in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if folders is not None:
            folders.add(folder)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def _chunks(indices: list[int], workers: int) -> list[list[int]]:
    """``indices`` cut into tasks: at most `CHUNK` each, fewer for small runs (about 16 per
    worker), so that every worker gets work."""
    size = max(1, min(CHUNK, -(-len(indices) // (16 * max(1, workers)))))
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _run_chunks(
    chunks: Sequence[Sequence[int]],
    work: Callable[[Sequence[int]], list[dict[str, Any]]],
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """Run every chunk on the job backends (here, or local worker processes that die with
    this one); their truth rows in chunk order, whatever order they finish in."""
    total = sum(len(chunk) for chunk in chunks)
    done = 0

    def finished(index: int) -> None:
        nonlocal done
        done += len(chunks[index])
        if progress:
            progress(done, total)

    results = map_in_order(work, chunks, workers=workers, finished=finished)
    return [row for rows in results for row in rows]


def _chunk(
    indices: Sequence[int],
    out_dir: str,
    archive: str,
    seed: int,
    population: Population,
    layout: str,
    junk_fraction: float,
    compress: bool,
) -> list[dict[str, Any]]:
    """Simulate and write the files of ``indices``; return their truth rows, with the values
    as truth.csv writes them."""
    rows = []
    base = Path(out_dir)
    folders: set[Path] = set()
    kinds = junkfiles.kinds_for(archive, compressed=compress)
    survey = simulated_archive(archive)
    for index in indices:
        spec = _simulate(index, archive=archive, seed=seed, population=population, layout=layout)
        relpath = spec.relpath + (".gz" if compress else "")
        row = _truth_row(
            spec, archive=archive, layout=layout, relpath=relpath, ident=survey.ident(spec)
        )
        if is_junk(index, seed=seed, fraction=junk_fraction):
            kind = junkfiles.junk_kind(index, seed=seed, kinds=kinds)
            data = junkfiles.make_junk(
                kind, spec, streams(seed, archive, index).meta, archive=archive
            )
            if compress and kind not in ("truncated-gzip", "zero-byte", "text", "random-bytes"):
                data = fitsbytes.gzip_bytes(data, level=1)
            row.update(label="unknown", junk=kind)
        else:
            data = survey.file_bytes(spec)
            if compress:
                data = fitsbytes.gzip_bytes(data, level=1)
        _write(base / relpath, data, folders)
        # As truth.csv writes them: formatted here, in the workers, not after them.
        rows.append({key: _csv_value(value) for key, value in row.items()})
    return rows


def simulate_archive(
    out_dir: str | Path,
    *,
    archive: str,
    n: int,
    seed: int = 0,
    mix: str | Mapping[str, float] | None = None,
    junk: float = 0.0,
    release: str = "dr1",
    form: str = "ssap",
    workers: int = 1,
    compress: bool | None = None,
    start: int = 0,
    population: Population | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ArchiveSummary:
    """Write ``n`` synthetic FITS files in the archive's real layout and ``truth.csv``.

    Parameters
    ----------
    out_dir
        Directory to write into (created). LAMOST files go to
        ``YYYYMMDD/PLANID/spec-LMJD-PLANID_spSS-FFF.fits[.gz]`` as in a release
        tree; Ondřejov files to ``<obs>.fits``. Files of the same names are
        overwritten (with the same bytes for the same arguments). A directory
        that already holds a ``simulation.json`` is extended: with the same
        settings (all but ``n`` and ``start``) truth.csv becomes the union of its
        rows and this run's, in index order (this run's replace those of the
        same indices, with the same bytes), and simulation.json records the
        indices covered; other settings raise ValueError naming the ones that
        differ, before anything is written.
    archive, n, seed, mix, release, form, start, population
        As `simulate_spectra`.
    junk
        Fraction (0-1) of the files written broken instead (see
        `spectraldl.simulate.junk`); they are listed in truth.csv with their
        ``junk`` kind and label ``unknown``.
    workers
        Worker processes; the files do not depend on it.
    compress
        gzip the files (mtime 0, level 1); default True for LAMOST (its
        archive serves ``.fits.gz``), False for Ondřejov.
    progress
        Called with (files done, total).

    Returns
    -------
    ArchiveSummary
        Counts per class and junk kind of this run's files, and where truth.csv
        is. Also writes ``simulation.json``: the arguments, the population and
        the package version, with ``n`` (the spectra truth.csv lists), ``start``
        (the first index) and ``ranges`` (``[first, end)`` of each run of
        consecutive indices; one pair when contiguous). It is written before the
        first file, so a killed run's folder is claimed for its settings too.

    One run per folder at a time (`output_lock`; a second raises `OutputBusy`): two would
    each write truth.csv as the earlier rows plus their own, losing the other's.
    """
    started = time.perf_counter()
    if not 0.0 <= junk <= 1.0:
        raise ValueError(f"junk must be a fraction between 0 and 1, got {junk}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    layout = _check(archive, release, form, start=start, n=n)
    population = _population(archive, mix, population)
    compress = simulated_archive(archive).compress if compress is None else compress
    out = Path(out_dir)
    settings = _settings(
        archive=archive,
        n=n,
        seed=seed,
        start=start,
        layout=layout,
        junk=junk,
        compress=compress,
        population=population,
    )
    with output_lock(out):
        out.mkdir(exist_ok=True)
        settings_json = out / SETTINGS_JSON
        earlier = _earlier_settings(settings_json, settings)
        truth_csv = out / "truth.csv"
        if earlier is None:
            # Claim the folder for these settings before the first file is written, so that a
            # run killed now still refuses a later run of other settings into it.
            _write_settings(settings_json, settings, [])
        indices = list(range(start, start + n))
        work = partial(
            _chunk,
            out_dir=str(out),
            archive=archive,
            seed=seed,
            population=population,
            layout=layout,
            junk_fraction=junk,
            compress=compress,
        )
        rows = _run_chunks(_chunks(indices, workers), work, workers=workers, progress=progress)
        kept = _earlier_rows(truth_csv, indices) if earlier is not None else []
        union = sorted([*kept, *rows], key=lambda row: int(row["index"]))
        write_truth_csv(truth_csv, union)
        _write_settings(settings_json, settings, [int(row["index"]) for row in union])
    classes = Counter(row["label"] for row in rows if not row["junk"])
    kinds = Counter(row["junk"] for row in rows if row["junk"])
    return ArchiveSummary(
        out_dir=out,
        archive=archive,
        layout=layout,
        files=len(rows),
        junk=sum(kinds.values()),
        classes=dict(classes),
        truth_csv=truth_csv,
        seconds=time.perf_counter() - started,
        workers=max(1, workers),
        junk_kinds=dict(kinds),
        truth_rows=len(union),
    )


SETTINGS_JSON = "simulation.json"
"""The file beside truth.csv that records a simulated folder's settings and indices."""

EXTENT_KEYS = ("n", "start", "ranges", "spectraldl_version")
"""simulation.json's keys that a run may change in a folder: which spectra it holds (and
the version that wrote it last). Every other key must match for a run to extend it."""


def _write_settings(path: Path, settings: Mapping[str, Any], indices: Sequence[int]) -> None:
    """Write simulation.json: ``settings`` with the extent of ``indices`` (sorted, unique).

    ``n`` is how many spectra truth.csv lists, ``start`` the first index, ``ranges`` the
    ``[first, end)`` pair of each run of consecutive indices (one pair when contiguous).
    """
    ranges: list[list[int]] = []
    for index in indices:
        if ranges and ranges[-1][1] == index:
            ranges[-1][1] = index + 1
        else:
            ranges.append([index, index + 1])
    extent = {
        "n": len(indices),
        "start": indices[0] if indices else settings["start"],
        "ranges": ranges,
    }
    data: dict[str, Any] = {}
    for key, value in settings.items():
        data[key] = extent.get(key, value)
        if key == "start":
            data["ranges"] = ranges
    _write(path, json.dumps(data, indent=1).encode())


def _earlier_settings(path: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings of the simulation already in ``path``'s folder, or None if there is none.

    Raises ValueError naming ``path`` if it cannot be read or records other settings than
    ``settings`` (apart from `EXTENT_KEYS`): extending a set only adds the same simulation's
    spectra, never another's.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    try:
        earlier = json.loads(text)
    except ValueError:
        earlier = None
    if not isinstance(earlier, dict) or "archive" not in earlier:
        raise ValueError(
            f"{path}: not a simulation.json written by spectraldl simulate; "
            "write to another folder or remove it"
        )
    asked = json.loads(json.dumps(settings))
    differ = [
        f"{key} {_short(earlier.get(key))} there, {_short(asked.get(key))} asked"
        for key in dict.fromkeys([*earlier, *asked])
        if key not in EXTENT_KEYS and earlier.get(key) != asked.get(key)
    ]
    if differ:
        raise ValueError(
            f"{path}: the folder holds a simulation of other settings ({'; '.join(differ)}); "
            "extend it with the same settings or write to another folder"
        )
    return dict(earlier)


def _short(value: Any) -> str:
    text = "none" if value is None else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


def _earlier_rows(truth_csv: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of ``truth_csv`` (if any) of spectra other than ``indices``."""
    replaced = set(indices)
    try:
        rows = read_truth_csv(truth_csv)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{truth_csv}: cannot read it ({exc})") from None
    kept = []
    for number, row in enumerate(rows, start=2):
        if None in row or None in row.values():
            raise ValueError(
                f"{truth_csv}: line {number} has another number of fields than the header; "
                "write to another folder or remove the file"
            )
        try:
            index = int(row.get("index") or "")
        except ValueError:
            raise ValueError(
                f"{truth_csv}: line {number} has no spectrum index; "
                "write to another folder or remove the file"
            ) from None
        if index not in replaced:
            kept.append(row)
    return kept


def _settings(
    *,
    archive: str,
    n: int,
    seed: int,
    start: int,
    layout: str,
    junk: float,
    compress: bool,
    population: Population,
) -> dict[str, Any]:
    """What simulation.json records: the arguments, the population and the package version."""
    settings: dict[str, Any] = {
        "archive": archive,
        "n": n,
        "seed": seed,
        "start": start,
        "layout": layout,
        "junk": junk,
        "compress": compress,
        "mix": population.mix,
        "types": population.types,
        "snr_values": list(population.snr_values),
        "spectraldl_version": __version__,
    }
    if population.plate_systematics:
        settings["plate_systematics"] = True
        settings["fibres_per_plate"] = population.fibres_per_plate
    return settings


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool | np.bool_):
        return int(value)
    return value


def write_truth_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write truth rows atomically: `TRUTH_FIRST_COLUMNS`, then every other key in order."""
    columns = dict.fromkeys(TRUTH_FIRST_COLUMNS)
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([_csv_value(row[c]) if c in row else "" for c in columns] for row in rows)


def read_truth_csv(path: str | Path) -> list[dict[str, str]]:
    """Read a truth.csv back (values as strings)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
