"""The 1-D CNNs run as (1 x k) 2-D convolutions on channels-last tensors, for GPUs.

PyTorch runs a Conv1d as a 2-D convolution on NCHW tensors; cuDNN's tensor-core
kernels for bf16/fp16 want NHWC ("channels last"), so every layer pays for
layout conversions. `ChannelsLastNet` wraps a trained `SpectrumNet` and runs
the same layers, with the same parameters (shared, not copied: training
through it trains the wrapped network), as 2-D operations on channels-last
tensors. Outputs equal the wrapped network's up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from spectraldl.ml.models import SpectrumNet


class _Conv1dAs2d(nn.Module):
    """A Conv1d applied to (n, C, 1, L) tensors through conv2d with a (1 x k) kernel."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if isinstance(conv.padding, str):
            raise ValueError(f"padding {conv.padding!r}: only explicit padding runs as 2-D")
        self.conv = conv
        self.padding = (0, conv.padding[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return functional.conv2d(
            x,
            conv.weight.unsqueeze(2),
            conv.bias,
            stride=(1, conv.stride[0]),
            padding=self.padding,
            dilation=(1, conv.dilation[0]),
            groups=conv.groups,
        )


def _as_2d(layer: nn.Module) -> nn.Module:
    """The layer for (n, C, 1, L) tensors; `ValueError` for settings it does not carry over."""
    if isinstance(layer, nn.Conv1d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"{layer}: only numeric zero padding is rearranged")
        return _Conv1dAs2d(layer)
    if isinstance(layer, nn.MaxPool1d):
        if layer.padding != 0 or layer.dilation != 1 or layer.ceil_mode:
            raise ValueError(f"{layer}: only plain max-pooling is rearranged")
        return nn.MaxPool2d((1, layer.kernel_size), (1, layer.stride))  # type: ignore[arg-type]
    return layer


def has_convolutions(network: nn.Module) -> bool:
    """Whether the network has 1-D convolutions to run as 2-D ones."""
    return any(isinstance(m, nn.Conv1d) for m in network.modules())


class ChannelsLastNet(nn.Module):
    """``network`` (a CNN of `spectraldl.ml.models`) run on channels-last 2-D tensors."""

    def __init__(self, network: SpectrumNet) -> None:
        super().__init__()
        if not isinstance(network.features, nn.Sequential) or not has_convolutions(network):
            raise ValueError(f"{type(network).__name__} has no convolutions to rearrange")
        self.network = network
        self.features = nn.Sequential(*[_as_2d(layer) for layer in network.features])

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features, as `SpectrumNet.forward_with_features`."""
        x = x.reshape(x.shape[0], 1, 1, -1).contiguous(memory_format=torch.channels_last)
        features = self.features(x)
        return self.network.head(features), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, (n, n_classes)."""
        return self.forward_with_features(x)[0]
