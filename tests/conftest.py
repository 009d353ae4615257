"""Shared helpers: the independent reference for every spectral claim, and the training steps that stress it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lipnb.layers import CONV_KINDS
from lipnb.models import RESIDUAL_BLOCK_KINDS

LINEAR_CONV_KINDS = [kind for kind in CONV_KINDS if kind not in RESIDUAL_BLOCK_KINDS]
"""The conv kinds that are linear maps with any in/out channels and stride (all but SLL's residual blocks)."""


def train_steps(layer: nn.Module, input_shape: tuple[int, ...], steps: int = 20, lr: float = 1e-2) -> None:
    """Adam on a random regression: enough to move every parameter well away from its init."""
    layer.train()
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr)
    x = torch.rand(8, *input_shape)
    with torch.no_grad():
        target = torch.randn_like(layer(x))
    for _ in range(steps):
        optimizer.zero_grad()
        (layer(x) - target).square().mean().backward()
        optimizer.step()


def dense_operator(layer, input_shape: tuple[int, ...]) -> torch.Tensor:
    """The layer's matrix, column by column from impulse responses (bias removed by f(x) − f(0))."""
    size = torch.Size(input_shape).numel()
    impulses = torch.eye(size, dtype=torch.float64).reshape(size, *input_shape)
    with torch.no_grad():
        responses = layer(impulses) - layer(torch.zeros(1, *input_shape, dtype=torch.float64))
    return responses.reshape(size, -1).T


def dense_singular_values(layer, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Singular values of :func:`dense_operator`, descending."""
    return torch.linalg.svdvals(dense_operator(layer, input_shape))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The tests' tensors are tiny: intra-op threads only add overhead, and stall on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
