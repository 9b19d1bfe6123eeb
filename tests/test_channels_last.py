"""The CNNs run as 2-D channels-last convolutions: same outputs, same parameters, trainable."""

from __future__ import annotations

import pytest
import torch

from spectraldl.ml.channels_last import ChannelsLastNet, has_convolutions
from spectraldl.ml.models import build_model


@pytest.mark.parametrize("name", ["cnn", "cnn-small"])
def test_same_outputs_and_shared_parameters(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name, n_classes=4).eval()
    wrapped = ChannelsLastNet(net).eval()
    x = torch.randn(33, 140)
    logits, features = net.forward_with_features(x)
    logits2, features2 = wrapped.forward_with_features(x)
    torch.testing.assert_close(logits2, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features2, features, rtol=1e-5, atol=1e-5)
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in net.parameters()}
    wrapped.train()
    wrapped(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_refuses_networks_it_cannot_rearrange() -> None:
    fnn = build_model("fnn", n_classes=3)
    assert not has_convolutions(fnn)
    with pytest.raises(ValueError, match="no convolutions"):
        ChannelsLastNet(fnn)
    padded = build_model("cnn-small", n_classes=3)
    padded.features[0] = torch.nn.Conv1d(1, 16, 5, padding="same")
    with pytest.raises(ValueError, match="zero padding"):
        ChannelsLastNet(padded)
    ceil = build_model("cnn-small", n_classes=3)
    ceil.features[2] = torch.nn.MaxPool1d(2, ceil_mode=True)
    with pytest.raises(ValueError, match="plain max-pooling"):
        ChannelsLastNet(ceil)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_channels_last_matches_cpu() -> None:
    torch.manual_seed(0)
    net = build_model("cnn", n_classes=3).eval()
    x = torch.randn(512, 140)
    expected = torch.softmax(net(x), dim=1)
    wrapped = ChannelsLastNet(net.cuda()).eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        got = torch.softmax(wrapped(x.cuda()).float(), dim=1).cpu()
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.97
    assert (got - expected).abs().max() < 0.05
