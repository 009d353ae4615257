import math

import pytest
import torch

from conftest import train_steps
from lipnb.layers import BjorckLinear, RKOConv2d
from lipnb.orthogonal import (
    DEFAULT_ORTHOGONALIZER,
    ORTHOGONALIZERS,
    _GRAM_CHECK_WORK,
    _CholeskyQR,
    _cholesky_qr2,
    _cholesky_qr_pass,
    _OrthogonalProjector,
    _orthonormality_error,
    bjorck,
    cholesky_qr,
    LINEAR_FORMS,
    NarrowFactor,
    cholesky_qr_linear,
    orthogonal_projector,
    polar,
    polar_linear,
    resolve_orthogonalizer,
    symmetric_projector,
)


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


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9), (3, 7, 5)])
def test_polar_is_the_polar_factor_and_bjorcks_limit(shape):
    matrix = polar_factor(torch.randn(*shape, dtype=torch.float64)) * torch.linspace(
        0.5, 2.0, shape[-1], dtype=torch.float64
    )
    torch.testing.assert_close(polar(matrix), polar_factor(matrix), atol=1e-12, rtol=0)
    torch.testing.assert_close(polar(matrix), bjorck(matrix, iters=40, tol=0), atol=1e-10, rtol=0)


def test_polar_gradient_is_exact_and_matches_bjorcks_at_convergence():
    matrix = polar_factor(torch.randn(7, 4, dtype=torch.float64)) + 0.2 * torch.randn(7, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(polar, (matrix.clone().requires_grad_(True),))
    # repeated singular values (an exactly orthogonal input) keep the backward finite
    assert torch.autograd.gradcheck(polar, (polar_factor(matrix).requires_grad_(True),))
    upstream = torch.randn(7, 4, dtype=torch.float64)
    grads = []
    for orthonormalize in (polar, lambda m: bjorck(m, iters=40, tol=0)):
        m = matrix.clone().requires_grad_(True)
        (orthonormalize(m) * upstream).sum().backward()
        grads.append(m.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=0)


def test_polar_keeps_zero_columns_and_finishes_ill_conditioned_input():
    matrix = torch.randn(8, 3, dtype=torch.float64)
    result = polar(torch.nn.functional.pad(matrix, (0, 2)))
    assert torch.all(result[:, 3:] == 0)
    torch.testing.assert_close(result[:, :3], polar_factor(matrix), atol=1e-12, rtol=0)
    # float32 with σ from 1 to 1e-3: the eigenvalues lose accuracy, Björck must finish the job
    q = polar_factor(torch.randn(40, 20))
    badly = q * torch.logspace(0, -3, 20)
    result = polar(badly)
    assert (torch.linalg.svdvals(result) - 1).abs().max() < 1e-5


def exact_projector(raw: torch.Tensor) -> torch.Tensor:
    raw = raw.double()
    return raw @ torch.linalg.solve(raw.mT @ raw, raw.mT)  # R (RᵀR)⁻¹ Rᵀ


def test_orthogonal_projector_is_the_projector_of_bjorcks_basis():
    raw = torch.randn(3, 10, 4, dtype=torch.float64)
    projector = orthogonal_projector(raw)
    torch.testing.assert_close(projector, exact_projector(raw), atol=1e-12, rtol=0)
    reference = bjorck(raw, iters=60)
    torch.testing.assert_close(projector, reference @ reference.mT, atol=1e-10, rtol=0)
    assert torch.autograd.gradcheck(orthogonal_projector, (raw.clone().requires_grad_(True),))
    # the closed-form backward agrees with differentiating through Björck's basis
    upstream = torch.randn(3, 10, 10, dtype=torch.float64)
    grads = []
    for project in (orthogonal_projector, lambda r: bjorck(r, iters=60, tol=0) @ bjorck(r, iters=60, tol=0).mT):
        r = raw.clone().requires_grad_(True)
        (project(r) * upstream).sum().backward()
        grads.append(r.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=0)


def test_orthogonal_projector_stays_exact_for_badly_conditioned_float32():
    raw = polar_factor(torch.randn(64, 32)) * torch.logspace(0, -2.5, 32)  # cond ≈ 300: one pass loses ~1e-2
    projector = orthogonal_projector(raw)
    torch.testing.assert_close(projector.double(), exact_projector(raw), atol=1e-5, rtol=0)
    assert (torch.linalg.eigvalsh(projector.double()) - torch.tensor([0.0] * 32 + [1.0] * 32).double()).abs().max() < 1e-5


def test_orthogonal_projector_falls_back_for_rank_deficient_input_and_rejects_wide():
    raw = torch.randn(10, 4)
    raw[:, 3] = raw[:, 0]  # rank 3: Cholesky breaks down
    projector = orthogonal_projector(raw)
    assert torch.isfinite(projector).all() and (torch.linalg.eigvalsh(projector) <= 1 + 1e-5).all()
    assert orthogonal_projector(torch.randn(2, 1, 0)).shape == (2, 1, 1)  # rank 0: P = 0
    with pytest.raises(ValueError, match="tall"):
        orthogonal_projector(torch.randn(3, 5))


# ---------------------------------------------------------------------------------------------
# The pluggable orthogonalizers: cholesky (default), polar, bjorck


def householder_q(matrix: torch.Tensor) -> torch.Tensor:
    """Q of Householder QR with R's diagonal made positive: the unique Q that Cholesky QR computes."""
    q, r = torch.linalg.qr(matrix)
    return q * torch.sign(r.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2)


@pytest.mark.parametrize("name", list(ORTHOGONALIZERS))
@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9), (3, 7, 5)])
def test_every_orthogonalizer_has_an_exact_gradient_and_an_orthonormal_result(name, shape):
    matrix = polar_factor(torch.randn(*shape, dtype=torch.float64)) + 0.2 * torch.randn(*shape, dtype=torch.float64)
    orthogonalize = resolve_orthogonalizer(name)
    result = orthogonalize(matrix)
    narrow = min(shape[-2:])
    gram = result.mT @ result if shape[-2] >= shape[-1] else result @ result.mT
    torch.testing.assert_close(gram, torch.eye(narrow, dtype=torch.float64).expand_as(gram), atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(orthogonalize, (matrix.clone().requires_grad_(True),))


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9), (3, 7, 5)])
def test_cholesky_is_householder_qr_and_a_rotation_of_bjorcks_limit(shape):
    matrix = torch.randn(*shape, dtype=torch.float64)
    result = cholesky_qr(matrix)
    wide = shape[-2] < shape[-1]
    expected = householder_q(matrix.mT).mT if wide else householder_q(matrix)
    torch.testing.assert_close(result, expected, atol=1e-12, rtol=0)
    # same span as Björck's limit, so the same projector, and Q_chol = Q_polar · (an orthogonal matrix)
    limit = bjorck(matrix, iters=60, tol=0)
    tall, tall_limit = (result.mT, limit.mT) if wide else (result, limit)
    torch.testing.assert_close(tall @ tall.mT, tall_limit @ tall_limit.mT, atol=1e-10, rtol=0)
    rotation = tall_limit.mT @ tall
    eye = torch.eye(shape[-1] if not wide else shape[-2], dtype=torch.float64)
    torch.testing.assert_close(rotation.mT @ rotation, eye.expand_as(rotation), atol=1e-10, rtol=0)


def test_cholesky_second_pass_and_fallbacks():
    # forced second pass (tol < 0): the combined factor still gives the exact gradient
    matrix = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: _CholeskyQR.apply(m, -1.0)[0], (matrix,))
    assert torch.autograd.gradcheck(lambda m: _OrthogonalProjector.apply(m, -1.0)[0], (matrix,))
    # float32, cond = 1e3: one pass loses ~κ²·eps, the second pass repairs it
    badly = polar_factor(torch.randn(200, 50)) @ torch.diag(torch.logspace(0, 3, 50)) @ polar_factor(torch.randn(50, 50))
    assert (torch.linalg.svdvals(cholesky_qr(badly).double()) - 1).abs().max() < 1e-5
    # cond = 1e4 ≈ 1/√eps: the first pass is far from orthonormal (‖QᵀQ − I‖ ≈ 1), a third pass finishes
    worse = polar_factor(torch.randn(200, 50)) @ torch.diag(torch.logspace(0, 4, 50)) @ polar_factor(torch.randn(50, 50))
    assert _orthonormality_error(_cholesky_qr_pass(worse)[0]) > 0.1
    basis, factor, converged = _cholesky_qr2(worse, 64 * torch.finfo(torch.float32).eps)
    assert converged and (torch.linalg.svdvals(basis.double()) - 1).abs().max() < 1e-5
    torch.testing.assert_close(basis @ factor.mT, worse, atol=1e-3, rtol=1e-4)
    # rank deficient: Cholesky breaks down, Björck takes over and leaves the zero column at zero
    deficient = torch.randn(10, 4)
    deficient[:, 2] = 0
    result = cholesky_qr(deficient)
    assert torch.isfinite(result).all() and torch.all(result[:, 2] == 0)
    assert (torch.linalg.svdvals(result.double())[:3] - 1).abs().max() < 1e-5


@pytest.mark.parametrize("orthogonalizer", list(LINEAR_FORMS), ids=lambda f: f.__name__)
@pytest.mark.parametrize("out_features, in_features", [(4, 9), (9, 4), (6, 6), (1, 5)])
def test_linear_forms_are_the_layer_of_the_explicit_basis(orthogonalizer, out_features, in_features):
    # wide, tall, square (treated as tall, as the orthogonalizers do) and a single row; batch dims kept
    linear_form = LINEAR_FORMS[orthogonalizer]
    weight = polar_factor(torch.randn(out_features, in_features, dtype=torch.float64))
    weight = (weight + 0.3 * torch.randn_like(weight)).requires_grad_(True)
    x = torch.randn(3, 2, in_features, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(out_features, dtype=torch.float64, requires_grad=True)
    fused = linear_form(x, weight, bias)
    explicit = torch.nn.functional.linear(x, orthogonalizer(weight), bias)
    torch.testing.assert_close(fused, explicit, atol=1e-13, rtol=0)
    upstream = torch.randn_like(fused)
    for got, expected in zip(torch.autograd.grad(fused, (x, weight, bias), upstream),
                             torch.autograd.grad(explicit, (x, weight, bias), upstream)):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(linear_form, (x, weight, bias))


@pytest.mark.parametrize("orthogonalizer", list(LINEAR_FORMS), ids=lambda f: f.__name__)
def test_linear_forms_hand_what_they_cannot_orthonormalize_to_the_explicit_form(orthogonalizer):
    linear_form = LINEAR_FORMS[orthogonalizer]
    # float32, cond = 1e3: one Cholesky pass (or float32 S⁻¹) is off by ~κ²·eps; the explicit form finishes it
    badly = polar_factor(torch.randn(200, 50)) @ torch.diag(torch.logspace(0, 3, 50)) @ polar_factor(torch.randn(50, 50))
    badly = badly.mT.contiguous()  # (50, 200): wide
    x = torch.randn(16, 200)
    torch.testing.assert_close(linear_form(x, badly), x @ orthogonalizer(badly).mT, atol=1e-6, rtol=0)
    assert (torch.linalg.svdvals(orthogonalizer(badly).double()) - 1).abs().max() < 1e-5
    # rank deficient: Björck, through the explicit form, with the zero row kept at zero
    deficient = torch.randn(4, 10)
    deficient[2] = 0
    y = linear_form(torch.randn(5, 10), deficient)
    assert torch.isfinite(y).all() and torch.all(y[:, 2] == 0)
    with pytest.raises(ValueError, match=r"a linear weight must be \(out_features, in_features\); got \(2, 3, 4\)"):
        linear_form(torch.randn(5, 4), torch.randn(2, 3, 4))


@pytest.mark.parametrize("shape", [(30, 6), (600, 40)])  # exact Gram check, then the power-iteration estimate
def test_orthonormality_error_of_an_unformed_basis_is_that_of_the_basis(shape):
    mixing = polar_factor(torch.randn(shape[1], shape[1]))
    matrix = polar_factor(torch.randn(*shape)) @ torch.diag(torch.logspace(0, 3, shape[1])) @ mixing
    factor = torch.linalg.cholesky(matrix.mT @ matrix)  # float32, cond 1e3: ‖QᵀQ − I‖ far above eps
    basis = torch.linalg.solve_triangular(factor.mT, matrix, upper=True, left=False)  # W L⁻ᵀ, formed
    expected = _orthonormality_error(basis)
    assert expected > 1e-4
    for unformed in (NarrowFactor(factor, lower_triangular_inverse=True),
                     NarrowFactor(torch.linalg.inv(factor).mT, lower_triangular_inverse=False)):
        torch.testing.assert_close(_orthonormality_error(matrix, unformed), expected, rtol=0.01, atol=0)


@pytest.mark.parametrize("shape", [(30, 6), (600, 40), (2, 600, 40)])
def test_orthonormality_error_is_close_to_the_spectral_norm_from_below_or_the_frobenius_norm_above(shape):
    mixing = polar_factor(torch.randn(shape[-1], shape[-1]))
    matrix = polar_factor(torch.randn(*shape)) @ torch.diag(torch.logspace(0, 2, shape[-1])) @ mixing
    basis = _cholesky_qr_pass(matrix)[0]  # float32, cond 1e2: a deviation well above eps
    deviation = basis.double().mT @ basis.double() - torch.eye(shape[-1], dtype=torch.float64)
    spectral = torch.linalg.eigvalsh(deviation).abs().max()
    error = _orthonormality_error(basis)
    if shape[-2] * shape[-1] ** 2 <= _GRAM_CHECK_WORK:
        assert error == pytest.approx(float(torch.linalg.vector_norm(deviation)), rel=1e-12)
    else:  # the power estimate: a lower bound, within a factor 2 for this spectrum of errors
        assert 0.5 * spectral <= error <= spectral * (1 + 1e-9)


def test_orthonormality_error_of_an_exact_basis_is_zero_and_of_nan_is_nan():
    assert _orthonormality_error(torch.eye(700, 30)) == 0.0  # the power estimate's 0/0 reads 0
    assert math.isnan(_orthonormality_error(torch.full((700, 30), float("nan"))))


@pytest.mark.parametrize("name", list(ORTHOGONALIZERS))
def test_layers_train_under_autocast_with_full_precision_weights(name):
    # mixed precision (bfloat16 autocast on CPU): the weight is orthonormalized in float32 all the same
    torch.manual_seed(0)
    model = torch.nn.Sequential(RKOConv2d(2, 16, 3, orthogonalizer=name), torch.nn.Flatten(),
                                BjorckLinear(16 * 6 * 6, 32, orthogonalizer=name))  # large enough for the linear form
    x = torch.rand(3, 2, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().square().sum().backward()
        weights = [layer.weight for layer in (model[0], model[2])]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    for weight, layer in zip(weights, (model[0], model[2])):
        assert weight.dtype == torch.float32
        torch.testing.assert_close(weight, layer.weight, atol=0, rtol=0)


def test_orthogonalizer_choices():
    assert resolve_orthogonalizer("polar") is polar and resolve_orthogonalizer(cholesky_qr) is cholesky_qr
    assert list(ORTHOGONALIZERS)[0] == DEFAULT_ORTHOGONALIZER == "cholesky"
    with pytest.raises(ValueError, match="unknown orthogonalizer 'qr'; expected one of 'cholesky', 'polar', 'bjorck'"):
        resolve_orthogonalizer("qr")


# the BjorckLinear shapes (tall, square, wide) for the default; a quarter of each side for the
# slower orthogonalizers, whose full-size run would take minutes
@pytest.mark.parametrize(
    "name, in_features, out_features",
    [("cholesky", 3136, 512), ("cholesky", 1024, 1024), ("cholesky", 100, 1568)]
    + [(name, i, o) for name in ("polar", "bjorck") for i, o in ((784, 128), (256, 256), (25, 392))],
)
def test_float32_weights_stay_orthonormal_after_200_adam_steps(name, in_features, out_features):
    layer = BjorckLinear(in_features, out_features, orthogonalizer=name)
    train_steps(layer, (in_features,), steps=200)  # Adam at lr 1e-2 drives cond(raw) far above 10
    raw = layer.parametrizations.weight.original.detach().double()
    assert torch.linalg.cond(raw) > 2  # the stress is real: far from the orthogonal start (cond 1)
    sigma = torch.linalg.svdvals(layer.weight.detach().double())
    assert (sigma - 1).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(ORTHOGONALIZERS))
def test_rko_stays_orthonormal_after_200_adam_steps(name):
    layer = RKOConv2d(16, 32, 3, orthogonalizer=name)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = torch.rand(4, 16, 8, 8)
    target = torch.randn(4, 32, 8, 8)
    for _ in range(200):
        optimizer.zero_grad()
        (layer(x) - target).square().mean().backward()
        optimizer.step()
    matrix = layer.weight.detach().double().flatten(1) * layer.conv_kernel_size  # the (out, in·k²) reshaped kernel
    assert (torch.linalg.svdvals(matrix) - 1).abs().max() < 1e-5
