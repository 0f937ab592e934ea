"""PhoenixLandmarks on the demo tree: real DataLoader workers, a real LMDB cache, the fast fake extractor.

The Dataset's logic does not depend on the estimator; real MediaPipe through the same path: test_fill.py.
"""
from __future__ import annotations

import os
import shutil

import pytest
import torch
from helpers import commits, raw_records
from torch.utils.data import DataLoader

from phoenix_data import PhoenixLandmarks
from phoenix_data.batching import LengthBucketBatchSampler, collate_ctc
from phoenix_data.cache import CacheError, LandmarkCache
from phoenix_data.corpus import read_corpus
from phoenix_data.dataset import SampleNotCached
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.frames import list_frames
from phoenix_data.record import NUM_POINTS

RELEASE = "PHOENIX-2014-T"
FAKE = FakeExtractorSettings()


def epoch(dataset, **loader_args):
    loader = DataLoader(dataset, batch_size=None, **loader_args)
    return {item["id"]: item for item in loader}


@pytest.fixture(scope="module")
def warm(demo_tree, tmp_path_factory):
    """The demo 2014-T train split extracted by a cold epoch through num_workers=2."""
    cache_path = tmp_path_factory.mktemp("cache") / "lmdb"
    dataset = PhoenixLandmarks(demo_tree[RELEASE], "train", cache=cache_path, settings=FAKE)
    before = commits(cache_path)
    items = epoch(dataset, num_workers=2)
    return dataset, cache_path, items, commits(cache_path) - before


def test_cold_epoch_extracts_each_sample_once_in_workers(warm):
    dataset, cache_path, items, written = warm
    assert written == len(dataset) == 3, "one commit per sample, no sample extracted twice"
    cache = LandmarkCache(cache_path, FAKE, readonly=True)
    pids = {cache.get(s.key).pid for s in dataset.samples}
    cache.close()
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert sorted(items) == sorted(s.id for s in dataset.samples)


def test_items(warm):
    dataset, _, items, _ = warm
    for sample in dataset.samples:
        item = items[sample.id]
        frames = len(list_frames(sample.frames_dir))
        assert item["landmarks"].shape == (frames, NUM_POINTS, 3) and item["landmarks"].dtype == torch.float32
        assert item["confidence"].shape == (frames, NUM_POINTS) and item["num_frames"] == frames
        assert dataset.vocab.decode(item["glosses"].tolist()) == list(sample.glosses)
        assert item["gloss_text"] == " ".join(sample.glosses)
        assert item["signer"] == sample.signer and item["translation"] == sample.translation
        assert torch.isfinite(item["landmarks"]).all()
        assert (item["confidence"][:, 33:501] == 1).all(), "the demo person's face is found in every frame"


def test_second_epoch_extracts_nothing_even_without_frames(warm, tmp_path):
    dataset, cache_path, first, _ = warm
    before_commits, before_records = commits(cache_path), raw_records(cache_path)
    moved = []
    for sample in dataset.samples:  # without frames, a miss could only fail
        target = tmp_path / sample.id
        shutil.move(str(sample.frames_dir), target)
        moved.append((target, sample.frames_dir))
    try:
        second = epoch(dataset, num_workers=2)
    finally:
        for target, original in moved:
            shutil.move(str(target), original)
    assert commits(cache_path) == before_commits and raw_records(cache_path) == before_records
    for key, item in second.items():
        assert torch.equal(item["landmarks"], first[key]["landmarks"])


def test_in_process_epoch_then_workers(warm):
    """num_workers=0 opens the cache in the main process; workers forked afterwards still work."""
    dataset, _, first, _ = warm
    in_process, in_workers = epoch(dataset, num_workers=0), epoch(dataset, num_workers=2)
    assert sorted(in_process) == sorted(in_workers) == sorted(first)
    for key, item in first.items():
        assert torch.equal(in_process[key]["landmarks"], item["landmarks"])
        assert torch.equal(in_workers[key]["landmarks"], item["landmarks"])


def test_repr_and_len(warm, demo_tree, tmp_path):
    dataset, cache_path = warm[0], warm[1]
    text = repr(dataset)
    assert f"release='{RELEASE}'" in text and "split='train'" in text and "samples=3" in text
    assert str(cache_path) in text and dataset.coverage() == (3, 3)
    cold = PhoenixLandmarks(demo_tree[RELEASE], "test", cache=tmp_path / "c", settings=FAKE)
    assert len(cold) == 2 and cold.coverage() == (0, 2)


def test_read_only_dataset(warm, demo_tree):
    dataset = PhoenixLandmarks(demo_tree[RELEASE], "train", cache=warm[1], readonly=True, settings=FAKE)
    assert len(epoch(dataset, num_workers=2)) == 3
    other_split = PhoenixLandmarks(demo_tree[RELEASE], "dev", cache=warm[1], readonly=True, settings=FAKE)
    with pytest.raises(SampleNotCached, match="not in the read-only cache"):
        other_split[0]


def test_settings_mismatch_raises(warm, demo_tree):
    with pytest.raises(CacheError, match="delay: cache 0.0, now 0.001"):
        PhoenixLandmarks(demo_tree[RELEASE], "train", cache=warm[1], settings=FakeExtractorSettings(delay=0.001))


def test_missing_cache_argument(demo_tree):
    with pytest.raises(ValueError, match="cache=PATH"):
        PhoenixLandmarks(demo_tree[RELEASE], "train")


class TinyCTCModel(torch.nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(NUM_POINTS * 3, 16, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(32, classes)

    def forward(self, landmarks):
        out, _ = self.lstm(landmarks.flatten(2))
        return self.head(out).log_softmax(-1)


def test_one_batch_through_a_bilstm_and_ctc(warm):
    dataset = warm[0]
    sampler = LengthBucketBatchSampler(dataset.lengths(), batch_size=3, seed=1)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_ctc, num_workers=2)
    batch = next(iter(loader))
    assert batch["landmarks"].shape[:2] == (3, int(batch["lengths"].max()))
    model = TinyCTCModel(len(dataset.vocab))
    log_probs = model(batch["landmarks"]).transpose(0, 1)  # [T, B, C]
    loss = torch.nn.CTCLoss(blank=0)(log_probs, batch["targets"], batch["lengths"], batch["target_lengths"])
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_lengths_come_from_cache_headers(warm, tmp_path):
    """With a frame removed after caching, lengths() still says what the cache holds."""
    dataset, cache_path = warm[0], warm[1]
    root = tmp_path / RELEASE
    shutil.copytree(dataset.release.root, root)
    copy = PhoenixLandmarks(root, "train", cache=cache_path, readonly=True, settings=FAKE)
    cached = [len(list_frames(s.frames_dir)) for s in copy.samples]
    list_frames(copy.samples[0].frames_dir)[-1].unlink()
    assert copy.lengths() == cached and len(list_frames(copy.samples[0].frames_dir)) == cached[0] - 1


def test_lengths_of_a_sample_without_frames_is_zero(demo_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(demo_tree[RELEASE], root / RELEASE)
    samples = read_corpus(root / RELEASE, "test")
    shutil.rmtree(samples[0].frames_dir)
    dataset = PhoenixLandmarks(root / RELEASE, "test", cache=tmp_path / "c", settings=FAKE)
    assert dataset.lengths() == [0, len(list_frames(samples[1].frames_dir))]


@pytest.mark.legacy
def test_settings_that_would_download_are_refused_up_front(demo_tree, tmp_path):
    with pytest.raises(ValueError, match="would download"):
        PhoenixLandmarks(demo_tree[RELEASE], "dev", cache=tmp_path / "c",
                         settings=HolisticSettings(model_complexity=2))


@pytest.mark.slow
def test_a_sample_id_past_lmdbs_key_limit_is_extracted_and_read(demo_tree, tmp_path):
    """A 600-byte id (its frame folder named in the CSV's video column): extracted in workers, stored
    under a digest key, read back; no BadValsizeError."""
    root = tmp_path / "demo" / RELEASE
    shutil.copytree(demo_tree[RELEASE], root)
    csv_path = root / "annotations" / "manual" / f"{RELEASE}.dev.corpus.csv"
    header, first, *rest = csv_path.read_text(encoding="utf-8").splitlines()
    long_id = "long-" + "x" * 595
    csv_path.write_text("\n".join([header, long_id + first[first.index("|"):], *rest]) + "\n", encoding="utf-8")
    dataset = PhoenixLandmarks(root, "dev", cache=tmp_path / "cache", settings=FAKE)
    assert len(dataset.samples[0].key.encode()) > 511
    items = epoch(dataset, num_workers=2)
    frames = len(list_frames(dataset.samples[0].frames_dir))
    assert items[long_id]["landmarks"].shape == (frames, NUM_POINTS, 3)
    reader = PhoenixLandmarks(root, "dev", cache=tmp_path / "cache", readonly=True, settings=FAKE)
    assert torch.equal(reader[0]["landmarks"], items[long_id]["landmarks"]) and reader.lengths()[0] == frames
    assert not reader.cache.failures()
