"""The topology of orthogonal convolutions, computed (BCOP paper, Li et al. 2019, Sec. 3).

Conventions: a kernel is ``(out, in, k₁[, k₂])`` and its symbol is the matrix polynomial
``W(z) = Σ_a K[:, :, a] z^a`` (1-D) or ``W(z₁, z₂) = Σ_{a,b} K[:, :, a, b] z₁^a z₂^b`` (2-D), ``z`` a
one-step delay, so composing convolutions multiplies symbols. A BCOP factor is ``P + (I − P) z``
(the 2-tap kernel ``[P, I − P]``, ``P`` a symmetric projector), applied after ``H``:
``W = F_last ⋯ F_1 · H``, factor 0 vertical (``z₁``), 1 horizontal (``z₂``), 2 vertical, …
as in :class:`lipnb.layers.BCOPConv2d`.

Everything here is float64. The invariants are read off the kernel alone: an orthogonal
convolution has ``det W = ±z^d`` (a ±1 monomial), and ``(sign, d)`` cannot change along a
continuous path of orthogonal kernels, which is why the components can be counted numerically.
This module computes only; :mod:`lipnb.topology_plots` draws the figures from it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lipnb.circulant import circular_conv2d
from lipnb.orthogonal import symmetric_projector

DTYPE = torch.float64
_RAW_BJORCK_ITERS = 100  # generous: early stopping makes extra iterations free for tame inputs


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _f64(tensor: Tensor) -> Tensor:
    return torch.as_tensor(tensor).to(DTYPE)


def _square(name: str, matrix: Tensor) -> Tensor:
    matrix = _f64(matrix)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square matrix; got shape {tuple(matrix.shape)}")
    return matrix


def rank1_projector(theta: float) -> Tensor:
    """``u uᵀ`` with ``u = (cos θ, sin θ)``: the 2-channel rank-1 projectors, one circle's worth."""
    u = torch.tensor([math.cos(theta), math.sin(theta)], dtype=DTYPE)
    return torch.outer(u, u)


def _haar(shape: tuple[int, ...], n: int, generator: torch.Generator | None) -> Tensor:
    """Haar-random orthogonal matrices, shape ``(*shape, n, n)``."""
    q, r = torch.linalg.qr(torch.randn(*shape, n, n, dtype=DTYPE, generator=generator))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # QR's sign convention removed


def _with_determinant(q: Tensor, signs: Tensor) -> Tensor:
    """Flip the first column of each orthogonal ``q`` whose determinant is not ``signs`` (±1)."""
    flip = torch.where(torch.linalg.det(q) * signs < 0, -1.0, 1.0).to(DTYPE)
    return torch.cat([q[..., :1] * flip[..., None, None], q[..., 1:]], dim=-1)


def _projectors_from(q: Tensor, ranks: Tensor) -> Tensor:
    """``Q_r Q_rᵀ`` from the first ``ranks`` columns of each orthogonal ``q``."""
    keep = (torch.arange(q.shape[-1]) < ranks[..., None]).to(DTYPE)
    return (q * keep.unsqueeze(-2)) @ q.mT


def random_orthogonal(n: int, sign: int, generator: torch.Generator | None = None) -> Tensor:
    """Haar-random ``n × n`` orthogonal matrix with ``det = sign`` (±1)."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1; got {sign!r}")
    return _with_determinant(_haar((), n, generator), torch.tensor(float(sign), dtype=DTYPE))


def random_projector(n: int, rank: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniformly random symmetric projector of the given rank (0 ≤ rank ≤ n)."""
    if not 0 <= rank <= n:
        raise ValueError(f"rank must be in 0..{n}; got {rank}")
    return _projectors_from(_haar((), n, generator), torch.tensor(rank))


def circular_conv1d(x: Tensor, kernel: Tensor) -> Tensor:
    """``y[:, t] = Σ_a K[:, :, a] x[:, t − a]`` (indices mod the length) for ``x`` of shape ``(…, in, L)``.

    The convolution whose symbol is ``W(z) = Σ_a K_a z^a`` with ``z`` a one-step circular delay.
    """
    x, kernel = _f64(x), _f64(kernel)
    return sum(kernel[:, :, a] @ torch.roll(x, a, dims=-1) for a in range(kernel.shape[-1]))


# ---------------------------------------------------------------------------------------------
# 𝐏(n): symmetric projectors, one connected component per rank
# ---------------------------------------------------------------------------------------------


def projector_rank(p: Tensor, tol: float = 1e-8) -> int:
    """Rank of a symmetric projector, from the matrix alone (rounded trace).

    Raises ``ValueError`` unless ``‖P − Pᵀ‖`` and ``‖P² − P‖`` (max entry) are within ``tol``.
    """
    p = _square("p", p)
    asymmetry = float((p - p.T).abs().max())
    idempotency = float((p @ p - p).abs().max())
    if asymmetry > tol or idempotency > tol:
        raise ValueError(
            f"not a symmetric projector: max|P − Pᵀ| = {asymmetry:.2e}, max|P² − P| = {idempotency:.2e} "
            f"(tol {tol:.0e})"
        )
    return round(float(torch.trace(p)))


def rank_along_path(raw_start: Tensor, raw_end: Tensor, steps: int) -> list[int]:
    """Ranks of ``symmetric_projector`` along the straight path between two ``(n, r)`` parameters.

    The parameterization ``P = R Rᵀ``, ``R = Björck(raw)`` only reaches rank ``r``: every
    continuous path in parameter space stays in one component of 𝐏(n) (Sec. 3.1). A straight
    path avoids rank-deficient ``raw`` generically when ``r < n`` (they have codimension ≥ 2).
    """
    raw_start, raw_end = _f64(raw_start), _f64(raw_end)
    if raw_start.shape != raw_end.shape or raw_start.dim() != 2:
        raise ValueError(f"raw_start and raw_end must be (n, r) of one shape; got {raw_start.shape}, {raw_end.shape}")
    t = torch.linspace(0, 1, steps, dtype=DTYPE)[:, None, None]
    projectors = symmetric_projector((1 - t) * raw_start + t * raw_end, iters=_RAW_BJORCK_ITERS)
    return [projector_rank(p) for p in projectors]


def distance_to_projectors_along_segment(p0: Tensor, p1: Tensor, steps: int) -> Tensor:
    """``‖P(t)² − P(t)‖_F`` on the matrix segment ``P(t) = (1 − t) P₀ + t P₁``, ``steps`` points.

    ``P(t)`` is symmetric, so this vanishes exactly where ``P(t)`` is a projector. For ranks
    ``rank P₀ ≠ rank P₁`` it is positive for every ``0 < t < 1``: the segment leaves 𝐏(n), as any
    path between two components must.
    """
    rank0, rank1 = projector_rank(p0), projector_rank(p1)
    if rank0 == rank1:
        raise ValueError(f"p0 and p1 must have different ranks; both have rank {rank0}")
    t = torch.linspace(0, 1, steps, dtype=DTYPE)[:, None, None]
    segment = (1 - t) * _f64(p0) + t * _f64(p1)
    return torch.linalg.matrix_norm(segment @ segment - segment)


# ---------------------------------------------------------------------------------------------
# Symbols, determinants, invariants
# ---------------------------------------------------------------------------------------------


def _times_factor(kernel: Tensor, p: Tensor, spatial: int, axis: int) -> Tensor:
    """Symbol ``(P + (I − P) z)·W`` along tap axis ``axis``: new tap ``t`` is ``P K_t + (I − P) K_{t−1}``.

    ``kernel`` is ``(…, n, m, taps…)`` with ``spatial`` tap dimensions, ``p`` is ``(…, n, n)``.
    """
    dim = kernel.dim() - spatial + axis
    shape = list(kernel.shape)
    shape[dim] = 1
    zeros = kernel.new_zeros(shape)
    current, previous = torch.cat([kernel, zeros], dim), torch.cat([zeros, kernel], dim)
    taps = "tu"[:spatial]
    equation = f"...ij,...jk{taps}->...ik{taps}"
    complement = torch.eye(p.shape[-1], dtype=DTYPE) - p
    return torch.einsum(equation, p, current) + torch.einsum(equation, complement, previous)


def _bcop_kernel(h: Tensor, projectors: list[Tensor], spatial: int) -> Tensor:
    """Kernel of ``H □ F₁ □ F₂ □ ⋯`` (symbol ``⋯ F₂ F₁ H``), factor ``i`` along tap axis ``i mod spatial``."""
    kernel = h[(..., *[None] * spatial)]
    for index, p in enumerate(projectors):
        kernel = _times_factor(kernel, p, spatial, index % spatial)
    return kernel


def _check_kernel(kernel: Tensor, spatial: int) -> Tensor:
    kernel = _f64(kernel)
    if kernel.dim() != 2 + spatial or kernel.shape[0] != kernel.shape[1]:
        taps = ", ".join(["k"] * spatial)
        raise ValueError(f"expected a square-channel kernel (n, n, {taps}); got {tuple(kernel.shape)}")
    return kernel


def _symbol_determinant(kernel: Tensor, spatial: int) -> Tensor:
    """Coefficients of ``det W`` for kernels ``(…, n, n, taps…)``: values on roots of unity, inverse FFT."""
    n = kernel.shape[-1 - spatial]
    dims = tuple(range(-spatial, 0))
    # deg det W ≤ n(k − 1) per variable: that many + 1 points fix every coefficient, no aliasing
    sizes = [n * (kernel.shape[d] - 1) + 1 for d in dims]
    transfer = torch.fft.fftn(kernel, s=sizes, dim=dims)  # W at z = e^{−2πij/N}
    values = torch.linalg.det(transfer.movedim((-2 - spatial, -1 - spatial), (-2, -1)))
    return torch.fft.ifftn(values, dim=dims).real  # real kernel: the imaginary parts are rounding


def symbol_determinant_1d(kernel: Tensor) -> Tensor:
    """Coefficients ``c_d`` of ``det W(z) = Σ_d c_d z^d`` for a 1-D ``(n, n, K)`` kernel (length ``n(K−1)+1``)."""
    return _symbol_determinant(_check_kernel(kernel, 1), 1)


def symbol_determinant_2d(kernel: Tensor) -> Tensor:
    """Coefficients ``c[d₁, d₂]`` of ``det W(z₁, z₂)`` for a 2-D ``(n, n, k₁, k₂)`` kernel."""
    return _symbol_determinant(_check_kernel(kernel, 2), 2)


def _orthogonality_defect(kernel: Tensor, spatial: int) -> Tensor:
    """``max |W(z)ᴴ W(z) − I|`` over the unit circle (torus) for kernels ``(…, n, m, taps…)``.

    ``W(z)ᴴ W(z)`` is a Laurent polynomial with lags ``−(k−1)..k−1`` per variable, so ``2k − 1`` roots
    of unity per variable check it everywhere: zero iff the convolution is orthogonal at every size.
    """
    dims = tuple(range(-spatial, 0))
    transfer = torch.fft.fftn(kernel, s=[2 * kernel.shape[d] - 1 for d in dims], dim=dims)
    transfer = transfer.movedim((-2 - spatial, -1 - spatial), (-2, -1))
    eye = torch.eye(transfer.shape[-1], dtype=transfer.dtype)
    return (transfer.mH @ transfer - eye).abs().flatten(-2 - spatial).amax(-1)


def _invariants(kernel: Tensor, spatial: int, tol: float) -> list[tuple[int, ...]]:
    """``(sign, d₁[, d₂])``, ``det W = sign · z₁^{d₁} [z₂^{d₂}]``, for each kernel of a batch ``(…, n, n, taps…)``.

    Raises ``ValueError`` if a convolution is not orthogonal or its ``det W`` is not a ±1 monomial.
    """
    defect = _orthogonality_defect(kernel, spatial).reshape(-1)
    if (defect > tol).any():
        worst = float(defect.max())
        raise ValueError(f"not an orthogonal convolution: max|W(z)ᴴW(z) − I| = {worst:.2e} on the unit circle")
    coefficients = _symbol_determinant(kernel, spatial)
    sizes = coefficients.shape[-spatial:]
    coefficients = coefficients.reshape(-1, math.prod(sizes))
    support = (coefficients.abs() > tol).sum(-1)
    if (support != 1).any():
        raise ValueError(f"det W is not a monomial: {int(support.max())} coefficients exceed {tol:.0e}")
    flat = coefficients.abs().argmax(-1)
    values = coefficients.gather(-1, flat[:, None]).squeeze(-1)
    if ((values.abs() - 1).abs() > tol).any():
        raise ValueError(f"det W is a monomial with coefficient {float(values[0]):.6g}, not ±1")
    degrees = []
    for size in reversed(sizes):  # unravel the flat index, last variable fastest
        degrees.insert(0, flat % size)
        flat = flat // size
    signs = torch.where(values > 0, 1, -1)
    return [tuple(row) for row in torch.stack([signs, *degrees], dim=-1).tolist()]


def invariant_1d(kernel: Tensor, tol: float = 1e-6) -> tuple[int, int]:
    """Theorem 1's invariant ``(sign, d)`` of an orthogonal 1-D convolution, ``det W(z) = sign · z^d``.

    Computed from the kernel alone. Raises ``ValueError`` if the convolution is not orthogonal or
    ``det W`` is not a ±1 monomial. For ``H □ [P₁, I−P₁] □ ⋯``: ``sign = det H`` and
    ``d = Σ (n − rank Pᵢ)``.
    """
    return _invariants(_check_kernel(kernel, 1), 1, tol)[0]  # type: ignore[return-value]


def invariant_2d(kernel: Tensor, tol: float = 1e-6) -> tuple[int, int, int]:
    """``(sign, d₁, d₂)``, ``det W(z₁, z₂) = sign · z₁^{d₁} z₂^{d₂}``, of an orthogonal 2-D convolution."""
    return _invariants(_check_kernel(kernel, 2), 2, tol)[0]  # type: ignore[return-value]


def invariant_2x2(kernel: Tensor, tol: float = 1e-6) -> tuple[int, int, int]:
    """Theorem 2's invariant ``(sign, rank P, rank Q)`` of an orthogonal 2×2 convolution, from the kernel alone.

    ``det W(z₁, z₂) = sign · z₁^{n − rank P} z₂^{n − rank Q}`` for ``H □ [P; I−P] □ [Q, I−Q]``.
    """
    kernel = _f64(kernel)
    if kernel.dim() != 4 or kernel.shape[-2:] != (2, 2):
        raise ValueError(f"invariant_2x2 expects an (n, n, 2, 2) kernel; got {tuple(kernel.shape)}")
    sign, d1, d2 = invariant_2d(kernel, tol)
    n = kernel.shape[0]
    return sign, n - d1, n - d2


# ---------------------------------------------------------------------------------------------
# Theorem 1: 1-D orthogonal convolutions have 2((K−1)n + 1) components
# ---------------------------------------------------------------------------------------------


def bcop_kernel_1d(h: Tensor, projectors: list[Tensor]) -> Tensor:
    """``(n, n, K)`` kernel of ``H □ [P₁, I−P₁] □ ⋯ □ [P_{K−1}, I−P_{K−1}]`` (symbol ``F_{K−1}⋯F_1 H``)."""
    return _bcop_kernel(_square("h", h), [_square("projector", p) for p in projectors], spatial=1)


def random_bcop_kernel_1d(
    n: int, kernel_size: int, ranks: list[int], sign: int, generator: torch.Generator | None = None
) -> Tensor:
    """Random 1-D BCOP kernel: ``kernel_size − 1`` projectors of the given ``ranks``, ``det H = sign``."""
    if len(ranks) != kernel_size - 1:
        raise ValueError(f"need kernel_size − 1 = {kernel_size - 1} ranks; got {len(ranks)}")
    h = random_orthogonal(n, sign, generator)
    return bcop_kernel_1d(h, [random_projector(n, r, generator) for r in ranks])


def _random_ranks_and_signs(
    n: int, samples: int, count: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(samples, count)`` ranks uniform in 0..n and ``(samples,)`` signs uniform in ±1."""
    ranks = torch.randint(0, n + 1, (samples, count), generator=generator)
    signs = torch.randint(0, 2, (samples,), generator=generator).to(DTYPE) * 2 - 1
    return ranks, signs


def _random_bcop_kernels(
    n: int, factors: int, spatial: int, samples: int, generator: torch.Generator | None
) -> Tensor:
    """A batch ``(samples, n, n, taps…)`` of random BCOP kernels.

    Each has ``factors`` projectors of ranks uniform in 0..n (factor ``i`` along tap axis
    ``i mod spatial``) and ``det H`` uniform in ±1.
    """
    ranks, signs = _random_ranks_and_signs(n, samples, factors, generator)
    h = _with_determinant(_haar((samples,), n, generator), signs)
    projectors = _projectors_from(_haar((samples, factors), n, generator), ranks)
    return _bcop_kernel(h, list(projectors.unbind(1)), spatial)


def count_components_1d(
    n: int, kernel_size: int, samples: int, generator: torch.Generator | None = None
) -> set[tuple[int, int]]:
    """Distinct invariants of ``samples`` random kernels (ranks uniform in 0..n, signs uniform).

    Theorem 1: at most ``2(K−1)n + 2`` values (``d ∈ 0..(K−1)n``, two signs), all reached.
    """
    return set(_invariants(_random_bcop_kernels(n, kernel_size - 1, 1, samples, generator), 1, tol=1e-6))


def theorem1_count_table(
    max_n: int = 4, max_kernel_size: int = 4, samples: int = 2000, generator: torch.Generator | None = None
) -> list[dict[str, int]]:
    """Expected and found component counts, one row per ``(n, K)``, ``n ≤ max_n``, ``2 ≤ K ≤ max_kernel_size``."""
    rows = []
    for n in range(1, max_n + 1):
        for k in range(2, max_kernel_size + 1):
            found = count_components_1d(n, k, samples, generator)
            rows.append({"n": n, "K": k, "expected": 2 * (k - 1) * n + 2, "found": len(found)})
    return rows


# ---------------------------------------------------------------------------------------------
# Theorem 2: 2×2 orthogonal convolutions have 2(n+1)² components
# ---------------------------------------------------------------------------------------------


def bcop_kernel_2d(h: Tensor, ps: list[Tensor], qs: list[Tensor]) -> Tensor:
    """``(n, n, k, k)`` kernel of ``H □ [P₁; I−P₁] □ [Q₁, I−Q₁] □ ⋯``, ``k − 1 = len(ps) = len(qs)``.

    Same factor order as :class:`lipnb.layers.BCOPConv2d`: symbol ``⋯ F_{Q₁}(z₂) F_{P₁}(z₁) H``.
    """
    if len(ps) != len(qs):
        raise ValueError(f"need as many vertical as horizontal projectors; got {len(ps)} and {len(qs)}")
    interleaved = [_square("projector", m) for pair in zip(ps, qs) for m in pair]
    return _bcop_kernel(_square("h", h), interleaved, spatial=2)


def bcop_kernel_2x2(h: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """``(n, n, 2, 2)`` kernel of ``H □ [P; I−P] □ [Q, I−Q]`` (Theorem 2)."""
    return bcop_kernel_2d(h, [p], [q])


def count_components_2x2(
    n: int, samples: int, generator: torch.Generator | None = None
) -> set[tuple[int, int, int]]:
    """Distinct ``invariant_2x2`` values of random 2×2 kernels; Theorem 2: ``2(n+1)²`` of them."""
    invariants = _invariants(_random_bcop_kernels(n, 2, 2, samples, generator), 2, tol=1e-6)
    return {(sign, n - d1, n - d2) for sign, d1, d2 in invariants}


# ---------------------------------------------------------------------------------------------
# Theorem 3: with 2n channels, one component holds every n-channel BCOP convolution
# ---------------------------------------------------------------------------------------------


def embed_in_double_channels(
    h: Tensor, projectors_p: list[Tensor], projectors_q: list[Tensor]
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Theorem 3: a 2n-channel BCOP convolution ``C'`` with ``C'(x)[:, :n] = C(x[:, :n])``.

    Every projector becomes ``blockdiag(P, R)``, ``R`` a coordinate projector of rank ``n − rank P``
    (so rank exactly ``n``), and ``H' = blockdiag(H, D)`` with ``det D = det H`` (so ``det H' = +1``):
    all embeddings share one invariant, i.e. lie in one connected component.
    """
    h = _square("h", h)
    n = h.shape[0]
    d = torch.eye(n, dtype=DTYPE)
    d[-1, -1] = torch.sign(torch.linalg.det(h))

    def lift(p: Tensor) -> Tensor:
        filler = torch.zeros(n, dtype=DTYPE)
        filler[: n - projector_rank(p)] = 1.0
        return torch.block_diag(_f64(p), torch.diag(filler))

    return torch.block_diag(h, d), [lift(p) for p in projectors_p], [lift(q) for q in projectors_q]


def theorem3_error(n: int, kernel_size: int, generator: torch.Generator | None = None) -> float:
    """``max |C'(x)[:, :n] − C(x[:, :n])|``: random BCOP ``C`` (ranks, sign), its embedding, random 2n-channel ``x``."""
    ranks, signs = _random_ranks_and_signs(n, 1, 2 * (kernel_size - 1), generator)
    h = random_orthogonal(n, int(signs[0]), generator)
    projectors = [random_projector(n, r, generator) for r in ranks[0].tolist()]
    ps, qs = projectors[0::2], projectors[1::2]
    h2, ps2, qs2 = embed_in_double_channels(h, ps, qs)
    x = torch.randn(2, 2 * n, 5, 6, dtype=DTYPE, generator=generator)
    small = circular_conv2d(x[:, :n], bcop_kernel_2d(h, ps, qs))
    large = circular_conv2d(x, bcop_kernel_2d(h2, ps2, qs2))
    return float((large[:, :n] - small).abs().max())


# ---------------------------------------------------------------------------------------------
# Figure 1 and the interactive view: 2-channel 1-D kernels [P₁, I − P₁] □ ⋯
# ---------------------------------------------------------------------------------------------


def explorer_projectors(theta: float, kernel_size: int, rank: int) -> list[Tensor]:
    """The ``kernel_size − 1`` 2-channel projectors of :func:`explorer_kernel`, all of rank ``rank``.

    Rank 1: ``Pᵢ = P(θ + (i − 1)π/4)``, ``i = 1, …, K − 1`` (:func:`rank1_projector`); rank 0 and 2:
    ``0`` and ``I``, as 𝐏(2)'s other components are points (Sec. 3.1).
    """
    if rank not in (0, 1, 2):
        raise ValueError(f"rank must be 0, 1 or 2; got {rank}")
    if kernel_size < 2:
        raise ValueError(f"kernel_size must be at least 2; got {kernel_size}")
    fixed = {0: torch.zeros(2, 2, dtype=DTYPE), 2: torch.eye(2, dtype=DTYPE)}
    angles = [theta + i * math.pi / 4 for i in range(kernel_size - 1)]
    return [rank1_projector(angle) if rank == 1 else fixed[rank] for angle in angles]


def explorer_kernel(theta: float, kernel_size: int, rank: int) -> Tensor:
    """2-channel ``(2, 2, K)`` kernel ``[P₁, I−P₁] □ ⋯`` (``H = I``) of :func:`explorer_projectors`.

    Theorem 1: its invariant is ``(+1, (K − 1)(2 − rank))`` whatever ``θ``.
    """
    return bcop_kernel_1d(torch.eye(2, dtype=DTYPE), explorer_projectors(theta, kernel_size, rank))


def figure1_data(theta: float = 0.0, kernel_size: int = 2, rank: int = 1) -> dict[str, Tensor]:
    """Figure 1 of the paper, at any explorer setting: a 2-channel input through :func:`explorer_kernel`.

    The defaults give the paper's example, the kernel ``[P, I − P]`` with ``P`` the projection onto
    the first channel: the output keeps channel 1 and delays channel 2 by one position
    (circularly), ``y[t] = P x[t] + (I − P) x[t − 1]``. In general ``y[t] = Σ_a K_a x[t − a]`` with
    the ``K`` taps of ``F_{K−1}(z) ⋯ F_1(z)``, ``F_i(z) = P_i + (I − P_i) z``. The input holds
    ``1, 2, …`` channel by channel on ``max(3, K)`` positions, so the taps shift by distinct amounts.

    Returns ``input`` ``(2, L)``, ``projectors`` ``(K − 1, 2, 2)``, ``kernel`` ``(2, 2, K)``, ``output`` ``(2, L)``.
    """
    projectors = explorer_projectors(theta, kernel_size, rank)
    kernel = explorer_kernel(theta, kernel_size, rank)
    positions = max(3, kernel_size)
    x = torch.arange(1, 2 * positions + 1, dtype=DTYPE).reshape(2, positions)  # channels × positions
    return {"input": x, "projectors": torch.stack(projectors), "kernel": kernel, "output": circular_conv1d(x, kernel)}
