"""Models shipped inside the package: classify a directory of LAMOST files without training.

Each shipped model is an ordinary model directory (weights, ``card.json``,
``novelty.npz``, ``metrics.json``) under ``spectraldl/data/models/NAME``, made by
``tools/train_pretrained.py`` from a demo run (the bundled real spectra and
simulated ones): ``cnn``, the demo's thesis CNN, and ``cnn-small``, 20 times
smaller and faster on a CPU. Each records the project's real-spectra checks in
``checks.json``.
Wherever a command takes a model directory it also takes a shipped model's name.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectraldl.io.bundled import data_dir

DEFAULT_MODEL = "pretrained"
"""The name that means "the recommended shipped model"."""

ALIASES = {DEFAULT_MODEL: "cnn"}
"""Other names of shipped models: ``pretrained`` is the demo's thesis CNN (float16 weights)."""

CHECKS = "checks.json"
"""The real-spectra checks of a shipped model, written when it was trained."""


@dataclass(frozen=True)
class ShippedModel:
    """A model that comes with the package."""

    name: str
    path: Path
    card: dict[str, Any]
    checks: dict[str, Any]

    def line(self) -> str:
        """One line for people: name, network, classes and the checks on real spectra."""
        aliases = [a for a, target in ALIASES.items() if target == self.name]
        named = f"{self.name} ({', '.join(aliases)})" if aliases else self.name
        classes = ", ".join(self.card.get("classes", []))
        architecture = self.card.get("architecture", {}).get("name", "?")
        text = f"{named}: {architecture} network; classes {classes}"
        real = self.checks.get("real_labelled")
        if real:
            text += f"; {real['right']} of {real['n']} real labelled spectra right"
        ordinary = self.checks.get("ordinary_lamost")
        if ordinary:
            text += (
                f"; {ordinary['candidates']} of {ordinary['n']} ordinary real LAMOST stars "
                "became candidates"
            )
        return text


def models_dir() -> Path:
    """The folder of the shipped models."""
    return data_dir() / "models"


def shipped_models() -> list[ShippedModel]:
    """Every shipped model, by name."""
    found = []
    for card in sorted(models_dir().glob("*/card.json")):
        folder = card.parent
        checks = folder / CHECKS
        found.append(
            ShippedModel(
                name=folder.name,
                path=folder,
                card=json.loads(card.read_text(encoding="utf-8")),
                checks=json.loads(checks.read_text(encoding="utf-8")) if checks.exists() else {},
            )
        )
    return found


def resolve_model(model: str | Path) -> Path:
    """The model directory for ``model``: a path to one, or a shipped model's name.

    An existing path always wins; otherwise a shipped name (``pretrained``,
    ``cnn-small``) gives that model's folder inside the package. Anything
    else comes back unchanged, for `spectraldl.ml.modelcard.load_model` to refuse
    with its own message.
    """
    path = Path(model)
    if path.exists():
        return path
    name = ALIASES.get(str(model), str(model))
    shipped = models_dir() / name
    if (shipped / "card.json").exists():
        return shipped
    return path


def shipped_name(model_dir: str | Path) -> str | None:
    """The shipped model's name when ``model_dir`` is its folder in this installed package
    (as `resolve_model` gives for a shipped name), else None."""
    path = Path(model_dir).resolve()
    if path.parent == models_dir().resolve() and (path / "card.json").is_file():
        return path.name
    return None


def shipped_dir(name: str) -> Path:
    """The folder of the shipped model ``name`` in this process's installed package (where
    that is differs between machines; the folder may be missing)."""
    return models_dir() / name


def missing_model(model: str | Path) -> str:
    """Why ``model`` names no model: the shipped names (the closest first) and where models
    come from, for a mistyped name or a model not trained yet."""
    names = sorted({*ALIASES, *(card.parent.name for card in models_dir().glob("*/card.json"))})
    close = difflib.get_close_matches(Path(model).name, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return (
        f"{model}: no such model directory, and no shipped model of that name ({hint}shipped: "
        f"{', '.join(names)}; `spectraldl models` describes them); train one with "
        "`spectraldl train`"
    )
