"""What every experiment's configuration shares: its fields, their checks, its data and its run directory.

:class:`ExperimentConfig` is the base of :class:`lipnb.robustness.RobustnessConfig` and
:class:`lipnb.wasserstein.WassersteinConfig`. Constructing a config checks every value and fails
with one line naming the parameter and what it accepts, before any data is read or anything
trained. ``out_dir`` defaults to ``<runs_dir>/<experiment>/<run name>``; :meth:`settings` are
the values that decide the trained model, recorded in the run's checkpoint so that a run is
resumed only with the same ones (:func:`lipnb.engine.fit`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from torch.utils.data import Dataset

from lipnb._validation import require_choice, require_device, require_positive_int
from lipnb.data import DATASETS, load_dataset
from lipnb.layers import CONV_KINDS
from lipnb.models import ACTIVATIONS, orthogonalizer_options
from lipnb.orthogonal import DEFAULT_ORTHOGONALIZER
from lipnb.train import resolve_device


@dataclass
class ExperimentConfig:
    """Fields shared by every experiment; subclasses add theirs and name the run."""

    dataset: str = "digits"
    conv: str = "bcop"
    activation: str = "maxmin"
    orthogonalizer: str = DEFAULT_ORTHOGONALIZER
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    runs_dir: str = "runs"
    out_dir: str | None = None

    experiment: ClassVar[str] = ""
    datasets: ClassVar[tuple[str, ...]] = tuple(DATASETS)
    positive_ints: ClassVar[tuple[str, ...]] = ("batch_size",)
    resume_keys: ClassVar[tuple[str, ...]] = (
        "dataset", "conv", "activation", "orthogonalizer", "lr", "batch_size", "seed"
    )

    def __post_init__(self) -> None:
        require_choice("dataset", self.dataset, self.datasets)
        require_choice("conv", self.conv, tuple(CONV_KINDS))
        require_choice("activation", self.activation, tuple(ACTIVATIONS))
        orthogonalizer_options(self.conv, self.orthogonalizer)
        for name in self.positive_ints:
            require_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer; got {self.seed!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        require_device(self.device)
        resolve_device(self.device)  # a CUDA device on a machine without one fails here, not in training
        if self.out_dir is None:
            self.out_dir = os.path.join(self.runs_dir, self.experiment, self.run_name())

    def run_name(self) -> str:
        """The name of the run's directory under ``<runs_dir>/<experiment>``."""
        return f"{self.dataset}_{self.conv}_{self.activation}_seed{self.seed}"

    def settings(self) -> dict[str, Any]:
        """The values that decide the trained model (a checkpoint made with others is not resumed)."""
        return {key: getattr(self, key) for key in self.resume_keys}

    def layer_options(self) -> dict[str, Any]:
        """The ``layer_options`` of the network's layers."""
        return orthogonalizer_options(self.conv, self.orthogonalizer)

    def load_data(self) -> tuple[Dataset, Dataset]:
        """(train, test) sets; fails early with one line naming the dataset, where it looked and the fix."""
        return load_dataset(self.dataset, self.data_root, train=True), load_dataset(self.dataset, self.data_root, train=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
