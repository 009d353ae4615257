"""Wasserstein lower bounds: known answers, Lipschitz accounting of the critic, resumable runs."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from conftest import dense_singular_values
from lipnb import lipschitz_bound
from lipnb.layers import BCOPConv2d, BjorckLinear, MaxMin, NearestUpsampling
from lipnb.models import dcgan_critic
from lipnb.report import load_results, main as report_main, wasserstein_table
from lipnb.spectrum import layer_spectra
from lipnb.wasserstein import (
    KNOWN_ANSWER,
    WassersteinConfig,
    estimate_wasserstein,
    exact_wasserstein,
    gaussian_sampler,
    gaussian_shift,
    run_wasserstein,
    tensor_sampler,
    train_critic,
)


@pytest.fixture(scope="module")
def shift_critic():
    """A BCOP + MaxMin critic trained on the known-answer pair N(μ, I) vs N(0, I), W1 = ‖μ‖ = 2."""
    torch.manual_seed(0)
    shift, true_w1 = gaussian_shift()
    critic = dcgan_critic("bcop", "maxmin", tuple(shift.shape), width=16)
    real, fake = gaussian_sampler(shift), gaussian_sampler(torch.zeros_like(shift))
    train_critic(critic, real, fake, steps=300, progress=False, device="cpu")
    return critic, shift, true_w1, real, fake


def test_bcop_maxmin_critic_reaches_90_percent_of_a_known_w1_and_never_exceeds_it(shift_critic):
    critic, shift, true_w1, real, fake = shift_critic
    result = estimate_wasserstein(critic, real, fake, tuple(shift.shape), pairs=6400, device="cpu")
    assert result["estimate"] >= 0.9 * true_w1
    assert result["estimate"] <= true_w1 + 3 * result["stderr"]
    low, high = result["ci95"]
    assert low < result["estimate"] < high and high - low == pytest.approx(2 * 1.959964 * result["stderr"])
    assert result["critic_gap"] == pytest.approx(result["estimate"] * result["lipschitz_bound"])


def test_coupled_pairs_never_differ_by_more_than_the_shift(shift_critic):
    """f(x + μ) − f(x) ≤ L ‖μ‖ for every x: the measured bound is a real bound, pair by pair."""
    critic, shift, true_w1, _, _ = shift_critic
    bound = lipschitz_bound(critic, tuple(shift.shape))
    x = torch.randn(2000, *shift.shape)
    with torch.no_grad():
        differences = (critic(x + shift) - critic(x)) / bound
    assert float(differences.max()) <= true_w1 * (1 + 1e-5)
    assert float(differences.mean()) >= 0.9 * true_w1  # and it is nearly tight


def test_exact_wasserstein_matches_brute_force_and_translations():
    a, b = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    brute = min(
        float(sum((a[i] - b[j]).norm() for i, j in enumerate(perm))) / 6 for perm in itertools.permutations(range(6))
    )
    assert exact_wasserstein(a, b) == pytest.approx(brute, rel=1e-12)
    shift = torch.tensor([0.3, -1.2, 0.4], dtype=torch.float64)
    assert exact_wasserstein(a, a + shift) == pytest.approx(float(shift.norm()), rel=1e-12)
    with pytest.raises(ValueError, match="equal size"):
        exact_wasserstein(a, b[:5])


@pytest.mark.parametrize("conv, activation, upsample", [("bcop", "maxmin", 1), ("rko", "relu", 2), ("ossn", "maxmin", 2)])
def test_trained_critics_divided_by_their_bound_stay_below_exact_point_cloud_w1(conv, activation, upsample):
    cloud_a = torch.rand(64, 1, 8, 8)
    cloud_b = 0.6 * torch.rand(64, 1, 8, 8)
    critic = dcgan_critic(conv, activation, (1, 8, 8), width=8, upsample=upsample)
    train_critic(critic, tensor_sampler(cloud_a), tensor_sampler(cloud_b), steps=60, lr=3e-3, progress=False,
                 device="cpu")
    bound = lipschitz_bound(critic, (1, 8, 8))
    with torch.no_grad():
        gap = float(critic(cloud_a).mean() - critic(cloud_b).mean()) / bound
    assert 0 < gap <= exact_wasserstein(cloud_a, cloud_b) * (1 + 1e-5)


def test_upsampling_counts_its_factor_in_the_bound():
    up = NearestUpsampling(3)
    sigma = dense_singular_values(up.double(), (2, 4, 5))
    assert torch.allclose(sigma, torch.full_like(sigma, 3.0), atol=1e-12)
    (layer, listed), = layer_spectra(nn.Sequential(up), (2, 4, 5))
    assert listed.shape == sigma.shape and torch.equal(listed, torch.full_like(listed, 3.0))
    # Tight: a linear critic reading the upsampled image has gradient norm 2 = its bound.
    linear = BjorckLinear(16 * 16, 1)
    with torch.no_grad():
        pattern = nn.functional.interpolate(torch.randn(1, 1, 8, 8), scale_factor=2.0).flatten()
        linear.parametrizations.weight.original.copy_(pattern / pattern.norm())
    critic = nn.Sequential(NearestUpsampling(2), nn.Flatten(), linear)
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    (gradient,) = torch.autograd.grad(critic(x).sum(), x)
    assert lipschitz_bound(critic, (1, 8, 8)) == pytest.approx(2.0, rel=1e-5)
    assert float(gradient.norm()) == pytest.approx(2.0, rel=1e-5)


def test_dcgan_critic_layout():
    critic = dcgan_critic("bcop", "maxmin", (1, 28, 28))
    convs = [m for m in critic if isinstance(m, BCOPConv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 64), (64, 128)]  # 28 → 14 → 7
    assert isinstance(critic[-1], BjorckLinear) and critic[-1].in_features == 128 * 7 * 7
    assert sum(isinstance(m, MaxMin) for m in critic) == 2
    cifar = dcgan_critic("rko", "relu", (3, 32, 32), width=8, upsample=2)  # 64 → 32 → 16 → 8 → 4
    assert isinstance(cifar[0], NearestUpsampling) and cifar[-1].in_features == 64 * 4 * 4
    assert isinstance(dcgan_critic("plain", "relu", (1, 8, 8))[-1], nn.Linear)
    assert cifar(torch.rand(2, 3, 32, 32)).shape == (2, 1)
    with pytest.raises(ValueError, match="even and >= 8"):
        dcgan_critic("bcop", "maxmin", (1, 7, 7))
    with pytest.raises(ValueError, match="unknown conv"):
        dcgan_critic("orthogonal", "maxmin", (1, 8, 8))


def test_the_same_distribution_gives_an_estimate_within_sampling_error_of_zero():
    critic = dcgan_critic("bcop", "maxmin", (1, 8, 8), width=8)
    same = gaussian_sampler(torch.zeros(1, 8, 8))
    result = estimate_wasserstein(critic, same, same, (1, 8, 8), pairs=3000, device="cpu")
    assert abs(result["estimate"]) <= 4 * result["stderr"]


def test_config_rejects_bad_values_with_one_line():
    for kwargs, message in [
        ({"dataset": "imagenet"}, "unknown dataset"),
        ({"conv": "spectral"}, "unknown conv"),
        ({"activation": "tanh"}, "unknown activation"),
        ({"critic_steps": 0}, "critic_steps must be a positive integer"),
        ({"upsample": 1.5}, "upsample must be a positive integer"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"device": "gpu0"}, "device must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            WassersteinConfig(**kwargs)
    config = WassersteinConfig(dataset="mnist", conv="rko", activation="relu", seed=2)
    assert config.out_dir.endswith("mnist_rko_relu_seed2") and config.input_shape == (1, 28, 28)


def test_known_answer_run_writes_results_and_refuses_other_settings(tmp_path):
    config = WassersteinConfig(dataset=KNOWN_ANSWER, critic_steps=150, width=16, pairs=1280, out_dir=str(tmp_path / "a"),
                               device="cpu")
    results = run_wasserstein(config, progress=False)
    written = json.loads((tmp_path / "a" / "results.json").read_text())
    assert written["estimate"] == results["estimate"] and written["experiment"] == "wasserstein"
    assert results["true_wasserstein"] == 2.0 and 0.8 * 2.0 < results["estimate"] <= 2.0 + 3 * results["stderr"]
    assert results["history"][-1]["step"] == 150 and results["generator"] is None
    with pytest.raises(ValueError, match=r"critic\.pt was written by a run with .*critic_steps=150.*not .*critic_steps=10"):
        run_wasserstein(WassersteinConfig(dataset=KNOWN_ANSWER, critic_steps=10, out_dir=str(tmp_path / "a")))


def test_dataset_runs_share_one_frozen_generator_and_tabulate_like_table4(tmp_path, capsys):
    common = {"dataset": "digits", "gan_epochs": 2, "critic_steps": 40, "width": 8, "pairs": 640, "device": "cpu",
              "checkpoint_dir": str(tmp_path / "generators")}
    first = run_wasserstein(WassersteinConfig(conv="bcop", out_dir=str(tmp_path / "runs" / "bcop"), **common),
                            progress=False)
    checkpoint = tmp_path / "generators" / "digits_wgan_gp_seed0.pt"
    stamp = checkpoint.stat().st_mtime_ns
    second = run_wasserstein(
        WassersteinConfig(conv="rko", activation="relu", out_dir=str(tmp_path / "runs" / "rko"), **common),
        progress=False,
    )
    assert checkpoint.stat().st_mtime_ns == stamp  # reused, not retrained
    assert first["generator"]["history"] == second["generator"]["history"]
    assert len(first["generator"]["history"]) == 2
    for run in (first, second):
        assert run["lipschitz_bound"] <= 1 + 1e-5 and run["estimate"] > 0
    runs = load_results(tmp_path / "runs", "wasserstein")
    table = wasserstein_table(runs)
    assert list(table.index) == ["bcop", "rko"]
    assert list(table.columns) == [("digits", a, s) for a in ("maxmin", "relu") for s in ("mean", "std", "n")]
    assert table.loc["bcop", ("digits", "maxmin", "mean")] == first["estimate"]
    assert table.loc["rko", ("digits", "relu", "mean")] == second["estimate"]
    assert table.xs("n", axis=1, level="statistic").to_numpy().tolist() == [[1, 0], [0, 1]]
    assert report_main([str(tmp_path / "runs"), "--wasserstein"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == ["Conv", "digits MaxMin", "digits ReLU"]
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == ["bcop", f"{first['estimate']:.4f}", "—"]
    with pytest.raises(ValueError, match="no results.json of a robustness run"):
        load_results(tmp_path / "runs")


def test_cifar_shaped_run_with_upsampling_divides_by_the_doubled_bound(tmp_path):
    """The reference's CIFAR-10 critic upsampled 32 → 64 and was 2-Lipschitz: the estimate must divide by 2."""
    images = torch.rand(128, 3, 32, 32)
    data = (TensorDataset(images, torch.zeros(128)), TensorDataset(torch.rand(64, 3, 32, 32), torch.zeros(64)))
    config = WassersteinConfig(dataset="cifar10", conv="bcop", gan_epochs=1, critic_steps=5, width=4, upsample=2,
                               pairs=256, device="cpu", checkpoint_dir=str(tmp_path / "g"), out_dir=str(tmp_path / "r"))
    results = run_wasserstein(config, data, progress=False)
    assert results["lipschitz_bound"] == pytest.approx(2.0, rel=1e-5)
    assert results["estimate"] == pytest.approx(results["critic_gap"] / results["lipschitz_bound"])
