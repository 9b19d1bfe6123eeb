"""Train a network on labelled datasets: split, SMOTE, fit, calibrate, evaluate, save.

The thesis' recipe, made reproducible:

1. labelled rows of one or more datasets (spectraldl HDF5 or the published
   CSV layout), classes emission, absorption, double-peak and noise where
   present (``unknown`` is left out, as in the thesis);
2. real spectra (``meta/origin == "real"``) are evaluation data: kept out of
   fitting and reported on their own, unless asked otherwise (``real_rows``);
3. a stratified split of the rest: test 10 %, validation 20 %, training the
   remaining 70 %, drawn with the seed;
4. SMOTE (imbalanced-learn) on the training split only;
5. Adam, cross-entropy on logits, batches of 256, early stopping on the
   validation loss (the best epoch's weights are kept); the data stay on the
   device for the whole run; deterministic on CPU for a seed;
6. temperature scaling fitted on the validation split (Guo et al. 2017),
   reliability (ECE) reported before and after;
7. the novelty model fitted on the training split's penultimate features,
   its threshold the 0.99 quantile of the validation split's scores;
8. the model directory written atomically (see `spectraldl.ml.modelcard`).

Fine-tuning (``init``, `spectraldl train --init`) starts from a trained model
instead of random weights: same network, classes and grid (refused otherwise,
naming what differs). The new labelled rows are all fitted except a held-out
share of each class (``real_holdout``), and they are mixed with a replay
sample of the parent's own training split (``replay_ratio`` synthetic rows per
new row, read from the datasets the parent's card records or from
``replay``) so that the model does not forget what it knew. The parent's test
split is the forgetting test; the parent is scored beside the child on the
same held-out rows, and its id goes into the card.

`load_model` and `TrainedModel` live in `spectraldl.ml.modelcard` and are
re-exported here.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np
import torch
from numpy.typing import NDArray

from spectraldl.core.jsonsafe import json_safe
from spectraldl.core.signals import held_stops
from spectraldl.core.versions import versions
from spectraldl.io.archives.ondrejov import observation_key
from spectraldl.io.dataset import Dataset, Rows
from spectraldl.io.labels import CLASSES, label_code
from spectraldl.jobs.files import process_alive
from spectraldl.ml.channels_last import ChannelsLastNet, has_convolutions
from spectraldl.ml.data import LabelledRows, TrainingError, combine_datasets, read_dataset_any
from spectraldl.ml.evaluation import (
    classification_metrics,
    fit_temperature,
    plot_confusions,
    plot_curves,
)
from spectraldl.ml.modelcard import (
    CARD,
    CARD_FORMAT,
    CARD_VERSION,
    NOVELTY,
    WEIGHTS,
    Architecture,
    ModelCard,
    ModelDirError,
    ModelMismatch,
    TrainedModel,
    load_model,
    select_device,
    softmax,
)
from spectraldl.ml.models import SpectrumNet, build_model, count_parameters, flops_per_spectrum
from spectraldl.ml.novelty import NoveltyModel
from spectraldl.ml.pretrained import models_dir, resolve_model
from spectraldl.prep.preprocess import PreprocessConfig

__all__ = [
    "TRAINABLE_CLASSES",
    "ModelDirError",
    "ModelMismatch",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "TrainingError",
    "fit_network",
    "holdout_split",
    "keep_observations_together",
    "load_model",
    "read_dataset_any",
    "smote_balance",
    "stratified_split",
    "train",
]

TRAINABLE_CLASSES: tuple[str, ...] = ("emission", "absorption", "double-peak", "noise")
"""Classes a model may learn, in output order; ``unknown`` is never one."""

MIN_ROWS_PER_CLASS = 10
"""Fewer labelled rows than this in a class cannot be split into training/validation/test."""

REAL_ROWS = ("auto", "evaluate", "fit")
DEFAULT_REPLAY_RATIO = 2.0
"""Fine-tuning: rows of the parent's training split replayed per new fitted row. Two to one
keeps what the parent learnt (its test accuracy) while the new rows still make a third of
every batch; benchmarks/active_learning.py measures the forgetting."""
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of a training run; recorded in the model card.

    Attributes
    ----------
    model
        Network name (`spectraldl.ml.models.ARCHITECTURES`): ``cnn``, ``fnn``, ``cnn-small``.
    epochs
        Most epochs to run; early stopping usually ends sooner.
    batch_size, learning_rate
        Adam's mini-batch size and step size (thesis: 256, 0.001).
    patience
        Epochs without a lower validation loss before stopping.
    seed
        Seeds the split, SMOTE, the initial weights, dropout and shuffling.
    test_fraction, val_fraction
        Shares of the fitted rows held out for test and validation.
    smote
        Balance the training split with SMOTE.
    real_rows
        ``evaluate``: real rows are only evaluated; ``fit``: they are split
        and fitted like the rest; ``auto``: ``evaluate`` unless the data has
        no labelled synthetic rows.
    calibrate
        Fit a softmax temperature on the validation split.
    novelty_quantile
        Quantile of the validation split's novelty scores used as the threshold.
    device
        ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
    bf16
        bfloat16 autocast for the forward pass (meant for GPUs).
    compile
        ``torch.compile`` the network (meant for GPUs).
    compile_mode
        ``torch.compile``'s mode: ``default``, ``reduce-overhead`` (CUDA
        graphs: fewer kernel launches per step, which dominate at batch 256)
        or ``max-autotune``.
    cuda_graph
        Capture each training step (forward, loss, backward, Adam) in one CUDA
        graph and replay it: at batch 256 launching the kernels costs more
        than running them. Batches are then all full (the last one of an
        epoch wraps around the shuffled order). Not combined with ``compile``.
    channels_last
        Run the CNNs' 1-D convolutions as 2-D ones on channels-last tensors
        (`spectraldl.ml.channels_last`): cuDNN's tensor-core layout on GPUs.
    replay_ratio
        Fine-tuning only: rows of the parent's training split replayed per new
        fitted row (validation alike; the parent's whole test split is the
        forgetting test). 0 fine-tunes on the new rows alone.
    real_holdout
        Fine-tuning only: share of the new labelled rows of each class kept
        out of fitting for evaluation (at least one row of every class that
        has two or more, never all of a class).
    """

    model: str = "cnn"
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 10
    seed: int = 0
    test_fraction: float = 0.1
    val_fraction: float = 0.2
    smote: bool = True
    real_rows: str = "auto"
    calibrate: bool = True
    novelty_quantile: float = 0.99
    device: str = "auto"
    bf16: bool = False
    compile: bool = False
    compile_mode: str = "default"
    cuda_graph: bool = False
    channels_last: bool = False
    replay_ratio: float = DEFAULT_REPLAY_RATIO
    real_holdout: float = 0.3

    def __post_init__(self) -> None:
        if self.compile and self.cuda_graph:
            raise TrainingError("choose one of compile and cuda_graph")
        if self.compile_mode not in COMPILE_MODES:
            raise TrainingError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}")
        if self.real_rows not in REAL_ROWS:
            raise TrainingError(f"real_rows must be one of {', '.join(REAL_ROWS)}")
        if not (0 < self.test_fraction < 1 and 0 < self.val_fraction < 1):
            raise TrainingError("test_fraction and val_fraction must be in (0, 1)")
        if self.test_fraction + self.val_fraction >= 0.9:
            raise TrainingError("test_fraction + val_fraction leaves too little to train on")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise TrainingError("epochs, batch_size and patience must be >= 1")
        if not (math.isfinite(self.replay_ratio) and self.replay_ratio >= 0):
            raise TrainingError(f"replay_ratio must be >= 0, got {self.replay_ratio}")
        if not 0 < self.real_holdout < 1:
            raise TrainingError(f"real_holdout must be in (0, 1), got {self.real_holdout}")


# --- data --------------------------------------------------------------------------------


def stratified_split(
    labels: NDArray[np.integer], *, test_fraction: float, val_fraction: float, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Indices of training, validation and test rows, stratified by label.

    ``test_fraction`` and ``val_fraction`` are shares of all rows (thesis:
    0.1 and 0.2). The same labels and seed give the same split.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=seed
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        stratify=labels[rest],
        random_state=seed + 1,
    )
    return np.sort(train), np.sort(val), np.sort(test)


def keep_observations_together(
    ids: NDArray[Any], *sides: NDArray[np.int64]
) -> tuple[NDArray[np.int64], ...]:
    """``sides`` (row indices into ``ids``, the first side winning) with every observation's
    rows on one side: the one of the first side any of its forms is on (`observation_key`:
    the raw and SSAP forms of an Ondřejov exposure are two rows). Unchanged without such."""
    keys = [observation_key(str(i)) for i in ids]
    rank: dict[str, int] = {}
    for r, side in enumerate(sides):
        for i in side:
            rank.setdefault(keys[i], r)
    every = np.sort(np.concatenate(sides)) if sides else np.empty(0, np.int64)
    chosen = np.array([rank[keys[i]] for i in every], np.int64)
    return tuple(every[chosen == r].astype(np.int64) for r in range(len(sides)))


def smote_balance(
    x: NDArray[np.float32], y: NDArray[np.integer], *, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Oversample the minority classes with SMOTE up to the largest class.

    Give it the training split only: new rows interpolate between a row and
    one of its nearest same-class neighbours, so any row passed in can leak
    into the result. The first ``len(x)`` returned rows are ``x`` itself.
    """
    from imblearn.over_sampling import SMOTE

    counts = np.bincount(np.asarray(y, dtype=np.int64))
    present = counts[counts > 0]
    if len(present) < 2 or present.min() == present.max():
        return np.asarray(x, np.float32), np.asarray(y, np.int64)
    k = int(min(5, present.min() - 1))
    if k < 1:
        return np.asarray(x, np.float32), np.asarray(y, np.int64)
    x_res, y_res = SMOTE(k_neighbors=k, random_state=seed).fit_resample(x, y)
    return np.asarray(x_res, np.float32), np.asarray(y_res, np.int64)


# --- the fitting loop ----------------------------------------------------------------------


@dataclass
class FitResult:
    """A trained network and how the training went."""

    network: SpectrumNet
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    device: torch.device


def _evaluate_loss(
    network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch: int, bf16: bool
) -> tuple[float, float]:
    network.eval()
    loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(x), batch):
            logits = network(x[start : start + batch]).float()
            target = y[start : start + batch]
            loss += torch.nn.functional.cross_entropy(logits, target, reduction="sum").double()
            correct += (logits.argmax(dim=1) == target).sum()
    n = max(len(x), 1)
    return float(loss) / n, float(correct) / n


def _check_cuda_graph(config: TrainConfig, device: torch.device) -> None:
    if config.cuda_graph and device.type != "cuda":
        raise TrainingError(f"cuda_graph (--cuda-graph) needs a CUDA device, not {device}")


class _GraphedStep:
    """One training step captured in a CUDA graph; calling it replays the graph on a batch.

    The graph gathers the batch from the training data on the device by the
    indices given, runs forward, loss, backward and Adam, and adds the batch's
    loss and correct count to running totals, so a step costs the host one
    small copy and one replay. Three warm-up steps on a side stream settle
    cuDNN's algorithm choice and the allocator (the PyTorch CUDA-graph
    recipe); weights, Adam's state and the totals are then reset, so the
    warm-up leaves no trace.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        batch: int,
        *,
        bf16: bool,
        forward: torch.nn.Module | None = None,
    ):
        self.network, self.optimizer, self.bf16 = network, optimizer, bf16
        self.forward = forward or network
        self.x, self.y = x, y
        self.index = torch.arange(batch, device=x.device)
        self.loss_sum = torch.zeros((), device=x.device)
        self.correct = torch.zeros((), device=x.device, dtype=torch.int64)
        initial = {k: v.detach().clone() for k, v in network.state_dict().items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for key, value in network.state_dict().items():
                value.copy_(initial[key])
            for state in optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        self.totals()
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    def _step(self) -> None:
        xb, yb = self.x[self.index], self.y[self.index]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits = self.forward(xb)
        loss = torch.nn.functional.cross_entropy(logits.float(), yb)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(yb)
        self.correct += (logits.detach().argmax(dim=1) == yb).sum()

    def __call__(self, index: torch.Tensor) -> None:
        """Train on the full batch of rows ``index``."""
        self.index.copy_(index)
        self.graph.replay()

    def totals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count since the last call (then zeroed)."""
        totals = self.loss_sum.clone(), self.correct.clone()
        self.loss_sum.zero_()
        self.correct.zero_()
        return totals


def _tensors(
    x: NDArray[np.float32], y: NDArray[np.integer], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectra (float32) and class indices (int64) on the device."""
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)
    yt = torch.from_numpy(np.asarray(y, np.int64)).to(device)
    return xt, yt


@dataclass
class _Trainer:
    """What the epochs of a fit share: the network, its optimizer, the training data on the device.

    ``layout`` is the network as the steps run it (channels-last or not),
    ``step_net`` the same compiled or not; ``graphed``: each step replays a
    CUDA graph (`_GraphedStep`, captured at the first step); ``graphs``:
    ``torch.compile`` captures CUDA graphs itself.
    """

    network: SpectrumNet
    layout: torch.nn.Module
    step_net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    config: TrainConfig
    device: torch.device
    graphed: bool
    graphs: bool
    step: _GraphedStep | None = None

    @classmethod
    def build(
        cls,
        architecture: str,
        kwargs: dict[str, Any],
        train_data: tuple[torch.Tensor, torch.Tensor],
        config: TrainConfig,
        device: torch.device,
        initial_state: dict[str, torch.Tensor] | None,
    ) -> _Trainer:
        """Build the network (seeded beforehand), its layout, compilation and Adam."""
        cuda = device.type == "cuda"
        network = build_model(architecture, **kwargs)
        if initial_state is not None:
            network.load_state_dict(initial_state)
        network = network.to(device)
        if cuda:
            torch.backends.cudnn.benchmark = True
        layout: torch.nn.Module = network
        if config.channels_last and has_convolutions(network):
            layout = ChannelsLastNet(network)
        step_net = (
            cast(torch.nn.Module, torch.compile(layout, mode=config.compile_mode))
            if config.compile
            else layout
        )
        _check_cuda_graph(config, device)
        graphed = config.cuda_graph and len(train_data[0]) >= config.batch_size  # tiny: no graph
        optimizer = (
            torch.optim.Adam(
                network.parameters(), lr=config.learning_rate, fused=True, capturable=graphed
            )
            if cuda
            else torch.optim.Adam(network.parameters(), lr=config.learning_rate)
        )
        return cls(
            network=network,
            layout=layout,
            step_net=step_net,
            optimizer=optimizer,
            x=train_data[0],
            y=train_data[1],
            config=config,
            device=device,
            graphed=graphed,
            graphs=config.compile and cuda and config.compile_mode != "default",
        )

    def epoch(self, generator: torch.Generator) -> tuple[float, float]:
        """One pass over the shuffled training rows: mean loss and accuracy of its steps."""
        n, batch = len(self.x), self.config.batch_size
        self.network.train()
        order = torch.randperm(n, generator=generator).to(self.device)
        if self.graphed:
            order = torch.cat([order, order[: -n % batch]])
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            if self.graphed:
                self._graphed_step(index)
                continue
            loss, hits = self._eager_step(index)
            loss_sum += loss
            correct += hits
        if self.step is not None:
            loss_sum, correct = self.step.totals()
        return float(loss_sum) / len(order), float(correct) / len(order)

    def _graphed_step(self, index: torch.Tensor) -> None:
        """Replay the captured step on the rows ``index`` (capturing it the first time)."""
        if self.step is None:
            with torch.cuda.device(self.device):  # side stream and capture on its GPU
                self.step = _GraphedStep(
                    self.network,
                    self.optimizer,
                    self.x,
                    self.y,
                    self.config.batch_size,
                    bf16=self.config.bf16,
                    forward=self.layout,
                )
        self.step(index)

    def _eager_step(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and Adam on the rows ``index``: summed loss, correct count."""
        xb, yb = self.x[index], self.y[index]
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            logits = self.step_net(xb)
        loss = torch.nn.functional.cross_entropy(logits.float(), yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach() * len(index), (logits.detach().argmax(dim=1) == yb).sum()


@dataclass
class _EarlyStopping:
    """The epoch with the lowest validation loss so far, its weights, and epochs since."""

    patience: int
    loss: float = math.inf
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None
    waited: int = 0

    def update(self, epoch: int, val_loss: float, network: torch.nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss < self.loss:
            self.loss, self.epoch, self.waited = val_loss, epoch, 0
            self.state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            self.waited += 1
        return self.waited >= self.patience or not math.isfinite(val_loss)


def fit_network(
    architecture: str,
    kwargs: dict[str, Any],
    x_train: NDArray[np.float32],
    y_train: NDArray[np.integer],
    x_val: NDArray[np.float32],
    y_val: NDArray[np.integer],
    *,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
) -> FitResult:
    """Build ``architecture`` and fit it with Adam and early stopping on the validation loss.

    ``initial_state`` (a state dict of the same network) replaces the random
    initial weights: fine-tuning.

    All data go to the device once; each epoch draws a permutation from a
    seeded generator and indexes mini-batches on the device (no DataLoader,
    no copies), and the host waits for the device only once per epoch. The
    weights of the epoch with the lowest validation loss are returned.
    """
    device = select_device(config.device)
    cuda = device.type == "cuda"
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(config.seed)
        train_data = _tensors(x_train, y_train, device)
        xv, yv = _tensors(x_val, y_val, device)
        trainer = _Trainer.build(architecture, kwargs, train_data, config, device, initial_state)
        generator = torch.Generator().manual_seed(config.seed)
        history: list[dict[str, float]] = []
        best = _EarlyStopping(config.patience)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            train_loss, train_accuracy = trainer.epoch(generator)
            val_loss, val_accuracy = _evaluate_loss(
                trainer.step_net, xv, yv, batch=8192 if cuda else 1024, bf16=config.bf16
            )
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "seconds": time.perf_counter() - t0,
            }
            history.append(record)
            stop = best.update(epoch, val_loss, trainer.network)
            if progress:
                progress(epoch, config.epochs)
            if on_epoch:
                on_epoch(record)
            if stop:
                break
        if best.state is not None:
            trainer.network.load_state_dict(best.state)
        trainer.network.eval()
    return FitResult(
        network=trainer.network,
        history=history,
        best_epoch=best.epoch,
        seconds=time.perf_counter() - started,
        device=device,
    )


# --- the whole run -------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What `train` wrote and measured."""

    model_dir: Path
    model: TrainedModel
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def card(self) -> ModelCard:
        """The model card as written."""
        return self.model.card


def _sha256(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part)
        sha.update(b"\0")
    return sha.hexdigest()


def _ids_digest(ids: NDArray[np.object_], labels: NDArray[np.integer]) -> str:
    return _sha256("\n".join(map(str, ids)).encode(), np.asarray(labels, np.int8).tobytes())


def _prepare_out(out_dir: Path, overwrite: bool, inputs: Sequence[str | Path]) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"{out_dir}: exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise TrainingError(
                f"{out_dir}: already exists and is not empty "
                "(--overwrite, or overwrite=True, replaces it)"
            )
        problem = replace_problem(out_dir, inputs)
        if problem:
            raise TrainingError(problem)


def replace_problem(out_dir: Path, inputs: Sequence[str | Path]) -> str | None:
    """Why the existing folder ``out_dir`` must not be replaced by a new model, or None.

    Replacing deletes the old folder whole: only a model folder (one with its
    card) is replaced, and never one that holds an input of the run (the
    training data, the web tool's database), which would be deleted with it.
    """
    if not (out_dir / CARD).is_file():
        return (
            f"{out_dir}: not a model folder (no {CARD}); only a model folder is replaced, "
            "with everything in it: write the model to a new or empty folder"
        )
    root = out_dir.resolve()
    for path in inputs:
        if Path(path).resolve().is_relative_to(root):
            return (
                f"{out_dir}: holds {path}, an input of this run, which replacing the folder "
                "would delete: write the model to another folder"
            )
    return None


def publish_model_dir(tmp: Path, out_dir: Path, *, also: Sequence[tuple[Path, Path]] = ()) -> None:
    """Move the finished ``tmp`` directory to ``out_dir``, replacing an old model last.

    The old model is first renamed ``.NAME.old-PID``, then ``tmp`` becomes ``out_dir``
    (then each ``(source, target)`` of ``also`` is renamed: files published with the
    model, such as `learn`'s labels dataset), then the old one is deleted; Ctrl-C and
    SIGTERM wait for the renames (`spectraldl.core.signals.held_stops`). A run killed
    (kill -9) between the first two leaves no ``out_dir`` but the old model whole beside
    it, and one killed while writing leaves its ``.NAME.tmp-PID``: `recover_model_dir`,
    which every run calls first, puts the old model back and removes such leftovers.
    """
    old = None
    with held_stops():  # Ctrl-C or SIGTERM between the renames would unpublish both models
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        for source, target in also:
            os.replace(source, target)
    if old is not None:
        shutil.rmtree(old)


_LEFTOVER = re.compile(r"(?P<learn>\.learn-[0-9]+)?\.(?P<kind>tmp|old|learn)-(?P<pid>[0-9]+)")
"""What follows ``.NAME`` in the name of a run's work folder beside the model folder NAME
(and ``..NAME``: the work folders of `learn`'s own ``.NAME.learn-PID``)."""


def recover_model_dir(out_dir: Path, say: Callable[[str], None] | None = None) -> list[str]:
    """Clean up after runs killed while writing the model folder ``out_dir``; what was done.

    A run writes its model into ``.NAME.tmp-PID`` (`learn`: ``.NAME.learn-PID``) beside
    ``out_dir`` and publishes it with `publish_model_dir`, which moves an old model to
    ``.NAME.old-PID`` for a moment. For each such folder whose process PID is gone (one
    whose PID is alive, or this process's, is another run's or this run's: left alone):

    * ``.NAME.old-PID`` when ``out_dir`` is missing (killed between the two renames) is
      renamed back to ``out_dir``: the model that was there before that run (the most
      recent, should there be several). When ``out_dir`` is a model folder (holds its
      card), the old one is what the run had replaced and was deleting: it is removed.
    * ``.NAME.tmp-PID`` and ``.NAME.learn-PID`` (the unpublished result of a killed run)
      are removed, and so are ``..NAME.learn-PID.tmp-PID`` (that of its training).

    Each action is passed to ``say`` as one line. PIDs are this machine's: a run on
    another machine writing into the same shared folder would be taken for a dead one.
    Raises TrainingError naming the folder when one cannot be moved or removed.
    """
    lines: list[str] = []

    def done(line: str) -> None:
        lines.append(line)
        if say:
            say(line)

    parent, name = out_dir.parent, out_dir.name
    try:
        entries = [e for e in parent.iterdir() if e.name.startswith(f".{name}.")]
        entries += [e for e in parent.iterdir() if e.name.startswith(f"..{name}.learn-")]
    except (FileNotFoundError, NotADirectoryError):
        return lines
    except OSError as exc:
        raise TrainingError(f"{parent}: cannot list it ({exc.strerror})") from None
    dead: dict[str, list[Path]] = {"tmp": [], "old": [], "learn": []}
    for entry in entries:
        nested = entry.name.startswith(f"..{name}.")
        match = _LEFTOVER.fullmatch(entry.name[len(name) + 1 + nested :])
        # ..NAME.learn-PID.KIND-PID only of a learn folder, and only its tmp or old.
        if not match or bool(match["learn"]) != nested or (nested and match["kind"] == "learn"):
            continue
        pid = int(match["pid"])
        mine = pid == os.getpid()
        if entry.is_dir() and not entry.is_symlink() and not mine and not process_alive(pid):
            dead["tmp" if nested else match["kind"]].append(entry)
    # Two runs starting at once may both find a leftover: one acts, the other finds it gone.
    try:
        olds = sorted(dead["old"], key=_mtime_or_zero)
        if olds and not out_dir.exists() and not out_dir.is_symlink():
            restored = olds.pop()
            try:
                os.replace(restored, out_dir)
                done(
                    f"restored {out_dir} from {restored.name}: a run killed while replacing it "
                    "had moved it aside"
                )
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                    raise
        for folder in [*dead["tmp"], *dead["learn"], *olds]:
            if folder in olds and not (out_dir / CARD).is_file():
                continue  # out_dir is no model: keep the model moved aside for a person to see
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(folder)
                done(f"removed {folder.name} beside {out_dir}, left by a killed run")
    except OSError as exc:
        raise TrainingError(
            f"{exc.filename or out_dir}: cannot clean up after a killed run ({exc.strerror})"
        ) from None
    return lines


def _mtime_or_zero(path: Path) -> float:
    """When ``path`` last changed; 0 once another run has removed it."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _class_index(codes: NDArray[np.integer], class_codes: list[int]) -> NDArray[np.int64]:
    lookup = np.full(len(CLASSES), -1, np.int64)
    lookup[class_codes] = np.arange(len(class_codes))
    return lookup[np.asarray(codes, np.int64)]


@dataclass
class _Plan:
    """Which rows a run fits, validates and tests on, in which class order, from which weights."""

    classes: tuple[str, ...]
    class_codes: list[int]
    kwargs: dict[str, Any]
    train_rows: NDArray[np.int64]
    val_rows: NDArray[np.int64]
    test_rows: NDArray[np.int64]
    eval_real_rows: NDArray[np.int64]
    counts: dict[str, int]
    real_rows: str
    parent: TrainedModel | None = None
    fine_tuning: dict[str, Any] = field(default_factory=dict)

    def class_index(self, rows: Rows, index: NDArray[np.int64]) -> NDArray[np.int64]:
        """The class indices (output order) of the rows ``index``."""
        return _class_index(rows.labels[index], self.class_codes)

    @property
    def fitted(self) -> NDArray[np.int64]:
        """Rows fitted, validated or tested on (what ``data_sha256`` covers, with the real)."""
        return np.concatenate([self.train_rows, self.val_rows, self.test_rows])


def _scratch_plan(data: LabelledRows, config: TrainConfig) -> _Plan:
    """The thesis' recipe: a stratified split of the labelled rows (real ones evaluated)."""
    rows = data.rows
    trainable = np.isin(rows.labels, [label_code(c) for c in TRAINABLE_CLASSES])
    is_real = rows.meta["origin"] == "real"
    real_rows = config.real_rows
    if real_rows == "auto":
        real_rows = "evaluate" if (trainable & ~is_real).any() else "fit"
    fit_mask = trainable & (~is_real if real_rows == "evaluate" else True)
    if not fit_mask.any():
        raise TrainingError(
            f"no labelled rows to fit in {', '.join(data.paths)} "
            f"(trainable classes: {', '.join(TRAINABLE_CLASSES)})"
        )
    fit_codes = rows.labels[fit_mask].astype(np.int64)
    class_codes = [c for c in (label_code(n) for n in TRAINABLE_CLASSES) if (fit_codes == c).any()]
    counts = {CLASSES[c]: int((fit_codes == c).sum()) for c in class_codes}
    if len(class_codes) < 2:
        raise TrainingError(f"need at least two classes to train, the data has {counts}")
    small = {k: v for k, v in counts.items() if v < MIN_ROWS_PER_CLASS}
    if small:
        raise TrainingError(
            f"too few labelled rows to split for {small} (at least {MIN_ROWS_PER_CLASS} "
            "per class); label more spectra or drop the class"
        )
    fit_index = np.flatnonzero(fit_mask)
    tr, va, te = stratified_split(
        _class_index(rows.labels[fit_index], class_codes),
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    te, va, tr = keep_observations_together(rows.ids[fit_index], te, va, tr)
    return _Plan(
        classes=tuple(CLASSES[c] for c in class_codes),
        class_codes=class_codes,
        kwargs={"n_classes": len(class_codes), "input_n": int(data.config.grid_n)},
        train_rows=fit_index[tr],
        val_rows=fit_index[va],
        test_rows=fit_index[te],
        eval_real_rows=np.flatnonzero(is_real & np.isin(rows.labels, class_codes) & ~fit_mask),
        counts=counts,
        real_rows=real_rows,
    )


def holdout_split(
    labels: NDArray[np.integer], *, fraction: float, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices kept for fitting and held out, per class: ``fraction`` of each class held out.

    A class with two or more rows always has at least one held out and one
    kept; a class with a single row is kept (it cannot be both). The same
    labels and seed give the same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for value in np.unique(labels):
        index = np.flatnonzero(labels == value)
        if len(index) < 2:
            continue
        k = min(max(1, round(fraction * len(index))), len(index) - 1)
        out.extend(int(i) for i in rng.choice(index, size=k, replace=False))
    held = np.array(sorted(out), np.int64)
    return np.setdiff1d(np.arange(len(labels)), held).astype(np.int64), held


def _sample(index: NDArray[np.int64], n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``n`` of ``index`` drawn without replacement (all of them when there are fewer)."""
    if n >= len(index):
        return index
    return np.sort(rng.choice(index, size=n, replace=False))


def _parent_roles(parent: TrainedModel) -> dict[str, str]:
    """Id -> role (train/val/test/real) from the parent's ``split.csv``; {} when it has none."""
    path = Path(parent.path) / "split.csv"
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["id"]: row["role"] for row in csv.DictReader(handle)}


def _check_parent(parent: TrainedModel, config: TrainConfig, data: Any) -> None:
    """Refuse a parent of another network or grid than the run asks for, saying what differs."""
    name = parent.architecture.name
    if config.model != name:
        raise TrainingError(
            f"the parent model {parent.path} is a {name} network, this run asks for "
            f"{config.model}: fine-tuning keeps the network (leave --model out or give {name})"
        )
    try:
        parent.check_compatible(data)
    except ModelMismatch as exc:
        raise TrainingError(f"cannot fine-tune {parent.path} on this data: {exc}") from None


def _check_new_classes(data: LabelledRows, is_new: NDArray[np.bool_], parent: TrainedModel) -> None:
    """Refuse new labelled rows of a class the parent does not have."""
    rows = data.rows
    trainable = np.isin(rows.labels, [label_code(c) for c in TRAINABLE_CLASSES])
    foreign = sorted({CLASSES[c] for c in rows.labels[is_new & trainable]} - set(parent.classes))
    if foreign:
        raise TrainingError(
            f"the new data has labelled {', '.join(foreign)} spectra, a class the parent model "
            f"{parent.path} does not have (its classes: {', '.join(parent.classes)}): "
            "fine-tuning keeps the classes; train a new model to add one"
        )


@dataclass
class _NewSplit:
    """The new rows for training, validation and held out for evaluation, and why held."""

    train: NDArray[np.int64]
    val: NDArray[np.int64]
    held: NDArray[np.int64]
    refitted: int
    """New rows the parent was fitted or validated on: fitted again, never held out."""
    held_by_parent: int
    """New rows the parent held out too (test or real in its split.csv): held out again."""


def _split_new_rows(
    data: LabelledRows, n_new: int, parent: TrainedModel, config: TrainConfig
) -> _NewSplit:
    """The new rows (sources ``< n_new``) for training, validation and held out for evaluation.

    Parent and child are compared on the held-out rows, so none of them may be a
    row the parent fitted or validated (its ``split.csv``): such rows are fitted
    again. Rows the parent held out stay held out; of the rest, ``real_holdout``
    of each class is held out (`holdout_split`).
    """
    rows = data.rows
    class_codes = [label_code(c) for c in parent.classes]
    new = np.flatnonzero((data.source < n_new) & np.isin(rows.labels, class_codes))
    if len(new) == 0:
        classes = ", ".join(CLASSES[c] for c in class_codes)
        raise TrainingError(
            f"no labelled rows of the parent's classes ({classes}) in "
            f"{', '.join(data.paths[:n_new])}"
        )
    roles = _parent_roles(parent)
    role = np.array([roles.get(str(i), "") for i in rows.ids[new]], dtype=object)
    refit, pinned = np.isin(role, ["train", "val"]), np.isin(role, ["test", "real"])
    fresh = new[~refit & ~pinned]
    keep, held = holdout_split(rows.labels[fresh], fraction=config.real_holdout, seed=config.seed)
    # An exposure the parent fitted in one form is fitted in both; else held out in both.
    forced, held_rows, kept = keep_observations_together(
        rows.ids, new[refit], np.concatenate([new[pinned], fresh[held]]), fresh[keep]
    )
    if len(held_rows) == 0:
        raise TrainingError(
            f"{len(new)} new labelled rows, none to hold out for evaluation: "
            f"{int(refit.sum())} the parent {parent.path} was fitted on (its split.csv), which "
            "cannot show whether the new model is better, and no other class with two or "
            "more; label at least two more spectra of a class"
        )
    fit_new = np.sort(np.concatenate([forced, kept]))
    if len(fit_new) == 0:
        raise TrainingError(
            f"nothing new to fit: all {len(new)} new labelled rows are spectra the parent "
            f"{parent.path} held out for evaluation (its split.csv), and they stay held out so "
            "that the two models are compared on the same spectra; label spectra the parent "
            "has not seen (e.g. candidates of a classified archive)"
        )
    fit_kept, fit_val = holdout_split(
        rows.labels[fit_new], fraction=config.val_fraction, seed=config.seed + 1
    )
    val, kept = keep_observations_together(rows.ids, fit_new[fit_val], fit_new[fit_kept])
    return _NewSplit(
        train=kept,
        val=val,
        held=held_rows,
        refitted=int(refit.sum()),
        held_by_parent=int(pinned.sum()),
    )


@dataclass
class _Replay:
    """The parent's own rows in a fine-tuning run, and its real rows it never fitted."""

    train: NDArray[np.int64]
    val: NDArray[np.int64]
    test: NDArray[np.int64]
    old_real: NDArray[np.int64]


def _replay_rows(
    data: LabelledRows,
    n_new: int,
    parent: TrainedModel,
    config: TrainConfig,
    n_new_train: int,
) -> _Replay:
    """A sample of the parent's training and validation rows, its test split and real rows.

    ``replay_ratio`` parent training rows per new training row; validation
    rows in the same share of the parent's validation split.
    """
    rows = data.rows
    class_codes = [label_code(c) for c in parent.classes]
    is_real = rows.meta["origin"] == "real"
    roles = _parent_roles(parent)
    old = (data.source >= n_new) & np.isin(rows.labels, class_codes)
    role = np.array([roles.get(str(i), "") for i in rows.ids], dtype=object)
    replay_train = np.flatnonzero(old & ~is_real & (role == "train"))
    replay_val = np.flatnonzero(old & ~is_real & (role == "val"))
    replay_test = np.flatnonzero(old & ~is_real & (role == "test"))
    if config.replay_ratio > 0 and old.any() and not len(replay_train):
        raise TrainingError(
            f"the replay data ({', '.join(data.paths[n_new:])}) holds none of the rows the "
            f"parent {parent.path} was trained on (its split.csv): give the parent's training "
            "data with --replay"
        )
    rng = np.random.default_rng(config.seed)
    replay_train = _sample(replay_train, round(config.replay_ratio * n_new_train), rng)
    share = len(replay_train) / max(int((role == "train").sum()), 1)
    replay_val = _sample(replay_val, max(round(share * (role == "val").sum()), 1), rng)
    if config.replay_ratio == 0:
        replay_val = replay_test = np.zeros(0, np.int64)
    # Real rows of the parent's data it never fitted stay evaluation rows here too.
    old_real = np.flatnonzero(old & is_real & np.isin(role, ["real", ""]))
    return _Replay(train=replay_train, val=replay_val, test=replay_test, old_real=old_real)


def _finetune_plan(
    data: LabelledRows, n_new: int, parent: TrainedModel, config: TrainConfig
) -> _Plan:
    """New rows (sources ``< n_new``) split by `holdout_split`, plus a replay of the parent's."""
    rows = data.rows
    class_codes = [label_code(c) for c in parent.classes]
    is_real = rows.meta["origin"] == "real"
    _check_new_classes(data, data.source < n_new, parent)
    split = _split_new_rows(data, n_new, parent, config)
    new_train, new_val, held_rows = split.train, split.val, split.held
    replay = _replay_rows(data, n_new, parent, config, len(new_train))
    held_real = held_rows[is_real[held_rows]]
    train_rows = np.sort(np.concatenate([new_train, replay.train]))
    val_rows = np.sort(np.concatenate([new_val, replay.val]))
    if len(val_rows) == 0:
        raise TrainingError(
            "nothing to validate on: too few new rows for a validation share and no replay"
        )
    fit_codes = rows.labels[train_rows].astype(np.int64)
    return _Plan(
        classes=parent.classes,
        class_codes=class_codes,
        kwargs=dict(parent.architecture.kwargs),
        train_rows=train_rows,
        val_rows=val_rows,
        test_rows=np.sort(np.concatenate([replay.test, held_rows[~is_real[held_rows]]])),
        eval_real_rows=np.sort(np.concatenate([held_real, replay.old_real])),
        counts={CLASSES[c]: int((fit_codes == c).sum()) for c in class_codes},
        real_rows="fit",
        parent=parent,
        fine_tuning={
            "parent_model_id": parent.model_id,
            "parent_path": str(Path(parent.path).resolve()),
            "replay_ratio": config.replay_ratio,
            "replay_paths": [str(Path(p).resolve()) for p in data.paths[n_new:]],
            "new_paths": [str(Path(p).resolve()) for p in data.paths[:n_new]],
            "n_new_train": len(new_train),
            "n_new_val": len(new_val),
            "n_new_held_out": len(held_rows),
            "n_new_real_held_out": len(held_real),
            "n_new_held_out_by_parent": split.held_by_parent,
            "n_new_fitted_by_parent": split.refitted,
            "n_replay_train": len(replay.train),
            "n_replay_val": len(replay.val),
            "n_replay_test": len(replay.test),
            "n_old_real_evaluation": len(replay.old_real),
            "real_holdout": config.real_holdout,
        },
    )


def _without_ids(dataset: Dataset, ids: set[str]) -> Dataset:
    """``dataset`` less the rows whose id is in ``ids`` (the new data's labels win)."""
    keep = np.array([str(i) not in ids for i in dataset.ids], dtype=bool)
    if keep.all():
        return dataset
    return Dataset.of_rows(
        dataset.take(keep),
        grid_aa=dataset.grid_aa,
        preprocessing=dataset.preprocessing,
        attrs=dataset.attrs,
        path=dataset.path,
    )


def _replay_paths(parent: TrainedModel, replay: Sequence[str | Path] | None) -> list[Path]:
    """The parent's training data: ``replay`` when given, else the paths its card records."""
    if replay:
        return [Path(p) for p in replay]
    # A parent's own new rows (labels exported from a database) come back with the next export.
    renewed = set((parent.card.parent or {}).get("new_paths", []))
    recorded = [
        Path(d["path"])
        for d in parent.card.datasets or []
        if Path(d["path"]).exists() or d["path"] not in renewed
    ]
    missing = [str(p) for p in recorded if not p.exists()]
    if missing or not recorded:
        _no_replay_data(parent, "not at hand", ", ".join(missing) if missing else "no datasets")
    return recorded


def _no_replay_data(parent: TrainedModel, problem: str, where: str) -> NoReturn:
    """Raise `TrainingError`: the parent's training data is ``problem`` (at ``where``), and
    what to pass instead (a shipped model's data is a demo run's, made by `spectraldl demo`)."""
    alone = "--replay-ratio 0 to fine-tune on the new rows alone (it may forget what it knew)"
    if Path(parent.path).resolve().is_relative_to(models_dir().resolve()):
        raise TrainingError(
            f"the shipped model {Path(parent.path).name} was trained on a demo run's "
            f"training.h5, which is not shipped with spectraldl ({where}: {problem}): pass "
            f"{alone}, or make that data with `spectraldl demo --out DIR` and pass --replay "
            "DIR/training.h5"
        )
    raise TrainingError(
        f"the parent's training data is {problem} ({where}, recorded in "
        f"{Path(parent.path) / CARD}): give it with --replay PATH, or {alone}"
    )


def _refuse_other_data(parent: TrainedModel, path: Path, dataset: Dataset) -> None:
    """`TrainingError` when a dataset at a path the parent's card records is not the one it
    was trained on (another run's, or rewritten since): its ids and labels differ from the
    card's digest. Only for a parent trained from scratch, whose card digests whole files
    (a fine-tuned one's leaves out that round's new rows)."""
    if parent.card.parent:
        return
    for entry in parent.card.datasets or []:
        recorded = entry.get("ids_sha256")
        if recorded is None or Path(entry["path"]).resolve() != path:
            continue
        if _ids_digest(dataset.ids, dataset.labels) != recorded:
            _no_replay_data(
                parent,
                f"another dataset now: {len(dataset)} rows, whose ids or labels are not the "
                f"{entry.get('n_rows', '?')} it was trained on",
                str(path),
            )


def _read_finetune_data(
    datasets: Sequence[str | Path],
    parent: TrainedModel,
    replay: Sequence[str | Path] | None,
    config: TrainConfig,
) -> tuple[LabelledRows, int]:
    """New datasets then the replay datasets (less rows already in the new ones, less repeats)."""
    new = [read_dataset_any(p) for p in datasets]
    if config.replay_ratio == 0:
        return combine_datasets(new), len(new)
    new_paths = {Path(p).resolve() for p in datasets}
    new_ids = {str(i) for ds in new for i in ds.ids}
    old = []
    for path in dict.fromkeys(p.resolve() for p in _replay_paths(parent, replay)):
        if path in new_paths:
            continue
        dataset = read_dataset_any(path)
        if not replay:  # data given by hand is the user's choice
            _refuse_other_data(parent, path, dataset)
        old.append(_without_ids(dataset, new_ids))
    return combine_datasets(new + old), len(new)


def train(
    datasets: Sequence[str | Path],
    out_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    init: str | Path | None = None,
    replay: Sequence[str | Path] | None = None,
    card_extra: dict[str, Any] | None = None,
    published_as: Mapping[Path, Path] | None = None,
) -> TrainResult:
    """Train a network on the labelled rows of ``datasets`` and write ``out_dir``.

    Parameters
    ----------
    datasets
        spectraldl HDF5 datasets or CSVs in the published layout; they must
        share grid and preprocessing, and ids must be unique across them.
    out_dir
        The model directory to write (see `spectraldl.ml.modelcard`); an existing
        non-empty one is replaced only with ``overwrite``, and only once the
        new one is complete. First, the leftovers of runs killed while writing
        it are cleaned up (`recover_model_dir`, said in ``log``): a model such a
        run had moved aside is put back, its unfinished folders removed.
    config
        The run's choices (`TrainConfig`).
    progress
        Called with (epochs done, most epochs) after each epoch.
    log
        Called with one line of text per stage.
    on_epoch
        Called after each epoch with its `history.csv` record.
    init
        Fine-tune this model (a directory or a shipped model's name) instead of
        starting from random weights; ``config.model`` must be its network.
    replay
        Fine-tuning: the parent's training data, when not at the paths its
        card records.
    card_extra
        More sections for the card (e.g. ``learning``: where the labels came from).
    published_as
        The path each of ``datasets`` and ``out_dir`` is published under by the caller
        after the run, when written under a temporary name (`learn`): the card and
        ``split.csv`` record it. A parent replaced by the new model (``init`` is where it
        is published) is named by its ``parent_model_id`` alone (``parent_path`` null).

    Returns
    -------
    TrainResult
        The saved model (loaded back from ``out_dir``), metrics and history.
    """
    config = config or TrainConfig()
    _check_cuda_graph(config, select_device(config.device))
    say = log or (lambda _line: None)
    out_dir = Path(out_dir)
    recover_model_dir(out_dir, say)
    _prepare_out(out_dir, overwrite, [*datasets, *(replay or ())])
    data, plan = _load_and_plan(datasets, config, init, replay, published_as or {})
    _mark_replaced_parent(plan, out_dir, published_as or {})
    _say_plan(plan, say)
    x_train, y_train = _training_set(data.rows, plan, config, say)
    fit = fit_network(
        config.model,
        plan.kwargs,
        x_train,
        y_train,
        data.rows.X[plan.val_rows],
        plan.class_index(data.rows, plan.val_rows),
        config=config,
        progress=progress,
        on_epoch=on_epoch,
        initial_state=None if plan.parent is None else plan.parent.network.state_dict(),
    )
    say(
        f"trained {config.model} for {len(fit.history)} epochs (best {fit.best_epoch}) "
        f"in {fit.seconds:.1f} s on {fit.device}"
    )
    model = TrainedModel(
        network=fit.network, card=_new_card(config, plan, fit, data.config), device=fit.device
    )
    metrics, novelty = _calibrate_and_score(model, data.rows, plan, config)
    say(
        f"temperature {model.card.temperature:.3f}; novelty threshold {novelty.threshold:.2f} "
        f"(quantile {novelty.quantile})"
    )
    card = _complete_card(
        model.card, config, plan, fit, data, metrics, novelty, len(x_train), card_extra
    )
    metrics = _write_model_dir(out_dir, _ModelFiles(fit, card, novelty, metrics, data, plan))
    model = load_model(out_dir, device=fit.device)
    say(f"wrote {out_dir} (model {model.model_id})")
    return TrainResult(model_dir=out_dir, model=model, metrics=metrics, history=fit.history)


def _load_and_plan(
    datasets: Sequence[str | Path],
    config: TrainConfig,
    init: str | Path | None,
    replay: Sequence[str | Path] | None,
    published_as: Mapping[Path, Path],
) -> tuple[LabelledRows, _Plan]:
    """Read the data and plan the run: from scratch, or fine-tuning ``init`` with a replay."""
    final = {p.resolve(): str(q) for p, q in published_as.items()}
    if init is None:
        data = combine_datasets([read_dataset_any(p) for p in datasets])
        data.paths = [final.get(Path(p).resolve(), p) for p in data.paths]
        return data, _scratch_plan(data, config)
    parent = load_model(resolve_model(init), device="cpu")
    for path in datasets[:1]:  # the parent's grid before reading any replay data
        _check_parent(parent, config, path)
    data, n_new = _read_finetune_data(datasets, parent, replay, config)
    data.paths = [final.get(Path(p).resolve(), p) for p in data.paths]
    _check_parent(parent, config, data.config)
    return data, _finetune_plan(data, n_new, parent, config)


def _mark_replaced_parent(plan: _Plan, out_dir: Path, published_as: Mapping[Path, Path]) -> None:
    """A parent the new model replaces (published where it is): its path names the child once
    published, so the card records ``parent_path`` null and ``parent_replaced``."""
    if plan.parent is None:
        return
    final = {p.resolve(): q for p, q in published_as.items()}.get(out_dir.resolve(), out_dir)
    if Path(plan.parent.path).resolve() == final.resolve():
        plan.fine_tuning.update(parent_path=None, parent_replaced=True)


def _say_plan(plan: _Plan, say: Callable[[str], None]) -> None:
    """The rows each split got (and, fine-tuning, the mix of new and replayed rows)."""
    say(
        f"{len(plan.fitted)} rows to fit ({', '.join(f'{k} {v}' for k, v in plan.counts.items())} "
        f"in training): {len(plan.train_rows)} training, {len(plan.val_rows)} validation, "
        f"{len(plan.test_rows)} test; {len(plan.eval_real_rows)} real rows for evaluation only"
    )
    if plan.parent is not None:
        ft = plan.fine_tuning
        say(
            f"fine-tuning {ft['parent_model_id']}: {ft['n_new_train']} new rows and "
            f"{ft['n_replay_train']} replayed (ratio {ft['replay_ratio']:g}) in training; "
            f"{ft['n_new_held_out']} new rows held out for evaluation "
            f"({ft['n_new_held_out_by_parent']} of them held out by the parent too); "
            f"{ft['n_new_fitted_by_parent']} new rows the parent was fitted on fitted again, "
            "never held out"
        )


def _training_set(
    rows: Rows, plan: _Plan, config: TrainConfig, say: Callable[[str], None]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The training split's spectra and class indices, balanced by SMOTE when asked."""
    x_train = rows.X[plan.train_rows]
    y_train = plan.class_index(rows, plan.train_rows)
    if config.smote:
        x_train, y_train = smote_balance(x_train, y_train, seed=config.seed)
        say(f"SMOTE: {len(plan.train_rows)} -> {len(x_train)} training rows")
    return x_train, y_train


def _new_card(
    config: TrainConfig, plan: _Plan, fit: FitResult, preprocessing: PreprocessConfig
) -> ModelCard:
    """The card of a fitted network before calibration: network, classes, grid, preprocessing."""
    network = fit.network
    return ModelCard(
        format=CARD_FORMAT,
        format_version=CARD_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        architecture=Architecture(
            name=config.model,
            kwargs=plan.kwargs,
            n_parameters=count_parameters(network),
            flops_per_spectrum=flops_per_spectrum(network, plan.kwargs["input_n"]),
            embedding_dim=network.embedding_dim,
        ),
        classes=list(plan.classes),
        class_codes=plan.class_codes,
        grid={
            "start_aa": preprocessing.grid_start_aa,
            "stop_aa": preprocessing.grid_stop_aa,
            "n": preprocessing.grid_n,
            "medium": "vacuum",
        },
        preprocessing=preprocessing.to_dict(),
        temperature=1.0,
    )


def _calibrate_and_score(
    model: TrainedModel, rows: Rows, plan: _Plan, config: TrainConfig
) -> tuple[dict[str, Any], NoveltyModel]:
    """Fit the temperature, score every split (the parent's too), fit the novelty model."""
    val_logits, _ = model.predict_logits_and_features(rows.X[plan.val_rows])
    if config.calibrate:
        model.card.temperature = fit_temperature(val_logits, plan.class_index(rows, plan.val_rows))
    metrics = _evaluate_splits(model, rows, plan)
    if plan.parent is not None:
        plan.parent.network.to(model.device)
        plan.parent.device = model.device
        metrics["parent"] = _evaluate_splits(plan.parent, rows, plan)
    train_features = model.embed(rows.X[plan.train_rows])
    novelty = NoveltyModel.fit(
        train_features,
        plan.class_index(rows, plan.train_rows),
        quantile=config.novelty_quantile,
        calibration=model.embed(rows.X[plan.val_rows]),
    )
    metrics["novelty"] = _novelty_metrics(
        model, novelty, rows, train_features, plan.test_rows, plan.eval_real_rows
    )
    metrics["temperature"] = model.card.temperature
    return metrics, novelty


def _complete_card(
    card: ModelCard,
    config: TrainConfig,
    plan: _Plan,
    fit: FitResult,
    data: LabelledRows,
    metrics: dict[str, Any],
    novelty: NoveltyModel,
    n_train_after_smote: int,
    card_extra: dict[str, Any] | None,
) -> ModelCard:
    """The card as written: how it was trained, on which rows, its parent, novelty, metrics."""
    card.training = {
        **{k: v for k, v in asdict(config).items() if k not in ("device",)},
        "device": str(fit.device),
        "real_rows": plan.real_rows,
        "epochs_run": len(fit.history),
        "best_epoch": fit.best_epoch,
        "seconds": round(fit.seconds, 3),
        "optimizer": "Adam",
        "loss": "cross-entropy",
        "early_stopping": "validation loss",
    }
    if plan.parent is not None:
        card.parent = {**plan.fine_tuning, "compared": _compared(metrics)}
    card.split = _split_section(config, plan, n_train_after_smote)
    card.datasets, card.data_sha256 = _data_sections(data, plan)
    card.novelty = {
        "file": NOVELTY,
        "method": "mahalanobis-shared-covariance",
        "space": "penultimate features",
        "threshold": novelty.threshold,
        "quantile": novelty.quantile,
        "sha256": novelty.digest,
    }
    card.versions = versions(("torch", "numpy", "scikit-learn", "imbalanced-learn"))
    card = ModelCard.from_json({**card.to_json(), **(card_extra or {})})
    card.metrics = {
        key: {k: metrics[key][k] for k in ("n", "accuracy", "ece")}
        for key in ("validation", "test", "real")
    }
    return card


def _compared(metrics: dict[str, Any]) -> dict[str, Any]:
    """Parent and child side by side on the test split and the held-out real rows."""
    return {
        key: {
            "parent_accuracy": metrics["parent"][key]["accuracy"],
            "accuracy": metrics[key]["accuracy"],
            "n": metrics[key]["n"],
            "parent_f1": {c: v["f1"] for c, v in metrics["parent"][key]["per_class"].items()},
            "f1": {c: v["f1"] for c, v in metrics[key]["per_class"].items()},
        }
        for key in ("test", "real")
    }


def _split_section(config: TrainConfig, plan: _Plan, n_train_after_smote: int) -> dict[str, Any]:
    """The card's ``split``: seed, shares and the rows in each part."""
    return {
        "seed": config.seed,
        "test_fraction": config.test_fraction,
        "val_fraction": config.val_fraction,
        "stratified": plan.parent is None,
        "n_train": len(plan.train_rows),
        "n_train_after_smote": n_train_after_smote,
        "n_val": len(plan.val_rows),
        "n_test": len(plan.test_rows),
        "n_real_evaluation": len(plan.eval_real_rows),
        "class_counts": plan.counts,
    }


def _data_sections(data: LabelledRows, plan: _Plan) -> tuple[list[dict[str, Any]], str]:
    """The card's ``datasets`` (path, rows, ids digest) and ``data_sha256`` of the rows used."""
    rows = data.rows
    used = np.concatenate([plan.fitted, plan.eval_real_rows])
    datasets = [
        {
            "path": str(Path(p).resolve()),
            "n_rows": int((data.source == i).sum()),
            "ids_sha256": _ids_digest(rows.ids[data.source == i], rows.labels[data.source == i]),
        }
        for i, p in enumerate(data.paths)
    ]
    digest = _sha256(
        "\n".join(map(str, rows.ids[used])).encode(),
        rows.labels[used].tobytes(),
        np.ascontiguousarray(rows.X[used]).tobytes(),
    )
    return datasets, digest


@dataclass
class _ModelFiles:
    """Everything a model directory is written from."""

    fit: FitResult
    card: ModelCard
    novelty: NoveltyModel
    metrics: dict[str, Any]
    data: LabelledRows
    plan: _Plan


def _write_model_dir(out_dir: Path, files: _ModelFiles) -> dict[str, Any]:
    """Write the model directory beside ``out_dir`` and move it in place; the metrics written."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        metrics = _write_model_files(tmp, files)
        publish_model_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics


def _write_model_files(folder: Path, files: _ModelFiles) -> dict[str, Any]:
    """Weights, card, novelty model, history, split, figures and metrics into ``folder``."""
    network, metrics, plan = files.fit.network, files.metrics, files.plan
    torch.save({k: v.cpu() for k, v in network.state_dict().items()}, folder / WEIGHTS)
    card_text = json.dumps(json_safe(files.card.to_json()), indent=2) + "\n"
    (folder / CARD).write_text(card_text, encoding="utf-8")
    files.novelty.save(folder / NOVELTY)
    _write_history(folder / "history.csv", files.fit.history)
    _write_split(folder / "split.csv", files.data, plan)
    plot_curves(files.fit.history, folder / "curves.png")
    panels = [("test split", metrics["test"])]
    if metrics["real"]["n"]:
        panels.append(("real spectra (not fitted)", metrics["real"]))
    plot_confusions(panels, folder / "confusion.png")
    saved = TrainedModel(network=network, card=ModelCard.from_json(json.loads(card_text)))
    metrics = {"model_id": saved.model_id, "classes": list(plan.classes), **metrics}
    (folder / "metrics.json").write_text(
        json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8"
    )
    return metrics


def _evaluate_splits(model: TrainedModel, rows: Rows, plan: _Plan) -> dict[str, Any]:
    """Calibrated metrics of ``model`` on the validation, test and real rows (and uncalibrated)."""
    metrics: dict[str, Any] = {}
    uncalibrated: dict[str, Any] = {}
    splits = (("validation", plan.val_rows), ("test", plan.test_rows))
    for key, index in (*splits, ("real", plan.eval_real_rows)):
        logits = model.predict_logits(rows.X[index])
        y = plan.class_index(rows, index)
        metrics[key] = classification_metrics(model.proba_from_logits(logits), y, model.classes)
        raw = classification_metrics(softmax(logits), y, model.classes)
        uncalibrated[key] = {"ece": raw["ece"], "log_loss": raw["log_loss"]}
        if key == "real" and len(index):
            archives = rows.meta["archive"][index]
            metrics["real_by_archive"] = {
                str(a): classification_metrics(
                    model.proba_from_logits(logits[archives == a]), y[archives == a], model.classes
                )
                for a in sorted(set(archives))
            }
    metrics["test_origin"] = sorted(set(rows.meta["origin"][plan.test_rows]))
    metrics["uncalibrated"] = uncalibrated
    return metrics


def _novelty_metrics(
    model: TrainedModel,
    novelty: NoveltyModel,
    rows: Rows,
    train_features: NDArray[np.float32],
    test_rows: NDArray[np.int64],
    real_rows: NDArray[np.int64],
) -> dict[str, Any]:
    fractions: dict[str, float | None] = {"train": float(novelty.is_novel(train_features).mean())}
    for key, index in (("test", test_rows), ("real", real_rows)):
        fractions[key] = (
            float(novelty.is_novel(model.embed(rows.X[index])).mean()) if len(index) else None
        )
    return {
        "threshold": novelty.threshold,
        "quantile": novelty.quantile,
        "novel_fraction": fractions,
    }


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    names = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for record in history:
            writer.writerow({k: record[k] for k in names})


def _write_split(path: Path, data: LabelledRows, plan: _Plan) -> None:
    """``id,dataset,role,label`` for every row the run used (role train/val/test/real)."""
    rows = data.rows
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "dataset", "role", "label"])
        for role, index in (
            ("train", plan.train_rows),
            ("val", plan.val_rows),
            ("test", plan.test_rows),
            ("real", plan.eval_real_rows),
        ):
            for i in index:
                dataset = Path(data.paths[data.source[i]]).name
                writer.writerow([rows.ids[i], dataset, role, CLASSES[rows.labels[i]]])
