"""Margin training (BCOP paper, Sec. 5.1): multi-class hinge loss, Adam, step decay, checkpoints.

A run is a pure function of its seed: each epoch reseeds the data order and torch's generator
from ``(seed, epoch)``, and the checkpoint written atomically after every epoch holds the model,
optimizer, schedule and history. ``resume=True`` therefore continues an interrupted run to the
same result as an uninterrupted one (up to float nondeterminism on GPUs).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lipnb._runs import atomic_torch_save, error_summary
from lipnb.data import Batches, TensorImages, iterate_batches, shuffled_order
from lipnb.layers import SVCMConv2d

MNIST_MARGIN = 1.5 * math.sqrt(2)  # 2.1213: certifies ε = 1.5 at L = 1
CIFAR_MARGIN = 0.5 * math.sqrt(2)  # 0.7071


def multiclass_hinge_loss(logits: Tensor, labels: Tensor, margin: float) -> Tensor:
    """``mean_i Σ_{j≠yᵢ} max(0, margin − (f_{yᵢ} − f_j)) / K`` (``multi_margin_loss`` with p = 1)."""
    return F.multi_margin_loss(logits, labels, margin=margin)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def project_svcm(model: nn.Module, rounds: int = 50) -> None:
    """Singular value clipping of every SVCM layer that has seen an input."""
    for module in model.modules():
        if isinstance(module, SVCMConv2d) and module.input_size is not None:
            module.project(rounds)


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
    resume: bool = False,
    svcm_every: int = 100,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``epochs`` and return the per-epoch history.

    The learning rate drops 10× every 30% of the epochs (the paper: 200 epochs, every 60).
    SVCM layers are projected every ``svcm_every`` steps and at the end of each epoch.
    With ``checkpoint``, a checkpoint is written after every epoch; an existing one is refused
    unless ``resume=True``, which continues from it.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    device = resolve_device(device)
    model.to(device)
    if isinstance(train_set, TensorImages):
        train_set = train_set.to(device)  # in memory: on a GPU the whole set sits on the device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, round(0.3 * epochs)), gamma=0.1)
    state = {"epoch": 0, "step": 0, "history": []}
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        if not resume:
            raise FileExistsError(
                f"checkpoint {path} already exists; pass resume=True to continue it, or delete it to start over"
            )
        state = load_checkpoint(path, model, optimizer, schedule)
    for epoch in range(state["epoch"], epochs):
        start = time.perf_counter()
        loader = epoch_loader(train_set, batch_size, seed, epoch)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = multiclass_hinge_loss(logits, y, margin)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            if state["step"] % svcm_every == 0:
                project_svcm(model)
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        project_svcm(model)
        state["history"].append(
            {
                "epoch": epoch + 1,
                "loss": total_loss / seen,
                "train_accuracy": correct / seen,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
            }
        )
        schedule.step()
        state["epoch"] = epoch + 1
        if path is not None:
            save_checkpoint(path, model, optimizer, schedule, state)
    model.eval()
    return state["history"]


def epoch_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, drop_last: bool = False) -> Batches:
    """The shuffled batches of one epoch, with torch's generator and the order both seeded from ``(seed, epoch)``.

    This makes an epoch independent of the ones before it, so a run resumed at an epoch boundary
    continues exactly as an uninterrupted one. The order is the one a ``DataLoader(shuffle=True)``
    with the epoch's generator reads; in-memory datasets are served a batch at a time.
    """
    epoch_seed = seed * 1_000_003 + epoch
    torch.manual_seed(epoch_seed)
    return iterate_batches(dataset, batch_size, shuffled_order(len(dataset), epoch_seed), drop_last)


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule, state: dict
) -> None:
    """Write the checkpoint atomically (temporary file, then rename)."""
    payload = {
        **state,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
    }
    atomic_torch_save(payload, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer=None, schedule=None) -> dict:
    """Restore a checkpoint into ``model`` (and optimizer/schedule); return epoch, step, history."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(payload["schedule"])
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be used
        raise ValueError(
            f"checkpoint {path} cannot be used ({error_summary(error)}); delete it to start over, or point to the "
            f"right file"
        ) from error
    return {"epoch": payload["epoch"], "step": payload["step"], "history": payload["history"]}
