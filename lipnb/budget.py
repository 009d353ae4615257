"""Every Lipschitz layer under one training budget: the protocol of "1-Lipschitz Layers Compared"
(Prach et al., CVPR 2024) at CPU scale.

Each conv kind gets the same wall-clock budget. Its epoch time is measured first (the median of
:data:`PROBE_STEPS` training steps of its own network on real batches, after
:data:`PROBE_WARMUP` unmeasured ones, times the steps per epoch); its number of epochs is the
budget divided by that time, at least one. The run is then an ordinary robustness run
(:func:`lipnb.robustness.run_robustness`: margin training with the learning rate schedule scaled to
those epochs, the measured Lipschitz bound, certification at the dataset's ε) without attacks,
whose certificates the robustness experiment already checks for every kind. ``results.json``
gains a ``budget`` entry: the budget, the probe's epoch time and the training time actually spent.

The network is the paper's ``small`` one (MaxMin) for the kinds that change width; SLL blocks keep
it, so ``sll`` trains the ``residual`` network (ReLU inside its blocks), of comparable size.

The plan (probe time and epochs) is written before training, so an interrupted comparison resumes
each run with the epochs it started with::

    python -m lipnb.budget --datasets mnist fashion-mnist --minutes 2 --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from lipnb._runs import unusable_file_error, write_json
from lipnb._validation import require_choice, require_positive_int
from lipnb.engine import SVCM_EVERY, project_svcm
from lipnb.layers import CONV_KINDS
from lipnb.models import RESIDUAL_BLOCK_KINDS
from lipnb.plots import save_figure
from lipnb.report import LABELS, render_table, results_frame, sort_table
from lipnb.robustness import RobustnessConfig, initial_model, run_robustness
from lipnb.train import MarginTask, resolve_device

BUDGET_KINDS: tuple[str, ...] = tuple(kind for kind in CONV_KINDS if kind != "plain")
"""The kinds compared by default: every Lipschitz conv of :mod:`lipnb.layers` (not ``plain``)."""
PROBE_WARMUP = 3
PROBE_STEPS = 20


@dataclass
class BudgetConfig:
    """One comparison: ``kinds`` trained on ``dataset`` for ``minutes`` each, results under ``<runs_dir>/budget``."""

    dataset: str = "mnist"
    kinds: list[str] = field(default_factory=lambda: list(BUDGET_KINDS))
    minutes: float = 2.0
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 128
    device: str = "auto"
    data_root: str | None = None
    runs_dir: str = "runs"

    def __post_init__(self) -> None:
        if isinstance(self.kinds, str):
            self.kinds = [kind.strip() for kind in self.kinds.split(",") if kind.strip()]
        if not self.kinds:
            raise ValueError("kinds is empty; name at least one conv kind, e.g. kinds=['bcop', 'aol']")
        for kind in self.kinds:
            require_choice("kind", kind, tuple(CONV_KINDS))
        require_positive_int("batch_size", self.batch_size)
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, (int, float)) or not (
            math.isfinite(self.minutes) and self.minutes > 0
        ):
            raise ValueError(f"minutes must be a finite number > 0; got {self.minutes!r}")
        self.run_config(self.kinds[0], epochs=1)  # validates dataset, device, lr and seed now, not mid-comparison

    def run_config(self, kind: str, epochs: int) -> RobustnessConfig:
        """The robustness run of ``kind`` for ``epochs``, in ``<runs_dir>/budget/<dataset>_<kind>_<minutes>min_seed<seed>``."""
        arch, activation = ("residual", "relu") if kind in RESIDUAL_BLOCK_KINDS else ("small", "maxmin")
        name = f"{self.dataset}_{kind}_{self.minutes:g}min_seed{self.seed}"
        return RobustnessConfig(
            dataset=self.dataset, arch=arch, conv=kind, activation=activation, epochs=epochs, attacks=[],
            lr=self.lr, batch_size=self.batch_size, seed=self.seed, device=self.device, data_root=self.data_root,
            runs_dir=self.runs_dir, out_dir=str(Path(self.runs_dir) / "budget" / name),
        )


def probe_epoch_seconds(config: RobustnessConfig, train_set: Dataset, steps: int = PROBE_STEPS) -> float:
    """The epoch time of ``config``'s network: the median of ``steps`` timed training steps × steps per epoch.

    The steps are those of the real run (:class:`lipnb.train.MarginTask`: forward, hinge loss,
    backward, Adam) on the first batches of its first epoch, on a throwaway copy of its network;
    SVCM's clippings (every ``SVCM_EVERY`` steps and after the epoch) are timed once and counted too.
    """
    device = resolve_device(config.device)
    model = initial_model(config)
    task = MarginTask(
        model, train_set, epochs=config.epochs, margin=config.margin, lr=config.lr, batch_size=config.batch_size,
        seed=config.seed, device=device,
    )
    model.train()
    batches = task.batches(0)
    times = []
    for index, shard in enumerate(batches):
        if index == PROBE_WARMUP + steps:
            break
        start = time.perf_counter()
        task.step(shard)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= PROBE_WARMUP:
            times.append(time.perf_counter() - start)
    steps_per_epoch = len(batches)
    start = time.perf_counter()
    project_svcm([model])  # nothing for kinds without SVCM layers; fit clips every SVCM_EVERY steps and per epoch
    projection = time.perf_counter() - start
    return statistics.median(times) * steps_per_epoch + projection * (steps_per_epoch // SVCM_EVERY + 1)


def run_kind(
    config: BudgetConfig, kind: str, data: tuple[Dataset, Dataset] | None = None, progress: bool = True
) -> dict:
    """Probe (or read the plan of) ``kind``, train it for its share of the budget, certify; the results."""
    probe = config.run_config(kind, epochs=1)
    data = data if data is not None else probe.load_data()
    plan_file = Path(probe.out_dir) / "plan.json"
    if plan_file.exists():
        plan = _read_plan(plan_file)
    else:
        epoch_seconds = probe_epoch_seconds(probe, data[0])
        epochs = max(1, math.floor(config.minutes * 60 / epoch_seconds))
        plan = {"minutes": config.minutes, "probe_epoch_seconds": epoch_seconds, "epochs": epochs}
        write_json(plan_file, plan)
    run = config.run_config(kind, plan["epochs"])
    results = run_robustness(run, data, progress)
    seconds = [epoch["seconds"] for epoch in results["history"]]
    results["budget"] = {**plan, "train_seconds": sum(seconds), "epoch_seconds": statistics.median(seconds)}
    write_json(Path(run.out_dir) / "results.json", results)
    return results


def _read_plan(path: Path) -> dict:
    """The plan written by :func:`run_kind`; a file that is not one fails with one line."""
    try:
        plan = json.loads(path.read_text())
        if not isinstance(plan, dict) or not {"minutes", "probe_epoch_seconds", "epochs"} <= plan.keys():
            raise ValueError("it lacks minutes, probe_epoch_seconds or epochs")
    except ValueError as error:
        raise unusable_file_error(path, error) from None
    return plan


def run_budget(config: BudgetConfig, progress: bool = True) -> list[dict]:
    """:func:`run_kind` for each of ``config.kinds`` in turn, on data loaded once."""
    data = config.run_config(config.kinds[0], epochs=1).load_data()
    return [run_kind(config, kind, data, progress) for kind in config.kinds]


BUDGET_METRICS = (
    "budget.epochs", "budget.epoch_seconds", "budget.train_seconds", "clean_accuracy", "certified_accuracy",
    "lipschitz_bound",
)


def budget_table(results: Iterable[Mapping]) -> pd.DataFrame:
    """One row per (dataset, kind): epochs, median epoch seconds, training seconds, clean and certified
    accuracy (fractions), the measured bound; ``eps`` as the index's last level."""
    frame = results_frame(results, ("dataset", "conv", "eps"), BUDGET_METRICS)
    if frame.duplicated(["dataset", "conv", "eps"]).any():
        raise ValueError("more than one budget run per dataset and kind; pass the runs of one budget and seed")
    return sort_table(frame.set_index(["dataset", "conv", "eps"]))


BUDGET_LABELS = {
    "budget.epochs": "Epochs",
    "budget.epoch_seconds": "Epoch (s)",
    "budget.train_seconds": "Training (min)",
    "lipschitz_bound": "Bound",
    "eps": "ε",
}


def render_budget_table(table: pd.DataFrame, fmt: str = "markdown") -> str:
    """:func:`budget_table` as Markdown or LaTeX (accuracies in %, training time in minutes)."""
    formats = {
        "budget.epochs": "{:.0f}",
        "budget.epoch_seconds": "{:.1f}",
        "budget.train_seconds": lambda seconds: f"{seconds / 60:.1f}",
        "lipschitz_bound": "{:.6f}",
    }
    return render_table(table, fmt, formats=formats, labels=BUDGET_LABELS)


def plot_budget(table: pd.DataFrame, minutes: float | None = None) -> Figure:
    """Certified accuracy of each kind against the training time it spent, a panel per dataset.

    Each point is labelled with its kind and clean accuracy; ``minutes`` draws the budget.
    """
    datasets = list(dict.fromkeys(table.index.get_level_values("dataset")))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.0), squeeze=False)
    colors = plt.get_cmap("tab10")
    kinds = list(dict.fromkeys(table.index.get_level_values("conv")))
    for ax, dataset in zip(axes[0], datasets):
        rows = table.xs(dataset, level="dataset")
        for (kind, eps), row in rows.iterrows():
            minutes_spent, certified = row["budget.train_seconds"] / 60, 100 * row["certified_accuracy"]
            ax.scatter(minutes_spent, certified, color=colors(kinds.index(kind) % 10))
            ax.annotate(f"{kind} ({100 * row['clean_accuracy']:.1f})", (minutes_spent, certified),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        if minutes is not None:
            ax.axvline(minutes, color="grey", linestyle="--", linewidth=1, label=f"budget: {minutes:g} min")
            ax.legend(loc="best", fontsize=8)
        eps = rows.index.get_level_values("eps")[0]
        ax.set_title(f"{LABELS.get(dataset, dataset)}: certified accuracy at ε = {eps:g} (clean in brackets)", fontsize=9)
        ax.set_xlabel("training time spent (minutes)")
        ax.set_ylabel("certified accuracy (%)")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train every kind under one budget per dataset, then write the table and the plot."""
    parser = argparse.ArgumentParser(prog="python -m lipnb.budget", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist"])
    parser.add_argument("--kinds", default=",".join(BUDGET_KINDS), help="comma-separated conv kinds")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget of each kind, in minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None, help="data root (default: $LIPNB_DATA)")
    parser.add_argument("--runs-dir", default="runs", help="runs go to <runs-dir>/budget")
    parser.add_argument("--figures-dir", type=Path, default=None, help="also write the table and the plot there")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        configs = [
            BudgetConfig(dataset, args.kinds, args.minutes, args.seed, device=args.device, data_root=args.data_root,
                         runs_dir=args.runs_dir)
            for dataset in args.datasets
        ]
    except ValueError as error:
        parser.error(str(error))
    results = [run for config in configs for run in run_budget(config, progress=not args.no_progress)]
    table = budget_table(results)
    print(render_budget_table(table))
    if args.figures_dir is not None:
        args.figures_dir.mkdir(parents=True, exist_ok=True)
        name = f"budget_{args.minutes:g}min"
        (args.figures_dir / f"{name}.md").write_text(render_budget_table(table) + "\n")
        (args.figures_dir / f"{name}.tex").write_text(render_budget_table(table, "latex") + "\n")
        for path in save_figure(plot_budget(table, args.minutes), args.figures_dir, name):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
