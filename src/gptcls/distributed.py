"""Data-parallel training on PyTorch's own engine (torch.distributed + DistributedDataParallel).

`torchrun --nproc-per-node N -m gptcls train ...` starts N processes; each reads RANK and
WORLD_SIZE from the environment and joins one process group (gloo on CPU, NCCL on GPUs). Every
process draws the same batch order from the same seed and trains on its share of each batch;
DDP averages the gradients, and the loss is scaled so the step equals the single-process step
on the whole batch. The frozen trunk is computed per shard and gathered, so each process holds
the full cache; evaluations run on every process identically; only rank 0 writes files.
Multi-node: torchrun's --nnodes/--node-rank/--rdzv-endpoint flags, unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from gptcls.errors import GptclsError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env(device: torch.device) -> Dist:
    """Join the process group torchrun described in the environment; a single process
    (no WORLD_SIZE, or 1) needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Dist(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """cuda -> this process's GPU (LOCAL_RANK) under torchrun."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ and device.index is None:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def share(idx: list[int], d: Dist) -> list[int]:
    """This process's part of a batch: every world-th example, from its rank on."""
    return idx[d.rank::d.world]


def check_batch(batch_size: int, d: Dist) -> None:
    if d.active and batch_size < d.world:
        raise GptclsError(f"batch size {batch_size} is smaller than the {d.world} processes: "
                          "every process needs at least one example per step")


def gather_dict(part: dict, d: Dist) -> dict:
    """Union of every process's dict (keys are disjoint), on every process."""
    if not d.active:
        return part
    import torch.distributed as dist

    parts: list[dict | None] = [None] * d.world
    dist.all_gather_object(parts, {k: v.cpu() for k, v in part.items()})
    return {k: v for p in parts if p for k, v in p.items()}


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """DDP around the model (only its trainable parameters are synchronised)."""
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()


def finish(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
