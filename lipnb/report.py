"""Collect runs (``results.json`` files) into tables like the paper's Table 1 and Table 4.

Robustness runs: each config names the conv, architecture, dataset and seed; runs that share
every grouping key *and* eps are pooled over seeds and shown as ``mean ± std``. Wasserstein runs
(:mod:`lipnb.wasserstein`) are laid out like Table 4: convs by rows, (dataset, activation) by columns.

    python -m lipnb.report results/ --format latex --metrics clean_accuracy attacks.pgd
    python -m lipnb.report results/wasserstein --wasserstein
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The keys every ``results.json`` of each experiment has; a run without ``"experiment"`` is a robustness run.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "robustness": ("config", "clean_accuracy", "certified_accuracy", "eps"),
    "wasserstein": ("config", "estimate", "lipschitz_bound"),
}

#: Row order of the conv column; convs not listed here follow, alphabetically.
CONV_ORDER = ("bcop", "rko", "ossn", "svcm", "plain")
#: Column order of the datasets in :func:`wasserstein_table` (the paper's first, the known answer last).
DATASET_ORDER = ("stl10", "cifar10", "mnist", "fashion-mnist", "digits", "gaussian-shift")

LABELS = {
    "dataset": "Dataset",
    "arch": "Arch",
    "conv": "Conv",
    "clean_accuracy": "Clean",
    "certified_accuracy": "Certified",
    "attacks.pgd": "PGD",
    "attacks.fgsm": "FGSM",
    "attacks.boundary": "BA",
    "attacks.pointwise": "PA",
    "lipschitz_bound": "Lipschitz bound",
    "maxmin": "MaxMin",
    "relu": "ReLU",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "stl10": "STL-10",
    "gaussian-shift": "Gaussian shift",
}

MISSING = "—"
Key = tuple[str, str, str]


@dataclass
class Table:
    """Column names and rows of cells (strings, ints or floats); ``None`` renders as ``—``."""

    columns: list[str]
    rows: list[list]

    def to_records(self) -> list[dict]:
        """One dict per row, keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_markdown(self) -> str:
        """A GitHub-flavoured markdown table, columns padded to line up."""
        cells = [self.columns] + [[_text(c) for c in row] for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def to_latex(self) -> str:
        """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
        def line(row: Sequence) -> str:
            return " & ".join(_latex_escape(_text(c)) for c in row) + r" \\"

        return "\n".join([
            r"\begin{tabular}{" + "l" * len(self.columns) + "}",
            r"\toprule",
            line(self.columns),
            r"\midrule",
            *(line(row) for row in self.rows),
            r"\bottomrule",
            r"\end{tabular}",
        ])

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _text(cell: object) -> str:
    if cell is None:
        return MISSING
    if isinstance(cell, float):
        return f"{cell:g}"
    return str(cell)


def _latex_escape(text: str) -> str:
    for char in "_%&#":
        text = text.replace(char, "\\" + char)
    return text.replace("±", r"$\pm$").replace(MISSING, "---")


def load_results(
    paths_or_dirs: Iterable[str | Path] | str | Path, experiment: str = "robustness", *, allow_none: bool = False
) -> list[dict]:
    """Read the runs of ``experiment`` from files and/or directories (searched recursively for ``results.json``).

    Runs of other experiments are skipped. Raises ``ValueError`` naming the file for invalid JSON
    or missing keys (:data:`REQUIRED_KEYS`), and naming the paths searched when nothing is found
    (unless ``allow_none``, which returns an empty list).
    """
    if experiment not in REQUIRED_KEYS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {', '.join(map(repr, REQUIRED_KEYS))}")
    if isinstance(paths_or_dirs, (str, Path)):
        paths_or_dirs = [paths_or_dirs]
    roots = [Path(p) for p in paths_or_dirs]
    files: dict[Path, None] = {}  # ordered, without duplicates
    for root in roots:
        if root.is_dir():
            files.update(dict.fromkeys(sorted(root.rglob("results.json"))))
        elif root.is_file():
            files[root] = None
        else:
            raise ValueError(f"{root}: no such file or directory")
    runs = [run for file in files if (run := _read_run(file, experiment)) is not None]
    if not runs and not allow_none:
        searched = ", ".join(str(r) for r in roots) or "(nothing)"
        raise ValueError(f"no results.json of a {experiment} run found in {searched}")
    return runs


def _read_run(file: Path, experiment: str) -> dict | None:
    """The run in ``file`` if it belongs to ``experiment``, else ``None``; malformed files raise."""
    try:
        run = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(run, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(run).__name__}")
    if run.get("experiment", "robustness") != experiment:
        return None
    missing = [key for key in REQUIRED_KEYS[experiment] if key not in run]
    if missing:
        raise ValueError(f"{file}: missing required key(s) {', '.join(missing)}")
    if not isinstance(run["config"], dict):
        raise ValueError(f"{file}: 'config' must be a JSON object")
    return run


def _metric(run: Mapping, path: str) -> float | None:
    """The number at dotted ``path`` (e.g. ``attacks.pgd``) in ``run``, or ``None``."""
    value: object = run
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _sort_value(key: str, value: object) -> tuple:
    if key == "conv" and value in CONV_ORDER:
        return (0, CONV_ORDER.index(value), "")
    if isinstance(value, (int, float)):
        return (1, value, "")
    return (2, 0, str(value))


def _groups(results: Iterable[Mapping], by: Sequence[str]) -> list[tuple[tuple, float, list[Mapping]]]:
    """Runs pooled by their ``by`` config values and eps, as ``(values, eps, runs)``, sorted."""
    groups: dict[tuple, list[Mapping]] = {}
    for run in results:
        key = (*(run["config"].get(k) for k in by), float(run["eps"]))
        groups.setdefault(key, []).append(run)

    def order(key: tuple) -> tuple:
        return tuple(_sort_value(k, v) for k, v in zip((*by, "eps"), key))

    return [(key[:-1], key[-1], groups[key]) for key in sorted(groups, key=order)]


def _is_accuracy(metric: str) -> bool:
    """Accuracies (fractions) are the metrics shown in percent; others, e.g. the Lipschitz bound, are not."""
    return metric.endswith("accuracy") or metric.startswith("attacks.")


def _mean_std(runs: Sequence[Mapping], metric: str, percent: bool) -> str | None:
    """``metric`` over ``runs`` as ``mean ± std`` (sample std), just the mean for one value,
    ``None`` when no run has it."""
    values = [v for run in runs if (v := _metric(run, metric)) is not None]
    if not values:
        return None
    scale, fmt = (100.0, ".2f") if percent else (1.0, ".4f")
    scaled = [v * scale for v in values]
    mean = format(statistics.fmean(scaled), fmt)
    return mean if len(scaled) == 1 else f"{mean} ± {format(statistics.stdev(scaled), fmt)}"


def summary_table(
    results: Iterable[Mapping],
    by: Sequence[str] = ("dataset", "arch", "conv"),
    metrics: Sequence[str] = ("clean_accuracy", "certified_accuracy"),
    percent: bool = True,
) -> Table:
    """Runs grouped by the ``by`` config keys and eps, each metric as ``mean ± std`` over seeds.

    Metrics are top-level keys or dotted paths (``attacks.pgd``); runs lacking a metric are left
    out of that cell. ``percent`` shows accuracies ×100 (two decimals). Rows are sorted by
    the ``by`` keys, convs in :data:`CONV_ORDER`.
    """
    columns = [LABELS.get(k, k) for k in by] + ["eps", "n"] + [LABELS.get(m, m) for m in metrics]
    rows = []
    for values, eps, runs in _groups(results, by):
        rows.append([*values, eps, len(runs), *(_mean_std(runs, m, percent and _is_accuracy(m)) for m in metrics)])
    return Table(columns, rows)


def paper_table1() -> dict[Key, tuple[float, float]]:
    """Clean and certified accuracy (%) reported in the BCOP paper's Table 1.

    Only MNIST, Small architecture, certified at eps = 1.58, keyed by (dataset, arch, conv).
    """
    return {
        ("mnist", "small", "ossn"): (96.86, 42.95),
        ("mnist", "small", "rko"): (97.28, 43.58),
        ("mnist", "small", "svcm"): (97.24, 28.94),
        ("mnist", "small", "bcop"): (97.54, 45.84),
    }


def comparison_table(
    results: Iterable[Mapping], reference: Mapping[Key, tuple[float, float]] | None = None
) -> Table:
    """Our clean/certified accuracy (%) beside the reference's, for runs that have a reference.

    ``reference`` defaults to :func:`paper_table1`; check the eps column against the eps the
    reference was certified at.
    """
    reference = paper_table1() if reference is None else reference
    by = ("dataset", "arch", "conv")
    columns = ["Dataset", "Arch", "Conv", "eps", "n"]
    columns += ["Clean", "Clean (paper)", "Certified", "Certified (paper)"]
    rows = []
    for values, eps, runs in _groups(results, by):
        if values not in reference:
            continue
        clean, certified = (_mean_std(runs, m, percent=True) for m in ("clean_accuracy", "certified_accuracy"))
        paper_clean, paper_certified = (f"{x:.2f}" for x in reference[values])
        rows.append([*values, eps, len(runs), clean, paper_clean, certified, paper_certified])
    return Table(columns, rows)


def wasserstein_table(results: Iterable[Mapping], metric: str = "estimate") -> Table:
    """Table 4's layout: a row per conv, a column per (dataset, activation), ``mean ± std`` over seeds.

    ``metric`` is ``"estimate"`` (the W1 lower bound, already divided by the measured Lipschitz
    bound) or any other number in the runs, e.g. ``"lipschitz_bound"``.
    """
    cells: dict[tuple, list[Mapping]] = {}
    for run in results:
        config = run["config"]
        cells.setdefault((config["conv"], config["dataset"], config["activation"]), []).append(run)
    convs = sorted({key[0] for key in cells}, key=lambda c: _sort_value("conv", c))
    def column_order(key: tuple) -> tuple:
        dataset, activation = key
        known = DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER)
        return (known, str(dataset), activation != "maxmin", str(activation))

    columns = sorted({key[1:] for key in cells}, key=column_order)
    header = ["Conv"] + [f"{LABELS.get(d, d)} {LABELS.get(a, a)}" for d, a in columns]
    rows = [
        [conv] + [_mean_std(cells[(conv, *column)], metric, percent=False) if (conv, *column) in cells else None
                  for column in columns]
        for conv in convs
    ]
    return Table(header, rows)


def paper_table4() -> Table:
    """The BCOP paper's Table 4 W1 lower bounds with MaxMin critics (its ReLU columns are not reproduced here).

    Compare rankings rather than values: GAN images are commonly scaled to [−1, 1], where every
    distance is twice what it is in lipnb's [0, 1] pixels, and the datasets differ from ours.
    """
    return Table(
        ["Conv", "STL-10 MaxMin", "CIFAR-10 MaxMin"],
        [["bcop", "9.91", "5.34"], ["rko", "8.95", "4.95"], ["ossn", "7.39", "3.29"]],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print a summary (or ``--compare``) table of the runs under the given paths."""
    parser = argparse.ArgumentParser(prog="python -m lipnb.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="results.json files or directories to search")
    parser.add_argument("--format", choices=("markdown", "latex"), default="markdown")
    parser.add_argument("--metrics", nargs="+", default=["clean_accuracy", "certified_accuracy"],
                        help="top-level keys or dotted paths, e.g. attacks.pgd")
    parser.add_argument("--by", nargs="+", default=["dataset", "arch", "conv"],
                        help="config keys to group by")
    parser.add_argument("--compare", action="store_true", help="our numbers beside the paper's Table 1")
    parser.add_argument("--wasserstein", action="store_true",
                        help="Wasserstein runs as Table 4 (W1 lower bounds; --metrics picks one other number)")
    args = parser.parse_args(argv)
    try:
        results = load_results(args.paths, "wasserstein" if args.wasserstein else "robustness")
    except ValueError as err:
        parser.error(str(err))
    if args.wasserstein:
        metric = args.metrics[0] if args.metrics != parser.get_default("metrics") else "estimate"
        table = wasserstein_table(results, metric)
    elif args.compare:
        table = comparison_table(results)
    else:
        table = summary_table(results, args.by, args.metrics)
    print(table.to_latex() if args.format == "latex" else table.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
