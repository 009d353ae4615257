"""SVCM: singular value clipping and masking (Sedghi, Gupta & Long 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipnb.circulant import clip_singular_values
from lipnb.layers.conv import LipschitzConv2d, default_conv_kernel


class SVCMConv2d(LipschitzConv2d):
    """An unconstrained kernel that :meth:`project` pulls back to ``σ_max ≤ 1``.

    Between projections the layer is unconstrained; the training loop projects every 100 steps
    and at the end of each epoch (BCOP paper, Sec. 5.1), so the bound holds right after a projection.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        self.weight = nn.Parameter(default_conv_kernel(self.kernel_shape))

    def compute_weight(self) -> Tensor:
        return self.weight

    @torch.no_grad()
    def project(self, rounds: int = 50, input_size: tuple[int, int] | None = None) -> None:
        """Clip the singular values at ``input_size`` (default: the last input's size) to ≤ 1."""
        size = input_size if input_size is not None else self.input_size
        if size is None:
            raise ValueError("SVCMConv2d.project needs input_size=(height, width) or a forward pass first")
        self.weight.copy_(clip_singular_values(self.weight, self.conv_input_size(size), rounds=rounds))
