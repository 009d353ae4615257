"""Lipschitz layers: convolutions (BCOP, RKO, OSSN, SVCM, plain), Björck linear, activations."""

from __future__ import annotations

from lipnb._validation import require_choice
from lipnb.layers.activations import GroupSort, MaxMin
from lipnb.layers.bcop import BCOPConv2d
from lipnb.layers.computed import ComputedWeight
from lipnb.layers.conv import LipschitzConv2d, PlainConv2d
from lipnb.layers.downsampling import InvertibleDownsampling
from lipnb.layers.linear import BjorckLinear
from lipnb.layers.ossn import OSSNConv2d
from lipnb.layers.rko import RKOConv2d
from lipnb.layers.svcm import SVCMConv2d
from lipnb.layers.upsampling import NearestUpsampling

CONV_KINDS: dict[str, type[LipschitzConv2d]] = {
    "bcop": BCOPConv2d,
    "rko": RKOConv2d,
    "ossn": OSSNConv2d,
    "svcm": SVCMConv2d,
    "plain": PlainConv2d,
}


def lipschitz_conv(
    kind: str, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
) -> LipschitzConv2d:
    """The convolution of ``kind`` (one of :data:`CONV_KINDS`) with the shared signature."""
    require_choice("kind", kind, tuple(CONV_KINDS))
    return CONV_KINDS[kind](in_channels, out_channels, kernel_size, stride, bias)


__all__ = [
    "BCOPConv2d",
    "BjorckLinear",
    "CONV_KINDS",
    "ComputedWeight",
    "GroupSort",
    "InvertibleDownsampling",
    "LipschitzConv2d",
    "MaxMin",
    "NearestUpsampling",
    "OSSNConv2d",
    "PlainConv2d",
    "RKOConv2d",
    "SVCMConv2d",
    "lipschitz_conv",
]
