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

import dataclasses
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
from tqdm.auto import tqdm

from lipnb._modes import eval_mode
from lipnb._runs import atomic_torch_save, error_summary, record_settings, write_json
from lipnb._validation import require_choice, require_device, require_positive_int
from lipnb.data import DATASETS, dataset_info, iterate_batches, load_dataset
from lipnb.gan import InfoGANDiscriminator, InfoGANGenerator, WGANSettings, train_wgan_gp
from lipnb.layers import CONV_KINDS, BjorckLinear, NearestUpsampling, lipschitz_conv
from lipnb.models import ACTIVATIONS, orthogonalizer_options, split_layer_options
from lipnb.orthogonal import DEFAULT_ORTHOGONALIZER
from lipnb.spectrum import lipschitz_bound
from lipnb.train import project_svcm, resolve_device

Sampler = Callable[[int, torch.Generator], Tensor]
"""``sample(n, generator)``: ``n`` draws from a distribution, reproducible through ``generator``."""

Z_95 = 1.959963984540054  # two-sided 95% normal quantile

# ---------------------------------------------------------------------------------------------
# The critic


def dcgan_critic(
    conv: str = "bcop",
    activation: str = "maxmin",
    input_shape: tuple[int, int, int] = (1, 28, 28),
    width: int = 64,
    upsample: int = 1,
    layer_options: dict[str, Any] | None = None,
) -> nn.Sequential:
    """The DCGAN discriminator without batch norm, every conv a :mod:`lipnb.layers` conv of kind ``conv``.

    Optional nearest upsampling by ``upsample``, then 4×4 stride-2 convs of ``width``, ``2·width``, …
    channels (invertible downsampling + 2×2 conv, as in the paper) while the map stays ≥ 4 pixels
    and even, at most four; then a linear map to one output (DCGAN's final 4×4 valid conv),
    :class:`~lipnb.layers.BjorckLinear` (a unit row), or ``nn.Linear`` for ``conv="plain"``.
    ``layer_options`` reach every layer that takes them (as in :func:`lipnb.models.build_model`).
    """
    require_choice("conv", conv, tuple(CONV_KINDS))
    require_choice("activation", activation, tuple(ACTIVATIONS))
    require_positive_int("width", width)
    require_positive_int("upsample", upsample)
    channels, height, width_px = input_shape
    height, width_px = height * upsample, width_px * upsample
    linear = nn.Linear if conv == "plain" else BjorckLinear
    conv_options, linear_options = split_layer_options(layer_options or {}, conv, linear)
    layers: list[nn.Module] = [NearestUpsampling(upsample)] if upsample > 1 else []
    for stage in range(4):
        if height % 2 or width_px % 2 or min(height, width_px) < 8:
            break
        out_channels = width * 2**stage
        layers += [lipschitz_conv(conv, channels, out_channels, 4, stride=2, **conv_options), ACTIVATIONS[activation]()]
        channels, height, width_px = out_channels, height // 2, width_px // 2
    if not layers or isinstance(layers[-1], NearestUpsampling):
        raise ValueError(
            f"dcgan_critic needs an input whose (upsampled) height and width are even and >= 8; "
            f"got input_shape={tuple(input_shape)}, upsample={upsample}"
        )
    layers += [nn.Flatten(), linear(channels * height * width_px, 1, **linear_options)]
    return nn.Sequential(*layers)


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
    checkpoint_every: int = 500,
    log_every: int = 25,
    progress: bool = True,
) -> list[dict]:
    """Maximize ``E f(real) − E f(fake)`` with RMSprop, ``batch_size`` real + ``batch_size`` fake per step.

    Returns the training curve: every ``log_every`` steps, the mean batch gap of those steps (raw,
    not divided by the bound). SVCM convs are projected every 100 steps. With ``checkpoint``, the
    critic, optimizer and random state are saved atomically every ``checkpoint_every`` steps and at
    the end, and an existing checkpoint is resumed: the result equals an uninterrupted run's.
    """
    require_positive_int("steps", steps)
    device = resolve_device(device)
    critic.to(device)
    optimizer = torch.optim.RMSprop(critic.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    state: dict = {"step": 0, "history": []}
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = _load_critic_checkpoint(path, critic, optimizer, draws)
    critic.train()
    window: list[float] = []
    with tqdm(total=steps, initial=state["step"], desc="critic", disable=not progress, leave=False) as bar:
        while state["step"] < steps:
            real = sample_real(batch_size, draws).to(device)
            fake = sample_fake(batch_size, draws).to(device)
            gap = critic(real).mean() - critic(fake).mean()
            optimizer.zero_grad(set_to_none=True)
            (-gap).backward()
            optimizer.step()
            state["step"] += 1
            window.append(float(gap.detach()))
            if state["step"] % 100 == 0:
                project_svcm(critic)
            if state["step"] % log_every == 0 or state["step"] == steps:
                state["history"].append({"step": state["step"], "gap": sum(window) / len(window)})
                window.clear()
            if path is not None and (state["step"] % checkpoint_every == 0 or state["step"] == steps):
                _save_critic_checkpoint(path, critic, optimizer, draws, state)
            bar.update()
    project_svcm(critic)
    critic.eval()
    return state["history"]


def _save_critic_checkpoint(path: Path, critic, optimizer, draws: torch.Generator, state: dict) -> None:
    payload = {
        **state,
        "critic": critic.state_dict(),
        "optimizer": optimizer.state_dict(),
        "draws": draws.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic_torch_save(payload, path)


def _load_critic_checkpoint(path: Path, critic, optimizer, draws: torch.Generator) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        critic.load_state_dict(payload["critic"])
        optimizer.load_state_dict(payload["optimizer"])
        draws.set_state(payload["draws"])
        torch.set_rng_state(payload["torch_rng"])
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be used
        raise ValueError(
            f"cannot resume the critic from {path} ({error_summary(error)}); delete it to start the critic over"
        ) from None
    return {"step": payload["step"], "history": payload["history"]}


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
_CRITIC_KEYS = ("dataset", "conv", "activation", "orthogonalizer", "gan_epochs", "critic_steps", "lr", "batch_size",
                "width", "upsample", "seed")


def gaussian_shift(seed: int = 0) -> tuple[Tensor, float]:
    """The known-answer shift ``μ`` (a random 1×8×8 direction of norm 2, fixed by ``seed``) and W1 = ‖μ‖."""
    direction = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return GAUSSIAN_SHIFT_NORM * direction / direction.norm(), GAUSSIAN_SHIFT_NORM


@dataclass
class WassersteinConfig:
    """One estimate; ``out_dir`` defaults to ``runs/wasserstein/<dataset>_<conv>_<activation>_seed<seed>``.

    The generator is trained once per (dataset, seed) into ``checkpoint_dir`` and shared by every
    critic; ``gan_epochs`` is ignored for the known-answer pair, which needs no generator.
    """

    dataset: str = "digits"
    conv: str = "bcop"
    activation: str = "maxmin"
    orthogonalizer: str = DEFAULT_ORTHOGONALIZER
    gan_epochs: int = 20
    critic_steps: int = 1000
    lr: float = 1e-3
    batch_size: int = 64
    pairs: int = 6400
    width: int = 64
    upsample: int = 1
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    checkpoint_dir: str = os.path.join("runs", "wasserstein", "generators")
    out_dir: str | None = None

    def __post_init__(self) -> None:
        require_choice("dataset", self.dataset, WASSERSTEIN_DATASETS)
        require_choice("conv", self.conv, tuple(CONV_KINDS))
        require_choice("activation", self.activation, tuple(ACTIVATIONS))
        orthogonalizer_options(self.conv, self.orthogonalizer)
        for name in ("gan_epochs", "critic_steps", "batch_size", "pairs", "width", "upsample"):
            require_positive_int(name, getattr(self, name))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        require_device(self.device)
        if self.out_dir is None:
            name = f"{self.dataset}_{self.conv}_{self.activation}_seed{self.seed}"
            self.out_dir = os.path.join("runs", "wasserstein", name)

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
        if self.dataset == KNOWN_ANSWER:
            return None
        return (
            load_dataset(self.dataset, self.data_root, train=True),
            load_dataset(self.dataset, self.data_root, train=False),
        )


def train_generator(config: WassersteinConfig, train_set: Dataset, progress: bool = True) -> tuple[InfoGANGenerator, list[dict]]:
    """The frozen WGAN-GP generator of ``config.dataset``: trained, resumed or reused from ``checkpoint_dir``."""
    torch.manual_seed(config.seed)
    generator = InfoGANGenerator(config.input_shape)
    discriminator = InfoGANDiscriminator(config.input_shape)
    history = train_wgan_gp(
        generator, discriminator, train_set, epochs=config.gan_epochs, settings=WGANSettings(), seed=config.seed,
        device=resolve_device(config.device), checkpoint=config.generator_checkpoint, progress=progress,
    )
    return generator, history


def run_wasserstein(config: WassersteinConfig, data: tuple[Dataset, Dataset] | None = None, progress: bool = True) -> dict:
    """Generator (if any), critic, estimate: return the results and write ``out_dir/results.json``.

    The critic trains on the training split and fresh generator draws; the estimate uses the test
    split and other draws, so the pairs it averages were never seen in training.
    """
    start = time.perf_counter()
    out_dir = Path(config.out_dir)
    record_settings(out_dir, {key: getattr(config, key) for key in _CRITIC_KEYS})
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
        config.conv, config.activation, config.input_shape, config.width, config.upsample,
        orthogonalizer_options(config.conv, config.orthogonalizer),
    )
    device = resolve_device(config.device)
    history = train_critic(
        critic, sample_train_real, sample_fake, steps=config.critic_steps, lr=config.lr,
        batch_size=config.batch_size, seed=config.seed, device=device, checkpoint=out_dir / "critic.pt",
        progress=progress,
    )
    estimate = estimate_wasserstein(
        critic, sample_test_real, sample_fake, config.input_shape, pairs=config.pairs, seed=config.seed + 1,
        device=device,
    )
    results = {
        "experiment": "wasserstein",
        "config": dataclasses.asdict(config),
        **estimate,
        "true_wasserstein": true_w1,
        "generator": generator_record,
        "history": history,
        "seconds": time.perf_counter() - start,
    }
    write_json(out_dir / "results.json", results)
    return results
