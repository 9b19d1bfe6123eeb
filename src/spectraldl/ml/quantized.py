"""int8 inference on CPU: the trained network with weights and activations quantized to 8 bits.

On CPUs without native bf16 (AVX2 only, as the project's 2-core machines),
bf16 autocast is emulated and 10-20 times slower than fp32, so the way to
more spectra per second per core is int8: PyTorch's x86 backend (FBGEMM)
runs 8-bit convolutions about twice as fast as fp32 ones. The network is
quantized statically (per-channel weights, per-tensor activations) with
PyTorch's FX graph mode quantization, calibrated on a fixed set of spectra:
the bundled real spectra and simulated spectra of every class, preprocessed
with the model's own settings. The set is deterministic, so every process
(local workers, Dask workers) builds the same int8 network and a resumed or
distributed run agrees with a local one.

int8 changes the numbers a little: `benchmarks/classify.py` reports the share
of spectra whose arg-max class agrees with fp32. It is opt-in
(``--precision int8``), never chosen by ``auto``.

PyTorch marks ``torch.ao.quantization`` as deprecated in favour of torchao's
pt2e flow (which needs ``torch.compile`` at run time); it works in the PyTorch
versions this project supports, and its deprecation warnings are silenced
here, only around the calls that raise them.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from spectraldl.io.bundled import bundled_files
from spectraldl.jobs.ingest import read_and_preprocess
from spectraldl.ml.models import SpectrumNet
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.simulate import simulate_vectors

CALIBRATION_MIX = {"emission": 0.3, "absorption": 0.3, "double-peak": 0.3, "noise": 0.1}
CALIBRATION_SIMULATED = 384
"""Simulated LAMOST spectra in the calibration set (plus the bundled real ones)."""


class _LogitsAndFeatures(nn.Module):
    """The network as one graph returning (logits, penultimate features)."""

    def __init__(self, network: SpectrumNet) -> None:
        super().__init__()
        self.features = network.features
        self.head = network.head
        self.flatten_input = network.flatten_input

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(x.shape[0], -1) if self.flatten_input else x.reshape(x.shape[0], 1, -1)
        features = self.features(x)
        return self.head(features), features


class _QuietDeprecations:
    """PyTorch's quantization deprecation warnings ignored while any thread is inside.

    `warnings.catch_warnings` swaps the process-wide filter list and is not safe
    when threads overlap (the Predictor runs int8 batches side by side): here
    the first thread in installs the filters and the last one out restores them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved: warnings.catch_warnings | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._saved = warnings.catch_warnings()
                self._saved.__enter__()
                warnings.filterwarnings(
                    "ignore", category=DeprecationWarning, module=r"torch\.ao\..*"
                )
                warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*")
                warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
                warnings.filterwarnings(
                    "ignore", message=r".*quantized tensor creation functions.*"
                )
                warnings.filterwarnings("ignore", message=r".*quant_min and quant_max.*")
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0 and self._saved is not None:
                    self._saved.__exit__(None, None, None)
                    self._saved = None


_quiet_deprecations = _QuietDeprecations()


def calibration_rows(config: PreprocessConfig) -> np.ndarray:
    """The fixed calibration set (float32, (n, grid_n)) for a model's preprocessing."""
    real, _ = read_and_preprocess([f.path for f in bundled_files()], config=config)
    simulated = simulate_vectors(
        CALIBRATION_SIMULATED, archive="lamost", seed=0, mix=CALIBRATION_MIX, config=config
    )
    return np.ascontiguousarray(np.concatenate([real.X, simulated.X]), dtype=np.float32)


def quantize_network(network: SpectrumNet, calibration: np.ndarray) -> nn.Module:
    """An int8 copy of ``network`` returning (logits, features) in float32, for CPU.

    ``calibration`` (n, grid_n) float32 sets the activation ranges; the
    same rows give the same quantized network.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = _LogitsAndFeatures(copy.deepcopy(network).cpu()).eval()
    x = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    with _quiet_deprecations():
        torch.backends.quantized.engine = "x86"
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs=(x[:8],))
        with torch.inference_mode():
            for start in range(0, len(x), 256):
                prepared(x[start : start + 256])
        quantized = convert_fx(prepared)
    return _Quiet(quantized)


class _Quiet(nn.Module):
    """Runs the quantized graph with its deprecation warnings silenced."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _quiet_deprecations():
            return self.module(x)
