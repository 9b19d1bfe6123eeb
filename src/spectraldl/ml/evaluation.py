"""Classification metrics, calibration (ECE, temperature scaling) and their figures.

Metrics are plain JSON-ready dicts so that ``metrics.json``, ``card.json``
and ``spectraldl evaluate --json`` share one schema::

    {"n": 1300, "accuracy": 0.98, "ece": 0.01, "log_loss": 0.05,
     "per_class": {"emission": {"precision", "recall", "f1", "support"}, ...},
     "confusion": {"classes": [...], "matrix": [[...], ...]}}   # rows true, columns predicted

`physics_baseline` classifies from the H-alpha measurements alone (profile
type and equivalent width, `spectraldl.prep.measure`), a peak finder in the manner
of Shridharan et al. (2021); `evaluate_model` reports it beside the network
on the same rows, so that one sees what the network adds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectraldl.io.dataset import Rows
from spectraldl.io.labels import CLASSES
from spectraldl.ml.data import combine_datasets, read_dataset_any
from spectraldl.ml.modelcard import TrainedModel, load_model, softmax

ECE_BINS = 15
CLASSES_CODES = {name: code for code, name in enumerate(CLASSES)}
CLASSES_NAMES = dict(enumerate(CLASSES))


def expected_calibration_error(
    proba: ArrayLike, y_true: ArrayLike, *, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error of the arg-max confidence, equal-width bins on [0, 1].

    The mean over bins of |accuracy - mean confidence|, weighted by the bin's
    share of spectra (Guo et al. 2017). 0 for a perfectly calibrated model.
    """
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if len(p) == 0:
        return math.nan
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def log_loss(proba: ArrayLike, y_true: ArrayLike) -> float:
    """Mean negative log-likelihood of the true classes (natural log)."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(p) == 0:
        return math.nan
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(logits: ArrayLike, y_true: ArrayLike) -> float:
    """The temperature T > 0 that minimises the log loss of ``softmax(logits / T)``.

    Temperature scaling (Guo et al. 2017) changes confidences, never the
    arg-max class. Fitted on the validation split; returns 1.0 for no data.
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(z) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return log_loss(softmax(z, temperature=math.exp(log_t)), y)

    result = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(result.x))


def classification_metrics(
    proba: ArrayLike, y_true: ArrayLike, classes: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, confusion, ECE and log loss.

    ``proba`` is (n, k) over ``classes``; ``y_true`` (n,) holds indices into ``classes``.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p = np.asarray(proba, dtype=np.float64).reshape(-1, len(classes))
    y = np.asarray(y_true, dtype=np.int64)
    predicted = p.argmax(axis=1)
    labels = list(range(len(classes)))
    if len(y):
        precision, recall, f1, support = precision_recall_fscore_support(
            y, predicted, labels=labels, zero_division=0
        )
        matrix = confusion_matrix(y, predicted, labels=labels)
    else:
        precision = recall = f1 = np.zeros(len(classes))
        support = np.zeros(len(classes), dtype=np.int64)
        matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    return {
        "n": len(y),
        "accuracy": float((predicted == y).mean()) if len(y) else math.nan,
        "ece": expected_calibration_error(p, y),
        "log_loss": log_loss(p, y),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": {"classes": list(classes), "matrix": matrix.astype(int).tolist()},
    }


BASELINE_RULE = (
    "double-peak: a measured double-peaked profile (in absorption or not); emission: a "
    "single-peaked emission, P Cygni or inverse P Cygni profile, or emission in absorption "
    "with a negative EW; absorption: everything else, unmeasurable lines included"
)


def physics_baseline(
    profile_type: ArrayLike, halpha_ew_aa: ArrayLike, *, classes: tuple[str, ...] | list[str]
) -> NDArray[np.int64]:
    """Class indices (into ``classes``) from the measured H-alpha line alone (`BASELINE_RULE`).

    A double peak falls back to emission when ``classes`` has no double-peak;
    ``classes`` must hold emission and absorption.
    """
    types = np.asarray(profile_type, dtype=object).astype(str)
    ew = np.asarray(halpha_ew_aa, dtype=np.float64)
    names = list(classes)
    double = np.isin(types, ["double-peak", "double-peak-in-absorption"])
    emission = np.isin(types, ["emission", "p-cygni", "inverse-p-cygni"]) | (
        (types == "emission-in-absorption") & (ew < 0)
    )
    out = np.full(types.shape, names.index("absorption"), dtype=np.int64)
    out[emission] = names.index("emission")
    out[double] = names.index("double-peak" if "double-peak" in names else "emission")
    return out


def baseline_metrics(
    meta: dict[str, np.ndarray],
    y_true: ArrayLike,
    proba: ArrayLike,
    classes: tuple[str, ...] | list[str],
) -> dict[str, Any]:
    """The physics baseline and the network side by side on the rows that were measured.

    ``meta`` holds the rows' ``profile_type``, ``halpha_ew_aa`` and
    ``halpha_flag`` (`spectraldl.io.dataset.META_COLUMNS`); rows never measured
    (``halpha_flag == "not measured"``: datasets written before the
    measurements) are left out of both.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64).reshape(-1, len(classes))
    measured = np.asarray(meta["halpha_flag"], dtype=object) != "not measured"
    out: dict[str, Any] = {
        "rule": BASELINE_RULE,
        "not_measured": int((~measured).sum()),
        "unmeasurable": int((np.asarray(meta["profile_type"])[measured] == "unmeasurable").sum()),
    }
    if "emission" not in classes or "absorption" not in classes:
        out["skipped"] = "the model's classes lack emission or absorption"
        return out
    predicted = physics_baseline(
        np.asarray(meta["profile_type"])[measured],
        np.asarray(meta["halpha_ew_aa"])[measured],
        classes=classes,
    )
    one_hot = np.eye(len(classes))[predicted] if len(predicted) else np.zeros((0, len(classes)))
    out["baseline"] = classification_metrics(one_hot, y[measured], classes)
    out["network"] = classification_metrics(p[measured], y[measured], classes)
    return out


def curves_figure(history: list[dict[str, float]]) -> Any:
    """A matplotlib figure of loss and accuracy per epoch, training and validation.

    Each epoch is a marked point (a run of one epoch is one point, which a bare line
    does not show) and the epoch axis has whole ticks only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "training"), ("val", "validation")):
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            values = [h[f"{key}_{metric}"] for h in history]
            ax.plot(epochs, values, label=label, marker="o", markersize=3)
    best = min(history, key=lambda h: h["val_loss"])["epoch"] if history else None
    for ax, name in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy")):
        if best is not None:
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label="best epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(history: list[dict[str, float]], path: str | Path) -> None:
    """Loss and accuracy per epoch, training and validation, into a PNG (`curves_figure`)."""
    import matplotlib.pyplot as plt

    fig = curves_figure(history)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusions(panels: list[tuple[str, dict[str, Any]]], path: str | Path) -> None:
    """One row-normalised confusion matrix per ``(title, metrics)`` panel, into a PNG.

    A class with no true spectra has a row of dashes: shares of 0.00 would read as a recall of 0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, m) for t, m in panels if m and m.get("n")] or panels[:1]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (title, metrics) in zip(axes[0], panels, strict=True):
        classes = metrics["confusion"]["classes"]
        counts = np.asarray(metrics["confusion"]["matrix"], dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        ax.imshow(share, cmap="Greys", vmin=0.0, vmax=1.0)
        for i in range(len(classes)):
            for j in range(len(classes)):
                colour = "white" if share[i, j] > 0.5 else "black"
                text = f"{share[i, j]:.2f}\n({int(counts[i, j])})" if rows[i, 0] else "-"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
        ax.set_xticks(range(len(classes)), classes, rotation=30)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        accuracy = metrics.get("accuracy")
        suffix = f" (n={metrics['n']}, accuracy {accuracy:.3f})" if metrics.get("n") else ""
        ax.set_title(f"{title}{suffix}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


ROW_SELECTIONS = ("heldout", "test", "real", "all")
"""Which labelled rows `evaluate_model` scores: see its docstring."""


def read_split_roles(model_dir: str | Path) -> dict[str, str]:
    """``id -> role`` (train, val, test, real) from a model directory's ``split.csv``."""
    import csv

    path = Path(model_dir) / "split.csv"
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["id"]: row["role"] for row in csv.DictReader(handle)}


def _selected_rows(
    table: Rows, in_classes: NDArray[np.bool_], roles: dict[str, str], rows: str
) -> NDArray[np.bool_]:
    """The rows of the model's classes that ``rows`` (`ROW_SELECTIONS`) picks."""
    role = np.array([roles.get(str(i), "") for i in table.ids], dtype=object)
    if rows == "heldout":
        return in_classes & ~np.isin(role, ["train", "val"])
    if rows == "test":
        return in_classes & (role == "test")
    if rows == "real":
        return in_classes & (table.meta["origin"] == "real")
    return in_classes.copy()


def _left_out(
    table: Rows, in_classes: NDArray[np.bool_], selected: NDArray[np.bool_]
) -> dict[str, Any]:
    """Labelled rows not scored, and why: unlabelled, not a model class, not selected."""
    labelled = table.labels >= 0
    foreign = table.labels[labelled & ~in_classes]
    return {
        "unlabelled": int((~labelled).sum()),
        "label_not_a_model_class": {
            CLASSES_NAMES[c]: int((foreign == c).sum()) for c in np.unique(foreign)
        },
        "not_selected": int((in_classes & ~selected).sum()),
    }


def _scores_by_origin(
    meta: dict[str, np.ndarray],
    proba: NDArray[np.float32],
    y: NDArray[np.int64],
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """``by_origin`` (synthetic and real) and ``real_by_archive`` metrics of the scored rows."""
    origin = meta["origin"]
    by_origin = {}
    for name in ("synthetic", "real"):
        mask = origin == name
        if mask.any():
            by_origin[name] = classification_metrics(proba[mask], y[mask], classes)
    out: dict[str, Any] = {"by_origin": by_origin}
    real = origin == "real"
    if real.any():
        archives = meta["archive"]
        out["real_by_archive"] = {
            str(a): classification_metrics(
                proba[real & (archives == a)], y[real & (archives == a)], classes
            )
            for a in sorted(set(archives[real]))
        }
    return out


def _baselines(
    meta: dict[str, np.ndarray],
    proba: NDArray[np.float32],
    y: NDArray[np.int64],
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """``physics_baseline`` of the scored rows (and ``physics_baseline_real`` of the real ones)."""
    picked = {name: meta[name] for name in ("profile_type", "halpha_ew_aa", "halpha_flag")}
    out = {"physics_baseline": baseline_metrics(picked, y, proba, classes)}
    real = meta["origin"] == "real"
    if real.any():
        out["physics_baseline_real"] = baseline_metrics(
            {k: v[real] for k, v in picked.items()}, y[real], proba[real], classes
        )
    return out


def evaluate_model(
    model: Any,
    datasets: list[str | Path] | tuple[str | Path, ...],
    *,
    rows: str = "heldout",
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Score a model on the labelled rows of datasets; one JSON-ready dict.

    Parameters
    ----------
    model
        A `TrainedModel` or a model directory.
    datasets
        spectraldl HDF5 datasets or published-layout CSVs; each is checked
        against the model's grid and preprocessing first (`ModelMismatch`).
    rows
        ``heldout`` (default): every labelled row the model was neither fitted
        nor validated on (its test split, real evaluation rows, other data);
        ``test``: only its test split; ``real``: only real spectra
        (``meta/origin == "real"``); ``all``: every labelled row.
    batch_size
        Spectra per forward pass.

    Returns
    -------
    dict
        `classification_metrics` of the selected rows (``accuracy``,
        ``per_class``, ``confusion``, ``ece``, ...), plus ``by_origin``
        (synthetic / real side by side), ``real_by_archive``,
        ``novel_fraction``, the row counts left out and why, the model id, and
        ``physics_baseline`` (``physics_baseline_real`` for the real rows):
        `baseline_metrics`, the measurement-only classifier beside the network.

    Raises
    ------
    ValueError
        ``rows`` is not one of `ROW_SELECTIONS`.
    ModelMismatch
        A dataset was preprocessed otherwise than the model expects.
    """
    if rows not in ROW_SELECTIONS:
        raise ValueError(f"rows must be one of {', '.join(ROW_SELECTIONS)}, got {rows!r}")
    if not isinstance(model, TrainedModel):
        model = load_model(model)
    loaded = [read_dataset_any(p) for p in datasets]
    for dataset in loaded:
        model.check_compatible(dataset)
    table = combine_datasets(loaded).rows
    class_codes = [CLASSES_CODES[c] for c in model.classes]
    in_classes = np.isin(table.labels, class_codes)
    roles = read_split_roles(model.path) if model.path else {}
    selected = _selected_rows(table, in_classes, roles, rows)
    index = np.flatnonzero(selected)
    logits, features = model.predict_logits_and_features(table.X[index], batch_size=batch_size)
    proba = model.proba_from_logits(logits)
    lookup = {code: i for i, code in enumerate(class_codes)}
    y = np.array([lookup[int(c)] for c in table.labels[index]], dtype=np.int64)
    meta = {name: values[index] for name, values in table.meta.items()}
    result: dict[str, Any] = {
        "model": model.path,
        "model_id": model.model_id,
        "datasets": [str(p) for p in datasets],
        "rows": rows,
        **classification_metrics(proba, y, model.classes),
        "left_out": _left_out(table, in_classes, selected),
        **_scores_by_origin(meta, proba, y, model.classes),
    }
    if model.novelty is not None and len(index):
        result["novel_fraction"] = float(model.novelty.is_novel(features).mean())
    result.update(_baselines(meta, proba, y, model.classes))
    return result
