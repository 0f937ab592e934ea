"""What the CTC example needs to run under DistributedDataParallel (``torchrun --nproc_per_node=N``).

Started by torchrun (``WORLD_SIZE`` > 1 in the environment), ``start`` joins the process group: gloo
on CPU, nccl on CUDA (one GPU per rank, ``LOCAL_RANK``). Outside torchrun everything here is the
identity: one rank, nothing gathered.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

T = TypeVar("T")


def start(device: torch.device) -> Tuple[torch.device, bool]:
    """Join torchrun's process group if this process is one of several ranks.

    Returns the device this rank trains on (its own GPU under CUDA) and whether it joined here.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return device, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


def rank_and_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that prints and writes the log and the checkpoint."""
    return rank_and_world()[0] == 0


def shard(dataset: Dataset) -> Dataset:
    """This rank's share of an evaluation set: every sample on exactly one rank (``rank::world``)."""
    rank, world = rank_and_world()
    return dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))  # type: ignore[arg-type]


def gathered(part: Dict[str, T]) -> Dict[str, T]:
    """Every rank's dict merged, on every rank (e.g. the hypotheses of each rank's share of dev)."""
    _, world = rank_and_world()
    if world == 1:
        return part
    parts: List[Dict[str, T]] = [{} for _ in range(world)]
    dist.all_gather_object(parts, part)
    return {key: value for each in parts for key, value in each.items()}


def summed(*values: float) -> List[float]:
    """Each value summed over the ranks (e.g. loss and sample counts of one epoch)."""
    _, world = rank_and_world()
    if world == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def stop(joined: bool) -> None:
    if joined and dist.is_initialized():
        dist.destroy_process_group()
