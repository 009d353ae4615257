"""Invertible downsampling (Jacobsen et al. 2018): a pixel unshuffle, hence orthogonal."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lipnb._validation import require_positive_int


class InvertibleDownsampling(nn.Module):
    """Moves each ``factor × factor`` spatial block into channels: ``(C, H, W) → (C·f², H/f, W/f)``.

    A permutation of the input, so it preserves norms; the BCOP paper uses it with a stride-1 conv
    in place of a strided conv (Sec. 4.3).
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = require_positive_int("factor", factor)

    def forward(self, x: Tensor) -> Tensor:
        f = self.factor
        if x.dim() != 4 or x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"InvertibleDownsampling(factor={f}) needs a (batch, channels, height, width) input with "
                f"height and width divisible by {f}; got {tuple(x.shape)} (use a stride that divides the input size)"
            )
        return F.pixel_unshuffle(x, f)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
