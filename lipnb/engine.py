"""One training loop for every experiment: margin training, Wasserstein critics, the WGAN-GP generator.

A :class:`Task` says what is trained (its modules, optimizers and schedulers), how an epoch's
batches are read and what one step does; :func:`fit` owns everything else, the same way for all:

* **Seeding.** Epoch ``e`` of a run with seed ``s`` reseeds torch's generator (and the task's
  data order, through :func:`epoch_seed`) from ``(s, e)``, so an epoch does not depend on the
  ones before it, and a run resumed at an epoch boundary ends where an uninterrupted one would.
* **Checkpoints.** After every epoch rank 0 writes one file atomically (temporary file, then
  rename): the task's modules, optimizers, schedulers, the epoch, step, history and the run's
  *settings*. It is read back with ``weights_only=True``.
* **One resume rule.** An existing checkpoint whose recorded settings equal the run's is resumed
  (a finished run returns at once); one with other settings is refused with one line naming each
  differing setting and the fix; an unreadable one likewise.
* **History.** One row per epoch: the mean of each metric the steps report over the epoch's
  examples (summed over all ranks), the learning rate(s), the step count and the seconds.
* **Progress.** One tqdm bar per run, counting steps, with the epoch and the running metrics in
  its postfix.
* **Many processes** (:mod:`lipnb.distributed`). Each rank reads its :class:`Shard` of every
  global batch; :meth:`Shard.mean` makes DDP's gradient average the one-process gradient.
  Every rank resumes from the same checkpoint; rank 0 alone writes it and shows progress.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lipnb import distributed
from lipnb._runs import atomic_torch_save, unusable_file_error
from lipnb._validation import require_positive_int
from lipnb.layers import SVCMConv2d

SVCM_EVERY = 100
"""Default steps between two singular value clippings of SVCM layers (also done at the end of every epoch)."""


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run with ``seed``."""
    return seed * 1_000_003 + epoch


@dataclass
class Shard:
    """This rank's part of batch ``index`` of an epoch, a batch of ``global_size`` examples split over ``ranks``."""

    tensors: tuple[Tensor, ...]
    global_size: int
    ranks: int = 1
    index: int = 0

    def __len__(self) -> int:
        return len(self.tensors[0])

    def mean(self, values: Tensor) -> Tensor:
        """This rank's term of the global batch's mean of per-example ``values``.

        ``Σ_shard values · ranks / global_size``: DDP averages gradients over the ranks, so the
        average of these terms' gradients is the gradient of the one-process mean.
        """
        return values.sum() * (self.ranks / self.global_size)


class EpochShards:
    """An epoch's batches as :class:`Shard` objects: this rank's share of each (``split=True``) or all of it.

    A batch is read whole before it is split, so random augmentation draws what one process would.
    ``len`` is the number of batches.
    """

    def __init__(self, batches: Sized | Iterable[Sequence[Tensor]], split: bool = True) -> None:
        self.batches = batches
        self.ranks = distributed.world_size() if split else 1

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Shard]:
        for index, batch in enumerate(self.batches):  # type: ignore[arg-type]
            tensors = tuple(batch)
            if self.ranks > 1:
                parts = tuple(distributed.shard(t) for t in tensors)
            else:
                parts = tensors
            yield Shard(parts, len(tensors[0]), self.ranks, index)


class Task(Protocol):
    """What :func:`fit` trains. ``modules`` are unwrapped (their state is what the checkpoint holds)."""

    modules: Mapping[str, nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]
    schedulers: Mapping[str, Any]  # stepped once at the end of every epoch

    def batches(self, epoch: int) -> EpochShards:
        """This rank's shards of the epoch's batches, in an order seeded by :func:`epoch_seed`.

        ``len`` is the number of steps. Building it must not draw from torch's global generator
        (:func:`fit` calls it to count the steps); iterating it may.
        """
        ...

    def step(self, shard: Shard) -> Mapping[str, float | Tensor]:
        """One training step; returns metric *sums* over the shard's examples."""
        ...


def fit(
    task: Task,
    *,
    epochs: int,
    seed: int,
    checkpoint: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    device: torch.device = torch.device("cpu"),
    svcm_every: int = SVCM_EVERY,
    progress: bool = True,
    description: str = "train",
) -> list[dict]:
    """Train ``task`` for ``epochs`` (resuming ``checkpoint`` if its settings match) and return the history.

    ``settings``: what decides the trained modules (JSON-like values); they are recorded in the
    checkpoint and compared on resume. ``device`` is where metric sums are reduced over ranks.
    SVCM layers of the task's modules are clipped every ``svcm_every`` steps and after every epoch.
    """
    require_positive_int("epochs", epochs)
    settings = dict(settings or {})
    path = Path(checkpoint) if checkpoint is not None else None
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": []}
    distributed.barrier()  # no rank reads a checkpoint while another one writes it
    if path is not None and path.exists():
        state = _resume(path, task, settings)
        if state["epoch"] > epochs:
            raise ValueError(
                f"{path} holds a run trained for {state['epoch']} epochs, more than the {epochs} asked for; ask for "
                f"{state['epoch']} epochs to use it, or choose another location to start over"
            )
    steps = [len(task.batches(epoch)) for epoch in range(epochs)]
    with tqdm(
        total=sum(steps), initial=sum(steps[: state["epoch"]]), desc=description,
        disable=not progress or not distributed.is_main(),
    ) as bar:
        for epoch in range(state["epoch"], epochs):
            start = time.perf_counter()
            torch.manual_seed(epoch_seed(seed, epoch))
            for module in task.modules.values():
                module.train()
            sums: dict[str, float] = {}
            for shard in task.batches(epoch):
                for name, value in task.step(shard).items():
                    sums[name] = sums.get(name, 0.0) + float(value)
                state["step"] += 1
                if state["step"] % svcm_every == 0:
                    project_svcm(task.modules.values())
                bar.update()
                bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", **_means(sums))
            project_svcm(task.modules.values())
            names = sorted(sums)
            totals = dict(zip(names, distributed.sum_over_ranks([sums[n] for n in names], device)))
            state["history"].append(
                {"epoch": epoch + 1, "step": state["step"], **_means(totals), **_learning_rates(task),
                 "seconds": time.perf_counter() - start}
            )
            for schedule in task.schedulers.values():
                schedule.step()
            state["epoch"] = epoch + 1
            if path is not None and distributed.is_main():
                _save(path, task, state, settings)
    for module in task.modules.values():
        module.eval()
    return state["history"]


def load_modules(path: str | Path, modules: Mapping[str, nn.Module]) -> dict[str, Any]:
    """Load ``modules`` (by the names :func:`fit` saved them under) from checkpoint ``path``; return its record.

    The record holds the run's ``settings``, ``epoch``, ``step`` and ``history``. A file that is
    missing, unreadable or holds no such module fails with one line naming it and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train the run first, or point to the right file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(payload["modules"][name])
        return {key: payload[key] for key in ("settings", "epoch", "step", "history")}
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be used
        raise unusable_file_error(path, error) from None


def project_svcm(modules: Iterable[nn.Module], rounds: int = 50) -> None:
    """Singular value clipping of every SVCM layer that has seen an input, then the same result on every rank."""
    for model in modules:
        layers = [m for m in model.modules() if isinstance(m, SVCMConv2d) and m.input_size is not None]
        for layer in layers:
            layer.project(rounds)
        if layers:
            distributed.broadcast_module(model)


def _means(sums: Mapping[str, float]) -> dict[str, float]:
    """Each metric sum divided by the ``examples`` sum."""
    count = sums.get("examples", 0.0)
    return {name: value / count for name, value in sums.items() if name != "examples" and count}


def _learning_rates(task: Task) -> dict[str, float]:
    rates = {name: optimizer.param_groups[0]["lr"] for name, optimizer in task.optimizers.items()}
    return {"lr": next(iter(rates.values()))} if len(rates) == 1 else {f"lr_{name}": lr for name, lr in rates.items()}


def _save(path: Path, task: Task, state: dict, settings: dict) -> None:
    payload = {
        **state,
        "settings": settings,
        **{
            group: {name: part.state_dict() for name, part in getattr(task, group).items()}
            for group in ("modules", "optimizers", "schedulers")
        },
    }
    atomic_torch_save(payload, path)


def _resume(path: Path, task: Task, settings: dict) -> dict:
    """Load ``path`` into ``task`` if it was written with ``settings``; one clear line if not."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        recorded = payload["settings"]
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be used
        raise unusable_file_error(path, error) from None
    differing = [key for key in sorted(set(settings) | set(recorded)) if settings.get(key) != recorded.get(key)]
    if differing:
        there = ", ".join(f"{key}={recorded.get(key)!r}" for key in differing)
        here = ", ".join(f"{key}={settings.get(key)!r}" for key in differing)
        raise ValueError(
            f"{path} was written by a run with {there}, not {here}; resuming needs the same settings: choose "
            f"another run directory, or delete {path} to start over"
        )
    try:
        for group in ("modules", "optimizers", "schedulers"):
            for name, part in getattr(task, group).items():
                part.load_state_dict(payload[group][name])
    except Exception as error:  # noqa: BLE001
        raise unusable_file_error(path, error) from None
    return {"epoch": payload["epoch"], "step": payload["step"], "history": payload["history"]}
