"""Padding collate for CTC, and a length-bucketed batch sampler."""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Sequence

import torch
from torch.utils.data import Sampler

MASKS = ("valid", "imputed")  # per point and frame, padded with False


def collate_ctc(items: Sequence[Dict]) -> Dict:
    """Batch dataset items for ``torch.nn.CTCLoss``.

    Returns ``landmarks`` (Tensor[B, T_max, N, C], zero-padded), ``confidence`` (Tensor[B, T_max, N]),
    the masks ``valid`` and ``imputed`` (bool Tensor[B, T_max, N], False in padding) where the items have them,
    ``lengths`` (LongTensor[B], frames), ``targets`` (LongTensor[sum of target lengths], concatenated
    gloss ids), ``target_lengths`` (LongTensor[B]), and per-sample lists ``id``, ``signer``,
    ``gloss_text``, ``translation``.
    """
    if not items:
        raise ValueError("collate_ctc got an empty batch.")
    # from the tensors, not item["num_frames"]: a transform may have dropped or resampled frames
    lengths = torch.tensor([int(item["landmarks"].shape[0]) for item in items], dtype=torch.long)
    t_max = int(lengths.max())
    first = items[0]["landmarks"]
    landmarks = first.new_zeros((len(items), t_max) + tuple(first.shape[1:]))
    confidence = items[0]["confidence"].new_zeros((len(items), t_max) + tuple(first.shape[1:2]))
    masks = {key: torch.zeros(confidence.shape, dtype=torch.bool) for key in MASKS if key in items[0]}
    for b, (item, length) in enumerate(zip(items, lengths.tolist())):
        landmarks[b, :length] = item["landmarks"]
        confidence[b, :length] = item["confidence"]
        for key, mask in masks.items():
            mask[b, :length] = item[key]
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
