"""RKO: reshaped kernel orthogonalization (BCOP paper, Sec. 4.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipnb.layers.conv import LipschitzConv2d
from lipnb.layers.parametrized import Orthonormal, parametrize_weight
from lipnb.orthogonal import DEFAULT_ORTHOGONALIZER, OrthogonalizerChoice


class RKOConv2d(LipschitzConv2d):
    """Orthonormalizes the ``(out, in·k²)`` reshaped kernel and scales it by ``1/k``.

    A circular conv is that matrix applied to ``k²`` shifted copies of the input (norm ``k``),
    so the layer is 1-Lipschitz; it is generally not gradient-norm preserving. ``weight`` is the
    kernel; the trained tensor is ``parametrizations.weight.original``, the unconstrained reshaped
    kernel that ``orthogonalizer`` (see :mod:`lipnb.orthogonal`) maps to orthonormal rows or columns.
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
        out, cin, k, _ = self.kernel_shape
        matrix = nn.init.orthogonal_(torch.empty(out, cin * k * k))
        parametrize_weight(self, ReshapedKernel(self.kernel_shape, orthogonalizer), matrix)


class ReshapedKernel(Orthonormal):
    """``orthogonalize(M).reshape(kernel_shape) / k`` for the unconstrained ``(out, in·k²)`` matrix ``M``."""

    def __init__(self, kernel_shape: tuple[int, int, int, int], orthogonalizer: OrthogonalizerChoice) -> None:
        super().__init__(orthogonalizer)
        self.kernel_shape = kernel_shape

    def compute(self, matrix: Tensor) -> Tensor:
        return super().compute(matrix).reshape(self.kernel_shape) / self.kernel_shape[-1]
