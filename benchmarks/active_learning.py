"""Active learning under a controlled domain shift: how many labels bring a model home?

A model trained on Ondřejov-like synthetic spectra only is fine-tuned
(`spectraldl.ml.training.train(init=...)`, the replay mix of `train --init`) on
labels drawn from a LAMOST-like pool with plate systematics it has never seen
(`Population.plate_systematics`), at survey prevalence: emission-line stars
(emission + double-peak) are ``--prevalence`` of the pool (1 %). Each
iteration labels ``--batch`` more pool spectra (the oracle is the simulation's
truth) chosen by a strategy:

* **entropy**: highest entropy of the calibrated class probabilities first;
* **margin**: smallest gap between the two most probable classes first;
* **random**: a uniform draw (the baseline).

Every iteration fine-tunes the starting model afresh on all labels so far.
Scored on a separate LAMOST-like test pool (other plates): precision, recall
and F1 of "emission-line star" (predicted emission or double-peak vs true
emission or double-peak), and, for forgetting, accuracy on a synthetic
Ondřejov-like test set. The ceiling is the starting model fine-tuned on the
whole labelled pool. Writes a table, ``--json`` and a PNG of learning curves.

Run: ``.venv/bin/python benchmarks/active_learning.py [--seeds 3] [--iterations 5]
[--json src/spectraldl/data/benchmarks/active_learning.json]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json

from spectraldl.io.dataset import Rows, append_rows, create_dataset
from spectraldl.io.labels import label_code
from spectraldl.ml.training import TrainConfig, TrainedModel, train
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.simulate import Population, simulate_vectors

STRATEGIES = ("entropy", "margin", "random")
LINE_CLASSES = ("emission", "double-peak")


def rows_of(vectors: Any, *, origin: str, archive: str) -> Rows:
    """Simulated vectors as dataset rows (labels from the truth)."""
    n = len(vectors.ids)
    return Rows(
        X=vectors.X,
        ids=vectors.ids,
        labels=vectors.labels,
        quality=vectors.quality,
        meta={"origin": np.full(n, origin, object), "archive": np.full(n, archive, object)},
    )


def write(path: Path, rows: Rows, config: PreprocessConfig) -> Path:
    """An HDF5 dataset of ``rows`` (replacing an earlier one)."""
    path.unlink(missing_ok=True)
    create_dataset(path, config=config)
    append_rows(path, rows)
    return path


def line_scores(model: TrainedModel, rows: Rows) -> dict[str, float]:
    """Precision, recall, F1 of emission-line stars (emission or double-peak) on ``rows``."""
    proba = model.predict_proba(rows.X)
    predicted = np.isin(np.array(model.classes)[proba.argmax(1)], LINE_CLASSES)
    truth = np.isin(rows.labels, [label_code(c) for c in LINE_CLASSES])
    tp = int((predicted & truth).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": int(predicted.sum())}


def accuracy(model: TrainedModel, rows: Rows) -> float:
    """Arg-max accuracy over the rows whose label is a model class."""
    codes = [label_code(c) for c in model.classes]
    keep = np.isin(rows.labels, codes)
    predicted = np.array(codes)[model.predict_proba(rows.X[keep]).argmax(1)]
    return float((predicted == rows.labels[keep]).mean())


def pick(
    strategy: str, model: TrainedModel, pool: Rows, free: np.ndarray, k: int, rng: Any
) -> np.ndarray:
    """``k`` indices of ``free`` pool rows to label next."""
    if strategy == "random":
        return rng.choice(free, size=k, replace=False)
    proba = np.clip(model.predict_proba(pool.X[free]), 1e-12, 1.0)
    if strategy == "entropy":
        score = -(proba * np.log(proba)).sum(1)
    else:
        top = np.sort(proba, axis=1)
        score = -(top[:, -1] - top[:, -2])
    return free[np.argsort(-score, kind="stable")[:k]]


def fine_tune(
    base: Path, labelled: Rows, work: Path, name: str, args: argparse.Namespace, seed: int
) -> TrainedModel:
    """The base model fine-tuned on ``labelled`` (plus the replay of its training data)."""
    data = write(work / f"{name}.h5", labelled, PreprocessConfig())
    config = TrainConfig(
        model="cnn-small",
        epochs=args.epochs,
        patience=2,
        seed=seed,
        learning_rate=args.lr,
        device="cpu",
        replay_ratio=args.replay_ratio,
    )
    result = train([data], work / name, config=config, init=base, overwrite=True)
    return result.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="labels per iteration")
    parser.add_argument("--train", type=int, default=3000, help="Ondřejov-like training set")
    parser.add_argument("--pool", type=int, default=5000, help="LAMOST-like pool")
    parser.add_argument("--test", type=int, default=5000, help="LAMOST-like test pool")
    parser.add_argument("--forget", type=int, default=1500, help="Ondřejov-like forgetting test")
    parser.add_argument("--prevalence", type=float, default=0.01)
    parser.add_argument("--fibres-per-plate", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=4, help="most epochs per fine-tuning")
    parser.add_argument("--base-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning step size")
    parser.add_argument("--replay-ratio", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--png", type=Path, default=Path(__file__).parent / "out" / "active_learning.png"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    config = PreprocessConfig()
    line = args.prevalence
    mix = {"emission": 0.8 * line, "double-peak": 0.2 * line, "noise": 0.06}
    mix["absorption"] = 1.0 - sum(mix.values())
    lamost = {"fibres_per_plate": args.fibres_per_plate, "plate_systematics": True}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ondrejov = simulate_vectors(args.train, archive="ondrejov", seed=101)
        forget = rows_of(
            simulate_vectors(args.forget, archive="ondrejov", seed=102),
            origin="synthetic",
            archive="ondrejov",
        )
        pool = rows_of(
            simulate_vectors(
                args.pool,
                archive="lamost",
                seed=201,
                population=Population.default("lamost", mix, **lamost),
            ),
            origin="real",
            archive="lamost",
        )
        test = rows_of(
            simulate_vectors(
                args.test,
                archive="lamost",
                seed=202,
                population=Population.default("lamost", mix, **lamost),
            ),
            origin="real",
            archive="lamost",
        )
        simulated = time.perf_counter() - started
        base_data = write(
            work / "ondrejov.h5", rows_of(ondrejov, origin="synthetic", archive="ondrejov"), config
        )
        base_config = TrainConfig(
            model="cnn-small", epochs=args.base_epochs, patience=3, seed=0, device="cpu"
        )
        base_dir = work / "base"
        base = train([base_data], base_dir, config=base_config).model
        start_scores = {**line_scores(base, test), "forget_accuracy": accuracy(base, forget)}
        n_pool, n_test = (int(np.isin(r.labels, [0, 3]).sum()) for r in (pool, test))
        print(
            f"simulated in {simulated:.0f} s; pool {len(pool)} ({n_pool} emission-line), "
            f"test {len(test)} ({n_test}); "
            f"start: F1 {start_scores['f1']:.3f}, forgetting test accuracy "
            f"{start_scores['forget_accuracy']:.3f}",
            flush=True,
        )
        curves: list[dict[str, Any]] = []
        ceilings = []
        for seed in range(args.seeds):
            ceiling = fine_tune(base_dir, pool, work, f"ceiling-{seed}", args, seed)
            ceilings.append({"seed": seed, **line_scores(ceiling, test)})
            for strategy in STRATEGIES:
                rng = np.random.default_rng(1000 + seed)
                chosen = np.zeros(0, np.int64)
                model = base
                for iteration in range(1, args.iterations + 1):
                    free = np.setdiff1d(np.arange(len(pool)), chosen)
                    chosen = np.r_[chosen, pick(strategy, model, pool, free, args.batch, rng)]
                    labelled = pool.take(np.sort(chosen))
                    model = fine_tune(base_dir, labelled, work, f"{strategy}-{seed}", args, seed)
                    row = {
                        "strategy": strategy,
                        "seed": seed,
                        "iteration": iteration,
                        "labels": len(chosen),
                        "line_labels": int(np.isin(labelled.labels, [0, 3]).sum()),
                        **line_scores(model, test),
                        "forget_accuracy": accuracy(model, forget),
                    }
                    curves.append(row)
                    print(
                        f"{strategy} seed {seed} it {iteration}: {row['labels']} labels "
                        f"({row['line_labels']} emission-line), F1 {row['f1']:.3f} "
                        f"(P {row['precision']:.3f} R {row['recall']:.3f}), forgetting test "
                        f"{row['forget_accuracy']:.3f}",
                        flush=True,
                    )
    summary = summarise(curves, ceilings, start_scores, args)
    print_table(
        f"active learning: emission-line F1 on the test pool (mean over {args.seeds} seeds), "
        f"ceiling {summary['ceiling_f1']:.3f}, start {start_scores['f1']:.3f}",
        summary["table"],
        [
            "labels",
            *(f"{s} F1" for s in STRATEGIES),
            *(f"{s} P" for s in STRATEGIES),
            *(f"{s} R" for s in STRATEGIES),
            "entropy forget acc",
        ],
    )
    for key, value in summary["goals"].items():
        print(f"{key}: {value}")
    print(f"{time.perf_counter() - started:.0f} s in all")
    figure(summary, start_scores, args.png)
    write_json(
        args.json,
        "active_learning",
        summary["table"],
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        start=start_scores,
        ceilings=ceilings,
        goals=summary["goals"],
        curves=curves,
        seconds=round(time.perf_counter() - started, 1),
        machine_note=machine().get("cpu"),
    )


def summarise(
    curves: list[dict[str, Any]],
    ceilings: list[dict[str, Any]],
    start: dict[str, float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Mean curves per strategy, the ceiling and the issue's goals, measured."""
    table = []
    for iteration in range(1, args.iterations + 1):
        row: dict[str, Any] = {"labels": iteration * args.batch}
        for strategy in STRATEGIES:
            at = [c for c in curves if c["strategy"] == strategy and c["iteration"] == iteration]
            for key, short in (("f1", "F1"), ("precision", "P"), ("recall", "R")):
                row[f"{strategy} {short}"] = float(np.mean([c[key] for c in at]))
            if strategy == "entropy":
                row["entropy forget acc"] = float(np.mean([c["forget_accuracy"] for c in at]))
        table.append(row)
    ceiling = float(np.mean([c["f1"] for c in ceilings]))
    within = [r["labels"] for r in table if r["entropy F1"] >= ceiling - 0.01]
    goals = {
        "ceiling_f1_mean": ceiling,
        "entropy_labels_to_within_1_point_of_ceiling": within[0] if within else None,
        "entropy_better_than_random_at_every_iteration": all(
            r["entropy F1"] > r["random F1"] for r in table
        ),
        "margin_better_than_random_at_every_iteration": all(
            r["margin F1"] > r["random F1"] for r in table
        ),
        "forgetting_points_entropy_last": 100
        * (start["forget_accuracy"] - table[-1]["entropy forget acc"]),
    }
    return {"table": table, "ceiling_f1": ceiling, "goals": goals}


def figure(summary: dict[str, Any], start: dict[str, float], path: Path) -> None:
    """Learning curves: F1, precision and recall per strategy against labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary["table"]
    labels = [0] + [r["labels"] for r in table]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True)
    for ax, (key, name) in zip(
        axes, (("F1", "f1"), ("P", "precision"), ("R", "recall")), strict=True
    ):
        for strategy in STRATEGIES:
            ax.plot(
                labels,
                [start[name]] + [r[f"{strategy} {key}"] for r in table],
                "o-",
                label=strategy,
            )
        if key == "F1":
            ax.axhline(summary["ceiling_f1"], color="k", ls="--", label="whole pool (ceiling)")
        ax.set_xlabel("labels")
        ax.set_title(f"emission-line {name}, test pool")
        ax.set_ylim(0, 1.02)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
