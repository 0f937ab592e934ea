"""The extractor seam with the fast fake estimator: the whole path without MediaPipe, in seconds.

The same code as with MediaPipe runs here (corpus, the isolated helper, DataLoader workers, claims,
the LMDB cache, the warm-up job); only the estimator is ``phoenix_data.extract.fake``'s fake.
"""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest
from torch.utils.data import DataLoader

from phoenix_data import PhoenixLandmarks
from phoenix_data.cache import CacheError, LandmarkCache
from phoenix_data.cache.claims import claim
from phoenix_data.cache.fill import Outcome, fill_sample
from phoenix_data.corpus import read_corpus
from phoenix_data.extract.fake import FakeExtractorSettings, fake_points
from phoenix_data.extract.helper import close_helpers
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.frames import list_frames, read_frames_rgb
from phoenix_data.warm import WarmCounts, WarmOptions, warm

RELEASE = "PHOENIX-2014-T"
FAKE = FakeExtractorSettings()


@pytest.fixture(autouse=True)
def _stop_helpers():
    yield
    close_helpers()


def test_dataset_epoch_with_the_fake_extractor(demo_tree, tmp_path):
    dataset = PhoenixLandmarks(demo_tree[RELEASE], "train", cache=tmp_path / "c", settings=FAKE)
    first = dataset[0]  # in the isolated helper
    items = {item["id"]: item for item in DataLoader(dataset, batch_size=None, num_workers=2)}
    assert set(items) == {s.id for s in dataset.samples}
    for sample in dataset.samples:  # each record was made from its own frames, in order
        expected = np.stack([fake_points(f) for f in read_frames_rgb(list_frames(sample.frames_dir))])
        assert np.allclose(items[sample.id]["landmarks"].numpy(), expected, atol=2e-3)
    assert np.array_equal(items[first["id"]]["landmarks"].numpy(), first["landmarks"].numpy())


def test_fake_and_mediapipe_records_never_mix(demo_tree, tmp_path):
    PhoenixLandmarks(demo_tree[RELEASE], "dev", cache=tmp_path / "c", settings=FAKE)[0]
    mediapipe = HolisticSettings(backend="legacy")  # fingerprinted without importing MediaPipe
    with pytest.raises(CacheError, match="other extraction settings"):
        LandmarkCache(tmp_path / "c", mediapipe)
    assert FAKE.fingerprint() != mediapipe.fingerprint()


def test_warm_up_library_call_with_the_fake(demo_tree, tmp_path):
    options = WarmOptions(root=demo_tree[RELEASE], cache=tmp_path / "c", workers=2, settings=FAKE,
                          progress_bar=False, heartbeat=0)
    outcome = warm(options)
    assert outcome.exit_status == 0
    assert outcome.summary.counts == WarmCounts(total=7, extracted=7, cached=0, failed=0, remaining=0)
    again = warm(options)
    assert again.summary.counts.cached == 7 and again.summary.sent_to_workers == 0


def _hold(cache_dir, key, holding, release):
    with claim(cache_dir, key) as held:
        assert held
        holding.set()
        release.wait(30)


@pytest.mark.slow
def test_a_claim_held_by_another_process_defers_then_frees_on_exit(demo_tree, tmp_path):
    cache = LandmarkCache(tmp_path / "c", FAKE)
    sample = read_corpus(demo_tree[RELEASE], "dev")[0]
    context = mp.get_context("spawn")
    holding, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(cache.path, sample.key, holding, release))
    holder.start()
    assert holding.wait(30)
    assert fill_sample(cache, sample, FAKE).outcome == Outcome.DEFERRED
    holder.kill()  # a dead holder's claim is gone with it: the kernel drops its locks
    holder.join()
    assert fill_sample(cache, sample, FAKE, wait=5).outcome == Outcome.EXTRACTED
    assert fill_sample(cache, sample, FAKE).outcome == Outcome.CACHED
    assert cache.extracted_by(sample.key) not in (None, os.getpid())
