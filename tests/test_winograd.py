"""Winograd's kernel-3 convolutions on CPU: the network's outputs to float32 rounding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from spectraldl.classify.predictor import Predictor
from spectraldl.ml.modelcard import load_model
from spectraldl.ml.models import build_model
from spectraldl.ml.pretrained import resolve_model
from spectraldl.ml.quantized import calibration_rows
from spectraldl.ml.winograd import POINTS, WinogradNet, winograd_matrices


@pytest.mark.parametrize("m", sorted(POINTS))
def test_matrices_compute_the_correlation(m: int) -> None:
    bt, g, at = winograd_matrices(m)
    rng = np.random.default_rng(m)
    d, w = torch.from_numpy(rng.normal(size=m + 2)), torch.from_numpy(rng.normal(size=3))
    expected = torch.stack([(d[i : i + 3] * w).sum() for i in range(m)])
    torch.testing.assert_close(at @ ((g @ w) * (bt @ d)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("input_n", [140, 141, 150, 163])
def test_same_logits_and_features_as_the_network(input_n: int) -> None:
    torch.manual_seed(0)
    net = build_model("cnn", n_classes=4, input_n=input_n).eval()
    x = torch.randn(37, input_n) * 3
    with torch.inference_mode():
        logits, features = net.forward_with_features(x)
        logits2, features2 = WinogradNet(net, input_n).forward_with_features(x)
    torch.testing.assert_close(logits2, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features2, features, rtol=1e-5, atol=1e-5)


def test_calls_of_any_batch_size_one_after_another() -> None:
    """Batches of changing sizes through one WinogradNet, each as the network computes it."""
    torch.manual_seed(1)
    net = build_model("cnn", n_classes=4, input_n=140).eval()
    fast = WinogradNet(net, 140)
    with torch.inference_mode():
        for n in (64, 64, 5, 128, 1, 64):
            x = torch.randn(n, 140) * 2
            logits, _ = net.forward_with_features(x)
            torch.testing.assert_close(
                fast.forward_with_features(x)[0].clone(), logits, rtol=1e-5, atol=1e-5
            )


def test_passes_reuse_one_workspace_and_leave_earlier_results_alone() -> None:
    """Later passes, larger or smaller, neither allocate again nor change what earlier ones
    returned; each gives the bits of a WinogradNet that never ran before."""
    torch.manual_seed(2)
    net = build_model("cnn", n_classes=3, input_n=140).eval()
    fast = WinogradNet(net, 140)
    kept = []
    with torch.inference_mode():
        for n in (200, 3, 200, 77):
            x = torch.randn(n, 140) * 2
            out = fast.forward_with_features(x)
            fresh = WinogradNet(net, 140).forward_with_features(x)
            assert all(torch.equal(a, b) for a, b in zip(out, fresh, strict=True))
            kept.append((out, tuple(t.clone() for t in out)))
            if n == 200 and len(kept) == 1:
                (workspace,) = fast._idle
                buffers = {k: v.data_ptr() for k, v in workspace._buffers.items()}
        assert {k: v.data_ptr() for k, v in workspace._buffers.items()} == buffers
    for out, copy in kept:
        assert all(torch.equal(a, b) for a, b in zip(out, copy, strict=True))


def test_passes_on_several_threads_at_once_each_get_a_workspace() -> None:
    torch.manual_seed(3)
    net = build_model("cnn", n_classes=3, input_n=140).eval()
    fast = WinogradNet(net, 140)
    inputs = [torch.randn(n, 140) for n in (64, 9, 128, 33, 64, 100, 1, 50)]
    with torch.inference_mode():
        alone = [WinogradNet(net, 140).forward_with_features(x) for x in inputs]

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.inference_mode():
                return fast.forward_with_features(x)

        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(run, inputs))
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert 1 <= len(fast._idle) <= 4


def test_a_network_without_dense_layers_returns_features_of_its_own() -> None:
    """Features straight from the convolutions must not stay in the workspace."""
    torch.manual_seed(4)
    net = build_model("cnn", n_classes=3, input_n=140).eval()
    flatten = next(i for i, m in enumerate(net.features) if isinstance(m, torch.nn.Flatten))
    net.features = torch.nn.Sequential(*list(net.features)[: flatten + 1])
    net.head = torch.nn.Linear(256 * 14, 3)
    fast = WinogradNet(net, 140)
    with torch.inference_mode():
        x = torch.randn(16, 140)
        logits, features = fast.forward_with_features(x)
        expected = net.forward_with_features(x)
        copy = features.clone()
        fast.forward_with_features(torch.randn(16, 140))
    assert torch.equal(features, copy)
    torch.testing.assert_close(logits, expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features, expected[1], rtol=1e-5, atol=1e-5)


def test_refuses_what_it_does_not_rearrange() -> None:
    for name in ("fnn", "cnn-small"):  # no convolutions; kernels of 5
        with pytest.raises(ValueError):
            WinogradNet(build_model(name, n_classes=3), 140)
    padded = build_model("cnn", n_classes=3)
    padded.features[2] = torch.nn.Conv1d(64, 64, 3, padding=1)
    with pytest.raises(ValueError, match="unpadded"):
        WinogradNet(padded, 140)


@pytest.mark.slow
def test_predictor_on_the_shipped_cnn_agrees_with_plain_fp32() -> None:
    model = load_model(resolve_model("cnn"), device="cpu")
    rows = calibration_rows(model.config)  # the bundled real spectra and simulated ones
    x = np.concatenate([rows, np.random.default_rng(0).normal(0, 3, (500, rows.shape[1]))])
    fast = Predictor(model)
    assert isinstance(fast._forward.__self__, WinogradNet)
    proba, novelty = fast(x.astype(np.float32))
    plain_proba, plain_novelty = Predictor(model, winograd=False)(x.astype(np.float32))
    assert np.abs(proba - plain_proba).max() < 1e-5
    assert (proba.argmax(1) == plain_proba.argmax(1)).all()
    np.testing.assert_allclose(novelty, plain_novelty, rtol=1e-5)
