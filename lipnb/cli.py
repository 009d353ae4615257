"""``python -m lipnb <experiment> --flag value ...``: the experiments from a shell, on one process or under torchrun.

Every field of the experiment's config is a flag, spelled as the notebook's parameter with dashes
for underscores (``--batch-size 256``, ``--data-root ../shared/data``, ``--attacks pgd,fgsm``);
unset flags keep the config's defaults. ``--batch-size`` is the global batch: under
``torchrun --nproc_per_node=N`` each process trains on its share of it (:mod:`lipnb.distributed`).
A bad value stops before anything runs, with one line naming it; rank 0 prints the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lipnb import distributed
from lipnb.data import DatasetNotFoundError
from lipnb.experiment import ExperimentConfig
from lipnb.robustness import RobustnessConfig, run_robustness
from lipnb.wasserstein import WassersteinConfig, run_wasserstein

EXPERIMENTS: dict[str, tuple[type[ExperimentConfig], Callable[..., dict]]] = {
    "robustness": (RobustnessConfig, run_robustness),
    "wasserstein": (WassersteinConfig, run_wasserstein),
}
_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "float | None": float}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lipnb", description=__doc__.splitlines()[0])
    experiments = parser.add_subparsers(dest="experiment", required=True, metavar="{robustness,wasserstein}")
    for name, (config_class, _) in EXPERIMENTS.items():
        summary = (config_class.__doc__ or name).splitlines()[0]
        sub = experiments.add_parser(name, help=summary, description=summary)
        for field in dataclasses.fields(config_class):
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]
            shown = ",".join(default) if isinstance(default, list) else default
            sub.add_argument(
                "--" + field.name.replace("_", "-"), dest=field.name, type=_TYPES.get(str(field.type), str),
                default=argparse.SUPPRESS, metavar=field.name.upper(), help=f"default: {shown}",
            )
        sub.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    experiment, progress = args.pop("experiment"), args.pop("progress")
    config_class, run = EXPERIMENTS[experiment]
    try:
        config = config_class(**args)
    except ValueError as error:
        parser.error(str(error))
    try:
        results = run(config, progress=progress)
        if distributed.is_main():
            print(summary(results))
            print(f"results: {config.out_dir}/results.json")
    except (ValueError, DatasetNotFoundError) as error:
        print(f"lipnb {experiment}: {error}", file=sys.stderr)
        return 1
    finally:
        distributed.teardown()
    return 0


def summary(results: dict) -> str:
    """One line of an experiment's results."""
    if results["experiment"] == "robustness":
        attacks = ", ".join(f"{name} {value:.2%}" for name, value in results["attacks"].items())
        return (
            f"clean {results['clean_accuracy']:.2%}, certified {results['certified_accuracy']:.2%} at "
            f"eps={results['eps']:g}, Lipschitz bound {results['lipschitz_bound']:.6f}"
            + (f", robust under {attacks}" if attacks else "")
        )
    return (
        f"W1 >= {results['estimate']:.4f} (95% CI {results['ci95'][0]:.4f} to {results['ci95'][1]:.4f}), "
        f"Lipschitz bound {results['lipschitz_bound']:.6f}"
    )
