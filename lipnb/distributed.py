"""One process or many: PyTorch's own ``torch.distributed`` under ``torchrun``, and nothing home-made.

``torchrun --nproc_per_node=N -m lipnb robustness ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment;
:func:`setup` joins them into one process group (gloo on CPU, nccl on CUDA, each rank on the GPU of
its ``LOCAL_RANK``). Without torchrun every function here is the one-process identity, so the
same code runs in a notebook.

How ranks stay identical: ``DistributedDataParallel`` (:func:`wrap`) starts every rank from
rank 0's parameters and buffers, all-reduces gradients, and broadcasts rank 0's buffers (OSSN's
power vectors) before every forward pass; so every optimizer step gives the same parameters on
every rank. Work done outside autograd on the parameters (SVCM's singular value clipping) is
followed by :func:`broadcast_module`, so it is identical by construction, not by luck.

A rank that fails ends the job: torchrun stops the others, and a collective that waits for a
dead peer fails after :data:`TIMEOUT` instead of hanging.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

TIMEOUT = datetime.timedelta(minutes=10)
"""How long a collective waits for the other ranks before failing the job."""


def launched() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` in the environment)."""
    return "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once) and return this rank's device.

    CPU runs use gloo; CUDA runs use nccl, each rank on ``cuda:LOCAL_RANK``. Outside torchrun
    this returns ``device`` unchanged.
    """
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return device


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0, the one that writes checkpoints, results and progress."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` on a multi-process run, else ``model`` itself."""
    if world_size() == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shard(items: Sequence, index: int | None = None, count: int | None = None) -> Sequence:
    """This rank's contiguous share of ``items`` (sizes differ by at most one; the union is ``items``, in order)."""
    index = rank() if index is None else index
    count = world_size() if count is None else count
    size, extra = divmod(len(items), count)
    start = index * size + min(index, extra)
    return items[start : start + size + (index < extra)]


def broadcast_module(module: nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def sum_over_ranks(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (float64)."""
    if world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` (CPU, same trailing shape) concatenated in rank order, on every rank."""
    if world_size() == 1:
        return tensor
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts)


def from_main(value: object) -> object:
    """Rank 0's ``value`` (any picklable object), on every rank."""
    if world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")
