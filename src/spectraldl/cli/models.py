"""``spectraldl models``: the models shipped with spectraldl, with their cards."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print each model's card and checks.")
def models_command(as_json: bool) -> None:
    """List the models shipped with spectraldl, ready for `spectraldl classify`.

    Each line gives the name to pass as MODEL (or --model), the network, its
    classes and what it did on the bundled real spectra when it was trained.

    \b
    Example:
      spectraldl models
      spectraldl classify --model pretrained /data/lamost/dr5/ -o dr5.parquet
    """
    from spectraldl.ml.pretrained import shipped_models

    models = shipped_models()
    if as_json:
        records = [
            {"name": m.name, "path": str(m.path), "card": m.card, "checks": m.checks}
            for m in models
        ]
        click.echo(json.dumps(records, indent=1))
        return
    if not models:
        raise click.ClickException("no models are shipped with this installation")
    for model in models:
        click.echo(model.line())
        click.echo(f"    {model.path}")
