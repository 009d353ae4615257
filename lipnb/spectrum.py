"""Exact spectra of layers and certified Lipschitz bounds of sequential models.

Convolutions are circular, so their singular values are exact via the 2-D FFT
(:mod:`lipnb.circulant`); linear layers use an SVD. The bound of a sequential model is the
product of its layers' exact operator norms: this, not an assumed 1, is what certificates use.
A nonlinear block has no spectrum; it counts by the rule declared for its type in
:data:`LIPSCHITZ_RULES` (an SLL block: 1, by a theorem), and any other module is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lipnb._modes import eval_mode
from lipnb.circulant import conv_singular_values
from lipnb.layers import (
    BjorckLinear,
    ChannelPadding,
    GroupSort,
    InvertibleDownsampling,
    LipschitzConv2d,
    MaxMin,
    NearestUpsampling,
    Residual,
    SLLConv2d,
    SLLLinear,
)
from lipnb.layers.parametrized import layer_name

ONE_LIPSCHITZ: tuple[type[nn.Module], ...] = (
    MaxMin,
    GroupSort,
    InvertibleDownsampling,
    ChannelPadding,
    nn.PixelUnshuffle,
    nn.Flatten,
    nn.ReLU,
    nn.Identity,
)
"""Modules that count as 1 in :func:`lipschitz_bound` (norm-preserving or 1-Lipschitz)."""

LipschitzRule = Callable[[nn.Module, tuple[int, ...]], float]
"""A declared Lipschitz bound of a nonlinear block: ``rule(block, input_shape) → bound``.

``input_shape`` is the shape of the block's input without the batch, and the block has just seen
such an input; a rule may use it, e.g. ``1 + lipschitz_bound(block.branch, input_shape)`` for a
residual ``x + branch(x)``.
"""


def _sll_theorem_3(block: nn.Module, input_shape: tuple[int, ...]) -> float:
    """1: an SLL block is 1-Lipschitz for any parameters (Araujo et al. 2023, Theorem 3; :mod:`lipnb.layers.sll`)."""
    return 1.0


def _triangle_inequality(block: nn.Module, input_shape: tuple[int, ...]) -> float:
    """``1 + Lip(branch)`` for ``x + branch(x)``, the branch's bound read as any model's (exact, or refused)."""
    return 1.0 + lipschitz_bound(block.branch, input_shape)


LIPSCHITZ_RULES: dict[type[nn.Module], LipschitzRule] = {
    SLLConv2d: _sll_theorem_3,
    SLLLinear: _sll_theorem_3,
    Residual: _triangle_inequality,
}
"""Declared Lipschitz bounds of nonlinear blocks, by module type (:func:`register_lipschitz_rule`).

A rule states a theorem, not a measurement: :func:`lipschitz_bound` multiplies its value in, and
:func:`singular_values` refuses these blocks (they have no spectrum). A subclass inherits the rule
of its nearest registered base; register its own if it changes the map.
"""


def register_lipschitz_rule(module_type: type[nn.Module], rule: LipschitzRule) -> None:
    """Declare ``rule(block, input_shape)`` as the Lipschitz bound of every ``module_type`` block (and subclass)."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise ValueError(f"register_lipschitz_rule needs an nn.Module subclass; got {module_type!r}")
    if not callable(rule):
        raise ValueError(f"register_lipschitz_rule needs a callable rule(block, input_shape) -> float; got {rule!r}")
    LIPSCHITZ_RULES[module_type] = rule


def lipschitz_rule(layer: nn.Module) -> LipschitzRule | None:
    """The rule of :data:`LIPSCHITZ_RULES` for ``layer``'s type or its nearest registered base, or ``None``."""
    for cls in parametrize.type_before_parametrizations(layer).__mro__:
        if cls in LIPSCHITZ_RULES:
            return LIPSCHITZ_RULES[cls]
    return None


def singular_values(layer: nn.Module, input_size: tuple[int, int] | None = None) -> Tensor:
    """All singular values (descending, float64) of a linear layer at a spatial ``input_size``.

    Supports the :mod:`lipnb.layers` convolutions (stride included: downsampling is orthogonal),
    ``BjorckLinear``, ``nn.Linear`` and circularly padded stride-1 ``nn.Conv2d``. A nonlinear block
    with a declared rule (:data:`LIPSCHITZ_RULES`, e.g. SLL) has no spectrum: ``ValueError``.
    """
    if lipschitz_rule(layer) is not None:
        raise ValueError(
            f"{layer_name(layer)} is a nonlinear block with no spectrum; its Lipschitz bound is the rule "
            f"declared in lipnb.spectrum.LIPSCHITZ_RULES (see layer_bounds, lipschitz_bound)"
        )
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
    """``(layer, singular values)`` for every linear layer of a (nested) ``nn.Sequential`` that is not 1-Lipschitz.

    ``input_shape`` excludes the batch, e.g. ``(1, 28, 28)``. A dummy forward pass (eval mode,
    restored afterwards) finds each layer's input size. :class:`~lipnb.layers.NearestUpsampling` by
    ``f`` has every singular value equal to ``f``. The modules in :data:`ONE_LIPSCHITZ` are
    skipped, and so are the nonlinear blocks bounded by a rule of :data:`LIPSCHITZ_RULES` (no
    spectrum; :func:`layer_bounds` lists them); any other module without an exact spectrum raises
    ``ValueError``, as a bound for it would be a guess.
    """
    return [(layer, sigma) for layer, sigma, _, _ in _bounded_layers(model, input_shape) if sigma is not None]


def layer_bounds(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[nn.Module, float, str]]:
    """``(layer, Lipschitz bound, how)`` for every layer of a (nested) ``nn.Sequential`` that is not 1-Lipschitz.

    ``how`` is ``"spectrum"`` for a linear layer (the bound is its exact operator norm, the first
    of :func:`layer_spectra`) and ``"rule"`` for a nonlinear block (the value of its rule in
    :data:`LIPSCHITZ_RULES`). The :data:`ONE_LIPSCHITZ` modules are skipped and any other module
    raises ``ValueError``, as in :func:`layer_spectra`. Their product is :func:`lipschitz_bound`.
    """
    return [(layer, bound, how) for layer, _, bound, how in _bounded_layers(model, input_shape)]


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
    """Product of the exact per-layer operator norms of a (nested) ``nn.Sequential`` model.

    A nonlinear block with a declared rule (:data:`LIPSCHITZ_RULES`) contributes the rule's value
    (:func:`layer_bounds`).
    """
    return math.prod(bound for _, bound, _ in layer_bounds(model, input_shape))


def _bounded_layers(
    model: nn.Module, input_shape: tuple[int, ...]
) -> list[tuple[nn.Module, Tensor | None, float, str]]:
    """``(layer, singular values or None, bound, how)`` for the layers of :func:`layer_bounds`."""
    parameter = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape) if parameter is None else parameter.new_zeros(1, *input_shape)
    entries: list[tuple[nn.Module, Tensor | None, float, str]] = []
    with torch.no_grad(), eval_mode(model):
        for layer in _leaves(model):
            size = tuple(x.shape[2:]) if x.dim() == 4 else None
            shape = tuple(x.shape[1:])
            x = layer(x)  # first, so that a layer that normalizes at its input size (OSSN) has seen it
            rule = lipschitz_rule(layer)
            if isinstance(layer, NearestUpsampling):  # factor × an isometry: every σ is the factor
                sigma = torch.full((math.prod(shape),), float(layer.factor), dtype=torch.float64)
                entries.append((layer, sigma, float(sigma[0]), "spectrum"))
            elif rule is not None:
                entries.append((layer, None, _rule_value(layer, rule, shape), "rule"))
            elif not isinstance(layer, ONE_LIPSCHITZ):
                sigma = singular_values(layer, size)
                entries.append((layer, sigma, float(sigma[0]), "spectrum"))
    return entries


def _rule_value(layer: nn.Module, rule: LipschitzRule, input_shape: tuple[int, ...]) -> float:
    value = float(rule(layer, input_shape))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"the Lipschitz rule of {layer_name(layer)} returned {value!r}; a bound must be finite and >= 0"
        )
    return value


def _check_exact_conv(conv: nn.Conv2d) -> None:
    same = conv.padding == "same" or all(2 * p == k - 1 for p, k in zip(conv.padding, conv.kernel_size))
    if not (conv.padding_mode == "circular" and same and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1):
        raise ValueError(
            "an exact spectrum needs a stride-1, ungrouped, undilated nn.Conv2d with "
            "padding='same' and padding_mode='circular'; got " + repr(conv)
        )


def _leaves(model: nn.Module) -> Iterator[nn.Module]:
    if lipschitz_rule(model) is not None:  # a declared block: a leaf, whatever its submodules
        yield model
    elif isinstance(model, nn.Sequential):
        for child in model:
            yield from _leaves(child)
    elif len(model._modules) == 0 or isinstance(model, LipschitzConv2d) or parametrize.is_parametrized(model):
        yield model
    else:
        raise ValueError(
            f"lipschitz_bound needs an nn.Sequential of known layers; {type(model).__name__} is a container "
            f"whose composition it cannot read"
        )
