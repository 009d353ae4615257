"""Residual connections and the channel padding that widens a residual network's input."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lipnb._validation import require_positive_int


class Residual(nn.Module):
    """``x ↦ x + branch(x)``: Lipschitz with constant at most ``1 + Lip(branch)`` (triangle inequality)."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


class ChannelPadding(nn.Module):
    """Appends zero channels up to ``channels``: ``(C, H, W) → (channels, H, W)``, an isometry (every σ is 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] > self.channels:
            raise ValueError(
                f"ChannelPadding({self.channels}) pads (batch, channels, ...) inputs with at most {self.channels} "
                f"channels; got {tuple(x.shape)}"
            )
        return F.pad(x, (0, 0) * (x.dim() - 2) + (0, self.channels - x.shape[1]))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
