"""The grid view's order of similar candidates ("small multiples"), and its pages.

Every catalogue row with a stored spectrum gets a ``similarity_rank``: the
rows' 140-point preprocessed vectors (what the network sees) are reduced by
PCA to `PCA_COMPONENTS` scores and clustered by k-means on them
(`n_clusters`: about sqrt(n / 2), at most `MAX_CLUSTERS`); the clusters are
chained from the one with the lowest first-PC score to the nearest
unvisited one each time, and the members of a cluster follow each other by
their first-PC score. Both steps are seeded, so everyone sees the same order.
Rows without a stored spectrum follow, in the table's order. The ranks are
stored once per catalogue and recomputed only when the number of its rows with
a stored spectrum changes (`ensure_order`); an index on (catalogue, rank, class)
makes a page of the grid an index scan that stops after the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from spectraldl.prep.preprocess import HALPHA_VACUUM_AA
from spectraldl.web import store
from spectraldl.web.models import Catalogue, Prediction, SpectrumRow, User

PCA_COMPONENTS = 10
"""Principal components the vectors are reduced to before clustering."""

MAX_CLUSTERS = 100
"""Most k-means clusters of one catalogue."""

RANDOM_STATE = 0
"""Seed of the PCA and of k-means (a fixed order for everyone)."""

GRID_SIZE, GRID_MIN, GRID_MAX = 48, 24, 48
"""Candidates per grid page: default, least and most."""


def n_clusters(n: int) -> int:
    """The k-means clusters for ``n`` spectra: round(sqrt(n / 2)), 1 to `MAX_CLUSTERS`."""
    return int(min(MAX_CLUSTERS, max(1, round(math.sqrt(n / 2)))))


def cluster_path(centres: np.ndarray) -> list[int]:
    """The clusters in order: from the lowest first-PC centre, each time the nearest unvisited."""
    left = list(range(len(centres)))
    path = [left.pop(int(np.argmin(centres[:, 0])))]
    while left:
        distances = np.linalg.norm(centres[left] - centres[path[-1]], axis=1)
        path.append(left.pop(int(np.argmin(distances))))
    return path


def similarity_order(vectors: np.ndarray, *, seed: int = RANDOM_STATE) -> np.ndarray:
    """Indices of the rows of ``vectors`` (n spectra x points) so that similar ones sit
    together: PCA scores, k-means clusters chained by `cluster_path`, first PC within."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    n = len(vectors)
    if n < 3:
        return np.arange(n)
    data = np.nan_to_num(np.asarray(vectors, dtype=np.float64), posinf=0.0, neginf=0.0)
    components = min(PCA_COMPONENTS, n - 1, data.shape[1])
    scores = PCA(n_components=components, random_state=seed).fit_transform(data)
    k = min(n_clusters(n), len(np.unique(scores.round(9), axis=0)))
    kmeans = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(scores)
    position = np.empty(k, dtype=np.int64)
    position[cluster_path(kmeans.cluster_centers_)] = np.arange(k)
    return np.lexsort((np.arange(n), scores[:, 0], position[kmeans.labels_]))


def _with_spectrum(catalogue_id: int) -> Any:
    return select(func.count(Prediction.id)).where(
        Prediction.catalogue_id == catalogue_id, Prediction.spectrum_id.is_not(None)
    )


def ensure_order(session: Session, catalogue_id: int) -> bool:
    """Store the catalogue's similarity ranks unless they are current; True when computed.

    Vectors of another length than most (another grid) are ranked after the rest, and
    rows without a stored spectrum after those, in the table's order.
    """
    catalogue = session.get(Catalogue, catalogue_id)
    if catalogue is None:
        raise store.NotFound(f"no catalogue with id {catalogue_id}")
    n = int(session.scalar(_with_spectrum(catalogue_id)) or 0)
    if catalogue.similarity_spectra == n:
        return False
    rows = session.execute(
        select(Prediction.id, SpectrumRow.x)
        .join(SpectrumRow, SpectrumRow.id == Prediction.spectrum_id)
        .where(Prediction.catalogue_id == catalogue_id)
        .order_by(Prediction.id)
    ).all()
    lengths = [len(x) for _, x in rows]
    common = max(set(lengths), key=lengths.count) if lengths else 0
    same = [(pid, x) for (pid, x), size in zip(rows, lengths, strict=True) if size == common]
    other = [pid for (pid, _), size in zip(rows, lengths, strict=True) if size != common]
    vectors = np.array([np.frombuffer(x, dtype="<f4") for _, x in same] or np.zeros((0, 1)))
    without = session.scalars(
        select(Prediction.id)
        .where(Prediction.catalogue_id == catalogue_id, Prediction.spectrum_id.is_(None))
        .order_by(Prediction.row_index, Prediction.id)
    )
    ordered = [same[i][0] for i in similarity_order(vectors)] + other + list(without)
    if ordered:
        session.execute(
            update(Prediction),
            [{"id": pid, "similarity_rank": rank} for rank, pid in enumerate(ordered)],
        )
    catalogue.similarity_spectra = n
    session.commit()
    return True


def _tile(row: Any) -> dict[str, Any]:
    """One grid tile: the candidate's class, probability, EW and vector (None without one)."""
    measured = store.measurement_of(row.row)
    vector = None
    if row.x is not None:
        values = np.round(np.frombuffer(row.x, dtype="<f4").astype(np.float64), 3)
        vector = {
            "start_aa": row.grid_start_aa,
            "stop_aa": row.grid_stop_aa,
            "x": [v if math.isfinite(v) else None for v in values.tolist()],
        }
    ew = measured.get("halpha_ew_aa") if measured else None
    probability = row.probability
    return {
        "id": row.id,
        "ident": row.ident,
        "object": row.object,
        "predicted_class": row.predicted_class,
        "probability": probability if probability is None or math.isfinite(probability) else None,
        "ew_aa": ew if isinstance(ew, int | float) and math.isfinite(ew) else None,
        "rank": row.similarity_rank,
        "vector": vector,
    }


def grid_page(
    session: Session,
    *,
    user: User,
    catalogue_id: int,
    size: int = GRID_SIZE,
    classes: Sequence[str] | None = store.CANDIDATE_CLASSES,
    exclude: Sequence[int] = (),
) -> dict[str, Any]:
    """The next page of the grid: up to ``size`` candidates not vetted by ``user``, in
    similarity order (computed first when needed), and how many remain."""
    ensure_order(session, catalogue_id)
    ids, remaining = store.vet_queue(
        session,
        user=user,
        catalogue_id=catalogue_id,
        order="similarity",
        classes=classes,
        limit=size,
        exclude=exclude,
    )
    rows = session.execute(
        select(
            Prediction.id,
            Prediction.ident,
            Prediction.object,
            Prediction.predicted_class,
            Prediction.probability,
            Prediction.row,
            Prediction.similarity_rank,
            SpectrumRow.x,
            SpectrumRow.grid_start_aa,
            SpectrumRow.grid_stop_aa,
        )
        .outerjoin(SpectrumRow, SpectrumRow.id == Prediction.spectrum_id)
        .where(Prediction.id.in_(ids))
    )
    by_id = {row.id: row for row in rows}
    return {
        "catalogue": catalogue_id,
        "size": size,
        "remaining": remaining,
        "halpha_vacuum_aa": HALPHA_VACUUM_AA,
        "items": [_tile(by_id[i]) for i in ids],
    }
