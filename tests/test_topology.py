import math

import matplotlib.pyplot as plt
import pytest
import torch

from lipnb import topology as T
from lipnb import topology_plots as TP
from lipnb.layers import BCOPConv2d

F64 = torch.float64


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def orthonormal_columns(n: int, r: int, gen: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=gen))[0][:, :r]


# --- Figure 1 -------------------------------------------------------------------------------


def test_figure1_output_by_hand():
    data = T.figure1_data()
    x = data["input"]
    torch.testing.assert_close(data["projectors"], torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=F64))
    torch.testing.assert_close(data["kernel"][:, :, 1], torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=F64))
    expected = torch.stack([x[0], x[1, [2, 0, 1]]])  # channel 1 kept, channel 2 delayed by one (circularly)
    torch.testing.assert_close(data["output"], expected, atol=0, rtol=0)
    assert data["output"].tolist() == [[1.0, 2.0, 3.0], [6.0, 4.0, 5.0]]


@pytest.mark.parametrize("theta", [0.0, 0.7])
def test_figure1_kernel_is_orthogonal(theta):
    kernel = T.figure1_data(theta)["kernel"]
    impulses = torch.eye(6, dtype=F64).reshape(6, 2, 3)
    dense = T.circular_conv1d(impulses, kernel).reshape(6, 6).T
    torch.testing.assert_close(dense.T @ dense, torch.eye(6, dtype=F64), atol=1e-12, rtol=0)
    assert not torch.allclose(dense, torch.eye(6, dtype=F64))  # and it is not the identity


@pytest.mark.parametrize(("kernel_size", "rank"), [(2, 0), (3, 2), (4, 0), (5, 1)])
def test_figure1_data_follows_kernel_size_and_rank(kernel_size, rank):
    data = T.figure1_data(0.4, kernel_size, rank)
    x, positions = data["input"], max(3, kernel_size)
    assert x.shape == data["output"].shape == (2, positions)
    assert data["kernel"].shape == (2, 2, kernel_size)
    torch.testing.assert_close(data["kernel"], T.explorer_kernel(0.4, kernel_size, rank), atol=0, rtol=0)
    assert [T.projector_rank(p) for p in data["projectors"]] == [rank] * (kernel_size - 1)
    torch.testing.assert_close(data["output"], T.circular_conv1d(x, data["kernel"]), atol=0, rtol=0)
    if rank == 2:  # every factor is I: the identity convolution
        torch.testing.assert_close(data["output"], x, atol=1e-12, rtol=0)
    if rank == 0:  # every factor is z·I: a delay by K − 1 positions
        torch.testing.assert_close(data["output"], torch.roll(x, kernel_size - 1, dims=-1), atol=1e-12, rtol=0)


def test_draw_figure1_writes_every_cell():
    ax = TP.draw_figure1()
    texts = [t.get_text() for t in ax.texts]
    # 6 input + 4 + 4 kernel + 6 output cells
    assert len(ax.patches) == 20
    for value in ("6", "4", "5"):
        assert value in texts
    plt.close(ax.figure)


# --- projectors -----------------------------------------------------------------------------


def test_projector_rank_reads_the_matrix_and_rejects_non_projectors():
    gen = generator()
    for rank in range(4):
        assert T.projector_rank(T.random_projector(3, rank, gen)) == rank
    with pytest.raises(ValueError, match="projector"):
        T.projector_rank(0.5 * torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="projector"):
        T.projector_rank(torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=F64))  # idempotent, not symmetric


def test_rank_constant_along_parameter_path():
    gen = generator(1)
    for rank in (1, 2, 4):
        start, end = (torch.randn(5, rank, dtype=F64, generator=gen) for _ in range(2))
        assert T.rank_along_path(start, end, 41) == [rank] * 41


def test_segment_between_ranks_leaves_the_projectors():
    gen = generator(2)
    distance = T.distance_to_projectors_along_segment(T.random_projector(4, 1, gen), T.random_projector(4, 3, gen), 21)
    assert distance[0] < 1e-12 and distance[-1] < 1e-12
    assert distance[1:-1].min() > 1e-3
    with pytest.raises(ValueError, match="different ranks"):
        T.distance_to_projectors_along_segment(T.random_projector(3, 1, gen), T.random_projector(3, 1, gen), 5)


# --- Theorem 1 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "ranks", "sign"), [(2, [1], 1), (3, [0, 2], -1), (3, [3, 1, 1], 1), (4, [2, 0, 4], -1)]
)
def test_invariant_1d_of_random_kernels(n, ranks, sign):
    kernel = T.random_bcop_kernel_1d(n, len(ranks) + 1, ranks, sign, generator())
    expected = (sign, sum(n - r for r in ranks))
    assert T.invariant_1d(kernel) == expected
    assert T.invariant_1d(torch.tensor(kernel.tolist())) == expected  # the numbers alone suffice
    coefficients = T.symbol_determinant_1d(kernel)
    assert coefficients.shape == (n * len(ranks) + 1,)
    assert coefficients[expected[1]].item() == pytest.approx(sign, abs=1e-12)


def test_invariant_1d_ignores_the_parameterization():
    gen = generator(3)
    n = 3
    h = T.random_orthogonal(n, -1, gen)
    projectors = [T.random_projector(n, r, gen) for r in (1, 2, 0)]
    kernel = T.bcop_kernel_1d(h, projectors)
    # the same operator with H moved outside: F_P(z) H = H F_{HᵀPH}(z)
    inner = T.bcop_kernel_1d(torch.eye(n, dtype=F64), [h.T @ p @ h for p in projectors])
    moved = torch.einsum("ij,jkt->ikt", h, inner)
    torch.testing.assert_close(moved, kernel, atol=1e-12, rtol=0)
    assert T.invariant_1d(moved) == T.invariant_1d(kernel) == (-1, 6)
    # H → G H stays in the component when det G = +1 and changes sign when det G = −1
    assert T.invariant_1d(T.bcop_kernel_1d(T.random_orthogonal(n, 1, gen) @ h, projectors)) == (-1, 6)
    assert T.invariant_1d(T.bcop_kernel_1d(T.random_orthogonal(n, -1, gen) @ h, projectors)) == (1, 6)


def test_invariant_1d_of_hand_made_orthogonal_kernels():
    eye, swap = torch.eye(2, dtype=F64), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    zero = torch.zeros(2, 2, dtype=F64)
    assert T.invariant_1d(torch.stack([zero, eye], -1)) == (1, 2)  # pure delay: det = z²
    assert T.invariant_1d(torch.stack([zero, zero, swap], -1)) == (-1, 4)  # swap·z²: det = −z⁴


def test_invariant_1d_rejects_non_orthogonal_kernels():
    with pytest.raises(ValueError):
        T.invariant_1d(torch.randn(3, 3, 2, dtype=F64))
    with pytest.raises(ValueError, match="orthogonal"):  # det W = 1, but not orthogonal
        T.invariant_1d(torch.diag(torch.tensor([2.0, 0.5], dtype=F64))[:, :, None])
    with pytest.raises(ValueError, match="orthogonal"):
        T.invariant_1d(1.01 * T.random_bcop_kernel_1d(2, 2, [1], 1, generator()))


@pytest.mark.parametrize(("n", "kernel_size", "samples"), [(2, 2, 60), (2, 3, 150), (3, 2, 100), (3, 3, 300)])
def test_count_components_1d(n, kernel_size, samples):
    found = T.count_components_1d(n, kernel_size, samples, generator(4))
    assert len(found) == 2 * (kernel_size - 1) * n + 2
    assert found == {(s, d) for s in (1, -1) for d in range((kernel_size - 1) * n + 1)}


# --- Theorem 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "rank_p", "rank_q", "sign"), [(2, 1, 1, 1), (2, 0, 2, -1), (3, 2, 0, -1), (4, 3, 1, 1)])
def test_invariant_2x2(n, rank_p, rank_q, sign):
    gen = generator(5)
    kernel = T.bcop_kernel_2x2(
        T.random_orthogonal(n, sign, gen), T.random_projector(n, rank_p, gen), T.random_projector(n, rank_q, gen)
    )
    assert kernel.shape == (n, n, 2, 2)
    assert T.invariant_2x2(torch.tensor(kernel.tolist())) == (sign, rank_p, rank_q)
    coefficients = T.symbol_determinant_2d(kernel)
    assert coefficients.shape == (n + 1, n + 1)
    assert coefficients[n - rank_p, n - rank_q].item() == pytest.approx(sign, abs=1e-12)
    assert coefficients.abs().sum().item() == pytest.approx(1.0, abs=1e-10)  # a single monomial
    with pytest.raises(ValueError):
        T.invariant_2x2(kernel + 0.01 * torch.randn(kernel.shape, dtype=F64, generator=gen))


def test_count_components_2x2():
    found = T.count_components_2x2(2, 400, generator(6))
    assert found == {(s, a, b) for s in (1, -1) for a in range(3) for b in range(3)}
    assert len(found) == 2 * 3**2


# --- Theorem 3 ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_theorem3_embedding(n, kernel_size):
    gen = generator(7)
    assert T.theorem3_error(n, kernel_size, gen) <= 1e-6
    h = T.random_orthogonal(n, -1, gen)
    ranks = [0, n, 1, n - 1][: 2 * (kernel_size - 1)]
    projectors = [T.random_projector(n, r, gen) for r in ranks]
    h2, ps2, qs2 = T.embed_in_double_channels(h, projectors[0::2], projectors[1::2])
    assert h2.shape == (2 * n, 2 * n)
    torch.testing.assert_close(h2.T @ h2, torch.eye(2 * n, dtype=F64), atol=1e-12, rtol=0)
    assert torch.linalg.det(h2).item() == pytest.approx(1.0, abs=1e-12)
    assert [T.projector_rank(p) for p in ps2 + qs2] == [n] * (2 * (kernel_size - 1))
    # the one component of every embedding, read off the big kernel alone
    big = T.bcop_kernel_2d(h2, ps2, qs2)
    assert T.invariant_2d(big) == (1, n * (kernel_size - 1), n * (kernel_size - 1))
    # the embedded operator restricted to the first n channels is C itself
    small = T.bcop_kernel_2d(h, projectors[0::2], projectors[1::2])
    torch.testing.assert_close(big[:n, :n], small, atol=1e-12, rtol=0)
    assert big[:n, n:].abs().max() == 0 and big[n:, :n].abs().max() == 0


@pytest.mark.parametrize(("n", "kernel_size"), [(2, 2), (4, 3), (4, 4)])
def test_bcop_kernel_2d_matches_bcop_layer(n, kernel_size):
    gen = generator(8)
    layer = BCOPConv2d(n, n, kernel_size, bias=False).double()
    h = T.random_orthogonal(n, 1, gen)
    bases = torch.stack([orthonormal_columns(n, n // 2, gen) for _ in range(2 * (kernel_size - 1))])
    with torch.no_grad():
        layer.parametrizations.weight.original.copy_(h)
        layer.parametrizations.weight[0].projector_spans.copy_(bases)
    projectors = [r @ r.T for r in bases]
    expected = T.bcop_kernel_2d(h, projectors[0::2], projectors[1::2])
    torch.testing.assert_close(layer.weight, expected, atol=1e-12, rtol=0)
    # swapping the roles of the vertical and horizontal projectors gives a different kernel
    assert not torch.allclose(T.bcop_kernel_2d(h, projectors[1::2], projectors[0::2]), expected, atol=1e-6)
    rank = n - n // 2
    assert T.invariant_2d(expected) == (1, rank * (kernel_size - 1), rank * (kernel_size - 1))


# --- interactive view -------------------------------------------------------------------------


def drawn_cells(ax) -> list[float]:
    """The numbers written in the drawn cells, in drawing order (input, taps, output; row by row)."""
    written = {(round(t.get_position()[0], 6), round(t.get_position()[1], 6)): t.get_text() for t in ax.texts}
    return [float(written[(round(p.get_x() + 0.5, 6), round(p.get_y() + 0.5, 6))]) for p in ax.patches]


@pytest.mark.parametrize(("kernel_size", "rank"), [(2, 0), (3, 1), (4, 2)])
def test_explorer_kernel_invariant_is_independent_of_theta(kernel_size, rank):
    invariants = {T.invariant_1d(T.explorer_kernel(theta, kernel_size, rank)) for theta in (0.0, 1.0, math.pi / 3)}
    assert invariants == {(1, (kernel_size - 1) * (2 - rank))}


def test_explorer_panels_follow_every_slider():
    drawn = {}
    for setting in [(0.0, 2, 1), (0.5, 2, 1), (0.5, 4, 1), (0.5, 4, 0), (0.5, 4, 2)]:
        figure = TP.draw_projector_explorer(*setting)
        kernel_axes, determinant_axes = figure.axes
        drawn[setting] = torch.tensor(drawn_cells(kernel_axes), dtype=F64)
        data = T.figure1_data(*setting)
        blocks = [data["input"], *data["kernel"].permute(2, 0, 1), data["output"]]
        expected = torch.cat([block.flatten() for block in blocks])
        torch.testing.assert_close(drawn[setting], expected, atol=0.006, rtol=0)  # two decimals
        stems = torch.tensor(determinant_axes.containers[0].markerline.get_ydata(), dtype=F64)
        torch.testing.assert_close(stems, T.symbol_determinant_1d(data["kernel"]), atol=1e-12, rtol=0)
        plt.close(figure)
    # θ moves the taps; K = 4 draws 4 taps on 4 positions (2·4 + 4·4 + 2·4 cells), not Figure 1's 2 on 3
    assert not torch.allclose(drawn[(0.0, 2, 1)], drawn[(0.5, 2, 1)])
    assert len(drawn[(0.5, 2, 1)]) == 6 + 8 + 6 and len(drawn[(0.5, 4, 1)]) == 8 + 16 + 8
    # rank 2 is the identity (output = input), rank 0 a delay by K − 1 = 3 positions
    x = torch.arange(1.0, 9.0, dtype=F64).reshape(2, 4)
    torch.testing.assert_close(drawn[(0.5, 4, 2)][-8:], x.flatten(), atol=0, rtol=0)
    torch.testing.assert_close(drawn[(0.5, 4, 0)][-8:], torch.roll(x, 3, dims=-1).flatten(), atol=0, rtol=0)


def test_draw_projector_explorer_makes_exactly_one_figure():
    before = set(plt.get_fignums())
    figure = TP.draw_projector_explorer(0.3, 5, 1)
    assert set(plt.get_fignums()) - before == {figure.number}
    plt.close(figure)
    assert set(plt.get_fignums()) == before


def test_show_projector_explorer_displays_one_figure_and_closes_it(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    before = set(plt.get_fignums())
    TP.show_projector_explorer(0.3, 4, 2)
    assert len(shown) == 1 and isinstance(shown[0], plt.Figure)
    assert set(plt.get_fignums()) == before  # nothing left for the inline backend to draw again
