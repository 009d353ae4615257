"""SOC: the skew operator, the truncated exponential's exact spectrum, term counts, caching, export."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import dense_operator, dense_singular_values
from lipnb.circulant import circular_conv2d, conv_singular_values
from lipnb.layers.soc import SOCConv2d, taylor_exp_apply, taylor_remainder
from lipnb.spectrum import operator_norm, singular_values

SHAPES = [(4, 4, 3, 1), (3, 5, 2, 1), (6, 3, 3, 1), (2, 3, 4, 2)]  # (in, out, k, stride): =, <, >, strided


def trained(cin: int, cout: int, k: int, stride: int, size: int = 8, **options) -> SOCConv2d:
    """A layer after 20 Adam steps (lr 1e-2) of a random regression, in float64."""
    layer = SOCConv2d(cin, cout, k, stride, **options)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = torch.rand(8, cin, size, size)
    with torch.no_grad():
        target = torch.randn_like(layer(x))
    for _ in range(20):
        optimizer.zero_grad()
        (layer(x) - target).square().mean().backward()
        optimizer.step()
    return layer.double()


def skew_norm(layer: SOCConv2d, size: tuple[int, int]) -> float:
    """Exact ‖L‖₂ of the rescaled skew convolution at the layer's input ``size``."""
    return float(conv_singular_values(layer.skew_kernel, layer.conv_input_size(size))[0])


def dense_skew(layer: SOCConv2d, size: int) -> torch.Tensor:
    """Dense matrix of ``L`` on ``c`` channels at ``size × size`` (after downsampling)."""
    kernel = layer.skew_kernel
    return dense_operator(lambda x: circular_conv2d(x, kernel), (layer.channels, size, size))


@pytest.mark.parametrize("cin, cout, k, stride", SHAPES)
def test_spectrum_is_exact_and_within_the_series_remainder_of_one(cin, cout, k, stride):
    layer = trained(cin, cout, k, stride)
    norm = skew_norm(layer, (8, 8))
    assert norm <= 1.0 + 1e-12  # max_norm: the Gram bound is an upper bound
    for training, terms in ((True, 6), (False, 12)):
        layer.train(training)
        assert layer.terms == terms and layer.weight.shape == layer.kernel_shape
        assert layer.weight.shape[-1] == 2 * terms + 1  # T(k_L − 1) + 1 with k_L = 3 for every shape here
        dense = dense_singular_values(layer, (cin, 8, 8))
        sigma = singular_values(layer, (8, 8))  # expanded kernel (13 or 25 taps) folded onto 8×8 or 4×4
        assert sigma.numel() == min(cin * stride**2, cout) * (8 // stride) ** 2
        torch.testing.assert_close(sigma, dense, atol=1e-9, rtol=0)
        assert operator_norm(layer, (8, 8)) == pytest.approx(float(dense[0]), abs=1e-9)
        # exp(L) orthogonal, ‖exp(L) − S_T(L)‖ ≤ Σ_{i>T} ‖L‖ⁱ/i!: (semi-)orthogonal up to that tail
        assert (sigma - 1).abs().max() <= taylor_remainder(norm, terms) + 1e-12
    assert taylor_remainder(1.0, 12) < 2e-10  # the guarantee at the defaults, whatever M is


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_skew_kernel_is_a_skew_symmetric_operator_rescaled_to_max_norm(k):
    layer = SOCConv2d(3, 3, k, max_norm=0.5).double()
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(100)
    dense = dense_skew(layer, 6)
    torch.testing.assert_close(dense.T, -dense, atol=1e-14, rtol=0)
    assert 0.1 < torch.linalg.matrix_norm(dense, 2) <= 0.5 + 1e-12


@pytest.mark.parametrize("cin, cout, k, stride", SHAPES)
def test_train_and_eval_term_counts_are_honoured(cin, cout, k, stride):
    layer = trained(cin, cout, k, stride)
    n, c, conv_in = 8 // stride, layer.channels, cin * stride**2
    skew = dense_skew(layer, n)
    embed = torch.eye(c * n * n, dtype=torch.float64)[:, : conv_in * n * n]  # zero-pads channels
    keep = torch.eye(c * n * n, dtype=torch.float64)[: cout * n * n]  # first `out` channels

    def layer_matrix(training: bool) -> torch.Tensor:
        layer.train(training)
        if layer.downsample is None:
            return dense_operator(layer, (cin, 8, 8))
        return dense_operator(lambda x: layer(F.pixel_shuffle(x, stride)), (conv_in, n, n))

    for training, terms in ((True, 6), (False, 12)):
        series = sum(torch.linalg.matrix_power(skew, i) / math.factorial(i) for i in range(terms + 1))
        torch.testing.assert_close(layer_matrix(training), keep @ series @ embed, atol=1e-12, rtol=0)
    exact = keep @ torch.linalg.matrix_exp(skew) @ embed
    norm = float(torch.linalg.matrix_norm(skew, 2))
    assert torch.linalg.matrix_norm(layer_matrix(False) - exact, 2) <= taylor_remainder(norm, 12) + 1e-12

    x = torch.rand(5, cin, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        gap = (layer.train()(x) - layer.eval()(x)).flatten(1).norm(dim=1)
    assert (gap > 0).all()
    assert (gap <= taylor_remainder(norm, 6) * x.flatten(1).norm(dim=1)).all()


def test_eval_kernels_are_cached_until_the_parameters_change():
    layer = SOCConv2d(3, 3, 3)
    layer.train()
    assert layer.weight is not layer.weight and layer.skew_kernel is not layer.skew_kernel
    layer.eval()
    weight, skew = layer.weight, layer.skew_kernel
    assert layer.weight is weight and layer.skew_kernel is skew and not weight.requires_grad
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(0.1)
    assert layer.weight is not weight and not torch.equal(layer.skew_kernel, skew)


@pytest.mark.parametrize("cin, cout, k, stride", SHAPES)
def test_eval_forward_is_the_series_by_fft_cached_per_size(cin, cout, k, stride):
    """Eval applies the expanded kernel as one FFT convolution: the series' operator, on small and odd
    grids too (the kernel wraps around), its transfer cached until the kernel or the size changes."""
    layer = trained(cin, cout, k, stride, size=4 * stride).eval()
    for size in (4 * stride, 6 * stride, 2 * stride):
        x = torch.rand(3, cin, size, size + stride, dtype=torch.float64)
        padded = F.pad(layer.prepare_input(x), (0, 0, 0, 0, 0, layer.channels - layer.conv_in_channels))
        series = taylor_exp_apply(padded, layer.skew_kernel, layer.eval_terms)[:, :cout] + layer.bias.view(1, -1, 1, 1)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), series, atol=1e-10, rtol=0)
            transfer = layer._eval_transfer((size // stride, (size + stride) // stride))
            layer(x)
            assert layer._eval_transfer((size // stride, (size + stride) // stride)) is transfer
    x = torch.rand(2, cin, 4 * stride, 4 * stride, dtype=torch.float64, requires_grad=True)
    layer(x).square().sum().backward()  # attacks differentiate an eval-mode layer with respect to its input
    assert x.grad is not None and x.grad.abs().sum() > 0
    transfer = layer._eval_transfer((4, 4))
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(0.01)
    assert layer._eval_transfer((4, 4)) is not transfer


@pytest.mark.parametrize("cin, cout, k, stride", SHAPES)
def test_forward_weight_and_export_agree(cin, cout, k, stride):
    size = 16 * stride  # export pads K = 25 taps circularly: 12 per side needs ≥ 12 pixels after downsampling
    layer = trained(cin, cout, k, stride, size=size).float()
    x = torch.rand(4, cin, size, size)
    with torch.no_grad():
        for training in (True, False):
            layer.train(training)
            via_kernel = circular_conv2d(layer.prepare_input(x), layer.weight, layer.bias)
            torch.testing.assert_close(layer(x), via_kernel, atol=1e-5, rtol=0)
        exported = layer.vanilla_export()
        assert isinstance(exported, nn.Conv2d if stride == 1 else nn.Sequential)
        torch.testing.assert_close(exported(x), layer(x), atol=1e-5, rtol=0)


def test_options_are_checked_and_degenerate_layers_are_identities():
    for options, name in (({"train_terms": 0}, "train_terms"), ({"eval_terms": 1.5}, "eval_terms"),
                          ({"max_norm": 0.0}, "max_norm"), ({"max_norm": math.inf}, "max_norm")):
        with pytest.raises(ValueError, match=name):
            SOCConv2d(2, 2, 3, **options)
    layer = trained(1, 1, 1, 1)  # one channel, one tap: L = m − m = 0, exp(L) = I, finite gradients
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x) - layer.bias, x)
    assert all(torch.isfinite(p).all() for p in layer.parameters())
    assert "train_terms=6, eval_terms=12, max_norm=1.0" in repr(SOCConv2d(2, 2, 3))


def test_taylor_remainder_is_the_series_tail():
    assert taylor_remainder(0.0, 3) == 0.0
    partial_sum = sum(1 / math.factorial(i) for i in range(7))
    assert taylor_remainder(1.0, 6) == pytest.approx(math.e - partial_sum, rel=1e-9)
    leading = 2.0**13 / math.factorial(13)
    assert leading < taylor_remainder(2.0, 12) <= leading * 14 / 12
