"""A training script for the multi-process tests, started by ``torchrun`` (not collected by pytest).

``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py MODE OUT``
with MODE a conv kind (every rank trains that kind's Small network on digits and saves its own
parameters and buffers to ``OUT/rank<r>.pt``) or ``die`` (rank 1 exits in the middle of training).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from lipnb import distributed
from lipnb.data import load_dataset
from lipnb.engine import Shard
from lipnb.models import build_model
from lipnb.train import MarginTask, train


def train_and_dump(conv: str, out: Path) -> None:
    """Train ``conv``'s Small network on digits for 30 steps; every rank saves its parameters and buffers."""
    device = distributed.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("small", conv, input_shape=(1, 8, 8))
    train(model, load_dataset("digits"), epochs=3, margin=0.7, batch_size=128, seed=1, device=device,
          svcm_every=5, progress=False)
    torch.save(model.state_dict(), out / f"rank{distributed.rank()}.pt")


def die_in_training(out: Path) -> None:
    """Rank 1 dies at its third step, as a killed process would; rank 0 goes on training."""
    original = MarginTask.step

    def step(self: MarginTask, shard: Shard) -> dict:
        if distributed.rank() == 1 and shard.index == 2:
            os._exit(3)
        return original(self, shard)

    MarginTask.step = step  # type: ignore[method-assign]
    train_and_dump("bcop", out)


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "die":
        die_in_training(out)
    else:
        train_and_dump(mode, out)
    distributed.teardown()
