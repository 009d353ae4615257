"""Accuracy parity of the default orthogonalizer against the paper's Björck iteration (issue: speed).

Trains MNIST Small and Large with ``conv="bcop"`` for each orthogonalizer and seed, certifies at
ε = 1.58 with the measured bound, and writes every run's ``results.json`` plus a summary
``results/parity/summary.json``. Finished runs are reused, interrupted ones resume.

    LIPNB_DATA=../shared/data python scripts/orthogonalizer_parity.py --small-epochs 3 --large-epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lipnb.robustness import RobustnessConfig, run_robustness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orthogonalizers", default="cholesky,bjorck")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--small-epochs", type=int, default=3)
    parser.add_argument("--large-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/parity"))
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    runs = []
    for arch, epochs in (("small", args.small_epochs), ("large", args.large_epochs)):
        for orthogonalizer in args.orthogonalizers.split(","):
            for seed in map(int, args.seeds.split(",")):
                config = RobustnessConfig(
                    conv="bcop", dataset="mnist", arch=arch, orthogonalizer=orthogonalizer, epochs=epochs, seed=seed,
                    attacks="", data_root=args.data_root, out_dir=str(args.out / f"{arch}_{orthogonalizer}_seed{seed}"),
                )
                result = run_robustness(config, progress=False)
                seconds = sum(epoch["seconds"] for epoch in result["history"])
                runs.append({"arch": arch, "orthogonalizer": orthogonalizer, "seed": seed, "epochs": epochs,
                             "clean": result["clean_accuracy"], "certified": result["certified_accuracy"],
                             "bound": result["lipschitz_bound"], "train_seconds": seconds})
                print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for run in runs:
        key = f"{run['arch']} {run['orthogonalizer']}"
        summary.setdefault(key, {"clean": [], "certified": [], "train_seconds": []})
        for metric in ("clean", "certified", "train_seconds"):
            summary[key][metric].append(run[metric])
    table = {key: {metric: {"mean": statistics.mean(values), "values": values} for metric, values in metrics.items()}
             for key, metrics in summary.items()}
    (args.out / "summary.json").write_text(json.dumps({"runs": runs, "summary": table}, indent=2) + "\n")
    for key, metrics in table.items():
        print(key, {metric: round(value["mean"], 4) for metric, value in metrics.items()})


if __name__ == "__main__":
    main()
