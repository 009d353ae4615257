"""SLL: T ⪰ Gram, the exact adjoint, 1-Lipschitz after training (Jacobians, and a pair search shown
able to fail), bounds by declared rule, argument errors, eval cache, export, gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import dense_operator, dense_singular_values, train_steps
from lipnb import export, lipschitz_bound, operator_norm, singular_values
from lipnb.circulant import circular_conv2d
from lipnb.layers import BjorckLinear, MaxMin, PlainConv2d, layer_options
from lipnb.layers.residual import Residual
from lipnb.layers.sll import SLLConv2d, SLLLinear, adjoint_kernel, sll_diagonal
from lipnb.spectrum import LIPSCHITZ_RULES, layer_bounds, layer_spectra, register_lipschitz_rule

DOUBLE = torch.float64


@pytest.mark.parametrize(
    "channels, hidden, k, size",  # grids of at least 2k − 1 (exact row sums) and smaller (wrapped taps)
    [(3, 3, 3, 6), (2, 4, 2, 6), (3, 5, 1, 6), (4, 2, 4, 6), (2, 3, 5, 4), (3, 2, 3, 3), (2, 2, 4, 4)],
)
def test_t_dominates_the_gram_of_the_inner_conv(channels, hidden, k, size):
    kernel = torch.randn(hidden, channels, k, k, dtype=DOUBLE)
    log_q = torch.randn(hidden, dtype=DOUBLE)
    inner = dense_operator(lambda x: circular_conv2d(x, kernel), (channels, size, size))  # the paper's Wᵀ
    gram = inner @ inner.T  # the paper's WᵀW, over hidden channels × pixels
    t = sll_diagonal(kernel, log_q).repeat_interleave(size * size)
    assert torch.linalg.eigvalsh(torch.diag(t) - gram).min() >= -1e-10
    q = log_q.exp().repeat_interleave(size * size)
    weighted_rows = (gram.abs() @ q) / q  # Σ_j |WᵀW|_ij q_j / q_i at every (channel, pixel)
    if size >= 2 * k - 1:
        torch.testing.assert_close(weighted_rows, t, atol=1e-10, rtol=1e-12)
    else:  # wrapped taps merge before the absolute value: the dense row sums can only be smaller
        assert (weighted_rows <= t + 1e-10).all()


def test_t_dominates_the_gram_of_a_matrix():
    for features, hidden in [(5, 5), (3, 8), (8, 3)]:
        weight = torch.randn(hidden, features, dtype=DOUBLE)  # the paper's Wᵀ
        log_q = 2 * torch.randn(hidden, dtype=DOUBLE)
        t = sll_diagonal(weight, log_q)
        assert torch.linalg.eigvalsh(torch.diag(t) - weight @ weight.T).min() >= -1e-10
        ratio = (log_q.unsqueeze(0) - log_q.unsqueeze(1)).exp()
        torch.testing.assert_close(t, ((weight @ weight.T).abs() * ratio).sum(1), atol=0, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_outer_map_is_the_exact_adjoint_scaled_by_t_inverse(k):
    kernel = torch.randn(3, 2, k, k, dtype=DOUBLE)
    inner = dense_operator(lambda x: circular_conv2d(x, kernel), (2, 5, 6))
    adjoint = dense_operator(lambda y: circular_conv2d(y, adjoint_kernel(kernel)), (3, 5, 6))
    torch.testing.assert_close(adjoint, inner.T, atol=1e-12, rtol=0)
    block = SLLConv2d(2, 2, k, hidden_channels=3).double()
    with torch.no_grad():
        block.weight.copy_(kernel)
        block.outer.log_q.normal_()
    outer = dense_operator(lambda y: circular_conv2d(y, block.outer_weight), (3, 5, 6))
    t = sll_diagonal(kernel, block.outer.log_q).repeat_interleave(30)
    torch.testing.assert_close(outer, -2 * inner.T / t, atol=1e-12, rtol=0)


def test_zero_hidden_units_give_zero_outer_columns_not_nan():
    block = SLLConv2d(2, 2, 3, hidden_channels=3)
    linear = SLLLinear(4, 3)
    with torch.no_grad():
        block.weight[1] = 0
        linear.weight[1] = 0
    for layer, x in [(block, torch.randn(2, 2, 5, 5)), (linear, torch.randn(2, 4))]:
        layer(x).square().sum().backward()
        assert torch.isfinite(layer.outer_weight).all() and (layer.outer_weight[:, 1] == 0).all()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def jacobian_norms(model: nn.Module, shape: tuple[int, ...], points: int = 10) -> list[float]:
    """Spectral norms of the full Jacobian at ``points`` random inputs (float64)."""
    norms = []
    for _ in range(points):
        x = torch.randn(shape, dtype=DOUBLE)
        jacobian = torch.autograd.functional.jacobian(lambda v: model(v.view(1, *shape)).flatten(), x.flatten())
        norms.append(float(torch.linalg.matrix_norm(jacobian, ord=2)))
    return norms


def max_stretch(f, shape: tuple[int, ...], restarts: int = 8, steps: int = 300) -> float:
    """Adam ascent over input pairs of ``‖f(x) − f(y)‖ / ‖x − y‖``: the largest ratio met (float64)."""
    x = torch.randn(restarts, *shape, dtype=DOUBLE).requires_grad_()
    y = (x + 0.5 * torch.randn_like(x)).detach().requires_grad_()
    optimizer = torch.optim.Adam([x, y], lr=0.05)
    best = 0.0
    for _ in range(steps):
        optimizer.zero_grad()
        ratio = (f(x) - f(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
        best = max(best, float(ratio.detach().max()))
        (-ratio.sum()).backward()
        optimizer.step()
    return best


class UnconstrainedSLL(nn.Module):
    """``x − 2 W σ(Wᵀx + b)``: an SLL block with ``T`` replaced by the identity and ``K`` scaled up."""

    def __init__(self, block: SLLConv2d, scale: float) -> None:
        super().__init__()
        self.kernel = scale * block.weight.detach()
        self.hidden_bias = block.bias.detach()

    def forward(self, x):
        hidden = F.relu(circular_conv2d(x, self.kernel, self.hidden_bias))
        return x - 2 * circular_conv2d(hidden, adjoint_kernel(self.kernel))


def sll_networks() -> dict[str, nn.Sequential]:
    return {
        "conv": nn.Sequential(
            SLLConv2d(2, 2, 3, hidden_channels=4),
            SLLConv2d(2, 2, 4, hidden_channels=3),
            SLLConv2d(2, 2, 2, hidden_channels=4),
        ),
        "linear": nn.Sequential(
            SLLConv2d(2, 2, 3, hidden_channels=4), MaxMin(), nn.Flatten(), SLLLinear(50, 16), SLLLinear(50)
        ),
    }


@pytest.mark.parametrize("name", ["conv", "linear"])
def test_sll_network_is_one_lipschitz_after_training(name):
    model = sll_networks()[name]
    blocks = [m for m in model if isinstance(m, (SLLConv2d, SLLLinear))]
    before = [(b.weight.detach().clone(), b.outer.log_q.detach().clone(), b.bias.detach().clone()) for b in blocks]
    train_steps(model, (2, 5, 5))
    for block, initial in zip(blocks, before):  # K, q and b all moved (q the least: T⁻¹ depends on ratios of q)
        for trained, start, least in zip((block.weight, block.outer.log_q, block.bias), initial, (1e-2, 1e-3, 1e-2)):
            assert (trained - start).abs().max() > least
    model.double().eval().requires_grad_(False)
    bound = lipschitz_bound(model, (2, 5, 5))
    assert bound == 1.0
    assert max(jacobian_norms(model, (2, 5, 5))) <= bound + 1e-6
    stretch = max_stretch(model, (2, 5, 5))
    assert 0.9 < stretch <= bound + 1e-9  # the search gets close to the bound, never past it


def test_the_pair_search_finds_an_unconstrained_block_expansive():
    block = sll_networks()["conv"][0]
    train_steps(block, (2, 5, 5))
    block.double()
    assert max_stretch(UnconstrainedSLL(block, 2.0), (2, 5, 5), steps=100) > 1.5


def test_lipschitz_bound_multiplies_spectra_and_rules():
    model = nn.Sequential(
        PlainConv2d(1, 4, 3),
        SLLConv2d(4, 4, 3),
        MaxMin(),
        nn.Flatten(),
        SLLLinear(64, 32),
        BjorckLinear(64, 10),
    )
    with torch.no_grad():
        model[0].weight.mul_(3)
    train_steps(model, (1, 4, 4), steps=3)
    model.double().eval()
    conv_norm = float(dense_singular_values(model[0], (1, 4, 4))[0])
    linear_norm = float(dense_singular_values(model[5], (64,))[0])
    bounds = layer_bounds(model, (1, 4, 4))
    assert [(layer, how) for layer, _, how in bounds] == [
        (model[0], "spectrum"), (model[1], "rule"), (model[4], "rule"), (model[5], "spectrum")
    ]
    assert [bound for _, bound, _ in bounds] == pytest.approx([conv_norm, 1.0, 1.0, linear_norm], rel=1e-9)
    assert [layer for layer, _ in layer_spectra(model, (1, 4, 4))] == [model[0], model[5]]
    expected = conv_norm * linear_norm
    assert expected > 1.5
    assert lipschitz_bound(model, (1, 4, 4)) == pytest.approx(expected, rel=1e-9)
    x, y = torch.rand(2, 64, 1, 4, 4, dtype=DOUBLE)
    with torch.no_grad():
        ratios = (model(x) - model(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert ratios.max() <= expected
    for block, size in [(model[1], (4, 4)), (model[4], None)]:
        with pytest.raises(ValueError, match="nonlinear block with no spectrum"):
            singular_values(block, size)
        with pytest.raises(ValueError, match="nonlinear"):
            operator_norm(block, size)


def test_unknown_modules_are_still_refused_and_rules_can_be_registered():
    class Halve(nn.Module):
        def forward(self, x):
            return torch.tanh(x) / 2

    with pytest.raises(ValueError, match="Halve"):
        lipschitz_bound(nn.Sequential(SLLLinear(4), Halve()), (4,))
    class HalveSubclass(Halve):
        pass

    register_lipschitz_rule(Halve, lambda module, input_shape: 0.5)
    try:
        linear = nn.Linear(4, 4)
        norm = float(torch.linalg.matrix_norm(linear.weight.detach().double(), ord=2))
        model = nn.Sequential(SLLLinear(4), Halve(), linear, HalveSubclass())  # a subclass inherits the rule
        assert lipschitz_bound(model, (4,)) == pytest.approx(0.25 * norm, rel=1e-6)
        assert [how for _, _, how in layer_bounds(model, (4,))] == ["rule", "rule", "spectrum", "rule"]
        LIPSCHITZ_RULES[Halve] = lambda module, input_shape: float("nan")
        with pytest.raises(ValueError, match="finite"):
            lipschitz_bound(nn.Sequential(Halve()), (4,))
    finally:
        del LIPSCHITZ_RULES[Halve]
    class Skip(nn.Module):  # a rule may use the block's input shape: 1 + Lip(branch) for x + branch(x)
        def __init__(self, branch):
            super().__init__()
            self.branch = branch

        def forward(self, x):
            return x + self.branch(x)

    register_lipschitz_rule(Skip, lambda module, input_shape: 1 + lipschitz_bound(module.branch, input_shape))
    try:
        model = nn.Sequential(Skip(PlainConv2d(2, 2, 3)), nn.Flatten(), Skip(nn.Linear(32, 32))).double()
        conv_norm = float(dense_singular_values(model[0].branch, (2, 4, 4))[0])
        linear_norm = float(torch.linalg.matrix_norm(model[2].branch.weight.detach(), ord=2))
        expected = (1 + conv_norm) * (1 + linear_norm)
        assert lipschitz_bound(model, (2, 4, 4)) == pytest.approx(expected, rel=1e-6)
    finally:
        del LIPSCHITZ_RULES[Skip]
    with pytest.raises(ValueError, match="nn.Module subclass"):
        register_lipschitz_rule(int, lambda module, input_shape: 1.0)


def test_wrong_channels_or_stride_are_refused():
    with pytest.raises(ValueError, match=r"in_channels=3, out_channels=4 .*residual"):
        SLLConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"stride=2 .*in_channels=3, out_channels=3"):
        SLLConv2d(3, 3, 3, stride=2)
    with pytest.raises(ValueError, match="hidden_channels"):
        SLLConv2d(3, 3, 3, hidden_channels=0)
    with pytest.raises(ValueError, match="features=4"):
        SLLLinear(4)(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        SLLConv2d(3, 3, 3)(torch.rand(2, 4, 5, 5))
    block = SLLConv2d(4, 4, 3, 1, True, hidden_channels=6)  # the factory signature
    assert layer_options(SLLConv2d) == ("hidden_channels",)
    assert block.weight.shape == block.kernel_shape == (6, 4, 3, 3) and block.bias.shape == (6,)


@pytest.mark.parametrize("make, shape", [(lambda: SLLConv2d(3, 3, 2, hidden_channels=5), (3, 6, 6)),
                                         (lambda: SLLLinear(6, 9), (6,))])
def test_eval_mode_caches_the_outer_weight(make, shape):
    layer = make()
    train_steps(layer, shape, steps=2)
    layer.eval()
    compute, calls = layer.outer.compute, []
    layer.outer.compute = lambda weight: calls.append(1) or compute(weight)
    x = torch.rand(4, *shape)
    first = layer.outer_weight
    outputs = [layer(x) for _ in range(3)]
    assert len(calls) == 1 and layer.outer_weight.data_ptr() == first.data_ptr()
    inner = circular_conv2d if len(shape) == 3 else F.linear
    expected = x + inner(F.relu(inner(x, layer.weight, layer.bias)), first)
    for output in outputs:
        torch.testing.assert_close(output, expected, atol=0, rtol=0)
    train_steps(layer, shape, steps=1)  # training mode recomputes at every access
    layer.eval()
    layer(x)
    assert not torch.equal(layer.outer_weight, first)


def test_vanilla_export_gives_the_same_outputs_with_plain_torch_modules():
    model = nn.Sequential(
        SLLConv2d(3, 3, 4, hidden_channels=5), SLLConv2d(3, 3, 3), nn.Flatten(), SLLLinear(48, 20)
    )
    train_steps(model, (3, 4, 4), steps=3)
    model.eval()
    plain = export(model)
    assert all(type(m) is Residual or type(m).__module__.startswith("torch.nn") for m in plain.modules())
    assert sum(type(m) is Residual for m in plain.modules()) == 3
    x = torch.randn(8, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), atol=1e-6, rtol=0)
        for layer, inputs in [(model[0], x), (model[3], model[:3](x))]:
            torch.testing.assert_close(layer.vanilla_export()(inputs), layer(inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize("make, shape", [
    (lambda: SLLConv2d(2, 2, 3, hidden_channels=3), (2, 4, 4)),
    (lambda: SLLConv2d(2, 2, 2), (2, 3, 3)),
    (lambda: SLLLinear(4, 3), (4,)),
])
def test_gradcheck(make, shape):
    layer = make().double().train()
    parameters = {name: torch.randn_like(p) for name, p in layer.named_parameters()}
    names = list(parameters)

    def f(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    x = torch.randn(2, *shape, dtype=DOUBLE)
    inputs = (x, *parameters.values())
    assert torch.autograd.gradcheck(f, tuple(t.requires_grad_() for t in inputs))
