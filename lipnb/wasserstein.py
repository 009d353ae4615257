"""Wasserstein-1 lower bounds from Lipschitz critics (BCOP paper, Sec. 5.3, Table 4).

Kantorovich–Rubinstein duality: ``W1(P, Q) = sup_{Lip(f) ≤ 1} E_P f − E_Q f``. A critic ``f``
trained to maximize ``E_P f − E_Q f`` and divided by its **measured** Lipschitz bound ``L``
(:func:`lipnb.lipschitz_bound`, resizing in front of it included) is 1-Lipschitz, so
``(E_P f − E_Q f) / L`` on fresh samples is a lower bound on W1 up to sampling error; the
tighter the critic class, the closer the bound.

:func:`run_wasserstein` is the experiment end to end: a frozen WGAN-GP generator
(:mod:`lipnb.gan`, trained once per dataset), a DCGAN critic made of Lipschitz convs trained with
RMSprop, and the estimate with its confidence interval, written to ``out_dir/results.json``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torch.utils.data import Dataset

from lipnb import distributed
from lipnb._modes import eval_mode
from lipnb._runs import write_json
from lipnb._validation import require_positive_int
from lipnb.data import DATASETS, dataset_info, iterate_batches
from lipnb.engine import SVCM_EVERY, EpochShards, Shard, epoch_seed, fit
from lipnb.experiment import ExperimentConfig
from lipnb.gan import InfoGANDiscriminator, InfoGANGenerator, WGANSettings, train_wgan_gp
from lipnb.losses import kantorovich_rubinstein_gaps
from lipnb.models import RESIDUAL_BLOCK_KINDS, dcgan_critic
from lipnb.spectrum import lipschitz_bound
from lipnb.train import resolve_device

Sampler = Callable[[int, torch.Generator], Tensor]
"""``sample(n, generator)``: ``n`` draws from a distribution, reproducible through ``generator``."""

Z_95 = 1.959963984540054  # two-sided 95% normal quantile

# ---------------------------------------------------------------------------------------------
# Distributions


def tensor_sampler(images: Tensor) -> Sampler:
    """Uniform draws, with replacement, from a fixed set of ``images`` (an empirical distribution)."""
    def sample(n: int, generator: torch.Generator) -> Tensor:
        return images[torch.randint(len(images), (n,), generator=generator)]

    return sample


def generator_sampler(generator_model: InfoGANGenerator) -> Sampler:
    """Fresh images of a (frozen) generator, returned on the CPU."""
    def sample(n: int, generator: torch.Generator) -> Tensor:
        return generator_model.sample(n, generator=generator).cpu()

    return sample


def gaussian_sampler(mean: Tensor, std: float = 1.0) -> Sampler:
    """Draws of ``N(mean, std² I)`` with the shape of ``mean``."""
    def sample(n: int, generator: torch.Generator) -> Tensor:
        return mean + std * torch.randn(n, *mean.shape, generator=generator)

    return sample


def dataset_images(dataset: Dataset, batch_size: int = 1024) -> Tensor:
    """Every input of ``dataset`` stacked into one tensor (labels dropped)."""
    return torch.cat([x for x, *_ in iterate_batches(dataset, batch_size)])


def exact_wasserstein(a: Tensor, b: Tensor) -> float:
    """W1 between the uniform distributions on two equally sized point sets (rows after flattening).

    With equal weights an optimal transport plan is a permutation (Birkhoff), found exactly by
    the assignment problem on the Euclidean cost matrix.
    """
    if len(a) != len(b):
        raise ValueError(f"exact_wasserstein needs point sets of equal size; got {len(a)} and {len(b)}")
    cost = torch.cdist(a.flatten(1).double(), b.flatten(1).double())
    rows, cols = linear_sum_assignment(cost.numpy())
    return float(cost[rows, cols].mean())


# ---------------------------------------------------------------------------------------------
# Training and estimation


CRITIC_EPOCH_STEPS = 50
"""Critic steps per epoch: the unit of the critic's checkpoints, history rows and seeding."""


class CriticTask:
    """The :class:`lipnb.engine.Task` of a critic: RMSprop ascent of ``E f(real) − E f(fake)``.

    Each step draws ``batch_size`` real and fake images from a generator seeded per epoch; on
    several processes every rank draws the same global batch and trains on its share.
    """

    def __init__(
        self, critic: nn.Module, sample_real: Sampler, sample_fake: Sampler, *, steps: int, lr: float, batch_size: int,
        seed: int, device: torch.device,
    ) -> None:
        self.sample_real, self.sample_fake = sample_real, sample_fake
        self.steps, self.batch_size, self.seed, self.device = steps, batch_size, seed, device
        self.network = distributed.wrap(critic, device)
        self.modules = {"critic": critic}
        self.optimizers = {"critic": torch.optim.RMSprop(critic.parameters(), lr=lr)}
        self.schedulers: dict = {}

    def batches(self, epoch: int) -> EpochShards:
        count = min(CRITIC_EPOCH_STEPS, self.steps - epoch * CRITIC_EPOCH_STEPS)
        return EpochShards(_PairDraws(self.sample_real, self.sample_fake, self.batch_size, count,
                                      epoch_seed(self.seed, epoch)))

    def step(self, shard: Shard) -> dict[str, Any]:
        real, fake = (t.to(self.device) for t in shard.tensors)
        scores = self.network(torch.cat([real, fake]))  # one forward pass: DDP expects one per backward
        gaps = kantorovich_rubinstein_gaps(scores[: len(real)], scores[len(real) :])
        optimizer = self.optimizers["critic"]
        optimizer.zero_grad(set_to_none=True)
        shard.mean(-gaps).backward()
        optimizer.step()
        return {"examples": len(real), "gap": gaps.sum().detach()}


class _PairDraws:
    """``count`` batches of (real, fake) draws from a generator seeded by ``seed``; ``len`` is ``count``."""

    def __init__(self, sample_real: Sampler, sample_fake: Sampler, batch_size: int, count: int, seed: int) -> None:
        self.sample_real, self.sample_fake = sample_real, sample_fake
        self.batch_size, self.count, self.seed = batch_size, count, seed

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        draws = torch.Generator().manual_seed(self.seed)
        for _ in range(self.count):
            yield self.sample_real(self.batch_size, draws), self.sample_fake(self.batch_size, draws)


def train_critic(
    critic: nn.Module,
    sample_real: Sampler,
    sample_fake: Sampler,
    *,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    settings: dict[str, Any] | None = None,
    svcm_every: int = SVCM_EVERY,
    progress: bool = True,
) -> list[dict]:
    """Maximize ``E f(real) − E f(fake)`` with RMSprop, ``batch_size`` real + ``batch_size`` fake per step.

    On :func:`lipnb.engine.fit`, in epochs of :data:`CRITIC_EPOCH_STEPS` steps (the last one
    shorter): returns the training curve, one row per epoch with its mean batch gap (raw, not
    divided by the bound) and the step it ends at. With ``checkpoint``, one is written after every
    epoch and an existing one with the same ``settings`` is resumed to an uninterrupted run's result.
    """
    require_positive_int("steps", steps)
    device = resolve_device(device)
    critic.to(device)
    task = CriticTask(critic, sample_real, sample_fake, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                      device=device)
    loop = {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed}
    return fit(
        task, epochs=math.ceil(steps / CRITIC_EPOCH_STEPS), seed=seed, checkpoint=checkpoint,
        settings={**loop, **(settings or {})}, device=device, svcm_every=svcm_every, progress=progress,
        description="critic",
    )


def estimate_wasserstein(
    critic: nn.Module,
    sample_real: Sampler,
    sample_fake: Sampler,
    input_shape: tuple[int, ...],
    *,
    pairs: int = 6400,
    batch_size: int = 640,
    seed: int = 1,
    device: str | torch.device = "auto",
) -> dict:
    """The lower bound ``(E f(real) − E f(fake)) / L`` on ``pairs`` fresh independent pairs.

    ``L`` is the critic's measured bound on inputs of ``input_shape`` (the product of exact layer
    norms, upsampling included). The pair differences are i.i.d., so the interval is
    ``mean ± 1.96 · std / √pairs`` (95%). Use a ``seed`` other than the training one.
    """
    require_positive_int("pairs", pairs)
    device = resolve_device(device)
    critic.to(device)
    bound = lipschitz_bound(critic, input_shape)
    draws = torch.Generator().manual_seed(seed)
    differences = []
    with torch.no_grad(), eval_mode(critic):
        for start in range(0, pairs, batch_size):
            n = min(batch_size, pairs - start)
            real = sample_real(n, draws).to(device)
            fake = sample_fake(n, draws).to(device)
            differences.append((critic(real) - critic(fake)).double().flatten().cpu() / bound)
    difference = torch.cat(differences)
    mean = float(difference.mean())
    stderr = float(difference.std() / math.sqrt(pairs)) if pairs > 1 else float("nan")
    return {
        "estimate": mean,
        "stderr": stderr,
        "ci95": [mean - Z_95 * stderr, mean + Z_95 * stderr],
        "critic_gap": mean * bound,
        "lipschitz_bound": bound,
        "pairs": pairs,
    }


# ---------------------------------------------------------------------------------------------
# The experiment

KNOWN_ANSWER = "gaussian-shift"
"""Dataset name of the known-answer pair: ``N(μ, I)`` against ``N(0, I)`` on 1×8×8 images, W1 = ‖μ‖."""
GAUSSIAN_SHIFT_NORM = 2.0
WASSERSTEIN_DATASETS: tuple[str, ...] = (KNOWN_ANSWER, *DATASETS)


def gaussian_shift(seed: int = 0) -> tuple[Tensor, float]:
    """The known-answer shift ``μ`` (a random 1×8×8 direction of norm 2, fixed by ``seed``) and W1 = ‖μ‖."""
    direction = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return GAUSSIAN_SHIFT_NORM * direction / direction.norm(), GAUSSIAN_SHIFT_NORM


@dataclass
class WassersteinConfig(ExperimentConfig):
    """One estimate; ``out_dir`` defaults to ``<runs_dir>/wasserstein/<dataset>_<conv>_<activation>_seed<seed>``.

    The generator is trained once per (dataset, seed) into ``checkpoint_dir`` (default
    ``<runs_dir>/wasserstein/generators``) and shared by every critic; ``gan_epochs`` is ignored
    for the known-answer pair, which needs no generator.
    """

    batch_size: int = 64
    gan_epochs: int = 20
    critic_steps: int = 1000
    pairs: int = 6400
    width: int = 64
    upsample: int = 1
    checkpoint_dir: str | None = None

    experiment = "wasserstein"
    datasets = WASSERSTEIN_DATASETS
    positive_ints = ("batch_size", "gan_epochs", "critic_steps", "pairs", "width", "upsample")
    resume_keys = (*ExperimentConfig.resume_keys, "gan_epochs", "critic_steps", "width", "upsample")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.conv in RESIDUAL_BLOCK_KINDS:
            raise ValueError(
                f"conv {self.conv!r} is a residual block that keeps the width; the DCGAN critic changes it: "
                f"use another kind"
            )
        if self.checkpoint_dir is None:
            self.checkpoint_dir = os.path.join(self.runs_dir, "wasserstein", "generators")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.dataset == KNOWN_ANSWER:
            return tuple(gaussian_shift()[0].shape)
        return dataset_info(self.dataset).input_shape

    @property
    def generator_checkpoint(self) -> Path:
        return Path(self.checkpoint_dir) / f"{self.dataset}_wgan_gp_seed{self.seed}.pt"

    def load_data(self) -> tuple[Dataset, Dataset] | None:
        """(train, test) splits, failing early with one line if missing; ``None`` for the known-answer pair."""
        return None if self.dataset == KNOWN_ANSWER else super().load_data()


def train_generator(config: WassersteinConfig, train_set: Dataset, progress: bool = True) -> tuple[InfoGANGenerator, list[dict]]:
    """The frozen WGAN-GP generator of ``config.dataset``: trained, resumed or reused from ``checkpoint_dir``."""
    torch.manual_seed(config.seed)
    generator = InfoGANGenerator(config.input_shape)
    discriminator = InfoGANDiscriminator(config.input_shape)
    history = train_wgan_gp(
        generator, discriminator, train_set, epochs=config.gan_epochs, settings=WGANSettings(), seed=config.seed,
        device=distributed.setup(resolve_device(config.device)), checkpoint=config.generator_checkpoint,
        progress=progress and distributed.is_main(),
    )
    return generator, history


def run_wasserstein(config: WassersteinConfig, data: tuple[Dataset, Dataset] | None = None, progress: bool = True) -> dict:
    """Generator (if any), critic, estimate: return the results and write ``out_dir/results.json``.

    The critic trains on the training split and fresh generator draws; the estimate uses the test
    split and other draws, so the pairs it averages were never seen in training. On several
    processes the critic trains with DDP; every rank returns the same results and rank 0 writes them.
    """
    start = time.perf_counter()
    out_dir = Path(config.out_dir)
    device = distributed.setup(resolve_device(config.device))
    progress = progress and distributed.is_main()
    generator_record = None
    true_w1 = None
    if config.dataset == KNOWN_ANSWER:
        shift, true_w1 = gaussian_shift()
        sample_train_real = sample_test_real = gaussian_sampler(shift)
        sample_fake = gaussian_sampler(torch.zeros_like(shift))
    else:
        train_set, test_set = data if data is not None else config.load_data()
        generator, gan_history = train_generator(config, train_set, progress)
        sample_train_real = tensor_sampler(dataset_images(train_set))
        sample_test_real = tensor_sampler(dataset_images(test_set))
        sample_fake = generator_sampler(generator)
        generator_record = {"checkpoint": str(config.generator_checkpoint), "epochs": len(gan_history),
                            "history": gan_history}
    torch.manual_seed(config.seed)
    critic = dcgan_critic(
        config.conv, config.activation, config.input_shape, config.width, config.upsample, config.layer_options()
    )
    history = train_critic(
        critic, sample_train_real, sample_fake, steps=config.critic_steps, lr=config.lr,
        batch_size=config.batch_size, seed=config.seed, device=device, checkpoint=out_dir / "critic.pt",
        settings=config.settings(), progress=progress,
    )
    estimate = estimate_wasserstein(
        critic, sample_test_real, sample_fake, config.input_shape, pairs=config.pairs, seed=config.seed + 1,
        device=device,
    )
    results = {
        "experiment": "wasserstein",
        "config": config.to_dict(),
        **estimate,
        "true_wasserstein": true_w1,
        "generator": generator_record,
        "history": history,
        "seconds": time.perf_counter() - start,
        "processes": distributed.world_size(),
    }
    if distributed.is_main():
        write_json(out_dir / "results.json", results)
    return results
