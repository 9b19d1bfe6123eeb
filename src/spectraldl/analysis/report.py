"""One self-contained HTML report of a run directory: what went in, what came out, how fast.

The run directory is the one of docs/CONVENTIONS.md ("Run directory"):
``training.h5``, ``archive.h5``, ``explore/``, ``model/``,
``predictions.parquet``, ``candidates.csv``, ``gallery/``, ``benchmarks/``
and ``run.json``. Each part that is present becomes a section; each part
that is missing is named at the top and in its section, so a partial run
still gives a useful report and a reader knows what it lacks.

The file needs nothing else: images are embedded as ``data:`` URIs, the
styles are inline, there is no script and no link out of the page, so it
opens offline, from an e-mail attachment or an archive years later.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from spectraldl import __version__
from spectraldl.catalogue.gallery import read_gallery_entries, sample_order
from spectraldl.core.atomic import atomic_write
from spectraldl.core.quality import Quality
from spectraldl.core.versions import versions
from spectraldl.io.dataset import DatasetError, check_label_codes, dataset_info
from spectraldl.io.labels import CLASSES, NO_LABEL
from spectraldl.io.predictions import (
    SUFFIXES,
    PredictionsError,
    iter_predictions,
    probability_column,
    read_metadata,
)
from spectraldl.jobs.files import errors_csv_path, output_lock
from spectraldl.ml.modelcard import ModelCard

SECTIONS: tuple[tuple[str, str], ...] = (
    ("data", "Data"),
    ("maps", "Data space: PCA and t-SNE"),
    ("calibration", "Blur calibration"),
    ("training", "Training"),
    ("classification", "Classification"),
    ("vetting", "Precision measured from the verdicts"),
    ("gallery", "Candidate gallery"),
    ("performance", "Performance"),
    ("provenance", "Provenance"),
)
"""Section keys (HTML ids) and titles, in the order they appear."""

_TITLES = dict(SECTIONS)

THESIS_DR1_COUNTS = {"emission": 158_115, "absorption": 1_898_095, "double-peak": 145_790}
"""The thesis' table of CNN predictions on LAMOST DR1 (2 202 000 spectra)."""

_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
"""The report's page template (``templates/report.html``)."""


class ReportError(ValueError):
    """A run directory that cannot be reported on (missing, not a directory)."""


@dataclass
class Image:
    """An image to embed: a caption and its ``data:`` URI."""

    caption: str
    uri: str
    name: str


@dataclass
class Section:
    """One section of the report: present parts as context for the template, missing ones named."""

    key: str
    title: str
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, key: str) -> Section:
        """A section of `SECTIONS` with nothing in it yet."""
        return cls(key, _TITLES[key])

    @property
    def present(self) -> bool:
        """True when the section has anything to show."""
        return bool(self.images or self.tables or self.notes)


def data_uri(path: str | Path) -> str:
    """The file as a ``data:`` URI (PNG, SVG or JPEG), for embedding."""
    path = Path(path)
    kind = _IMAGE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: not an image type the report embeds (png, svg, jpg)")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _table(
    title: str, columns: list[str], rows: Iterable[Iterable[Any]], *, note: str = ""
) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": [list(r) for r in rows], "note": note}


def _fmt(value: Any) -> str:
    """Numbers for people: thousands separators, 3-4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}".replace(",", " ")
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return "n/a"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        if abs(v) >= 100:
            return f"{v:,.0f}".replace(",", " ")
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.4g}"
    return str(value)


def _percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "n/a"


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: not readable JSON ({exc})")
        return None


@contextlib.contextmanager
def _unexpected_layout(path: Path, problems: list[str]) -> Iterator[None]:
    """Turn a JSON file's value of the wrong kind (a list for a number...) into a line in
    ``problems`` naming the file, instead of a traceback that loses the whole report."""
    try:
        yield
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        problems.append(f"{path.name}: not the layout spectraldl writes ({exc})")


# --- data --------------------------------------------------------------------------------


@dataclass
class _DatasetCounts:
    """Spectra of a dataset per (archive, origin), label and quality flag."""

    groups: Counter[tuple[str, str]] = field(default_factory=Counter)
    labels: Counter[int] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    clean: int = 0


def _count_dataset(path: Path, n_rows: int) -> _DatasetCounts:
    """Count a dataset's rows in blocks, reading only its meta, labels and quality.

    Raises `DatasetError` for a label code that names no class.
    """
    import h5py

    counts = _DatasetCounts()
    with h5py.File(path, "r") as h5:
        step = 262_144
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            archive = _meta_text(h5, "archive", start, stop)
            origin = _meta_text(h5, "origin", start, stop)
            counts.groups.update(zip(archive, origin, strict=True))
            labels = np.asarray(h5["labels"][start:stop])
            check_label_codes(path, labels, start)
            counts.labels.update(labels.tolist())
            quality = np.asarray(h5["quality"][start:stop])
            counts.clean += int((quality == 0).sum())
            for flag in Quality:
                counts.flags[str(flag.name)] += int((quality & int(flag)).astype(bool).sum())
    return counts


def _meta_text(h5: Any, name: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the text column ``meta/<name>``, '' for a dataset without it."""
    if name not in h5["meta"]:
        return np.full(stop - start, "", dtype=object)
    return np.asarray(h5["meta"][name].asstr()[start:stop], dtype=object)


def _dataset_summary(path: Path, section: Section) -> None:
    try:
        info = dataset_info(path)
        counts = _count_dataset(path, info.n_rows)
    except DatasetError as exc:
        section.problems.append(str(exc))
        return
    config = info.config
    blur = ", ".join(f"{k} {v:g} px" for k, v in sorted(config.blur_sigma_px.items())) or "none"
    section.tables.append(
        _table(
            f"{path.name}: {_fmt(info.n_rows)} spectra",
            ["archive", "origin", "spectra"],
            [(a, o, _fmt(c)) for (a, o), c in sorted(counts.groups.items())],
            note=(
                f"grid {config.grid_n} points on {config.grid_start_aa:g}-"
                f"{config.grid_stop_aa:g} Å (vacuum); blur {blur}; created "
                f"{info.attrs.get('created', '?')} by spectraldl "
                f"{info.attrs.get('spectraldl_version', '?')}"
            ),
        )
    )
    total = max(info.n_rows, 1)
    section.tables.append(
        _table(
            f"{path.name}: classes",
            ["class", "spectra", "share"],
            [
                (CLASSES[c] if c != NO_LABEL else "unlabelled", _fmt(k), _percent(k, total))
                for c, k in sorted(counts.labels.items())
            ],
        )
    )
    section.tables.append(
        _table(
            f"{path.name}: quality flags",
            ["flag", "spectra", "share"],
            [("none (clean)", _fmt(counts.clean), _percent(counts.clean, total))]
            + [(name, _fmt(k), _percent(k, total)) for name, k in counts.flags.items() if k],
            note="A spectrum can carry several flags.",
        )
    )
    _errors_note(path, section)


def _errors_note(path: Path, section: Section) -> None:
    """How many files the dataset's ingest could not read, from its errors CSV."""
    errors = errors_csv_path(path)
    if errors.exists():
        with errors.open(encoding="utf-8") as handle:
            bad = max(sum(1 for _ in handle) - 1, 0)
        section.notes.append(
            f"{path.name}: {_fmt(bad)} files could not be read or preprocessed "
            f"(listed in {errors.name})."
        )


def _data_section(run: Path) -> Section:
    section = Section.empty("data")
    named = [run / "training.h5", run / "archive.h5"]
    others = sorted(p for p in run.glob("*.h5") if p not in named)
    for path in named:
        if path.exists():
            _dataset_summary(path, section)
        else:
            section.missing.append(f"{path.name} (spectraldl ingest)")
    for path in others:
        _dataset_summary(path, section)
    return section


# --- maps --------------------------------------------------------------------------------


def _map_order(path: Path) -> tuple[int, str]:
    name = path.stem
    return (0 if name.startswith("pca-") else 1 if name == "pca" else 2, name)


def _maps_section(run: Path) -> Section:
    section = Section.empty("maps")
    folder = run / "explore"
    pngs = sorted(folder.glob("*.png"), key=_map_order) if folder.is_dir() else []
    if not pngs:
        section.missing.append("explore/ maps (spectraldl explore)")
        return section
    summary = None
    if (folder / "summary.json").exists():
        summary = _read_json(folder / "summary.json", section.problems)
    captions = {
        "pca": "PCA of all datasets in one projection (fitted on their union).",
        "tsne": "t-SNE after PCA to 30 dimensions, all datasets in one map.",
    }
    for png in pngs:
        group = png.stem.removeprefix("pca-")
        pretty = {"ondrejov": "Ondřejov", "lamost": "LAMOST"}.get(group, group)
        caption = captions.get(png.stem, f"PCA of {pretty} alone (its own projection).")
        section.images.append(Image(caption, data_uri(png), png.name))
    if isinstance(summary, dict):
        separation = summary.get("pca", {}).get("separation", [])
        if separation:
            section.tables.append(
                _table(
                    "How distinct are the groups in PCA space?",
                    [
                        "groups",
                        "spectra",
                        "ROC AUC (10 PCs)",
                        "ROC AUC (2 PCs, linear)",
                        "centroid distance / spread",
                    ],
                    [
                        (
                            " vs ".join(e["groups"]),
                            " / ".join(_fmt(v) for v in e.get("counts", {}).values()),
                            _fmt(e.get("auc")) if e.get("auc") is not None else "n/a",
                            _fmt(e.get("auc_pca2_linear"))
                            if e.get("auc_pca2_linear") is not None
                            else "n/a",
                            _fmt(e.get("centroid_distance")),
                        )
                        for e in separation
                    ],
                    note=(
                        "Cross-validated ROC AUC of a classifier telling the groups apart: 0.5 "
                        "means indistinguishable, 1 fully separable. Different class mixes "
                        "(Ondřejov targets Be stars, LAMOST is mostly ordinary stars) separate "
                        "groups too, not only the domain gap."
                    ),
                )
            )
        tsne = summary.get("tsne")
        if isinstance(tsne, dict):
            section.notes.append(
                f"t-SNE: {_fmt(tsne.get('rows'))} spectra, {tsne.get('backend')}, perplexity "
                f"{_fmt(tsne.get('perplexity'))}, PCA to {tsne.get('pca_dims')} dimensions, "
                f"{_fmt(tsne.get('seconds'))} s (threads: {tsne.get('n_jobs')})."
            )
    return section


# --- calibration -------------------------------------------------------------------------


def _calibration_section(run: Path) -> Section:
    section = Section.empty("calibration")
    folder = run / "calibration"
    path = folder / "blur.json"
    if not path.exists():
        section.missing.append("calibration/blur.json (spectraldl calibrate-blur --details)")
        return section
    result = _read_json(path, section.problems)
    if not isinstance(result, dict):
        return section
    if (folder / "blur.png").exists():
        section.images.append(
            Image(
                "Mismatch against the blur sigma: each cross-matched pair, and their sum.",
                data_uri(folder / "blur.png"),
                "blur.png",
            )
        )
    with _unexpected_layout(path, section.problems):
        tables = [_blur_table(result)]
        pairs = [p for p in result.get("per_pair", []) if isinstance(p, dict)]
        if pairs:
            tables.append(_pairs_table(pairs))
        section.tables.extend(tables)
    return section


def _blur_table(result: dict[str, Any]) -> dict[str, Any]:
    """The measured blur with its interval, the pairs used and the thesis' value."""
    interval = result.get("interval_95_px") or [None, None]
    return _table(
        "The measured blur (Gaussian sigma in Ondřejov pixels)",
        ["", ""],
        [
            (
                "measured",
                f"{_fmt(result.get('sigma_px'))} ± "
                f"{_fmt(result.get('uncertainty_px'))} px "
                f"({_fmt(result.get('sigma_aa'))} Å)",
            ),
            ("95 % bootstrap interval", f"{_fmt(interval[0])} - {_fmt(interval[1])} px"),
            (
                "pairs used / skipped",
                f"{_fmt(result.get('pairs'))} / {_fmt(len(result.get('skipped', [])))}",
            ),
            ("median of the pairs' own best", _fmt(result.get("median_pair_sigma_px"))),
            ("predicted by R 13 000 → 1 800", _fmt(result.get("predicted_sigma_px"))),
            (
                "thesis",
                f"{_fmt(result.get('thesis_sigma_px'))} "
                f"({'inside' if result.get('thesis_in_interval') else 'outside'} "
                "the interval)",
            ),
            ("comparison space", str(result.get("space", "?"))),
        ],
    )


def _pairs_table(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each cross-matched pair's own best sigma, velocity shift and mismatches."""
    return _table(
        "Each pair",
        [
            "pair",
            "object",
            "sigma (px)",
            "velocity shift (km/s)",
            "least mismatch",
            "mismatch at 7",
        ],
        [
            (
                p.get("name"),
                p.get("object"),
                _fmt(p.get("sigma_px")),
                _fmt(p.get("velocity_km_s")),
                _fmt(p.get("min_mismatch")),
                _fmt(p.get("mismatch_at_thesis_sigma")),
            )
            for p in pairs
        ],
        note="Be stars vary between the epochs of a pair: such pairs fit worse at "
        "every sigma and weigh little in the sum.",
    )


# --- training ----------------------------------------------------------------------------


def _class_scores(
    name: str, scores: dict[str, Any], classes: list[str] | None, matrix: list[list[int]] | None
) -> tuple[str, ...]:
    """One class's row: a dash for a precision of no predictions or a recall of no rows."""
    support = scores.get("support")
    predicted = None
    if classes and matrix and name in classes:
        predicted = sum(int(row[classes.index(name)]) for row in matrix)
    precision = "-" if predicted == 0 else _fmt(scores.get("precision"))
    recall = "-" if support == 0 else _fmt(scores.get("recall"))
    f1 = "-" if support == 0 or predicted == 0 else _fmt(scores.get("f1"))
    return (name, precision, recall, f1, _fmt(support))


def _metrics_tables(name: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    per_class = metrics.get("per_class") or {}
    n = metrics.get("n")
    head = (
        f"{name}: {_fmt(n)} spectra, accuracy {_fmt(metrics.get('accuracy'))}, "
        f"ECE {_fmt(metrics.get('ece'))}"
    )
    confusion = metrics.get("confusion") or {}
    classes = confusion.get("classes")
    matrix = confusion.get("matrix")
    if per_class:
        out.append(
            _table(
                head,
                ["class", "precision", "recall", "F1", "support"],
                [_class_scores(c, v, classes, matrix) for c, v in per_class.items()],
            )
        )
    if classes and matrix:
        out.append(
            _table(
                f"{name}: confusion matrix (rows true, columns predicted)",
                ["true \\ predicted", *classes],
                [(c, *(_fmt(int(v)) for v in row)) for c, row in zip(classes, matrix, strict=True)],
            )
        )
    return out


def _training_section(run: Path) -> Section:
    section = Section.empty("training")
    model = run / "model"
    if not model.is_dir():
        section.missing.append("model/ (spectraldl train)")
        return section
    _training_figures(model, section)
    card = _read_card(model / "card.json", section.problems)
    if card is not None:
        with _unexpected_layout(model / "card.json", section.problems):
            section.tables.append(_table("The model (card.json)", ["", ""], _card_rows(card)))
    _training_metrics(model, section)
    return section


def _read_card(path: Path, problems: list[str]) -> ModelCard | None:
    """The model card, or None with the reason in ``problems`` (absent or damaged)."""
    data = _read_json(path, problems) if path.exists() else None
    if not isinstance(data, dict):
        return None
    try:
        return ModelCard.from_json(data)
    except TypeError as exc:
        problems.append(f"{path.name}: not a model card ({exc})")
        return None


def _card_rows(card: ModelCard) -> list[tuple[str, str]]:
    """The card's headline: network, classes, epochs, time, split, temperature."""
    arch = card.architecture
    training = card.training or {}
    split = card.split or {}
    return [
        ("architecture", arch.name if arch else "?"),
        ("parameters", _fmt(arch.n_parameters if arch else None)),
        ("classes", ", ".join(card.classes)),
        (
            "epochs",
            f"{_fmt(training.get('epochs_run'))} (best {_fmt(training.get('best_epoch'))})",
        ),
        ("training time", f"{_fmt(training.get('seconds'))} s on {training.get('device', '?')}"),
        (
            "split (train / validation / test / real)",
            " / ".join(
                _fmt(split.get(k)) for k in ("n_train", "n_val", "n_test", "n_real_evaluation")
            ),
        ),
        ("temperature", _fmt(card.temperature)),
    ]


def _training_figures(model: Path, section: Section) -> None:
    """The training curves and confusion matrices the model folder holds."""
    for name, caption in (
        ("curves.png", "Training curves: loss and accuracy per epoch, training and validation."),
        (
            "confusion.png",
            "Confusion matrices: the synthetic test split and the real labelled "
            "spectra, which were never fitted.",
        ),
    ):
        if (model / name).exists():
            section.images.append(Image(caption, data_uri(model / name), name))
        else:
            section.missing.append(f"model/{name}")


def _training_metrics(model: Path, section: Section) -> None:
    """Per-class metrics and confusion matrices: test split, real spectra, per archive."""
    metrics_path = model / "metrics.json"
    if not metrics_path.exists():
        section.missing.append("model/metrics.json")
        return
    metrics = _read_json(metrics_path, section.problems)
    if not isinstance(metrics, dict):
        return
    tables: list[dict[str, Any]] = []
    with _unexpected_layout(metrics_path, section.problems):
        origin = ", ".join(metrics.get("test_origin", [])) or "?"
        for key, name in (("test", f"Test split ({origin})"), ("real", "Real labelled spectra")):
            if isinstance(metrics.get(key), dict) and metrics[key].get("n"):
                tables.extend(_metrics_tables(name, metrics[key]))
            elif key == "real":
                section.notes.append("No real labelled spectra were evaluated.")
        for archive, values in (metrics.get("real_by_archive") or {}).items():
            if isinstance(values, dict) and values.get("n"):
                tables.extend(_metrics_tables(f"Real labelled spectra, {archive}", values))
        section.tables.extend(tables)


# --- classification ----------------------------------------------------------------------


def _predictions_path(run: Path) -> Path | None:
    for suffix in SUFFIXES:
        path = run / f"predictions{suffix}"
        if path.exists():
            return path
    return None


FLAGGED_NOTE = (
    "'with quality flags': spectra with any Quality flag set ("
    + ", ".join(str(flag.name) for flag in Quality)
    + ")."
)
"""What the class table's 'with quality flags' column counts (`_PredictionCounts`), in words."""


@dataclass
class _PredictionCounts:
    """Spectra per predicted class: all, with any quality flag, and with p >= 0.9; the models."""

    counts: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    confident: Counter[str] = field(default_factory=Counter)
    models: set[str] = field(default_factory=set)
    total: int = 0

    def add(self, block: Any) -> None:
        """Count one block of the predictions table."""
        classes = block["predicted_class"].astype(str)
        self.counts.update(classes)
        self.total += len(block)
        if "quality" in block:
            bad = block["quality"].to_numpy() != 0
            self.flagged.update(classes[bad])
        p_columns = [c for c in block.columns if c.startswith("p_")]
        if p_columns:
            best = block[p_columns].to_numpy().max(axis=1)
            self.confident.update(classes[best >= 0.9])
        if "model_id" in block:
            self.models.update(block["model_id"].astype(str).unique())

    def rows(self) -> Sequence[tuple[str, ...]]:
        """One row per class (the thesis' first), then all, beside the thesis' DR1 counts."""
        thesis_total = sum(THESIS_DR1_COUNTS.values())
        names = list(dict.fromkeys([*THESIS_DR1_COUNTS, *sorted(self.counts)]))
        rows = []
        for name in names:
            k = self.counts.get(name, 0)
            thesis = THESIS_DR1_COUNTS.get(name)
            rows.append(
                (
                    name,
                    _fmt(k),
                    _percent(k, self.total),
                    _fmt(self.confident.get(name, 0)),
                    _fmt(self.flagged.get(name, 0)),
                    "" if thesis is None else f"{_fmt(thesis)} ({_percent(thesis, thesis_total)})",
                )
            )
        rows.append(
            (
                "all",
                _fmt(self.total),
                "100 %",
                _fmt(sum(self.confident.values())),
                _fmt(sum(self.flagged.values())),
                f"{_fmt(thesis_total)}",
            )
        )
        return rows


def _classification_section(run: Path) -> Section:
    section = Section.empty("classification")
    path = _predictions_path(run)
    if path is None:
        section.missing.append("predictions.parquet (spectraldl classify)")
        return section
    counts = _PredictionCounts()
    try:
        for block in iter_predictions(path):
            counts.add(block)
    except (PredictionsError, KeyError, ValueError) as exc:
        section.problems.append(f"{path.name}: {exc}")
        return section
    section.tables.append(
        _table(
            f"Spectra per predicted class ({path.name})",
            ["class", "spectra", "share", "p ≥ 0.9", "with quality flags", "thesis, LAMOST DR1"],
            counts.rows(),
            note=(
                "As the thesis' table of LAMOST DR1 predictions (its CNN, arg-max, 2 202 000 "
                "spectra; 14 % emission or double-peak). "
                + FLAGGED_NOTE
                + " Model: "
                + (", ".join(sorted(counts.models)) or "?")
            ),
        )
    )
    section.notes.append(_precision_note(path))
    candidates = run / "candidates.csv"
    if candidates.exists():
        section.notes.append(_candidates_note(candidates))
    else:
        section.missing.append("candidates.csv (candidate catalogue)")
    return section


def _candidates_note(path: Path) -> str:
    """How many candidates there are, and how many of them are real spectra."""
    import pandas as pd

    origin = pd.read_csv(path, usecols=lambda c: c == "origin", dtype=str, keep_default_na=False)
    n = len(origin)
    text = f"{path.name}: {_fmt(n)} candidates to vet"
    if "origin" in origin.columns:
        counts = origin["origin"].value_counts()
        text += (
            f", {_fmt(int(counts.get('real', 0)))} of them real spectra and "
            f"{_fmt(int(counts.get('synthetic', 0)))} synthetic"
        )
    return text + "."


def _precision_note(path: Path) -> str:
    """What arithmetic the network ran in, from the table's metadata."""
    try:
        precision = ((read_metadata(path) or {}).get("manifest") or {}).get("precision")
    except ValueError:
        precision = None
    if precision is None:
        return f"{path.name}: the network's precision is not recorded."
    if precision == "fp32":
        return (
            f"{path.name}: network in fp32, the default (the same probabilities on every machine)."
        )
    return (
        f"{path.name}: network in {precision}, chosen for speed (probabilities differ from "
        "fp32 by up to about 0.01 and depend on the machine)."
    )


# --- vetting -----------------------------------------------------------------------------


def _share(cell: dict[str, Any]) -> str:
    """A precision with its interval, or a dash before any verdict."""
    if cell["precision"] is None:
        return "–"
    low, high = cell["interval"]
    return f"{cell['precision']:.3f} ({low:.3f}–{high:.3f})"


def _run_models(run: Path) -> set[str]:
    """The ids of the models this run used: its predictions table's, else its model's."""
    path = _predictions_path(run)
    try:
        found = str((read_metadata(path) or {}).get("model_id", "")) if path else ""
    except PredictionsError:
        found = ""
    if not found and (run / "model" / "metrics.json").is_file():
        metrics = _read_json(run / "model" / "metrics.json", [])  # the training section says why
        found = str(metrics.get("model_id", "")) if isinstance(metrics, dict) else ""
    return {found} if found else set()


def _catalogue_title(name: str, model: str, run_models: set[str]) -> str:
    """A vetted catalogue's name with its model(s) (the web tool joins several with commas),
    marked when one is not this run's model."""
    models = set(model.split(",")) - {""}
    title = f"{name}, model {model}" if models else f"{name}, model not recorded"
    if run_models and not models <= run_models:
        title += f" (another model than this run's {', '.join(sorted(run_models))})"
    return title


def _vetting_section(vetted: Mapping[str, dict[str, Any]] | None, run_models: set[str]) -> Section:
    """Per vetted catalogue, its model and the precision per class and per probability bin.

    ``vetted`` maps a catalogue's name to its precision table as the web tool
    measures it (`spectraldl.web.precision.catalogue_precision`) with its ``model_id``;
    the command reads them from the web database (``spectraldl report --db``), which
    may hold catalogues of other models than ``run_models``: their titles say so.
    """
    section = Section.empty("vetting")
    if vetted is None:
        section.notes.append(
            "No verdicts read: `spectraldl report RUN_DIR --db URL` adds the precision "
            "measured from the web tool's verdicts."
        )
        return section
    for catalogue, table in vetted.items():
        name = _catalogue_title(catalogue, str(table.get("model_id", "")), run_models)
        classes = [
            [
                cls,
                _fmt(c["total"]),
                _fmt(c["vetted"]),
                _fmt(c["confirmed"]),
                _share(c),
                "–" if c["expected_true"] is None else _fmt(round(c["expected_true"])),
            ]
            for cls, c in table["classes"].items()
        ]
        section.tables.append(
            _table(
                f"{name}: per predicted class",
                [
                    "class",
                    "candidates",
                    "vetted",
                    "confirmed",
                    "precision (Wilson 95 %)",
                    "expected true",
                ],
                classes,
                note="A candidate counts by its vetters' majority; ties are left out.",
            )
        )
        bins = [
            [
                b["class"],
                f"{b['p_min']:.1f}–{b['p_max']:.1f}",
                _fmt(b["total"]),
                _fmt(b["vetted"]),
                _share(b),
            ]
            for b in table["bins"]
        ]
        section.tables.append(
            _table(
                f"{name}: per probability bin",
                ["class", "probability", "candidates", "vetted", "precision"],
                bins,
            )
        )
    return section


# --- gallery -----------------------------------------------------------------------------


def _gallery_section(run: Path, sample: int) -> Section:
    """A sample of the gallery: real candidates first, then the most probable."""
    section = Section.empty("gallery")
    folder = run / "gallery"
    images: list[tuple[Path, str]] = []
    order = "in the gallery's order"
    if folder.is_dir():
        index = folder / "index.html"
        inside = folder.resolve()

        def own(src: str) -> Path | None:
            candidate = (folder / src).resolve()
            # Only the gallery's own images: a src outside it is not embedded.
            if (
                candidate.suffix.lower() == ".png"
                and candidate.is_relative_to(inside)
                and candidate.is_file()
            ):
                return candidate
            return None

        if index.exists():
            entries = sample_order(read_gallery_entries(index))
            for entry in entries:
                path = own(str(entry["image"]))
                if path is not None:
                    p = entry.get(probability_column(str(entry.get("predicted_class", ""))))
                    caption = (
                        f"{entry.get('id')}: {entry.get('predicted_class')}"
                        + (f", p = {p:.2f}" if isinstance(p, int | float) else "")
                        + (f" ({entry['origin']})" if entry.get("origin") else "")
                    )
                    images.append((path, caption))
            if entries:
                order = "real spectra first, then the most probable"
            else:
                text = index.read_text(encoding="utf-8", errors="replace")
                for src in re.findall(r"""<img[^>]+src=["']([^"']+)["']""", text):
                    path = own(html.unescape(src))
                    if path is not None:
                        images.append((path, path.stem))
        if not images:
            images = [(p, p.stem) for p in sorted(folder.rglob("*.png"))]
            order = "by file name"
    if not images:
        section.missing.append("gallery/ (candidate plots)")
        return section
    images = list(dict(images).items())
    for path, caption in images[:sample]:
        section.images.append(Image(caption, data_uri(path), path.name))
    section.notes.append(
        f"{min(sample, len(images))} of {len(images)} gallery images, {order}; the whole "
        "gallery is gallery/index.html."
    )
    return section


# --- performance -------------------------------------------------------------------------


def _step_rows(steps: Any) -> list[tuple[Any, str]]:
    """(step, seconds) rows of a run's steps and a total row; [] when there are none."""
    if not isinstance(steps, list) or not steps:
        return []
    timed = [s for s in steps if isinstance(s, dict) and isinstance(s.get("seconds"), int | float)]
    rows = [(s.get("step", "?"), _fmt(s.get("seconds"))) for s in timed]
    rows.append(("all steps", _fmt(round(sum(float(s["seconds"]) for s in timed), 1))))
    return rows


def _this_run_timings(run: Path, section: Section) -> None:
    """This run's own step times (run.json), kept apart from the shipped benchmarks."""
    path = run / "run.json"
    record = _read_json(path, section.problems) if path.exists() else None
    if not isinstance(record, dict):
        return
    rows = _step_rows(record.get("steps"))
    if not rows:
        return
    section.tables.append(
        _table(
            f"This run: seconds per step, on {record.get('platform') or 'its machine'}",
            ["step", "seconds"],
            rows,
            note=f"From run.json, recorded {record.get('created', 'at the time of the run')}.",
        )
    )


def _performance_section(run: Path) -> Section:
    section = Section.empty("performance")
    _this_run_timings(run, section)
    files = sorted((run / "benchmarks").glob("*.json")) if (run / "benchmarks").is_dir() else []
    if not files:
        section.missing.append("benchmarks/*.json (benchmarks/<name>.py --json)")
        return section
    for path in files:
        payload = _read_json(path, section.problems)
        if isinstance(payload, dict) and "rows" not in payload and _step_rows(payload.get("steps")):
            section.tables.append(_shipped_demo_table(path, payload))
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
            section.problems.append(f"{path.name}: not a benchmark file (no 'rows' list)")
            continue
        rows = [r for r in payload["rows"] if isinstance(r, dict)]
        columns = list(dict.fromkeys(k for r in rows for k in r))
        machine = payload.get("machine")
        machine = machine if isinstance(machine, dict) else {}
        date = payload.get("date", "an unrecorded date")
        section.tables.append(
            _table(
                f"Shipped benchmark {payload.get('benchmark', path.stem)} ({path.name}): "
                f"measured on another machine on {date}",
                columns,
                [[_fmt(r.get(c)) for c in columns] for r in rows],
                note=(
                    f"Measured on {date} on {machine.get('cpu', '?')}, "
                    f"{machine.get('cores', '?')} cores, GPU: {machine.get('gpu') or 'none'}; "
                    "shipped with spectraldl, not measured in this run or on this machine."
                ),
            )
        )
    return section


def _shipped_demo_table(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """A shipped record of a whole demo run (``demo.json``: its steps' seconds, no rows)."""
    machine = payload.get("machine")
    machine = machine if isinstance(machine, dict) else {}
    date = payload.get("date", "an unrecorded date")
    return _table(
        f"Shipped demo run ({path.name}): seconds per step, measured on another machine on {date}",
        ["step", "seconds"],
        _step_rows(payload.get("steps")),
        note=(
            f"A whole `spectraldl demo` run measured on {date} on {machine.get('cpu', '?')}, "
            f"{machine.get('cores', '?')} cores, GPU: {machine.get('gpu') or 'none'}; "
            "shipped with spectraldl, not measured in this run or on this machine."
        ),
    )


# --- provenance --------------------------------------------------------------------------


def _provenance_section(run: Path) -> Section:
    section = Section.empty("provenance")
    path = run / "run.json"
    record = _read_json(path, section.problems) if path.exists() else None
    if record is None:
        if not path.exists():
            section.missing.append("run.json (commands, seeds, versions)")
    elif isinstance(record, dict):
        scalars = [(k, v) for k, v in record.items() if not isinstance(v, dict | list)]
        if scalars:
            section.tables.append(
                _table("The run (run.json)", ["", ""], [(k, _fmt(v)) for k, v in scalars])
            )
        for key, value in record.items():
            if isinstance(value, dict):
                section.tables.append(
                    _table(
                        f"run.json: {key}",
                        ["", ""],
                        [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()],
                    )
                )
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                columns = list(dict.fromkeys(k for v in value for k in v))
                section.tables.append(
                    _table(
                        f"run.json: {key}",
                        columns,
                        [
                            [
                                _fmt(v.get(c))
                                if not isinstance(v.get(c), dict | list)
                                else json.dumps(v.get(c))
                                for c in columns
                            ]
                            for v in value
                        ],
                    )
                )
            elif isinstance(value, list):
                section.tables.append(_table(f"run.json: {key}", [key], [[_fmt(v)] for v in value]))
    section.tables.append(
        _table("This report was made with", ["package", "version"], versions().items())
    )
    return section


# --- assembly ----------------------------------------------------------------------------


def collect_sections(
    run_dir: str | Path,
    *,
    gallery_sample: int = 12,
    vetted: Mapping[str, dict[str, Any]] | None = None,
) -> list[Section]:
    """Read a run directory (and the precision tables of ``vetted`` catalogues, by name)
    into the report's sections (in `SECTIONS` order)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"{run}: no such run directory")
    return [
        _data_section(run),
        _maps_section(run),
        _calibration_section(run),
        _training_section(run),
        _classification_section(run),
        _vetting_section(vetted, _run_models(run)),
        _gallery_section(run, gallery_sample),
        _performance_section(run),
        _provenance_section(run),
    ]


def render_html(sections: list[Section], *, run_dir: str | Path) -> str:
    """The report of ``sections`` (from `collect_sections`) as one HTML string."""
    return _TEMPLATES.get_template("report.html").render(
        run_dir=str(Path(run_dir).resolve()),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        sections=sections,
        missing=[(s.title, m) for s in sections for m in s.missing],
    )


@dataclass(frozen=True)
class WrittenReport:
    """Where the report went and which parts of the run it lacks."""

    path: Path
    missing: list[str]
    sections: list[Section]


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    gallery_sample: int = 12,
    vetted: Mapping[str, dict[str, Any]] | None = None,
) -> WrittenReport:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``), with
    the precision of the ``vetted`` catalogues (name -> precision table) when given.

    Written to a temporary file and renamed, so a reader never sees half a report; ``out``
    is held for the run (`output_lock`: one another run writes raises `OutputBusy`).
    """
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out.exists() and (not out.is_file() or out.suffix.lower() not in (".html", ".htm")):
        raise ReportError(
            f"{out}: exists and is not an HTML page; a report replaces only an earlier "
            "report: give -o a new name ending in .html"
        )
    # One run per report: two would rename each other's half-written page (`atomic_write`'s
    # temporary name is fixed), or one would fail when the other removed it.
    with output_lock(out):
        sections = collect_sections(run_dir, gallery_sample=gallery_sample, vetted=vetted)
        text = render_html(sections, run_dir=run_dir)
        with atomic_write(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return WrittenReport(
        path=out,
        missing=[f"{s.title}: {m}" for s in sections for m in s.missing],
        sections=sections,
    )
