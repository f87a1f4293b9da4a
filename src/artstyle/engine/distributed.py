"""torchrun / DDP plumbing: process group from torchrun's environment, rank-0-only work that
tells every rank how it went, an unpadded evaluation sampler, and metric reduction across ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ..errors import ArtstyleError


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), world)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return info


def reduce_sum(values: list[float], device: torch.device, info: DistInfo) -> list[float]:
    """Sum plain numbers (loss sums, counts) over all ranks."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order (a one-item list without DDP)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def run_on_main(info: DistInfo, fn, *args):
    """``fn(*args)`` on rank 0 only; every rank then learns whether it worked (the broadcast is
    also the barrier), so a failure on rank 0 ends the other ranks with its reason instead of
    leaving them waiting at the next collective. Returns ``fn``'s result on rank 0, else None."""
    if not info.enabled:
        return fn(*args)
    result, error = None, None
    if info.is_main:
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others are told
            error = exc
    status = [None if error is None else str(error) or type(error).__name__]
    dist.broadcast_object_list(status, src=0)
    if error is not None:
        raise error
    if status[0] is not None:
        raise ArtstyleError(f"stopped: rank 0 failed ({status[0]})")
    return result


class ShardSampler(Sampler):
    """Every rank's share of an evaluation set, each item exactly once: DistributedSampler
    pads with duplicates so that ranks get equal shares, and duplicates would count twice in
    the validation metrics that drive early stopping."""

    def __init__(self, dataset):
        # The process group's rank and size, as DistributedSampler reads them.
        self.indices = range(dist.get_rank(), len(dataset), dist.get_world_size())

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
