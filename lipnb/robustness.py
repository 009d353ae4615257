"""The robustness experiment end to end (BCOP paper, Sec. 5.1–5.2, Tables 1–3).

``RobustnessConfig`` validates every parameter on construction; :func:`run_robustness` trains
(resuming from ``out_dir/checkpoint.pt``), measures the exact Lipschitz bound, certifies, attacks
with the soundness check on, and writes ``out_dir/results.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from lipnb import attacks as attack_lib
from lipnb import distributed
from lipnb._runs import write_json
from lipnb._validation import require_choice, require_positive_int
from lipnb.certify import certified_accuracy, certified_radii, predict
from lipnb.data import dataset_info
from lipnb.experiment import ExperimentConfig
from lipnb.losses import CIFAR_MARGIN, MNIST_MARGIN
from lipnb.models import build_model, check_network
from lipnb.spectrum import lipschitz_bound
from lipnb.train import resolve_device, train

# Paper defaults per dataset: (hinge margin, certified ε). MNIST ε = 1.58 and CIFAR ε = 36/255 as in
# Table 1; digits (8×8) scales the MNIST ε by √(64/784) and trains with the CIFAR margin.
DATASET_DEFAULTS: dict[str, tuple[float, float]] = {
    "digits": (CIFAR_MARGIN, 0.45),
    "mnist": (MNIST_MARGIN, 1.58),
    "fashion-mnist": (MNIST_MARGIN, 1.58),
    "cifar10": (CIFAR_MARGIN, 36 / 255),
    "stl10": (CIFAR_MARGIN, 36 / 255),
}
FOOLBOX_POINTS = 100  # Boundary and Pointwise attacks run on the first 100 test points (Sec. 5.2)
ATTACK_BATCH = 100  # test points per attack batch; batch b of PGD and AutoAttack is seeded by (seed, b)


@dataclass
class RobustnessConfig(ExperimentConfig):
    """One robustness run; ``margin``/``eps`` default to the dataset's paper values.

    ``attacks`` defaults to the paper's four; ``"autoattack"`` adds AutoAttack (standard L2) on the
    first ``autoattack_limit`` test points (``None``: all of them).
    """

    arch: str = "small"
    epochs: int = 30
    margin: float | None = None
    eps: float | None = None
    attacks: list[str] = field(default_factory=lambda: list(attack_lib.PAPER_ATTACKS))
    autoattack_limit: int | None = None

    experiment = "robustness"
    positive_ints = ("batch_size", "epochs")
    resume_keys = (*ExperimentConfig.resume_keys, "arch", "epochs", "margin")

    def __post_init__(self) -> None:
        require_choice("dataset", self.dataset, self.datasets)
        check_network(self.arch, self.conv, self.activation)
        if isinstance(self.attacks, str):
            self.attacks = [name.strip() for name in self.attacks.split(",") if name.strip()]
        for name in self.attacks:
            require_choice("attack", name, attack_lib.ATTACKS)
        if self.autoattack_limit is not None:
            require_positive_int("autoattack_limit", self.autoattack_limit)
        default_margin, default_eps = DATASET_DEFAULTS[self.dataset]
        self.margin = default_margin if self.margin is None else self.margin
        self.eps = default_eps if self.eps is None else self.eps
        for name in ("margin", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
            setattr(self, name, float(value))
        super().__post_init__()

    def run_name(self) -> str:
        return f"{self.dataset}_{self.arch}_{self.conv}_{self.activation}_seed{self.seed}"


def initial_model(config: RobustnessConfig) -> nn.Sequential:
    """The untrained network of ``config``, seeded: the same one :func:`train_model` starts from."""
    torch.manual_seed(config.seed)
    info = dataset_info(config.dataset)
    return build_model(
        config.arch, config.conv, config.activation, info.input_shape, info.num_classes, config.layer_options()
    )


def train_model(
    config: RobustnessConfig, data: tuple[Dataset, Dataset] | None = None, progress: bool = True
) -> tuple[nn.Sequential, list[dict]]:
    """Train (or resume, or reuse a finished run in ``out_dir``) and return the model and its history."""
    train_set, _ = data if data is not None else config.load_data()
    model = initial_model(config)
    history = train(
        model, train_set, epochs=config.epochs, margin=config.margin, lr=config.lr, batch_size=config.batch_size,
        seed=config.seed, device=distributed.setup(resolve_device(config.device)),
        checkpoint=Path(config.out_dir) / "checkpoint.pt", settings=config.settings(), progress=progress,
    )
    return model, history


def run_robustness(
    config: RobustnessConfig, data: tuple[Dataset, Dataset] | None = None, progress: bool = True
) -> dict:
    """Train, certify and attack as ``config`` says; return the results and write ``results.json``.

    On several processes (:mod:`lipnb.distributed`) each rank predicts and attacks its share of
    the test set and the counts are summed; foolbox's attacks on the first 100 points run on rank
    0. Every rank returns the same results; rank 0 writes them.
    """
    train_set, test_set = data if data is not None else config.load_data()
    model, history = train_model(config, (train_set, test_set), progress)
    device = distributed.setup(resolve_device(config.device))
    progress = progress and distributed.is_main()
    bound = lipschitz_bound(model, dataset_info(config.dataset).input_shape)
    points = distributed.shard(range(len(test_set)))  # type: ignore[arg-type]
    logits, labels = predict(model, Subset(test_set, points), device=device, progress=progress)
    radii = certified_radii(distributed.gather(logits), distributed.gather(labels), bound)
    certified = radii > config.eps
    curve_eps = torch.linspace(0, 2 * config.eps, 41)
    results = {
        "experiment": "robustness",
        "config": config.to_dict(),
        "clean_accuracy": float(certified_accuracy(radii, 0.0)),
        "certified_accuracy": float(certified.float().mean()),
        "eps": config.eps,
        "lipschitz_bound": bound,
        "attacks": {},
        "epochs_completed": len(history),
        "processes": distributed.world_size(),
        "certified_curve": {"eps": curve_eps.tolist(), "accuracy": certified_accuracy(radii, curve_eps).tolist()},
        "history": history,
    }
    for name in config.attacks:
        if name in attack_lib.FOOLBOX_ATTACKS:
            accuracy = None
            if distributed.is_main():
                points = range(min(FOOLBOX_POINTS, len(test_set)))  # type: ignore[arg-type]
                accuracy = _attack(name, model, test_set, points, certified, config.eps, device, progress)
            results["attacks"][name] = distributed.from_main(accuracy)
            continue
        count = len(test_set)  # type: ignore[arg-type]
        if name == "autoattack" and config.autoattack_limit is not None:
            count = min(count, config.autoattack_limit)
        batches = distributed.shard(range(math.ceil(count / ATTACK_BATCH)))
        robust, total = 0.0, 0
        for batch in tqdm(batches, desc=f"{name} eps={config.eps:g}", unit="batch", disable=not progress):
            points = range(batch * ATTACK_BATCH, min((batch + 1) * ATTACK_BATCH, count))
            options = _seeded(name, config.seed * 1_000_003 + batch)
            robust += _attack(name, model, test_set, points, certified, config.eps, device, False, options) * len(points)
            total += len(points)
        robust, total = distributed.sum_over_ranks([robust, total], device)
        results["attacks"][name] = robust / total
    if distributed.is_main():
        write_json(Path(config.out_dir) / "results.json", results)
    return results


def _seeded(name: str, seed: int) -> dict[str, object]:
    """The options that seed attack ``name`` (PGD's random start, AutoAttack's restarts); none for the others."""
    if name == "pgd":
        return {"generator": torch.Generator().manual_seed(seed)}
    return {"seed": seed} if name == "autoattack" else {}


def _attack(
    name: str, model: nn.Module, test_set: Dataset, points: range, certified: torch.Tensor, eps: float,
    device: torch.device, progress: bool, options: dict[str, object] | None = None,
) -> float:
    """Robust accuracy of attack ``name`` on the test ``points``, with the soundness check on."""
    options = options or {}
    x, y, x_adv = attack_lib.attack_dataset(
        name, model, Subset(test_set, points), eps, batch_size=ATTACK_BATCH, device=device, progress=progress, **options
    )
    attack_lib.check_certificates(model, x, x_adv, y, certified[points.start : points.stop], eps=eps)
    return attack_lib.robust_accuracy(model, x, y, x_adv)
