"""AOL: almost-orthogonal layers (Prach & Lampert, ECCV 2022).

Theorem 1 of the paper: for any matrix ``P`` and the diagonal ``D`` with
``D_ii = (Σ_j |PᵀP|_ij)^(-1/2)``, ``‖P D‖₂ ≤ 1``. (Proof: for ``M = PᵀP``,
``xᵀDMDx ≤ Σ_ij |M_ij| |d_i x_i| |d_j x_j| ≤ Σ_i d_i² x_i² Σ_j |M_ij| = ‖x‖²`` by
``ab ≤ (a² + b²)/2``.) Theorem 2 is the convolutional version: the Gram operator ``AᵀA`` of a
convolution with kernel ``K`` is the convolution whose kernel is the autocorrelation
``(K ⋆ K)_ij(t) = Σ_o Σ_a K_oi(a) K_oj(a + t)`` (``2k − 1`` taps per dimension), so every row of
``AᵀA`` for input channel ``i`` sums in absolute value to at most ``Σ_j Σ_t |(K ⋆ K)_ij(t)|``
(exactly that on a grid of at least ``2k − 1``; wrapped-around or zero-padded rows sum fewer
terms), and scaling input channel ``i`` of ``K`` by that sum's ``-1/2`` power makes the circular
or zero-padded convolution 1-Lipschitz.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipnb.layers.conv import LipschitzConv2d
from lipnb.layers.parametrized import WeightMap, parametrize_weight

_EPS = 1e-12  # lower bound of the row sums: an all-zero input channel gets a zero, not NaN, column


class AOLConv2d(LipschitzConv2d):
    """Convolution with the AOL-rescaled kernel ``K·D`` (paper, Theorem 2): 1-Lipschitz for any ``K``.

    ``weight`` is the rescaled kernel; the trained tensor is ``parametrizations.weight.original``,
    the unconstrained kernel ``K`` of shape :attr:`kernel_shape`. It is initialized with an
    orthogonal ``(out, in·s²)`` matrix at the zero-offset tap and zeros elsewhere: then
    ``K ⋆ K`` is ``QᵀQ`` at offset 0 only, so for ``in·s² ≤ out`` it is the identity, ``D = I``
    and the layer starts as an exact isometry (otherwise σ ≤ 1, not all equal to 1), rather than
    the strong contraction AOL makes of a random (e.g. Kaiming) kernel with many correlated taps.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        out, cin, k, _ = self.kernel_shape
        kernel = torch.zeros(self.kernel_shape)
        center = (k - 1) // 2  # the tap that circular_conv2d's "same" padding puts at offset 0
        kernel[:, :, center, center] = nn.init.orthogonal_(torch.empty(out, cin))
        parametrize_weight(self, AOLKernel(), kernel)


class AOLKernel(WeightMap):
    """``K·D`` with ``D_ii = (Σ_j Σ_t |(K ⋆ K)_ij(t)|)^(-1/2)``, ``K ⋆ K`` the kernel's autocorrelation."""

    def compute(self, kernel: Tensor) -> Tensor:
        return kernel * aol_scales(kernel).view(1, -1, 1, 1)


def aol_scales(kernel: Tensor) -> Tensor:
    """The diagonal of ``D`` (one scale per input channel) for an ``(out, in, k, k)`` kernel.

    The autocorrelation ``(in, in, 2k−1, 2k−1)`` is one ``conv2d`` of the channel-transposed
    kernel with itself: batch ``i``, filter ``j``, offset ``t`` give ``Σ_o Σ_a K_oi(a + t) K_oj(a)``,
    i.e. ``(K ⋆ K)_ij(−t)``; the sum over all offsets is the same.
    """
    k1, k2 = kernel.shape[-2:]
    transposed = kernel.transpose(0, 1)
    autocorrelation = F.conv2d(transposed, transposed, padding=(k1 - 1, k2 - 1))
    return autocorrelation.abs().sum(dim=(1, 2, 3)).clamp_min(_EPS).rsqrt()
