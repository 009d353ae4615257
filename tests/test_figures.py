import json

from lipnb.figures import write_certified_curves, write_tables


def test_tables_are_written_from_results(tmp_path):
    for conv, clean in (("bcop", 0.97), ("rko", 0.96)):
        run_dir = tmp_path / "results" / f"mnist_small_{conv}_seed0"
        run_dir.mkdir(parents=True)
        run = {"config": {"dataset": "mnist", "arch": "small", "conv": conv}, "eps": 1.58,
               "clean_accuracy": clean, "certified_accuracy": 0.4, "attacks": {"pgd": 0.7},
               "certified_curve": {"eps": [0.0, 1.0, 2.0], "accuracy": [clean, 0.5, 0.1]}}
        (run_dir / "results.json").write_text(json.dumps(run))
    written = write_tables(tmp_path / "results", tmp_path / "figures")
    assert sorted(p.name for p in written) == ["table1.md", "table1.tex", "table1_vs_paper.md", "table1_vs_paper.tex"]
    table = (tmp_path / "figures" / "table1.md").read_text()
    assert "97.00" in table and "70.00" in table
    comparison = (tmp_path / "figures" / "table1_vs_paper.md").read_text()
    assert "97.54" in comparison and "43.58" in comparison  # the paper's BCOP clean and RKO certified
    curves = write_certified_curves(tmp_path / "results", tmp_path / "figures")
    assert [p.name for p in curves] == ["certified_accuracy_mnist_small.png", "certified_accuracy_mnist_small.pdf"]
    assert all(p.stat().st_size > 1000 for p in curves)
