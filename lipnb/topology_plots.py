"""Drawings for the BCOP paper's Sec. 3 (Li et al. 2019): matplotlib views of :mod:`lipnb.topology`.

- :func:`draw_figure1`: the paper's Figure 1 cell by cell, ``input ∗ kernel = output`` for the
  2-channel 1-D orthogonal convolution ``[P, I − P]``, or for the explorer's kernel of any
  ``(θ, K, rank)`` (its ``K`` taps, the product of ``K − 1`` factors ``[Pᵢ, I − Pᵢ]``).
- :func:`draw_rank_invariance`: a projector keeps its rank along BCOP's parameter paths, while the
  straight segment between projectors of two ranks leaves the projectors (Sec. 3.1).
- :func:`draw_projector_explorer`: Figure 1 at the explorer's setting above ``det W(z)``, Theorem 1's
  invariant, which θ leaves fixed and the kernel size and rank move.
- :func:`show_projector_explorer`: the explorer displayed once and closed, for ``ipywidgets.interact``.

Every number drawn is computed by :mod:`lipnb.topology` (the singular values by :mod:`lipnb.circulant`);
this module only lays them out.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from lipnb import topology
from lipnb.circulant import conv_singular_values


def _format_cell(value: float) -> str:
    return f"{round(value):d}" if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


def _diagram_width(data: dict[str, Tensor]) -> float:
    """Width, in cells, of :func:`draw_figure1`'s diagram of ``data`` (its x-range)."""
    return 2 * data["input"].shape[1] + 2.4 * data["kernel"].shape[-1] + 2.8


def _draw_cells(ax: Axes, values: Tensor, left: float, title: str, color: str) -> float:
    """Draw a channels × columns block of numbered unit cells from ``left``; return its right edge."""
    rows, cols = values.shape
    scale = float(values.abs().max()) or 1.0
    for i in range(rows):
        for j in range(cols):
            value = float(values[i, j])
            face = plt.get_cmap(color)(0.1 + 0.5 * abs(value) / scale)
            ax.add_patch(Rectangle((left + j, rows - 1 - i), 1, 1, facecolor=face, edgecolor="black"))
            ax.text(left + j + 0.5, rows - 0.5 - i, _format_cell(value), ha="center", va="center", fontsize=11)
    ax.text(left + cols / 2, rows + 0.25, title, ha="center", va="bottom", fontsize=10)
    return left + cols


def draw_figure1(ax: Axes | None = None, theta: float = 0.0, kernel_size: int = 2, rank: int = 1) -> Axes:
    """Figure 1 cell by cell: input ∗ kernel taps = output (channels as rows, positions as columns).

    The data is :func:`lipnb.topology.figure1_data` ``(θ, K, rank)``; the defaults are the paper's
    ``[P, I − P]`` with ``P`` the projection onto the first channel.
    """
    data = topology.figure1_data(theta, kernel_size, rank)
    positions = data["input"].shape[1]
    if ax is None:
        _, ax = plt.subplots(figsize=(0.66 * _diagram_width(data), 2.4))
    right = _draw_cells(ax, data["input"], 0.0, "input x", "Blues")
    ax.text(right + 0.5, 1, "∗", ha="center", va="center", fontsize=18)
    labels = ["tap 0: P", "tap 1: I − P"] if kernel_size == 2 else [f"tap {a}" for a in range(kernel_size)]
    for a, label in enumerate(labels):
        right = _draw_cells(ax, data["kernel"][:, :, a], right + (1.0 if a == 0 else 0.4), label, "Oranges")
    ax.text(right + 0.5, 1, "=", ha="center", va="center", fontsize=18)
    right = _draw_cells(ax, data["output"], right + 1, "output y", "Greens")
    for channel in range(2):
        ax.text(-0.2, 1.5 - channel, f"ch {channel + 1}", ha="right", va="center", fontsize=9)
    for t in range(positions):
        ax.text(t + 0.5, -0.15, f"t={t}", ha="center", va="top", fontsize=8)
    ax.set_xlim(-1.0, right + 0.2)
    ax.set_ylim(-0.6, 2.8)
    ax.set_aspect("equal")
    ax.axis("off")
    if kernel_size == 2:
        title = "y[t] = P x[t] + (I − P) x[t − 1]"
    else:
        title = (
            r"$y[t] = \sum_a K_a\, x[t - a]$, taps of $W(z) = F_{K-1}(z) \cdots F_1(z)$, "
            rf"$F_i(z) = P_i + (I - P_i)\, z$, rank $P_i$ = {rank}"
        )
    ax.set_title(title, fontsize=11)
    return ax


def draw_rank_invariance(
    n: int = 3, rank: int = 1, steps: int = 101, generator: torch.Generator | None = None
) -> Figure:
    """Rank along a parameter path (constant) beside the projector defect along a rank-changing segment."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    t = torch.linspace(0, 1, steps)
    raw_start, raw_end = (torch.randn(n, rank, dtype=topology.DTYPE, generator=generator) for _ in range(2))
    left.plot(t, topology.rank_along_path(raw_start, raw_end, steps), marker=".", linestyle="none")
    left.set_ylim(-0.5, n + 0.5)
    left.set_yticks(range(n + 1))
    left.set_xlabel("t  (raw = (1 − t) raw₀ + t raw₁)")
    left.set_ylabel("rank P(t)")
    left.set_title(f"parameter path, n = {n}: rank stays {rank}")
    p0, p1 = topology.random_projector(n, rank, generator), topology.random_projector(n, rank + 1, generator)
    right.plot(t, topology.distance_to_projectors_along_segment(p0, p1, steps))
    right.set_xlabel("t  (P(t) = (1 − t) P₀ + t P₁)")
    right.set_ylabel("‖P(t)² − P(t)‖_F")
    right.set_title(f"matrix segment, rank {rank} → {rank + 1}: leaves $\\mathbf{{P}}({n})$")
    figure.tight_layout()
    return figure


def draw_projector_explorer(theta: float = 0.0, kernel_size: int = 3, rank: int = 1) -> Figure:
    """One new figure: Figure 1 of :func:`lipnb.topology.explorer_kernel` ``(θ, K, rank)`` above its ``det W(z)``.

    Both panels follow all three settings: θ moves the kernel's taps but not ``det W``; the kernel
    size and rank change the taps and, jumping between components, ``det W = ±z^d``.
    """
    data = topology.figure1_data(theta, kernel_size, rank)
    figure = plt.figure(figsize=(max(12.0, 0.55 * _diagram_width(data)), 5.0))
    kernel_axes = figure.add_axes((0.02, 0.48, 0.96, 0.48))
    determinant_axes = figure.add_axes((0.3, 0.1, 0.4, 0.26))
    draw_figure1(kernel_axes, theta, kernel_size, rank)
    kernel = data["kernel"]
    coefficients = topology.symbol_determinant_1d(kernel)
    sign, d = topology.invariant_1d(kernel)
    sigma = conv_singular_values(kernel[:, :, None, :], (1, 16))
    determinant_axes.stem(range(len(coefficients)), coefficients)
    determinant_axes.set_ylim(-1.3, 1.3)
    determinant_axes.set_xticks(range(len(coefficients)))
    determinant_axes.set_xlabel("power of z")
    determinant_axes.set_ylabel("coefficient of det W(z)")
    determinant_axes.set_title(
        f"K = {kernel_size}, rank {rank}: det W = {'+' if sign > 0 else '−'}$z^{{{d}}}$; "
        f"σ ∈ [{float(sigma.min()):.3f}, {float(sigma.max()):.3f}]",
        fontsize=10,
    )
    return figure


def show_projector_explorer(theta: float = 0.0, kernel_size: int = 3, rank: int = 1) -> None:
    """Display :func:`draw_projector_explorer` once and close it: the callback for ``ipywidgets.interact``.

    Closing matters: a figure left open in pyplot is drawn again by the inline backend when the
    cell ends, a second copy outside the widget's output.
    """
    from IPython.display import display  # the `notebooks` extra

    figure = draw_projector_explorer(theta, kernel_size, rank)
    display(figure)
    plt.close(figure)
