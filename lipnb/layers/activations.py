"""Gradient-norm-preserving activations (Anil, Lucas & Grosse 2019): MaxMin and GroupSort.

Both act on dimension 1 (channels or features) and are permutations of their input almost
everywhere, so their Jacobian is orthogonal: 1-Lipschitz and gradient-norm preserving.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipnb._validation import require_positive_int


def _check_divisible(module: nn.Module, x: Tensor, group: int) -> None:
    if x.dim() < 2 or x.shape[1] % group:
        raise ValueError(
            f"{type(module).__name__} needs dimension 1 divisible by {group}; got input shape {tuple(x.shape)}"
        )


class MaxMin(nn.Module):
    """Splits the channels into halves ``a, b`` and returns ``[max(a, b), min(a, b)]``."""

    def forward(self, x: Tensor) -> Tensor:
        _check_divisible(self, x, 2)
        a, b = x.chunk(2, dim=1)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)


class GroupSort(nn.Module):
    """Sorts consecutive groups of ``group_size`` channels in descending order."""

    def __init__(self, group_size: int = 2) -> None:
        super().__init__()
        self.group_size = require_positive_int("group_size", group_size)

    def forward(self, x: Tensor) -> Tensor:
        _check_divisible(self, x, self.group_size)
        groups = x.unflatten(1, (-1, self.group_size))
        return groups.sort(dim=2, descending=True).values.flatten(1, 2)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
