"""Make the models shipped with spectraldl and record their checks on the bundled real spectra.

Both come from a demo run (``make demo``: 13 335 simulated Ondřejov-like and
LAMOST-like spectra plus the 25 bundled real labelled ones, which are
evaluation rows only)::

    .venv/bin/python tools/train_pretrained.py demo-run            # the demo's thesis CNN
    .venv/bin/python tools/train_pretrained.py demo-run --train cnn-small

The first packs ``demo-run/model`` (the thesis CNN the demo trained) with its
weights stored as float16 (half the size; loaded back into float32), the
second trains cnn-small on ``demo-run/training.h5`` as the demo trains. Each
goes to ``src/spectraldl/data/models/NAME/`` with ``checks.json``
(`spectraldl.analysis.realchecks`), measured on the weights as shipped, and the
split file (which rows the model was fitted on), so that ``train --init`` can
replay its training data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from spectraldl.analysis.realchecks import real_spectra_checks
from spectraldl.ml.modelcard import WEIGHTS, load_model
from spectraldl.ml.pretrained import CHECKS, models_dir
from spectraldl.ml.training import TrainConfig, train


def _train_small(run_dir: Path, out: Path, args: argparse.Namespace) -> None:
    config = TrainConfig(
        model="cnn-small", epochs=args.epochs, patience=args.patience, seed=args.seed, device="cpu"
    )
    train([run_dir / "training.h5"], out, config=config, log=print)


def _pack_half(model_dir: Path, out: Path) -> None:
    """Copy a model directory with its floating-point weights stored as float16."""
    shutil.copytree(model_dir, out)
    state = torch.load(model_dir / WEIGHTS, map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(half, out / WEIGHTS)


def main() -> None:
    """Parse the arguments, make the model, check it and write it into the package."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a demo run directory (model/, training.h5)")
    parser.add_argument("--train", choices=["cnn-small"], help="train this network instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=4)
    args = parser.parse_args()
    name = args.train or "cnn"
    target = models_dir() / name
    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp) / name
        if args.train:
            _train_small(args.run_dir, made, args)
        else:
            _pack_half(args.run_dir / "model", made)
        checks = real_spectra_checks(made)
        checks["model_id"] = load_model(made, device="cpu").model_id
        checks["made_by"] = f"tools/train_pretrained.py {args.run_dir.name}" + (
            f" --train {args.train}" if args.train else ""
        )
        (made / CHECKS).write_text(json.dumps(checks, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(made, target)
    real, ordinary = checks["real_labelled"], checks["ordinary_lamost"]
    print(
        f"{target}: {real['right']} of {real['n']} real labelled spectra right; "
        f"{ordinary['candidates']} of {ordinary['n']} ordinary real LAMOST stars candidates"
    )


if __name__ == "__main__":
    main()
