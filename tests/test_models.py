import pytest
import torch
from torch import nn

from lipnb import lipschitz_bound
from lipnb.layers import CONV_KINDS, BjorckLinear, LipschitzConv2d, MaxMin, SLLConv2d, SLLLinear
from lipnb.models import ARCHITECTURES, RESIDUAL_BLOCK_KINDS, build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


# every (arch, conv) pair that builds: residual blocks (SLL) build the residual arch, other kinds the rest
NETWORKS = [
    (arch, conv)
    for arch in ARCHITECTURES
    for conv in CONV_KINDS
    if conv == "plain" or (conv in RESIDUAL_BLOCK_KINDS) == (arch == "residual")
]


def activation_of(arch: str) -> str:
    return "relu" if arch == "residual" else "maxmin"


@pytest.mark.parametrize("arch, conv", NETWORKS)
@pytest.mark.parametrize("input_shape", SHAPES)
def test_models_map_every_input_shape_to_logits(arch, conv, input_shape):
    model = build_model(arch, conv, activation_of(arch), input_shape, num_classes=10)
    assert model(torch.rand(2, *input_shape)).shape == (2, 10)


def test_every_kind_builds_some_network():
    assert {conv for _, conv in NETWORKS} == set(CONV_KINDS)


def test_residual_network_is_of_the_size_of_small():
    residual = build_model("residual", "sll", "relu", (1, 28, 28))
    small = build_model("small", "bcop", "maxmin", (1, 28, 28))
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert 1 < count(residual) / count(small) < 3
    assert sum(isinstance(m, SLLConv2d) for m in residual) == 2 and sum(isinstance(m, SLLLinear) for m in residual) == 1
    assert isinstance(residual[-1], BjorckLinear)
    assert lipschitz_bound(residual, (1, 28, 28)) == pytest.approx(1.0, abs=1e-5)


def test_paper_widths():
    # Appendix / Wong et al. 2018: Small 16-32 convs + FC 100; Large 32-32-64-64 convs + FC 512-512
    small = build_model("small", "bcop", input_shape=(1, 28, 28))
    large = build_model("large", "bcop", input_shape=(3, 32, 32))
    fc3 = build_model("fc3", "bcop", input_shape=(1, 28, 28))
    convs = lambda m: [(c.out_channels, c.kernel_size, c.stride) for c in m if isinstance(c, LipschitzConv2d)]  # noqa: E731
    linears = lambda m: [(l.in_features, l.out_features) for l in m if isinstance(l, BjorckLinear)]  # noqa: E731
    assert convs(small) == [(16, 4, 2), (32, 4, 2)]
    assert linears(small) == [(32 * 7 * 7, 100), (100, 10)]
    assert convs(large) == [(32, 3, 1), (32, 4, 2), (64, 3, 1), (64, 4, 2)]
    assert linears(large) == [(64 * 8 * 8, 512), (512, 512), (512, 10)]
    assert convs(fc3) == [] and linears(fc3) == [(784, 1024), (1024, 1024), (1024, 1024), (1024, 10)]
    assert sum(isinstance(m, MaxMin) for m in large) == 6  # after every layer but the last


def test_plain_models_are_unconstrained_and_relu_is_available():
    model = build_model("small", "plain", "relu", (1, 8, 8))
    assert any(isinstance(m, nn.Linear) for m in model) and any(isinstance(m, nn.ReLU) for m in model)
    assert not any(isinstance(m, BjorckLinear) for m in model)


@pytest.mark.parametrize("arch, conv", [(arch, conv) for arch, conv in NETWORKS if conv in ("bcop", "sll")])
def test_bcop_and_sll_models_are_one_lipschitz(arch, conv):
    model = build_model(arch, conv, activation_of(arch), (1, 8, 8))
    assert lipschitz_bound(model, (1, 8, 8)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "medium"}, "arch"),
        ({"conv": "orthogonal"}, "conv"),
        ({"activation": "tanh"}, "activation"),
        ({"input_shape": (1, 10, 10)}, "downsamples by 4"),
        ({"conv": "sll"}, "conv 'sll' is a residual block that keeps the width: use arch='residual'"),
        ({"arch": "residual", "conv": "bcop", "activation": "relu"}, "conv must be one of 'sll', 'plain', not 'bcop'"),
        ({"arch": "residual", "conv": "sll"}, "pass activation='relu', not 'maxmin'"),
        ({"arch": "residual", "conv": "sll", "activation": "relu", "input_shape": (5, 8, 8)}, "at most 4 input channels"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"arch": "small", "conv": "bcop", "activation": "maxmin", "input_shape": (1, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        build_model(**arguments)
