"""The cached read path the DataLoader takes: batch reads (``__getitems__``), collate without a copy,
masks from the stored found bits, ``dtype=torch.float16``, one torch thread per sample in the main process.

Real LMDB files and DataLoader workers, records written by the cache (no extractor runs: every sample is
cached). Speed is measured by benchmarks/bench_loader.py, not here.
"""
from __future__ import annotations

from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
from helpers import assert_items_close, cached_train_split, fake_record, open_cached, raw_get, raw_put
from torch.utils.data import DataLoader

from phoenix_data import LengthBucketBatchSampler, PhoenixLandmarks, batch_memory, batch_sending, batching, collate_ctc
from phoenix_data.cache import CacheRecordError
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.record import part_slices
from phoenix_data.transforms import Compose, Mirror, Normalize, RandomAffine, SelectPoints, TimeWarp
from phoenix_data.transforms.base import validity

FAKE = FakeExtractorSettings()
RELEASE = "PHOENIX-2014-T"
LENGTHS = [5, 17, 9, 30, 12, 1, 23, 8, 14, 11]


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A 2014-T train split whose every sample is a record in a real cache; a hand missing in some frames."""
    hand = part_slices(543)["left_hand"]
    records = []
    for i, frames in enumerate(LENGTHS):
        record = fake_record(frames, seed=i)
        record.landmarks[::3, hand] = 0  # the left hand missing in every third frame
        record.confidence[::3, hand] = 0
        records.append(record)
    return cached_train_split(tmp_path_factory.mktemp("loader"), records, RELEASE)


def dataset(cached, **kwargs) -> PhoenixLandmarks:
    return open_cached(cached, **kwargs)


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == b[key].dtype and torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def test_batch_reads_give_the_items_of_single_reads(cached):
    ds = dataset(cached)
    indices = [3, 0, 5, 7]
    for item, index in zip(ds.__getitems__(indices), indices):
        assert_items_equal(item, ds[index])


def test_collate_passes_a_batch_read_on_without_a_copy_and_pads_with_zeros(cached):
    ds = dataset(cached)
    indices = [3, 0, 5, 7]
    items = ds.__getitems__(indices)
    batch = collate_ctc(items)
    assert batch["landmarks"] is items[0]["landmarks"]._base  # decoded into it, not copied again
    expected = collate_ctc([ds[i] for i in indices])  # items read one by one: copied into a new batch
    assert expected["landmarks"] is not expected["landmarks"]._base
    for key in ("landmarks", "confidence", "valid", "lengths", "targets", "target_lengths"):
        assert torch.equal(batch[key], expected[key]), key
    assert batch["lengths"].tolist() == [LENGTHS[i] for i in indices]
    assert not batch["landmarks"][1, LENGTHS[0]:].any() and not batch["valid"][1, LENGTHS[0]:].any()


def test_a_batch_of_other_items_is_copied(cached):
    """Rows of one batch in another order, or one row missing, are not that batch: collate copies."""
    ds = dataset(cached)
    items = ds.__getitems__([3, 0, 5])
    reordered = collate_ctc(items[::-1])
    assert reordered["landmarks"] is not items[0]["landmarks"]._base
    assert torch.equal(reordered["landmarks"][0, :LENGTHS[5]], items[2]["landmarks"])
    partial = collate_ctc(items[:2])
    assert partial["landmarks"] is not items[0]["landmarks"]._base and partial["landmarks"].shape[1] == 30


def test_a_view_at_a_rows_address_that_is_not_the_row_is_copied(cached):
    """A tensor that starts where a row starts but holds other values (other shape or strides) is not
    that row: collate copies the batch instead of passing memory on that the tensor does not describe."""
    ds = dataset(cached)
    items = ds.__getitems__([0, 4])  # 5 and 12 frames
    base = items[1]["landmarks"]._base
    items[1]["landmarks"] = base[1].transpose(0, 1).transpose(0, 1)[:LENGTHS[4]]  # the row itself: passed on
    assert collate_ctc(items)["landmarks"] is base
    row = base[1, :LENGTHS[4]]
    items[1]["landmarks"] = row.as_strided(row.shape, (row.stride(0), 1, row.shape[1]))  # same start, other strides
    batch = collate_ctc(items)
    assert batch["landmarks"] is not base and torch.equal(batch["landmarks"][1, :LENGTHS[4]], items[1]["landmarks"])


def test_items_cut_shorter_than_their_rows_are_copied(cached):
    """A collate wrapper that trims items (trailing frames dropped) leaves them rows of the batch, shorter
    than the row they were read into: passed on, the batch would serve the dropped frames as padding."""
    ds = dataset(cached)
    items = ds.__getitems__([0, 4])  # 5 and 12 frames
    whole = [{key: item[key].clone() for key in ("landmarks", "confidence", "valid")} for item in items]
    for key in ("landmarks", "confidence", "valid"):
        items[0][key] = items[0][key][:3]
    batch = collate_ctc(items)
    assert batch["lengths"].tolist() == [3, LENGTHS[4]]
    assert torch.equal(batch["landmarks"][0, :3], whole[0]["landmarks"][:3])
    assert not batch["landmarks"][0, 3:].any() and not batch["confidence"][0, 3:].any()
    assert not batch["valid"][0, 3:].any()  # False in padding, whatever the frames cut off held
    assert torch.equal(batch["landmarks"][1], whole[1]["landmarks"])


def test_the_valid_mask_is_the_stored_found_bits_and_agrees_with_the_coordinates(cached):
    ds = dataset(cached)
    for index in range(len(ds)):
        item = ds[index]
        assert torch.equal(item["valid"], validity(item["landmarks"], item["confidence"]))
    hand = part_slices(543)["left_hand"]
    item = ds[3]
    assert not item["valid"][::3, hand].any() and item["valid"][1::3, hand].all()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_equal_single_reads(cached, workers):
    ds = dataset(cached)
    sampler = LengthBucketBatchSampler(ds.lengths(), 4, seed=1)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_ctc, num_workers=workers)
    seen = []
    for indices, batch in zip(sampler, loader):
        expected = collate_ctc([ds[i] for i in indices])
        for key in ("landmarks", "confidence", "valid", "lengths", "targets"):
            assert torch.equal(batch[key], expected[key]), key
        seen += indices
    assert sorted(seen) == list(range(len(LENGTHS)))


def test_float16_items_hold_the_stored_values(cached):
    half, full = dataset(cached, dtype=torch.float16), dataset(cached)
    assert half[4]["landmarks"].dtype == torch.float16
    assert torch.equal(half[4]["landmarks"].float(), full[4]["landmarks"])  # stored as float16: exact
    loader = DataLoader(half, batch_size=3, collate_fn=collate_ctc, num_workers=2)
    batch = next(iter(loader))
    assert batch["landmarks"].dtype == torch.float16 and batch["confidence"].dtype == torch.float32
    transform = Compose([SelectPoints("pose", "left_hand"), Normalize()], seed=0)
    transformed = dataset(cached, dtype=torch.float16, transform=transform)[4]
    reference = dataset(cached, transform=transform)[4]  # transforms compute in float32, then convert
    assert transformed["landmarks"].dtype == torch.float16
    assert torch.equal(transformed["landmarks"], reference["landmarks"].half())


PIPELINES = {
    "select alone": lambda: SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips"),
    "select first": lambda: Compose([SelectPoints("lips", [12, 11], "right_hand", "left_hand"),
                                     Normalize(image_size=(210, 260)), Mirror(p=0.5), RandomAffine(), TimeWarp()],
                                    seed=3),
    "select later": lambda: Compose([Normalize(), SelectPoints("pose", "face")]),
}


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_transformed_item_is_the_transform_of_the_full_item(cached, pipeline, dtype):
    """Transforms that start with SelectPoints read only the selected points: the same items as the transform
    applied to the full item, one at a time and a batch at a time; to the bit, but for the landmarks of a
    pipeline run over the whole batch (``transforms.batch``), whose composed maps round differently."""
    ds, plain = dataset(cached, transform=PIPELINES[pipeline](), dtype=dtype), dataset(cached)
    reference = PIPELINES[pipeline]()
    expected = []
    for i in range(len(ds)):
        item = reference(plain[i])
        item["landmarks"] = item["landmarks"].to(dtype)
        expected.append(item)
    same = assert_items_close if pipeline == "select first" else assert_items_equal
    for i in range(len(ds)):
        same(ds[i], expected[i])
    for i, item in zip([7, 2, 5], ds.__getitems__([7, 2, 5])):
        same(item, expected[i])


def test_a_damaged_record_read_through_a_selection_is_refused(cached, tmp_path):
    """The selected read checks each record as every read does: a damaged one raises, naming it."""
    import shutil

    root, cache = cached
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    key = f"{RELEASE}/train/s4"
    data = bytearray(raw_get(copy, key))
    data[-7] ^= 0xFF
    raw_put(copy, {key: bytes(data)})
    ds = PhoenixLandmarks(root, "train", cache=copy, settings=FAKE, readonly=True,
                          transform=PIPELINES["select alone"]())
    assert len(ds.__getitems__([0, 1])) == 2
    with pytest.raises(CacheRecordError, match=f"'{key}' fails its checksum"):
        ds.__getitems__([3, 4])
    with pytest.raises(CacheRecordError, match=f"'{key}' fails its checksum"):
        ds[4]


def test_a_dtype_other_than_float32_or_float16_is_refused(cached):
    with pytest.raises(ValueError, match=r"dtype=torch.float64; expected one of torch.float32, torch.float16"):
        dataset(cached, dtype=torch.float64)


def test_one_torch_thread_per_sample_in_the_main_process_and_the_setting_restored(cached):
    seen = []

    def spy(item):
        seen.append(torch.get_num_threads())
        return item

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ds = dataset(cached, transform=spy)
        ds[0]
        ds.__getitems__([1, 2])
        assert seen == [1, 1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_items_of_a_batch_read_are_independent_of_later_batches(cached):
    """A batch read allocates a new batch each time: items a caller keeps are not overwritten."""
    ds = dataset(cached)
    first = ds.__getitems__([0, 1])
    kept = first[0]["landmarks"].clone()
    ds.__getitems__([2, 3])
    ds.__getitems__([0, 1])
    assert torch.equal(first[0]["landmarks"], kept)
    assert np.isfinite(kept.numpy()).all()


# --- memory of earlier batches (num_workers=0): reused only when nothing holds it -----------------------

def _batch_memory(batch: dict) -> set:
    return {batch[key].untyped_storage().data_ptr() for key in ("landmarks", "confidence", "valid")}


def test_a_batch_nobody_holds_lends_its_memory_to_the_next(cached):
    ds = dataset(cached)
    first = collate_ctc(ds.__getitems__([0, 1, 2]))
    memory = _batch_memory(first)
    del first
    second = collate_ctc(ds.__getitems__([0, 1, 2]))
    assert _batch_memory(second) == memory  # reused: no fresh pages to fault in
    expected = collate_ctc([ds[i] for i in (0, 1, 2)])
    assert all(torch.equal(second[k], expected[k]) for k in ("landmarks", "confidence", "valid"))


def _hold(batch: dict, holder: str):
    """What a caller may keep of a batch: the batch, a row (a view), a NumPy array, a DLPack capsule, or
    the storage object."""
    landmarks = batch["landmarks"]
    if holder == "batch":
        return batch
    if holder == "row":
        return landmarks[1, :4]
    if holder == "numpy":
        return landmarks[0].numpy()
    if holder == "dlpack":
        return torch.utils.dlpack.to_dlpack(landmarks)
    return landmarks.untyped_storage()


@pytest.mark.parametrize("holder", ["batch", "row", "numpy", "dlpack", "storage"])
def test_memory_anything_still_holds_is_never_reused(cached, holder):
    ds = dataset(cached)
    first = collate_ctc(ds.__getitems__([3, 6]))
    kept = _hold(first, holder)
    snapshot = first["landmarks"].clone()
    pointer = first["landmarks"].untyped_storage().data_ptr()
    del first
    for indices in ([6, 3], [3, 6], [0, 1], [3, 6]):  # the same shapes again, and other ones
        later = collate_ctc(ds.__getitems__(indices))
        assert pointer not in _batch_memory(later), holder
    if holder == "batch":
        assert torch.equal(kept["landmarks"], snapshot)
    elif holder == "row":
        assert torch.equal(kept, snapshot[1, :4])
    elif holder == "numpy":
        assert torch.equal(torch.from_numpy(kept), snapshot[0])
    elif holder == "dlpack":
        assert torch.equal(torch.utils.dlpack.from_dlpack(kept), snapshot)


def test_memory_sent_to_another_process_is_never_reused(cached):
    ds = dataset(cached)
    first = collate_ctc(ds.__getitems__([3, 6]))
    first["landmarks"].share_memory_()  # what a multiprocessing queue does to a tensor it sends
    pointer = first["landmarks"].untyped_storage().data_ptr()
    del first
    later = collate_ctc(ds.__getitems__([3, 6]))
    assert pointer not in _batch_memory(later)


def test_an_epoch_kept_whole_holds_every_batch_intact(cached):
    """num_workers=0, every batch kept: each one still equals its single reads after the epoch."""
    ds = dataset(cached)
    sampler = LengthBucketBatchSampler(ds.lengths(), 3, seed=2)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_ctc, num_workers=0)
    kept = list(zip(sampler, loader))
    assert len(kept) > 2
    for indices, batch in kept:  # compared with single reads: they pad nothing, so they take no batch memory
        for b, index in enumerate(indices):
            item, size = ds[index], int(batch["lengths"][b])
            for key in ("landmarks", "confidence", "valid"):
                assert torch.equal(batch[key][b, :size], item[key]), key
                assert not batch[key][b, size:].any(), key  # padding still zero


# --- memory of earlier batches in DataLoader workers: reused once the main process let go of it -----------

def _memory_key(batch: dict):
    """Which shared memory a received batch is in (the same key when a worker wrote into it again)."""
    key = batch_sending.RETURNED.key_of(batch["landmarks"])
    assert key is not None
    return key


def _many_batches(n: int = 40, size: int = 3):
    generator = torch.Generator().manual_seed(0)
    return [torch.randperm(len(LENGTHS), generator=generator)[:size].tolist() for _ in range(n)]


@pytest.fixture(params=["file_descriptor", "file_system"])
def sharing_strategy(request):
    """torch's two ways to share memory between processes (macOS has only file_system)."""
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy(request.param)
    yield request.param
    torch.multiprocessing.set_sharing_strategy(before)


def _loader(ds, batches, collate=collate_ctc, **kwargs):
    return DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=2, **kwargs)


def test_workers_write_into_memory_the_main_process_let_go_of(cached, sharing_strategy):
    ds = dataset(cached)
    batches = _many_batches()
    keys = []
    for indices, batch in zip(batches, _loader(ds, batches)):
        assert type(batch) is dict  # what a user gets: a plain dict
        keys.append(_memory_key(batch))
        expected = collate_ctc([ds[i] for i in indices])
        for key in ("landmarks", "confidence", "valid", "lengths", "targets", "target_lengths", "id"):
            assert (batch[key] == expected[key]) if key == "id" else torch.equal(batch[key], expected[key]), key
    assert len(set(keys)) <= 2 * batch_memory.WorkerBatchPool.SLOTS < len(keys)  # reused, not new each time
    # named shared memory whatever the strategy: mapped by name, no file descriptor passed per batch
    assert all(isinstance(key, bytes) for key in keys), keys[:2]


@pytest.mark.parametrize("holder", ["batch", "row", "numpy"])
def test_memory_the_main_process_still_holds_is_never_written_again(cached, holder, sharing_strategy):
    """Every batch (or a row of it, or an array of it) kept to the end of the epoch: each still holds its
    values, though the workers wrote 40 batches meanwhile."""
    ds = dataset(cached)
    batches = _many_batches()
    kept = [(indices, _hold(batch, holder)) for indices, batch in zip(batches, _loader(ds, batches))]
    for indices, held in kept:
        expected = collate_ctc([ds[i] for i in indices])["landmarks"]
        if holder == "batch":
            assert torch.equal(held["landmarks"], expected)
        elif holder == "row":
            assert torch.equal(held, expected[1, :4])
        else:
            assert torch.equal(torch.from_numpy(held), expected[0])


def test_a_tensor_the_main_process_sends_on_goes_as_a_copy(cached):
    """A batch's tensor the main process sends on to another process (torch's sharing) takes a copy of its
    own: the batch's memory goes back to its worker and is written again, and the other process still
    reads the values it was sent."""
    ds = dataset(cached)
    batches = _many_batches()
    loader = iter(_loader(ds, batches))
    first = next(loader)
    key, snapshot = _memory_key(first), first["landmarks"].clone()
    sent = ForkingPickler.dumps(first["landmarks"])  # as a multiprocessing queue sends it
    del first
    later = [_memory_key(batch) for batch in loader]
    assert key in later
    assert torch.equal(ForkingPickler.loads(sent), snapshot)  # what the other process reads, still intact


_BEFORE: list = []


def _with_the_one_before(items):
    """A collate that sends each batch twice: with its own message, and again with the next one."""
    batch = collate_ctc(items)
    before = _BEFORE[0] if _BEFORE else batch
    _BEFORE[:] = [batch]
    return {"now": batch, "before": type(batch)(before)}


def test_a_batch_a_worker_sends_twice_is_never_written_again(cached):
    """Each batch's first copy dropped at once, its second (in the next message) kept: the memory must not
    be handed back with the first copy while the second may still be on its way."""
    ds = dataset(cached)
    batches = _many_batches()
    kept = [pair["before"] for pair in _loader(ds, batches, collate=_with_the_one_before)]
    index_of = {sample.id: i for i, sample in enumerate(ds.samples)}
    for batch in kept:
        expected = collate_ctc([ds[index_of[sample_id]] for sample_id in batch["id"]])
        assert torch.equal(batch["landmarks"], expected["landmarks"])


def _noting_whether_kept(items):
    """collate_ctc, and whether the worker's pool kept the batch's memory for a later batch."""
    batch = collate_ctc(items)
    pointer = batch["landmarks"].untyped_storage().data_ptr()
    slots = batch_memory.WORKER_POOL._slots
    return {"batch": batch, "kept": any(s is not None and s.storage.data_ptr() == pointer for s in slots)}


@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_workers_take_new_memory_for_slots_whose_memory_was_sent_on(cached):
    """A child forked after each of the first 20 batches inherits the batches the main process maps, so
    their slots are retired; the slots then take new memory, kept and reused, instead of leaving the pool
    empty for the rest of the run."""
    ds = dataset(cached)
    batches = _many_batches(60)
    context = torch.multiprocessing.get_context("fork")
    kept = []
    for k, message in enumerate(_loader(ds, batches, collate=_noting_whether_kept)):
        if k < 20:
            child = context.Process(target=int)
            child.start()
            child.join(60)
        kept.append(message["kept"])
    assert all(kept[-10:]), kept


def _read_when_told(landmarks, go, out):
    go.wait(60)
    out.put(landmarks.numpy().copy())  # by value: this child's memory is gone once it exits


@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_batch_a_child_inherited_is_never_written_again(cached):
    """The main process forks a child while it holds a batch (the child maps the same memory), then drops
    it and reads the rest of the epoch: the child, reading only then, still finds its batch's values."""
    ds = dataset(cached)
    batches = _many_batches()
    context = torch.multiprocessing.get_context("fork")
    go, out = context.Event(), context.SimpleQueue()
    loader = iter(_loader(ds, batches))
    first = next(loader)
    child = context.Process(target=_read_when_told, args=(first["landmarks"], go, out))
    child.start()
    del first
    assert len(list(loader)) == len(batches) - 1
    go.set()
    read = out.get()
    child.join(60)
    assert torch.equal(torch.from_numpy(read), collate_ctc([ds[i] for i in batches[0]])["landmarks"])


# --- the worker's pool, in this process (a worker's view) ----------------------------------------------

@pytest.fixture
def as_worker(monkeypatch):
    """This process taken for a DataLoader worker by the batch code: its pool of shared memory is used."""
    monkeypatch.setattr(batching, "get_worker_info", lambda: object())
    monkeypatch.setattr(batch_memory, "WORKER_POOL", batch_memory.WorkerBatchPool())


def test_a_worker_reuses_memory_of_a_batch_it_never_sent(cached, as_worker):
    """Items dropped in the worker (another collate, an error): their memory is taken again."""
    ds = dataset(cached)
    first = ds.__getitems__([3, 6])[0]["landmarks"].untyped_storage().data_ptr()
    assert ds.__getitems__([3, 6])[0]["landmarks"].untyped_storage().data_ptr() == first


def test_a_tensor_of_a_batch_sent_on_its_own_goes_as_a_copy(cached, as_worker):
    """An item's tensor sent on its own (torch's sharing) takes a copy of its region with it: the pool's
    memory is not shared by that, so it is reused, and the receiver's values stay intact."""
    ds = dataset(cached)
    items = ds.__getitems__([3, 6])
    pointer = items[0]["landmarks"].untyped_storage().data_ptr()
    expected = items[0]["landmarks"].clone()
    sent = ForkingPickler.dumps(items[0]["landmarks"])
    del items
    later = ds.__getitems__([6, 3])
    assert later[0]["landmarks"].untyped_storage().data_ptr() == pointer  # written again
    assert torch.equal(ForkingPickler.loads(sent), expected)


def test_a_worker_never_reuses_memory_a_sent_batch_had_until_it_is_handed_back(cached, as_worker):
    ds = dataset(cached)
    batch = collate_ctc(ds.__getitems__([3, 6]))
    assert isinstance(batch, batch_sending.SentBatch)
    pointer = batch["landmarks"].untyped_storage().data_ptr()
    sent = ForkingPickler.dumps(batch)
    del batch
    for _ in range(3):
        assert ds.__getitems__([3, 6])[0]["landmarks"].untyped_storage().data_ptr() != pointer
    assert sent


def test_a_view_of_a_batch_sent_before_the_batch_goes_as_a_copy(cached, as_worker):
    """A view of the batch sent on its own (say a preview for a logger) before the batch itself: the
    preview's receiver reads its own copy, whatever the pool writes later, and the batch still goes with
    its hand-back."""
    ds = dataset(cached)
    batch = collate_ctc(ds.__getitems__([3, 6]))
    expected = batch["landmarks"][:1].clone()
    preview = ForkingPickler.dumps(batch["landmarks"][:1])
    assert b"_rebuild_sent_batch" in bytes(ForkingPickler.dumps(batch))
    del batch
    for _ in range(3):
        collate_ctc(ds.__getitems__([6, 3]))
    assert torch.equal(ForkingPickler.loads(preview), expected)


def test_copies_of_a_batch_in_a_worker_are_ordinary_copies(cached, as_worker):
    """copy, deepcopy and pickle in a worker: a deep copy has memory of its own (writing it leaves the
    batch alone), and both still send as batches do."""
    import copy
    import pickle

    ds = dataset(cached)
    batch = collate_ctc(ds.__getitems__([3, 6]))
    before = batch["landmarks"].clone()
    deep, shallow = copy.deepcopy(batch), copy.copy(batch)
    assert deep["landmarks"].untyped_storage().data_ptr() != batch["landmarks"].untyped_storage().data_ptr()
    deep["landmarks"] += 1000
    assert torch.equal(batch["landmarks"], before) and shallow["landmarks"] is batch["landmarks"]
    assert torch.equal(pickle.loads(pickle.dumps(batch))["landmarks"], before)
    assert torch.equal(torch.load(_saved(batch))["landmarks"], before)
    assert b"_rebuild_sent_batch" in bytes(ForkingPickler.dumps(batch))


def _saved(batch):
    import io

    buffer = io.BytesIO()
    torch.save(dict(batch), buffer)
    buffer.seek(0)
    return buffer


def _inheritable_after_named_memory(queue) -> None:
    import os

    before = [fd for fd in map(int, os.listdir("/dev/fd")) if fd > 2 and _inheritable(fd)]
    batch_memory.named_shared(1 << 16)
    after = [fd for fd in map(int, os.listdir("/dev/fd")) if fd > 2 and _inheritable(fd)]
    queue.put((before, after))


def _inheritable(fd: int) -> bool:
    import os

    try:
        return os.get_inheritable(fd)
    except OSError:  # the listing's own descriptor
        return False


@pytest.mark.slow
def test_the_shared_memory_manager_inherits_no_descriptor_of_a_spawned_worker():
    """A spawned process (a DataLoader worker on macOS) holds inheritable descriptors, the write end of the
    pipe its parent's join waits on among them. torch's manager of named shared memory, started by the
    first named memory and living while anything maps it, must not inherit them: it kept that pipe open,
    and every epoch ended with a 5 s join timeout per worker."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_inheritable_after_named_memory, args=(queue,))
    child.start()
    before, after = queue.get(timeout=120)
    child.join(timeout=60)
    assert before, "a spawned process holds inheritable descriptors (the premise of this test)"
    assert not set(before) & set(after)  # (torch's own socket to its manager, opened after, may be)
