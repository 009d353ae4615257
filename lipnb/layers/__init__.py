"""Lipschitz layers: convolutions (BCOP, RKO, OSSN, SVCM, plain; Cayley, SOC, AOL), SLL residual blocks, Björck linear, activations."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from lipnb._validation import require_choice
from lipnb.layers.activations import GroupSort, MaxMin
from lipnb.layers.aol import AOLConv2d
from lipnb.layers.bcop import BCOPConv2d
from lipnb.layers.cayley import CayleyConv2d
from lipnb.layers.conv import LipschitzConv2d, PlainConv2d
from lipnb.layers.downsampling import InvertibleDownsampling
from lipnb.layers.linear import BjorckLinear
from lipnb.layers.parametrized import Orthonormal, WeightMap
from lipnb.layers.ossn import OSSNConv2d
from lipnb.layers.rko import RKOConv2d
from lipnb.layers.residual import ChannelPadding, Residual
from lipnb.layers.sll import SLLConv2d, SLLLinear
from lipnb.layers.soc import SOCConv2d
from lipnb.layers.svcm import SVCMConv2d
from lipnb.layers.upsampling import NearestUpsampling

CONV_KINDS: dict[str, type[LipschitzConv2d]] = {
    "bcop": BCOPConv2d,
    "rko": RKOConv2d,
    "ossn": OSSNConv2d,
    "svcm": SVCMConv2d,
    "plain": PlainConv2d,
    "cayley": CayleyConv2d,
    "soc": SOCConv2d,
    "aol": AOLConv2d,
    "sll": SLLConv2d,
}


def lipschitz_conv(
    kind: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    bias: bool = True,
    **options: Any,
) -> LipschitzConv2d:
    """The convolution of ``kind`` (one of :data:`CONV_KINDS`) with the shared signature.

    ``options`` are the kind's keyword-only options (:func:`layer_options`), e.g.
    ``orthogonalizer="bjorck"`` for ``bcop`` and ``rko``, ``power_iters`` for ``ossn``.
    """
    require_choice("kind", kind, tuple(CONV_KINDS))
    layer_class = CONV_KINDS[kind]
    unknown = sorted(set(options) - set(layer_options(layer_class)))
    if unknown:
        accepted = ", ".join(layer_options(layer_class)) or "none"
        raise ValueError(f"conv kind {kind!r} has no option {', '.join(map(repr, unknown))}; its options: {accepted}")
    return layer_class(in_channels, out_channels, kernel_size, stride, bias, **options)


def layer_options(layer_class: type[nn.Module]) -> tuple[str, ...]:
    """The keyword-only options of a layer class, e.g. ``("orthogonalizer",)`` for :class:`BCOPConv2d`."""
    parameters = inspect.signature(layer_class.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


__all__ = [
    "AOLConv2d",
    "BCOPConv2d",
    "BjorckLinear",
    "CONV_KINDS",
    "CayleyConv2d",
    "ChannelPadding",
    "GroupSort",
    "InvertibleDownsampling",
    "LipschitzConv2d",
    "MaxMin",
    "NearestUpsampling",
    "OSSNConv2d",
    "Orthonormal",
    "PlainConv2d",
    "RKOConv2d",
    "Residual",
    "SLLConv2d",
    "SLLLinear",
    "SOCConv2d",
    "SVCMConv2d",
    "WeightMap",
    "layer_options",
    "lipschitz_conv",
]
