"""Certified robustness from a measured Lipschitz bound (BCOP paper, Sec. 5.2; Tsuzuku et al. 2018).

If ``f`` is L-Lipschitz in L2, each margin ``f_y − f_j`` is √2·L-Lipschitz, so a point whose
margin exceeds √2·L·ε keeps its label under every perturbation of norm ≤ ε. ``L`` is the model's
exact :func:`lipnb.lipschitz_bound`, never an assumed 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lipnb.data import iterate_batches
from lipnb.losses import margins


def certified_radii(logits: Tensor, labels: Tensor, lipschitz: float) -> Tensor:
    """Largest certified L2 radius per example, ``max(0, margin) / (√2·L)``; 0 when misclassified."""
    return margins(logits, labels).clamp(min=0) / (math.sqrt(2) * lipschitz)


def certified_accuracy(radii: Tensor, eps: float | Tensor) -> Tensor:
    """Fraction of examples whose radius is strictly above each ``eps`` (at 0: the clean accuracy)."""
    eps = torch.as_tensor(eps, dtype=radii.dtype)
    return (radii[:, None] > eps.reshape(1, -1)).float().mean(0).reshape(eps.shape)


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu", progress: bool = False
) -> tuple[Tensor, Tensor]:
    """Logits and labels of the whole ``dataset`` (eval mode), on the CPU."""
    model.eval()
    logits, labels = [], []
    for x, y in tqdm(iterate_batches(dataset, batch_size), desc="predict", leave=False, disable=not progress):
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)
