"""Every objective lipnb trains or attacks with, in one place.

* margin training (BCOP paper, Sec. 5.1): the multi-class hinge loss with the paper's margins;
* attacks (Sec. 5.2): the Carlini–Wagner margin;
* Wasserstein critics (Sec. 5.3): the Kantorovich–Rubinstein gap ``E_P f − E_Q f``;
* the WGAN-GP generator the critics are measured against (Gulrajani et al. 2017): the gradient penalty.

Losses are per example (``reduction="none"``) where a caller needs them so, e.g. to average a
global batch that is split over processes (:meth:`lipnb.engine.Shard.mean`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MNIST_MARGIN = 1.5 * math.sqrt(2)  # 2.1213: certifies ε = 1.5 at L = 1
CIFAR_MARGIN = 0.5 * math.sqrt(2)  # 0.7071


def multiclass_hinge_loss(logits: Tensor, labels: Tensor, margin: float, reduction: str = "mean") -> Tensor:
    """``Σ_{j≠y} max(0, margin − (f_y − f_j)) / K`` per example (``multi_margin_loss`` with p = 1), averaged by default."""
    return F.multi_margin_loss(logits, labels, margin=margin, reduction=reduction)


def margins(logits: Tensor, labels: Tensor) -> Tensor:
    """``f_y − max_{j≠y} f_j`` per example: positive iff correctly classified."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.amax(1)


def cw_margin_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-example Carlini–Wagner margin ``max_{j≠y} f_j − f_y``; positive iff misclassified."""
    return -margins(logits, labels)


def kantorovich_rubinstein_gaps(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """``f(xᵢ) − f(x̃ᵢ)`` per pair: their mean estimates ``E_P f − E_Q f``, the dual objective of W1."""
    return (real_scores - fake_scores).flatten()


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """``(‖∇D(x̂)‖ − 1)²`` per example at random interpolates ``x̂`` of real and fake (WGAN-GP, Algorithm 1)."""
    mix = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    points = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradient,) = torch.autograd.grad(discriminator(points).sum(), points, create_graph=True)
    return (gradient.flatten(1).norm(dim=1) - 1).square()
