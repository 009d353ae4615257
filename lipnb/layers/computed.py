"""Layers whose weight is computed from parameters, with the eval-mode cache they share."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


class ComputedWeight(nn.Module):
    """A layer whose weight is a function of its parameters and buffers.

    In training mode :meth:`effective_weight` recomputes the weight (differentiably) on every call.
    In eval mode it is computed once, without autograd, and reused until a parameter or buffer
    changes (an optimizer step, ``load_state_dict``, ``.to()``): no orthogonalization in the eval
    forward pass. Eval-mode forwards therefore do not backpropagate into the parameters;
    gradients with respect to the input (attacks) are unaffected.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cached_weight: tuple[tuple, Tensor] | None = None

    def compute_weight(self) -> Tensor:
        """The weight of the equivalent plain layer, from the current parameters."""
        raise NotImplementedError

    def effective_weight(self) -> Tensor:
        """The weight of the equivalent plain layer (cached in eval mode)."""
        if self.training:
            self._cached_weight = None
            return self.compute_weight()
        key = self._state_key()
        if self._cached_weight is None or self._cached_weight[0] != key:
            with torch.no_grad():
                self._cached_weight = (key, self.compute_weight().detach())
        return self._cached_weight[1]

    def _state_key(self) -> tuple:
        tensors = itertools.chain(self.parameters(recurse=False), self.buffers(recurse=False))
        return tuple((t.data_ptr(), t._version, t.shape) for t in tensors)
