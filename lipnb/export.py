"""Export a Lipschitz model to plain torch layers for fast inference."""

from __future__ import annotations

import copy

from torch import nn


def export(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every layer that has ``vanilla_export()`` replaced by it.

    Computed kernels become ``nn.Conv2d`` (circular padding) and Björck weights ``nn.Linear``,
    frozen at their current values; the original model is left untouched.
    """
    if hasattr(model, "vanilla_export"):
        return model.vanilla_export()
    exported = copy.deepcopy(model)
    for name, child in model.named_children():
        setattr(exported, name, export(child))
    return exported
