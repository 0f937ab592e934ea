"""Padding collate for CTC, and a length-bucketed batch sampler."""
from __future__ import annotations

import math
import os
import sys
import threading
import weakref
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Sampler, get_worker_info

MASKS = ("valid", "imputed")  # per point and frame, padded with False


def collate_ctc(items: Sequence[Dict]) -> Dict:
    """Batch dataset items for ``torch.nn.CTCLoss``.

    Returns ``landmarks`` (Tensor[B, T_max, N, C], zero-padded, the items' dtype), ``confidence``
    (Tensor[B, T_max, N]), the masks ``valid`` and ``imputed`` (bool Tensor[B, T_max, N], False in padding)
    where the items have them, ``lengths`` (LongTensor[B], frames), ``targets`` (LongTensor[sum of target
    lengths], concatenated gloss ids), ``target_lengths`` (LongTensor[B]), and per-sample lists ``id``,
    ``signer``, ``gloss_text``, ``translation``.

    In a DataLoader worker the padded tensors are allocated in shared memory (as torch's
    ``default_collate`` does), so a batch reaches the main process without another copy; only the
    padding is zeroed. Items that ``PhoenixLandmarks.__getitems__`` decoded into one padded batch are
    not copied at all.
    """
    if not items:
        raise ValueError("collate_ctc got an empty batch.")
    # from the tensors, not item["num_frames"]: a transform may have dropped or resampled frames
    lengths = torch.tensor([int(item["landmarks"].shape[0]) for item in items], dtype=torch.long)
    sizes = lengths.tolist()
    landmarks, confidence = (_batched([item[key] for item in items], sizes) for key in ("landmarks", "confidence"))
    masks = {key: _batched([item[key] for item in items], sizes) for key in MASKS if key in items[0]}
    targets = [torch.as_tensor(item["glosses"], dtype=torch.long) for item in items]
    return {
        "landmarks": landmarks,
        "confidence": confidence,
        **masks,
        "lengths": lengths,
        "targets": torch.cat(targets),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        **{key: [item.get(key) for item in items] for key in ("id", "signer", "gloss_text", "translation")},
    }


def _batched(tensors: List[torch.Tensor], sizes: List[int]) -> torch.Tensor:
    """Tensor[B, max(sizes), ...]: each tensor's frames, zeros after them. Tensors that are the rows of one
    batch ``padded_batch`` made (``PhoenixLandmarks.__getitems__`` decodes into one) give that batch itself."""
    base = tensors[0]._base
    if (base is not None and _PADDED.get(id(base)) is base
            and base.shape[0] == len(tensors) and base.shape[1] == max(sizes)
            and all(t._base is base and t.data_ptr() == base[b].data_ptr() and t.shape == base[b, :n].shape
                    for b, (t, n) in enumerate(zip(tensors, sizes)))):
        return base
    out = padded_batch((len(tensors), max(sizes)) + tuple(tensors[0].shape[1:]), tensors[0].dtype, sizes)
    for b, (tensor, size) in enumerate(zip(tensors, sizes)):
        out[b, :size] = tensor
    return out


# Batches padded_batch made in this process, whose padding it zeroed: collate may pass them on as they are.
_PADDED: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()


class _BatchMemory:
    """Memory of this process's earlier batches, reused once nothing holds it any more.

    Writing a batch into new memory costs more than decoding it: every page is faulted in fresh
    (benchmarks/bench_loader.py; docs/performance.md). So the main process keeps the storages of its
    last few batches and gives one out again only when the pool's own reference is its storage's only
    one: no tensor, view, row, ``.numpy()`` array or DLPack capsule of that batch is alive anywhere in
    the process. A storage moved to shared memory (the batch was sent to another process, which may
    still read it) is never reused. At most ``SLOTS`` storages are kept (two batches' three tensors).
    """

    SLOTS = 6
    STEP = 1 << 20  # sizes rounded up to this, plus an eighth, so batches of similar length share memory

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._kept: List[torch.UntypedStorage] = []
        self._use_count = getattr(torch._C, "_storage_Use_Count", None)  # None: reuse nothing
        self._own_refs = self._python_refs([torch.UntypedStorage(0)], 0)  # this code's own, measured

    @staticmethod
    def _python_refs(kept: List[torch.UntypedStorage], index: int) -> int:
        storage = kept[index]
        return sys.getrefcount(storage)

    def _free(self, index: int) -> bool:
        """Whether nothing but this pool holds storage ``index``: no tensor (its C++ count) and no
        Python reference to the storage object (``tensor.untyped_storage()`` returns this very object).
        Shared storages are dropped from the pool before this is asked (``_take``)."""
        if self._use_count is None or self._python_refs(self._kept, index) != self._own_refs:
            return False  # (counted before this function holds a reference of its own)
        return self._use_count(self._kept[index]._cdata) == 1

    def tensor(self, nbytes: int, dtype: torch.dtype, shape: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
        """An uninitialised Tensor[shape] (``nbytes``) on a storage nothing else holds; under the lock
        until the tensor holds it, so two threads never get one storage."""
        with self._lock:
            storage = self._take(nbytes)
            return torch.empty((0,), dtype=dtype).set_(storage, 0, shape, strides)

    def _take(self, nbytes: int) -> torch.UntypedStorage:
        if self._pid != os.getpid():  # a forked child: the storages it inherited are not its batches'
            self._pid, self._kept = os.getpid(), []
        self._kept = [s for s in self._kept if not s.is_shared()]
        free = sorted((self._kept[i] for i in range(len(self._kept)) if self._free(i)), key=lambda s: s.nbytes())
        for storage in free:
            if nbytes <= storage.nbytes() <= 4 * nbytes + self.STEP:
                return storage
        storage = torch.UntypedStorage(-(-(nbytes + nbytes // 8) // self.STEP) * self.STEP)
        if self._use_count is not None:
            if len(self._kept) >= self.SLOTS and free:  # make room: drop the smallest unused one
                self._kept = [s for s in self._kept if s is not free[0]]
            if len(self._kept) < self.SLOTS:
                self._kept.append(storage)
        return storage


_MEMORY = _BatchMemory()


def padded_batch(shape: Tuple[int, ...], dtype: torch.dtype, sizes: Sequence[int]) -> torch.Tensor:
    """An uninitialised Tensor[shape] whose rows are zero after ``sizes[b]`` frames; in shared memory in a
    DataLoader worker (as torch's ``default_collate`` allocates), so the batch reaches the main process
    without another copy. Elsewhere (``num_workers=0``) in memory of an earlier batch that nothing holds
    any more (``_BatchMemory``), or new memory."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]  # contiguous, and no view: rows' _base
    if get_worker_info() is not None:
        out = torch.empty((0,), dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, shape, strides)
    else:
        out = _MEMORY.tensor(nbytes, dtype, shape, strides)
    for b, size in enumerate(sizes):
        if size < shape[1]:
            out[b, size:] = 0
    _PADDED[id(out)] = out
    return out


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
