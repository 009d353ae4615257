"""OSSN: one-sided spectral normalization by power iteration on the convolution itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lipnb._validation import require_positive_int
from lipnb.circulant import circular_conv2d, circular_conv2d_adjoint
from lipnb.layers.conv import LipschitzConv2d, default_conv_kernel
from lipnb.layers.parametrized import WeightMap, parametrize_weight

_WARM_UP_ITERS = 50
_RESTART_NOISE = 1e-3  # norm of the noise added to the unit vector before each training forward's iterations


class OSSNConv2d(LipschitzConv2d):
    """Kernel divided by ``max(1, σ)``, σ a power-iteration estimate of the operator norm.

    The iteration runs on the actual circular convolution at the input size the layer sees
    (Gouk et al. 2018; Miyato et al. 2018 run it on the reshaped kernel instead). The unit vector
    persists across steps: ``power_iters`` iterations per training forward, and
    ``50`` when it is first created for an input size. Eval mode reuses the last vector.
    σ is a lower estimate, so use :func:`lipnb.spectrum.operator_norm` for a certified bound.
    ``weight`` is the normalized kernel; the trained tensor is ``parametrizations.weight.original``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        *,
        power_iters: int = 10,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        self.power_iters = require_positive_int("power_iters", power_iters)
        parametrize_weight(self, SpectralNormalization(), default_conv_kernel(self.kernel_shape))

    def forward(self, x: Tensor) -> Tensor:
        x = self.prepare_input(x)
        normalization = self.parametrizations.weight[0]
        kernel = self.parametrizations.weight.original
        vector = self.power_vector
        fresh = vector.shape[-2:] != x.shape[-2:]
        if fresh and (self.training or vector.numel() == 0):
            start = torch.randn(1, self.conv_in_channels, *x.shape[-2:], dtype=x.dtype, device=x.device)
            normalization.power_iterate(kernel, start, _WARM_UP_ITERS)
        elif self.training:
            # A little fresh noise keeps every direction alive: in float arithmetic a direction that
            # was negligible for a while underflows to exactly 0 and could never become the top one.
            noise = torch.randn_like(vector) * (_RESTART_NOISE / vector.numel() ** 0.5)
            normalization.power_iterate(kernel, vector + noise, self.power_iters)
        return circular_conv2d(x, self.weight, self.bias)

    @property
    def power_vector(self) -> Tensor:
        """The power iteration's persistent unit vector, ``(1, in, h, w)``; empty before the first forward."""
        return self.parametrizations.weight[0].power_vector


class SpectralNormalization(WeightMap):
    """``K / max(1, ‖conv_K(v)‖)`` with ``v`` the unit vector ``power_vector`` (shape ``(1, in, h, w)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("power_vector", torch.empty(0))  # (1, in, h, w) once an input is seen

    @torch.no_grad()
    def power_iterate(self, kernel: Tensor, vector: Tensor, iters: int) -> None:
        """``iters`` power iterations of ``KᵀK`` from ``vector``; the result becomes ``power_vector``."""
        for _ in range(iters):
            vector = circular_conv2d_adjoint(circular_conv2d(vector, kernel), kernel)
            vector = F.normalize(vector.flatten(), dim=0).view_as(vector)
        if self.power_vector.shape == vector.shape:
            self.power_vector.copy_(vector)  # in place, so eval-mode caches see the change
        else:
            self.power_vector = vector

    def compute(self, kernel: Tensor) -> Tensor:
        if self.power_vector.numel() == 0:
            raise RuntimeError("OSSNConv2d: run a forward pass first; σ is estimated at the input size the layer sees")
        sigma = circular_conv2d(self.power_vector, kernel).norm()
        return kernel / torch.clamp(sigma, min=1.0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The power vector's shape depends on the input size: adopt the saved one.
        saved = state_dict.get(prefix + "power_vector")
        if saved is not None:
            self.power_vector = torch.empty_like(saved, device=self.power_vector.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
