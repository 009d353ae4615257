"""The robustness experiment as the notebook runs it: validation, results.json, resumable out_dir."""

import json
from pathlib import Path

import papermill
import pytest

from lipnb.data import DatasetNotFoundError
from lipnb.robustness import RobustnessConfig, run_robustness
from lipnb.wasserstein import WassersteinConfig

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "robustness.ipynb"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"conv": "orthogonal"}, "unknown conv 'orthogonal'; expected one of 'bcop', 'rko'"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"arch": "huge"}, "unknown arch 'huge'"),
        ({"activation": "tanh"}, "unknown activation 'tanh'"),
        ({"attacks": "pgd,carlini"}, "unknown attack 'carlini'"),
        ({"eps": -0.1}, "eps must be a finite number >= 0"),
        ({"lr": 0}, "lr must be a finite number > 0"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"device": "gpu0"}, "device must be 'auto', 'cpu', 'cuda'"),
        ({"conv": "sll"}, "use arch='residual', not 'small'"),
        ({"arch": "residual", "conv": "sll"}, "pass activation='relu'"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RobustnessConfig(**kwargs)


def test_missing_data_fails_before_training(tmp_path):
    config = RobustnessConfig(dataset="mnist", data_root=str(tmp_path), out_dir=str(tmp_path / "run"))
    with pytest.raises(DatasetNotFoundError, match="mnist"):
        config.load_data()
    assert not (tmp_path / "run").exists()


def test_dataset_defaults_follow_the_paper():
    mnist = RobustnessConfig(dataset="mnist")
    assert (round(mnist.margin, 4), mnist.eps) == (2.1213, 1.58)
    cifar = RobustnessConfig(dataset="cifar10", margin=1.0)
    assert (cifar.margin, round(cifar.eps, 4)) == (1.0, 0.1412)


def test_run_writes_results_and_refuses_a_different_run_in_the_same_dir(tmp_path):
    config = RobustnessConfig(conv="bcop", epochs=2, attacks="pgd,fgsm", out_dir=str(tmp_path / "run"))
    results = run_robustness(config, progress=False)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("config", "clean_accuracy", "certified_accuracy", "eps", "lipschitz_bound", "attacks", "epochs_completed"):
        assert key in saved
    assert saved["epochs_completed"] == 2 and set(saved["attacks"]) == {"pgd", "fgsm"}
    assert saved["lipschitz_bound"] == pytest.approx(1.0, abs=1e-5)
    assert saved["certified_accuracy"] <= saved["attacks"]["pgd"] <= saved["clean_accuracy"]
    assert results["clean_accuracy"] == saved["clean_accuracy"]
    # the same settings resume (nothing left to train), different ones are refused
    again = run_robustness(config, progress=False)
    assert again["clean_accuracy"] == results["clean_accuracy"]
    with pytest.raises(ValueError, match="written by a run with epochs=2, not epochs=3; resuming needs the same settings"):
        run_robustness(RobustnessConfig(conv="bcop", epochs=3, attacks="", out_dir=str(tmp_path / "run")), progress=False)


def test_notebook_stops_on_a_bad_parameter_before_training(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown conv 'nope'"):
        papermill.execute_notebook(
            str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters={"conv": "nope", "out_dir": str(tmp_path / "run")},
            progress_bar=False, cwd=str(tmp_path),
        )
    assert not (tmp_path / "run").exists()


def test_a_cuda_device_on_a_machine_without_one_fails_at_validation(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for config_class in (RobustnessConfig, WassersteinConfig):
        with pytest.raises(ValueError, match=r"^device 'cuda' was asked for, but torch sees no CUDA GPU here; use "
                                             r"device='cpu' or 'auto'$"):
            config_class(device="cuda")


@pytest.mark.parametrize("conv", ["cayley", "soc", "aol", "sll"])
def test_certificates_of_the_layers_after_the_paper_survive_pgd(conv, tmp_path):
    """A trained network of each newer kind (Small; SLL: the residual one): its measured bound certifies,
    and PGD breaks no certificate."""
    network = {"arch": "residual", "activation": "relu"} if conv == "sll" else {}
    config = RobustnessConfig(
        conv=conv, epochs=2, attacks="pgd", eps=0.2, device="cpu", out_dir=str(tmp_path / conv), **network
    )
    results = run_robustness(config, progress=False)  # raises CertificateViolation if PGD breaks a certified point
    assert results["lipschitz_bound"] <= 1 + 1e-4
    assert 0 < results["certified_accuracy"] <= results["attacks"]["pgd"] <= results["clean_accuracy"]
