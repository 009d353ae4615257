"""BCOP: Block Convolution Orthogonal Parameterization (Li et al. 2019, Algorithm 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipnb.layers.conv import LipschitzConv2d
from lipnb.layers.parametrized import Orthonormal, parametrize_weight
from lipnb.orthogonal import DEFAULT_ORTHOGONALIZER, OrthogonalizerChoice, bjorck, orthogonal_projector


class BCOPConv2d(LipschitzConv2d):
    """Orthogonal convolution: kernel = H □ [P₁; I−P₁] □ [Q₁, I−Q₁] □ … □ [P_{k−1}; I−P_{k−1}] □ [Q_{k−1}, I−Q_{k−1}].

    With ``n = max(in, out)`` (``in`` counted after downsampling), the ``2(k−1)`` projectors have
    rank ⌊n/2⌋ and ``H`` is an ``out × in`` semi-orthogonal matrix placed on the narrower side, so
    the operator is an isometry for ``in < out``, a co-isometry for ``in > out`` and orthogonal
    for ``in = out``. In symbol form (□ is a product of polynomials, Sec. 3.2) each 1-D factor is
    ``P + (I − P) z``. ``weight`` is the kernel; the trained tensors are
    ``parametrizations.weight.original`` (the unconstrained ``n × min(in, out)`` matrix that
    ``orthogonalizer`` maps to ``H``) and ``parametrizations.weight[0].projector_spans`` (the
    ``2(k−1)`` unconstrained ``n × ⌊n/2⌋`` matrices whose column spaces the projectors project onto).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        *,
        orthogonalizer: OrthogonalizerChoice = DEFAULT_ORTHOGONALIZER,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        n = max(self.conv_in_channels, out_channels)
        head = nn.init.orthogonal_(torch.empty(n, min(self.conv_in_channels, out_channels)))
        kernel = BCOPKernel(n, self.conv_kernel_size, transpose=self.conv_in_channels > out_channels,
                            orthogonalizer=orthogonalizer)
        parametrize_weight(self, kernel, head)


class BCOPKernel(Orthonormal):
    """The BCOP kernel from the unconstrained ``H`` (the original) and this module's ``projector_spans``.

    ``H`` goes through ``orthogonalizer``; each projector ``P = R (RᵀR)⁻¹ Rᵀ`` depends only on the
    span of ``R``, so it is the same for every orthogonalizer and computed exactly
    (:func:`~lipnb.orthogonal.orthogonal_projector`). ``orthogonalizer="bjorck"`` instead runs one
    batched Björck call on ``H`` and every ``R``, zero-padded to a common width, as the paper does.
    """

    def __init__(self, n: int, kernel_size: int, transpose: bool, orthogonalizer: OrthogonalizerChoice) -> None:
        super().__init__(orthogonalizer)
        self.transpose = transpose
        spans = torch.empty(2 * (kernel_size - 1), n, n // 2)
        for span in spans:
            nn.init.orthogonal_(span)
        self.projector_spans = nn.Parameter(spans)

    def compute(self, head: Tensor) -> Tensor:
        h, projectors = self._factors(head)
        kernel = h[:, None, None, :]  # symbol coefficients laid out (n, rows, cols, narrow) while they grow
        for index, projector in enumerate(projectors):
            kernel = _times_projector_factor(kernel, projector, vertical=index % 2 == 0)
        # the transposed symbol is a co-isometry; clone gives standard strides even with a size-1 dim
        order = (3, 0, 1, 2) if self.transpose else (0, 3, 1, 2)
        return kernel.permute(order).clone(memory_format=torch.contiguous_format)

    def _factors(self, head: Tensor) -> tuple[Tensor, Tensor]:
        """The semi-orthogonal ``H`` and the projectors of Algorithm 1."""
        spans = self.projector_spans
        if self.orthogonalizer != "bjorck":
            return super().compute(head), orthogonal_projector(spans)
        width = max(head.shape[-1], spans.shape[-1])
        stack = torch.cat([F.pad(head, (0, width - head.shape[-1]))[None], F.pad(spans, (0, width - spans.shape[-1]))])
        stack = bjorck(stack)
        bases = stack[1:, :, : spans.shape[-1]]
        return stack[0, :, : head.shape[-1]], bases @ bases.mT


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
