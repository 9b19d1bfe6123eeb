"""Train the shipped ``pretrained`` model (cnn-small) and record its checks on real spectra.

The training set is the demo's (``make demo`` builds it: 13 335 simulated
Ondřejov-like and LAMOST-like spectra plus the 25 bundled real labelled ones,
which are evaluation rows only). Usage, after ``make demo``::

    .venv/bin/python tools/train_pretrained.py demo-run

writes ``src/spectraldl/data/models/cnn-small/`` (about 0.6 MB: fp32 weights,
card, novelty model, metrics, curves) and its ``checks.json``
(`spectraldl.realchecks`). The split file, which lists 13 000 training ids,
is left out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from spectraldl.pretrained import CHECKS, models_dir
from spectraldl.realchecks import real_spectra_checks
from spectraldl.training import TrainConfig, train

LEFT_OUT = ("split.csv",)


def main() -> None:
    """Parse the arguments, train, check and write the shipped model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a demo run directory with training.h5")
    parser.add_argument("--out", type=Path, default=models_dir() / "cnn-small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=4)
    args = parser.parse_args()
    config = TrainConfig(
        model="cnn-small", epochs=args.epochs, patience=args.patience, seed=args.seed, device="cpu"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        result = train([args.run_dir / "training.h5"], model_dir, config=config, log=print)
        checks = real_spectra_checks(model_dir)
        checks["model_id"] = result.model.model_id
        checks["training"] = {"dataset": "demo training.h5", "config": config.__dict__}
        (model_dir / CHECKS).write_text(json.dumps(checks, indent=1, default=str) + "\n")
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(model_dir, args.out, ignore=shutil.ignore_patterns(*LEFT_OUT))
    real, ordinary = checks["real_labelled"], checks["ordinary_lamost"]
    print(
        f"{args.out}: {real['right']} of {real['n']} real labelled spectra right; "
        f"{ordinary['candidates']} of {ordinary['n']} ordinary real LAMOST stars candidates"
    )


if __name__ == "__main__":
    main()
