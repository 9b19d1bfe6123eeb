"""Novelty: spectra unlike the training data score above the threshold, ordinary ones do not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_helpers import profile_rows, write_dataset

from spectraldl.ml.novelty import NoveltyError, NoveltyModel
from spectraldl.ml.training import TrainConfig, train


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[4.0] * 8, [-4.0] * 8, [4.0, -4.0] * 4])
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(size=(n, 8)) @ np.diag(np.linspace(0.5, 2.0, 8)), labels


def test_gaussian_features() -> None:
    x, y = _clusters(3000, seed=0)
    held, _ = _clusters(2000, seed=1)
    nov = NoveltyModel.fit(x, y, quantile=0.99)
    assert nov.dim == 8 and list(nov.labels) == [0, 1, 2]
    assert np.mean(nov.score(x) > nov.threshold) == pytest.approx(0.01, abs=0.003)
    assert np.mean(nov.is_novel(held)) < 0.03
    far = np.full((10, 8), 30.0)
    between = np.zeros((10, 8))  # between the class means, where no training spectrum lies
    assert nov.is_novel(far).all() and nov.is_novel(between).all()
    distances = nov.distances(x[:5])
    assert distances.shape == (5, 3)
    assert np.allclose(nov.score(x[:5]), distances.min(axis=1))


def test_threshold_from_calibration_features() -> None:
    x, y = _clusters(500, seed=2)
    held, _ = _clusters(500, seed=3)
    nov = NoveltyModel.fit(x, y, quantile=0.95, calibration=held)
    assert nov.threshold == pytest.approx(np.quantile(nov.score(held), 0.95))


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, y = _clusters(300, seed=4)
    nov = NoveltyModel.fit(x, y)
    nov.save(tmp_path / "novelty.npz")
    back = NoveltyModel.load(tmp_path / "novelty.npz")
    assert back.threshold == nov.threshold and back.quantile == nov.quantile
    assert np.array_equal(back.score(x), nov.score(x))
    with np.load(tmp_path / "novelty.npz", allow_pickle=False) as data:
        assert str(data["method"]) == "mahalanobis-shared-covariance"


def test_errors(tmp_path: Path) -> None:
    x, y = _clusters(300, seed=5)
    nov = NoveltyModel.fit(x, y)
    with pytest.raises(NoveltyError, match=r"\(n, 8\)"):
        nov.score(np.zeros((3, 5)))
    with pytest.raises(NoveltyError, match="no such novelty file"):
        NoveltyModel.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(NoveltyError, match=re.escape("bad.npz: not a novelty model")):
        NoveltyModel.load(tmp_path / "bad.npz")
    with pytest.raises(NoveltyError, match="quantile"):
        NoveltyModel.fit(x, y, quantile=1.0)


def test_a_truncated_or_inconsistent_file_is_refused(tmp_path: Path) -> None:
    x, y = _clusters(300, seed=6)
    nov = NoveltyModel.fit(x, y)
    nov.save(tmp_path / "novelty.npz")
    data = (tmp_path / "novelty.npz").read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(NoveltyError, match=re.escape("cut.npz: ")):
            NoveltyModel.load(tmp_path / "cut.npz")
    np.savez(
        tmp_path / "odd.npz",
        method=np.array("mahalanobis-shared-covariance"),
        means=nov.means,
        whitening=nov.whitening[:, :3],
        labels=nov.labels,
        threshold=np.array(nov.threshold),
        quantile=np.array(nov.quantile),
    )
    with pytest.raises(NoveltyError, match=r"odd.npz: a damaged novelty model \(whitening"):
        NoveltyModel.load(tmp_path / "odd.npz")


def test_the_digest_survives_saving_and_tells_models_apart(tmp_path: Path) -> None:
    x, y = _clusters(300, seed=7)
    nov = NoveltyModel.fit(x, y)
    nov.save(tmp_path / "novelty.npz")
    assert NoveltyModel.load(tmp_path / "novelty.npz").digest == nov.digest
    other = NoveltyModel.fit(*_clusters(300, seed=8))
    assert other.digest != nov.digest


@pytest.fixture(scope="module")
def model_without_double_peak(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small CNN trained on emission and absorption only: double-peak is an unseen class."""
    folder = tmp_path_factory.mktemp("novelty")
    path = write_dataset(
        folder / "d.h5", profile_rows({"emission": 300, "absorption": 300}, seed=1)
    )
    config = TrainConfig(model="cnn-small", epochs=15, patience=5, seed=0)
    return train([path], folder / "model", config=config).model


def test_novel_spectra_score_above_threshold(model_without_double_peak: Any) -> None:
    model = model_without_double_peak
    nov = model.novelty
    assert nov is not None
    rng = np.random.default_rng(0)

    def novel_fraction(x: np.ndarray) -> float:
        return float(np.mean(nov.score(model.embed(x)) > nov.threshold))

    ordinary = profile_rows({"emission": 200, "absorption": 200}, seed=7).X
    unseen = profile_rows({"double-peak": 200}, seed=8).X
    noise = rng.normal(size=(100, 140)).astype(np.float32)
    spike = np.zeros((100, 140), np.float32)
    spike[np.arange(100), rng.integers(5, 135, 100)] = 1.0
    spike = (spike - spike.mean(axis=1, keepdims=True)) / spike.std(axis=1, keepdims=True)
    assert novel_fraction(ordinary) <= 0.05
    assert novel_fraction(noise) == 1.0
    assert novel_fraction(spike) == 1.0
    assert novel_fraction(unseen) >= 0.5
