"""Björck linear layer (Anil, Lucas & Grosse 2019): an orthogonal or semi-orthogonal weight."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipnb._validation import require_positive_int
from lipnb.layers.computed import ComputedWeight
from lipnb.orthogonal import bjorck


class BjorckLinear(ComputedWeight):
    """``y = W x + b`` with ``W`` the Björck orthonormalization of an unconstrained matrix."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        bjorck_iters: int = 20,
        bjorck_tol: float | None = None,
    ) -> None:
        super().__init__()
        self.in_features = require_positive_int("in_features", in_features)
        self.out_features = require_positive_int("out_features", out_features)
        self.bjorck_iters = bjorck_iters
        self.bjorck_tol = bjorck_tol
        self.weight = nn.Parameter(nn.init.orthogonal_(torch.empty(out_features, in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def compute_weight(self) -> Tensor:
        return bjorck(self.weight, iters=self.bjorck_iters, tol=self.bjorck_tol)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"BjorckLinear expects inputs with last dimension in_features={self.in_features}; got {tuple(x.shape)}"
            )
        return nn.functional.linear(x, self.effective_weight(), self.bias)

    def vanilla_export(self) -> nn.Linear:
        """An equivalent ``nn.Linear`` holding the computed weight."""
        weight = self.effective_weight().detach()
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device=weight.device, dtype=weight.dtype
        )
        with torch.no_grad():
            linear.weight.copy_(weight)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
