"""Regenerate the paper's figures and tables: every notebook through papermill, then the tables.

    python -m lipnb.figures --dataset mnist --data-root ../shared/data --epochs 200 --device cuda

runs ``notebooks/projector_topology.ipynb`` (Figure 1, Theorems 1–3), optionally the robustness
notebook for every conv kind (``--robustness``: Table 1 runs into ``results/robustness``) and the
Wasserstein notebook for BCOP/RKO/OSSN × MaxMin/ReLU critics (``--wasserstein``: Table 4 runs into
``results/wasserstein``), ``notebooks/singular_values.ipynb`` (Figure 2, reusing trained Large
models), and writes Tables 1 and 4 (Markdown and LaTeX), the certified-accuracy curves and the
critic training curves from the ``results.json`` files under ``results/`` into ``figures/``.
Executed notebooks are kept in ``runs/notebooks`` for inspection. Runs resume from their checkpoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from lipnb.plots import plot_certified_curve, plot_critic_curve, save_figure
from lipnb.report import (
    CONV_ORDER,
    comparison_table,
    load_results,
    paper_table4,
    render_table,
    summary_table,
    wasserstein_table,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TABLE_METRICS = (
    "clean_accuracy", "certified_accuracy", "attacks.pgd", "attacks.fgsm", "attacks.boundary", "attacks.pointwise",
)
CRITIC_CONVS = ("bcop", "rko", "ossn")  # Table 4's rows
CRITIC_ACTIVATIONS = ("maxmin", "relu")


def run_notebook(name: str, parameters: dict, runs_dir: Path) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with ``parameters`` (cwd: the repository root)."""
    import papermill  # the `notebooks` extra

    runs_dir.mkdir(parents=True, exist_ok=True)
    tag = "_".join(str(v) for k, v in parameters.items() if k in ("conv", "dataset", "arch", "activation"))
    output = runs_dir / f"{name}{'_' + tag if tag else ''}.ipynb"
    print(f"running {name} with {parameters} -> {output}")
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(output), parameters=parameters, cwd=str(ROOT))
    return output


def write_tables(results_dir: Path, figures_dir: Path) -> list[Path]:
    """Table 1 (all metrics) and Table 4, each also beside the paper's, as Markdown and LaTeX.

    From ``results_dir/robustness`` and ``results_dir/wasserstein``: other runs kept in
    ``results_dir`` (the orthogonalizer parity runs) are trained differently and not pooled in.
    """
    tables = {}  # name: (table, decimals of its numbers other than accuracies)
    if robustness := _runs(results_dir, "robustness"):
        autoattack = ("attacks.autoattack",) if any("autoattack" in run.get("attacks", {}) for run in robustness) else ()
        tables["table1"] = (summary_table(robustness, metrics=(*TABLE_METRICS, *autoattack)), 4)
        tables["table1_vs_paper"] = (comparison_table(robustness), 4)
    if wasserstein := _runs(results_dir, "wasserstein"):
        tables["table4"] = (wasserstein_table(wasserstein), 4)
        tables["table4_paper"] = (paper_table4(), 2)  # as the paper prints them
    figures_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (table, decimals) in tables.items():
        for suffix, fmt in (("md", "markdown"), ("tex", "latex")):
            path = figures_dir / f"{name}.{suffix}"
            path.write_text(render_table(table, fmt, decimals=decimals) + "\n")
            written.append(path)
    return written


def _runs(results_dir: Path, experiment: str) -> list[dict]:
    """The runs of ``experiment`` under ``results_dir/<experiment>`` (none if it does not exist)."""
    directory = results_dir / experiment
    return load_results(directory, experiment, allow_none=True) if directory.is_dir() else []


def write_certified_curves(results_dir: Path, figures_dir: Path) -> list[Path]:
    """One certified-accuracy-vs-ε figure per (dataset, arch), every conv kind overlaid, from ``results_dir/robustness``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in _runs(results_dir, "robustness"):
        if "certified_curve" in run:
            groups.setdefault((run["config"]["dataset"], run["config"]["arch"]), []).append(run)
    written = []
    for (dataset, arch), runs in groups.items():
        figure, ax = plt.subplots(figsize=(5, 3.5))
        for run in sorted(runs, key=lambda r: CONV_ORDER.index(r["config"]["conv"])):
            plot_certified_curve(run, ax)
        ax.set_title(f"{dataset}, {arch}")
        written += save_figure(figure, figures_dir, f"certified_accuracy_{dataset}_{arch}")
        plt.close(figure)
    return written


def write_critic_curves(results_dir: Path, figures_dir: Path) -> list[Path]:
    """One figure per dataset from ``results_dir/wasserstein``: every critic's training curve and its estimate band."""
    groups: dict[str, list[dict]] = {}
    for run in _runs(results_dir, "wasserstein"):
        groups.setdefault(run["config"]["dataset"], []).append(run)
    written = []
    for dataset, runs in groups.items():
        figure, ax = plt.subplots(figsize=(6, 4))
        for run in sorted(runs, key=lambda r: (CONV_ORDER.index(r["config"]["conv"]), r["config"]["activation"])):
            plot_critic_curve(run, ax)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
        written += save_figure(figure, figures_dir, f"wasserstein_critics_{dataset}")
        plt.close(figure)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="dataset of the trained figures (default: digits)")
    parser.add_argument("--data-root", default=None, help="data root (default: $LIPNB_DATA)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of each network")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--robustness", action="store_true", help="also run the Table 1 robustness runs")
    parser.add_argument("--wasserstein", action="store_true", help="also run the Table 4 Wasserstein runs")
    parser.add_argument("--gan-epochs", type=int, default=20, help="WGAN-GP epochs of the generator (--wasserstein)")
    parser.add_argument("--critic-steps", type=int, default=500, help="training steps of each critic (--wasserstein)")
    parser.add_argument("--tables-only", action="store_true",
                        help="only rewrite the tables and curves from the results.json files (run no notebook)")
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "figures")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "notebooks")
    args = parser.parse_args(argv)
    figures_dir, results_dir = args.figures_dir.resolve(), args.results_dir.resolve()
    common = {"dataset": args.dataset, "epochs": args.epochs, "device": args.device, "data_root": args.data_root}
    if not args.tables_only:
        run_notebooks(args, common, figures_dir, results_dir)
    if any(results_dir.rglob("results.json")):
        written = write_tables(results_dir, figures_dir) + write_certified_curves(results_dir, figures_dir)
        for path in written + write_critic_curves(results_dir, figures_dir):
            print(f"wrote {path}")


def run_notebooks(args: argparse.Namespace, common: dict, figures_dir: Path, results_dir: Path) -> None:
    """Figure 1, the optional Table 1 and Table 4 runs, then Figure 2."""
    run_notebook("projector_topology", {"fig_dir": str(figures_dir)}, args.runs_dir)
    if args.robustness:
        for conv in ("bcop", "rko", "ossn", "svcm", "plain"):
            run_notebook("robustness", {**common, "conv": conv, "runs_dir": str(results_dir)}, args.runs_dir)
    if args.wasserstein:
        for conv in CRITIC_CONVS:
            for activation in CRITIC_ACTIVATIONS:
                parameters = {
                    "dataset": args.dataset, "conv": conv, "activation": activation, "gan_epochs": args.gan_epochs,
                    "critic_steps": args.critic_steps, "device": args.device, "data_root": args.data_root,
                    "checkpoint_dir": str(ROOT / "runs" / "wasserstein" / "generators"), "runs_dir": str(results_dir),
                }
                run_notebook("wasserstein", parameters, args.runs_dir)
    run_notebook(
        "singular_values",
        {**common, "runs_dir": str(results_dir), "fig_dir": str(figures_dir)},
        args.runs_dir,
    )


if __name__ == "__main__":
    main()
