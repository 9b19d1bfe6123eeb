"""The networks: shapes, parameter counts and work per spectrum as the thesis specifies."""

from __future__ import annotations

import pytest
import torch

from spectraldl.ml.models import (
    ARCHITECTURES,
    SmallCNN,
    ThesisCNN,
    ThesisFNN,
    build_model,
    count_parameters,
    flops_per_spectrum,
)


def test_thesis_fnn_parameter_count() -> None:
    # 140*512+512 + 4*(512*512+512) + 512*3+3
    assert count_parameters(ThesisFNN(n_classes=3)) == 1_124_355
    assert count_parameters(ThesisFNN(n_classes=4)) == 1_124_355 + 513


def test_thesis_cnn_parameter_count() -> None:
    # convs (valid): 256 + 12352 + 24704 + 49280 + 98560 + 196864 = 382016;
    # 140 -> 138 -> 136 -> 68 -> 66 -> 64 -> 32 -> 30 -> 28 -> 14; fc 256*14 -> 512 -> 512 -> 3
    expected = 382_016 + (3584 * 512 + 512) + (512 * 512 + 512) + (512 * 3 + 3)
    assert expected == 2_481_731
    assert count_parameters(ThesisCNN(n_classes=3)) == expected


def test_small_cnn_parameter_count() -> None:
    # conv5-16, conv5-32, conv5-64 on 140 -> 136/68 -> 64/32 -> 28/14; fc 64*14 -> 128 -> 3
    expected = (16 * 5 + 16) + (32 * 16 * 5 + 32) + (64 * 32 * 5 + 64) + (896 * 128 + 128)
    expected += 128 * 3 + 3
    assert count_parameters(SmallCNN(n_classes=3)) == expected == 128_195


def test_thesis_cnn_layers_are_the_thesis_ones() -> None:
    net = ThesisCNN(n_classes=3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == [
        (1, 64, 3, 0),
        (64, 64, 3, 0),
        (64, 128, 3, 0),
        (128, 128, 3, 0),
        (128, 256, 3, 0),
        (256, 256, 3, 0),
    ]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool1d)]
    assert len(pools) == 3
    dropouts = [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.5, 0.5]
    linears = [
        (m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)
    ]
    assert linears == [(3584, 512), (512, 512), (512, 3)]


def test_fnn_layers() -> None:
    net = ThesisFNN(n_classes=3)
    linears = [
        (m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)
    ]
    assert linears == [(140, 512)] + [(512, 512)] * 4 + [(512, 3)]
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.5] * 5


def test_flops_per_spectrum() -> None:
    assert flops_per_spectrum(ThesisCNN(n_classes=3)) == pytest.approx(34.04e6, rel=1e-3)
    assert flops_per_spectrum(ThesisFNN(n_classes=3)) == pytest.approx(2.24e6, rel=1e-2)
    assert (
        flops_per_spectrum(SmallCNN(n_classes=3)) < flops_per_spectrum(ThesisCNN(n_classes=3)) / 25
    )


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_shapes_and_embedding(name: str) -> None:
    net = build_model(name, n_classes=4).eval()
    x = torch.randn(7, 140)
    logits = net(x)
    assert logits.shape == (7, 4)
    assert torch.equal(net(x.reshape(7, 1, 140)), logits)
    features = net.embed(x)
    assert features.shape == (7, net.embedding_dim)
    both_logits, both_features = net.forward_with_features(x)
    assert torch.allclose(both_logits, logits) and torch.allclose(both_features, features)
    assert torch.allclose(net.head(features), logits)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_keras_initialisation(name: str) -> None:
    net = build_model(name, n_classes=3)
    for module in net.modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv1d):
            assert torch.count_nonzero(module.bias) == 0
            fan_in = module.weight[0].numel()
            fan_out = module.weight.shape[0] * module.weight[0, 0].numel()
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            assert module.weight.abs().max() <= limit


def test_unknown_network_and_short_input() -> None:
    with pytest.raises(ValueError, match="unknown network 'resnet'; known: fnn, cnn, cnn-small"):
        build_model("resnet", n_classes=3)
    with pytest.raises(ValueError, match="too few"):
        ThesisCNN(n_classes=3, input_n=20)


def test_dropout_only_in_training_mode() -> None:
    net = ThesisFNN(n_classes=3)
    x = torch.randn(5, 140)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_gpu_matches_cpu(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name, n_classes=3).eval()
    x = torch.randn(64, 140)
    with torch.no_grad():
        cpu = net(x)
        gpu = net.to("cuda")(x.to("cuda")).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3, rtol=1e-3)
