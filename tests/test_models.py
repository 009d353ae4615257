import pytest
import torch
from torch import nn

from lipnb import lipschitz_bound
from lipnb.layers import CONV_KINDS, BjorckLinear, LipschitzConv2d, MaxMin
from lipnb.models import ARCHITECTURES, build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("conv", CONV_KINDS)
@pytest.mark.parametrize("input_shape", SHAPES)
def test_models_map_every_input_shape_to_logits(arch, conv, input_shape):
    model = build_model(arch, conv, "maxmin", input_shape, num_classes=10)
    assert model(torch.rand(2, *input_shape)).shape == (2, 10)


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


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bcop_models_are_one_lipschitz(arch):
    model = build_model(arch, "bcop", "maxmin", (1, 8, 8))
    assert lipschitz_bound(model, (1, 8, 8)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "medium"}, "arch"),
        ({"conv": "orthogonal"}, "conv"),
        ({"activation": "tanh"}, "activation"),
        ({"input_shape": (1, 10, 10)}, "downsamples by 4"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"arch": "small", "conv": "bcop", "activation": "maxmin", "input_shape": (1, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        build_model(**arguments)
