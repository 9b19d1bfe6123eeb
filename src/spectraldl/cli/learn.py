"""``spectraldl learn``: labels and verdicts from the web database -> a fine-tuned model."""

from __future__ import annotations

from pathlib import Path

import click

from spectraldl.cli._options import (
    LEARNING_RATE,
    START_AGAIN,
    FiniteFloatRange,
    device_option,
    seed_option,
    stops_cleanly,
)


@click.command("learn")
@click.option(
    "--db",
    "db_url",
    required=True,
    help="The web tool's database: SQLAlchemy URL or SQLite file (its labels and verdicts are "
    "read; a new model that is written scores the stored spectra into a new catalogue there).",
)
@click.option(
    "--model",
    "model",
    required=True,
    help="The model in use (a directory or a shipped model's name): the parent.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The new model directory (may be --model itself: replaced only if not worse).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Most epochs (early stopping).",
)
@click.option(
    "--lr",
    "learning_rate",
    type=LEARNING_RATE,
    default=3e-4,
    show_default=True,
    help="Adam step size.",
)
@seed_option("Seed of the split, replay and weights.")
@click.option(
    "--replay-ratio",
    type=FiniteFloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="Rows of the parent's training data replayed per new labelled row.",
)
@click.option(
    "--replay",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The parent's training data, when not where its card says (repeatable).",
)
@device_option()
@click.option("--force", is_flag=True, help="Write the new model even when it is worse.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT (other than --model).")
@stops_cleanly(START_AGAIN)
def learn_command(
    db_url: str,
    model: str,
    out: Path,
    epochs: int,
    learning_rate: float,
    seed: int,
    replay_ratio: float,
    replay: tuple[Path, ...],
    device: str,
    force: bool,
    overwrite: bool,
) -> None:
    """Fine-tune MODEL on what people labelled and vetted in the web database.

    Consensus labels (ties left out, undone labels gone) and consensus
    verdicts (confirm = the predicted class, reject = absorption, noise =
    noise) become a dataset OUT.labels.h5; MODEL is fine-tuned on it with a
    replay of its own training data, a share of every class held out. Old and
    new model are scored side by side on the held-out real spectra; a new
    model that is worse is not written unless --force. A model that is written
    scores every stored spectrum into a new catalogue of the database, so that
    the "most uncertain first" labelling queue follows it.

    A shipped model (pretrained) was trained on a demo run's data, which is not
    shipped: give --replay-ratio 0, or --replay DIR/training.h5 from
    `spectraldl demo --out DIR`.

    \b
    Example:
      spectraldl learn --db spectraldl.db --model model/ -o model-2/
    """
    from spectraldl.cli.train import _side_by_side
    from spectraldl.io.dataset import DatasetError
    from spectraldl.ml.modelcard import ModelDirError
    from spectraldl.ml.training import TrainConfig, TrainingError
    from spectraldl.web.learning import LearnError, learn

    try:
        config = TrainConfig(
            epochs=epochs,
            patience=4,
            learning_rate=learning_rate,
            seed=seed,
            device=device,
            replay_ratio=replay_ratio,
        )
        done = learn(
            db_url,
            model,
            out,
            config=config,
            replay=list(replay) or None,
            force=force,
            overwrite=overwrite,
            log=lambda line: click.echo(line, err=True),
        )
    except (LearnError, TrainingError, ModelDirError, DatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    metrics, parent = done.result.metrics, done.result.card.parent or {}
    click.echo(
        f"{done.comparison['real']['n']} held-out real spectra (none of them fitted by the "
        f"old model) and the parent's {done.comparison['test']['n']} test spectra, old and "
        f"new model ({parent.get('n_new_fitted_by_parent', 0)} labelled spectra the old model "
        "was fitted on were fitted again, never held out):"
    )
    click.echo(
        _side_by_side(
            [
                ("old real", metrics["parent"]["real"]),
                ("new real", metrics["real"]),
                ("old test", metrics["parent"]["test"]),
                ("new test", metrics["test"]),
            ]
        )
    )
    if done.worse:
        click.echo("the new model is worse: " + "; ".join(done.worse))
    if not done.written:
        raise click.ClickException(
            f"not written: the new model is worse than {model} ({'; '.join(done.worse)}); "
            "--force writes it anyway"
        )
    click.echo(f"model {done.result.model.model_id} in {done.out_dir} (labels {done.labels_path})")
