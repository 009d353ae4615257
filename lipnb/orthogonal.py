"""Orthogonal maps: batched Björck orthonormalization, the exact polar factor, symmetric projectors.

Björck & Bowie (1971), first order, as used by the BCOP paper (Li et al. 2019, Sec. 4 and
Appendix H): ``W ← (1 + β) W − β W WᵀW``, which drives every singular value of a tall ``W`` to 1
provided they start in ``(0, √3)``. Its limit is the orthonormal polar factor ``W (WᵀW)^{-1/2}``,
which :func:`polar` computes directly from one eigendecomposition of the Gram matrix.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Scaling = Literal["power", "frobenius"]

_POWER_ITERATIONS = 4


def bjorck(
    weight: Tensor,
    iters: int = 20,
    beta: float = 0.5,
    scaling: Scaling = "power",
    tol: float | None = None,
) -> Tensor:
    """Orthonormalize each matrix of a stack ``(..., m, n)``; differentiable.

    Tall matrices get orthonormal columns, wide ones orthonormal rows (handled by transposing).
    ``scaling`` picks the pre-scaling that puts the singular values into Björck's basin:
    ``"power"`` divides by a power-iteration estimate of σ_max (few iterations for near-orthogonal
    input), ``"frobenius"`` by the Frobenius norm (always safe, slower for wide spectra).
    The iteration stops as soon as every singular value is provably within ``tol`` of 1 (default
    ``64·eps`` of the dtype): when ``d = ‖WᵀW − I‖_F ≤ tol``, or after one last step when that
    step's convergence bound ``|1 − 2β|·d + 3β·d² + β·d³`` is ≤ ``tol``. ``tol=0`` runs ``iters`` steps.
    Zero columns stay zero, so matrices of different widths can share one call when zero-padded.
    """
    if iters < 1:
        raise ValueError(f"bjorck: iters must be >= 1; got {iters}")
    if tol is None:
        tol = 64 * torch.finfo(weight.dtype).eps
    wide = weight.shape[-2] < weight.shape[-1]
    w = weight.mT if wide else weight
    shape = w.shape
    w = w.reshape(-1, *shape[-2:])  # one batch dimension, for the fused baddbmm update
    gram = w.mT @ w
    scale2 = _squared_scale(gram.detach(), scaling)
    w = w / scale2.sqrt()
    gram = gram / scale2
    for step in range(iters):
        deviation = float(_gram_deviation(gram.detach()).max()) if tol > 0 else float("inf")
        if deviation <= tol:
            break
        w = torch.baddbmm(w, w, gram, beta=1 + beta, alpha=-beta)  # (1 + β) W − β W WᵀW
        after_step = abs(1 - 2 * beta) * deviation + 3 * beta * deviation**2 + beta * deviation**3
        if after_step <= tol or step == iters - 1:
            break
        gram = w.mT @ w
    w = w.reshape(shape)
    return w.mT if wide else w


def _squared_scale(gram: Tensor, scaling: Scaling) -> Tensor:
    """Square of the divisor that pre-scales each matrix, shape ``(..., 1, 1)``."""
    if scaling == "frobenius":
        scale2 = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    elif scaling == "power":
        vector = torch.ones(gram.shape[:-1], dtype=gram.dtype, device=gram.device)
        vector[..., ::2] = -0.5  # avoid starting orthogonal to the common all-ones direction
        for _ in range(_POWER_ITERATIONS):
            vector = torch.nn.functional.normalize((gram @ vector.unsqueeze(-1)).squeeze(-1), dim=-1)
        estimate = (vector * (gram @ vector.unsqueeze(-1)).squeeze(-1)).sum(-1)
        # σ_max² ≤ ‖WᵀW‖_∞, so this floor keeps σ_max / scale below √3 even for a poor estimate.
        scale2 = torch.maximum(estimate, gram.abs().sum(-1).amax(-1) / 2.9)
    else:
        raise ValueError(f"bjorck: scaling must be 'power' or 'frobenius'; got {scaling!r}")
    return scale2.clamp_min(torch.finfo(gram.dtype).tiny)[..., None, None]


def _orthonormality_error(q: Tensor) -> float:
    """The largest ``‖QᵀQ − I‖_F`` over a stack of tall matrices (NaN if any entry is)."""
    return float(_gram_deviation(q.mT @ q).max())


def _gram_deviation(gram: Tensor) -> Tensor:
    """‖WᵀW − I‖_F per matrix, zero columns counting as converged."""
    diagonal = gram.diagonal(dim1=-2, dim2=-1)
    target = torch.diag_embed((diagonal > 0).to(gram.dtype))
    return torch.linalg.matrix_norm(gram - target)


def polar(weight: Tensor, tol: float | None = None) -> Tensor:
    """The orthonormal polar factor ``W (WᵀW)^{-1/2}`` of each matrix of a stack ``(..., m, n)``; differentiable.

    The limit of :func:`bjorck`, computed from one eigendecomposition ``WᵀW = V Λ Vᵀ`` (in float64
    for lower precisions) with a closed-form backward: no iterations to differentiate through.
    Like :func:`bjorck`, wide matrices get orthonormal rows. A result with ``‖QᵀQ − I‖_F > tol``
    (default ``64·eps``: a badly conditioned input) is finished by :func:`bjorck`, which converges
    fast from there; a rank-deficient one (zero columns included) is left to :func:`bjorck` entirely.
    """
    if weight.numel() == 0:
        return weight
    if tol is None:
        tol = 64 * torch.finfo(weight.dtype).eps
    wide = weight.shape[-2] < weight.shape[-1]
    w = weight.mT if wide else weight
    q = _PolarFactor.apply(w)
    if not _orthonormality_error(q.detach()) <= tol:  # also catches NaN
        q = bjorck(w if q.isnan().any() else q)
    return q.mT if wide else q


class _PolarFactor(torch.autograd.Function):
    """``Q = W S⁻¹`` with ``S = (WᵀW)^{1/2}`` for tall ``W`` of full rank.

    Backward: from ``dQ = (dW − Q dS) S⁻¹`` and ``S dS + dS S = dWᵀW + WᵀdW``, in the eigenbasis
    ``V`` of ``S`` (eigenvalues ``s``): ``∇W = G S⁻¹ − 2 W V K Vᵀ`` with
    ``K = Vᵀ sym(Qᵀ G S⁻¹) V ⊘ (sᵢ + sⱼ)``, finite even for repeated singular values.
    """

    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:
        eigenvalues, basis = torch.linalg.eigh((w.mT @ w).to(torch.promote_types(w.dtype, torch.float64)))
        roots = eigenvalues.sqrt()
        inverse_root = ((basis / roots.unsqueeze(-2)) @ basis.mT).to(w.dtype)
        q = w @ inverse_root
        ctx.save_for_backward(w, q, basis.to(w.dtype), roots.to(w.dtype), inverse_root)
        return q

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        w, q, basis, roots, inverse_root = ctx.saved_tensors
        grad_s = grad @ inverse_root
        m = q.mT @ grad_s
        k = (basis.mT @ (m + m.mT) @ basis) / (2 * (roots.unsqueeze(-1) + roots.unsqueeze(-2)))
        return grad_s - 2 * (w @ basis) @ k @ basis.mT


def orthogonal_projector(weight: Tensor, tol: float | None = None) -> Tensor:
    """``P = W (WᵀW)⁻¹ Wᵀ``, the orthogonal projector onto the column space of each tall ``(..., m, r)`` ``W``.

    ``P = Q Qᵀ`` for every orthonormal basis ``Q`` of that space, so this is the projector BCOP's
    Algorithm 1 builds from the Björck-orthonormalized ``W``, computed instead from a Cholesky QR
    basis (a second pass while ‖QᵀQ − I‖_F > ``tol``, default ``64·eps``; :func:`bjorck` if that is
    not enough) with a closed-form backward: ``∇W = 2 (I − P) sym(∇P) W (WᵀW)⁻¹``.
    """
    if weight.shape[-2] < weight.shape[-1]:
        raise ValueError(f"orthogonal_projector: weight must be tall (..., m, r) with r <= m; got {tuple(weight.shape)}")
    if weight.numel() == 0:
        return weight @ weight.mT
    if tol is None:
        tol = 64 * torch.finfo(weight.dtype).eps
    with torch.no_grad():
        basis, factor = _cholesky_qr(weight)
        for cholesky_pass in (1, 2):
            converged = _orthonormality_error(basis) <= tol  # False for NaN (rank deficient)
            if converged or cholesky_pass == 2:
                break
            basis, second = _cholesky_qr(basis)  # CholeskyQR2: repairs the loss of orthogonality ∝ cond(W)²
            factor = second @ factor
    if converged:
        return _OrthogonalProjector.apply(weight, basis, factor)
    basis = bjorck(weight, scaling="frobenius")
    return basis @ basis.mT


def _cholesky_qr(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(Q, L)`` with ``W = Q Lᵀ``, ``L`` the lower Cholesky factor of ``WᵀW``."""
    factor, _ = torch.linalg.cholesky_ex(weight.mT @ weight)
    return torch.linalg.solve_triangular(factor, weight.mT, upper=False).mT, factor


class _OrthogonalProjector(torch.autograd.Function):
    """``P = Q Qᵀ`` from a precomputed basis ``Q = W L⁻ᵀ``; the gradient flows to ``W`` only.

    ``dP = (I − P) dW W⁺ + (…)ᵀ`` with ``W⁺ᵀ = W (WᵀW)⁻¹ = Q L⁻¹``, so
    ``∇W = 2 (S Q − Q (Qᵀ S Q)) L⁻¹`` with ``S = sym(∇P)``.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, basis: Tensor, factor: Tensor) -> Tensor:
        ctx.save_for_backward(basis, factor)
        return basis @ basis.mT

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        basis, factor = ctx.saved_tensors
        pulled = (grad + grad.mT) @ basis  # 2 S Q
        pulled = pulled - basis @ (basis.mT @ pulled)
        return torch.linalg.solve_triangular(factor, pulled, upper=False, left=False), None, None


def symmetric_projector(raw: Tensor, **bjorck_kwargs) -> Tensor:
    """Symmetric projector ``P = R Rᵀ`` of rank ``r`` from an unconstrained ``(..., n, r)`` matrix.

    ``R`` is the Björck-orthonormalized ``raw``; with ``r = ⌊n/2⌋`` this is the BCOP paper's
    parameterization of rank-⌊n/2⌋ projectors (Sec. 3, Algorithm 1).
    :func:`orthogonal_projector` computes the same ``P`` exactly, without iterating.
    """
    if raw.shape[-1] > raw.shape[-2]:
        raise ValueError(f"symmetric_projector: raw must be (..., n, r) with r <= n; got {tuple(raw.shape)}")
    basis = bjorck(raw, **bjorck_kwargs)
    return basis @ basis.mT
