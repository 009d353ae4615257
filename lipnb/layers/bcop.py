"""BCOP: Block Convolution Orthogonal Parameterization (Li et al. 2019, Algorithm 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipnb._validation import require_choice
from lipnb.layers.conv import LipschitzConv2d
from lipnb.orthogonal import bjorck, orthogonal_projector, polar

ORTHOGONALIZERS = ("polar", "bjorck")


class BCOPConv2d(LipschitzConv2d):
    """Orthogonal convolution: kernel = H □ [P₁; I−P₁] □ [Q₁, I−Q₁] □ … □ [P_{k−1}; I−P_{k−1}] □ [Q_{k−1}, I−Q_{k−1}].

    With ``n = max(in, out)`` (``in`` counted after downsampling), the ``2(k−1)`` projectors have
    rank ⌊n/2⌋ and ``H`` is an ``out × in`` semi-orthogonal matrix placed on the narrower side, so
    the operator is an isometry for ``in < out``, a co-isometry for ``in > out`` and orthogonal
    for ``in = out``. In symbol form (□ is a product of polynomials, Sec. 3.2) each 1-D factor is
    ``P + (I − P) z``. Only ``H`` (n × min(in, out)) and the projector bases ``R`` (n × ⌊n/2⌋,
    ``P = R Rᵀ``) are orthonormalized; ``orthogonalizer`` picks how (see :meth:`_orthogonal_factors`),
    both giving the same kernel to float precision. ``bjorck_iters`` and ``bjorck_tol`` configure
    ``orthogonalizer="bjorck"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        *,
        bjorck_iters: int = 20,
        bjorck_tol: float | None = None,
        orthogonalizer: str = "polar",
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        self.orthogonalizer = require_choice("orthogonalizer", orthogonalizer, ORTHOGONALIZERS)
        self.bjorck_iters = bjorck_iters
        self.bjorck_tol = bjorck_tol
        n = max(self.conv_in_channels, out_channels)
        narrow = min(self.conv_in_channels, out_channels)
        self.orthogonal = nn.Parameter(nn.init.orthogonal_(torch.empty(n, narrow)))
        projectors = torch.empty(2 * (self.conv_kernel_size - 1), n, n // 2)
        for basis in projectors:
            nn.init.orthogonal_(basis)
        self.projector_bases = nn.Parameter(projectors)

    def compute_weight(self) -> Tensor:
        h, projectors = self._orthogonal_factors()
        kernel = h[:, None, None, :]  # symbol coefficients laid out (n, rows, cols, narrow) while they grow
        for index, projector in enumerate(projectors):
            kernel = _times_projector_factor(kernel, projector, vertical=index % 2 == 0)
        # the transposed symbol is a co-isometry; clone gives standard strides even with a size-1 dim
        order = (3, 0, 1, 2) if self.conv_in_channels > self.out_channels else (0, 3, 1, 2)
        return kernel.permute(order).clone(memory_format=torch.contiguous_format)

    def _orthogonal_factors(self) -> tuple[Tensor, Tensor]:
        """The semi-orthogonal ``H`` and the projectors ``P = R Rᵀ`` of Algorithm 1, ``R`` orthonormalized.

        ``"polar"`` computes the exact limits of the Björck iteration: ``H``'s polar factor, and each
        projector as ``R (RᵀR)⁻¹ Rᵀ`` (it depends only on the span of ``R``), both with closed-form
        backwards. ``"bjorck"`` runs one batched Björck call on ``H`` and every ``R``, zero-padded to a
        common width, as the paper does.
        """
        h, bases = self.orthogonal, self.projector_bases
        if self.orthogonalizer == "polar":
            return polar(h), orthogonal_projector(bases)
        width = max(h.shape[-1], bases.shape[-1])
        stack = torch.cat([F.pad(h, (0, width - h.shape[-1]))[None], F.pad(bases, (0, width - bases.shape[-1]))])
        stack = bjorck(stack, iters=self.bjorck_iters, tol=self.bjorck_tol)
        bases = stack[1:, :, : bases.shape[-1]]
        return stack[0, :, : h.shape[-1]], bases @ bases.mT


def _times_projector_factor(kernel: Tensor, projector: Tensor, vertical: bool) -> Tensor:
    """Multiply a symbol ``(n, rows, cols, narrow)`` on the left by ``P + (I − P) z`` along the rows or columns.

    New tap ``t`` is ``P x[t] + (I − P) x[t−1]``: the projected taps shifted by nothing, the rest by one.
    """
    dim = 1 if vertical else 2
    projected = (projector @ kernel.flatten(1)).view_as(kernel)
    rest = kernel - projected
    if kernel.shape[dim] == 1:  # the first factor in each direction: a plain concatenation
        return torch.cat([projected, rest], dim)
    after, before = ((0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 1, 0)) if vertical else ((0, 0, 0, 1), (0, 0, 1, 0))
    return F.pad(projected, after) + F.pad(rest, before)
