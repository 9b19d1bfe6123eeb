"""Benchmark of `spectraldl classify`: spectra/s from a dataset, files/s from a FITS tree, Dask.

Every figure comes with its baseline measured in the same run:

1. From a dataset on CPU: a plain fp32 PyTorch loop over the same network
   (``net(batch)`` under ``no_grad``, batches of 4096 as `TrainedModel.predict_proba`
   uses, and of 256) against spectraldl's `Predictor` (probabilities and novelty
   score from one pass; fp32 with its default options, its construction timed
   too, and without Winograd's convolutions; bf16 autocast; int8) and against `classify` from the
   HDF5 file end to end (read, predict, write Parquet). Agreement: the share of
   spectra whose arg-max class equals the plain fp32 loop's. Measured on one
   PyTorch thread and on all cores (``--threads``), the baseline on as many.
   The network's rate is also given in GFLOP/s (the model card's direct count) and
   as a fraction of a large matrix product timed in the same run (`_peak`).
2. From a FITS tree (synthetic LAMOST DR1 files, gzipped, from
   `spectraldl.simulate`): `classify` with one and two local worker processes
   (the faster of two runs each), files/s and the projected time for LAMOST DR1's
   2.2 million files; with two workers in bf16 and int8 too, with the share of
   files given the fp32 run's class; where the
   time goes per file (read + gunzip + header, rest of the reader, preprocessing,
   prediction, table and writing); the merge's writing of the parts from
   DataFrames (the baseline) against from the parts' Arrow tables.
3. Dask: a `LocalCluster` with 2 workers against 1, same tree.
4. GPU (CUDA): spectra/s from a dataset in bf16 and fp32, with the share of the
   GPU's datasheet bf16 peak; "skipped: no GPU" without one.
5. ``--host-tree cuda,cpu`` alone (benchmarks/gpu.sh): the FITS tree with a worker
   per core, the network on each device in turn (a GPU host's files/s).

The networks are trained for a few epochs on simulated spectra with the
project's trainer (or use ``--model-dir``); speed does not depend on how well
they are trained, agreement between precisions does a little.

    .venv/bin/python benchmarks/classify.py [--json out.json] [--n-files 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json
from _peak import datasheet_bf16_tflops, matmul_gflops, network_rate

GPU_COLUMNS = [
    "model", "method", "batch", "spectra_per_s", "ratio", "argmax_agreement", "gflops",
    "of_matmul", "of_datasheet_bf16",
]  # fmt: skip
"""The GPU table's columns: speed, agreement, and the network's rate against the peaks."""
DR1_FILES = 2_202_000
"""LAMOST DR1 spectra, as the thesis classified."""
FASTER_PRECISIONS = ("bf16", "int8")
"""The FITS tree's rows beside the fp32 default: speed, and classes against fp32's table."""


def train_models(work: Path, names: list[str], seed: int) -> dict[str, Path]:
    """Train each network a few epochs on simulated LAMOST vectors with the project's trainer."""
    from spectraldl.io.dataset import Rows, append_rows, create_dataset
    from spectraldl.io.labels import label_code
    from spectraldl.ml.training import TrainConfig, train
    from spectraldl.prep.preprocess import PreprocessConfig
    from spectraldl.simulate import simulate_vectors

    dataset = work / "training.h5"
    if not dataset.exists():
        sim = simulate_vectors(
            1800,
            archive="lamost",
            seed=seed,
            mix={"emission": 0.34, "absorption": 0.33, "double-peak": 0.33},
        )
        create_dataset(dataset, config=PreprocessConfig())
        labels = np.asarray(sim.labels, dtype=np.int8)
        if labels.dtype.kind not in "iu":
            labels = np.array([label_code(str(v)) for v in sim.labels], np.int8)
        n = len(sim.X)
        append_rows(
            dataset,
            Rows(
                X=sim.X,
                ids=np.asarray(sim.ids, dtype=object),
                labels=labels,
                quality=np.asarray(sim.quality, np.int32),
                meta={"origin": np.full(n, "synthetic", dtype=object)},
            ),
        )
    out = {}
    for name in names:
        model_dir = work / f"model-{name}"
        if not model_dir.exists():
            config = TrainConfig(model=name, epochs=3, patience=3, seed=seed, device="cpu")
            train([dataset], model_dir, config=config)
        out[name] = model_dir
    return out


def rate(fn: Any, n: int, *, repeat: int = 3, budget_s: float = 15.0) -> tuple[float, Any]:
    """Best items/s of up to ``repeat`` calls of ``fn()`` on ``n`` items, and the last result.

    Stops repeating once ``budget_s`` seconds are spent (busy machines are slow).
    """
    best = 0.0
    spent = 0.0
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        spent += seconds
        best = max(best, n / seconds)
        if spent > budget_s:
            break
    return best, result


def plain_loop(network: torch.nn.Module, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The baseline: a plain fp32 PyTorch loop, logits per batch, arg-max."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(network(torch.from_numpy(x[start : start + batch_size])).argmax(1).numpy())
    return np.concatenate(out)


def paired_ratios(ours: Any, baseline: Any, rounds: int) -> list[float]:
    """``rounds`` speed ratios of ``ours()`` to ``baseline()``, each of one call of both in
    turn: a shared machine's slow spells hit both sides of a pair alike."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        baseline()
        middle = time.perf_counter()
        ours()
        out.append((middle - start) / (time.perf_counter() - middle))
    return out


def flops_of(model: Any) -> int | None:
    """The network's FLOPs per spectrum from its model card (None when not recorded)."""
    architecture = model.card.architecture
    return architecture.flops_per_spectrum if architecture else None


def matmul_peaks(device: str, *, bf16: bool) -> dict[str, float]:
    """GFLOP/s of a large matrix product on ``device`` on this process's threads, fp32 and
    (where the hardware has it natively) bf16: the yardstick of the rows' ``of_matmul``."""
    n = 2048 if device == "cpu" else 16384
    peaks = {"fp32": matmul_gflops(device, torch.float32, n=n)}
    if bf16:
        peaks["bf16"] = matmul_gflops(device, torch.bfloat16, n=n)
    print(
        f"matrix product ({n} x {n}) on {device}, {torch.get_num_threads()} threads: "
        + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peaks.items()),
        flush=True,
    )
    return peaks


def bench_dataset(
    model_dirs: dict[str, Path],
    x: np.ndarray,
    dataset: Path,
    dataset_rows: int,
    work: Path,
    rounds: int = 5,
) -> list[dict[str, Any]]:
    """Section 1: spectra/s from a dataset on CPU, against a plain fp32 loop, both on
    this process's PyTorch threads."""
    from spectraldl.classify.predictor import Predictor, cpu_has_native_bf16
    from spectraldl.classify.run import classify
    from spectraldl.ml.modelcard import load_model

    rows: list[dict[str, Any]] = []
    n = len(x)
    native = cpu_has_native_bf16()
    # bf16 runs natively only with AVX-512 BF16/AMX; elsewhere PyTorch emulates it slowly,
    # so there it is timed on a slice.
    sample = x if native else x[: min(n, 1024)]
    peaks = matmul_peaks("cpu", bf16=native)
    for name, model_dir in model_dirs.items():
        model = load_model(model_dir, device="cpu")
        net = model.network
        base, reference = rate(lambda net=net: plain_loop(net, x, 4096), n)
        direct = Predictor(model, precision="fp32", batch_size=256, winograd=False)
        bf16 = Predictor(model, precision="bf16", batch_size=256)
        int8 = Predictor(model, precision="int8", batch_size=256)
        default_batch = Predictor(model).batch_size

        def default(model: Any = model) -> np.ndarray:
            # The default options, start-up (Predictor construction) included.
            return Predictor(model)(x)[0].argmax(1)

        cases = [
            ("plain fp32 loop (baseline)", 4096, None, n),
            ("plain fp32 loop", 256, lambda net=net: plain_loop(net, x, 256), n),
            ("spectraldl Predictor fp32 default (+novelty, start-up)", default_batch, default, n),
            (
                "spectraldl Predictor fp32 without Winograd",
                256,
                lambda p=direct: p(x)[0].argmax(1),
                n,
            ),
            ("spectraldl Predictor int8 (x86)", 256, lambda p=int8: p(x)[0].argmax(1), n),
            (
                "spectraldl Predictor bf16 autocast",
                256,
                lambda p=bf16: p(sample)[0].argmax(1),
                len(sample),
            ),
        ]
        for method, batch, fn, count in cases:
            if fn is None:
                speed, argmax = base, reference
            else:
                speed, argmax = rate(fn, count)
            rows.append(
                {
                    "model": name,
                    "threads": torch.get_num_threads(),
                    "method": method,
                    "batch": batch,
                    "spectra_per_s": speed,
                    "ratio": speed / base,
                    "argmax_agreement": float((argmax == reference[: len(argmax)]).mean()),
                    **network_rate(
                        speed,
                        None if "int8" in method else flops_of(model),  # not floating point
                        peaks.get("bf16" if "bf16" in method else "fp32"),
                    ),
                    "note": ""
                    if native or "bf16" not in method
                    else f"no native bf16 here; timed on {len(sample)}",
                }
            )
            if fn is default and rounds:
                rows[-1]["paired_ratios"] = paired_ratios(
                    default, lambda net=net: plain_loop(net, x, 4096), rounds
                )
        out = work / f"from-dataset-{name}.parquet"

        def end_to_end(model_dir: Path = model_dir, out: Path = out) -> None:
            classify(model_dir, [dataset], out, overwrite=True)

        speed, _ = rate(end_to_end, dataset_rows, repeat=2)
        rows.append(
            {
                "model": name,
                "threads": torch.get_num_threads(),
                "method": "spectraldl classify dataset.h5 -> .parquet",
                "batch": 256,
                "spectra_per_s": speed,
                "ratio": speed / base,
                "argmax_agreement": float("nan"),
                "note": f"{dataset_rows} rows: HDF5 read, predict, novelty, Parquet write",
            }
        )
    return rows


@dataclass(frozen=True)
class Network:
    """Where the network of a timed `classify` runs, and in which arithmetic."""

    device: str = "auto"
    precision: str = "fp32"


def warm_up(
    model_dir: Path, tree: Path, work: Path, backend: Any, workers: int, network: Network
) -> float:
    """Start the backend's workers (imports, model load with ``network``'s device and
    precision) on a one-file chunk each, twice over, so that no worker
    starts inside the timed run; returns seconds."""
    import shutil
    from itertools import islice

    from spectraldl.classify.plan import iter_fits_files
    from spectraldl.classify.run import classify

    files = max(8, 2 * workers)
    warm = work / f"warm-tree-{files}"
    if not warm.exists():
        warm.mkdir()
        for path in islice(iter_fits_files(str(tree)), files):
            shutil.copy(path, warm / Path(path).name)
    start = time.perf_counter()
    classify(model_dir, [warm], work / "warm.parquet", backend=backend, chunk_files=1,
             overwrite=True, device=network.device, precision=network.precision)  # fmt: skip
    return time.perf_counter() - start


def tree_run(
    model_dir: Path,
    tree: Path,
    n_files: int,
    out: Path,
    workers: int,
    network: Network = Network(),
    repeats: int = 2,
) -> dict[str, Any]:
    """`classify` of the tree into ``out`` on ``workers`` local processes (the network on
    ``network``'s device, in its precision), timed once they have started, the fastest of
    ``repeats`` runs (a run on this noisy machine was once 25 % slower than the next):
    files/s, DR1 projected, bad files, the workers' start-up and every run's seconds."""
    from spectraldl.classify.run import classify
    from spectraldl.jobs.backends import open_backend

    runs = []
    with open_backend("local", workers=workers) as backend:
        startup = warm_up(model_dir, tree, out.parent, backend, workers, network)
        for _ in range(repeats):
            start = time.perf_counter()
            summary = classify(
                model_dir, [tree], out, backend=backend, overwrite=True,
                device=network.device, precision=network.precision,
            )  # fmt: skip
            runs.append(time.perf_counter() - start)
    seconds = min(runs)
    return {
        "files": n_files,
        "runs_s": runs,
        "seconds": seconds,
        "files_per_s": n_files / seconds,
        "projected_dr1_min": DR1_FILES / (n_files / seconds) / 60,
        "bad_files": len(summary.errors),
        "worker_start_s": startup,
    }


def class_agreement(reference: Path, other: Path) -> float:
    """The share of the spectra in table ``reference`` that table ``other`` gives the same
    predicted class (matched by id)."""
    import pandas as pd

    ours = pd.read_parquet(reference, columns=["id", "predicted_class"]).set_index("id")
    theirs = pd.read_parquet(other, columns=["id", "predicted_class"]).set_index("id")
    same = ours["predicted_class"] == theirs["predicted_class"].reindex(ours.index)
    return float(same.mean())


def rows_speed(rows: list[dict[str, Any]], run: dict[str, Any]) -> float:
    """The files/s the rows' ratios are to: the first row's, or this run's when it is first."""
    return float(rows[0]["files_per_s"] if rows else run["files_per_s"])


def bench_tree(model_dir: Path, tree: Path, n_files: int, work: Path) -> tuple[list, list]:
    """Section 2: FITS tree end to end, 1 and 2 local workers, and where the time goes."""
    from spectraldl.classify.plan import iter_fits_files
    from spectraldl.classify.predictor import Predictor
    from spectraldl.io.archives import read_spectrum
    from spectraldl.io.archives.fitsfile import FitsFile
    from spectraldl.jobs.ingest import CHUNK_FILES
    from spectraldl.ml.modelcard import load_model
    from spectraldl.prep.batch import preprocess_many
    from spectraldl.prep.measure import halpha_window, measure_halpha_windows

    rows = []
    for workers in (1, 2):
        run = tree_run(model_dir, tree, n_files, work / f"tree-{workers}.parquet", workers)
        case = f"classify FITS tree, local, {workers} worker(s)"
        rows.append({"case": case, **run, "ratio": run["files_per_s"] / rows_speed(rows, run)})
    for precision in FASTER_PRECISIONS:
        out = work / f"tree-2-{precision}.parquet"
        run = tree_run(model_dir, tree, n_files, out, 2, Network(precision=precision))
        case = f"classify FITS tree, local, 2 worker(s), --precision {precision}"
        rows.append(
            {"case": case, **run, "ratio": run["files_per_s"] / rows_speed(rows, run),
             "class_agreement": class_agreement(work / "tree-2.parquet", out)}
        )  # fmt: skip
    # Where the time goes, one process, per file.
    files = list(iter_fits_files(str(tree)))[:600]
    model = load_model(model_dir, device="cpu")
    config = model.config
    stage: dict[str, float] = {}
    start = time.perf_counter()
    for path in files:
        FitsFile.open(path)
    stage["read + gunzip + primary header (FitsFile.open)"] = time.perf_counter() - start
    start = time.perf_counter()
    spectra = []
    for path in files:
        with contextlib.suppress(ValueError):
            spectra.append(read_spectrum(path))
    stage["rest of the reader (arrays, Spectrum)"] = (
        time.perf_counter() - start - stage["read + gunzip + primary header (FitsFile.open)"]
    )
    start = time.perf_counter()
    outcomes = [
        o for chunk in range(0, len(spectra), CHUNK_FILES)
        for o in preprocess_many(spectra[chunk : chunk + CHUNK_FILES], config)
    ]  # fmt: skip
    xs = [o.x for o in outcomes if not isinstance(o, Exception)]
    stage["preprocess (regrid, standardise, flags; a chunk at once)"] = time.perf_counter() - start
    start = time.perf_counter()
    for chunk in range(0, len(spectra), CHUNK_FILES):
        measure_halpha_windows([halpha_window(s) for s in spectra[chunk : chunk + CHUNK_FILES]])
    stage["H-alpha line measurements"] = time.perf_counter() - start
    x = np.stack(xs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as classify runs FITS chunks in one process
    predictor = Predictor(model)  # the default precision (fp32) and batch
    predictor(x)
    start = time.perf_counter()
    predictor(x)
    network = "predict + novelty (default fp32, 1 thread)"
    stage[network] = time.perf_counter() - start
    network_row = network_rate(
        len(x) / stage[network],
        flops_of(model),
        matmul_peaks("cpu", bf16=False)["fp32"],
    )
    torch.set_num_threads(threads)
    one = rows[0]
    total_per_file = one["seconds"] / n_files
    accounted = sum(stage.values()) / len(files)
    stage["table, commit, merge, planning (rest of the run)"] = max(
        0.0, (total_per_file - accounted) * len(files)
    )
    breakdown = [
        {
            "stage": name,
            "ms_per_file": seconds / len(files) * 1e3,
            "share": seconds / len(files) / total_per_file,
            **(network_row if name == network else {}),
        }
        for name, seconds in stage.items()
    ]
    return rows, breakdown


def bench_host_tree(
    model_dir: Path, tree: Path, n_files: int, work: Path, devices: list[str]
) -> list[dict[str, Any]]:
    """Section 5: the FITS tree with one worker per core, the network on each of ``devices``
    in turn (a GPU host's goal: 20 000 files/s with the reading spread over its cores)."""
    from spectraldl.jobs.processes import usable_cores

    workers = usable_cores()
    rows: list[dict[str, Any]] = []
    for device in devices:
        out = work / f"host-tree-{device}.parquet"
        run = tree_run(model_dir, tree, n_files, out, workers, Network(device=device))
        case = f"classify FITS tree, {workers} workers, network on {device}"
        rows.append(
            {"case": case, "device": device, "workers": workers, **run,
             "ratio": run["files_per_s"] / rows_speed(rows, run)}
        )  # fmt: skip
    return rows


def bench_merge(table: Path, work: Path) -> list[dict[str, Any]]:
    """Section 2b: the merge's writing of a run's parts into the table, from DataFrames (as
    until 2026-12-05, the baseline) and from the parts' Arrow tables (what `classify` does)."""
    from spectraldl.classify.plan import CHUNK_FILES
    from spectraldl.io.predictions import (
        read_metadata,
        read_parquet_table,
        read_predictions,
        write_predictions,
    )

    whole = read_predictions(table)
    classes = (read_metadata(table) or {})["classes"]
    parts = []
    for start in range(0, len(whole), CHUNK_FILES):
        parts.append(work / f"merge-part-{start}.parquet")
        write_predictions(
            parts[-1], whole[start : start + CHUNK_FILES], classes=classes, astropy_metadata=False
        )
    cases = {
        "parts as DataFrames (baseline)": lambda: (read_predictions(p) for p in parts),
        "parts as Arrow tables": lambda: (read_parquet_table(p) for p in parts),
    }
    rows = []
    for method, blocks in cases.items():
        speed, _ = rate(
            lambda b=blocks: write_predictions(work / "merged.parquet", b, classes=classes),
            len(whole),
        )
        rows.append(
            {"method": method, "rows": len(whole), "parts": len(parts), "rows_per_s": speed}
        )
    for row in rows:
        row["ratio"] = row["rows_per_s"] / rows[0]["rows_per_s"]
    return rows


def bench_dask(model_dir: Path, tree: Path, n_files: int, work: Path) -> list[dict[str, Any]]:
    """Section 3: Dask LocalCluster with 2 workers against 1."""
    from spectraldl.classify.run import classify
    from spectraldl.jobs.backends import open_backend

    rows = []
    first = None
    for workers in (1, 2):
        out = work / f"dask-{workers}.parquet"
        start = time.perf_counter()
        with open_backend("dask-local", workers=workers) as backend:
            warm_up(model_dir, tree, work, backend, workers, Network())
            started = time.perf_counter()
            classify(model_dir, [tree], out, backend=backend, overwrite=True)
            seconds = time.perf_counter() - started
        total = time.perf_counter() - start
        speed = n_files / seconds
        first = first or speed
        rows.append(
            {
                "case": f"Dask LocalCluster, {workers} worker(s)",
                "files": n_files,
                "seconds": seconds,
                "files_per_s": speed,
                "ratio": speed / first,
                "cluster_and_worker_start_s": total - seconds,
            }
        )
    return rows


def bench_gpu(model_dirs: dict[str, Path], x: np.ndarray, n_gpu: int) -> list[dict[str, Any]]:
    """Section 4: spectra/s on a CUDA GPU from in-memory dataset rows."""
    from spectraldl.classify.predictor import Predictor
    from spectraldl.ml.modelcard import load_model

    rows = []
    tiled = np.ascontiguousarray(np.resize(x, (n_gpu, x.shape[1])))
    peaks = matmul_peaks("cuda", bf16=True)
    datasheet = datasheet_bf16_tflops(torch.cuda.get_device_name())
    for name, model_dir in model_dirs.items():
        model = load_model(model_dir, device="cuda")
        flops = flops_of(model)
        net = model.network
        base_n = min(n_gpu, 1_000_000)

        def plain(net: torch.nn.Module = net, base_n: int = base_n) -> np.ndarray:
            with torch.no_grad():
                return np.concatenate(
                    [
                        net(torch.from_numpy(tiled[start : start + 4096]).cuda()).argmax(1).cpu()
                        for start in range(0, base_n, 4096)
                    ]
                )

        base, reference = rate(plain, base_n, repeat=2)
        rows.append(
            {
                "model": name,
                "method": "plain fp32 loop",
                "batch": 4096,
                "spectra_per_s": base,
                "ratio": 1.0,
                "argmax_agreement": 1.0,
                # cuDNN convolves in TF32 here by default: no strict fp32 peak to compare with.
                **network_rate(base, flops, None),
            }
        )
        for precision, batch, channels_last in (
            ("fp32", 65536, False),
            ("bf16", 65536, False),
            ("bf16", 262144, False),
            ("bf16", 65536, True),
            ("bf16", 262144, True),
        ):
            predictor = Predictor(
                model, precision=precision, batch_size=batch, channels_last=channels_last
            )
            predictor(tiled[: 2 * batch])
            speed, (proba, _) = rate(lambda p=predictor: p(tiled), n_gpu, repeat=2)
            layout = " channels-last" if channels_last else ""
            rows.append(
                {
                    "model": name,
                    "method": f"spectraldl Predictor {precision}{layout}",
                    "batch": batch,
                    "spectra_per_s": speed,
                    "ratio": speed / base,
                    "argmax_agreement": float(
                        (proba[: len(reference)].argmax(1) == reference).mean()
                    ),
                    **network_rate(speed, flops, peaks[precision]),
                    "of_datasheet_bf16": speed * flops / 1e12 / datasheet
                    if datasheet and flops and precision == "bf16"
                    else None,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results as JSON here")
    parser.add_argument("--n-spectra", type=int, default=8192, help="dataset rows (CPU)")
    parser.add_argument("--n-files", type=int, default=2000, help="files in the FITS tree")
    parser.add_argument("--models", default="cnn,cnn-small", help="networks to measure")
    parser.add_argument(
        "--model-dir", action="append", default=[], help="NAME=DIR, a trained model"
    )
    parser.add_argument("--n-gpu", type=int, default=4_000_000, help="spectra for the GPU rows")
    parser.add_argument(
        "--tree-model", default="cnn", help="network for the FITS tree rows (the thesis CNN)"
    )
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument(
        "--gpu-only", action="store_true", help="only section 4, on the real LAMOST spectra tiled"
    )
    parser.add_argument(
        "--host-tree",
        default="",
        help="only section 5: the FITS tree with a worker per core, the network on each of "
        "these devices in turn (e.g. cuda,cpu on a GPU host)",
    )
    parser.add_argument(
        "--work", help="folder for the trees and models (a temporary one by default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        default="1,0",
        help="PyTorch thread counts for section 1, each measured in turn (0: all cores)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="section 1: the default predictor and the baseline timed in turn this many times",
    )
    args = parser.parse_args(argv)

    from spectraldl.io.bundled import bundled_files
    from spectraldl.io.dataset import append_rows, create_dataset
    from spectraldl.jobs.ingest import ingest, read_and_preprocess
    from spectraldl.jobs.processes import usable_cores
    from spectraldl.prep.preprocess import PreprocessConfig
    from spectraldl.simulate import simulate_archive

    temp = None if args.work else tempfile.TemporaryDirectory(prefix="bench-classify-")
    work = Path(args.work or temp.name)
    work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.models.split(",") if n]
    given = dict(item.split("=", 1) for item in args.model_dir)
    model_dirs = {n: Path(given[n]) for n in names if n in given}
    missing = [n for n in names if n not in model_dirs]
    if args.tree_model not in model_dirs and args.tree_model not in missing:
        missing.append(args.tree_model)
    if missing:
        print(
            f"training {', '.join(missing)} for a few epochs on simulated spectra ...", flush=True
        )
        model_dirs.update(train_models(work, missing, args.seed))

    if args.gpu_only:
        real, _ = read_and_preprocess(
            [f.path for f in bundled_files(archive="lamost")], config=PreprocessConfig()
        )
        rows4 = bench_gpu({n: model_dirs[n] for n in names}, real.X, args.n_gpu)
        print_table(
            "GPU from a dataset (ratio: to the plain fp32 loop)",
            rows4,
            GPU_COLUMNS,
        )
        write_json(args.json, "classify", [{"section": "gpu", **r} for r in rows4], gpu="measured")
        return 0

    tree = work / f"tree-{args.n_files}"
    if not (tree / "truth.csv").exists():
        print(f"simulating {args.n_files} LAMOST DR1 files (gzipped) ...", flush=True)
        simulate_archive(
            tree,
            archive="lamost",
            n=args.n_files,
            seed=args.seed + 1,
            release="dr1",
            workers=usable_cores(),
        )
    n_files = args.n_files
    if args.host_tree:
        rows5 = bench_host_tree(
            model_dirs[args.tree_model], tree, n_files, work, args.host_tree.split(",")
        )
        print_table(
            f"classify a FITS tree on this host ({n_files} gzipped LAMOST DR1 files, model "
            f"{args.tree_model}; ratio: to the first device)",
            rows5,
            ["case", "files", "seconds", "files_per_s", "ratio", "projected_dr1_min",
             "worker_start_s"],
        )  # fmt: skip
        write_json(args.json, "classify", [{"section": "host-tree", **r} for r in rows5])
        return 0

    # Dataset rows: the simulated tree, ingested, tiled to --n-spectra (plus the real spectra).
    archive_h5 = work / f"archive-{args.n_files}.h5"
    if not archive_h5.exists():
        ingest([tree], archive_h5, workers=min(2, os.cpu_count() or 1))
    from spectraldl.io.dataset import read_dataset

    base = read_dataset(archive_h5)
    real, _ = read_and_preprocess(
        [f.path for f in bundled_files(archive="lamost")], config=PreprocessConfig()
    )
    reps = -(-args.n_spectra // len(base))
    x = np.ascontiguousarray(
        np.resize(np.concatenate([real.X, base.X]), (args.n_spectra, base.X.shape[1]))
    )
    big = work / f"dataset-{args.n_files}-{args.n_spectra}.h5"
    if not big.exists():
        create_dataset(big, config=base.config)
        for i in range(reps):
            block = base.take(slice(None))
            block.ids = np.array([f"{v}-{i}" for v in block.ids], dtype=object)
            append_rows(big, block)
        from spectraldl.io.dataset import dataset_info

        assert dataset_info(big).n_rows >= args.n_spectra
    dataset_rows = len(base) * reps

    rows1: list[dict[str, Any]] = []
    for count in dict.fromkeys(int(t) or usable_cores() for t in args.threads.split(",")):
        torch.set_num_threads(count)
        print(f"section 1: from a dataset ({count} PyTorch threads) ...", flush=True)
        rows = bench_dataset(
            {n: model_dirs[n] for n in names}, x, big, dataset_rows, work, args.rounds
        )
        print_table(
            f"classify from a dataset, CPU, {len(x)} spectra, {count} PyTorch threads "
            "(ratio: to the plain fp32 loop, batch 4096, on as many threads)",
            rows,
            [
                "model",
                "method",
                "batch",
                "spectra_per_s",
                "ratio",
                "argmax_agreement",
                "gflops",
                "of_matmul",
                "note",
            ],
        )
        for row in rows:
            if "paired_ratios" in row:
                pairs = row["paired_ratios"]
                print(
                    f"{row['model']}: the default predictor timed in turn with the baseline, "
                    f"{len(pairs)} times: ratio median {np.median(pairs):.2f} "
                    f"({min(pairs):.2f}-{max(pairs):.2f})"
                )
        rows1 += rows
    torch.set_num_threads(usable_cores())

    print("section 2: FITS tree ...", flush=True)
    rows2, breakdown = bench_tree(model_dirs[args.tree_model], tree, n_files, work)
    for row in rows2:
        row["model"] = args.tree_model
    print_table(
        f"classify a FITS tree end to end ({n_files} gzipped LAMOST DR1 files, model "
        f"{args.tree_model}; projected minutes for {DR1_FILES:,} files)",
        rows2,
        [
            "case",
            "files",
            "seconds",
            "files_per_s",
            "ratio",
            "projected_dr1_min",
            "bad_files",
            "class_agreement",
            "worker_start_s",
        ],
    )
    merge = bench_merge(work / "tree-1.parquet", work)
    print_table(
        "merging a run's parts into its table (Parquet; ratio: to the baseline)",
        merge,
        ["method", "rows", "parts", "rows_per_s", "ratio"],
    )
    print_table(
        "where the time goes (one process, per file)",
        breakdown,
        ["stage", "ms_per_file", "share", "gflops", "of_matmul"],
    )

    rows3: list[dict[str, Any]] = []
    if not args.skip_dask:
        print("section 3: Dask ...", flush=True)
        rows3 = bench_dask(model_dirs[args.tree_model], tree, n_files, work)
        print_table(
            "Dask LocalCluster (ratio: to 1 worker)",
            rows3,
            ["case", "files", "seconds", "files_per_s", "ratio", "cluster_and_worker_start_s"],
        )

    rows4: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        rows4 = bench_gpu({n: model_dirs[n] for n in names}, x, args.n_gpu)
        print_table("GPU from a dataset (ratio: to the plain fp32 loop)", rows4, GPU_COLUMNS)
    else:
        print("\nGPU: skipped: no GPU")

    all_rows = (
        [{"section": "dataset-cpu", **r} for r in rows1]
        + [{"section": "fits-tree", **r} for r in rows2]
        + [{"section": "fits-tree-stages", **r} for r in breakdown]
        + [{"section": "merge", **r} for r in merge]
        + [{"section": "dask", **r} for r in rows3]
        + [{"section": "gpu", **r} for r in rows4]
    )
    write_json(
        args.json,
        "classify",
        all_rows,
        gpu="skipped: no GPU" if not rows4 else "measured",
        torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )
    if temp is not None:
        temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
