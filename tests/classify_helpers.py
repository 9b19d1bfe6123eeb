"""A tiny real model for the classify and candidates tests, trained once per test session.

Trained with the project's own trainer (`spectraldl.ml.training.train`) on the
training tests' small labelled set: a small CNN, a few epochs, seconds on CPU.
Its predictions on real spectra mean little; the tests check the machinery
(every number is compared against the model's own API), not the science.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from training_helpers import profile_rows, write_dataset

from spectraldl.ml.training import TrainConfig, train

_TRAINED: dict[str, Path] = {}


def trained_model(folder: Path) -> Path:
    """Train (once per session) the tiny model and return a model directory inside ``folder``."""
    if "model" not in _TRAINED:
        work = folder / "training"
        work.mkdir(parents=True, exist_ok=True)
        dataset = write_dataset(
            work / "train.h5",
            profile_rows({"emission": 60, "absorption": 60, "double-peak": 60}, seed=0),
        )
        config = TrainConfig(model="cnn-small", epochs=8, patience=3, seed=0, device="cpu")
        train([dataset], work / "model", config=config)
        _TRAINED["model"] = work / "model"
    target = folder / "model"
    if not target.exists():
        shutil.copytree(_TRAINED["model"], target)
    return target
