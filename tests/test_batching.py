"""Padding collate and the length-bucketed batch sampler (fake items: no MediaPipe needed here)."""
from __future__ import annotations

import torch

from phoenix_data.batching import LengthBucketBatchSampler, collate_ctc


def item(frames: int, glosses, fill: float):
    return {"landmarks": torch.full((frames, 543, 3), fill), "confidence": torch.full((frames, 543), fill),
            "glosses": torch.tensor(glosses), "num_frames": frames, "id": f"s{frames}",
            "signer": "Signer01", "gloss_text": "", "translation": None}


def test_collate_pads_and_concatenates():
    batch = collate_ctc([item(3, [2, 3], 1.0), item(5, [4], 2.0)])
    assert batch["landmarks"].shape == (2, 5, 543, 3) and batch["confidence"].shape == (2, 5, 543)
    assert batch["lengths"].tolist() == [3, 5]
    assert (batch["landmarks"][0, 3:] == 0).all() and (batch["landmarks"][0, :3] == 1).all()
    assert (batch["confidence"][0, 3:] == 0).all() and (batch["landmarks"][1] == 2).all()
    assert batch["targets"].tolist() == [2, 3, 4] and batch["target_lengths"].tolist() == [2, 1]
    assert batch["id"] == ["s3", "s5"]


def test_sampler_covers_every_index_once_with_similar_lengths():
    lengths = [(i * 37) % 300 + 16 for i in range(1000)]
    sampler = LengthBucketBatchSampler(lengths, batch_size=8, bucket_batches=10, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 125
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 40, "batches mix short and long samples"  # random batches spread ~230


def test_sampler_is_seedable_and_reshuffles_per_epoch():
    lengths = list(range(100))
    a = LengthBucketBatchSampler(lengths, batch_size=4, seed=7, bucket_batches=5)
    b = LengthBucketBatchSampler(lengths, batch_size=4, seed=7, bucket_batches=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(LengthBucketBatchSampler(lengths, batch_size=4, seed=8, bucket_batches=5)) != first


def test_sampler_drop_last_and_no_shuffle():
    sampler = LengthBucketBatchSampler([5, 1, 3, 2, 4], batch_size=2, drop_last=True)
    assert len(sampler) == 2 and all(len(b) == 2 for b in sampler) and len(list(sampler)) == 2
    ordered = LengthBucketBatchSampler([5, 1, 3, 2, 4], batch_size=2, shuffle=False)
    assert list(ordered) == [[1, 3], [2, 4], [0]]


def test_collate_takes_lengths_from_the_tensors():
    """A transform that drops frames may leave num_frames as it was; the tensors decide."""
    short = item(6, [2], 1.0)
    short["landmarks"], short["confidence"] = short["landmarks"][::2], short["confidence"][::2]
    batch = collate_ctc([short, item(4, [3], 2.0)])
    assert batch["lengths"].tolist() == [3, 4] and batch["landmarks"].shape[1] == 4
