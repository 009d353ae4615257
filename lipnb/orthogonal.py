"""Orthogonal maps: batched Björck orthonormalization and symmetric projectors.

Björck & Bowie (1971), first order, as used by the BCOP paper (Li et al. 2019, Sec. 4 and
Appendix H): ``W ← (1 + β) W − β W WᵀW``, which drives every singular value of a tall ``W`` to 1
provided they start in ``(0, √3)``.
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


def _gram_deviation(gram: Tensor) -> Tensor:
    """‖WᵀW − I‖_F per matrix, zero columns counting as converged."""
    diagonal = gram.diagonal(dim1=-2, dim2=-1)
    target = torch.diag_embed((diagonal > 0).to(gram.dtype))
    return torch.linalg.matrix_norm(gram - target)


def symmetric_projector(raw: Tensor, **bjorck_kwargs) -> Tensor:
    """Symmetric projector ``P = R Rᵀ`` of rank ``r`` from an unconstrained ``(..., n, r)`` matrix.

    ``R`` is the Björck-orthonormalized ``raw``; with ``r = ⌊n/2⌋`` this is the BCOP paper's
    parameterization of rank-⌊n/2⌋ projectors (Sec. 3, Algorithm 1).
    """
    if raw.shape[-1] > raw.shape[-2]:
        raise ValueError(f"symmetric_projector: raw must be (..., n, r) with r <= n; got {tuple(raw.shape)}")
    basis = bjorck(raw, **bjorck_kwargs)
    return basis @ basis.mT
