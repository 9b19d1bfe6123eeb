"""A trained model as it travels: weights plus a card, loaded back into a `TrainedModel`.

``MODEL_DIR/`` holds ``model.pt`` (the state dict), ``card.json`` (what the
network is and what it expects: architecture and its arguments, classes in
output order, grid, preprocessing, temperature, training data hashes,
versions, metrics) and, beside them, ``novelty.npz``, ``history.csv``,
``curves.png``, ``confusion.png``, ``metrics.json`` and ``split.csv``.
`load_model` rebuilds the network from the card, so a model directory needs
no code of its own; `TrainedModel.check_compatible` refuses data preprocessed
otherwise than the model was trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from spectraldl.io.dataset import Dataset, DatasetInfo, dataset_info, is_dataset
from spectraldl.io.labels import CLASSES
from spectraldl.ml.data import describe_config, flux_relevant, read_dataset_any
from spectraldl.ml.models import SpectrumNet, build_model
from spectraldl.ml.novelty import NoveltyError, NoveltyModel
from spectraldl.ml.pretrained import missing_model
from spectraldl.prep.preprocess import PreprocessConfig

CARD_FORMAT = "spectraldl-model"
CARD_VERSION = 1
WEIGHTS = "model.pt"
CARD = "card.json"
NOVELTY = "novelty.npz"


class ModelDirError(ValueError):
    """A model directory that is missing, incomplete or corrupt (names the path)."""


class ModelMismatch(ValueError):
    """Data whose grid or preprocessing differs from what the model was trained on."""


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        if torch.version.cuda is None:
            raise ValueError(
                f"device 'cuda' asked for, but this PyTorch ({torch.__version__}) is a CPU-only "
                "build: install a CUDA build of PyTorch (README, 'Your own data', 'A GPU')"
            )
        raise ValueError(
            f"device 'cuda' asked for, but PyTorch {torch.__version__} (CUDA "
            f"{torch.version.cuda}) sees no GPU here: check the NVIDIA driver (nvidia-smi)"
        )
    return torch.device(name)


def softmax(logits: ArrayLike, *, temperature: float = 1.0) -> NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature`` (numerically stable), float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def dataset_config(source: Any) -> tuple[PreprocessConfig, str]:
    """The preprocessing of a config, dataset, dataset info, dict or file path, and its name."""
    if isinstance(source, PreprocessConfig):
        return source, "the data"
    if isinstance(source, Dataset):
        return source.config, source.path or "the dataset"
    if isinstance(source, DatasetInfo):
        return source.config, source.path
    if isinstance(source, Mapping):
        return PreprocessConfig.from_dict(dict(source)), "the data"
    if isinstance(source, str | Path):
        if is_dataset(source):
            return dataset_info(source).config, str(source)
        return read_dataset_any(source).config, str(source)
    raise TypeError(f"cannot tell the preprocessing of a {type(source).__name__}")


@dataclass
class Architecture:
    """The network of a card: its name in `spectraldl.ml.models.ARCHITECTURES` and arguments."""

    name: str
    kwargs: dict[str, Any]
    n_parameters: int | None = None
    flops_per_spectrum: int | None = None
    embedding_dim: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Architecture:
        """The ``architecture`` section of ``card.json`` (`TypeError` for unknown keys)."""
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The section as ``card.json`` holds it (absent counts left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


_CARD_SECTIONS = (
    "format",
    "format_version",
    "created",
    "architecture",
    "classes",
    "class_codes",
    "grid",
    "preprocessing",
    "temperature",
    "training",
    "parent",
    "split",
    "datasets",
    "data_sha256",
    "novelty",
    "versions",
)
"""The sections of ``card.json`` in the order written; then `ModelCard.extra`, then metrics."""


@dataclass
class ModelCard:
    """What a network is and what it expects: ``card.json`` as a typed object.

    `from_json` and `to_json` round-trip the JSON: a section absent from the
    file is None here and stays absent; sections spectraldl does not know
    (``learning``, say) are kept in ``extra``.

    Attributes
    ----------
    classes
        Class names in the order of the network's outputs.
    preprocessing
        `PreprocessConfig.to_dict` of the data the network was trained on.
    architecture
        The network (`Architecture`); `network_from_card` builds it.
    temperature
        Softmax temperature fitted on the validation split (None: 1.0).
    training, parent, split, datasets, novelty, versions, metrics
        How the model was trained, from which parent, on which rows, its
        novelty model, software versions and headline metrics.
    extra
        Further sections, in the order given.
    """

    classes: list[str]
    preprocessing: dict[str, Any]
    architecture: Architecture | None = None
    format: str | None = None
    format_version: int | None = None
    created: str | None = None
    class_codes: list[int] | None = None
    grid: dict[str, Any] | None = None
    temperature: float | None = None
    training: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    datasets: list[dict[str, Any]] | None = None
    data_sha256: str | None = None
    novelty: dict[str, Any] | None = None
    versions: dict[str, str] | None = None
    metrics: dict[str, dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelCard:
        """The card of a parsed ``card.json`` (`TypeError` when classes or preprocessing lack)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        if "architecture" in values:
            values["architecture"] = Architecture.from_json(values["architecture"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """The card as ``card.json`` holds it: the same keys and values `from_json` read."""
        out: dict[str, Any] = {}
        for name in _CARD_SECTIONS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_json() if isinstance(value, Architecture) else value
        out.update(self.extra)
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out


def _weights_digest(network: torch.nn.Module) -> bytes:
    sha = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.digest()


@dataclass
class TrainedModel:
    """A network with its card: what `load_model` returns and what inference uses.

    Attributes
    ----------
    network
        The PyTorch module, in eval mode, on ``device``.
    card
        The card (`ModelCard`; a mapping as in ``card.json`` is read into one).
    device
        Where the network runs.
    path
        The model directory ('' for a model not yet saved).
    novelty
        The novelty model saved beside the weights (``novelty.npz``), if any.
    """

    network: SpectrumNet
    card: ModelCard
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    path: str = ""
    novelty: NoveltyModel | None = None

    def __post_init__(self) -> None:
        if isinstance(self.card, Mapping):
            self.card = ModelCard.from_json(self.card)
        self.network.eval()

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in the order of the network's outputs."""
        return tuple(self.card.classes)

    @property
    def architecture(self) -> Architecture:
        """The card's network (`ModelDirError` for a card that has none)."""
        if self.card.architecture is None:
            raise ModelDirError(f"{self.path or 'the model'}: the card names no architecture")
        return self.card.architecture

    @property
    def config(self) -> PreprocessConfig:
        """The preprocessing the model expects its input to have gone through."""
        return PreprocessConfig.from_dict(self.card.preprocessing)

    @property
    def temperature(self) -> float:
        """Softmax temperature fitted on the validation split (1.0: none)."""
        return float(1.0 if self.card.temperature is None else self.card.temperature)

    @property
    def grid_n(self) -> int:
        """Input width (points on the grid)."""
        return int(self.card.preprocessing["grid_n"])

    @cached_property
    def model_id(self) -> str:
        """A short stable id: ``m`` and 11 hex digits of the SHA-256 of the weights and the card.

        The letter keeps the id text wherever it goes: an all-digit id with one
        ``e`` (``123e45678901``) would be read back from a CSV table as a number.
        """
        sha = hashlib.sha256(_weights_digest(self.network))
        sha.update(json.dumps(self.card.to_json(), sort_keys=True).encode())
        return "m" + sha.hexdigest()[:11]

    def check_compatible(self, data: Any) -> None:
        """Raise `ModelMismatch` when ``data`` was preprocessed otherwise than the model expects.

        ``data`` is a `PreprocessConfig`, a `Dataset`, a `DatasetInfo`, a
        preprocessing dict, or the path of a dataset (HDF5 or published CSV).
        Only the grid and the steps that change the flux are compared
        (not ``min_snr`` and the other quality thresholds).
        """
        config, name = dataset_config(data)
        mine, theirs = flux_relevant(self.config), flux_relevant(config)
        if mine == theirs:
            return
        differing = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        details = "; ".join(
            f"{k}: data {theirs.get(k, 'absent')}, model {mine.get(k, 'absent')}" for k in differing
        )
        where = self.path or "this model"
        raise ModelMismatch(
            f"{name} does not match the model {where}: {details}. "
            f"The data has {describe_config(config)}; the model expects "
            f"{describe_config(self.config)}. Preprocess the spectra again with the "
            "model's settings (TrainedModel.config) or use a model trained on such data."
        )

    def _batches(self, x: ArrayLike, batch_size: int) -> tuple[NDArray[np.float32], int]:
        array = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.grid_n:
            raise ModelMismatch(
                f"input has shape {array.shape}; the model {self.path or ''} expects "
                f"(n, {self.grid_n}) spectra on its grid"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return array, batch_size

    def predict_logits_and_features(
        self, x: ArrayLike, *, batch_size: int = 1024
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Raw logits (n, k) and penultimate features (n, d) in one pass (float32)."""
        array, batch_size = self._batches(x, batch_size)
        n = len(array)
        logits = np.empty((n, len(self.classes)), np.float32)
        features = np.empty((n, self.network.embedding_dim), np.float32)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                chunk = torch.from_numpy(array[start : start + batch_size]).to(self.device)
                out, feat = self.network.forward_with_features(chunk)
                logits[start : start + len(chunk)] = out.float().cpu().numpy()
                features[start : start + len(chunk)] = feat.float().cpu().numpy()
        return logits, features

    def predict_logits(self, x: ArrayLike, *, batch_size: int = 1024) -> NDArray[np.float32]:
        """Raw logits (n, k), before temperature and softmax (float32)."""
        array, batch_size = self._batches(x, batch_size)
        out = np.empty((len(array), len(self.classes)), np.float32)
        with torch.inference_mode():
            for start in range(0, len(array), batch_size):
                chunk = torch.from_numpy(array[start : start + batch_size]).to(self.device)
                out[start : start + len(chunk)] = self.network(chunk).float().cpu().numpy()
        return out

    def proba_from_logits(self, logits: ArrayLike) -> NDArray[np.float32]:
        """Calibrated class probabilities: softmax of ``logits / temperature`` (float32)."""
        return softmax(logits, temperature=self.temperature).astype(np.float32)

    def predict_proba(self, x: ArrayLike, *, batch_size: int = 1024) -> NDArray[np.float32]:
        """Class probabilities (n, k) in the order of `classes`, temperature applied.

        ``x`` is float32 (n, grid_n), preprocessed with `config`.
        """
        return self.proba_from_logits(self.predict_logits(x, batch_size=batch_size))

    def embed(self, x: ArrayLike, *, batch_size: int = 1024) -> NDArray[np.float32]:
        """Penultimate-layer features (n, d), the space the novelty score lives in."""
        array, batch_size = self._batches(x, batch_size)
        out = np.empty((len(array), self.network.embedding_dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(array), batch_size):
                chunk = torch.from_numpy(array[start : start + batch_size]).to(self.device)
                out[start : start + len(chunk)] = self.network.embed(chunk).float().cpu().numpy()
        return out


def network_from_card(card: ModelCard) -> SpectrumNet:
    """Build the (untrained) network a card describes (`KeyError` for a card without one)."""
    if card.architecture is None:
        raise KeyError("architecture")
    return build_model(card.architecture.name, **card.architecture.kwargs)


def _read_card(model_dir: Path) -> dict[str, Any]:
    if not model_dir.exists():
        raise ModelDirError(missing_model(model_dir))
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: not a directory (a model is a directory with {CARD})")
    card_path = model_dir / CARD
    if not card_path.exists():
        raise ModelDirError(f"{model_dir}: not a model directory (no {CARD})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{card_path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelDirError(f"{card_path}: not a spectraldl model card (format != {CARD_FORMAT!r})")
    if card.get("format_version", 0) > CARD_VERSION:
        raise ModelDirError(
            f"{card_path}: card format {card['format_version']} is newer than this "
            f"spectraldl reads ({CARD_VERSION}); upgrade spectraldl"
        )
    for key in ("architecture", "classes", "preprocessing"):
        if key not in card:
            raise ModelDirError(f"{card_path}: the card lacks {key!r}")
    problem = _card_problem(card)
    if problem:
        raise ModelDirError(f"{card_path}: {problem}")
    return card


def _card_problem(card: dict[str, Any]) -> str:
    """What is wrong with a card's classes, preprocessing, grid or temperature ('' if nothing)."""
    classes = card["classes"]
    if not isinstance(classes, list) or not classes:
        return f"'classes' must be a non-empty list of names, got {classes!r}"
    if not all(isinstance(c, str) and c.strip() for c in classes):
        return f"'classes' holds a name that is not a non-empty string: {classes!r}"
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        return f"class names {', '.join(map(repr, repeated))} appear more than once in {classes}"
    foreign = [c for c in classes if c not in CLASSES]
    if foreign:
        return (
            f"class {'names' if len(foreign) > 1 else 'name'} {', '.join(map(repr, foreign))} "
            f"{'are' if len(foreign) > 1 else 'is'} not spectraldl's; "
            f"its classes are {', '.join(CLASSES)}"
        )
    try:
        config = PreprocessConfig.from_dict(card["preprocessing"])
    except ValueError as exc:
        return str(exc)
    grid = card.get("grid")
    expected = (config.grid_start_aa, config.grid_stop_aa, config.grid_n)
    if grid is not None and (
        not isinstance(grid, dict)
        or (grid.get("start_aa"), grid.get("stop_aa"), grid.get("n")) != expected
    ):
        return f"'grid' {grid!r} differs from the preprocessing's grid {expected}"
    temperature = card.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        return f"'temperature' must be a number, got {temperature!r}"
    if not (math.isfinite(temperature) and temperature > 0):
        return f"'temperature' must be finite and positive, got {temperature!r}"
    return ""


def _check_network(network: SpectrumNet, card: ModelCard, card_path: Path) -> None:
    """Run one spectrum of zeros: the outputs must be the card's classes, the input its grid."""
    grid_n = int(card.preprocessing.get("grid_n", PreprocessConfig.grid_n))
    try:
        with torch.inference_mode():
            out = network.eval()(torch.zeros(1, grid_n))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelDirError(
            f"{card_path}: the network does not take the card's grid of {grid_n} points ({first})"
        ) from None
    classes = card.classes
    if tuple(out.shape) != (1, len(classes)):
        raise ModelDirError(
            f"{card_path}: the network has {out.shape[-1]} outputs, the card names "
            f"{len(classes)} classes ({', '.join(classes)})"
        )


def _load_novelty(path: Path, network: SpectrumNet, card: ModelCard) -> NoveltyModel:
    """The novelty model beside the weights, checked against the network and the card."""
    try:
        novelty = NoveltyModel.load(path)
    except NoveltyError as exc:
        raise ModelDirError(str(exc)) from None
    if novelty.dim != network.embedding_dim:
        raise ModelDirError(
            f"{path}: {novelty.dim} features, the network's penultimate layer has "
            f"{network.embedding_dim}: a novelty file of another model"
        )
    labels = np.asarray(novelty.labels)
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= len(card.classes):
        raise ModelDirError(
            f"{path}: class labels {labels.tolist()} are not indices of the card's "
            f"{len(card.classes)} classes: a novelty file of another model"
        )
    recorded = (card.novelty or {}).get("sha256")
    if recorded is not None and recorded != novelty.digest:
        raise ModelDirError(
            f"{path}: not the novelty model this card was saved with (its SHA-256 "
            f"{novelty.digest[:12]}, the card's {str(recorded)[:12]}): a novelty file of another "
            "model or a damaged copy"
        )
    return novelty


def load_model(model_dir: str | Path, device: str | torch.device = "auto") -> TrainedModel:
    """Load a model directory: rebuild the network from ``card.json``, load ``model.pt``.

    Raises `ModelDirError` naming the path when the directory, the card or
    the weights are missing or do not fit together: classes that are not the
    network's outputs or repeat, a grid that is not its input, unknown
    preprocessing keys, a temperature that is not a number, a truncated
    ``novelty.npz`` or one of another model (the card records its SHA-256).
    """
    model_dir = Path(model_dir)
    card_json = _read_card(model_dir)
    target = select_device(device)
    try:
        card = ModelCard.from_json(card_json)
        network = network_from_card(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{model_dir / CARD}: cannot build its network ({exc})") from None
    weights = model_dir / WEIGHTS
    if not weights.exists():
        raise ModelDirError(f"{model_dir}: the weights file {WEIGHTS} is missing")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise ModelDirError(
            f"{weights}: unreadable weights ({type(exc).__name__}: {exc})"
        ) from None
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise ModelDirError(
            f"{weights}: the weights do not fit the card's network ({' '.join(first)})"
        ) from None
    _check_network(network, card, model_dir / CARD)
    novelty = None
    if (model_dir / NOVELTY).exists():
        novelty = _load_novelty(model_dir / NOVELTY, network, card)
    elif (card.novelty or {}).get("sha256"):
        raise ModelDirError(f"{model_dir}: {NOVELTY} is missing (the card records one)")
    network.to(target)
    return TrainedModel(
        network=network, card=card, device=target, path=str(model_dir), novelty=novelty
    )
