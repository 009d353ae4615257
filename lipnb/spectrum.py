"""Exact spectra of layers and certified Lipschitz bounds of sequential models.

Convolutions are circular, so their singular values are exact via the 2-D FFT
(:mod:`lipnb.circulant`); linear layers use an SVD. The bound of a sequential model is the
product of its layers' exact operator norms: this, not an assumed 1, is what certificates use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lipnb._modes import eval_mode
from lipnb.circulant import conv_singular_values
from lipnb.layers import (
    BjorckLinear,
    GroupSort,
    InvertibleDownsampling,
    LipschitzConv2d,
    MaxMin,
    NearestUpsampling,
)

ONE_LIPSCHITZ: tuple[type[nn.Module], ...] = (
    MaxMin,
    GroupSort,
    InvertibleDownsampling,
    nn.PixelUnshuffle,
    nn.Flatten,
    nn.ReLU,
    nn.Identity,
)
"""Modules that count as 1 in :func:`lipschitz_bound` (norm-preserving or 1-Lipschitz)."""


def singular_values(layer: nn.Module, input_size: tuple[int, int] | None = None) -> Tensor:
    """All singular values (descending, float64) of a linear layer at a spatial ``input_size``.

    Supports the :mod:`lipnb.layers` convolutions (stride included: downsampling is orthogonal),
    ``BjorckLinear``, ``nn.Linear`` and circularly padded stride-1 ``nn.Conv2d``.
    """
    if isinstance(layer, (BjorckLinear, nn.Linear)):
        return torch.linalg.svdvals(layer.weight.detach().double())
    if input_size is None:
        raise ValueError(f"singular_values of {type(layer).__name__} needs input_size=(height, width)")
    if isinstance(layer, LipschitzConv2d):
        conv_input_size = layer.conv_input_size(input_size)
        return conv_singular_values(layer.weight_at(conv_input_size), conv_input_size)
    if isinstance(layer, nn.Conv2d):
        _check_exact_conv(layer)
        return conv_singular_values(layer.weight, input_size)
    raise ValueError(
        f"no exact spectrum for {type(layer).__name__}; supported: lipnb.layers convolutions, "
        f"BjorckLinear, nn.Linear, circular stride-1 nn.Conv2d"
    )


def operator_norm(layer: nn.Module, input_size: tuple[int, int] | None = None) -> float:
    """The layer's exact spectral norm (largest singular value) at ``input_size``."""
    return float(singular_values(layer, input_size)[0])


def layer_spectra(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[nn.Module, Tensor]]:
    """``(layer, singular values)`` for every layer of a (nested) ``nn.Sequential`` that is not 1-Lipschitz.

    ``input_shape`` excludes the batch, e.g. ``(1, 28, 28)``. A dummy forward pass (eval mode,
    restored afterwards) finds each layer's input size. :class:`~lipnb.layers.NearestUpsampling` by
    ``f`` has every singular value equal to ``f``. The modules in :data:`ONE_LIPSCHITZ` are
    skipped; any other module without an exact spectrum raises ``ValueError``, as a bound for it
    would be a guess.
    """
    parameter = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape) if parameter is None else parameter.new_zeros(1, *input_shape)
    spectra = []
    with torch.no_grad(), eval_mode(model):
        for layer in _leaves(model):
            size = tuple(x.shape[2:]) if x.dim() == 4 else None
            inputs = x[0].numel()
            x = layer(x)  # first, so that a layer that normalizes at its input size (OSSN) has seen it
            if isinstance(layer, NearestUpsampling):  # factor × an isometry: every σ is the factor
                spectra.append((layer, torch.full((inputs,), float(layer.factor), dtype=torch.float64)))
            elif not isinstance(layer, ONE_LIPSCHITZ):
                spectra.append((layer, singular_values(layer, size)))
    return spectra


def conv_spectra(model: nn.Module, input_shape: tuple[int, ...]) -> list[Tensor]:
    """Singular values of each :mod:`lipnb.layers` convolution of ``model``, in order."""
    return [sigma for layer, sigma in layer_spectra(model, input_shape) if isinstance(layer, LipschitzConv2d)]


def spectrum_summary(sigma: Tensor) -> dict[str, float]:
    """The numbers behind a spectrum histogram: extremes, median, fraction of σ below 0.1."""
    return {
        "min": float(sigma.min()),
        "median": float(sigma.median()),
        "max": float(sigma.max()),
        "fraction_below_0.1": float((sigma < 0.1).double().mean()),
    }


def lipschitz_bound(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Product of the exact per-layer operator norms of a (nested) ``nn.Sequential`` model."""
    return math.prod(float(sigma[0]) for _, sigma in layer_spectra(model, input_shape))


def _check_exact_conv(conv: nn.Conv2d) -> None:
    same = conv.padding == "same" or all(2 * p == k - 1 for p, k in zip(conv.padding, conv.kernel_size))
    if not (conv.padding_mode == "circular" and same and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1):
        raise ValueError(
            "an exact spectrum needs a stride-1, ungrouped, undilated nn.Conv2d with "
            "padding='same' and padding_mode='circular'; got " + repr(conv)
        )


def _leaves(model: nn.Module) -> Iterator[nn.Module]:
    if isinstance(model, nn.Sequential):
        for child in model:
            yield from _leaves(child)
    elif len(model._modules) == 0 or isinstance(model, LipschitzConv2d) or parametrize.is_parametrized(model):
        yield model
    else:
        raise ValueError(
            f"lipschitz_bound needs an nn.Sequential of known layers; {type(model).__name__} is a container "
            f"whose composition it cannot read"
        )
