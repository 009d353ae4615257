"""The generator the Wasserstein estimates are measured against (BCOP paper, Sec. 5.3).

A WGAN-GP (Gulrajani et al. 2017) with the infoGAN-style generator and discriminator of the
paper's setup: ``z ~ U[0, 1)^62``, gradient penalty 50, 5 critic steps per generator step, Adam
2e-4 with β = (0.5, 0.999), batch 64. The discriminator has no batch norm (the penalty is per
sample). Images are in [0, 1] like :mod:`lipnb.data` (a sigmoid output), so W1 is in the same
pixel units as the robustness experiments.

Training writes an atomic checkpoint after every epoch and resumes from it; each epoch reseeds
from ``(seed, epoch)``, so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lipnb._runs import atomic_torch_save, error_summary
from lipnb._validation import require_positive_int
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


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """``E (‖∇D(x̂)‖ − 1)²`` at random interpolates ``x̂`` of real and fake (WGAN-GP, Algorithm 1)."""
    mix = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    points = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradient,) = torch.autograd.grad(discriminator(points).sum(), points, create_graph=True)
    return (gradient.flatten(1).norm(dim=1) - 1).square().mean()


@dataclass(frozen=True)
class WGANSettings:
    """The WGAN-GP hyperparameters; a checkpoint made with other ones is not resumed."""

    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    penalty: float = 50.0
    critic_iters: int = 5
    latent_dim: int = LATENT_DIM


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

    Every batch is one discriminator step; every ``critic_iters``-th is followed by a generator
    step. With ``checkpoint``, training resumes from it (if present) and saves it after each epoch.
    """
    require_positive_int("epochs", epochs)
    device = resolve_device(device)
    generator.to(device)
    discriminator.to(device)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=settings.betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=settings.betas)
    state: dict = {"epoch": 0, "history": []}
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = load_gan_checkpoint(path, generator, discriminator, optimizer_g, optimizer_d, settings)
        if state["epoch"] > epochs:
            raise ValueError(
                f"{path} holds a generator trained for {state['epoch']} epochs, more than the {epochs} asked for; "
                f"pass epochs={state['epoch']} (or gan_epochs) to use it, or choose another checkpoint location"
            )
    for epoch in range(state["epoch"], epochs):
        start = time.perf_counter()
        loader = epoch_loader(train_set, settings.batch_size, seed, epoch, drop_last=True)
        generator.train()
        discriminator.train()
        totals = {"critic_gap": 0.0, "penalty": 0.0}
        steps = 0
        for step, (real, *_) in enumerate(tqdm(loader, desc=f"WGAN-GP epoch {epoch + 1}/{epochs}", leave=False,
                                                disable=not progress)):
            real = real.to(device)
            z = torch.rand(len(real), settings.latent_dim, device=device)
            with torch.no_grad():
                fake = generator(z)
            gap = discriminator(real).mean() - discriminator(fake).mean()
            penalty = gradient_penalty(discriminator, real, fake)
            optimizer_d.zero_grad(set_to_none=True)
            (settings.penalty * penalty - gap).backward()
            optimizer_d.step()
            totals["critic_gap"] += float(gap.detach())
            totals["penalty"] += float(penalty.detach())
            steps += 1
            if (step + 1) % settings.critic_iters == 0:
                z = torch.rand(len(real), settings.latent_dim, device=device)
                optimizer_g.zero_grad(set_to_none=True)
                (-discriminator(generator(z)).mean()).backward()
                optimizer_g.step()
        if steps == 0:
            raise ValueError(
                f"the training set has {len(train_set)} examples, fewer than one batch of {settings.batch_size}"
            )
        state["history"].append(
            {"epoch": epoch + 1, **{k: v / steps for k, v in totals.items()}, "seconds": time.perf_counter() - start}
        )
        state["epoch"] = epoch + 1
        if path is not None:
            _save_gan_checkpoint(path, generator, discriminator, optimizer_g, optimizer_d, settings, state)
    generator.eval()
    generator.requires_grad_(False)
    return state["history"]


def _save_gan_checkpoint(path: Path, generator, discriminator, optimizer_g, optimizer_d, settings, state) -> None:
    payload = {
        **state,
        "settings": asdict(settings),
        "image_shape": list(generator.image_shape),
        "generator": generator.state_dict(),
        "discriminator": discriminator.state_dict(),
        "optimizer_g": optimizer_g.state_dict(),
        "optimizer_d": optimizer_d.state_dict(),
    }
    atomic_torch_save(payload, path)


def load_gan_checkpoint(
    path: str | os.PathLike,
    generator: InfoGANGenerator,
    discriminator: nn.Module | None = None,
    optimizer_g: torch.optim.Optimizer | None = None,
    optimizer_d: torch.optim.Optimizer | None = None,
    settings: WGANSettings | None = None,
) -> dict:
    """Restore a WGAN-GP checkpoint (``weights_only``); return its epoch and history.

    Fails with one line naming the file and the fix when it is corrupt, was made for another image
    shape, or (given ``settings``) with other hyperparameters.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        recorded_shape = tuple(payload["image_shape"])
        recorded_settings = payload["settings"]
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be used
        raise ValueError(
            f"cannot read the WGAN-GP checkpoint {path} ({error_summary(error)}); delete it to retrain"
        ) from None
    if recorded_shape != tuple(generator.image_shape):
        raise ValueError(
            f"{path} holds a generator for images of shape {recorded_shape}, not {tuple(generator.image_shape)}; "
            f"choose another checkpoint location"
        )
    if settings is not None:
        wanted = asdict(settings)
        differing = [key for key in wanted if recorded_settings.get(key) != wanted[key]]
        if differing:
            raise ValueError(
                f"{path} was trained with different {', '.join(differing)}; delete it or choose another "
                f"checkpoint location"
            )
    generator.load_state_dict(payload["generator"])
    for module, key in ((discriminator, "discriminator"), (optimizer_g, "optimizer_g"), (optimizer_d, "optimizer_d")):
        if module is not None:
            module.load_state_dict(payload[key])
    return {"epoch": payload["epoch"], "history": payload["history"]}

