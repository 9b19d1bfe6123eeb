"""Maps of the data space: PCA and t-SNE of one or more datasets, as paper-ready figures.

The thesis' chapter "Dimensionality reduction", redone on any datasets:

* PCA of each archive alone (the Ondřejov set coloured by label: absorption
  on one side, emission on the other, double-peak in between);
* PCA of all datasets in one projection (fitted on their union), with a
  number for the question the figure asks, whether the domain adaptation
  brings the archives together: how well a classifier tells the archives
  apart from their PCA coordinates (cross-validated ROC AUC: 0.5 when they
  are indistinguishable, 1 when fully separable) and the distance between
  their centroids in units of their spread;
* t-SNE after PCA to 30 dimensions, perplexity 40 (as the thesis and van der
  Maaten & Hinton 2008), all datasets in one map.

Every map is written as PNG and SVG (labelled axes, legend, the Okabe-Ito
colour-blind-safe palette; points rasterised inside the SVG so that 20 000
of them stay light) and its coordinates as CSV with columns
``id, archive, label, x, y``. ``summary.json`` holds the counts, explained
variance, separation numbers and timings.

Rows are grouped by their ``meta/archive``; rows whose ``meta/origin`` is
``synthetic`` form their own group (``synthetic-<archive>`` or
``synthetic``), since whether synthetic training spectra look like real ones
is the same question as for the two archives.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from spectraldl.core.atomic import atomic_write
from spectraldl.core.paths import first_repeated
from spectraldl.io.dataset import dataset_info, iter_rows
from spectraldl.io.labels import CLASSES, NO_LABEL
from spectraldl.io.predictions import PredictionsError, iter_predictions
from spectraldl.jobs.files import output_lock
from spectraldl.prep.preprocess import PreprocessConfig

Method = Literal["pca", "tsne", "both"]
ColourBy = Literal["label", "archive", "class"]
TsneBackend = Literal["opentsne", "sklearn"]

OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
"""Okabe & Ito (2008) palette, distinguishable with the common colour-vision deficiencies."""

UNLABELLED = "unlabelled"
NO_PREDICTION = "no prediction"
_GREY = "#BBBBBB"
CATEGORY_COLOURS: dict[str, str] = {
    "emission": "#D55E00",
    "absorption": "#0072B2",
    "double-peak": "#009E73",
    "unknown": "#CC79A7",
    "noise": "#E69F00",
    "ondrejov": "#E69F00",
    "lamost": "#0072B2",
    UNLABELLED: _GREY,
    NO_PREDICTION: _GREY,
}
"""Fixed colours, so that a class or an archive has the same colour in every figure."""

_MARKERS = ("o", "^", "s", "D", "v", "P")
TSNE_PCA_DIMS = 30
TSNE_PERPLEXITY = 40.0
TSNE_MIN_ROWS = 5
"""Fewer spectra leave t-SNE too few neighbours (perplexity at most a third of them)."""
DEFAULT_TSNE_BACKEND: TsneBackend = "opentsne"
"""The faster at equal quality on 2 cores (``benchmarks/explore.py``)."""


class ExploreError(ValueError):
    """Inputs that cannot be mapped (no rows, a predictions table without ids)."""


def save_figure(fig: Any, path: str | Path, *, dpi: int = 200) -> list[Path]:
    """Save a matplotlib figure as PNG and SVG with ``path``'s stem; return both paths.

    ``path`` may end in .png, .svg or nothing. The SVG carries no date, so
    the same figure gives the same file. Each file is written through
    `atomic_write`: a run killed while saving leaves the earlier file whole.
    """
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    with atomic_write(png, keep_suffix=True) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    with atomic_write(svg, keep_suffix=True) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None, "Creator": None})
    return [png, svg]


@dataclass
class MapInput:
    """The rows of one or more datasets, ready to map.

    Attributes
    ----------
    X
        float32 (n, grid_n), preprocessed flux.
    ids
        object (n,) of str.
    group
        object (n,): archive, or ``synthetic-<archive>`` for synthetic rows.
    label
        object (n,): class name, or ``unlabelled``.
    dataset
        object (n,): path of the dataset each row came from.
    total_rows
        Rows per dataset path before any subsampling.
    """

    X: NDArray[np.float32]
    ids: NDArray[np.object_]
    group: NDArray[np.object_]
    label: NDArray[np.object_]
    dataset: NDArray[np.object_]
    total_rows: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: NDArray[np.integer] | NDArray[np.bool_]) -> MapInput:
        """The rows selected by an index array or boolean mask."""
        return MapInput(
            X=self.X[index],
            ids=self.ids[index],
            group=self.group[index],
            label=self.label[index],
            dataset=self.dataset[index],
            total_rows=dict(self.total_rows),
        )

    @property
    def groups(self) -> list[str]:
        """The groups present, largest first."""
        names, counts = np.unique(self.group.astype(str), return_counts=True)
        return [str(n) for n in names[np.argsort(-counts, kind="stable")]]


def _group_names(archive: np.ndarray, origin: np.ndarray) -> np.ndarray:
    out = np.array([a or "unknown" for a in archive.astype(str)], dtype=object)
    synthetic = origin.astype(str) == "synthetic"
    out[synthetic] = [
        f"synthetic-{a}" if a else "synthetic" for a in archive[synthetic].astype(str)
    ]
    return out


def _refuse_repeated(paths: Sequence[str | Path]) -> None:
    """Raise `ExploreError` for a dataset named twice: each of its spectra would be mapped
    (and counted) twice."""
    repeated = first_repeated(paths)
    if repeated is not None:
        raise ExploreError(
            f"{repeated[0]}: given twice (also as {repeated[1]}); each of its spectra would be "
            "mapped twice: name each dataset once"
        )


def load_map_input(
    paths: Sequence[str | Path], *, max_rows_per_dataset: int | None = 50_000, seed: int = 0
) -> MapInput:
    """Read datasets into one `MapInput`, each cut to a random subset when larger.

    Rows are streamed (`spectraldl.io.dataset.iter_rows`), so a dataset of
    millions of spectra needs memory only for the rows kept.

    Raises
    ------
    spectraldl.io.dataset.DatasetError
        For a missing file or one that is not a dataset (names the file).
    ExploreError
        When all datasets together hold no rows, their grids differ, or one is named twice.
    """
    _refuse_repeated(paths)
    rng = np.random.default_rng(seed)
    blocks: list[MapInput] = []
    totals: dict[str, int] = {}
    first: tuple[Path, str] | None = None
    for raw in paths:
        path = Path(raw)
        info = dataset_info(path)
        totals[str(path)] = info.n_rows
        first = first or (path, _grid(info.config))
        if _grid(info.config) != first[1]:
            raise ExploreError(
                f"{path}: grid {_grid(info.config)}, {first[0]} grid {first[1]}: "
                "a map compares the same wavelengths only (ingest them with one grid)"
            )
        keep: NDArray[np.bool_] | None = None
        if max_rows_per_dataset is not None and info.n_rows > max_rows_per_dataset:
            keep = np.zeros(info.n_rows, dtype=bool)
            keep[rng.choice(info.n_rows, size=max_rows_per_dataset, replace=False)] = True
        start = 0
        for rows in iter_rows(path):
            stop = start + len(rows)
            if keep is not None:
                rows = rows.take(keep[start:stop])
            start = stop
            labels = np.array(
                [CLASSES[c] if c != NO_LABEL else UNLABELLED for c in rows.labels], dtype=object
            )
            blocks.append(
                MapInput(
                    X=rows.X,
                    ids=rows.ids,
                    group=_group_names(rows.meta["archive"], rows.meta["origin"]),
                    label=labels,
                    dataset=np.full(len(rows), str(path), dtype=object),
                )
            )
    if not blocks or sum(len(b) for b in blocks) == 0:
        raise ExploreError("the datasets hold no rows: " + ", ".join(str(p) for p in paths))
    return MapInput(
        X=np.concatenate([b.X for b in blocks]),
        ids=np.concatenate([b.ids for b in blocks]),
        group=np.concatenate([b.group for b in blocks]),
        label=np.concatenate([b.label for b in blocks]),
        dataset=np.concatenate([b.dataset for b in blocks]),
        total_rows=totals,
    )


def _grid(config: PreprocessConfig) -> str:
    """A dataset's wavelength grid in words: datasets on other grids cannot share a map."""
    return f"{config.grid_start_aa:g}-{config.grid_stop_aa:g} Å x {config.grid_n}"


def read_predicted_classes(path: str | Path) -> dict[str, str]:
    """``id -> predicted_class`` from a predictions table (.parquet, .fits, .csv or .h5).

    Raises `ExploreError` naming the file when it cannot be read or lacks the columns.
    """
    out: dict[str, str] = {}
    try:
        for block in iter_predictions(path, columns=["id", "predicted_class"]):
            out.update(
                zip(block["id"].astype(str), block["predicted_class"].astype(str), strict=True)
            )
    except (PredictionsError, KeyError, ValueError) as exc:
        raise ExploreError(
            f"{path}: cannot read the columns 'id' and 'predicted_class' ({exc})"
        ) from None
    return out


def pca_coordinates(
    X: NDArray[np.floating], *, n_components: int = 2, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Project rows onto their first principal components.

    Returns the coordinates, float64 (n, n_components), and the fraction of
    variance each component explains.
    """
    from sklearn.decomposition import PCA

    n_components = min(n_components, X.shape[0], X.shape[1])
    pca = PCA(n_components=n_components, random_state=seed)
    coords = pca.fit_transform(np.asarray(X, dtype=np.float64))
    return coords, pca.explained_variance_ratio_


@dataclass(frozen=True)
class TsneRun:
    """A t-SNE map and how it was made."""

    coords: NDArray[np.float64]
    backend: str
    perplexity: float
    pca_dims: int
    seconds: float


def tsne_coordinates(
    X: NDArray[np.floating],
    *,
    pca_dims: int = TSNE_PCA_DIMS,
    perplexity: float = TSNE_PERPLEXITY,
    backend: TsneBackend = DEFAULT_TSNE_BACKEND,
    n_jobs: int = 2,
    seed: int = 0,
) -> TsneRun:
    """t-SNE of ``X`` after PCA to ``pca_dims`` dimensions.

    The perplexity is lowered to ``(n - 1) / 3`` for small ``n`` (t-SNE needs
    three times the perplexity in neighbours); the value used is returned.
    ``backend`` is ``opentsne`` (FFT-accelerated, Poličar et al. 2019) or
    ``sklearn`` (Barnes-Hut), both initialised from PCA. ``n_jobs`` caps every
    thread pool (OpenMP, BLAS) for the call: scikit-learn's t-SNE would
    otherwise start one OpenMP thread per core whatever ``n_jobs`` says.
    """
    import openTSNE  # noqa: F401  (load the OpenMP runtimes before limiting them)
    import sklearn.manifold  # noqa: F401
    from threadpoolctl import threadpool_limits

    n = X.shape[0]
    if n < TSNE_MIN_ROWS:
        raise ExploreError(f"t-SNE needs at least {TSNE_MIN_ROWS} spectra, got {n}")
    with threadpool_limits(limits=n_jobs):
        return _tsne(
            X, pca_dims=pca_dims, perplexity=perplexity, backend=backend, n_jobs=n_jobs, seed=seed
        )


def _tsne(
    X: NDArray[np.floating],
    *,
    pca_dims: int,
    perplexity: float,
    backend: TsneBackend,
    n_jobs: int,
    seed: int,
) -> TsneRun:
    n = X.shape[0]
    started = time.perf_counter()
    dims = max(2, min(pca_dims, n - 1, X.shape[1]))
    reduced, _ = pca_coordinates(X, n_components=dims, seed=seed)
    used = float(min(perplexity, (n - 1) / 3.0))
    if backend == "opentsne":
        from openTSNE import TSNE as OpenTSNE

        embedding = OpenTSNE(
            perplexity=used, initialization="pca", n_jobs=n_jobs, random_state=seed
        ).fit(reduced)
        coords = np.asarray(embedding, dtype=np.float64)
    elif backend == "sklearn":
        from sklearn.manifold import TSNE

        coords = TSNE(
            perplexity=used, init="pca", learning_rate="auto", n_jobs=n_jobs, random_state=seed
        ).fit_transform(reduced)
    else:
        raise ValueError(f"unknown t-SNE backend {backend!r}; use 'opentsne' or 'sklearn'")
    return TsneRun(
        coords=coords,
        backend=backend,
        perplexity=used,
        pca_dims=dims,
        seconds=time.perf_counter() - started,
    )


def archive_separation(
    X: NDArray[np.floating], group: NDArray[np.object_], *, n_pca: int = 10, seed: int = 0
) -> list[dict[str, Any]]:
    """How distinct each pair of groups is in PCA space: ROC AUC and centroid distance.

    For each pair of groups: a gradient-boosted classifier (scikit-learn's
    ``HistGradientBoostingClassifier``; no class weights, which AUC, a ranking
    measure, does not need) on the first ``n_pca`` principal
    components of the pair, 5-fold stratified cross-validated ROC AUC (0.5:
    indistinguishable, 1: separable); a logistic regression on the first two
    components (what the 2-D figure shows); and the distance between the
    centroids over the root-mean-square spread of the points around them.
    Pairs with fewer than 10 rows in a group get ``auc: null`` and a reason.
    """
    import sklearn.ensemble  # noqa: F401  (load its OpenMP runtime before limiting it)
    from threadpoolctl import threadpool_limits

    # One thread: the boosted trees' OpenMP threads spin-wait, and on a busy machine
    # two of them took 23 s for what one does in 0.3 s; the data here are small.
    with threadpool_limits(limits=1):
        return _separation(X, group, n_pca=n_pca, seed=seed)


def _separation(
    X: NDArray[np.floating], group: NDArray[np.object_], *, n_pca: int, seed: int
) -> list[dict[str, Any]]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    names = sorted({str(g) for g in group})
    results: list[dict[str, Any]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            in_pair = (group == a) | (group == b)
            y = (group[in_pair] == b).astype(int)
            counts = {a: int((y == 0).sum()), b: int((y == 1).sum())}
            entry: dict[str, Any] = {"groups": [a, b], "counts": counts}
            coords, _ = pca_coordinates(X[in_pair], n_components=n_pca, seed=seed)
            centre_a, centre_b = coords[y == 0].mean(axis=0), coords[y == 1].mean(axis=0)
            spread = math.sqrt(
                0.5
                * (
                    ((coords[y == 0] - centre_a) ** 2).sum(axis=1).mean()
                    + ((coords[y == 1] - centre_b) ** 2).sum(axis=1).mean()
                )
            )
            entry["centroid_distance"] = (
                float(np.linalg.norm(centre_a - centre_b) / spread) if spread > 0 else None
            )
            if min(counts.values()) < 10:
                entry.update(
                    auc=None,
                    auc_pca2_linear=None,
                    reason="fewer than 10 spectra in a group: no cross-validation",
                )
                results.append(entry)
                continue
            folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
            boosted = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
            p = cross_val_predict(boosted, coords, y, cv=folds, method="predict_proba")[:, 1]
            linear = LogisticRegression(max_iter=1000)
            p2 = cross_val_predict(linear, coords[:, :2], y, cv=folds, method="predict_proba")[:, 1]
            entry["auc"] = float(roc_auc_score(y, p))
            entry["auc_pca2_linear"] = float(roc_auc_score(y, p2))
            entry["n_pca"] = int(coords.shape[1])
            results.append(entry)
    return results


def categories(
    data: MapInput, colour_by: ColourBy, *, predicted: dict[str, str] | None = None
) -> NDArray[np.object_]:
    """The category each row is coloured by: its label, group or predicted class."""
    if colour_by == "label":
        return data.label
    if colour_by == "archive":
        return data.group
    if colour_by == "class":
        if predicted is None:
            raise ExploreError("--color-by class needs a predictions table (--predictions)")
        return np.array([predicted.get(str(i), NO_PREDICTION) for i in data.ids], dtype=object)
    raise ValueError(f"unknown colour-by {colour_by!r}")


def _colour_map(names: Sequence[str]) -> dict[str, str]:
    spare = [c for c in OKABE_ITO if c not in {CATEGORY_COLOURS.get(n) for n in names}]
    out: dict[str, str] = {}
    for name in names:
        out[name] = CATEGORY_COLOURS.get(name) or (spare.pop(0) if spare else "#777777")
    return out


def _pretty(name: str) -> str:
    return {"ondrejov": "Ondřejov", "lamost": "LAMOST"}.get(name, name)


def plot_map(
    coords: NDArray[np.floating],
    category: NDArray[np.object_],
    group: NDArray[np.object_],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    legend_title: str,
) -> list[Path]:
    """Scatter plot of a 2-D map (`map_figure`) written as PNG and SVG."""
    fig = map_figure(
        coords,
        category,
        group,
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        legend_title=legend_title,
    )
    return save_figure(fig, path)


def map_figure(
    coords: NDArray[np.floating],
    category: NDArray[np.object_],
    group: NDArray[np.object_],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    legend_title: str,
) -> Any:
    """The figure of a 2-D map: colour per category, marker per group.

    Large categories are drawn first so that rare classes stay visible;
    unlabelled points are grey and drawn underneath.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n = len(coords)
    size = float(np.clip(25.0 / math.sqrt(max(n, 1) / 100.0), 1.5, 25.0))
    alpha = 0.9 if n < 2000 else 0.6
    cats, counts = np.unique(category.astype(str), return_counts=True)
    order = sorted(
        zip(cats, counts, strict=True),
        key=lambda c: (c[0] not in (UNLABELLED, NO_PREDICTION), -c[1]),
    )
    colours = _colour_map([c for c, _ in order])
    groups = sorted({str(g) for g in group}, key=lambda g: -int((group == g).sum()))
    markers = {g: _MARKERS[k % len(_MARKERS)] for k, g in enumerate(groups)}
    fig = Figure(figsize=(8.4, 5.2), layout="constrained")
    ax = fig.subplots()
    handles = []
    for name, _count in order:
        for g in groups:
            sel = (category == name) & (group == g)
            if not sel.any():
                continue
            ax.scatter(
                coords[sel, 0],
                coords[sel, 1],
                s=size,
                c=colours[name],
                marker=markers[g],
                alpha=alpha,
                linewidths=0,
                rasterized=True,
            )
            label = _pretty(name) if len(groups) == 1 or name == g else f"{name} ({_pretty(g)})"
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker=markers[g],
                    color=colours[name],
                    markersize=6,
                    label=f"{label}: {int(sel.sum())}",
                )
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # A long title (several datasets) wraps instead of running off the figure, and
    # the legend sits outside the axes, where it cannot cover any point.
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10)
    fig.legend(
        handles=handles,
        title=legend_title,
        fontsize=8,
        title_fontsize=8,
        loc="outside right upper",
        frameon=False,
    )
    return fig


def write_coordinates(path: str | Path, data: MapInput, coords: NDArray[np.floating]) -> Path:
    """CSV with columns ``id, archive, label, x, y`` (archive: the row's group), written
    through `atomic_write`."""
    import pandas as pd

    path = Path(path)
    frame = pd.DataFrame(
        {
            "id": data.ids.astype(str),
            "archive": data.group.astype(str),
            "label": data.label.astype(str),
            "x": coords[:, 0],
            "y": coords[:, 1],
        }
    )
    with atomic_write(path, keep_suffix=True) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return path


def balanced_subset(group: NDArray[np.object_], limit: int, *, seed: int = 0) -> NDArray[np.intp]:
    """Indices of at most ``limit`` rows, shared as evenly as possible between groups.

    A group smaller than its share gives the rest to the others, so that a few
    thousand Ondřejov spectra are not drowned by millions of LAMOST ones.
    """
    rng = np.random.default_rng(seed)
    n = len(group)
    if n <= limit:
        return np.arange(n)
    members = {g: np.flatnonzero(group == g) for g in sorted({str(x) for x in group})}
    quota = dict.fromkeys(members, 0)
    left = limit
    open_groups = sorted(members, key=lambda g: len(members[g]))
    while left > 0 and open_groups:
        share = max(left // len(open_groups), 1)
        for g in list(open_groups):
            take = min(share, len(members[g]) - quota[g], left)
            quota[g] += take
            left -= take
            if quota[g] == len(members[g]):
                open_groups.remove(g)
            if left == 0:
                break
    picked = [rng.choice(members[g], size=quota[g], replace=False) for g in members if quota[g]]
    return np.sort(np.concatenate(picked))


@dataclass
class ExploreResult:
    """What `explore` wrote and measured."""

    out_dir: Path
    files: list[Path]
    summary: dict[str, Any]


def explore(
    datasets: Sequence[str | Path],
    out_dir: str | Path,
    *,
    method: Method = "both",
    colour_by: ColourBy = "label",
    predictions: str | Path | None = None,
    max_rows_per_dataset: int | None = 50_000,
    tsne_max_points: int = 20_000,
    tsne_backend: TsneBackend = DEFAULT_TSNE_BACKEND,
    perplexity: float = TSNE_PERPLEXITY,
    n_jobs: int = 2,
    seed: int = 0,
) -> ExploreResult:
    """Write PCA and/or t-SNE maps of ``datasets`` into ``out_dir``.

    Parameters
    ----------
    datasets
        spectraldl HDF5 datasets (any number, any archives; same grid).
    out_dir
        Created if missing, once the inputs are read; held for the run (`output_lock`:
        another run's raises `OutputBusy`). Receives ``pca.{png,svg,csv}``, for several groups
        also ``pca-<group>.{png,svg,csv}`` (each group's own PCA), ``tsne.*``
        and ``summary.json``.
    method
        ``pca``, ``tsne`` or ``both``.
    colour_by
        ``label`` (class labels of the datasets), ``archive`` (group) or
        ``class`` (predicted class from ``predictions``, joined on id).
    predictions
        Predictions table (.parquet, .csv, .fits) with ``id`` and
        ``predicted_class``; needed for ``colour_by="class"``.
    max_rows_per_dataset
        Random subset of each larger dataset (None: all rows).
    tsne_max_points
        t-SNE runs on at most this many rows, shared evenly between groups.
    tsne_backend, perplexity, n_jobs, seed
        t-SNE settings; the same seed gives the same maps.
    """
    out = Path(out_dir)
    # One run per folder: two would rename each other's half-written figures (`atomic_write`'s
    # temporary names are fixed) and leave maps of one beside summary.json of the other.
    with output_lock(out):
        predicted = read_predicted_classes(predictions) if predictions is not None else None
        data = load_map_input(datasets, max_rows_per_dataset=max_rows_per_dataset, seed=seed)
        _check_mappable(data, method, tsne_max_points)
        out.mkdir(exist_ok=True)  # after the inputs are read: a refused one leaves no folder
        maps = _MapWriter(
            out=out,
            data=data,
            colours=categories(data, colour_by, predicted=predicted),
            legend_title={"label": "label", "archive": "archive", "class": "predicted class"}[
                colour_by
            ],
            seed=seed,
        )
        summary = _input_summary(data, colour_by, seed, predicted, predictions)
        if method in ("pca", "both"):
            summary["pca"] = maps.pca()
        if method in ("tsne", "both"):
            summary["tsne"] = maps.tsne(
                max_points=tsne_max_points,
                perplexity=perplexity,
                backend=tsne_backend,
                n_jobs=n_jobs,
            )
        files = maps.files
        summary["files"] = sorted(p.name for p in files)
        summary_path = out / "summary.json"
        with atomic_write(summary_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        files.append(summary_path)
        _remove_stale_maps(out, files)
    return ExploreResult(out_dir=out, files=files, summary=summary)


def _check_mappable(data: MapInput, method: Method, tsne_max_points: int) -> None:
    """Refuse, before any file is written, what the maps asked for cannot show: a refusal
    midway would leave this run's PCA beside an earlier run's t-SNE and summary.json."""
    if len(data) < 2:
        raise ExploreError(f"a map needs at least 2 spectra, the datasets give {len(data)}")
    mapped = min(len(data), tsne_max_points)
    if method != "pca" and mapped < TSNE_MIN_ROWS:
        raise ExploreError(
            f"t-SNE needs at least {TSNE_MIN_ROWS} spectra, it would map {mapped}: "
            "ask for the PCA map only (--method pca)"
        )
    if not _varies(data.X):
        raise ExploreError(
            f"all {len(data)} spectra are identical: their map would be one point "
            "(PCA explains no variance, t-SNE has no neighbours to tell apart)"
        )


def _varies(X: NDArray[np.floating]) -> bool:
    """Whether the rows of ``X`` are not all the same (PCA of equal rows divides by zero)."""
    return bool(np.ptp(X, axis=0).any()) if len(X) else False


_MAP_FILE = re.compile(r"(pca|pca-.+|tsne)\.(png|svg|csv)")
"""The names of the maps `explore` writes (`_remove_stale_maps` removes earlier runs' ones)."""


def _remove_stale_maps(out: Path, written: Sequence[Path]) -> None:
    """Remove the maps of an earlier run in ``out`` that this run did not draw again.

    Left there (a t-SNE map when only PCA was asked, the per-archive maps of other
    data), they would be read (by `report`, by people) as this run's maps beside a
    summary.json that does not describe them. Files of other names are kept.
    """
    keep = {p.name for p in written}
    for path in out.iterdir():
        if path.name not in keep and _MAP_FILE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def _input_summary(
    data: MapInput,
    colour_by: ColourBy,
    seed: int,
    predicted: dict[str, str] | None,
    predictions: str | Path | None,
) -> dict[str, Any]:
    """The summary's account of what was mapped: rows per dataset, group and label."""
    summary: dict[str, Any] = {
        "datasets": {p: {"rows": n} for p, n in data.total_rows.items()},
        "rows_mapped": len(data),
        "groups": {g: int((data.group == g).sum()) for g in data.groups},
        "labels": {
            str(k): int(v)
            for k, v in zip(*np.unique(data.label.astype(str), return_counts=True), strict=True)
        },
        "colour_by": colour_by,
        "seed": seed,
    }
    if predicted is not None:
        summary["predictions"] = {
            "path": str(predictions),
            "matched": int(sum(str(i) in predicted for i in data.ids)),
        }
    return summary


@dataclass
class _MapWriter:
    """Draws the maps of one `explore` run into its folder and keeps the files written."""

    out: Path
    data: MapInput
    colours: NDArray[np.object_]
    legend_title: str
    seed: int
    files: list[Path] = field(default_factory=list)

    @property
    def names(self) -> str:
        """The mapped groups for a title (``a + b``)."""
        return " + ".join(_pretty(g) for g in self.data.groups)

    def pca_map(
        self, part: MapInput, category: NDArray[np.object_], stem: str, name: str
    ) -> dict[str, Any]:
        """PCA of ``part`` as figure and CSV; returns its summary entry."""
        coords, ratio = pca_coordinates(part.X, n_components=2, seed=self.seed)
        self.files.extend(
            plot_map(
                coords,
                category,
                part.group,
                self.out / f"{stem}.png",
                title=f"PCA of {name} ({len(part)} spectra)",
                xlabel=f"PC 1 ({100 * ratio[0]:.1f} % of variance)",
                ylabel=f"PC 2 ({100 * ratio[1]:.1f} % of variance)",
                legend_title=self.legend_title,
            )
        )
        self.files.append(write_coordinates(self.out / f"{stem}.csv", part, coords))
        return {"explained_variance_ratio": [round(float(r), 5) for r in ratio]}

    def pca(self) -> dict[str, Any]:
        """PCA of all rows and, for several groups, their separation and each group's own PCA."""
        data = self.data
        entry = self.pca_map(data, self.colours, "pca", self.names)
        if len(data.groups) > 1:
            entry["separation"] = archive_separation(data.X, data.group, seed=self.seed)
            for g in data.groups:
                in_group = data.group == g
                if in_group.sum() < 3 or not _varies(data.X[in_group]):
                    continue
                entry.setdefault("per_group", {})[g] = self.pca_map(
                    data.take(in_group), self.colours[in_group], f"pca-{g}", _pretty(g)
                )
        return entry

    def tsne(
        self, *, max_points: int, perplexity: float, backend: TsneBackend, n_jobs: int
    ) -> dict[str, Any]:
        """t-SNE of a subset shared evenly between groups; returns its summary entry."""
        index = balanced_subset(self.data.group, max_points, seed=self.seed)
        part = self.data.take(index)
        run = tsne_coordinates(
            part.X, perplexity=perplexity, backend=backend, n_jobs=n_jobs, seed=self.seed
        )
        self.files += plot_map(
            run.coords,
            self.colours[index],
            part.group,
            self.out / "tsne.png",
            title=f"t-SNE of {self.names} ({len(part)} spectra)",
            xlabel="t-SNE 1",
            ylabel="t-SNE 2",
            legend_title=self.legend_title,
        )
        self.files.append(write_coordinates(self.out / "tsne.csv", part, run.coords))
        return {
            "rows": len(part),
            "groups": {g: int((part.group == g).sum()) for g in part.groups},
            "backend": run.backend,
            "perplexity": run.perplexity,
            "pca_dims": run.pca_dims,
            "seconds": round(run.seconds, 2),
            "n_jobs": n_jobs,
        }
