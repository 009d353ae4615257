"""Shared helpers: the independent reference for every spectral claim."""

from __future__ import annotations

import pytest
import torch


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
