"""Two processes (torchrun, gloo on CPU) against one: same training, same results, resume, a failing rank."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lipnb import distributed
from lipnb.data import load_dataset
from lipnb.engine import load_modules
from lipnb.robustness import RobustnessConfig, run_robustness

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ROBUSTNESS = ["-m", "lipnb", "robustness", "--epochs", "3", "--attacks", "pgd,fgsm", "--device", "cpu", "--no-progress"]
TIMEOUT = 240  # seconds; a run takes about 10


def run(command: list[str], timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    # one thread per process, as torchrun sets for its workers: the same float reduction order
    # (with two threads Adam amplifies the last-bit differences of the BLAS sums to ~1e-4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The digits robustness run on one process and on two, with the same global batch (128)."""
    root = tmp_path_factory.mktemp("runs")
    for name, launcher in (("one", [sys.executable]), ("two", TORCHRUN)):
        done = run([*launcher, *ROBUSTNESS, "--out-dir", str(root / name)])
        assert done.returncode == 0, done.stderr[-3000:]
    return root


def results(directory: Path) -> dict:
    return json.loads((directory / "results.json").read_text())


def test_two_processes_follow_one_process(runs):
    one, two = results(runs / "one"), results(runs / "two")
    assert (one["processes"], two["processes"]) == (1, 2)
    test_points = len(load_dataset("digits", train=False))
    for key in ("clean_accuracy", "certified_accuracy"):
        assert abs(one[key] - two[key]) <= 1 / test_points, key
    for name in ("pgd", "fgsm"):
        assert abs(one["attacks"][name] - two["attacks"][name]) <= 1 / test_points, name
    assert two["lipschitz_bound"] == pytest.approx(one["lipschitz_bound"], abs=1e-5)
    steps = [row["step"] for row in one["history"]]
    assert [row["step"] for row in two["history"]] == steps == [steps[0], 2 * steps[0], 3 * steps[0]]
    for row_one, row_two in zip(one["history"], two["history"]):
        assert row_two["loss"] == pytest.approx(row_one["loss"], rel=1e-5)
    # after 3 epochs of the same global batches the parameters agree to float tolerance
    states = []
    for name in ("one", "two"):
        state = torch.load(runs / name / "checkpoint.pt", weights_only=True)["modules"]["model"]
        states.append(state)
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, atol=2e-6, rtol=1e-5, msg=key)
    assert sorted(p.name for p in (runs / "two").iterdir()) == ["checkpoint.pt", "results.json"]


def test_an_interrupted_two_process_run_resumes_to_the_same_result(runs, tmp_path):
    out = tmp_path / "interrupted"
    process = subprocess.Popen([*TORCHRUN, *ROBUSTNESS, "--out-dir", str(out)], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (out / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and both ranks: the processes this test started
        process.wait(timeout=60)
    assert load_modules(out / "checkpoint.pt", {})["epoch"] < 3  # killed before the end
    done = run([*TORCHRUN, *ROBUSTNESS, "--out-dir", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    resumed, straight = results(out), results(runs / "two")
    for key in ("clean_accuracy", "certified_accuracy", "lipschitz_bound", "attacks"):
        assert resumed[key] == straight[key], key
    assert [row["loss"] for row in resumed["history"]] == [row["loss"] for row in straight["history"]]


@pytest.mark.parametrize("conv", ["svcm", "ossn"])
def test_svcm_clipping_and_ossn_power_vectors_stay_identical_across_ranks(conv, tmp_path):
    done = run([*TORCHRUN, str(ROOT / "tests" / "distributed_worker.py"), conv, str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert any("power_vector" in key for key in rank0) == (conv == "ossn")
    for key, value in rank0.items():
        assert torch.equal(rank1[key], value), key


def test_a_rank_that_dies_ends_the_job_with_an_error(tmp_path):
    start = time.monotonic()
    done = run([*TORCHRUN, str(ROOT / "tests" / "distributed_worker.py"), "die", str(tmp_path)], timeout=120)
    assert done.returncode != 0
    assert "exitcode  : 3" in done.stderr and "rank      : 1" in done.stderr  # torchrun names the root cause
    assert time.monotonic() - start < 120 and not list(tmp_path.iterdir())


def test_only_the_main_rank_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    config = RobustnessConfig(epochs=1, attacks="fgsm", device="cpu", out_dir=str(tmp_path / "run"))
    results = run_robustness(config, progress=False)
    assert results["epochs_completed"] == 1 and not (tmp_path / "run").exists()


def test_a_two_process_wasserstein_run_follows_one_process(tmp_path):
    """The critic trains with DDP on shares of each global batch; the generator is trained once per rank, then rank 0's."""
    command = ["-m", "lipnb", "wasserstein", "--dataset", "digits", "--gan-epochs", "1", "--critic-steps", "50",
               "--width", "8", "--pairs", "640", "--device", "cpu", "--no-progress"]
    estimates = []
    for name, launcher in (("one", [sys.executable]), ("two", TORCHRUN)):
        done = run([*launcher, *command, "--runs-dir", str(tmp_path / name)])
        assert done.returncode == 0, done.stderr[-3000:]
        estimates.append(results(tmp_path / name / "wasserstein" / "digits_bcop_maxmin_seed0"))
    one, two = estimates
    assert two["processes"] == 2 and two["generator"]["history"][0]["critic_gap"] == one["generator"]["history"][0]["critic_gap"]
    assert [row["gap"] for row in two["history"]] == pytest.approx([row["gap"] for row in one["history"]], rel=1e-5)
    assert two["estimate"] == pytest.approx(one["estimate"], rel=1e-5)
    assert two["lipschitz_bound"] == pytest.approx(one["lipschitz_bound"], abs=1e-5)
