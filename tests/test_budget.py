"""One training budget for every kind: epochs derived from the probed epoch time, resumable plans, table and plot."""

import json
import re
import time
from pathlib import Path

import pytest

from lipnb import budget
from lipnb.budget import BudgetConfig, budget_table, plot_budget, render_budget_table, run_budget


def test_each_kind_trains_for_the_epochs_its_probe_allows(tmp_path, monkeypatch):
    probes = {"aol": 1.0, "sll": 2.5}  # seconds per epoch, as if measured
    monkeypatch.setattr(budget, "probe_epoch_seconds", lambda config, train_set: probes[config.conv])
    config = BudgetConfig(dataset="digits", kinds=["aol", "sll"], minutes=0.1, device="cpu", runs_dir=str(tmp_path))
    results = run_budget(config, progress=False)
    # 6 s of budget: 6 epochs of 1 s, 2 of 2.5 s
    assert [r["budget"]["epochs"] for r in results] == [6, 2]
    assert [r["epochs_completed"] for r in results] == [6, 2]
    assert [r["config"]["arch"] for r in results] == ["small", "residual"]
    assert [r["config"]["activation"] for r in results] == ["maxmin", "relu"]
    for run in results:
        assert run["attacks"] == {}
        assert run["lipschitz_bound"] <= 1 + 1e-4  # measured, not assumed
        assert 0 <= run["certified_accuracy"] <= run["clean_accuracy"]
        assert run["budget"]["train_seconds"] == pytest.approx(sum(e["seconds"] for e in run["history"]))
        saved = json.loads((tmp_path / "budget" / f"digits_{run['config']['conv']}_0.1min_seed0" / "results.json").read_text())
        assert saved["budget"] == run["budget"]
    table = budget_table(results)
    assert list(table.index.get_level_values("conv")) == ["aol", "sll"]  # the library's kind order
    text = render_budget_table(table)
    aol_row = next(line for line in text.splitlines() if "aol" in line)
    assert "Epochs" in text and "Certified" in text and re.search(r"\|\s*6\s*\|", aol_row)
    figure = plot_budget(table)
    assert len(figure.axes) == 1


def test_an_interrupted_comparison_keeps_each_runs_plan(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "probe_epoch_seconds", lambda config, train_set: 2.0)
    config = BudgetConfig(dataset="digits", kinds=["bcop"], minutes=0.1, device="cpu", runs_dir=str(tmp_path))
    first = run_budget(config, progress=False)[0]

    def must_not_probe(config, train_set):
        raise AssertionError("the plan was measured again")

    monkeypatch.setattr(budget, "probe_epoch_seconds", must_not_probe)
    again = run_budget(config, progress=False)[0]
    assert again["budget"]["epochs"] == first["budget"]["epochs"] == 3
    assert again["certified_accuracy"] == first["certified_accuracy"]


def test_a_corrupt_plan_fails_with_one_line(tmp_path):
    config = BudgetConfig(dataset="digits", kinds=["aol"], device="cpu", runs_dir=str(tmp_path))
    plan = Path(config.run_config("aol", 1).out_dir) / "plan.json"
    plan.parent.mkdir(parents=True)
    plan.write_text('{"epochs": 3')
    with pytest.raises(ValueError, match=r"plan.json cannot be used \(JSONDecodeError.*delete it to start over"):
        run_budget(config, progress=False)


def test_the_probe_times_real_training_steps(tmp_path):
    config = BudgetConfig(dataset="digits", kinds=["aol"], device="cpu", runs_dir=str(tmp_path)).run_config("aol", 1)
    train_set, _ = config.load_data()
    seconds = budget.probe_epoch_seconds(config, train_set, steps=3)
    steps_per_epoch = -(-len(train_set) // config.batch_size)
    assert 0 < seconds < 30 * steps_per_epoch  # a digits step of the small network takes milliseconds


def test_the_probe_counts_svcm_clipping(tmp_path, monkeypatch):
    """SVCM clips every SVCM_EVERY steps and after each epoch; a probe of steps alone would undercount it."""
    config = BudgetConfig(dataset="digits", kinds=["svcm"], device="cpu", runs_dir=str(tmp_path)).run_config("svcm", 1)
    train_set, _ = config.load_data()
    monkeypatch.setattr(budget, "project_svcm", lambda modules: time.sleep(0.5))
    assert budget.probe_epoch_seconds(config, train_set, steps=3) >= 0.5  # digits: one clipping per epoch


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kinds": ["bcop", "orthogonal"]}, "unknown kind 'orthogonal'"),
        ({"kinds": []}, "kinds is empty"),
        ({"minutes": 0}, "minutes must be a finite number > 0"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"device": "gpu0"}, "device must be"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        BudgetConfig(**{"runs_dir": str(tmp_path), **kwargs})
    assert not (tmp_path / "budget").exists()
