"""Orthogonal maps: the orthogonalizers every orthogonal weight of lipnb goes through, and projectors.

An *orthogonalizer* maps an unconstrained stack of matrices ``(..., m, n)`` to matrices with
orthonormal columns (tall) or rows (wide), differentiably. :data:`ORTHOGONALIZERS` names the three
that BCOP's ``H``, RKO's reshaped kernel and :class:`~lipnb.layers.BjorckLinear`'s weight can use
(their ``orthogonalizer=`` option; any callable of the same kind works too):

``"cholesky"`` (default, CPU and CUDA)
    Cholesky QR, ``Q = W L⁻ᵀ`` with ``L Lᵀ = WᵀW``: three BLAS-3 calls forward and three backward,
    the least O(mn²) work of any exact method, and Cholesky and triangular solves are fast
    library calls on both devices. A linear layer need not even form ``Q``
    (:data:`LINEAR_FORMS`: two O(mn²) products per step instead of five). A different map
    from the other two (Gram–Schmidt's, not the closest orthogonal matrix), with the same range of
    orthonormal matrices. The default everywhere, so a checkpoint means the same network on every device.
``"polar"``
    The closest orthonormal matrix ``W (WᵀW)^{-1/2}``, i.e. the limit of Björck's iteration, from
    one float64 eigendecomposition with a closed-form backward (a linear layer need not form ``Q``
    either, :data:`LINEAR_FORMS`). Fast for the small matrices of a BCOP kernel; an
    eigendecomposition is slow for large ones, and slower still on a GPU.
``"bjorck"``
    The BCOP paper's iteration (Björck & Bowie 1971, first order; Li et al. 2019, Sec. 4 and
    Appendix H), differentiated step by step by autograd, kept to reproduce the paper. Its limit is
    ``"polar"``'s map; made of matrix products only, it is the fast way to that map on a GPU.

Each exact method checks its result and hands an input it cannot orthonormalize in float32
(badly conditioned or rank deficient) to :func:`bjorck`. Certificates never rely on this check:
they use the measured spectrum (:mod:`lipnb.spectrum`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Literal, TypeVar, Union

import torch
from torch import Tensor

from lipnb._validation import require_choice

Scaling = Literal["power", "frobenius"]
Orthogonalizer = Callable[[Tensor], Tensor]
OrthogonalizerChoice = Union[str, Orthogonalizer]

_POWER_ITERATIONS = 4
_ERROR_ITERATIONS = 2  # products with QᵀQ − I that estimate its norm for a large result (rough, cheap)
_GRAM_CHECK_WORK = 2**19  # m·n² up to which a result's error is measured exactly, from its Gram matrix
_EXTRA_PASSES = 2  # Cholesky QR passes after the first, at most
_TRUSTED_DEVIATION = 0.1  # a pass on an input with ‖QᵀQ − I‖ ≤ this returns orthonormal Q to working precision

_Function = TypeVar("_Function", bound=Callable)


def _without_autocast(function: _Function) -> _Function:
    """Run ``function`` with autocast off, in its input's own dtype: under mixed precision an
    orthonormalization in half precision would be neither orthonormal nor supported (triangular solves)."""

    @functools.wraps(function)
    def wrapper(tensor: Tensor, *args, **kwargs):
        with _autocast_off(tensor.device.type):
            return function(tensor, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device_type``: nothing to enter when it is off already (a few µs a call saved)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


@_without_autocast
def bjorck(
    weight: Tensor,
    iters: int = 20,
    beta: float = 0.5,
    scaling: Scaling = "power",
    tol: float | None = None,
) -> Tensor:
    """Orthonormalize each matrix of a stack ``(..., m, n)`` by Björck's iteration; differentiable.

    ``W ← (1 + β) W − β W WᵀW`` drives every singular value of a tall ``W`` to 1 provided they
    start in ``(0, √3)``. Tall matrices get orthonormal columns, wide ones orthonormal rows (handled
    by transposing). ``scaling`` picks the pre-scaling that puts the singular values into the basin:
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
        tol = _default_tol(weight)
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


def _default_tol(weight: Tensor) -> float:
    return 64 * torch.finfo(weight.dtype).eps


def _gram_deviation(gram: Tensor) -> Tensor:
    """‖WᵀW − I‖_F per matrix, zero columns counting as converged."""
    diagonal = gram.diagonal(dim1=-2, dim2=-1)
    target = torch.diag_embed((diagonal > 0).to(gram.dtype))
    return torch.linalg.matrix_norm(gram - target)


def _orthonormality_error(q: Tensor, factor: NarrowFactor | None = None) -> float:
    """``‖QᵀQ − I‖`` of a stack of tall matrices, measured in float64 (NaN if any entry is).

    ``Q`` is ``q`` itself, or ``q T`` for a :class:`NarrowFactor` ``T`` (a basis that is never
    formed, :data:`LINEAR_FORMS`). For a small stack (``m·n²`` up to :data:`_GRAM_CHECK_WORK`)
    the Frobenius norm of the whole stack's float64 ``QᵀQ − I`` (≥ the spectral norm of each
    matrix), a handful of cheap operations. For larger ones a lower estimate of the spectral norm
    of ``A = QᵀQ − I``: ``‖A²v‖ / ‖Av‖`` (:data:`_ERROR_ITERATIONS` products ``v ↦ Av``) for a fixed
    generic ``v``, O(mn) per product where forming ``QᵀQ`` would cost as much as the
    orthonormalization itself. It decides only whether a result needs another pass; it bounds nothing.
    """
    q = q.detach().double()
    factor = None if factor is None else factor.double()
    width = q.shape[-1]
    if q.shape[-2] * width**2 <= _GRAM_CHECK_WORK:
        basis = q if factor is None else factor.times(q)
        deviation = basis.mT @ basis
        deviation.diagonal(dim1=-2, dim2=-1).sub_(1)
        return float(torch.linalg.vector_norm(deviation))
    # on row vectors, r ↦ r (QᵀQ − I) with r QᵀQ = ((r Tᵀ) qᵀ) q T: two matrix-vector products with q each
    row = torch.linspace(0.5, 0.5 + 1.618 * width, width, dtype=q.dtype, device=q.device).sin_()  # no special direction
    row = row.expand(*q.shape[:-2], 1, width)
    norms = []
    for _ in range(_ERROR_ITERATIONS):
        image = (row if factor is None else factor.times_transposed(row)) @ q.mT @ q
        row = (image if factor is None else factor.times(image)) - row
        norms.append(torch.linalg.vector_norm(row, dim=-1))
    return float((norms[-1] / norms[-2].clamp_min(torch.finfo(q.dtype).tiny)).max())  # 0 for an exactly orthonormal Q


@_without_autocast
def polar(weight: Tensor, tol: float | None = None) -> Tensor:
    """The orthonormal polar factor ``W (WᵀW)^{-1/2}`` of each matrix of a stack ``(..., m, n)``; differentiable.

    The limit of :func:`bjorck`, computed from one eigendecomposition ``WᵀW = V Λ Vᵀ`` (in float64
    for lower precisions) with a closed-form backward: no iterations to differentiate through.
    Like :func:`bjorck`, wide matrices get orthonormal rows. A result with ``‖QᵀQ − I‖₂ > tol``
    (default ``64·eps``: a badly conditioned input) is finished by :func:`bjorck`, which converges
    fast from there; a rank-deficient one (zero columns included) is left to :func:`bjorck` entirely.
    """
    if weight.numel() == 0:
        return weight
    tol = _default_tol(weight) if tol is None else tol
    wide = weight.shape[-2] < weight.shape[-1]
    w = weight.mT if wide else weight
    q = _PolarFactor.apply(w)
    if not _orthonormality_error(q) <= tol:  # also catches NaN
        q = bjorck(w if q.isnan().any() else q)
    return q.mT if wide else q


class _PolarFactor(torch.autograd.Function):
    """``Q = W S⁻¹`` with ``S = (WᵀW)^{1/2}`` for tall ``W`` of full rank.

    Backward: from ``dQ = (dW − Q dS) S⁻¹`` and ``S dS + dS S = dWᵀW + WᵀdW``, in the eigenbasis
    ``V`` of ``S`` (eigenvalues ``s``): ``∇W = G S⁻¹ − W C`` with :func:`_polar_correction`'s
    ``C = 2 V K Vᵀ``, ``K = Vᵀ sym(Qᵀ G S⁻¹) V ⊘ (sᵢ + sⱼ)``, finite even for repeated singular values.
    """

    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:
        basis, roots, inverse_root = _inverse_root(w.mT @ w)
        q = w @ inverse_root
        ctx.save_for_backward(w, q, basis, roots, inverse_root)
        return q

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        w, q, basis, roots, inverse_root = ctx.saved_tensors
        grad_s = grad @ inverse_root
        return grad_s - w @ _polar_correction(q.mT @ grad_s, basis, roots)


def _inverse_root(gram: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(V, s, S⁻¹)`` for the SPD ``gram = V diag(s²) Vᵀ = S²``, from a float64 eigendecomposition, in ``gram``'s dtype."""
    squares, basis = torch.linalg.eigh(gram.to(torch.promote_types(gram.dtype, torch.float64)))
    roots = squares.sqrt()
    inverse_root = (basis / roots.unsqueeze(-2)) @ basis.mT
    return basis.to(gram.dtype), roots.to(gram.dtype), inverse_root.to(gram.dtype)


def _polar_correction(m: Tensor, basis: Tensor, roots: Tensor) -> Tensor:
    """``2 V K Vᵀ`` with ``K = Vᵀ sym(M) V ⊘ (sᵢ + sⱼ)``: the narrow part of the polar factor's backward."""
    return basis @ ((basis.mT @ (m + m.mT) @ basis) / (roots.unsqueeze(-1) + roots.unsqueeze(-2))) @ basis.mT


@_without_autocast
def cholesky_qr(weight: Tensor, tol: float | None = None) -> Tensor:
    """Orthonormalize each matrix of a stack ``(..., m, n)`` by Cholesky QR; differentiable.

    ``Q = W L⁻ᵀ`` where ``L Lᵀ = WᵀW``: the ``Q`` of the QR decomposition ``W = Q R`` with
    ``R = Lᵀ`` (positive diagonal), so Gram–Schmidt's orthonormalization of the columns. Wide
    matrices get orthonormal rows. Float32 loses orthogonality ∝ cond(W)², so while the measured
    ``‖QᵀQ − I‖`` exceeds ``tol`` (default ``64·eps``) another pass orthonormalizes ``Q`` again
    (CholeskyQR2, at most three passes: :func:`_cholesky_qr2`); an input that still fails
    (cond(W) ≳ 1/eps, or rank deficient) goes to :func:`bjorck`. The backward is closed form (:class:`_CholeskyQR`).
    """
    if weight.numel() == 0:
        return weight
    tol = _default_tol(weight) if tol is None else tol
    wide = weight.shape[-2] < weight.shape[-1]
    w = weight.mT if wide else weight
    q, converged = _CholeskyQR.apply(w, tol)
    if not converged:
        q = bjorck(w, scaling="frobenius")
    return q.mT if wide else q


def _cholesky_qr2(weight: Tensor, tol: float) -> tuple[Tensor, Tensor, bool]:
    """``(Q, L, converged)`` with ``W = Q Lᵀ``, ``L`` lower triangular: Cholesky QR, repeated while needed.

    A result whose measured ``‖QᵀQ − I‖`` is within ``tol`` is done. Otherwise another pass
    repairs the loss of orthogonality ∝ cond(W)² (CholeskyQR2, Yamamoto et al. 2015); the result
    of a pass whose input deviated by at most :data:`_TRUSTED_DEVIATION` (cond ≤ 1.1) is
    orthonormal to working precision and accepted without measuring it again. A NaN (a pass broke
    down) or a third pass still not trusted is not converged.
    """
    basis, factor = _cholesky_qr_pass(weight)
    for _ in range(_EXTRA_PASSES):
        deviation = _orthonormality_error(basis)
        if deviation <= tol:
            return basis, factor, True
        if deviation != deviation:  # NaN
            break
        basis, second = _cholesky_qr_pass(basis)
        factor = factor @ second  # W = Q₁L₁ᵀ = Q₂ (L₁L₂)ᵀ
        if deviation <= _TRUSTED_DEVIATION:
            return basis, factor, True
    return basis, factor, False


def _cholesky_qr_pass(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(Q, L)`` with ``W = Q Lᵀ``, ``L`` the lower Cholesky factor of ``WᵀW``."""
    factor, _ = torch.linalg.cholesky_ex(weight.mT @ weight)
    return torch.linalg.solve_triangular(factor.mT, weight, upper=True, left=False), factor


class _CholeskyQR(torch.autograd.Function):
    """``Q = W L⁻ᵀ`` for tall ``W = Q Lᵀ`` of full rank, and whether it converged.

    Backward: with ``R = Lᵀ``, ``dQ = (I − QQᵀ) dW R⁻¹ + Q C`` where ``C = Qᵀ dQ`` is the skew matrix
    whose strictly lower part is that of ``Qᵀ dW R⁻¹``. Pairing with ``G = ∇Q`` gives
    ``∇W = (G − Q X) L⁻¹``, ``X`` the symmetric matrix with the upper triangle of ``B = QᵀG``.
    """

    @staticmethod
    def forward(ctx, w: Tensor, tol: float) -> tuple[Tensor, bool]:
        q, factor, converged = _cholesky_qr2(w, tol)
        ctx.save_for_backward(q, factor)
        return q, converged

    @staticmethod
    def backward(ctx, grad: Tensor, _converged) -> tuple[Tensor, None]:
        q, factor = ctx.saved_tensors
        x = _symmetric_from_upper(q.mT @ grad)
        return torch.linalg.solve_triangular(factor, grad - q @ x, upper=False, left=False), None


def _symmetric_from_upper(b: Tensor) -> Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is that of ``b``."""
    return b.triu() + b.triu(1).mT


class NarrowFactor:
    """The ``n × n`` matrix ``T`` that makes the tall side ``W_t`` of a weight orthonormal, ``Q_t = W_t T``.

    Applied from the right only: :meth:`times` is ``M T``, :meth:`times_transposed` ``M Tᵀ``.
    ``T = L⁻ᵀ`` (Cholesky QR, by triangular solves: faster than forming ``L⁻¹``) or a dense
    symmetric ``S⁻¹`` (polar).
    """

    def __init__(self, matrix: Tensor, lower_triangular_inverse: bool) -> None:
        self.matrix = matrix  # L, or T itself
        self.lower_triangular_inverse = lower_triangular_inverse

    def times(self, m: Tensor) -> Tensor:
        if self.lower_triangular_inverse:  # M L⁻ᵀ
            return torch.linalg.solve_triangular(self.matrix.mT, m, upper=True, left=False)
        return m @ self.matrix

    def times_transposed(self, m: Tensor) -> Tensor:
        if self.lower_triangular_inverse:  # M L⁻¹
            return torch.linalg.solve_triangular(self.matrix, m, upper=False, left=False)
        return m @ self.matrix.mT

    def double(self) -> NarrowFactor:
        return NarrowFactor(self.matrix.double(), self.lower_triangular_inverse)


@_without_autocast
def cholesky_qr_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, tol: float | None = None) -> Tensor:
    """``F.linear(x, cholesky_qr(weight), bias)``, without forming the orthonormal matrix; differentiable.

    The tall side of ``W`` (``W`` or ``Wᵀ``) times ``T = L⁻ᵀ``, ``L Lᵀ`` its Gram matrix, is
    :func:`cholesky_qr`'s basis, so the layer is ``y = (x Wᵀ) T`` (wide ``W``) or ``(x Tᵀ) Wᵀ``
    (tall or square): :class:`_NarrowTransformLinear`, two of the five ``O(mn²)`` products of
    :func:`cholesky_qr` and its backward. Same map, same gradients. When one pass is not
    orthonormal to ``tol`` (default ``64·eps``; a badly conditioned ``W``) this is
    :func:`cholesky_qr`'s explicit form, which repeats the pass. Under autocast it runs in ``W``'s dtype.
    """
    tall = _tall_side(weight)
    tol = _default_tol(weight) if tol is None else tol
    with torch.no_grad():
        lower, info = torch.linalg.cholesky_ex(tall.mT @ tall)
    factor = NarrowFactor(lower, lower_triangular_inverse=True)

    def correction(b: Tensor) -> Tensor:  # L⁻ᵀ X L⁻¹: (X L⁻¹)ᵀ = L⁻ᵀX, then · L⁻¹
        return factor.times_transposed(factor.times_transposed(_symmetric_from_upper(b)).mT)

    usable = int(info) == 0 and _orthonormality_error(tall, factor) <= tol
    return _narrow_transform_linear(x, weight, bias, factor, correction) if usable else \
        torch.nn.functional.linear(x.to(weight.dtype), cholesky_qr(weight, tol), bias)


@_without_autocast
def polar_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, tol: float | None = None) -> Tensor:
    """``F.linear(x, polar(weight), bias)``, without forming the orthonormal matrix; differentiable.

    As :func:`cholesky_qr_linear` with ``T = S⁻¹``, ``S = (W_tᵀW_t)^{1/2}`` from the float64
    eigendecomposition ``V diag(s²) Vᵀ`` of the tall side's Gram matrix, and :class:`_PolarFactor`'s
    backward (:func:`_polar_correction` of ``B S⁻¹``). A result that is not
    orthonormal to ``tol`` (badly conditioned or rank deficient) is :func:`polar`'s explicit form.
    """
    tall = _tall_side(weight)
    tol = _default_tol(weight) if tol is None else tol
    with torch.no_grad():
        basis, roots, inverse_root = _inverse_root(tall.mT @ tall)
    factor = NarrowFactor(inverse_root, lower_triangular_inverse=False)

    def correction(b: Tensor) -> Tensor:  # _PolarFactor's, with Qᵀ G S⁻¹ = B S⁻¹
        return _polar_correction(b @ inverse_root, basis, roots)

    usable = _orthonormality_error(tall, factor) <= tol  # False for NaN (rank deficient)
    return _narrow_transform_linear(x, weight, bias, factor, correction) if usable else \
        torch.nn.functional.linear(x.to(weight.dtype), polar(weight, tol), bias)


def _tall_side(weight: Tensor) -> Tensor:
    """``W`` if it is tall or square, else ``Wᵀ``: the orthogonalizers' convention."""
    if weight.ndim != 2:
        raise ValueError(f"a linear weight must be (out_features, in_features); got {tuple(weight.shape)}")
    return weight.mT if weight.shape[0] < weight.shape[1] else weight


def _narrow_transform_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None, factor: NarrowFactor, correction: Callable[[Tensor], Tensor]
) -> Tensor:
    flat = x.to(weight.dtype).reshape(-1, weight.shape[1])
    y = _NarrowTransformLinear.apply(flat, weight, factor, correction).reshape(*x.shape[:-1], weight.shape[0])
    return y if bias is None else y + bias


class _NarrowTransformLinear(torch.autograd.Function):
    """``y = x Qᵀ`` for the basis ``Q`` whose tall side is ``W_t T``, given the :class:`NarrowFactor` ``T``.

    ``T`` is a function of ``W`` (``L⁻ᵀ`` or ``S⁻¹``), not an input: the orthogonalizer's backward,
    ``∇W_t = G T − W_t C(B)`` with ``G = ∇(W_t T)`` and ``B = (W_t T)ᵀ G``, is carried out with
    ``G = ∇yᵀ x`` (tall) or ``xᵀ∇y`` (wide) never formed: ``B`` is the narrow ``(∇x)ᵀ x`` (tall) or
    ``ŷᵀ ∇y`` (wide, ``ŷ = x Qᵀ``), and ``correction`` maps it to ``C``, so only ``C`` meets ``W``:
    ``∇W = ∇yᵀ (x Tᵀ) − W C`` (tall), ``(∇y Tᵀ)ᵀ x − C W`` (wide). The batch products are a plain
    linear layer's.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, factor: NarrowFactor, correction: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.wide = weight.shape[0] < weight.shape[1]
        ctx.factor, ctx.correction = factor, correction
        if ctx.wide:
            y = factor.times(x @ weight.mT)
            ctx.save_for_backward(x, weight, y)
        else:
            whitened = factor.times_transposed(x)
            y = whitened @ weight.mT
            ctx.save_for_backward(x, weight, whitened)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor, None, None]:
        with _autocast_off(grad.device.type):  # in the forward's precision (a backward may run under autocast)
            return _NarrowTransformLinear._gradients(ctx, grad)

    @staticmethod
    def _gradients(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor, None, None]:
        x, weight, saved = ctx.saved_tensors
        if ctx.wide:
            pulled = ctx.factor.times_transposed(grad)
            grad_x = pulled @ weight if ctx.needs_input_grad[0] else None
            grad_weight = (pulled.mT @ x).addmm_(ctx.correction(saved.mT @ grad), weight, alpha=-1)
            return grad_x, grad_weight, None, None
        grad_x = ctx.factor.times(grad @ weight)
        grad_weight = (grad.mT @ saved).addmm_(weight, ctx.correction(grad_x.mT @ x), alpha=-1)
        return grad_x, grad_weight, None, None


@_without_autocast
def orthogonal_projector(weight: Tensor, tol: float | None = None) -> Tensor:
    """``P = W (WᵀW)⁻¹ Wᵀ``, the orthogonal projector onto the column space of each tall ``(..., m, r)`` ``W``.

    ``P = Q Qᵀ`` for every orthonormal basis ``Q`` of that space, so this is the projector BCOP's
    Algorithm 1 builds from the Björck-orthonormalized ``W``, whichever orthogonalizer is used;
    computed from a Cholesky QR basis (:func:`cholesky_qr`'s passes, :func:`bjorck` if they fail)
    with a closed-form backward: ``∇W = 2 (I − P) sym(∇P) W (WᵀW)⁻¹``.
    """
    if weight.shape[-2] < weight.shape[-1]:
        raise ValueError(f"orthogonal_projector: weight must be tall (..., m, r) with r <= m; got {tuple(weight.shape)}")
    if weight.numel() == 0:
        return weight @ weight.mT
    tol = _default_tol(weight) if tol is None else tol
    projector, converged = _OrthogonalProjector.apply(weight, tol)
    if converged:
        return projector
    basis = bjorck(weight, scaling="frobenius")
    return basis @ basis.mT


class _OrthogonalProjector(torch.autograd.Function):
    """``P = Q Qᵀ`` from the Cholesky QR basis ``Q = W L⁻ᵀ``, and whether that basis converged.

    ``dP = (I − P) dW W⁺ + (…)ᵀ`` with ``W⁺ᵀ = W (WᵀW)⁻¹ = Q L⁻¹``, so
    ``∇W = 2 (S Q − Q (Qᵀ S Q)) L⁻¹`` with ``S = sym(∇P)``.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, tol: float) -> tuple[Tensor, bool]:
        basis, factor, converged = _cholesky_qr2(weight, tol)
        ctx.save_for_backward(basis, factor)
        return basis @ basis.mT, converged

    @staticmethod
    def backward(ctx, grad: Tensor, _converged) -> tuple[Tensor, None]:
        basis, factor = ctx.saved_tensors
        pulled = (grad + grad.mT) @ basis  # 2 S Q
        pulled = pulled - basis @ (basis.mT @ pulled)
        return torch.linalg.solve_triangular(factor, pulled, upper=False, left=False), None


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


ORTHOGONALIZERS: dict[str, Orthogonalizer] = {"cholesky": cholesky_qr, "polar": polar, "bjorck": bjorck}
"""The named orthogonalizers (see the module docstring); the first is the default."""

DEFAULT_ORTHOGONALIZER = "cholesky"

LINEAR_FORMS: dict[Orthogonalizer, Callable[..., Tensor]] = {cholesky_qr: cholesky_qr_linear, polar: polar_linear}
"""Orthogonalizers whose layer ``F.linear(x, orthogonalizer(W), b)`` has an exact form that never forms the weight."""


def resolve_orthogonalizer(choice: OrthogonalizerChoice) -> Orthogonalizer:
    """The function for a name of :data:`ORTHOGONALIZERS`, or ``choice`` itself if it is callable."""
    if callable(choice):
        return choice
    return ORTHOGONALIZERS[require_choice("orthogonalizer", choice, tuple(ORTHOGONALIZERS))]
