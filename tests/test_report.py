"""Tables from fake results.json files: grouping, mean ± std, formats, errors, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from lipnb.report import Table, comparison_table, load_results, main, paper_table1, summary_table


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


def rows_by_conv_eps(table: Table) -> dict:
    return {(rec["Conv"], rec["eps"]): rec for rec in table.to_records()}


def test_load_results_finds_nested_files_once(runs_dir):
    results = load_results([runs_dir, runs_dir / "bcop_s0" / "results.json"])
    assert len(results) == 5
    assert sorted(r["config"]["conv"] for r in results) == ["bcop", "bcop", "bcop", "ossn", "rko"]
    assert len(load_results(str(runs_dir / "nested"))) == 1


def test_summary_groups_by_keys_and_eps(runs_dir):
    table = summary_table(load_results(runs_dir))
    assert table.columns == ["Dataset", "Arch", "Conv", "eps", "n", "Clean", "Certified"]
    # Conv order bcop, rko, ossn; the two bcop eps stay apart, smaller eps first.
    assert [(r[2], r[3]) for r in table.rows] == [("bcop", 0.5), ("bcop", 1.58), ("rko", 1.58), ("ossn", 1.58)]
    assert [r[4] for r in table.rows] == [1, 2, 1, 1]


def test_mean_and_sample_std_by_hand(runs_dir):
    rows = rows_by_conv_eps(summary_table(load_results(runs_dir)))
    # 97, 98 -> mean 97.5, sample std sqrt(2 * 0.5**2 / 1) = 0.7071; 45, 47 -> 46, sqrt(2) = 1.4142
    assert rows["bcop", 1.58]["Clean"] == "97.50 ± 0.71"
    assert rows["bcop", 1.58]["Certified"] == "46.00 ± 1.41"
    assert rows["bcop", 0.5]["Certified"] == "80.00"  # one seed: mean only
    assert rows["rko", 1.58]["Clean"] == "97.28"
    fractions = rows_by_conv_eps(summary_table(load_results(runs_dir), percent=False))
    assert fractions["bcop", 1.58]["Clean"] == f"0.9750 ± {math.sqrt(0.5e-4):.4f}"


def test_dotted_attack_metrics_and_missing_cells(runs_dir):
    table = summary_table(load_results(runs_dir), metrics=("attacks.pgd", "attacks.boundary", "attacks.fgsm"))
    assert table.columns[-3:] == ["PGD", "BA", "FGSM"]
    rows = rows_by_conv_eps(table)
    assert rows["bcop", 1.58]["PGD"] == "61.00 ± 1.41"
    assert rows["bcop", 1.58]["BA"] == "90.00"  # only seed 0 ran the boundary attack
    assert rows["bcop", 1.58]["FGSM"] is None
    assert rows["rko", 1.58]["PGD"] is None
    assert "| —" in table.to_markdown()


def test_group_by_other_keys(runs_dir):
    table = summary_table(load_results(runs_dir), by=("dataset",), metrics=("clean_accuracy",))
    assert table.columns == ["Dataset", "eps", "n", "Clean"]
    assert [row[:3] for row in table.rows] == [["mnist", 0.5, 1], ["mnist", 1.58, 4]]


def test_markdown_rendering():
    table = Table(["Conv", "Clean"], [["bcop", "97.50 ± 0.71"], ["rko", None]])
    lines = table.to_markdown().splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["Conv", "Clean"]
    assert set(lines[1]) == {"|", "-"}
    assert "97.50 ± 0.71" in lines[2] and "—" in lines[3]
    assert str(table) == table._repr_markdown_() == table.to_markdown()


def test_latex_booktabs_and_escapes():
    table = Table(["batch_size", "A & B", "Clean %"], [["x_y", "97.50 ± 0.71", None]])
    latex = table.to_latex()
    assert latex.splitlines()[0] == r"\begin{tabular}{lll}"
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in latex
    assert r"batch\_size & A \& B & Clean \% \\" in latex
    assert r"x\_y & 97.50 $\pm$ 0.71 & --- \\" in latex
    assert "±" not in latex


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


def test_comparison_puts_paper_beside_ours(runs_dir, tmp_path):
    write_run(runs_dir / "cifar", "bcop", 0, 0.7, 0.5, dataset="cifar10", arch="large")  # no reference
    records = comparison_table(load_results(runs_dir)).to_records()
    expected = [("bcop", 0.5), ("bcop", 1.58), ("rko", 1.58), ("ossn", 1.58)]
    assert [(r["Conv"], r["eps"]) for r in records] == expected
    bcop = records[1]
    assert bcop["n"] == 2
    assert (bcop["Clean"], bcop["Clean (paper)"]) == ("97.50 ± 0.71", "97.54")
    assert (bcop["Certified"], bcop["Certified (paper)"]) == ("46.00 ± 1.41", "45.84")
    custom = comparison_table(load_results(runs_dir), reference={("cifar10", "large", "bcop"): (72.0, 58.0)})
    assert [r["Clean (paper)"] for r in custom.to_records()] == ["72.00"]


def test_cli_main_markdown_and_latex(runs_dir, capsys):
    assert main([str(runs_dir), "--metrics", "clean_accuracy", "attacks.pgd"]) == 0
    out = capsys.readouterr().out
    assert "| Dataset" in out and "PGD" in out and "61.00 ± 1.41" in out
    assert main([str(runs_dir), "--format", "latex", "--compare"]) == 0
    out = capsys.readouterr().out
    assert r"\toprule" in out and r"97.50 $\pm$ 0.71 & 97.54" in out


def test_cli_subprocess_reports_errors(runs_dir, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "lipnb.report", str(runs_dir)], capture_output=True, text=True)
    assert ok.returncode == 0 and "97.50 ± 0.71" in ok.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([sys.executable, "-m", "lipnb.report", str(empty)], capture_output=True, text=True)
    assert bad.returncode == 2 and str(empty) in bad.stderr


def test_lipschitz_bound_is_not_shown_in_percent():
    run = {"config": {"dataset": "mnist", "arch": "small", "conv": "bcop"}, "eps": 1.58,
           "clean_accuracy": 0.97, "certified_accuracy": 0.4, "lipschitz_bound": 1.0000012}
    table = summary_table([run], metrics=("clean_accuracy", "lipschitz_bound"))
    assert table.rows[0][-2:] == ["97.00", "1.0000"]
