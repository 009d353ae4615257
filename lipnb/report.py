"""Collect runs (``results.json`` files) into pandas tables like the paper's Table 1 and Table 4.

Every table is a :class:`pandas.DataFrame` of numbers, in the units of ``results.json``
(accuracies as fractions). Robustness runs: each config names the conv, architecture, dataset and
seed; runs that share every grouping key *and* eps are pooled over seeds. The index is the grouping
keys; the columns are a two-level index ``(metric, statistic)``, as ``groupby(...).agg(["mean",
"std"])`` gives: ``(metric, "mean")``, ``(metric, "std")`` (sample std, NaN for one run), the
paper's ``(metric, "paper")`` where a comparison has it, and the run count ``("n", "")``, so
``table["clean_accuracy"]`` is a metric's statistics and ``table["n"]`` the counts. Wasserstein
runs (:mod:`lipnb.wasserstein`) are laid out like Table 4: a row per conv, columns ``(dataset,
activation, statistic)``. :func:`render_table` is the one place numbers become text: percent,
decimals, ``mean ± std``, Markdown (via ``tabulate``) and LaTeX (booktabs, via jinja2).

    python -m lipnb.report results/ --format latex --metrics clean_accuracy attacks.pgd
    python -m lipnb.report results/wasserstein --wasserstein
"""

from __future__ import annotations

import argparse
import json
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The keys every ``results.json`` of each experiment has; a run without ``"experiment"`` is a robustness run.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "robustness": ("config", "clean_accuracy", "certified_accuracy", "eps"),
    "wasserstein": ("config", "estimate", "lipschitz_bound"),
}

#: Row order of the conv column; convs not listed here follow, alphabetically.
CONV_ORDER = ("bcop", "rko", "ossn", "svcm", "cayley", "soc", "aol", "sll", "plain")
#: Order of the datasets (the paper's first, the known answer last); others follow, alphabetically.
DATASET_ORDER = ("stl10", "cifar10", "mnist", "fashion-mnist", "digits", "gaussian-shift")
#: Order of the values of each index level of the tables (numbers, then other names, follow).
ORDERS: dict[str, Sequence] = {
    "conv": CONV_ORDER,
    "dataset": DATASET_ORDER,
    "activation": ("maxmin",),
    "statistic": ("", "mean", "std", "paper", "n"),
}

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
    "attacks.autoattack": "AutoAttack",
    "lipschitz_bound": "Lipschitz bound",
    "maxmin": "MaxMin",
    "relu": "ReLU",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "stl10": "STL-10",
    "gaussian-shift": "Gaussian shift",
}

#: How :func:`render_table` shows a missing number (``---`` in LaTeX).
MISSING = "—"
#: The statistics of a pooled metric, in column order.
STATISTICS = ("mean", "std")
Key = tuple[str, str, str]
#: A column's format in :func:`render_table`: a ``str.format`` pattern such as ``"{:.2f}×"`` or a function.
CellFormat = str | Callable[[Any], str]
_LATEX_AFTER_ESCAPE = {"±": r"$\pm$", MISSING: "---"}


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


def _is_missing(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _sort_value(value: object, order: Sequence) -> tuple:
    """Values listed in ``order`` first, in that order, then numbers, then the rest by name; missing values last."""
    if _is_missing(value):
        return (3, 0, "")
    if value in order:
        return (0, order.index(value), "")
    if isinstance(value, numbers.Real):
        return (1, value, "")
    return (2, 0, str(value))


def sort_table(table: pd.DataFrame, axis: int = 0, orders: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """``table`` sorted along ``axis``, each level by :func:`_sort_value` in its order of :data:`ORDERS` or ``orders``.

    A MultiIndex gets its levels in that order too, so it stays lexsorted as shown and partial
    indexing (``table.loc["mnist"]``, ``table["mnist", "maxmin"]``) is fast and silent.
    """
    orders = {**ORDERS, **(orders or {})}
    index = table.axes[axis]
    if isinstance(index, pd.MultiIndex):
        levels = [
            sorted(level, key=lambda value, name=name: _sort_value(value, orders.get(name, ())))
            for name, level in zip(index.names, index.levels)
        ]
        codes = [pd.Index(level).get_indexer(index.get_level_values(i)) for i, level in enumerate(levels)]
        index = pd.MultiIndex(levels=levels, codes=codes, names=index.names)
        positions = np.lexsort([np.where(c < 0, len(level), c) for c, level in zip(codes[::-1], levels[::-1])])
    else:
        order = orders.get(index.name, ())
        positions = sorted(range(len(index)), key=lambda i: _sort_value(index[i], order))
    return table.set_axis(index, axis=axis).take(positions, axis=axis)


def results_frame(
    results: Iterable[Mapping],
    keys: Sequence[str] = ("dataset", "arch", "conv", "seed"),
    metrics: Sequence[str] = ("eps", "clean_accuracy", "certified_accuracy"),
) -> pd.DataFrame:
    """One row per run: its config values of ``keys``, then its ``metrics`` (NaN where a run lacks one).

    Metrics are top-level keys or dotted paths such as ``attacks.pgd``.
    """
    rows = [[run["config"].get(key) for key in keys] + [_metric(run, m) for m in metrics] for run in results]
    frame = pd.DataFrame(rows, columns=[*keys, *metrics])
    return frame.astype({metric: float for metric in metrics})


def _pool(frame: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """The rows of ``frame`` grouped by ``keys`` (sorted): the run count ``n``, each metric's mean and std."""
    groups = frame.groupby(list(keys), sort=False, dropna=False)
    pooled = groups[list(metrics)].agg(list(STATISTICS))
    pooled.insert(0, ("n", ""), groups.size())
    pooled.columns.names = ["metric", "statistic"]
    return sort_table(sort_table(pooled), axis=1, orders={"metric": ("n", *metrics)})


def summary_table(
    results: Iterable[Mapping],
    by: Sequence[str] = ("dataset", "arch", "conv"),
    metrics: Sequence[str] = ("clean_accuracy", "certified_accuracy"),
) -> pd.DataFrame:
    """Runs grouped by the ``by`` config keys and eps: ``n``, and each metric's mean and std over seeds.

    Index: ``(*by, "eps")``, sorted, convs in :data:`CONV_ORDER`. Columns: ``("n", "")``, then
    ``(metric, "mean")`` and ``(metric, "std")`` per metric (fractions, as in the runs). Metrics are
    top-level keys or dotted paths (``attacks.pgd``); runs lacking a metric are left out of its mean.
    """
    results = list(results)
    _require_seeds_of_one_setting(results, (*by, "eps"))
    frame = results_frame(results, by, ("eps", *metrics))
    return _pool(frame, (*by, "eps"), metrics)


POOLED_SETTINGS = ("epochs", "orthogonalizer", "activation", "batch_size", "lr")
"""Settings that runs pooled as seeds of one table row must share (when they record them)."""


def _require_seeds_of_one_setting(results: Sequence[Mapping], keys: Sequence[str]) -> None:
    """Refuse to average runs of one row that were trained differently: they are not seeds of one setting."""
    groups: dict[tuple, list[Mapping]] = {}
    for run in results:
        groups.setdefault(tuple(run["config"].get(k, run.get(k)) for k in keys), []).append(run)
    for key, runs in groups.items():
        for setting in POOLED_SETTINGS:
            values = sorted({repr(run["config"].get(setting)) for run in runs})
            if len(values) > 1:
                raise ValueError(
                    f"the runs of row {key} differ in {setting} ({', '.join(values)}): they are not seeds of one "
                    f"setting; add {setting!r} to the table's keys (by=...), or load their results separately"
                )


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
) -> pd.DataFrame:
    """Our clean and certified accuracy beside the reference's, for the runs that have a reference.

    :func:`summary_table`'s layout with a ``(metric, "paper")`` column after each metric's mean and
    std; the reference's percentages (``reference`` defaults to :func:`paper_table1`) become fractions
    like ours. Check the eps level against the eps the reference was certified at.
    """
    reference = paper_table1() if reference is None else reference
    metrics = ("clean_accuracy", "certified_accuracy")
    table = summary_table(results, ("dataset", "arch", "conv"), metrics)
    keys = [values[:3] for values in table.index]
    table = table[[key in reference for key in keys]].copy()
    for position, metric in enumerate(metrics):
        table[(metric, "paper")] = [reference[key][position] / 100 for key in keys if key in reference]
    return sort_table(table, axis=1, orders={"metric": ("n", *metrics)})


def wasserstein_table(results: Iterable[Mapping], metric: str = "estimate") -> pd.DataFrame:
    """Table 4's layout: a row per conv, columns ``(dataset, activation, statistic)``, statistic mean, std or n.

    ``metric`` is ``"estimate"`` (the W1 lower bound, already divided by the measured Lipschitz
    bound) or any other number in the runs, e.g. ``"lipschitz_bound"``; ``n`` counts a cell's runs
    (0 where a conv has no run of that dataset and activation).
    """
    keys = ("conv", "dataset", "activation")
    groups = results_frame(results, keys, (metric,)).groupby(list(keys), dropna=False)
    cells = groups[metric].agg([*STATISTICS, "size"])
    cells = cells.rename(columns={"size": "n"}).rename_axis(columns="statistic")
    table = cells.unstack(["dataset", "activation"]).reorder_levels(["dataset", "activation", "statistic"], axis=1)
    counts = [column for column in table.columns if column[-1] == "n"]
    table[counts] = table[counts].fillna(0).astype(int)
    return sort_table(sort_table(table), axis=1)


def paper_table4() -> pd.DataFrame:
    """The BCOP paper's Table 4 W1 lower bounds with MaxMin critics (its ReLU columns are not reproduced here).

    A row per conv, columns ``(dataset, activation, "paper")`` to sit beside :func:`wasserstein_table`'s.
    Compare rankings rather than values: GAN images are commonly scaled to [−1, 1], where every
    distance is twice what it is in lipnb's [0, 1] pixels, and the datasets differ from ours.
    """
    columns = pd.MultiIndex.from_tuples(
        [("stl10", "maxmin", "paper"), ("cifar10", "maxmin", "paper")], names=["dataset", "activation", "statistic"]
    )
    convs = pd.Index(["bcop", "rko", "ossn"], name="conv")
    return pd.DataFrame([[9.91, 5.34], [8.95, 4.95], [7.39, 3.29]], convs, columns)


def _is_accuracy(metric: object) -> bool:
    """Accuracies (fractions) are the metrics shown in percent; others, e.g. the Lipschitz bound, are not."""
    return isinstance(metric, str) and (metric.endswith("accuracy") or metric.startswith("attacks."))


def _text(value: object, spec: CellFormat | None = None, scale: float = 1.0, decimals: int = 4) -> str:
    """One cell: ``spec`` applied, else an int as is, a float scaled to ``decimals``, anything else as ``str``."""
    if _is_missing(value):
        return MISSING
    if callable(spec):
        return spec(value)
    if spec is not None:
        return spec.format(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{value * scale:.{decimals}f}"
    return str(value)


def _column_groups(columns: pd.Index) -> dict[tuple, dict[object, object]]:
    """The columns by all but their last level (one group per column of a flat index), each ``{statistic: column}``."""
    groups: dict[tuple, dict[object, object]] = {}
    for column in columns:
        prefix, statistic = (column[:-1], column[-1]) if isinstance(columns, pd.MultiIndex) else ((column,), None)
        groups.setdefault(prefix, {})[statistic] = column
    return groups


def render_table(
    table: pd.DataFrame,
    fmt: str = "markdown",
    *,
    percent: bool = True,
    decimals: int = 4,
    formats: Mapping[object, CellFormat] | None = None,
    labels: Mapping[object, str] | None = None,
) -> str:
    """``table`` as text: a GitHub Markdown table (``fmt="markdown"``) or a booktabs ``tabular`` (``"latex"``).

    Named index levels become the first columns. Under a two-level (or deeper) column index, a
    ``mean`` and ``std`` pair becomes one ``mean ± std`` cell (the mean alone when the std is NaN:
    one run), a top-level ``n`` is its own column, other statistics (``paper``) are labelled
    ``"Clean (paper)"``, and a per-cell ``n`` stays in the DataFrame only. Accuracies are shown ×100
    with two decimals when ``percent``, other floats with ``decimals``; ``formats``, keyed by a
    column's name (its first level), overrides that; ``labels`` adds to :data:`LABELS`.
    Missing numbers are ``—``.
    """
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"unknown format {fmt!r}; expected 'markdown' or 'latex'")
    labels = {**LABELS, **(labels or {})}
    formats = formats or {}
    header: list[str] = []
    cells: list[list[str]] = []
    numeric: list[bool] = []
    if any(name is not None for name in table.index.names):
        for level, name in enumerate(table.index.names):
            header.append(labels.get(name, str(name)))
            values = table.index.get_level_values(level)
            cells.append([_text(value, "{:g}" if isinstance(value, float) else None) for value in values])
            numeric.append(False)
    for prefix, statistics in _column_groups(table.columns).items():
        label = " ".join(labels.get(part, str(part)) for part in prefix)
        spec = formats.get(prefix[0])
        scale, places = (100.0, 2) if percent and _is_accuracy(prefix[0]) else (1.0, decimals)
        texts = {stat: [_text(v, spec, scale, places) for v in table[key]] for stat, key in statistics.items()}
        if "mean" in texts:
            header.append(label)
            std = texts.get("std", [MISSING] * len(table))
            cells.append([mean if s == MISSING else f"{mean} ± {s}" for mean, s in zip(texts["mean"], std)])
            numeric.append(True)
        for statistic, key in statistics.items():
            if statistic not in (*STATISTICS, "n"):
                header.append(label if statistic in (None, "") else f"{label} ({statistic})")
                cells.append(texts[statistic])
                numeric.append(pd.api.types.is_numeric_dtype(table[key]))
    text = pd.DataFrame(list(zip(*cells)), columns=header)
    if fmt == "markdown":
        align = ["right" if number else "left" for number in numeric]
        return text.to_markdown(index=False, disable_numparse=True, colalign=align)
    latex = text.to_latex(index=False, escape=True, column_format="".join("r" if n else "l" for n in numeric))
    for char, replacement in _LATEX_AFTER_ESCAPE.items():
        latex = latex.replace(char, replacement)
    return latex.rstrip("\n")


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
    print(render_table(table, args.format))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
