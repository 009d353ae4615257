"""Layer behaviour: the Lipschitz constraints hold at init and after training, caching, export, errors."""

import pytest
import torch
from torch import nn

from conftest import LINEAR_CONV_KINDS, dense_singular_values, train_steps
from lipnb import export
from lipnb.layers import (
    CONV_KINDS,
    BCOPConv2d,
    BjorckLinear,
    GroupSort,
    InvertibleDownsampling,
    MaxMin,
    OSSNConv2d,
    SVCMConv2d,
    lipschitz_conv,
)
from lipnb.orthogonal import LINEAR_FORMS, ORTHOGONALIZERS, polar
from lipnb.spectrum import singular_values


BCOP_SHAPES = [(3, 6), (5, 5), (6, 3)]  # in < out (isometry), in = out, in > out (co-isometry)


@pytest.mark.parametrize("cin, cout", BCOP_SHAPES)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_bcop_is_orthogonal_at_init_and_after_training(cin, cout, k):
    layer = BCOPConv2d(cin, cout, k)
    for _ in range(2):
        sigma = singular_values(layer, (8, 8))
        assert sigma.numel() == min(cin, cout) * 64
        assert (sigma - 1).abs().max() <= 1e-5
        train_steps(layer, (cin, 8, 8))


@pytest.mark.parametrize("k", [3, 5])
def test_bcop_uses_every_projector_pair(k):
    # the reference code reused the first pair for k > 2; here each pair must shape the kernel
    layer = BCOPConv2d(4, 4, k).double()
    before = layer.weight
    with torch.no_grad():
        layer.parametrizations.weight[0].projector_spans[-1].copy_(torch.linalg.qr(torch.randn(4, 2).double())[0])
    after = layer.weight
    assert (after - before).abs().max() > 1e-3
    assert (singular_values(layer, (6, 6)) - 1).abs().max() < 1e-10


@pytest.mark.parametrize("cin, cout, k", [(3, 6, 3), (6, 3, 2), (4, 4, 5)])
def test_bcop_orthogonalizers_after_training(cin, cout, k):
    """``polar`` computes what the paper's Björck converges to; ``cholesky`` another orthogonal kernel
    with the same projectors, and a callable orthogonalizer is used as given."""
    layer = BCOPConv2d(cin, cout, k, orthogonalizer="polar")
    train_steps(layer, (cin, 8, 8))
    paper = BCOPConv2d(cin, cout, k, orthogonalizer="bjorck")
    paper.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer.weight, paper.weight, atol=2e-6, rtol=0)
    for orthogonalizer in ("cholesky", polar):
        other = BCOPConv2d(cin, cout, k, orthogonalizer=orthogonalizer)
        other.load_state_dict(layer.state_dict())
        assert (singular_values(other, (8, 8)) - 1).abs().max() <= 1e-5
        if orthogonalizer == "cholesky":
            assert (other.weight - layer.weight).abs().max() > 1e-3
        else:
            torch.testing.assert_close(other.weight, layer.weight, atol=0, rtol=0)
    with pytest.raises(ValueError, match="'cholesky', 'polar', 'bjorck'"):
        BCOPConv2d(cin, cout, k, orthogonalizer="qr")


def test_strided_bcop_is_orthogonal():
    layer = BCOPConv2d(2, 8, 4, stride=2)
    train_steps(layer, (2, 8, 8))
    assert (singular_values(layer, (8, 8)) - 1).abs().max() <= 1e-5


def test_gradient_norm_is_preserved_through_bcop_and_maxmin():
    model = nn.Sequential(BCOPConv2d(4, 4, 3), MaxMin(), BCOPConv2d(4, 4, 2), MaxMin(), BCOPConv2d(4, 4, 5))
    train_steps(model, (4, 8, 8), steps=5)
    model.double()
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(model(x), x, g)
    torch.testing.assert_close(vjp.flatten(1).norm(dim=1), g.flatten(1).norm(dim=1), atol=1e-9, rtol=0)


def run_power_iterations(layer: nn.Module, input_shape, forwards: int = 30) -> None:
    """Training-mode forwards without steps: OSSN's power iteration catches up with the weights."""
    layer.train()
    with torch.no_grad():
        for _ in range(forwards):
            layer(torch.rand(1, *input_shape))


@pytest.mark.parametrize("kind", ["rko", "ossn"])
@pytest.mark.parametrize("cin, cout, k, stride", [(3, 5, 3, 1), (6, 2, 2, 1), (2, 3, 4, 2)])
def test_constrained_convs_are_one_lipschitz_after_training(kind, cin, cout, k, stride):
    layer = lipschitz_conv(kind, cin, cout, k, stride)
    train_steps(layer, (cin, 8, 8), steps=30)
    run_power_iterations(layer, (cin, 8, 8))
    assert singular_values(layer, (8, 8))[0] <= 1 + 1e-4


def test_ossn_estimate_converges_to_the_exact_norm():
    layer = OSSNConv2d(4, 4, 3)
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10)  # norm well above 1: the normalization is active
    train_steps(layer, (4, 8, 8), steps=30)
    run_power_iterations(layer, (4, 8, 8))
    assert singular_values(layer, (8, 8))[0] == pytest.approx(1.0, abs=1e-4)


def test_ossn_finds_a_new_top_direction_after_a_long_stable_one():
    # a kernel whose norm sits at the zero frequency (all taps equal) for many iterations, then one
    # whose norm sits at the highest frequency: the persistent vector must not have lost that direction
    layer = OSSNConv2d(1, 1, 2)
    with torch.no_grad():
        layer.parametrizations.weight.original.copy_(torch.full((1, 1, 2, 2), 2.0))
    run_power_iterations(layer, (1, 8, 8), forwards=60)
    with torch.no_grad():
        layer.parametrizations.weight.original.copy_(torch.tensor([[[[3.0, -3.0], [-3.0, 3.0]]]]))
    run_power_iterations(layer, (1, 8, 8), forwards=30)
    assert singular_values(layer, (8, 8))[0] == pytest.approx(1.0, abs=1e-4)


def test_svcm_is_one_lipschitz_after_projection():
    layer = SVCMConv2d(4, 6, 3)
    with torch.no_grad():
        layer.weight.mul_(5)
    train_steps(layer, (4, 8, 8))
    assert singular_values(layer, (8, 8))[0] > 1  # unconstrained between projections
    layer.project()
    assert singular_values(layer, (8, 8))[0] <= 1 + 1e-4
    with pytest.raises(ValueError, match="input_size"):
        SVCMConv2d(2, 2, 3).project()


@pytest.mark.parametrize("cin, cout", [(7, 4), (4, 7), (5, 5)])
def test_bjorck_linear_is_semi_orthogonal_after_training(cin, cout):
    layer = BjorckLinear(cin, cout)
    train_steps(layer, (cin,))
    sigma = singular_values(layer)
    assert (sigma - 1).abs().max() <= 1e-5
    torch.testing.assert_close(sigma, dense_singular_values(layer.double().eval(), (cin,)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("orthogonalizer", list(ORTHOGONALIZERS))
def test_bjorck_linear_training_forward_is_the_layer_of_its_weight(orthogonalizer, monkeypatch):
    # with cholesky and polar the training forward never forms the weight (LINEAR_FORMS): the same layer
    calls = []
    for function, linear_form in LINEAR_FORMS.items():
        counted = lambda *args, form=linear_form: calls.append(1) or form(*args)  # noqa: E731
        monkeypatch.setitem(LINEAR_FORMS, function, counted)
    layer = BjorckLinear(200, 60, orthogonalizer=orthogonalizer)  # m·n² = 7.2e5: large enough for the linear form
    train_steps(layer, (200,))
    layer.double()
    x = torch.randn(5, 200, dtype=torch.float64)
    raw = layer.parametrizations.weight.original
    calls.clear()
    y = layer(x)
    grad = torch.autograd.grad(y.square().sum(), raw)[0]
    explicit = nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(y, explicit, atol=1e-13, rtol=0)
    torch.testing.assert_close(grad, torch.autograd.grad(explicit.square().sum(), raw)[0], atol=1e-12, rtol=0)
    assert len(calls) == (orthogonalizer != "bjorck")
    layer.eval()(x)
    assert len(calls) == (orthogonalizer != "bjorck")  # eval uses the cached weight
    calls.clear()
    BjorckLinear(100, 10, orthogonalizer=orthogonalizer)(torch.randn(5, 100))
    assert not calls  # m·n² = 10⁴: forming the weight is faster


def test_activations_permute_each_input():
    x = torch.randn(5, 6, 3, 3)
    for activation in (MaxMin(), GroupSort(3), GroupSort(6)):
        y = activation(x)
        torch.testing.assert_close(y.sort(dim=1).values, x.sort(dim=1).values)
    torch.testing.assert_close(GroupSort(2)(x)[:, ::2], torch.maximum(x[:, ::2], x[:, 1::2]))
    with pytest.raises(ValueError, match="divisible by 2"):
        MaxMin()(torch.randn(2, 3))
    with pytest.raises(ValueError, match="divisible by 4"):
        GroupSort(4)(torch.randn(2, 6))


def test_invertible_downsampling_is_a_permutation():
    x = torch.randn(2, 3, 4, 6)
    y = InvertibleDownsampling(2)(x)
    assert y.shape == (2, 12, 2, 3)
    torch.testing.assert_close(y.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    with pytest.raises(ValueError, match="divisible by 2"):
        InvertibleDownsampling(2)(torch.randn(1, 1, 5, 4))


@pytest.mark.parametrize("kind", LINEAR_CONV_KINDS)
def test_even_and_odd_kernels_keep_the_spatial_size(kind):
    for k in (1, 2, 3, 4, 5):
        assert lipschitz_conv(kind, 2, 3, k)(torch.rand(1, 2, 7, 5)).shape == (1, 3, 7, 5)
    assert lipschitz_conv(kind, 2, 3, 4, stride=2)(torch.rand(1, 2, 8, 6)).shape == (1, 3, 4, 3)


class CountingBCOP(BCOPConv2d):
    computed = 0

    def __init__(self, *args):
        super().__init__(*args)
        kernel = self.parametrizations.weight[0]
        compute = kernel.compute

        def counting_compute(head):
            CountingBCOP.computed += 1
            return compute(head)

        kernel.compute = counting_compute


def test_eval_mode_computes_the_kernel_once_until_parameters_change():
    layer = CountingBCOP(3, 3, 3)
    x = torch.rand(2, 3, 6, 6)
    train_output = layer(x)
    layer.eval()
    CountingBCOP.computed = 0
    first, second = layer(x), layer(x)
    assert CountingBCOP.computed == 1
    assert torch.equal(first, second)
    torch.testing.assert_close(first, train_output, atol=1e-6, rtol=0)

    train_steps(layer, (3, 6, 6), steps=1)
    layer.eval()
    CountingBCOP.computed = 0
    changed = layer(x)
    assert CountingBCOP.computed == 1  # the step changed the parameters: a fresh eval kernel
    assert not torch.allclose(changed, first)

    fresh = CountingBCOP(3, 3, 3).eval()
    fresh(x)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), changed, atol=0, rtol=0)


def test_eval_mode_leaves_ossn_power_iteration_alone():
    layer = OSSNConv2d(3, 3, 3)
    layer(torch.rand(2, 3, 6, 6))
    vector = layer.power_vector.clone()
    layer.eval()(torch.rand(2, 3, 6, 6))
    assert torch.equal(layer.power_vector, vector)


def test_ossn_state_round_trips_into_a_fresh_layer():
    layer = OSSNConv2d(3, 4, 3)
    train_steps(layer, (3, 6, 6), steps=3)
    fresh = OSSNConv2d(3, 4, 3)
    fresh.load_state_dict(layer.state_dict())
    x = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(fresh.eval()(x), layer.eval()(x), atol=0, rtol=0)


def test_export_gives_an_equivalent_plain_torch_model():
    model = nn.Sequential(
        lipschitz_conv("bcop", 1, 4, 3),
        MaxMin(),
        lipschitz_conv("rko", 4, 8, 4, stride=2),
        GroupSort(4),
        lipschitz_conv("ossn", 8, 8, 2),
        MaxMin(),
        lipschitz_conv("svcm", 8, 4, 3, stride=2),
        lipschitz_conv("plain", 4, 4, 1),
        nn.Flatten(),
        BjorckLinear(4 * 2 * 2, 10),
    )
    train_steps(model, (1, 8, 8), steps=3)
    model.eval()
    plain = export(model)
    lipnb_types = (BCOPConv2d, BjorckLinear, OSSNConv2d, SVCMConv2d, *CONV_KINDS.values())
    assert not any(isinstance(m, lipnb_types) for m in plain.modules())
    x = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=0)
    assert model[0] is not plain[0] and isinstance(model[0], BCOPConv2d)  # original untouched


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("bcop", 0, 3, 3), "in_channels"),
        (("rko", 3, 0, 3), "out_channels"),
        (("ossn", 3, 3, 0), "kernel_size"),
        (("svcm", 3, 3, 3, 0), "stride"),
        (("plain", 3, 3, 2.5), "kernel_size"),
        (("orthogonal", 3, 3, 3), "'bcop', 'rko', 'ossn', 'svcm', 'plain'"),
    ],
)
def test_bad_arguments_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        lipschitz_conv(*arguments)


@pytest.mark.parametrize("kind", LINEAR_CONV_KINDS)
def test_bad_inputs_are_refused_with_the_expected_shape(kind):
    layer = lipschitz_conv(kind, 3, 4, 3, stride=2)
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        layer(torch.rand(2, 5, 8, 8))
    with pytest.raises(ValueError, match="stride 2 must divide"):
        layer(torch.rand(2, 3, 7, 8))
    with pytest.raises(ValueError, match="in_features=4"):
        BjorckLinear(4, 2)(torch.rand(3, 5))
