"""Tables from fake results.json files: DataFrame layout, seed pooling, the paper's columns, rendering, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from lipnb.report import (
    comparison_table,
    load_results,
    main,
    paper_table1,
    paper_table4,
    render_table,
    results_frame,
    summary_table,
    wasserstein_table,
)

# Tables keep their MultiIndex levels in display order: partial indexing must not warn about lexsort depth.
pytestmark = pytest.mark.filterwarnings("error::pandas.errors.PerformanceWarning")


def write_run(path, conv, seed, clean, certified, eps=1.58, attacks=None, dataset="mnist", arch="small"):
    """A results.json at ``path`` (a directory) with the fields the report reads."""
    path.mkdir(parents=True, exist_ok=True)
    run = {
        "config": {"conv": conv, "dataset": dataset, "arch": arch, "seed": seed, "eps": eps},
        "clean_accuracy": clean,
        "certified_accuracy": certified,
        "eps": eps,
        "attacks": attacks or {},
        "lipschitz_bound": 1.0,
    }
    (path / "results.json").write_text(json.dumps(run))


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "results"
    write_run(root / "bcop_s0", "bcop", 0, 0.97, 0.45, attacks={"pgd": 0.60, "boundary": 0.90})
    write_run(root / "bcop_s1", "bcop", 1, 0.98, 0.47, attacks={"pgd": 0.62})
    write_run(root / "nested" / "deeper" / "rko_s0", "rko", 0, 0.9728, 0.4358)
    write_run(root / "bcop_eps_small", "bcop", 0, 0.96, 0.80, eps=0.5)
    write_run(root / "ossn_s0", "ossn", 0, 0.9686, 0.4295)
    return root


def markdown_cells(text: str) -> list[list[str]]:
    """The header and body cells of a pipe table (the alignment row dropped)."""
    lines = text.strip().splitlines()
    assert set(lines[1]) <= {"|", "-", ":"}
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in (lines[0], *lines[2:])]


def latex_cells(text: str) -> list[list[str]]:
    """The header and body cells of a booktabs tabular, after checking its frame and column count."""
    lines = text.strip().splitlines()
    assert lines[0].startswith(r"\begin{tabular}{") and lines[-1] == r"\end{tabular}"
    assert [lines[1], lines[3], lines[-2]] == [r"\toprule", r"\midrule", r"\bottomrule"]
    columns = len(lines[0].removeprefix(r"\begin{tabular}{").removesuffix("}"))
    rows = [lines[2], *lines[4:-2]]
    assert all(row.endswith(r" \\") for row in rows)
    cells = [[cell.strip() for cell in row.removesuffix(r" \\").split(" & ")] for row in rows]
    assert all(len(row) == columns for row in cells)
    return cells


def test_load_results_finds_nested_files_once(runs_dir):
    results = load_results([runs_dir, runs_dir / "bcop_s0" / "results.json"])
    assert len(results) == 5
    assert sorted(r["config"]["conv"] for r in results) == ["bcop", "bcop", "bcop", "ossn", "rko"]
    assert len(load_results(str(runs_dir / "nested"))) == 1


def test_results_frame_has_a_row_per_run(runs_dir):
    frame = results_frame(load_results(runs_dir), keys=("conv", "seed"), metrics=("eps", "attacks.pgd"))
    assert list(frame.columns) == ["conv", "seed", "eps", "attacks.pgd"]
    assert len(frame) == 5 and frame["attacks.pgd"].dtype == float
    pgd = frame.set_index(["conv", "seed", "eps"])["attacks.pgd"]
    assert pgd["bcop", 1, 1.58] == 0.62 and math.isnan(pgd["rko", 0, 1.58])


def test_summary_index_is_the_grouping_keys_and_eps(runs_dir):
    table = summary_table(load_results(runs_dir))
    assert isinstance(table, pd.DataFrame)
    assert table.index.names == ["dataset", "arch", "conv", "eps"]
    # Conv order bcop, rko, ossn; the two bcop eps stay apart, smaller eps first.
    assert [key[2:] for key in table.index] == [("bcop", 0.5), ("bcop", 1.58), ("rko", 1.58), ("ossn", 1.58)]
    assert table.columns.names == ["metric", "statistic"]
    assert list(table.columns) == [
        ("n", ""), ("clean_accuracy", "mean"), ("clean_accuracy", "std"),
        ("certified_accuracy", "mean"), ("certified_accuracy", "std"),
    ]
    assert table["n"].tolist() == [1, 2, 1, 1]
    assert list(table["clean_accuracy"].columns) == ["mean", "std"]


def test_two_seeds_pool_to_mean_and_sample_std(runs_dir):
    table = summary_table(load_results(runs_dir))
    bcop = table.loc[("mnist", "small", "bcop", 1.58)]
    # 0.97, 0.98 -> mean 0.975, sample std sqrt(2 * 0.005**2 / 1); 0.45, 0.47 -> 0.46, sqrt(2) * 0.01
    assert bcop["clean_accuracy", "mean"] == pytest.approx(0.975)
    assert bcop["clean_accuracy", "std"] == pytest.approx(math.sqrt(0.5e-4))
    assert bcop["certified_accuracy", "mean"] == pytest.approx(0.46)
    assert bcop["certified_accuracy", "std"] == pytest.approx(math.sqrt(2) * 0.01)
    single = table.loc[("mnist", "small", "bcop", 0.5)]
    assert single["certified_accuracy", "mean"] == 0.80 and math.isnan(single["certified_accuracy", "std"])
    assert table.loc[("mnist", "small", "rko", 1.58), ("clean_accuracy", "mean")] == 0.9728
    assert table.loc[("mnist", "small", "bcop"), ("n", "")].tolist() == [1, 2]  # a partial key: both eps


def test_dotted_attack_metrics_and_missing_cells(runs_dir):
    table = summary_table(load_results(runs_dir), metrics=("attacks.pgd", "attacks.boundary", "attacks.fgsm"))
    assert [metric for metric, _ in table.columns] == ["n", *(m for m in ("attacks.pgd", "attacks.boundary",
                                                                          "attacks.fgsm") for _ in range(2))]
    bcop, rko = table.loc[("mnist", "small", "bcop", 1.58)], table.loc[("mnist", "small", "rko", 1.58)]
    assert bcop["attacks.pgd", "mean"] == pytest.approx(0.61)
    assert bcop["n"].item() == 2 and bcop["attacks.boundary", "mean"] == 0.90  # only seed 0 ran it
    assert math.isnan(bcop["attacks.boundary", "std"]) and math.isnan(bcop["attacks.fgsm", "mean"])
    assert math.isnan(rko["attacks.pgd", "mean"])
    cells = markdown_cells(render_table(table))
    assert cells[0] == ["Dataset", "Arch", "Conv", "eps", "n", "PGD", "BA", "FGSM"]
    assert cells[2][4:] == ["2", "61.00 ± 1.41", "90.00", "—"]


def test_group_by_other_keys(runs_dir):
    table = summary_table(load_results(runs_dir), by=("dataset",), metrics=("clean_accuracy",))
    assert table.index.names == ["dataset", "eps"]
    assert list(table.index) == [("mnist", 0.5), ("mnist", 1.58)]
    assert table["n"].tolist() == [1, 4]
    assert table[("clean_accuracy", "mean")].tolist() == pytest.approx([0.96, (0.97 + 0.98 + 0.9728 + 0.9686) / 4])


def test_markdown_shows_percent_mean_std_and_missing(runs_dir):
    table = summary_table(load_results(runs_dir))
    text = render_table(table)
    assert text.splitlines()[1].endswith("---:|")  # numbers right-aligned
    cells = markdown_cells(text)
    assert cells[0] == ["Dataset", "Arch", "Conv", "eps", "n", "Clean", "Certified"]
    assert cells[1] == ["mnist", "small", "bcop", "0.5", "1", "96.00", "80.00"]  # one seed: the mean alone
    assert cells[2] == ["mnist", "small", "bcop", "1.58", "2", "97.50 ± 0.71", "46.00 ± 1.41"]
    fractions = markdown_cells(render_table(table, percent=False))
    assert fractions[2][5] == f"0.9750 ± {math.sqrt(0.5e-4):.4f}"


def test_lipschitz_bound_is_not_shown_in_percent():
    run = {"config": {"dataset": "mnist", "arch": "small", "conv": "bcop"}, "eps": 1.58,
           "clean_accuracy": 0.97, "certified_accuracy": 0.4, "lipschitz_bound": 1.0000012}
    table = summary_table([run], metrics=("clean_accuracy", "lipschitz_bound"))
    assert table.loc[("mnist", "small", "bcop", 1.58), ("lipschitz_bound", "mean")] == 1.0000012
    assert markdown_cells(render_table(table))[1][-2:] == ["97.00", "1.0000"]


def test_latex_booktabs_and_escapes():
    columns = pd.MultiIndex.from_tuples([("batch_size", "mean"), ("batch_size", "std"), ("A & B", "mean")])
    table = pd.DataFrame([[0.975, 0.0071, float("nan")]], pd.Index(["x_y"], name="Clean %"), columns)
    latex = render_table(table, "latex", decimals=2)
    assert latex.splitlines()[0] == r"\begin{tabular}{lrr}"
    assert latex_cells(latex) == [[r"Clean \%", r"batch\_size", r"A \& B"], [r"x\_y", r"0.97 $\pm$ 0.01", "---"]]
    assert "±" not in latex and "—" not in latex
    with pytest.raises(ValueError, match="unknown format"):
        render_table(table, "html")


def test_flat_frames_render_with_their_own_formats_and_labels():
    """The benchmarks' tables: flat columns, no index, a format per column, missing ratios."""
    frame = pd.DataFrame({"network": ["plain", "bcop"], "train_ms": [1.234, 2.5], "ratio": [1.0, None],
                          "weights": [[[10, 4]], [[10, 4], [4, 2]]]})
    formats = {"train_ms": "{:.1f}", "ratio": "{:.2f}×", "weights": lambda w: ", ".join(f"{o}×{i}" for o, i in w)}
    text = render_table(frame, formats=formats, labels={"train_ms": "train (ms)"})
    assert markdown_cells(text) == [
        ["network", "train (ms)", "ratio", "weights"],
        ["plain", "1.2", "1.00×", "10×4"],
        ["bcop", "2.5", "—", "10×4, 4×2"],
    ]
    assert text.splitlines()[1] == "|:----------|-------------:|--------:|:----------|"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"config": {}, "eps": 1.0}', "clean_accuracy, certified_accuracy"),
        ("[1]", "JSON object"),
    ],
)
def test_bad_files_are_named(tmp_path, content, message):
    bad = tmp_path / "run" / "results.json"
    bad.parent.mkdir()
    bad.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_results(tmp_path)
    assert str(bad) in str(info.value)


def test_nothing_found_names_where_it_looked(tmp_path):
    with pytest.raises(ValueError, match="no results.json of a robustness run found") as info:
        load_results(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="no such file"):
        load_results(tmp_path / "missing")


def test_paper_table1_numbers():
    ref = paper_table1()
    assert ref == {
        ("mnist", "small", "ossn"): (96.86, 42.95),
        ("mnist", "small", "rko"): (97.28, 43.58),
        ("mnist", "small", "svcm"): (97.24, 28.94),
        ("mnist", "small", "bcop"): (97.54, 45.84),
    }


def test_comparison_puts_paper_columns_beside_ours(runs_dir):
    write_run(runs_dir / "cifar", "bcop", 0, 0.7, 0.5, dataset="cifar10", arch="large")  # no reference
    table = comparison_table(load_results(runs_dir))
    expected = [("bcop", 0.5), ("bcop", 1.58), ("rko", 1.58), ("ossn", 1.58)]
    assert [key[2:] for key in table.index] == expected
    assert list(table.columns) == [("n", ""), *((m, s) for m in ("clean_accuracy", "certified_accuracy")
                                                for s in ("mean", "std", "paper"))]
    bcop = table.loc[("mnist", "small", "bcop", 1.58)]
    assert bcop["n"].item() == 2
    assert bcop["clean_accuracy"].tolist() == pytest.approx([0.975, math.sqrt(0.5e-4), 0.9754])
    assert bcop["certified_accuracy", "paper"] == pytest.approx(0.4584)
    assert table[("certified_accuracy", "paper")].tolist() == pytest.approx([0.4584, 0.4584, 0.4358, 0.4295])
    cells = markdown_cells(render_table(table))
    assert cells[0][4:] == ["n", "Clean", "Clean (paper)", "Certified", "Certified (paper)"]
    assert cells[2][4:] == ["2", "97.50 ± 0.71", "97.54", "46.00 ± 1.41", "45.84"]
    custom = comparison_table(load_results(runs_dir), reference={("cifar10", "large", "bcop"): (72.0, 58.0)})
    assert list(custom.index) == [("cifar10", "large", "bcop", 1.58)]
    assert markdown_cells(render_table(custom))[1][-4:] == ["70.00", "72.00", "50.00", "58.00"]


def wasserstein_run(conv, dataset, activation, estimate, seed=0):
    config = {"conv": conv, "dataset": dataset, "activation": activation, "seed": seed}
    return {"experiment": "wasserstein", "config": config, "estimate": estimate, "lipschitz_bound": 1.0}


def test_wasserstein_table_pools_seeds_per_dataset_and_activation():
    runs = [wasserstein_run("rko", "mnist", "relu", 0.6), wasserstein_run("bcop", "mnist", "maxmin", 0.80),
            wasserstein_run("bcop", "mnist", "maxmin", 0.82, seed=1), wasserstein_run("ossn", "stl10", "maxmin", 7.0)]
    table = wasserstein_table(runs)
    assert table.index.name == "conv" and list(table.index) == ["bcop", "rko", "ossn"]
    assert table.columns.names == ["dataset", "activation", "statistic"]
    # STL-10 (the paper's first) before MNIST, MaxMin before ReLU.
    assert list(dict.fromkeys(c[:2] for c in table.columns)) == [("stl10", "maxmin"), ("mnist", "maxmin"),
                                                                 ("mnist", "relu")]
    maxmin = table[("mnist", "maxmin")]
    assert maxmin.loc["bcop"].tolist() == pytest.approx([0.81, math.sqrt(2) * 0.01, 2])
    assert maxmin["n"].tolist() == [2, 0, 0] and maxmin["mean"].isna().tolist() == [False, True, True]
    cells = markdown_cells(render_table(table))
    assert cells[0] == ["Conv", "STL-10 MaxMin", "MNIST MaxMin", "MNIST ReLU"]
    assert cells[1] == ["bcop", "—", "0.8100 ± 0.0141", "—"]
    beside = markdown_cells(render_table(table.join(paper_table4()), decimals=2))  # the paper's beside ours
    assert beside[0] == ["Conv", "STL-10 MaxMin", "STL-10 MaxMin (paper)", "MNIST MaxMin", "MNIST ReLU",
                         "CIFAR-10 MaxMin (paper)"]
    assert beside[3] == ["ossn", "7.00", "7.39", "—", "—", "3.29"]


def test_paper_table4_numbers():
    table = paper_table4()
    assert table.index.name == "conv" and list(table.columns.get_level_values("statistic")) == ["paper", "paper"]
    assert table.loc["bcop"].tolist() == [9.91, 5.34]
    assert table[("cifar10", "maxmin", "paper")].tolist() == [5.34, 4.95, 3.29]


def test_cli_main_markdown_and_latex(runs_dir, capsys):
    assert main([str(runs_dir), "--metrics", "clean_accuracy", "attacks.pgd"]) == 0
    cells = markdown_cells(capsys.readouterr().out)
    assert cells[0] == ["Dataset", "Arch", "Conv", "eps", "n", "Clean", "PGD"]
    assert cells[2][-2:] == ["97.50 ± 0.71", "61.00 ± 1.41"]
    assert main([str(runs_dir), "--format", "latex", "--compare"]) == 0
    cells = latex_cells(capsys.readouterr().out)
    assert cells[2][4:] == ["2", r"97.50 $\pm$ 0.71", "97.54", r"46.00 $\pm$ 1.41", "45.84"]
    assert main([str(runs_dir), "--by", "conv", "--metrics", "lipschitz_bound"]) == 0
    assert markdown_cells(capsys.readouterr().out)[2] == ["bcop", "1.58", "2", "1.0000 ± 0.0000"]


def test_cli_wasserstein_picks_a_metric(tmp_path, capsys):
    for index, (conv, estimate) in enumerate((("bcop", 0.8), ("rko", 0.7))):
        (tmp_path / str(index)).mkdir()
        run = wasserstein_run(conv, "mnist", "maxmin", estimate)
        (tmp_path / str(index) / "results.json").write_text(json.dumps(run))
    assert main([str(tmp_path), "--wasserstein", "--format", "latex"]) == 0
    assert latex_cells(capsys.readouterr().out) == [["Conv", "MNIST MaxMin"], ["bcop", "0.8000"], ["rko", "0.7000"]]
    assert main([str(tmp_path), "--wasserstein", "--metrics", "lipschitz_bound"]) == 0
    assert markdown_cells(capsys.readouterr().out)[1] == ["bcop", "1.0000"]


def test_cli_subprocess_reports_errors(runs_dir, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "lipnb.report", str(runs_dir)], capture_output=True, text=True)
    assert ok.returncode == 0 and "97.50 ± 0.71" in ok.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([sys.executable, "-m", "lipnb.report", str(empty)], capture_output=True, text=True)
    assert bad.returncode == 2 and str(empty) in bad.stderr
