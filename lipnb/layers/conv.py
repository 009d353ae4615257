"""The one convention every Lipschitz convolution follows, and the unconstrained baseline.

A layer ``(in_channels, out_channels, kernel_size, stride)`` is a stride-1 circular convolution
(same spatial size, even kernels included). Stride ``s > 1`` means invertible downsampling by
``s`` followed by a stride-1 convolution on ``s²·in_channels`` channels with kernel ``⌈k/s⌉``
(BCOP paper, Sec. 4.3: the replacement for a 4×4 stride-2 conv is downsampling + a 2×2 conv).
Subclasses only say how the kernel is computed: ``layer.weight`` is always that kernel, the
weight of the equivalent ``nn.Conv2d`` (:mod:`lipnb.layers.parametrized`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lipnb._validation import require_positive_int
from lipnb.circulant import circular_conv2d
from lipnb.layers.parametrized import layer_name
from lipnb.layers.downsampling import InvertibleDownsampling


class LipschitzConv2d(nn.Module):
    """Base class: (optional invertible downsampling) → circular conv with the kernel ``self.weight``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        self.in_channels = require_positive_int("in_channels", in_channels)
        self.out_channels = require_positive_int("out_channels", out_channels)
        self.kernel_size = require_positive_int("kernel_size", kernel_size)
        self.stride = require_positive_int("stride", stride)
        self.downsample = InvertibleDownsampling(stride) if stride > 1 else None
        self.conv_in_channels = in_channels * stride**2
        self.conv_kernel_size = math.ceil(kernel_size / stride)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.input_size: tuple[int, int] | None = None  # spatial size of the last input seen

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Shape of the stride-1 kernel: ``(out, in·s², ⌈k/s⌉, ⌈k/s⌉)``."""
        k = self.conv_kernel_size
        return (self.out_channels, self.conv_in_channels, k, k)

    def conv_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Spatial size seen by the stride-1 convolution for a layer input of ``input_size``."""
        height, width = input_size
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"stride {self.stride} must divide the input size; got {height}×{width} "
                f"(use a stride that divides it, or resize the input)"
            )
        return height // self.stride, width // self.stride

    def prepare_input(self, x: Tensor) -> Tensor:
        """Check the input, remember its size, and downsample it if ``stride > 1``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{layer_name(self)} expects input of shape (batch, {self.in_channels}, height, width) "
                f"(in_channels={self.in_channels}); got {tuple(x.shape)}"
            )
        self.conv_input_size(x.shape[-2:])
        self.input_size = (x.shape[-2], x.shape[-1])
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        return circular_conv2d(self.prepare_input(x), self.weight, self.bias)

    def weight_at(self, conv_input_size: tuple[int, int]) -> Tensor:
        """The stride-1 kernel acting on maps of ``conv_input_size`` (after downsampling).

        ``self.weight`` for every kind whose kernel does not depend on the input size; a kind
        parametrized in the frequency domain of the input grid (Cayley) overrides this.
        """
        return self.weight

    def vanilla_export(self) -> nn.Module:
        """An equivalent plain-torch module: ``nn.Conv2d`` (after ``nn.PixelUnshuffle`` if strided)."""
        weight = self.weight.detach()
        conv = nn.Conv2d(
            self.conv_in_channels,
            self.out_channels,
            tuple(weight.shape[-2:]),
            padding="same",
            padding_mode="circular",
            bias=self.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(weight)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv if self.downsample is None else nn.Sequential(nn.PixelUnshuffle(self.stride), conv)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, bias={self.bias is not None}"
        )


class PlainConv2d(LipschitzConv2d):
    """Unconstrained circular convolution: the baseline (``kind="plain"``), no Lipschitz bound."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        self.weight = nn.Parameter(default_conv_kernel(self.kernel_shape))


def default_conv_kernel(shape: tuple[int, ...]) -> Tensor:
    """``nn.Conv2d``'s default initialization (Kaiming uniform, a = √5) for a kernel of ``shape``."""
    kernel = torch.empty(shape)
    nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))
    return kernel
