"""AOL convolution: 1-Lipschitz after training, Theorem 1/2 rescaling, eval cache, export."""

import pytest
import torch

from conftest import dense_operator, dense_singular_values, train_steps
from lipnb import export
from lipnb.circulant import circular_conv2d
from lipnb.layers.aol import AOLConv2d
from lipnb.spectrum import operator_norm


@pytest.mark.parametrize(
    "cin, cout, k, stride",
    [(4, 4, 3, 1), (3, 6, 3, 1), (6, 3, 3, 1), (5, 5, 1, 1), (3, 4, 1, 1), (2, 3, 4, 2), (4, 2, 4, 2)],
)
def test_aol_is_one_lipschitz_after_training(cin, cout, k, stride):
    layer = AOLConv2d(cin, cout, k, stride)
    original = layer.parametrizations.weight.original.detach().clone()
    train_steps(layer, (cin, 8, 8))
    assert (layer.parametrizations.weight.original - original).abs().max() > 1e-2  # it did train
    sigma = dense_singular_values(layer.double().eval(), (cin, 8, 8))
    assert sigma[0] <= 1 + 1e-5
    assert operator_norm(layer, (8, 8)) == pytest.approx(float(sigma[0]), abs=1e-5)


def test_aol_starts_as_an_isometry_when_in_at_most_out():
    for cin, cout, k in [(3, 6, 3), (4, 4, 2)]:
        sigma = dense_singular_values(AOLConv2d(cin, cout, k).double().eval(), (cin, 6, 6))
        assert (sigma - 1).abs().max() <= 1e-6  # the orthogonal init is float32


def test_aol_rescaling_by_hand():
    # one channel, K = [[1, 2], [3, 4]]: K ⋆ K has taps 30 (offset 0), 14, 14, 11, 11, 4, 4, 6, 6,
    # whose absolute sum is 100, so D = 100^(-1/2) = 1/10; an all-zero channel stays zero, not NaN
    layer = AOLConv2d(2, 1, 2).double()
    kernel = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    with torch.no_grad():
        layer.parametrizations.weight.original.copy_(kernel)
    torch.testing.assert_close(layer.weight, kernel / 10, atol=0, rtol=1e-15)


@pytest.mark.parametrize("cin, cout, k", [(3, 2, 3), (2, 4, 2), (4, 3, 1)])
def test_aol_rescaling_matches_the_dense_gram_matrix(cin, cout, k):
    """Theorem 1 applied to the dense matrix ``A`` of the unscaled convolution (grid ≥ 2k − 1: no
    wrap-around) gives, at every pixel of input channel ``i``, the layer's scale ``D_ii``."""
    layer = AOLConv2d(cin, cout, k).double()
    with torch.no_grad():
        layer.parametrizations.weight.original.normal_()
    kernel = layer.parametrizations.weight.original.detach()
    matrix = dense_operator(lambda x: circular_conv2d(x, kernel), (cin, 6, 6))
    scales = (matrix.T @ matrix).abs().sum(dim=1).rsqrt().reshape(cin, 36)
    torch.testing.assert_close(scales, scales[:, :1].expand(-1, 36), atol=1e-12, rtol=0)
    torch.testing.assert_close(layer.weight, kernel * scales[:, 0].view(1, -1, 1, 1), atol=1e-12, rtol=0)
    assert torch.linalg.matrix_norm(matrix * scales.flatten(), ord=2) <= 1 + 1e-12


def test_aol_eval_mode_caches_the_kernel_used_by_forward():
    layer = AOLConv2d(3, 4, 4, stride=2)
    train_steps(layer, (3, 8, 8), steps=2)
    layer.eval()
    x = torch.rand(2, 3, 8, 8)
    first = layer.weight
    output = layer(x)
    assert layer.weight.data_ptr() == first.data_ptr()  # no recomputation in eval mode
    expected = circular_conv2d(layer.prepare_input(x), first, layer.bias)
    torch.testing.assert_close(output, expected, atol=0, rtol=0)
    train_steps(layer, (3, 8, 8), steps=1)
    layer.eval()
    assert not torch.equal(layer.weight, first)  # a step invalidates the cache


def test_aol_vanilla_export_gives_the_same_outputs():
    layer = AOLConv2d(3, 5, 4, stride=2)
    train_steps(layer, (3, 8, 8), steps=3)
    layer.eval()
    plain = export(layer)
    assert not any(isinstance(m, AOLConv2d) for m in plain.modules())
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(plain(x), layer(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(layer.vanilla_export()(x), layer(x), atol=1e-6, rtol=0)
