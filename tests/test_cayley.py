"""Cayley convolution: (semi-)orthogonal after training, the dense Cayley transform, kernel, cache, export."""

import pytest
import torch
from torch import nn

import lipnb.layers.cayley as cayley_module
from conftest import dense_operator, dense_singular_values, train_steps
from lipnb.circulant import circular_conv2d, conv_singular_values
from lipnb.layers.cayley import CayleyConv2d
from lipnb.spectrum import operator_norm, singular_values


def trained(cin: int, cout: int, k: int, stride: int, size: tuple[int, int], steps: int = 20) -> CayleyConv2d:
    """A float32 layer after ``steps`` Adam steps (lr 1e-2) at ``size``, checked to have moved."""
    layer = CayleyConv2d(cin, cout, k, stride)
    kernel, alpha = layer.kernel.detach().clone(), layer.alpha.detach().clone()
    train_steps(layer, (cin, *size), steps=steps)
    assert (layer.kernel - kernel).abs().max() > 1e-2 and (layer.alpha - alpha).abs() > 1e-2  # it did train
    return layer


def assert_spectrum_is_exact(layer: CayleyConv2d, cin: int, size: tuple[int, int]) -> torch.Tensor:
    """Dense σ (float64, eval) against lipnb.spectrum; returns the dense σ."""
    dense = dense_singular_values(layer, (cin, *size))
    sigma = singular_values(layer, size)
    assert sigma.shape == dense.shape
    torch.testing.assert_close(sigma, dense, atol=1e-6, rtol=0)
    assert operator_norm(layer, size) == pytest.approx(float(dense[0]), abs=1e-6)
    return dense


@pytest.mark.parametrize(
    "cin, cout, k, stride, size",
    [
        (4, 4, 3, 1, (6, 6)),
        (3, 3, 2, 1, (8, 8)),  # even kernel
        (2, 8, 4, 2, (8, 8)),  # stride 2: 2·2² = 8 channels into the 2×2 conv
        (3, 3, 4, 1, (6, 8)),  # non-square grid
        (2, 2, 5, 1, (5, 3)),  # odd grid (no Nyquist frequency), kernel larger than the grid
    ],
)
def test_orthogonal_after_training_when_channels_match(cin, cout, k, stride, size):
    layer = trained(cin, cout, k, stride, size).double().eval()
    dense = assert_spectrum_is_exact(layer, cin, size)
    assert dense.numel() == cout * size[0] * size[1] // stride**2
    assert (dense - 1).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "cin, cout, k, stride, size",
    [
        (3, 5, 3, 1, (6, 6)),  # tall: isometry
        (1, 6, 4, 2, (6, 6)),  # tall, strided (4 < 6)
        (5, 3, 2, 1, (8, 6)),  # wide: co-isometry
        (2, 3, 4, 2, (8, 8)),  # wide, strided (8 > 3)
    ],
)
def test_semi_orthogonal_after_training_when_channels_differ(cin, cout, k, stride, size):
    layer = trained(cin, cout, k, stride, size).double().eval()
    dense = assert_spectrum_is_exact(layer, cin, size)
    pixels = size[0] * size[1] // stride**2
    rank = min(cin * stride**2, cout) * pixels
    assert dense.numel() == rank and (dense - 1).abs().max() <= 1e-5
    # the larger Gram matrix has the rest of the spectrum: exactly rank ones, then zeros
    matrix = dense_operator(layer, (cin, *size))
    gram = matrix @ matrix.T if matrix.shape[0] > matrix.shape[1] else matrix.T @ matrix
    eigenvalues = torch.linalg.eigvalsh(gram).flip(0)
    assert eigenvalues.numel() == max(cin * stride**2, cout) * pixels
    assert (eigenvalues[:rank] - 1).abs().max() <= 1e-5 and eigenvalues[rank:].abs().max() <= 1e-5


def dense_cayley(conv: torch.Tensor) -> torch.Tensor:
    """The (non-square) Cayley transform of a real dense matrix whose rows and columns are
    channel-major, ``[U; V]`` split after the first ``columns`` rows (the module docstring's formula)."""
    rows, columns = conv.shape
    if rows < columns:
        return dense_cayley(conv.T).T
    u, v = conv[:columns], conv[columns:]
    a = u - u.T + v.T @ v
    eye = torch.eye(columns, dtype=conv.dtype)
    return torch.cat([eye - a, -2 * v]) @ torch.linalg.inv(eye + a)


@pytest.mark.parametrize(
    "cin, cout, k, size",
    [(3, 3, 3, (5, 6)), (2, 2, 4, (6, 6)), (2, 4, 2, (4, 5)), (4, 3, 4, (6, 4)), (2, 3, 5, (3, 4))],
)
def test_layer_is_the_cayley_transform_of_lipnb_circular_conv(cin, cout, k, size):
    """The Fourier-domain layer equals the Cayley transform of the dense matrix of
    ``circular_conv2d(·, α·W/‖W‖)``: even kernels use circular_conv2d's offsets, large ones wrap."""
    layer = CayleyConv2d(cin, cout, k).double().eval()
    with torch.no_grad():
        layer.kernel.normal_()
        layer.alpha.fill_(1.7)
    scaled = layer.kernel.detach() * 1.7 / layer.kernel.detach().norm()
    conv = dense_operator(lambda x: circular_conv2d(x, scaled), (cin, *size))
    torch.testing.assert_close(dense_operator(layer, (cin, *size)), dense_cayley(conv), atol=1e-10, rtol=0)


def test_forward_is_the_circular_conv_with_weight_at_each_input_size():
    layer = trained(2, 3, 4, 2, (8, 8), steps=3).double()
    for training in (True, False):
        layer.train(training)
        for size in ((8, 8), (6, 10)):  # the weight follows the last size seen
            x = torch.rand(3, 2, *size, dtype=torch.float64)
            with torch.no_grad():
                output = layer(x)
                assert layer.weight.shape == (3, 8, size[0] // 2, size[1] // 2)
                expected = circular_conv2d(layer.prepare_input(x), layer.weight, layer.bias)
            torch.testing.assert_close(output, expected, atol=1e-12, rtol=0)
            conv_size = layer.conv_input_size(size)
            torch.testing.assert_close(layer.weight_at(conv_size), layer.weight, atol=1e-12, rtol=0)
            torch.testing.assert_close(
                conv_singular_values(layer.weight_at(conv_size), conv_size),
                dense_singular_values(layer, (2, *size)), atol=1e-10, rtol=0,
            )


def test_weight_before_any_forward_is_a_clear_error():
    layer = CayleyConv2d(2, 2, 3)
    with pytest.raises(ValueError, match="depends on the input size.*forward pass first"):
        layer.weight
    assert layer.weight_at((4, 5)).shape == (2, 2, 4, 5)
    with pytest.raises(ValueError, match="conv_input_size"):
        layer.weight_at((0, 4))


def test_eval_caches_the_transform_until_a_parameter_or_the_size_changes(monkeypatch):
    calls = []
    original = cayley_module.cayley_transform
    monkeypatch.setattr(cayley_module, "cayley_transform", lambda w: calls.append(1) or original(w))
    layer = CayleyConv2d(3, 4, 3)
    x, other = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 4, 6)
    layer(x), layer(x)
    assert len(calls) == 2  # training mode: every forward recomputes
    layer.eval()
    first = layer(x)
    weight = layer.weight
    assert torch.equal(layer(x), first) and layer.weight.data_ptr() == weight.data_ptr()
    assert len(calls) == 3 and not weight.requires_grad  # once for both forwards and the weight
    layer(other)
    layer(x)
    assert len(calls) == 5  # a new grid size, then back

    train_steps(layer, (3, 6, 6), steps=1)
    layer.eval()
    calls.clear()
    stepped = layer(x)
    assert len(calls) == 1 and not torch.allclose(stepped, first)  # the step invalidated the cache
    fresh = CayleyConv2d(3, 4, 3).eval()
    fresh(x)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), stepped, atol=0, rtol=0)
    layer.double()
    calls.clear()
    torch.testing.assert_close(layer(x.double()), stepped.double(), atol=1e-6, rtol=0)
    assert len(calls) == 1


@pytest.mark.parametrize("cin, cout", [(2, 2), (1, 3), (3, 2)])
def test_training_forward_gradcheck(cin, cout):
    layer = CayleyConv2d(cin, cout, 2).double()
    names = ("kernel", "alpha", "bias")
    params = tuple(getattr(layer, n).detach().clone().requires_grad_() for n in names)
    x = torch.rand(1, cin, 3, 4, dtype=torch.float64, requires_grad=True)

    def run(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    assert torch.autograd.gradcheck(run, (x, *params))


@pytest.mark.parametrize(
    "cin, cout, k, stride, size", [(3, 5, 4, 2, (8, 8)), (4, 3, 3, 1, (6, 5)), (2, 2, 2, 1, (1, 4))]
)
def test_vanilla_export_gives_the_same_outputs(cin, cout, k, stride, size):
    layer = trained(cin, cout, k, stride, size, steps=3).eval()
    x = torch.rand(4, cin, *size)
    with torch.no_grad():
        expected = layer(x)
        plain = layer.vanilla_export()
    conv = plain if stride == 1 else plain[1]
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape[-2:] == layer.conv_input_size(size)
    assert stride == 1 or isinstance(plain[0], nn.PixelUnshuffle)
    torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        singular_values(conv, layer.conv_input_size(size)), singular_values(layer, size), atol=1e-6, rtol=0
    )


def test_float32_layer_is_orthogonal_to_float32_precision():
    layer = trained(8, 8, 3, 1, (8, 8)).eval()
    kernel = layer.weight_at((8, 8))
    assert kernel.dtype == torch.float32
    assert (conv_singular_values(kernel, (8, 8)) - 1).abs().max() <= 1e-5  # the float32 kernel, exactly
    impulses = torch.eye(8 * 64).reshape(-1, 8, 8, 8)
    with torch.no_grad():
        matrix = (layer(impulses) - layer.bias.view(1, -1, 1, 1)).reshape(8 * 64, -1).T.double()
    assert (torch.linalg.svdvals(matrix) - 1).abs().max() <= 1e-5  # the float32 forward


def test_initial_layer_is_the_plain_cayley_transform_and_handles_a_zero_kernel():
    layer = CayleyConv2d(3, 3, 3)
    assert layer.alpha.item() == pytest.approx(layer.kernel.detach().norm().item())
    with torch.no_grad():
        layer.kernel.zero_()
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(layer(x) - layer.bias.view(1, -1, 1, 1), x, atol=1e-6, rtol=0)  # Q = I
    wide = CayleyConv2d(3, 2, 1)
    with torch.no_grad():
        wide.kernel.zero_()
    torch.testing.assert_close(wide(x), x[:, :2] + wide.bias.view(1, -1, 1, 1), atol=1e-6, rtol=0)
