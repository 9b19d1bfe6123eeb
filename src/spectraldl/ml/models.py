"""Network definitions: the thesis' FNN and CNN, and a small CNN for archive-scale CPU inference.

Every network maps float32 ``(n, input_n)`` spectra (or ``(n, 1, input_n)``)
to ``(n, n_classes)`` logits; the softmax lives in the loss (cross-entropy on
logits) and in `spectraldl.ml.training.TrainedModel.predict_proba`. Each one is
split into ``features`` (everything up to and including the last hidden
layer, whose output `embed` returns for the novelty score) and ``head`` (the
output layer).

Networks are built by name with `build_model`, from the name and keyword
arguments a model card stores. Weights start as in Keras, which the thesis
used: Glorot-uniform kernels and zero biases.

Parameter counts for 140 input points and 3 classes (asserted in the tests):

========= ========== ============== =============================================
name      parameters MFLOP/spectrum layers
========= ========== ============== =============================================
fnn       1 124 355  2.2            5 x (dense-512, ReLU, dropout 0.5), dense-3
cnn       2 481 731  34.0           conv3-64 x2, pool, conv3-128 x2, pool,
                                    conv3-256 x2, pool, (fc-512, dropout) x2, fc-3
cnn-small 128 195    1.2            conv5-16, pool, conv5-32, pool, conv5-64,
                                    pool, fc-128, dropout, fc-3
========= ========== ============== =============================================

The thesis networks are the Keras models of the thesis' notebooks: "valid"
(unpadded) convolutions with ReLU, max-pooling by 2, dropout 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class SpectrumNet(nn.Module):
    """Base of the networks: ``features`` then ``head``; input (n, L) or (n, 1, L)."""

    features: nn.Module
    head: nn.Linear
    flatten_input: bool = False

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            return x.reshape(x.shape[0], -1)
        return x.reshape(x.shape[0], 1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, (n, n_classes)."""
        return self.head(self.features(self._prepare(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the last hidden layer's output), (n, embedding_dim)."""
        return self.features(self._prepare(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features from one pass."""
        features = self.features(self._prepare(x))
        return self.head(features), features

    @property
    def embedding_dim(self) -> int:
        """Width of the penultimate features."""
        return self.head.in_features

    def reset_parameters_keras(self) -> None:
        """Glorot-uniform weights and zero biases, as Keras initialises layers."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv1d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


class ThesisFNN(SpectrumNet):
    """The thesis' feed-forward network: 5 x (dense-512, ReLU, dropout 0.5), dense output.

    1 124 355 parameters for 140 inputs and 3 classes; about 2.2 MFLOP per spectrum.
    """

    flatten_input = True

    def __init__(
        self,
        *,
        n_classes: int,
        input_n: int = 140,
        hidden: int = 512,
        depth: int = 5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_n
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, n_classes)
        self.reset_parameters_keras()


def _conv_block(channels_in: int, channels_out: int, kernel: int, n_conv: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(n_conv):
        layers += [nn.Conv1d(channels_in if i == 0 else channels_out, channels_out, kernel)]
        layers += [nn.ReLU()]
    layers.append(nn.MaxPool1d(2))
    return layers


def _conv_output_n(input_n: int, kernel: int, blocks: list[int]) -> int:
    """Length after blocks of ``n`` unpadded convolutions each followed by max-pool 2."""
    n = input_n
    for n_conv in blocks:
        n = (n - n_conv * (kernel - 1)) // 2
        if n < 1:
            raise ValueError(f"{input_n} input points are too few for this network")
    return n


class ThesisCNN(SpectrumNet):
    """The thesis' VGG-like 1-D CNN.

    conv3-64 x2, max-pool 2, conv3-128 x2, max-pool 2, conv3-256 x2, max-pool 2,
    flatten, (fc-512, ReLU, dropout 0.5) x2, fc output; unpadded ("valid")
    convolutions with ReLU as in the thesis' Keras model. 2 481 731 parameters
    for 140 inputs and 3 classes; about 34 MFLOP per spectrum.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        input_n: int = 140,
        channels: tuple[int, int, int] = (64, 128, 256),
        fc: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        conv = [
            *_conv_block(1, c1, 3, 2),
            *_conv_block(c1, c2, 3, 2),
            *_conv_block(c2, c3, 3, 2),
        ]
        n_out = _conv_output_n(input_n, 3, [2, 2, 2])
        self.features = nn.Sequential(
            *conv,
            nn.Flatten(),
            nn.Linear(c3 * n_out, fc),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(fc, n_classes)
        self.reset_parameters_keras()


class SmallCNN(SpectrumNet):
    """A small 1-D CNN for classifying whole archives on CPU.

    conv5-16, pool, conv5-32, pool, conv5-64, pool, fc-128 (ReLU, dropout 0.5),
    fc output: 128 195 parameters and about 1.2 MFLOP per spectrum (140
    inputs, 3 classes), 30 times less work than `ThesisCNN`.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        input_n: int = 140,
        channels: tuple[int, int, int] = (16, 32, 64),
        kernel: int = 5,
        fc: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        n_out = _conv_output_n(input_n, kernel, [1, 1, 1])
        self.features = nn.Sequential(
            *_conv_block(1, c1, kernel, 1),
            *_conv_block(c1, c2, kernel, 1),
            *_conv_block(c2, c3, kernel, 1),
            nn.Flatten(),
            nn.Linear(c3 * n_out, fc),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(fc, n_classes)
        self.reset_parameters_keras()


ARCHITECTURES: dict[str, Callable[..., SpectrumNet]] = {
    "fnn": ThesisFNN,
    "cnn": ThesisCNN,
    "cnn-small": SmallCNN,
}
"""Network constructors by the name ``--model`` and model cards use."""


def build_model(name: str, **kwargs: Any) -> SpectrumNet:
    """Build the network ``name`` (a key of `ARCHITECTURES`) with keyword arguments.

    Parameters
    ----------
    name
        ``cnn``, ``fnn`` or ``cnn-small``.
    **kwargs
        The network's arguments (``n_classes``, ``input_n``, ...).

    Returns
    -------
    SpectrumNet
        The untrained network.

    Raises
    ------
    ValueError
        An unknown name (the message names the known networks).
    """
    try:
        constructor = ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"unknown network {name!r}; known: {known}") from None
    return constructor(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters.

    Parameters
    ----------
    model
        Any PyTorch module.

    Returns
    -------
    int
        Elements of the parameters that require gradients.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_spectrum(model: SpectrumNet, input_n: int = 140) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass of one spectrum.

    Counts the convolutions and linear layers (activations, pooling and
    normalisation are left out).

    Parameters
    ----------
    model
        The network; run once on zeros in eval mode, its mode restored after.
    input_n
        Points on the grid of the input spectrum.

    Returns
    -------
    int
        Operations per spectrum.
    """
    total = 0
    hooks = []

    def conv_hook(module: nn.Conv1d, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.in_channels // module.groups
        total += 2 * output.shape[1] * output.shape[2] * k

    def linear_hook(module: nn.Linear, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * module.in_features * module.out_features

    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, input_n, device=next(model.parameters()).device))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return total
