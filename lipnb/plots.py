"""Figures for the notebooks: thin matplotlib wrappers over results the library computes."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
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


def save_figure(figure: Figure, directory: str | Path, name: str) -> list[Path]:
    """Save ``figure`` as PNG and PDF under ``directory``; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.{suffix}" for suffix in ("png", "pdf")]
    for path in paths:
        figure.savefig(path, bbox_inches="tight", dpi=150)
    return paths
