"""What the CTC example needs to run under DistributedDataParallel (``torchrun --nproc_per_node=N``).

Started by torchrun (``WORLD_SIZE`` > 1 in the environment), ``start`` joins the process group: gloo
on CPU, nccl on CUDA (one GPU per rank, ``LOCAL_RANK``). Outside torchrun everything here is the
identity: one rank, nothing gathered.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple, TypeVar

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


def share(size: int, rank: int, world: int) -> range:
    """The indices of ``size`` that ``rank`` of ``world`` evaluates: every index on exactly one rank."""
    return range(rank, size, world)


def shard(dataset: Dataset) -> Dataset:
    """This rank's share of an evaluation set (``share``); the whole set with one rank."""
    rank, world = rank_and_world()
    return dataset if world == 1 else Subset(dataset, share(len(dataset), rank, world))  # type: ignore[arg-type]


def whole(dataset: Dataset) -> Dataset:
    """The evaluation set a ``shard`` was cut from (the set itself with one rank)."""
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def gathered(part: Dict[str, T]) -> Dict[str, T]:
    """Every rank's dict merged (``merged``), on every rank (e.g. the hypotheses of each rank's share of dev)."""
    _, world = rank_and_world()
    if world == 1:
        return part
    parts: List[Dict[str, T]] = [{} for _ in range(world)]
    dist.all_gather_object(parts, part)
    return merged(parts)


def merged(parts: Sequence[Dict[str, T]]) -> Dict[str, T]:
    """The ranks' dicts as one. A key on two ranks is refused: a sample decoded twice would be scored once
    in the merge, hiding shares that overlap (and then others that are missing)."""
    out: Dict[str, T] = {}
    for rank, part in enumerate(parts):
        twice = sorted(out.keys() & part.keys())
        if twice:
            raise ValueError(f"rank {rank} sent {len(twice)} samples an earlier rank sent too ({', '.join(twice[:3])}"
                             f"); expected disjoint shares: cut them with shard().")
        out.update(part)
    return out


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
