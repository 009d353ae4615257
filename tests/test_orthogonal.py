import pytest
import torch

from lipnb.orthogonal import bjorck, symmetric_projector


def polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """The closest (semi-)orthogonal matrix, from an SVD: what Björck converges to."""
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u @ vh


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9), (3, 7, 5)])
@pytest.mark.parametrize("scaling", ["power", "frobenius"])
def test_bjorck_converges_to_polar_factor(shape, scaling):
    # well conditioned: (semi-)orthogonal with its columns stretched by factors in [0.5, 2]
    q = polar_factor(torch.randn(*shape, dtype=torch.float64))
    matrix = q * torch.linspace(0.5, 2.0, shape[-1], dtype=torch.float64)
    result = bjorck(matrix, iters=40, scaling=scaling, tol=0)
    torch.testing.assert_close(result, polar_factor(matrix), atol=1e-10, rtol=0)


def test_bjorck_orthonormal_rows_for_wide_and_columns_for_tall():
    tall = bjorck(torch.randn(10, 4, dtype=torch.float64), iters=60)
    wide = bjorck(torch.randn(4, 10, dtype=torch.float64), iters=60)
    eye = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(tall.T @ tall, eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(wide @ wide.T, eye, atol=1e-10, rtol=0)


def test_bjorck_early_stop_meets_its_tolerance_in_few_steps():
    matrix = polar_factor(torch.randn(32, 16)) + 0.02 * torch.randn(32, 16)
    result = bjorck(matrix, iters=50)  # float32: tol = 64·eps ≈ 7.6e-6
    sigma = torch.linalg.svdvals(result)
    assert (sigma - 1).abs().max() < 2e-6
    # the same with a fixed budget of 50 steps agrees: stopping early lost nothing
    torch.testing.assert_close(result, bjorck(matrix, iters=50, tol=0), atol=2e-6, rtol=0)


def test_bjorck_converges_from_a_badly_scaled_start():
    # σ_max far above √3: the pre-scaling must bring it into the basin
    matrix = 1e3 * torch.randn(20, 20, dtype=torch.float64)
    result = bjorck(matrix, iters=60)
    torch.testing.assert_close(result.T @ result, torch.eye(20, dtype=torch.float64), atol=1e-8, rtol=0)


def test_zero_padded_columns_stay_zero_and_do_not_change_the_rest():
    matrix = torch.randn(8, 3, dtype=torch.float64)
    padded = torch.nn.functional.pad(matrix, (0, 2))
    result = bjorck(padded, iters=30)
    assert torch.all(result[:, 3:] == 0)
    torch.testing.assert_close(result[:, :3], polar_factor(matrix), atol=1e-10, rtol=0)


def test_bjorck_is_differentiable():
    matrix = (polar_factor(torch.randn(5, 3, dtype=torch.float64)) + 0.1 * torch.randn(5, 3, dtype=torch.float64))
    matrix.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: bjorck(m, iters=8, tol=0), (matrix,))


def test_bjorck_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scaling"):
        bjorck(torch.randn(3, 3), scaling="spectral")
    with pytest.raises(ValueError, match="iters"):
        bjorck(torch.randn(3, 3), iters=0)


@pytest.mark.parametrize("n, rank", [(4, 2), (5, 2), (6, 3), (3, 1)])
def test_symmetric_projector_has_the_requested_rank(n, rank):
    p = symmetric_projector(torch.randn(2, n, rank, dtype=torch.float64), iters=60)
    torch.testing.assert_close(p, p.mT, atol=1e-12, rtol=0)
    torch.testing.assert_close(p @ p, p, atol=1e-10, rtol=0)
    assert torch.linalg.matrix_rank(p).tolist() == [rank, rank]


def test_symmetric_projector_rejects_too_many_columns():
    with pytest.raises(ValueError, match="r <= n"):
        symmetric_projector(torch.randn(3, 4))
