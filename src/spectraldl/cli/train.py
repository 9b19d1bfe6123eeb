"""``spectraldl train`` and ``spectraldl evaluate``: fit a network, score it on labelled data."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spectraldl.cli._options import (
    LEARNING_RATE,
    START_AGAIN,
    FiniteFloatRange,
    device_option,
    seed_option,
    stops_cleanly,
)
from spectraldl.cli._progress import progress_bar

if TYPE_CHECKING:
    from spectraldl.ml.training import TrainResult

_MODELS = ("cnn", "fnn", "cnn-small")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _aligned(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows as a plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _recall(scores: dict[str, Any]) -> str:
    """Recall and support of one class; a class with no rows has no recall."""
    if not scores.get("support"):
        return "- (0)"
    return f"{_fmt(scores['recall'])} ({scores['support']})"


def _side_by_side(columns: list[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text table: accuracy, ECE and per-class recall for each metrics column."""
    columns = [(title, m) for title, m in columns if m and m.get("n")]
    if not columns:
        return "no labelled rows to score"
    classes = columns[0][1]["confusion"]["classes"]
    lines = [("", *(title for title, _ in columns))]
    lines.append(("spectra", *(str(m["n"]) for _, m in columns)))
    lines.append(("accuracy", *(_fmt(m["accuracy"]) for _, m in columns)))
    for name in classes:
        lines.append((f"recall {name}", *(_recall(m["per_class"][name]) for _, m in columns)))
    lines.append(("ECE", *(_fmt(m["ece"]) for _, m in columns)))
    return _aligned(lines)


def _echo_epoch(record: dict[str, float]) -> None:
    """One line per epoch on stderr, for logs (a terminal gets the progress bar instead)."""
    click.echo(
        f"epoch {record['epoch']:.0f}: loss {record['train_loss']:.4f}, "
        f"accuracy {record['train_accuracy']:.4f}; validation loss {record['val_loss']:.4f}, "
        f"accuracy {record['val_accuracy']:.4f} ({record['seconds']:.1f} s)",
        err=True,
    )


def _parent_architecture(init: str) -> str:
    """The network of the model ``init`` names ('cnn' if its card is unreadable: train says why)."""
    from spectraldl.ml.pretrained import resolve_model

    try:
        card = json.loads((resolve_model(init) / "card.json").read_text(encoding="utf-8"))
        return str(card["architecture"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return "cnn"


@click.command("train")
@click.argument(
    "datasets", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to write (model.pt, card.json, metrics, figures).",
)
@click.option(
    "--model",
    type=click.Choice(_MODELS),
    default=None,
    help="Network: the thesis' CNN or FNN, or the small CNN for fast CPU inference "
    "[default: cnn; with --init the parent's].",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most epochs (early stopping).",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Epochs without a better validation loss.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Mini-batch size.",
)
@click.option(
    "--lr",
    "learning_rate",
    type=LEARNING_RATE,
    default=1e-3,
    show_default=True,
    help="Adam step size.",
)
@seed_option("Seed of split, SMOTE, weights.")
@device_option("auto = CUDA when available.")
@click.option("--no-smote", is_flag=True, help="Do not balance the training split with SMOTE.")
@click.option(
    "--real",
    "real_rows",
    type=click.Choice(["auto", "evaluate", "fit"]),
    default="auto",
    show_default=True,
    help="Real spectra (meta/origin=real): evaluate only, or fit them too; "
    "auto = evaluate unless there is nothing synthetic to fit.",
)
@click.option("--no-calibrate", is_flag=True, help="Skip temperature scaling.")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast (GPU).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network (GPU).")
@click.option(
    "--compile-mode",
    type=click.Choice(["default", "reduce-overhead", "max-autotune"]),
    default="default",
    show_default=True,
    help="torch.compile mode; reduce-overhead uses CUDA graphs.",
)
@click.option(
    "--cuda-graph",
    is_flag=True,
    help="Replay each training step as one CUDA graph (GPU; the fastest at batch 256).",
)
@click.option(
    "--channels-last",
    is_flag=True,
    help="Run the CNN's convolutions as channels-last 2-D ones (GPU; same network).",
)
@click.option(
    "--init",
    "init",
    default=None,
    help="Fine-tune this model (a directory or a shipped model's name): same network, "
    "classes and grid; new rows mixed with a replay of its training data.",
)
@click.option(
    "--replay",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --init: the parent's training data, when not where its card says (repeatable).",
)
@click.option(
    "--replay-ratio",
    type=FiniteFloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="With --init: rows of the parent's training split replayed per new fitted row.",
)
@click.option(
    "--real-holdout",
    type=FiniteFloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.3,
    show_default=True,
    help="With --init: share of each class of the new rows kept out for evaluation.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of tables.")
@stops_cleanly(START_AGAIN)
def train_command(
    datasets: tuple[Path, ...],
    out: Path,
    model: str | None,
    epochs: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: str,
    no_smote: bool,
    real_rows: str,
    no_calibrate: bool,
    bf16: bool,
    compile_: bool,
    compile_mode: str,
    cuda_graph: bool,
    channels_last: bool,
    init: str | None,
    replay: tuple[Path, ...],
    replay_ratio: float,
    real_holdout: float,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Train a network on the labelled spectra of DATASETS into the directory OUT.

    DATASETS are spectraldl HDF5 datasets or CSVs in the thesis' published
    layout. Classes: emission, absorption, double-peak (and noise when
    labelled); `unknown` is left out. Real spectra are kept out of fitting
    and reported beside the synthetic test split. The split (test 10 %,
    validation 20 %), SMOTE, weights and shuffling follow --seed.

    With --init MODEL, fine-tune MODEL on DATASETS (real labelled spectra,
    say): all their rows are fitted but --real-holdout of each class, kept for
    evaluation, mixed with --replay-ratio rows of MODEL's own training data
    per new row so that it does not forget; the card records the parent.

    \b
    Example:
      spectraldl train training.h5 -o model/ --model cnn-small
      spectraldl train labelled-real.h5 --init model/ -o model-2/ --epochs 20
      spectraldl train training.h5 -o model/ --device cuda --bf16 --cuda-graph --channels-last
    """
    from spectraldl.io.dataset import DatasetError
    from spectraldl.ml.training import ModelDirError, TrainConfig, TrainingError, train

    try:
        config = TrainConfig(
            model=model or (_parent_architecture(init) if init else "cnn"),
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            seed=seed,
            smote=not no_smote,
            real_rows=real_rows,
            calibrate=not no_calibrate,
            device=device,
            bf16=bf16,
            compile=compile_,
            compile_mode=compile_mode,
            cuda_graph=cuda_graph,
            channels_last=channels_last,
            replay_ratio=replay_ratio,
            real_holdout=real_holdout,
        )
        with progress_bar(f"train {config.model}") as update:
            result = train(
                datasets,
                out,
                config=config,
                overwrite=overwrite,
                progress=update,
                log=None if as_json else lambda line: click.echo(line, err=True),
                on_epoch=None if as_json or sys.stderr.isatty() else _echo_epoch,
                init=init,
                replay=list(replay) or None,
            )
    except (TrainingError, DatasetError, ModelDirError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_trained(result, as_json)


def _echo_trained(result: TrainResult, as_json: bool) -> None:
    """A training run's metrics: one JSON object, or tables (the parent beside the child)."""
    from spectraldl.core.jsonsafe import json_safe

    metrics = result.metrics
    if as_json:
        click.echo(json.dumps(json_safe(metrics), indent=2))
        return
    click.echo(
        _side_by_side(
            [
                ("validation", metrics["validation"]),
                ("test split", metrics["test"]),
                ("real (not fitted)", metrics["real"]),
            ]
        )
    )
    if "parent" in metrics:
        parent = metrics["parent"]
        parent_id = (result.card.parent or {}).get("parent_model_id")
        click.echo(f"\nparent {parent_id} on the same rows:")
        click.echo(
            _side_by_side(
                [
                    ("parent test", parent["test"]),
                    ("new test", metrics["test"]),
                    ("parent real", parent["real"]),
                    ("new real", metrics["real"]),
                ]
            )
        )
    novel = metrics["novelty"]["novel_fraction"]
    click.echo(
        f"temperature {metrics['temperature']:.3f}; novel fraction: train {_fmt(novel['train'])}, "
        f"test {_fmt(novel['test'])}, real {_fmt(novel['real'])}"
    )
    click.echo(f"model {result.model.model_id} in {result.model_dir}")


@click.command("evaluate")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument(
    "datasets", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--rows",
    type=click.Choice(["heldout", "test", "real", "all"]),
    default="heldout",
    show_default=True,
    help="heldout: every row the model was not fitted or validated on; test: its test "
    "split; real: real spectra only; all: every labelled row.",
)
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@stops_cleanly(START_AGAIN)
def evaluate_command(
    model_dir: Path, datasets: tuple[Path, ...], rows: str, device: str, as_json: bool
) -> None:
    """Score the model in MODEL_DIR (or a shipped model's name) on the labelled spectra of DATASETS.

    Prints accuracy, per-class precision/recall/F1 and the confusion matrix,
    synthetic and real spectra side by side. --json prints one object with
    accuracy, per_class {name: {precision, recall, f1, support}}, confusion
    {classes, matrix (rows true, columns predicted)}, ece, by_origin.

    \b
    Example:
      spectraldl evaluate model/ other-labelled.h5 --rows real --json
    """
    from spectraldl.core.jsonsafe import json_safe
    from spectraldl.io.dataset import DatasetError
    from spectraldl.ml.evaluation import evaluate_model
    from spectraldl.ml.modelcard import ModelDirError, ModelMismatch, load_model
    from spectraldl.ml.pretrained import resolve_model

    try:
        model = load_model(resolve_model(model_dir), device=device)
        result = evaluate_model(model, list(datasets), rows=rows)
    except (ModelDirError, ModelMismatch, DatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(json_safe(result), indent=2))
        return
    columns = [("all selected", result)]
    columns += [(f"{name}", m) for name, m in result["by_origin"].items()]
    columns += [(f"real {a}", m) for a, m in result.get("real_by_archive", {}).items()]
    click.echo(f"model {result['model_id']} ({model_dir}), rows: {rows}")
    click.echo(_side_by_side(columns))
    if result["n"]:
        click.echo("\nconfusion (rows true, columns predicted):")
        classes = result["confusion"]["classes"]
        matrix = result["confusion"]["matrix"]
        click.echo(
            _aligned(
                [
                    ("true \\ predicted", *classes),
                    *(
                        (name, *(str(v) for v in row))
                        for name, row in zip(classes, matrix, strict=True)
                    ),
                ]
            )
        )
        table = [("class", "precision", "recall", "f1", "support")]
        for name in classes:
            p = result["per_class"][name]
            predicted = sum(row[classes.index(name)] for row in matrix)
            table.append(
                (
                    name,
                    _fmt(p["precision"]) if predicted else "-",
                    _fmt(p["recall"]) if p["support"] else "-",
                    _fmt(p["f1"]) if p["support"] and predicted else "-",
                    str(p["support"]),
                )
            )
        click.echo("\n" + _aligned(table))
    if result.get("novel_fraction") is not None:
        click.echo(f"\nnovel (above the novelty threshold): {result['novel_fraction']:.3f}")
    left = result["left_out"]
    click.echo(
        f"left out: {left['unlabelled']} unlabelled, {left['not_selected']} not selected "
        f"by --rows {rows}, labels not a model class: {left['label_not_a_model_class'] or 'none'}"
    )
    _echo_baseline(result)


def _echo_baseline(result: dict[str, Any]) -> None:
    """The physics baseline (H-alpha measurements alone) beside the network, on the same rows."""
    columns = []
    for suffix, key in (("", "physics_baseline"), (", real", "physics_baseline_real")):
        part = result.get(key) or {}
        if (part.get("baseline") or {}).get("n"):
            columns += [
                (f"network{suffix}", part["network"]),
                (f"baseline{suffix}", part["baseline"]),
            ]
    if not columns:
        return
    part = result["physics_baseline"]
    click.echo("\nphysics baseline: the measured H-alpha line alone, beside the network")
    click.echo(_side_by_side(columns))
    click.echo(f"rule: {part['rule']}")
    if part["not_measured"]:
        click.echo(
            f"{part['not_measured']} rows left out: their dataset was written before H-alpha "
            "was measured (ingest it again)"
        )
