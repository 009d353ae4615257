"""Nearest-neighbour upsampling: ``s`` times an isometry, so exactly ``s``-Lipschitz in L2."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lipnb._validation import require_positive_int


class NearestUpsampling(nn.Module):
    """Repeats every pixel into a ``factor × factor`` block: ``(C, H, W) → (C, H·f, W·f)``.

    Each input pixel appears ``f²`` times, so ``‖U x‖ = f ‖x‖`` for every ``x``: all singular values
    equal ``f``. A critic that resizes its input this way is ``f`` times as Lipschitz as its
    layers say (the reference code's CIFAR critic was 2-Lipschitz for this reason);
    :func:`lipnb.lipschitz_bound` counts it.
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = require_positive_int("factor", factor)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"NearestUpsampling expects a (batch, channels, height, width) input; got {tuple(x.shape)}")
        if self.factor == 1:
            return x
        return F.interpolate(x, scale_factor=self.factor, mode="nearest")

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
