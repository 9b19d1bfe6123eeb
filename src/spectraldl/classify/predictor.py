"""The prediction engine: a trained model on a matrix of spectra, at the chosen precision.

`Predictor` gives class probabilities and the novelty score from one forward
pass (fp32 by default: the same numbers on every CPU and GPU; bf16, fp16 and
int8 are faster choices), and `predictions_frame` turns them into the rows
of a predictions table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectraldl.classify.plan import ClassifyError
from spectraldl.core.quality import Quality, flag_names_array
from spectraldl.io.dataset import Rows
from spectraldl.io.predictions import (
    MEASUREMENT_COLUMNS,
    probability_column,
)
from spectraldl.ml.channels_last import ChannelsLastNet, has_convolutions
from spectraldl.ml.modelcard import TrainedModel
from spectraldl.ml.quantized import calibration_rows, quantize_network
from spectraldl.ml.winograd import WinogradNet

CPU_BATCH = 256
"""Spectra per forward pass on CPU: small enough for the activations to stay in cache."""
GPU_BATCH = 65536
"""Spectra per forward pass on a GPU: large enough to keep it busy."""
WINOGRAD_BATCH = 128
"""Spectra per forward pass of `WinogradNet` on CPU (its transforms' buffers stay in cache)."""
PRECISIONS = ("fp32", "auto", "bf16", "fp16", "int8")
DEFAULT_PRECISION = "fp32"
"""The default everywhere: the same probabilities (to float32 rounding) on every CPU and GPU.
Faster, machine-dependent arithmetic (``auto``, ``bf16``, ``fp16``, ``int8``) is a choice."""
CPU_BF16_ENV = "SPECTRALDL_CPU_BF16"
"""``1`` or ``0`` overrides the detection of native bf16 (tests run both paths on any CPU)."""


# --- prediction ---------------------------------------------------------------------------


def cpu_has_native_bf16() -> bool:
    """True when this CPU runs bf16 matrix products natively (AVX-512 BF16 or AMX).

    ``SPECTRALDL_CPU_BF16=1`` (or ``0``) says so whatever the CPU: the test suite
    forces each answer so that both code paths run on every machine.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision that runs: ``auto`` is bf16 on CUDA and native-bf16 CPUs, else fp32.

    ``auto`` is never the default (`DEFAULT_PRECISION` is fp32): its results
    depend on the machine, by up to about 1e-2 in probability.

    ``int8`` (CPU only, `spectraldl.ml.quantized`) is never chosen by ``auto``.
    Raises `ValueError` for an unknown name, fp16 on CPU or int8 on a GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use fp32, bf16 or int8 on CPU")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("precision int8 runs on CPU only; use bf16 or fp16 on a GPU")
    return precision


class Predictor:
    """Class probabilities and novelty scores of preprocessed spectra in one forward pass.

    The network's penultimate features feed both the output layer and the
    novelty score, so the network runs once per spectrum. The softmax (with
    the model's temperature) and the Mahalanobis distance to the class means
    run on the same device in float32, so only (n, k + 1) numbers per batch
    leave a GPU. Under bf16/fp16 the network runs in autocast; the scoring
    after it always runs in float32.

    Parameters
    ----------
    model
        A loaded `TrainedModel` with its novelty model.
    precision
        ``fp32`` (the default: the same results on every machine), ``bf16``,
        ``fp16``, ``int8`` or ``auto`` (`resolve_precision`).
    batch_size
        Spectra per forward pass; by default 256 on CPU (the activations stay in
        cache: faster than large batches for the thesis CNN; 128 under ``winograd``)
        and 65536 on CUDA.
    channels_last
        Run a CNN's convolutions as 2-D ones on channels-last tensors
        (`spectraldl.ml.channels_last`; same outputs, cuDNN's tensor-core layout).
    winograd
        On CPU in fp32, run a CNN's kernel-3 convolutions by Winograd's minimal
        filtering (`spectraldl.ml.winograd`: half the arithmetic, the same
        probabilities to about 1e-6); networks it does not rearrange run as they are.
    """

    def __init__(
        self,
        model: TrainedModel,
        *,
        precision: str = DEFAULT_PRECISION,
        batch_size: int | None = None,
        channels_last: bool = False,
        winograd: bool = True,
    ):
        if model.novelty is None:
            raise ClassifyError(
                f"{model.path or 'the model'}: no novelty.npz beside the weights; "
                "train the model again with this version of spectraldl"
            )
        self.model = model
        self.device = model.device
        chosen = batch_size
        if batch_size is None:
            batch_size = GPU_BATCH if self.device.type == "cuda" else CPU_BATCH
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        novelty = model.novelty
        if novelty.dim != model.network.embedding_dim:
            raise ClassifyError(
                f"{model.path}: novelty.npz has {novelty.dim} features, the network "
                f"{model.network.embedding_dim}"
            )
        whitening = torch.as_tensor(novelty.whitening, dtype=torch.float32, device=self.device)
        means = torch.as_tensor(novelty.means, dtype=torch.float32, device=self.device)
        self._whitening = whitening
        self._means_w = means @ whitening
        self._means_w2 = (self._means_w * self._means_w).sum(dim=1)
        self.threshold = float(novelty.threshold)
        self.temperature = float(model.temperature)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._forward = model.network.forward_with_features

        if channels_last and self.precision != "int8" and has_convolutions(model.network):
            self._forward = ChannelsLastNet(model.network).forward_with_features
        if self.precision == "int8":
            self._forward = quantize_network(model.network, calibration_rows(model.config))
        if (
            winograd
            and not channels_last
            and self.precision == "fp32"
            and self.device.type == "cpu"
        ):
            with contextlib.suppress(ValueError):
                self._forward = WinogradNet(model.network, model.grid_n).forward_with_features
                self.batch_size = WINOGRAD_BATCH if chosen is None else chosen

    def _autocast(self) -> Any:

        if self.precision == "fp32" and self.device.type == "cuda":
            # Plain float32, not TF32 tensor cores: the default gives CPU's numbers on a GPU.
            return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False)
        if self.precision in ("fp32", "int8"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _batches(self, array: np.ndarray) -> Iterator[tuple[int, Any]]:
        """(start, batch tensor on the device) over the rows of ``array``.

        On a GPU each batch goes through one of two reusable pinned buffers
        and is uploaded without blocking the host, so the host fills the next
        buffer while the device uploads and computes this batch (upload and
        compute share one stream: they do not overlap each other); an event
        per buffer says when its upload is done and it may be refilled.
        Pinning the whole input instead costs more than the network itself at
        millions of spectra per second.
        """
        data = torch.from_numpy(array)
        if self.device.type == "cpu":
            for start in range(0, len(data), self.batch_size):
                yield start, data[start : start + self.batch_size]
            return
        size = min(self.batch_size, len(data))
        staging = [torch.empty((size, data.shape[1]), pin_memory=True) for _ in range(2)]
        copied: list[torch.cuda.Event | None] = [None, None]
        for i, start in enumerate(range(0, len(data), self.batch_size)):
            chunk = data[start : start + self.batch_size]
            buffer = staging[i % 2]
            previous = copied[i % 2]
            if previous is not None:
                previous.synchronize()
            buffer[: len(chunk)].copy_(chunk)
            batch = buffer[: len(chunk)].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))  # the copy's stream
            copied[i % 2] = event
            yield start, batch

    def _score(self, batch: torch.Tensor) -> torch.Tensor:
        """(len(batch), k + 1) float32: probabilities, then the novelty score."""
        with self._autocast():
            logits, features = self._forward(batch)
        proba = torch.softmax(logits.float() / self.temperature, dim=1)
        z = features.float() @ self._whitening
        d2 = (z * z).sum(dim=1, keepdim=True) - 2.0 * z @ self._means_w.T
        d2 = d2 + self._means_w2[None, :]
        novelty = d2.clamp_min(0.0).min(dim=1, keepdim=True).values.sqrt()
        return torch.cat([proba, novelty], dim=1)

    def _score_in_threads(self, data: torch.Tensor, result: torch.Tensor, threads: int) -> None:
        """Score CPU batches on up to ``threads`` threads of one PyTorch thread each.

        Whole batches side by side scale better than one batch split across
        threads (PyTorch's intra-op threads meet at every small operation; measured
        4 400 against 3 200 spectra/s for the thesis CNN on 2 cores). Every batch,
        a lone one too, is computed on one PyTorch thread, so the numbers do not
        depend on the thread count. The process's PyTorch thread count is 1
        during the call, and restored after it.
        """

        def run(start: int) -> None:
            with torch.inference_mode():
                batch = data[start : start + self.batch_size]
                result[start : start + len(batch)] = self._score(batch)

        starts = range(0, len(data), self.batch_size)
        torch.set_num_threads(1)
        try:
            if len(starts) == 1:
                run(0)
                return
            pool = ThreadPoolExecutor(
                min(threads, len(starts)), initializer=torch.set_num_threads, initargs=(1,)
            )
            try:
                list(pool.map(run, starts))
            finally:  # on Ctrl-C or an error, the batches not started are dropped
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            torch.set_num_threads(threads)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities float32 (n, k) and novelty scores float32 (n,) for X (n, grid_n)."""
        array = np.ascontiguousarray(x, dtype=np.float32)
        if not array.flags.writeable:  # torch.from_numpy needs a writable array
            array = array.copy()
        n = len(array)
        k = len(self.model.classes)
        if array.ndim != 2 or array.shape[1] != self.model.grid_n:
            raise ClassifyError(
                f"input has shape {array.shape}; the model expects (n, {self.model.grid_n})"
            )
        threads = torch.get_num_threads()
        with torch.inference_mode():
            result = torch.empty((n, k + 1), dtype=torch.float32, device=self.device)
            if self.device.type == "cpu" and threads > 1 and n > 0:
                self._score_in_threads(torch.from_numpy(array), result, threads)
            else:
                for start, batch in self._batches(array):
                    result[start : start + len(batch)] = self._score(batch)
            out = result.cpu().numpy()
        return out[:, :k], out[:, k]


def predictions_frame(
    rows: Rows,
    proba: np.ndarray,
    novelty: np.ndarray,
    *,
    classes: Sequence[str],
    threshold: float,
    model_id: str,
) -> pd.DataFrame:
    """The predictions table of ``rows`` (columns as `spectraldl.io.predictions.column_spec`).

    The H-alpha measurements come from the rows' metadata: measured when the
    files were read, stored by ingest in a dataset (NaN and ``unmeasurable``
    in a dataset written before them).
    """
    n = len(rows)
    quality = rows.quality.astype(np.int32) | np.where(
        novelty > threshold, np.int32(Quality.NOVEL), np.int32(0)
    )
    names = np.asarray(classes, dtype=object)
    data: dict[str, Any] = {
        "id": rows.ids,
        "source": rows.meta["source"],
        "archive": rows.meta["archive"],
        "origin": rows.meta["origin"],
        "object": rows.meta["object"],
        "ra": rows.meta["ra"].astype(np.float64),
        "dec": rows.meta["dec"].astype(np.float64),
        "mjd": rows.meta["mjd"].astype(np.float64),
        "snr": rows.meta["snr"].astype(np.float32),
        "predicted_class": names[np.argmax(proba, axis=1)] if n else np.zeros(0, object),
    }
    for i, name in enumerate(classes):
        data[probability_column(name)] = proba[:, i].astype(np.float32)
    data["quality"] = quality.astype(np.int32)
    data["quality_flags"] = flag_names_array(quality) if n else np.zeros(0, object)
    data["novelty"] = novelty.astype(np.float32)
    data["model_id"] = np.full(n, model_id, dtype=object)
    for name, info in MEASUREMENT_COLUMNS.items():  # H-alpha measured at ingest or read time
        values = rows.meta[name]
        data[name] = values if info.kind == "str" else values.astype(info.kind)
    return pd.DataFrame(data)
