"""fp32 CPU inference for the 1-D CNNs: their kernel-3 convolutions by Winograd's minimal filtering.

A "valid" convolution with a kernel of 3 costs 3 multiply-adds per output and
input channel. Winograd's F(m, 3) computes m outputs from m + 2 inputs with
m + 2 multiplications per channel pair (1.33 for F(6, 3) instead of 3): the
inputs and weights are transformed once, each of the m + 2 products is one
matrix product over the whole batch (MKL runs it near the CPU's peak), and
an output transform sums them. For the thesis CNN this halves the
multiply-adds of its convolutions, which are 88 % of its work.

The transforms use the interpolation points 0, +-1, +-2, +-1/2 (m <= 6): the
results differ from PyTorch's direct convolution by float32 rounding only
(about 1e-6 in probability on the shipped models, checked by the tests).
Activations stay in the (n, length, channels) layout throughout; a ReLU after
each convolution and a max-pooling by 2 after it are folded into the output
transform (both commute with the bias and with each other).

Every intermediate array of a forward pass lives in a `Workspace` kept
between passes: freshly allocated arrays of megabytes come from the kernel
as new pages, and faulting them in cost 12 % of a pass at 128 spectra
(measured: 4 800 page faults per pass before, none after).

`WinogradNet` rearranges a trained `SpectrumNet` once (milliseconds) and
refuses, with `ValueError`, any layer sequence it does not reproduce exactly;
`spectraldl.classify.predictor.Predictor` then runs the network as it is.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction

import torch
from torch import nn

from spectraldl.ml.models import SpectrumNet

POINTS = {
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
    4: (0, 1, -1, 2, -2),
    2: (0, 1, -1),
}
"""Interpolation points of F(m, 3) (plus the point at infinity), largest m first."""

ConvStep = Callable[[torch.Tensor, int, "Workspace", str], tuple[torch.Tensor, int]]


def _polymul(p: list[Fraction], q: list[Fraction]) -> list[Fraction]:
    """Coefficients (lowest first) of the product of two polynomials."""
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def _vanishing(points: Sequence[Fraction]) -> list[Fraction]:
    """Coefficients of the polynomial that is zero at ``points``."""
    poly = [Fraction(1)]
    for b in points:
        poly = _polymul(poly, [-b, Fraction(1)])
    return poly


def _exact(rows: list[list[Fraction]]) -> torch.Tensor:
    """A float64 tensor of exact rationals, each rounded once."""
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)


def winograd_matrices(m: int, r: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B^T, G, A^T) of F(m, r), float64, exact rationals rounded once.

    For inputs d (m + r - 1) and weights g (r), the correlation
    ``y_i = sum_k g_k d_(i+k)`` is ``A^T ((G g) * (B^T d))``. The row of the
    point 1 carries the bias: A^T's column there is all ones.
    """
    points = [Fraction(p) for p in POINTS[m]]
    alpha = m + r - 1
    bt, g, at = [], [], [[Fraction(0)] * alpha for _ in range(m)]
    for j, a in enumerate(points):
        others = points[:j] + points[j + 1 :]
        scale = Fraction(1)
        for b in others:
            scale *= a - b
        bt.append([*_vanishing(others), Fraction(0)])
        g.append([a**k / scale for k in range(r)])
        for i in range(m):
            at[i][j] = a**i
    bt.append(_vanishing(points))
    g.append([Fraction(0)] * (r - 1) + [Fraction(1)])
    at[m - 1][alpha - 1] = Fraction(1)
    return _exact(bt), _exact(g), _exact(at)


TAIL_ROWS = 8
"""Zeroed rows after the last spectrum's activations: F(m, 3) tiles read up to m - 2 past it."""


class Workspace:
    """Float32 buffers one forward pass reuses, each grown to the largest size asked of it.

    A layer computes its transforms and products in buffers ``"a"``, ``"b"``
    and ``"c"``, and writes its output activations to ``"even"`` or ``"odd"``
    by its place in the network, so that its input (the previous layer's
    output) stays intact. A workspace serves one pass at a time.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, *shape: int) -> torch.Tensor:
        """A contiguous tensor of ``shape`` in buffer ``name`` (its former contents undefined)."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[name] = torch.empty(numel)
        return buffer[:numel].view(shape)

    def activations(self, name: str, n: int, rows: int, channels: int) -> torch.Tensor:
        """(n, rows, channels) activations in ``name``, followed by `TAIL_ROWS` zeroed rows."""
        flat = self.take(name, (n * rows + TAIL_ROWS) * channels)
        flat[n * rows * channels :] = 0.0
        return flat[: n * rows * channels].view(n, rows, channels)


class _WinogradConv:
    """Conv1d (kernel 3, valid) + ReLU [+ MaxPool1d(2)] on (n, rows, C) activations by F(m, 3).

    The spectra's last tile may reach past their valid length: those outputs
    (from the next spectrum's rows or the zeroed tail) are never read as valid.
    """

    def __init__(self, conv: nn.Conv1d, length_out: int, pool: bool) -> None:
        # The fewest products: (m + 2) per tile of m outputs, over whole tiles.
        self.m = min(POINTS, key=lambda m: ((m + 2) * -(-length_out // m), m))
        bt, g, at = winograd_matrices(self.m)
        weight = conv.weight.detach().double()  # (out, in, 3)
        self.weight = torch.einsum("jk,oik->jio", g, weight).float().contiguous()
        self.bias = torch.zeros(self.m + 2, 1, conv.out_channels)
        if conv.bias is not None:
            self.bias[POINTS[self.m].index(1), 0] = conv.bias.detach()
        self.bt, self.at = bt.float(), at.float()
        self.pool = pool

    def __call__(
        self, h: torch.Tensor, valid: int, ws: Workspace, out_name: str
    ) -> tuple[torch.Tensor, int]:
        n, rows, channels = h.shape
        alpha, m = self.m + 2, self.m
        out_channels = self.weight.shape[2]
        tiles = -(-(valid - 2) // m)
        strides = (channels, rows * channels, m * channels, 1)
        windows = ws.take("a", alpha, n, tiles, channels)
        windows.copy_(h.as_strided((alpha, n, tiles, channels), strides))
        u = ws.take("b", alpha, n * tiles * channels)
        torch.mm(self.bt, windows.view(alpha, -1), out=u)
        products = ws.take("c", alpha, n * tiles, out_channels)
        torch.baddbmm(self.bias, u.view(alpha, n * tiles, channels), self.weight, out=products)
        y = ws.take("a", m, n * tiles * out_channels)
        torch.mm(self.at, products.view(alpha, -1), out=y)
        y = y.view(m, n, tiles, out_channels)
        valid -= 2
        if self.pool:
            pooled = ws.take("b", m // 2, n, tiles, out_channels)
            y = torch.maximum(y[0::2], y[1::2], out=pooled)
            m, valid = m // 2, valid // 2
        out = ws.activations(out_name, n, tiles * m, out_channels)
        torch.clamp(y, min=0.0, out=out.view(n, tiles, m, out_channels).permute(2, 0, 1, 3))
        return out, valid


class _FirstConv:
    """Conv1d from one input channel + ReLU [+ MaxPool1d(2)]: (n, L) -> (n, L_out, C)."""

    def __init__(self, conv: nn.Conv1d, pool: bool) -> None:
        self.kernel = conv.kernel_size[0]
        self.weight = conv.weight.detach()[:, 0, :].t().contiguous()  # (k, out)
        self.bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.pool = pool

    def __call__(
        self, x: torch.Tensor, valid: int, ws: Workspace, out_name: str
    ) -> tuple[torch.Tensor, int]:
        n, channels = x.shape[0], self.weight.shape[1]
        valid -= self.kernel - 1
        columns = ws.take("a", n, valid, self.kernel)
        columns.copy_(x.unfold(1, self.kernel, 1))
        columns = columns.view(-1, self.kernel)
        if not self.pool:
            out = ws.activations(out_name, n, valid, channels)
            torch.addmm(self.bias, columns, self.weight, out=out.view(-1, channels))
            return out.relu_(), valid
        h = ws.take("b", n * valid, channels)
        torch.addmm(self.bias, columns, self.weight, out=h)
        out = ws.activations(out_name, n, valid // 2, channels)
        torch.amax(
            h.view(n, valid, channels)[:, : valid // 2 * 2].unflatten(1, (valid // 2, 2)),
            2,
            out=out,
        )
        return out.relu_(), valid // 2


class _Dense:
    """Linear [+ ReLU] on (n, features); after a flatten, its inputs reordered to (L, C)."""

    def __init__(self, linear: nn.Linear, relu: bool, channels_first: tuple[int, int] | None):
        weight = linear.weight.detach()
        if channels_first is not None:  # PyTorch flattens (C, L); the activations are (L, C)
            channels, length = channels_first
            weight = weight.view(-1, channels, length).transpose(1, 2).reshape(weight.shape[0], -1)
        self.weight = weight.contiguous().t()
        self.bias = linear.bias.detach() if linear.bias is not None else None
        self.relu = relu

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        out = h @ self.weight if self.bias is None else torch.addmm(self.bias, h, self.weight)
        return out.relu_() if self.relu else out


def _is_pool2(layer: nn.Module | None) -> bool:
    return (
        isinstance(layer, nn.MaxPool1d)
        and layer.kernel_size in (2, (2,))
        and layer.stride in (2, (2,))
        and layer.padding in (0, (0,))
        and layer.dilation in (1, (1,))
        and not layer.ceil_mode
    )


def _check_conv(conv: nn.Conv1d) -> None:
    """`ValueError` unless ``conv`` is a plain valid convolution."""
    plain = (
        conv.stride == (1,)
        and conv.dilation == (1,)
        and conv.groups == 1
        and conv.padding in ((0,), 0)
        and conv.padding_mode == "zeros"
    )
    if not plain:
        raise ValueError(f"{conv}: only unpadded, unstrided, ungrouped convolutions")
    if conv.in_channels != 1 and conv.kernel_size != (3,):
        raise ValueError(f"{conv}: only kernels of 3 after the first convolution")


def _conv_steps(
    layers: list[nn.Module], input_n: int
) -> tuple[list[ConvStep], int, tuple[int, int]]:
    """Steps of the leading Conv1d, ReLU[, MaxPool1d(2)] groups; next index, (C, L) after."""
    steps: list[ConvStep] = []
    length, channels, i = input_n, 1, 0
    while i < len(layers) and isinstance(conv := layers[i], nn.Conv1d):
        _check_conv(conv)
        if i + 1 >= len(layers) or not isinstance(layers[i + 1], nn.ReLU):
            raise ValueError(f"{conv}: a convolution without a ReLU after it")
        pool = i + 2 < len(layers) and _is_pool2(layers[i + 2])
        length -= int(conv.kernel_size[0]) - 1
        if length < 1:
            raise ValueError(f"{conv}: no outputs left")
        if not steps and conv.in_channels == 1:
            steps.append(_FirstConv(conv, pool))
        else:
            steps.append(_WinogradConv(conv, length, pool))
        length, channels = (length // 2 if pool else length), int(conv.out_channels)
        i += 3 if pool else 2
    if not steps:
        raise ValueError("no convolution first")
    return steps, i, (channels, length)


class WinogradNet:
    """A trained CNN of `spectraldl.ml.models` rearranged for fp32 inference on CPU."""

    def __init__(self, network: SpectrumNet, input_n: int) -> None:
        if network.flatten_input or not isinstance(network.features, nn.Sequential):
            raise ValueError(f"{type(network).__name__} is not a CNN of Sequential features")
        layers = [m for m in network.features if not isinstance(m, nn.Dropout)]
        self.input_n = input_n
        self.convs, i, shape = _conv_steps(layers, input_n)
        if i >= len(layers) or not isinstance(layers[i], nn.Flatten):
            raise ValueError(f"{type(network).__name__}: no flatten after its convolutions")
        i += 1
        first: tuple[int, int] | None = shape
        self.dense: list[_Dense] = []
        while i < len(layers):
            if not isinstance(linear := layers[i], nn.Linear):
                raise ValueError(f"{linear}: not a layer WinogradNet rearranges")
            relu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)
            self.dense.append(_Dense(linear, relu, first))
            first = None
            i += 2 if relu else 1
        self.head = network.head
        self._lock = threading.Lock()
        self._idle: list[Workspace] = []

    @contextmanager
    def _workspace(self) -> Iterator[Workspace]:
        """A workspace no other pass is using: one is kept per pass that ran concurrently."""
        with self._lock:
            ws = self._idle.pop() if self._idle else Workspace()
        try:
            yield ws
        finally:
            with self._lock:
                self._idle.append(ws)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features, as `SpectrumNet.forward_with_features`."""
        n = x.shape[0]
        h, valid = x.reshape(n, -1), self.input_n
        with self._workspace() as ws:
            for i, conv in enumerate(self.convs):
                h, valid = conv(h, valid, ws, "odd" if i % 2 else "even")
            if not self.dense:  # PyTorch's (C, L) flatten, copied out of the workspace
                h = h[:, :valid].transpose(1, 2).clone(memory_format=torch.contiguous_format)
                h = h.view(n, -1)
            else:  # each spectrum's valid (L, C) rows: a matrix whose row stride spans all rows
                rows, channels = h.shape[1:]
                h = h.as_strided((n, valid * channels), (rows * channels, 1))
                for dense in self.dense:
                    h = dense(h)
        return self.head(h), h
