"""The generator the Wasserstein estimates are measured against (BCOP paper, Sec. 5.3).

A WGAN-GP (Gulrajani et al. 2017) with the infoGAN-style generator and discriminator of the
paper's setup: ``z ~ U[0, 1)^62``, gradient penalty 50, 5 critic steps per generator step, Adam
2e-4 with β = (0.5, 0.999), batch 64. The discriminator has no batch norm (the penalty is per
sample). Images are in [0, 1] like :mod:`lipnb.data` (a sigmoid output), so W1 is in the same
pixel units as the robustness experiments.

Training runs on :func:`lipnb.engine.fit` (per-epoch seeding, atomic checkpoints, one resume
rule), so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lipnb import distributed
from lipnb._validation import require_positive_int
from lipnb.engine import EpochShards, Shard, fit, load_modules
from lipnb.losses import gradient_penalty, kantorovich_rubinstein_gaps
from lipnb.train import epoch_loader, resolve_device

LATENT_DIM = 62


def _check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    channels, height, width = image_shape
    if height % 4 or width % 4:
        raise ValueError(
            f"the infoGAN generator and discriminator halve the image twice: height and width must be "
            f"divisible by 4; got image_shape={tuple(image_shape)}"
        )
    return channels, height, width


class InfoGANGenerator(nn.Module):
    """FC 1024 → FC 128·(H/4)·(W/4) → deconv 64 4×4 s2 → deconv C 4×4 s2 → sigmoid, with BN + ReLU between."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = LATENT_DIM) -> None:
        super().__init__()
        channels, height, width = _check_image_shape(image_shape)
        self.image_shape = (channels, height, width)
        self.latent_dim = require_positive_int("latent_dim", latent_dim)
        self.body = nn.Sequential(
            nn.Linear(latent_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, 128 * (height // 4) * (width // 4)), nn.BatchNorm1d(128 * (height // 4) * (width // 4)),
            nn.ReLU(),
            nn.Unflatten(1, (128, height // 4, width // 4)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.ConvTranspose2d(64, channels, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.body(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from fresh latents ``z ~ U[0, 1)^latent_dim`` (drawn on the CPU; no gradient, eval mode)."""
        z = torch.rand(n, self.latent_dim, generator=generator)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            images = self(z.to(next(self.parameters()).device))
        self.train(was_training)
        return images


class InfoGANDiscriminator(nn.Module):
    """conv 64 4×4 s2 → conv 128 4×4 s2 → FC 1024 → FC 1, LeakyReLU(0.2) between; no batch norm."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, width = _check_image_shape(image_shape)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(128 * (height // 4) * (width // 4), 1024), nn.LeakyReLU(0.2),
            nn.Linear(1024, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).squeeze(-1)


@dataclass(frozen=True)
class WGANSettings:
    """The WGAN-GP hyperparameters; a checkpoint made with other ones is not resumed."""

    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    penalty: float = 50.0
    critic_iters: int = 5
    latent_dim: int = LATENT_DIM


class WGANTask:
    """The :class:`lipnb.engine.Task` of WGAN-GP: one discriminator step per batch, a generator step every ``critic_iters``.

    Not split over processes: every rank trains the same generator from the same seed on whole
    batches, and :func:`train_wgan_gp` then gives every rank rank 0's copy.
    """

    def __init__(
        self, generator: InfoGANGenerator, discriminator: nn.Module, train_set: Dataset, settings: WGANSettings,
        seed: int, device: torch.device,
    ) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.train_set, self.settings, self.seed, self.device = train_set, settings, seed, device
        self.modules = {"generator": generator, "discriminator": discriminator}
        self.optimizers = {
            name: torch.optim.Adam(module.parameters(), lr=settings.lr, betas=settings.betas)
            for name, module in self.modules.items()
        }
        self.schedulers: dict = {}

    def batches(self, epoch: int) -> EpochShards:
        loader = epoch_loader(self.train_set, self.settings.batch_size, self.seed, epoch, drop_last=True)
        return EpochShards(loader, split=False)

    def step(self, shard: Shard) -> dict[str, Any]:
        real = shard.tensors[0]
        with torch.no_grad():
            fake = self.generator(self._latents(len(real)))
        gaps = kantorovich_rubinstein_gaps(self.discriminator(real), self.discriminator(fake))
        penalties = gradient_penalty(self.discriminator, real, fake)
        self._descend("discriminator", shard.mean(self.settings.penalty * penalties - gaps))
        if (shard.index + 1) % self.settings.critic_iters == 0:
            self._descend("generator", -self.discriminator(self.generator(self._latents(len(real)))).mean())
        return {"examples": len(real), "critic_gap": gaps.sum().detach(), "penalty": penalties.sum().detach()}

    def _latents(self, n: int) -> Tensor:
        return torch.rand(n, self.settings.latent_dim, device=self.device)

    def _descend(self, name: str, loss: Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def train_wgan_gp(
    generator: InfoGANGenerator,
    discriminator: nn.Module,
    train_set: Dataset,
    *,
    epochs: int,
    settings: WGANSettings = WGANSettings(),
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train ``generator`` against ``discriminator`` for ``epochs`` passes over ``train_set``; return the history.

    On :func:`lipnb.engine.fit`: with ``checkpoint``, training resumes from it when it was made
    with the same ``settings`` and image shape, and saves it after each epoch. A checkpoint of
    fewer epochs is trained on to ``epochs``. The generator ends frozen (eval mode, no gradients).
    """
    require_positive_int("epochs", epochs)
    if len(train_set) < settings.batch_size:  # type: ignore[arg-type]
        raise ValueError(
            f"the training set has {len(train_set)} examples, fewer than one batch of {settings.batch_size}"  # type: ignore[arg-type]
        )
    device = resolve_device(device)
    generator.to(device)
    discriminator.to(device)
    task = WGANTask(generator, discriminator, train_set, settings, seed, device)
    recorded = {**asdict(settings), "betas": list(settings.betas), "image_shape": list(generator.image_shape), "seed": seed}
    history = fit(
        task, epochs=epochs, seed=seed, checkpoint=checkpoint, settings=recorded, device=device, progress=progress,
        description="WGAN-GP",
    )
    distributed.broadcast_module(generator)
    generator.requires_grad_(False)
    return history


def load_generator(path: str | os.PathLike, image_shape: tuple[int, int, int]) -> InfoGANGenerator:
    """The frozen generator that :func:`train_wgan_gp` saved in ``path``, for images of ``image_shape``.

    Fails with one line naming the file and the fix when it is missing, unusable or was trained
    for other images.
    """
    record = load_modules(path, {})
    recorded_shape = tuple(record["settings"].get("image_shape", ()))
    if recorded_shape != tuple(image_shape):
        raise ValueError(
            f"{path} holds a generator for images of shape {recorded_shape}, not {tuple(image_shape)}; point to the "
            f"right file"
        )
    generator = InfoGANGenerator(image_shape, record["settings"]["latent_dim"])
    load_modules(path, {"generator": generator})
    generator.eval()
    generator.requires_grad_(False)
    return generator
