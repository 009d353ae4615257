"""Exact spectra against the SVD of the dense operator built from impulse responses."""

import pytest
import torch
from torch import nn

from conftest import LINEAR_CONV_KINDS, dense_operator, dense_singular_values
from lipnb import export, lipschitz_bound, operator_norm, singular_values
from lipnb.spectrum import conv_spectra, spectrum_summary
from lipnb.circulant import circular_conv2d, circular_conv2d_adjoint, clip_singular_values, conv_singular_values
from lipnb.layers import CONV_KINDS, BjorckLinear, MaxMin, lipschitz_conv

CONFIGS = [  # (in, out, kernel, stride, input size)
    (3, 3, 3, 1, 6),
    (2, 5, 2, 1, 8),
    (5, 2, 4, 1, 6),
    (3, 4, 5, 1, 8),
    (2, 3, 4, 2, 8),
    (4, 2, 3, 2, 6),
]


def prepared(kind, cin, cout, k, stride, size):
    layer = lipschitz_conv(kind, cin, cout, k, stride, bias=True).double()
    layer(torch.rand(2, cin, size, size, dtype=torch.float64))  # OSSN sees its input size
    if kind == "svcm":
        layer.project(rounds=5)
    return layer.eval()  # OSSN's training forward moves its power iteration: freeze it


@pytest.mark.parametrize("kind", LINEAR_CONV_KINDS)
@pytest.mark.parametrize("cin, cout, k, stride, size", CONFIGS)
def test_fft_spectrum_matches_dense_operator(kind, cin, cout, k, stride, size):
    layer = prepared(kind, cin, cout, k, stride, size)
    expected = dense_singular_values(layer, (cin, size, size))
    actual = singular_values(layer, (size, size))
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_kernel_larger_than_input_wraps_around():
    kernel = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    conv = lambda x: circular_conv2d(x, kernel)  # noqa: E731
    expected = dense_singular_values(conv, (3, 3, 3))
    torch.testing.assert_close(conv_singular_values(kernel, (3, 3)), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_adjoint_is_the_transpose(k):
    kernel = torch.randn(4, 3, k, k, dtype=torch.float64)
    matrix = dense_operator(lambda x: circular_conv2d(x, kernel), (3, 5, 6))
    adjoint = dense_operator(lambda y: circular_conv2d_adjoint(y, kernel), (4, 5, 6))
    torch.testing.assert_close(adjoint, matrix.T, atol=1e-12, rtol=0)


def test_plain_torch_layers():
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", dtype=torch.float64)
    torch.testing.assert_close(
        singular_values(conv, (6, 6)), dense_singular_values(conv, (3, 6, 6)), atol=1e-10, rtol=0
    )
    linear = nn.Linear(7, 5, dtype=torch.float64)
    torch.testing.assert_close(singular_values(linear), dense_singular_values(linear, (7,)), atol=1e-10, rtol=0)


def test_zero_padded_conv_is_refused_not_guessed():
    with pytest.raises(ValueError, match="circular"):
        singular_values(nn.Conv2d(3, 4, 3, padding=1), (6, 6))
    with pytest.raises(ValueError, match="input_size"):
        singular_values(lipschitz_conv("bcop", 2, 2, 3))


def test_clipping_bounds_sigma_and_keeps_the_support():
    kernel = 3 * torch.randn(4, 4, 3, 3, dtype=torch.float64)
    clipped = clip_singular_values(kernel, (8, 8), rounds=10)
    assert clipped.shape == kernel.shape
    assert conv_singular_values(clipped, (8, 8))[0] <= 1 + 1e-12
    with pytest.raises(ValueError, match="larger than the input"):
        clip_singular_values(kernel, (2, 2))


def small_network(kind: str) -> nn.Sequential:
    # SOC's eval kernel grows with its Taylor terms (T(k−1)+1 taps); exporting it as one circular
    # nn.Conv2d needs that kernel to fit the 4×4 map of the second conv, so one term here
    options = {"eval_terms": 1} if kind == "soc" else {}
    return nn.Sequential(
        lipschitz_conv(kind, 1, 4, 3, **options),
        MaxMin(),
        lipschitz_conv(kind, 4, 4, 4, stride=2, **options),
        MaxMin(),
        nn.Flatten(),
        BjorckLinear(4 * 4 * 4, 10),
    ).double()


@pytest.mark.parametrize("kind", LINEAR_CONV_KINDS)
def test_lipschitz_bound_is_the_product_of_exact_layer_norms(kind):
    model = small_network(kind)
    model(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    model.eval()
    linear_parts = [model[0], model[2], model[5]]
    shapes = [(1, 8, 8), (4, 8, 8), (64,)]
    expected = 1.0
    for layer, shape in zip(linear_parts, shapes):
        expected *= float(dense_singular_values(layer, shape)[0])
    assert lipschitz_bound(model, (1, 8, 8)) == pytest.approx(expected, rel=1e-9)
    assert lipschitz_bound(export(model), (1, 8, 8)) == pytest.approx(expected, rel=1e-9)
    # and it really bounds the network: no pair of inputs stretches further
    x, y = torch.rand(2, 64, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ratios = (model(x) - model(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert ratios.max() <= expected


def test_lipschitz_bound_leaves_training_mode_alone():
    model = small_network("ossn").train()
    model(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    vector = model[0].power_vector.clone()
    lipschitz_bound(model, (1, 8, 8))
    assert all(m.training for m in model.modules())
    assert torch.equal(model[0].power_vector, vector)


def test_lipschitz_bound_refuses_unknown_modules():
    with pytest.raises(ValueError, match="Sigmoid"):
        lipschitz_bound(nn.Sequential(nn.Linear(3, 3), nn.Sigmoid()), (3,))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.inner(x)

    with pytest.raises(ValueError, match="Residual"):
        lipschitz_bound(nn.Sequential(Residual()), (3,))


def test_operator_norm_is_the_largest_singular_value():
    layer = prepared("plain", 3, 3, 3, 1, 6)
    assert operator_norm(layer, (6, 6)) == pytest.approx(float(dense_singular_values(layer, (3, 6, 6))[0]))


def test_conv_spectra_reads_every_conv_at_its_input_size():
    model = small_network("ossn")  # OSSN: the spectra pass must let it see its input size first
    spectra = conv_spectra(model, (1, 8, 8))
    assert len(spectra) == 2
    model.eval()
    torch.testing.assert_close(spectra[0], dense_singular_values(model[0], (1, 8, 8)), atol=1e-8, rtol=0)
    torch.testing.assert_close(spectra[1], dense_singular_values(model[2], (4, 8, 8)), atol=1e-8, rtol=0)


def test_spectrum_summary():
    summary = spectrum_summary(torch.tensor([0.05, 0.5, 1.0, 0.08, 2.0], dtype=torch.float64))
    assert summary == {"min": 0.05, "median": 0.5, "max": 2.0, "fraction_below_0.1": 0.4}
