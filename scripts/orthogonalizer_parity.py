"""Accuracy parity of the default orthogonalizer against the paper's Björck iteration (issue: speed).

Trains MNIST Small and Large with ``conv="bcop"`` for each orthogonalizer and seed, certifies at
ε = 1.58 with the measured bound, and writes every run's ``results.json`` to
``<out>/<arch>_<epochs>ep_<orthogonalizer>_seed<seed>/``. A run whose ``results.json`` holds the same
configuration is reused; an interrupted one resumes from its checkpoint. The summary
``<out>/summary.json`` covers every run under ``<out>``, grouped by arch, epochs and orthogonalizer.

    LIPNB_DATA=../shared/data python scripts/orthogonalizer_parity.py --small-epochs 3 --large-epochs 1
    LIPNB_DATA=../shared/data python scripts/orthogonalizer_parity.py --archs large --large-epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lipnb.robustness import RobustnessConfig, run_robustness


def run_once(config: RobustnessConfig) -> dict:
    """The results of ``config``: read from its ``results.json`` if that run is finished, else trained."""
    path = Path(config.out_dir) / "results.json"
    if path.exists():
        finished = json.loads(path.read_text())
        if finished["config"] == json.loads(json.dumps(config.to_dict())):
            return finished
    return run_robustness(config, progress=False)


def summary_row(result: dict) -> dict:
    config = result["config"]
    return {"arch": config["arch"], "orthogonalizer": config["orthogonalizer"], "seed": config["seed"],
            "epochs": config["epochs"], "clean": result["clean_accuracy"], "certified": result["certified_accuracy"],
            "bound": result["lipschitz_bound"], "train_seconds": sum(epoch["seconds"] for epoch in result["history"]),
            "train_accuracy": [epoch["train_accuracy"] for epoch in result["history"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="small,large")
    parser.add_argument("--orthogonalizers", default="cholesky,bjorck")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--small-epochs", type=int, default=3)
    parser.add_argument("--large-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/parity"))
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    epochs_of = {"small": args.small_epochs, "large": args.large_epochs}
    for arch in args.archs.split(","):
        for orthogonalizer in args.orthogonalizers.split(","):
            for seed in map(int, args.seeds.split(",")):
                epochs = epochs_of[arch]
                config = RobustnessConfig(
                    conv="bcop", dataset="mnist", arch=arch, orthogonalizer=orthogonalizer, epochs=epochs, seed=seed,
                    attacks="", data_root=args.data_root,
                    out_dir=str(args.out / f"{arch}_{epochs}ep_{orthogonalizer}_seed{seed}"),
                )
                print(json.dumps(summary_row(run_once(config))), flush=True)
    runs = sorted((summary_row(json.loads(path.read_text())) for path in args.out.glob("*/results.json")),
                  key=lambda run: (run["arch"], run["epochs"], run["orthogonalizer"], run["seed"]))
    groups: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        group = groups.setdefault(f"{run['arch']} {run['epochs']}ep {run['orthogonalizer']}", {})
        for metric in ("clean", "certified", "train_seconds"):
            group.setdefault(metric, []).append(run[metric])
    table = {key: {metric: {"mean": statistics.mean(values), "values": values} for metric, values in metrics.items()}
             for key, metrics in groups.items()}
    (args.out / "summary.json").write_text(json.dumps({"runs": runs, "summary": table}, indent=2) + "\n")
    for key, metrics in table.items():
        print(key, {metric: round(value["mean"], 4) for metric, value in metrics.items()})


if __name__ == "__main__":
    main()
