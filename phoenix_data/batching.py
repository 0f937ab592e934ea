"""Padding collate for CTC, and a length-bucketed batch sampler."""
from __future__ import annotations

import math
import weakref
from typing import Dict, Iterator, List, Sequence, Tuple

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


def padded_batch(shape: Tuple[int, ...], dtype: torch.dtype, sizes: Sequence[int]) -> torch.Tensor:
    """An uninitialised Tensor[shape] whose rows are zero after ``sizes[b]`` frames; in shared memory in a
    DataLoader worker (as torch's ``default_collate`` allocates), so the batch reaches the main process
    without another copy."""
    if get_worker_info() is not None:
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]  # contiguous, and no view: rows' _base
        out = torch.empty((0,), dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, shape, strides)
    else:
        out = torch.empty(shape, dtype=dtype)
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
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, bucket_batches: int = 50) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError(f"batch_size={batch_size}, bucket_batches={bucket_batches}; both must be >= 1.")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.bucket_size = batch_size * bucket_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[List[int]]:
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
        yield from batches
