"""Figures for the notebooks: thin matplotlib wrappers over results the library computes."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def plot_certified_curve(results: dict, ax: Axes | None = None) -> Axes:
    """Certified accuracy against ε from a run's ``results["certified_curve"]``, ε of the run marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    curve = results["certified_curve"]
    config = results["config"]
    label = f"{config['conv']} ({config['arch']}, {config['dataset']})"
    ax.plot(curve["eps"], [100 * a for a in curve["accuracy"]], label=label)
    ax.axvline(results["eps"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ε (L2)")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    return ax


def plot_spectra(spectra: dict[str, tuple[torch.Tensor, torch.Tensor]], bins: int = 40) -> Figure:
    """BCOP paper Figure 2: per method, histograms of singular values at init (blue) and trained (orange).

    ``spectra`` maps a method name to ``(at_init, trained)``; every panel shares the same bins and axes.
    """
    top = max(float(s.max()) for pair in spectra.values() for s in pair)
    edges = torch.linspace(0, max(top, 1.0) * 1.02, bins + 1).numpy()
    figure, axes = plt.subplots(1, len(spectra), figsize=(3.2 * len(spectra), 2.8), sharex=True, sharey=True)
    for ax, (name, (at_init, trained)) in zip(axes, spectra.items()):
        ax.hist(at_init.numpy(), bins=edges, color="tab:blue", alpha=0.6, label="initialization")
        ax.hist(trained.numpy(), bins=edges, color="tab:orange", alpha=0.6, label="trained")
        ax.set_title(name.upper())
        ax.set_xlabel("singular value")
    axes[0].set_ylabel("count")
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, directory: str | Path, name: str) -> list[Path]:
    """Save ``figure`` as PNG and PDF under ``directory``; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.{suffix}" for suffix in ("png", "pdf")]
    for path in paths:
        figure.savefig(path, bbox_inches="tight", dpi=150)
    return paths


def plot_critic_curve(results: dict, ax: Axes | None = None) -> Axes:
    """A Wasserstein run's critic training curve (batch gap E f(real) − E f(fake)) and its final estimate.

    The estimate (on fresh pairs, divided by the measured Lipschitz bound) is drawn as a band of its
    95% interval in the curve's colour; a known W1 (the known-answer pair) as a dashed line. Call
    it repeatedly on one ``ax`` to overlay runs.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    config = results["config"]
    steps = [point["step"] for point in results["history"]]
    label = f"{config['conv']} + {config['activation']}: W1 ≥ {results['estimate']:.4f}"
    line, = ax.plot(steps, [point["gap"] for point in results["history"]], label=label)
    ax.axhspan(*results["ci95"], color=line.get_color(), alpha=0.25)
    known = results.get("true_wasserstein")
    if known is not None and "true W1" not in ax.get_legend_handles_labels()[1]:
        ax.axhline(known, color="black", linestyle="--", linewidth=1, label="true W1")
    ax.set_xlabel("critic step")
    ax.set_ylabel("E f(real) − E f(generated)")
    ax.set_title(f"{config['dataset']}: training gap; band: estimate on fresh pairs (95%)", fontsize="medium")
    ax.legend(fontsize="small")
    return ax


def plot_image_grid(images: torch.Tensor, columns: int = 8, ax: Axes | None = None) -> Axes:
    """Images ``(N, C, H, W)`` in [0, 1] tiled into a grid (grayscale for one channel)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(columns * 0.6, (len(images) + columns - 1) // columns * 0.6))
    grid = make_grid(images.cpu(), nrow=columns, padding=1, pad_value=1.0)  # always 3 channels
    ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), vmin=0, vmax=1)
    ax.axis("off")
    return ax
