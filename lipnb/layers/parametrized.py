"""Constrained weights as ``torch.nn.utils.parametrize`` parametrizations, cached in eval mode.

Every lipnb layer whose weight is computed registers one :class:`WeightMap` on ``weight``, so
``layer.weight`` is the weight of the equivalent plain layer (drop-in for code written for
``nn.Conv2d``/``nn.Linear``) and ``layer.parametrizations.weight.original`` is the unconstrained
tensor behind it — the convention of geotorch, deel-torchlip and orthogonium.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lipnb.orthogonal import OrthogonalizerChoice, resolve_orthogonalizer


class WeightMap(nn.Module):
    """A parametrization ``weight = compute(original)``; subclasses define :meth:`compute`.

    In training mode the weight is recomputed (differentiably) at every access. In eval mode it is
    computed once, without autograd, and reused until the original or a tensor of this module
    changes (an optimizer step, ``load_state_dict``, ``.to()``): no orthogonalization in an eval
    forward pass. Eval-mode weights therefore do not backpropagate into the parameters; gradients
    with respect to the input (attacks) are unaffected.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cached: tuple[tuple, Tensor] | None = None

    def compute(self, original: Tensor) -> Tensor:
        """The weight of the equivalent plain layer, from the unconstrained ``original``."""
        raise NotImplementedError

    def forward(self, original: Tensor) -> Tensor:
        if self.training:
            self._cached = None
            return self.compute(original)
        tensors = itertools.chain([original], self.parameters(recurse=False), self.buffers(recurse=False))
        key = tuple((t.data_ptr(), t._version, t.shape) for t in tensors)
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                self._cached = (key, self.compute(original).detach())
        return self._cached[1]


class Orthonormal(WeightMap):
    """``orthogonalize(W)``: orthonormal rows for a wide ``W``, columns for a tall one.

    ``orthogonalizer`` is a name of :data:`lipnb.orthogonal.ORTHOGONALIZERS` or a callable.
    """

    def __init__(self, orthogonalizer: OrthogonalizerChoice) -> None:
        super().__init__()
        self.orthogonalizer = orthogonalizer
        self.orthogonalize = resolve_orthogonalizer(orthogonalizer)

    def compute(self, original: Tensor) -> Tensor:
        return self.orthogonalize(original)

    def extra_repr(self) -> str:
        return f"orthogonalizer={self.orthogonalizer!r}"


def parametrize_weight(module: nn.Module, weight_map: WeightMap, original: Tensor) -> None:
    """Make ``module.weight`` be ``weight_map(original)``, with ``original`` as the trained parameter.

    ``unsafe=True``: the original may have another shape than the weight (BCOP's ``H``, RKO's
    reshaped kernel), and registering then computes nothing.
    """
    module.weight = nn.Parameter(original)
    parametrize.register_parametrization(module, "weight", weight_map, unsafe=True)


def layer_name(module: nn.Module) -> str:
    """The class name a user wrote (``BCOPConv2d``, not parametrize's ``ParametrizedBCOPConv2d``)."""
    return parametrize.type_before_parametrizations(module).__name__
