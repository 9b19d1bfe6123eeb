"""t-SNE speed and quality: scikit-learn (baseline) against openTSNE on the same data.

Both run the thesis' recipe (PCA to 30 dimensions, perplexity 40, PCA
initialisation, 2 threads) through `spectraldl.analysis.explore.tsne_coordinates` on
the same matrix in this one run. Quality is measured two ways, so that
"faster" means faster at equal quality:

* kNN preservation: for 1 000 random spectra, the fraction of their 10
  nearest neighbours in the 30-dimensional PCA space that are also among
  their 10 nearest in the map;
* trustworthiness (Venna & Kaski 2001, scikit-learn), k = 10, on a random
  3 000-point subset of the map.

The data: by default mixtures of real spectra (every bundled Ondřejov and
LAMOST file, preprocessed): each row a random convex combination of three of
them (Dirichlet weights, alpha 0.5) with a random radial velocity (sigma
30 km/s), continuum tilt and white noise (S/N 5-100 per grid point). Mixing
gives the continuous structure of a real archive; plain copies of a hundred
spectra would make a hundred tight clusters, an unrealistically easy and
(for FFT-accelerated t-SNE, whose grid grows with the map's extent) unfairly
slow case.
``--dataset`` maps real datasets instead (e.g. a run's training.h5 and
archive.h5).

    .venv/bin/python benchmarks/explore.py [--n 20000] [--dataset X.h5 ...] [--json out.json]

``seconds`` is wall time, ``cpu_seconds`` the process's CPU time over all
threads: on a machine shared with other jobs the first measures the
neighbours too, the second (divided by the threads) is what an idle machine
would take.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import print_table, write_json


def augmented_real(n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` standardised 140-point spectra made from the bundled real ones."""
    from spectraldl.analysis.calibrate import C_KM_S
    from spectraldl.io.bundled import bundled_files
    from spectraldl.jobs.ingest import read_and_preprocess
    from spectraldl.prep.preprocess import PreprocessConfig

    config = PreprocessConfig()
    rows, _ = read_and_preprocess([f.path for f in bundled_files()], config=config)
    base = rows.X.astype(np.float64)
    grid = config.grid_aa
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), size=(n, 3))
    weights = rng.dirichlet([0.5, 0.5, 0.5], size=n)
    velocity = rng.normal(0.0, 30.0, size=n)
    tilt = rng.normal(0.0, 0.2, size=n)
    noise = 1.0 / rng.uniform(5.0, 100.0, size=n)
    t = np.linspace(-1.0, 1.0, grid.size)
    out = np.empty((n, grid.size), dtype=np.float32)
    for i in range(n):
        mixed = weights[i] @ base[pick[i]]
        x = np.interp(grid * (1.0 - velocity[i] / C_KM_S), grid, mixed)
        x = x + tilt[i] * t + rng.normal(0.0, noise[i], grid.size)
        out[i] = (x - x.mean()) / x.std()
    return out


def from_datasets(paths: list[str], n: int, seed: int) -> np.ndarray:
    """Up to ``n`` rows of real datasets, shared evenly between their groups."""
    from spectraldl.analysis.explore import balanced_subset, load_map_input

    data = load_map_input(paths, max_rows_per_dataset=None, seed=seed)
    return data.X[balanced_subset(data.group, n, seed=seed)]


def knn_preservation(
    high: np.ndarray, low: np.ndarray, *, k: int, queries: int, seed: int
) -> float:
    """Mean fraction of each query's k nearest neighbours kept by the map."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    q = rng.choice(len(high), size=min(queries, len(high)), replace=False)
    hi = NearestNeighbors(n_neighbors=k + 1).fit(high).kneighbors(high[q], return_distance=False)
    lo = NearestNeighbors(n_neighbors=k + 1).fit(low).kneighbors(low[q], return_distance=False)
    kept = [len(set(a[1:]) & set(b[1:])) / k for a, b in zip(hi, lo, strict=True)]
    return float(np.mean(kept))


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning (set before scikit-learn loads its
    # OpenMP runtime): on a shared machine spinning threads starve each other.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="spectra to map")
    parser.add_argument("--dataset", nargs="*", help="map these datasets instead")
    parser.add_argument("--workers", "-j", type=int, default=2, help="threads for both backends")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    from sklearn.manifold import trustworthiness

    from spectraldl.analysis.explore import pca_coordinates, tsne_coordinates

    if args.dataset:
        X = from_datasets(args.dataset, args.n, args.seed)
        data = "datasets " + ", ".join(args.dataset)
    else:
        X = augmented_real(args.n, seed=args.seed)
        data = "mixtures of the bundled real spectra with velocity, tilt and noise"
    high, _ = pca_coordinates(X, n_components=30, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    subset = rng.choice(len(X), size=min(3000, len(X)), replace=False)
    rows = []
    for backend in ("sklearn", "opentsne"):
        cpu = time.process_time()
        run = tsne_coordinates(X, backend=backend, n_jobs=args.workers, seed=args.seed)
        cpu = time.process_time() - cpu
        rows.append(
            {
                "backend": backend,
                "n": len(X),
                "perplexity": run.perplexity,
                "seconds": run.seconds,
                "cpu_seconds": cpu,
                "knn_10_preserved": knn_preservation(
                    high, run.coords, k=10, queries=1000, seed=args.seed
                ),
                "trustworthiness_10": float(
                    trustworthiness(high[subset], run.coords[subset], n_neighbors=10)
                ),
            }
        )
    base = rows[0]["seconds"]
    for row in rows:
        row["speed_vs_sklearn"] = base / row["seconds"]
    print_table(
        f"t-SNE after PCA-30, perplexity 40, {args.workers} threads; {len(X)} spectra ({data})",
        rows,
        [
            "backend",
            "n",
            "seconds",
            "cpu_seconds",
            "speed_vs_sklearn",
            "knn_10_preserved",
            "trustworthiness_10",
        ],
    )
    write_json(args.json, "explore", rows, data=data)


if __name__ == "__main__":
    main()
