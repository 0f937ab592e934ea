"""Padding collate for CTC, and a length-bucketed batch sampler."""
from __future__ import annotations

import math
import weakref
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Sampler, get_worker_info

from .batch_memory import batch_tensors
from .batch_sending import SentBatch

MASKS = ("valid", "imputed")  # per point and frame, padded with False


def collate_ctc(items: Sequence[Dict]) -> Dict:
    """Batch dataset items for ``torch.nn.CTCLoss``.

    Returns ``landmarks`` (Tensor[B, T_max, N, C], zero-padded, the items' dtype), ``confidence``
    (Tensor[B, T_max, N]), the masks ``valid`` and ``imputed`` (bool Tensor[B, T_max, N], False in padding)
    where the items have them, ``lengths`` (LongTensor[B], frames), ``targets`` (LongTensor[sum of target
    lengths], concatenated gloss ids), ``target_lengths`` (LongTensor[B]), and per-sample lists ``id``,
    ``signer``, ``gloss_text``, ``translation``.

    The padded tensors share one storage. In a DataLoader worker it is shared memory of the worker's
    pool, reused once the main process has let go of the batch (``batch_memory``): the batch reaches
    the main process without another copy, as a plain dict. Items that ``PhoenixLandmarks.__getitems__``
    decoded into one padded batch are not copied at all.
    """
    if not items:
        raise ValueError("collate_ctc got an empty batch.")
    # from the tensors, not item["num_frames"]: a transform may have dropped or resampled frames
    sizes = [int(item["landmarks"].shape[0]) for item in items]
    keys = ["landmarks", "confidence"] + [key for key in MASKS if key in items[0]]
    padded = _read_batch([[item[key] for item in items] for key in keys], sizes)
    if padded is None:
        padded = padded_batch([(len(items), max(sizes)) + tuple(items[0][key].shape[1:]) for key in keys],
                              [items[0][key].dtype for key in keys], sizes)
        for key, out in zip(keys, padded):
            for b, (item, size) in enumerate(zip(items, sizes)):
                out[b, :size] = item[key]
    targets = [torch.as_tensor(item["glosses"], dtype=torch.long) for item in items]
    batch = {
        **dict(zip(keys, padded)),
        "lengths": torch.tensor(sizes, dtype=torch.long),
        "targets": torch.cat(targets),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        **{key: [item.get(key) for item in items] for key in ("id", "signer", "gloss_text", "translation")},
    }
    return SentBatch(batch) if get_worker_info() is not None else batch


def _read_batch(columns: List[List[torch.Tensor]], sizes: List[int]) -> Optional[List[torch.Tensor]]:
    """The padded tensors ``padded_batch`` made whose rows the items' tensors are (a batch read by
    ``PhoenixLandmarks.__getitems__``), or None."""
    bases = []
    for tensors in columns:
        base = tensors[0]._base
        padded = _PADDED.get(id(base)) if base is not None else None
        if base is None or padded is None or not (padded[0]() is base and padded[1] == tuple(sizes)
                                                  and base.shape[0] == len(tensors) and base.shape[1] == max(sizes)):
            return None  # (an item cut shorter than its row would leave its last frames in the padding)
        # each tensor is row b of base, its first n frames (by address and shape: no view made per row)
        start, row_bytes, rest = base.data_ptr(), base.stride(0) * base.element_size(), tuple(base.shape[2:])
        if not all(t._base is base and t.data_ptr() == start + b * row_bytes and t.shape == (n,) + rest
                   and t.is_contiguous() for b, (t, n) in enumerate(zip(tensors, sizes))):
            return None
        bases.append(base)
    return bases


# Batches padded_batch made in this process, whose padding it zeroed, by id while they live: (the batch, the
# lengths its rows were padded after). collate may pass one on as it is if the items are its rows at those.
_PADDED: Dict[int, Tuple["weakref.ReferenceType[torch.Tensor]", Tuple[int, ...]]] = {}


def padded_batch(shapes: Sequence[Tuple[int, ...]], dtypes: Sequence[torch.dtype],
                 sizes: Sequence[int]) -> List[torch.Tensor]:
    """Uninitialised Tensors[shape] (each [B, T_max, ...]) on one storage, whose rows are zero after
    ``sizes[b]`` frames: in a DataLoader worker shared memory of the worker's pool (the batch reaches
    the main process without another copy); elsewhere (``num_workers=0``) memory of an earlier batch
    that nothing holds any more, or new memory (``batch_memory``)."""
    tensors = batch_tensors(list(zip(shapes, dtypes)), in_worker=get_worker_info() is not None)
    rows = tuple(int(size) for size in sizes)
    for out in tensors:
        values: Union[np.ndarray, torch.Tensor]
        try:
            values = out.numpy()  # the same memory: NumPy's slices cost a tenth of torch's
        except TypeError:  # a dtype NumPy lacks (bfloat16)
            values = out
        for b, size in enumerate(sizes):
            if size < out.shape[1]:
                values[b, size:] = 0
        _PADDED[id(out)] = (weakref.ref(out), rows)
        weakref.finalize(out, _PADDED.pop, id(out), None)
    return tensors


class LengthBucketBatchSampler(Sampler[List[int]]):
    """Batches of similar length: shuffled per epoch (seedable), sorted within buckets.

    Each epoch the indices are shuffled, cut into buckets of ``batch_size * bucket_batches``
    samples, each bucket sorted by length and cut into batches, and the batches shuffled.
    Call ``set_epoch(n)`` each epoch (as with DistributedSampler) for a new order.

    Distributed training (DDP): with ``num_replicas`` ranks and this process's ``rank`` (given, or from
    ``torch.distributed`` when it is initialised; ``num_replicas`` > 1 without it needs ``rank``) every
    rank computes the same epoch's batches (same seed and epoch everywhere) and takes every
    ``num_replicas``-th of them, starting at its ``rank``: disjoint shares, the same number of batches on
    every rank. Where the batches do not divide evenly, the list is padded with its first batches (their
    samples are seen twice that epoch, as DistributedSampler pads), or, with ``drop_last``, the remainder
    is dropped. One replica gives exactly the batches of no replicas.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, bucket_batches: int = 50, num_replicas: Optional[int] = None,
                 rank: Optional[int] = None) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError(f"batch_size={batch_size}, bucket_batches={bucket_batches}; both must be >= 1.")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.bucket_size = batch_size * bucket_batches
        self.epoch = 0
        self.num_replicas, self.rank = _replicas(num_replicas, rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        batches = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return self._share(batches)

    def _share(self, batches: int) -> int:
        """Batches each rank gets out of ``batches``."""
        if self.num_replicas == 1:
            return batches
        return batches // self.num_replicas if self.drop_last else math.ceil(batches / self.num_replicas)

    def __iter__(self) -> Iterator[List[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            per_rank = self._share(len(batches))
            total = per_rank * self.num_replicas
            while len(batches) < total:  # pad with the epoch's first batches (not with drop_last)
                batches += batches[:total - len(batches)]
            batches = batches[self.rank:total:self.num_replicas]
        yield from batches

    def _all_batches(self) -> List[List[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        buckets = [order[i:i + self.bucket_size] for i in range(0, n, self.bucket_size)] if self.shuffle else [order]
        batches = []
        for bucket in buckets:
            bucket = sorted(bucket, key=self.lengths.__getitem__)
            batches += [bucket[i:i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches


def _replicas(num_replicas: Optional[int], rank: Optional[int]) -> Tuple[int, int]:
    """(ranks, this rank): as given, else torch.distributed's when it is initialised, else (1, 0)."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is not None and num_replicas < 1:
        raise ValueError(f"num_replicas={num_replicas}; expected 1 or more (the number of DDP ranks), or None "
                         "to take it from torch.distributed.")
    if rank is None and not initialised and num_replicas is not None and num_replicas > 1:
        # rank 0 by default would give every process the same share
        raise ValueError(f"num_replicas={num_replicas} but no rank, and torch.distributed is not initialised; "
                         "pass rank= (this process's rank), or initialise the process group first.")
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank={rank}; expected 0 .. {num_replicas - 1} for num_replicas={num_replicas}: "
                         "pass this process's rank (torch.distributed.get_rank()) and the number of ranks.")
    return num_replicas, rank
