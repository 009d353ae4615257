"""OSSN: one-sided spectral normalization by power iteration on the convolution itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipnb.circulant import circular_conv2d, circular_conv2d_adjoint
from lipnb.layers.conv import LipschitzConv2d, default_conv_kernel

_WARM_UP_ITERS = 50
_RESTART_NOISE = 1e-3  # norm of the noise added to the unit vector before each training forward's iterations


class OSSNConv2d(LipschitzConv2d):
    """Kernel divided by ``max(1, σ)``, σ a power-iteration estimate of the operator norm.

    The iteration runs on the actual circular convolution at the input size the layer sees
    (Gouk et al. 2018; Miyato et al. 2018 run it on the reshaped kernel instead). The unit vector
    persists across steps: ``power_iters`` iterations per training forward, and
    ``50`` when it is first created for an input size. Eval mode reuses the last vector.
    σ is a lower estimate, so use :func:`lipnb.spectrum.operator_norm` for a certified bound.
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
        self.power_iters = power_iters
        self.weight = nn.Parameter(default_conv_kernel(self.kernel_shape))
        self.register_buffer("power_vector", torch.empty(0))  # (1, in, h, w) once an input is seen

    def forward(self, x: Tensor) -> Tensor:
        x = self.prepare_input(x)
        fresh = self.power_vector.shape[-2:] != x.shape[-2:]
        if fresh and (self.training or self.power_vector.numel() == 0):
            start = torch.randn(1, self.conv_in_channels, *x.shape[-2:], dtype=x.dtype, device=x.device)
            self._power_iterate(start, _WARM_UP_ITERS)
        elif self.training:
            # A little fresh noise keeps every direction alive: in float arithmetic a direction that
            # was negligible for a while underflows to exactly 0 and could never become the top one.
            noise = torch.randn_like(self.power_vector) * (_RESTART_NOISE / self.power_vector.numel() ** 0.5)
            self._power_iterate(self.power_vector + noise, self.power_iters)
        return circular_conv2d(x, self.effective_weight(), self.bias)

    @torch.no_grad()
    def _power_iterate(self, vector: Tensor, iters: int) -> None:
        for _ in range(iters):
            vector = circular_conv2d_adjoint(circular_conv2d(vector, self.weight), self.weight)
            vector = F.normalize(vector.flatten(), dim=0).view_as(vector)
        if self.power_vector.shape == vector.shape:
            self.power_vector.copy_(vector)  # in place, so eval-mode caches see the change
        else:
            self.power_vector = vector

    def compute_weight(self) -> Tensor:
        if self.power_vector.numel() == 0:
            raise RuntimeError("OSSNConv2d: run a forward pass first; σ is estimated at the input size the layer sees")
        sigma = circular_conv2d(self.power_vector, self.weight).norm()
        return self.weight / torch.clamp(sigma, min=1.0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The power vector's shape depends on the input size: adopt the saved one.
        saved = state_dict.get(prefix + "power_vector")
        if saved is not None:
            self.power_vector = torch.empty_like(saved, device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
