"""Padding collate and the length-bucketed batch sampler (fake items: no MediaPipe needed here)."""
from __future__ import annotations

import pytest
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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32])
def test_padding_is_zero_in_every_dtype(dtype):
    """The padding is written into reused memory (whatever an earlier batch left there): zero in any dtype,
    NumPy's or not (bfloat16)."""
    def collated(sizes, fill):
        items = [item(n, [1], fill) for n in sizes]
        for it in items:
            it["landmarks"] = it["landmarks"].to(dtype)
        return collate_ctc(items)

    first = collated([4, 4], 7.0)  # no padding: every value of its memory 7
    address = first["landmarks"].data_ptr()
    del first
    batch = collated([2, 4], 3.0)
    assert batch["landmarks"].data_ptr() == address  # the first batch's memory, written again
    assert batch["landmarks"].dtype == dtype
    assert (batch["landmarks"][0, 2:] == 0).all() and (batch["landmarks"][0, :2] == 3).all()
    assert (batch["confidence"][0, 2:] == 0).all() and (batch["landmarks"][1] == 3).all()


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


# --- distributed (DDP) shares -------------------------------------------------------------------------

def real_looking_lengths(n: int = 103, seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=generator) * 45 + 140).round().clamp(16, 299).long().tolist()


def test_one_replica_gives_exactly_the_batches_of_none():
    lengths = real_looking_lengths()
    plain = LengthBucketBatchSampler(lengths, 8, seed=3, bucket_batches=4)
    one = LengthBucketBatchSampler(lengths, 8, seed=3, bucket_batches=4, num_replicas=1, rank=0)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        one.set_epoch(epoch)
        assert list(one) == list(plain) and len(one) == len(plain)


@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_share_one_epochs_batches_disjointly_with_equal_counts(replicas):
    lengths = real_looking_lengths()  # 103 samples, batch 8: 13 batches, not a multiple of 2 or 3
    plain = list(LengthBucketBatchSampler(lengths, 8, seed=5, bucket_batches=4))
    ranks = [list(LengthBucketBatchSampler(lengths, 8, seed=5, bucket_batches=4, num_replicas=replicas, rank=r))
             for r in range(replicas)]
    per_rank = -(-len(plain) // replicas)
    assert [len(r) for r in ranks] == [per_rank] * replicas
    assert len(LengthBucketBatchSampler(lengths, 8, num_replicas=replicas, rank=0)) == per_rank
    shared = [batch for r in ranks for batch in r]
    padding = per_rank * replicas - len(plain)
    assert padding > 0
    # every batch of the epoch once, and exactly the first `padding` batches once more
    assert sorted(map(tuple, shared)) == sorted(map(tuple, plain + plain[:padding]))
    indices = [i for batch in shared for i in batch]
    assert set(indices) == set(range(len(lengths)))
    assert len(indices) - len(lengths) == sum(len(b) for b in plain[:padding])


def test_drop_last_drops_the_remainder_instead_of_padding():
    lengths = real_looking_lengths()
    plain = list(LengthBucketBatchSampler(lengths, 8, seed=5, drop_last=True))  # 12 full batches
    ranks = [list(LengthBucketBatchSampler(lengths, 8, seed=5, drop_last=True, num_replicas=5, rank=r))
             for r in range(5)]
    assert [len(r) for r in ranks] == [2] * 5  # 12 // 5: two dropped
    shared = [tuple(b) for r in ranks for b in r]
    assert len(set(shared)) == len(shared) == 10 and set(shared) <= set(map(tuple, plain))


def test_ranks_agree_per_seed_and_epoch_and_reshuffle_per_epoch():
    lengths = real_looking_lengths()

    def share(epoch, seed=0, rank=0):
        sampler = LengthBucketBatchSampler(lengths, 8, seed=seed, num_replicas=2, rank=rank)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert share(1) == share(1) and share(1, rank=1) == share(1, rank=1)
    assert share(0) != share(1)
    assert share(0, seed=1) != share(0)


def test_fewer_batches_than_ranks_are_repeated_in_order():
    lengths = real_looking_lengths(20)  # 3 batches of 8, 5 ranks: batches 0, 1, 2, then 0 and 1 again
    plain = list(LengthBucketBatchSampler(lengths, 8, seed=4))
    ranks = [list(LengthBucketBatchSampler(lengths, 8, seed=4, num_replicas=5, rank=r)) for r in range(5)]
    assert len(plain) == 3 and ranks == [[batch] for batch in plain + plain[:2]]
    dropped = [list(LengthBucketBatchSampler(lengths, 8, seed=4, drop_last=True, num_replicas=5, rank=r))
               for r in range(5)]
    assert dropped == [[]] * 5  # 2 full batches for 5 ranks: none, rather than some ranks waiting


def test_bad_ranks_are_refused():
    with pytest.raises(ValueError, match=r"rank=2; expected 0 \.\. 1 for num_replicas=2"):
        LengthBucketBatchSampler([3, 4], 1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=r"rank=-1; expected 0 \.\. 2 for num_replicas=3"):
        LengthBucketBatchSampler([3, 4], 1, num_replicas=3, rank=-1)
    with pytest.raises(ValueError, match=r"rank=1; expected 0 \.\. 0 for num_replicas=1"):
        LengthBucketBatchSampler([3, 4], 1, rank=1)  # no process group: one replica
    with pytest.raises(ValueError, match=r"num_replicas=0; expected 1 or more"):
        LengthBucketBatchSampler([3, 4], 1, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match=r"num_replicas=2 but no rank, and torch.distributed is not initialised"):
        LengthBucketBatchSampler([3, 4], 1, num_replicas=2)  # rank 0 on every process would repeat one share
    assert (LengthBucketBatchSampler([3, 4], 1, num_replicas=1).rank, LengthBucketBatchSampler([3], 1).rank) == (0, 0)


def _rank_batches(rank: int, world: int, folder: str) -> None:
    """One DDP rank (a process of its own): its sampler's batches, ranks taken from torch.distributed."""
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        sampler = LengthBucketBatchSampler(real_looking_lengths(), 8, seed=2)
        sampler.set_epoch(1)
        with open(f"{folder}/rank{rank}.json", "w") as out:
            json.dump({"ranks": [sampler.num_replicas, sampler.rank], "batches": list(sampler)}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_come_from_torch_distributed_when_it_is_initialised(tmp_path):
    import json

    import torch.multiprocessing as mp

    # the platform's start method (fork on Linux: no Python start and torch import per rank; spawn on macOS)
    mp.start_processes(_rank_batches, args=(2, str(tmp_path)), nprocs=2, start_method=mp.get_start_method())
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        expected = LengthBucketBatchSampler(real_looking_lengths(), 8, seed=2, num_replicas=2, rank=rank)
        expected.set_epoch(1)
        assert got == {"ranks": [2, rank], "batches": list(expected)}
