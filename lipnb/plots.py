"""Figures for the notebooks: thin matplotlib wrappers over results the library computes."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


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
