"""Margin training (BCOP paper, Sec. 5.1): multi-class hinge loss, Adam, step decay, on :mod:`lipnb.engine`.

A run is a pure function of its seed (:func:`lipnb.engine.fit`: per-epoch seeding, atomic
checkpoints, one resume rule), on one process or many (:mod:`lipnb.distributed`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lipnb import distributed
from lipnb.data import Batches, TensorImages, iterate_batches, shuffled_order
from lipnb.engine import SVCM_EVERY, EpochShards, Shard, epoch_seed, fit
from lipnb.losses import multiclass_hinge_loss


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; a CUDA device on a machine without one fails with one line."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but torch sees no CUDA GPU here; use device='cpu' or 'auto'")
    return device


class MarginTask:
    """The :class:`lipnb.engine.Task` of margin training: hinge loss on ``model``, Adam, LR ÷10 every 30% of the epochs."""

    def __init__(
        self, model: nn.Module, train_set: Dataset, *, epochs: int, margin: float, lr: float, batch_size: int,
        seed: int, device: torch.device,
    ) -> None:
        model.to(device)
        if isinstance(train_set, TensorImages):
            train_set = train_set.to(device)  # in memory: on a GPU the whole set sits on the device
        self.train_set, self.margin, self.batch_size, self.seed = train_set, margin, batch_size, seed
        self.network = distributed.wrap(model, device)
        self.modules = {"model": model}
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.optimizers = {"model": optimizer}
        self.schedulers = {
            "model": torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, round(0.3 * epochs)), gamma=0.1)
        }

    def batches(self, epoch: int) -> EpochShards:
        return EpochShards(epoch_loader(self.train_set, self.batch_size, self.seed, epoch))

    def step(self, shard: Shard) -> dict[str, Any]:
        x, y = shard.tensors
        logits = self.network(x)
        loss = shard.mean(multiclass_hinge_loss(logits, y, self.margin, reduction="none"))
        optimizer = self.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            return {
                "examples": len(shard),
                "loss": multiclass_hinge_loss(logits, y, self.margin, reduction="sum"),
                "train_accuracy": (logits.argmax(1) == y).sum(),
            }


def train(
    model: nn.Module,
    train_set: Dataset,
    *,
    epochs: int,
    margin: float,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    svcm_every: int = SVCM_EVERY,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``epochs`` and return the per-epoch history.

    The learning rate drops 10× every 30% of the epochs (the paper: 200 epochs, every 60); SVCM
    layers are clipped every ``svcm_every`` steps and after every epoch. With
    ``checkpoint``, one is written after every epoch, and an existing one is resumed if it was
    written with the same ``settings`` (plus the loop's own: epochs, margin, lr, batch size, seed).
    ``batch_size`` is the global batch: with several processes each reads its share of it.
    """
    device = resolve_device(device)
    task = MarginTask(
        model, train_set, epochs=epochs, margin=margin, lr=lr, batch_size=batch_size, seed=seed, device=device
    )
    loop = {"epochs": epochs, "margin": margin, "lr": lr, "batch_size": batch_size, "seed": seed}
    return fit(
        task, epochs=epochs, seed=seed, checkpoint=checkpoint, settings={**loop, **(settings or {})}, device=device,
        svcm_every=svcm_every, progress=progress, description="margin training",
    )


def epoch_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, drop_last: bool = False) -> Batches:
    """The shuffled batches of one epoch, in an order seeded from ``(seed, epoch)`` (:func:`lipnb.engine.epoch_seed`).

    The order is the one a ``DataLoader(shuffle=True)`` with the epoch's generator reads, so an
    epoch does not depend on the ones before it; in-memory datasets are served a batch at a time.
    (:func:`lipnb.engine.fit` seeds torch's own generator from the same seed at each epoch.)
    """
    return iterate_batches(dataset, batch_size, shuffled_order(len(dataset), epoch_seed(seed, epoch)), drop_last)
