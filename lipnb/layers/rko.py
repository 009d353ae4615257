"""RKO: reshaped kernel orthogonalization (BCOP paper, Sec. 4.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipnb.layers.conv import LipschitzConv2d
from lipnb.orthogonal import bjorck


class RKOConv2d(LipschitzConv2d):
    """Björck-orthonormalizes the ``(out, in·k²)`` reshaped kernel and scales it by ``1/k``.

    A circular conv is that matrix applied to ``k²`` shifted copies of the input (norm ``k``),
    so the layer is 1-Lipschitz; it is generally not gradient-norm preserving.
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
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        self.bjorck_iters = bjorck_iters
        self.bjorck_tol = bjorck_tol
        out, cin, k, _ = self.kernel_shape
        self.weight = nn.Parameter(nn.init.orthogonal_(torch.empty(out, cin * k * k)))

    def compute_weight(self) -> Tensor:
        matrix = bjorck(self.weight, iters=self.bjorck_iters, tol=self.bjorck_tol)
        return matrix.reshape(self.kernel_shape) / self.conv_kernel_size
