"""Novelty: how unlike the training data a spectrum is, in the network's own feature space.

A class-conditional Gaussian with one shared covariance is fitted to the
penultimate-layer features of the training split (Lee et al. 2018, "A simple
unified framework for detecting out-of-distribution samples"). The score of a
spectrum is its Mahalanobis distance to the nearest class mean; the threshold
is a high quantile (0.99 by default) of the scores of held-out spectra of the
training kinds (training calls it with the validation split), so about 1 % of
spectra like the training data are flagged `Quality.NOVEL`, and
spectra unlike all of it (noise, artefacts, unseen kinds of stars) score far
above it. The covariance is shrunk (Ledoit-Wolf) because ReLU features have
dead and nearly collinear dimensions.

Scoring costs one (n, d) x (d, d) product: the precision matrix is factored
once into a whitening matrix, after which every class is a dot product.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectraldl.core.atomic import atomic_write

METHOD = "mahalanobis-shared-covariance"
FORMAT_VERSION = 1


class NoveltyError(ValueError):
    """A novelty file that is missing or unreadable, or features of the wrong width."""


@dataclass(frozen=True)
class NoveltyModel:
    """Class means and a whitening matrix in feature space, with the score threshold.

    Attributes
    ----------
    means
        float64 (k, d), class means of the training features.
    whitening
        float64 (d, d), ``W`` with ``W @ W.T`` the shrunk precision matrix.
    labels
        (k,) the class label of each mean, as given to `fit`.
    threshold
        Score above which a spectrum is novel.
    quantile
        The quantile of training scores that ``threshold`` is.
    """

    means: NDArray[np.float64]
    whitening: NDArray[np.float64]
    labels: NDArray
    threshold: float
    quantile: float

    @classmethod
    def fit(
        cls,
        features: ArrayLike,
        labels: ArrayLike,
        *,
        quantile: float = 0.99,
        calibration: ArrayLike | None = None,
    ) -> NoveltyModel:
        """Fit class means and a shared shrunk covariance to training ``features`` (n, d).

        ``labels`` (n,) are the training classes. The threshold is the
        ``quantile`` of the scores of ``calibration`` features (held-out
        spectra of the same kinds, e.g. the validation split) when given, else
        of the training features themselves; held-out spectra score a little
        higher than the ones the model was fitted on, so calibrating on them
        makes the novel fraction of new ordinary spectra about ``1 - quantile``.

        Parameters
        ----------
        features
            Penultimate-layer features of the training spectra, (n, d).
        labels
            Their classes, (n,).
        quantile
            Quantile of the calibration scores taken as the threshold, in (0, 1).
        calibration
            Features of held-out spectra, (m, d), to set the threshold with.

        Returns
        -------
        NoveltyModel
            Class means, whitening of the shared covariance, and the threshold.

        Raises
        ------
        NoveltyError
            Shapes that do not match, a quantile outside (0, 1), fewer than two
            features per class, or no calibration features.
        """
        from sklearn.covariance import LedoitWolf

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels)
        if x.ndim != 2 or len(x) != len(y):
            raise NoveltyError(f"features must be (n, d) with n labels, got {x.shape}, {y.shape}")
        if not 0.0 < quantile < 1.0:
            raise NoveltyError(f"quantile must be in (0, 1), got {quantile}")
        classes = np.unique(y)
        if len(x) < 2 * len(classes):
            raise NoveltyError(f"too few training features ({len(x)}) for {len(classes)} classes")
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        centred = x - means[np.searchsorted(classes, y)]
        covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
        # Whitening W with W W^T = C^-1, from the eigendecomposition (C is SPD after shrinkage).
        eigval, eigvec = np.linalg.eigh(covariance)
        eigval = np.maximum(eigval, eigval.max() * 1e-12)
        whitening = eigvec / np.sqrt(eigval)
        unset = cls(
            means=means, whitening=whitening, labels=classes, threshold=np.inf, quantile=quantile
        )
        reference = x if calibration is None else np.asarray(calibration, dtype=np.float64)
        if len(reference) == 0:
            raise NoveltyError("no calibration features to set the threshold with")
        threshold = float(np.quantile(unset.score(reference), quantile))
        return cls(
            means=means, whitening=whitening, labels=classes, threshold=threshold, quantile=quantile
        )

    @property
    def dim(self) -> int:
        """Feature width d."""
        return int(self.means.shape[1])

    @property
    def digest(self) -> str:
        """SHA-256 of the arrays and numbers, the same for every saved copy of this model.

        A model card records it, so a novelty file from another model is caught at load.
        """
        sha = hashlib.sha256()
        for array in (self.means, self.whitening, np.asarray(self.labels).astype(str)):
            sha.update(str(array.shape).encode())
            sha.update(np.ascontiguousarray(array).tobytes())
        sha.update(np.array([self.threshold, self.quantile], dtype=np.float64).tobytes())
        return sha.hexdigest()

    def check(self, source: str = "the novelty model") -> None:
        """Raise `NoveltyError` unless the shapes fit together and the numbers are finite.

        Parameters
        ----------
        source
            What to name in the message (the file read, say).

        Raises
        ------
        NoveltyError
            Means, whitening and labels of mismatched shapes, non-finite
            numbers, or a threshold or quantile out of range.
        """
        k, d = self.means.shape if self.means.ndim == 2 else (0, 0)
        problems = []
        if self.means.ndim != 2 or k == 0 or d == 0:
            problems.append(f"means have shape {self.means.shape}, not (classes, features)")
        elif self.whitening.shape != (d, d):
            problems.append(f"whitening has shape {self.whitening.shape}, not ({d}, {d})")
        elif np.asarray(self.labels).shape != (k,):
            problems.append(f"{np.asarray(self.labels).shape} labels for {k} means")
        elif not (np.isfinite(self.means).all() and np.isfinite(self.whitening).all()):
            problems.append("non-finite means or whitening")
        if not np.isfinite(self.threshold) or not 0.0 < self.quantile < 1.0:
            problems.append(f"threshold {self.threshold}, quantile {self.quantile}")
        if problems:
            raise NoveltyError(f"{source}: a damaged novelty model ({'; '.join(problems)})")

    def distances(self, features: ArrayLike) -> NDArray[np.float64]:
        """Mahalanobis distance of each row to each class mean, (n, k).

        Parameters
        ----------
        features
            Penultimate-layer features, (n, d).

        Returns
        -------
        numpy.ndarray
            Distances (n, k), float64, classes in the order of `labels`.

        Raises
        ------
        NoveltyError
            ``features`` not of shape (n, d).
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise NoveltyError(f"features must be (n, {self.dim}), got {x.shape}")
        z = x @ self.whitening
        m = self.means @ self.whitening
        d2 = (z * z).sum(axis=1)[:, None] - 2.0 * z @ m.T + (m * m).sum(axis=1)[None, :]
        return np.sqrt(np.maximum(d2, 0.0))

    def score(self, features: ArrayLike) -> NDArray[np.float64]:
        """Novelty score (n,): distance to the nearest class mean; larger is more novel.

        Parameters
        ----------
        features
            Penultimate-layer features, (n, d).

        Returns
        -------
        numpy.ndarray
            Scores (n,), float64.
        """
        return self.distances(features).min(axis=1)

    def is_novel(self, features: ArrayLike) -> NDArray[np.bool_]:
        """True where the score is above `threshold`.

        Parameters
        ----------
        features
            Penultimate-layer features, (n, d).

        Returns
        -------
        numpy.ndarray
            Booleans (n,).
        """
        return self.score(features) > self.threshold

    def save(self, path: str | Path) -> None:
        """Write the model to an ``.npz`` file (no pickles; readable with plain numpy).

        Parameters
        ----------
        path
            The file to write; replaced only once the new one is complete.
        """
        path = Path(path)
        labels = np.asarray(self.labels)
        # np.savez adds .npz to a name without it: the temporary keeps the suffix.
        with atomic_write(path, keep_suffix=True) as tmp:
            self._savez(tmp, labels)

    def _savez(self, tmp: Path, labels: np.ndarray) -> None:
        np.savez(
            tmp,
            method=np.array(METHOD),
            format_version=np.array(FORMAT_VERSION),
            means=self.means,
            whitening=self.whitening,
            labels=labels.astype(str) if labels.dtype == object else labels,
            threshold=np.array(self.threshold),
            quantile=np.array(self.quantile),
        )

    @classmethod
    def load(cls, path: str | Path) -> NoveltyModel:
        """Read a model written by `save`; a missing or foreign file is a `NoveltyError`.

        Parameters
        ----------
        path
            An ``.npz`` file written by `save`.

        Returns
        -------
        NoveltyModel
            The model, checked (`check`).

        Raises
        ------
        NoveltyError
            A missing, truncated, damaged or foreign file.
        """
        path = Path(path)
        if not path.exists():
            raise NoveltyError(f"{path}: no such novelty file")
        try:
            # An open handle, closed here whatever np.load raises (it leaks its own on a bad zip).
            with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
                if str(data["method"]) != METHOD:
                    raise NoveltyError(f"{path}: unknown novelty method {data['method']!s}")
                model = cls(
                    means=np.asarray(data["means"], dtype=np.float64),
                    whitening=np.asarray(data["whitening"], dtype=np.float64),
                    labels=data["labels"],
                    threshold=float(data["threshold"]),
                    quantile=float(data["quantile"]),
                )
        except NoveltyError:
            raise
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise NoveltyError(f"{path}: not a novelty model ({exc})") from None
        except zlib.error as exc:
            raise NoveltyError(f"{path}: damaged, cannot be decompressed ({exc})") from None
        model.check(str(path))
        return model
