import json

import pytest

from lipnb.figures import main, write_certified_curves, write_critic_curves, write_tables
from lipnb.report import load_results, summary_table


def test_tables_are_written_from_results(tmp_path):
    for where, conv, clean, epochs in (("robustness", "bcop", 0.97, 15), ("robustness", "rko", 0.96, 15),
                                       ("parity", "bcop", 0.5, 3)):  # a differently trained run beside them
        run_dir = tmp_path / "results" / where / f"mnist_small_{conv}_seed0"
        run_dir.mkdir(parents=True)
        run = {"config": {"dataset": "mnist", "arch": "small", "conv": conv, "epochs": epochs}, "eps": 1.58,
               "clean_accuracy": clean, "certified_accuracy": 0.4, "attacks": {"pgd": 0.7},
               "certified_curve": {"eps": [0.0, 1.0, 2.0], "accuracy": [clean, 0.5, 0.1]}}
        (run_dir / "results.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match=r"differ in epochs \(15, 3\): they are not seeds of one setting"):
        summary_table(load_results(tmp_path / "results"))
    written = write_tables(tmp_path / "results", tmp_path / "figures")
    assert sorted(p.name for p in written) == ["table1.md", "table1.tex", "table1_vs_paper.md", "table1_vs_paper.tex"]
    table = (tmp_path / "figures" / "table1.md").read_text()
    assert "97.00" in table and "70.00" in table and "50.00" not in table and "±" not in table
    comparison = (tmp_path / "figures" / "table1_vs_paper.md").read_text()
    assert "97.54" in comparison and "43.58" in comparison  # the paper's BCOP clean and RKO certified
    budget_run = tmp_path / "results" / "budget" / "mnist_sll_2min_seed0"  # another experiment's robustness run
    budget_run.mkdir(parents=True)
    (budget_run / "results.json").write_text(json.dumps(
        {"config": {"dataset": "mnist", "arch": "residual", "conv": "sll", "epochs": 5}, "eps": 1.58,
         "clean_accuracy": 0.9, "certified_accuracy": 0.3, "certified_curve": {"eps": [0.0], "accuracy": [0.9]}}))
    curves = write_certified_curves(tmp_path / "results", tmp_path / "figures")
    assert [p.name for p in curves] == ["certified_accuracy_mnist_small.png", "certified_accuracy_mnist_small.pdf"]
    assert all(p.stat().st_size > 1000 for p in curves)


def test_table4_and_critic_curves_are_written_beside_robustness_runs(tmp_path):
    results = tmp_path / "results"
    robustness = results / "robustness" / "mnist_small_bcop_seed0"
    robustness.mkdir(parents=True)
    (robustness / "results.json").write_text(json.dumps(
        {"config": {"dataset": "mnist", "arch": "small", "conv": "bcop"}, "eps": 1.58, "clean_accuracy": 0.97,
         "certified_accuracy": 0.4}))
    for conv, activation, estimate in (("bcop", "maxmin", 0.81), ("ossn", "relu", 0.62)):
        run_dir = results / "wasserstein" / f"mnist_{conv}_{activation}_seed0"
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps(
            {"experiment": "wasserstein", "config": {"dataset": "mnist", "conv": conv, "activation": activation},
             "estimate": estimate, "ci95": [estimate - 0.01, estimate + 0.01], "lipschitz_bound": 1.0,
             "true_wasserstein": None, "history": [{"step": 50, "gap": 0.5}, {"step": 100, "gap": estimate}]}))
    written = {p.name for p in write_tables(results, tmp_path / "figures")}
    assert {"table1.md", "table4.md", "table4.tex", "table4_paper.md"} <= written
    table4 = (tmp_path / "figures" / "table4.md").read_text()
    assert "MNIST MaxMin" in table4 and "0.8100" in table4 and "0.6200" in table4
    assert "9.91" in (tmp_path / "figures" / "table4_paper.md").read_text()  # the paper's STL-10 BCOP
    curves = write_critic_curves(results, tmp_path / "figures")
    assert [p.name for p in curves] == ["wasserstein_critics_mnist.png", "wasserstein_critics_mnist.pdf"]
    main(["--tables-only", "--results-dir", str(results), "--figures-dir", str(tmp_path / "again")])  # no notebook
    assert {p.name for p in (tmp_path / "again").iterdir()} == written | {p.name for p in curves}
