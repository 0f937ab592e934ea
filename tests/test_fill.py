"""Where extraction happens: never in a process that may fork DataLoader workers later.

A user's first habit: ``ds[0]`` in a notebook, then ``DataLoader(ds, num_workers=2)``. MediaPipe in
the main process would break every worker forked after it; the main process extracts through the
isolated helper process instead. Real LMDB, real workers; the job logic on the fast fake extractor, and
real MediaPipe where the path itself is under test (a miss in the helper, then in forked workers; a crash).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import ConcatDataset, DataLoader

from phoenix_data import PhoenixLandmarks
from phoenix_data.cache.fill import Outcome, fill_sample
from phoenix_data.corpus import read_corpus
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.extract.helper import close_helpers, isolated_extractor
from phoenix_data.extract.mediapipe.runtime import holistic_builds
from phoenix_data.frames import list_frames

RELEASE = "PHOENIX-2014-T"
FAKE = FakeExtractorSettings()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _stop_helpers():
    yield
    close_helpers()  # a helper per test: its pid tells who extracted what


def record_pids(dataset) -> dict:
    with dataset.cache.session():
        return {s.key: dataset.cache.get(s.key).pid for s in dataset.samples}


def test_sample_read_in_main_then_workers_fork(demo_tree, tmp_path, holistic_settings):
    """ds[0] extracts in the helper; then two forked workers extract the rest and the epoch completes."""
    dataset = PhoenixLandmarks(demo_tree[RELEASE], "train", cache=tmp_path / "c", settings=holistic_settings)
    first = dataset[0]
    assert first["landmarks"].shape[0] == len(list_frames(dataset.samples[0].frames_dir))
    helper = isolated_extractor(dataset.settings).pid
    assert holistic_builds() == 0, "the main process ran MediaPipe"
    items = {item["id"]: item for item in DataLoader(dataset, batch_size=None, num_workers=2)}
    assert set(items) == {s.id for s in dataset.samples}
    pids = record_pids(dataset)
    assert pids[dataset.samples[0].key] == helper
    workers = {pids[s.key] for s in dataset.samples[1:]}
    assert os.getpid() not in workers and helper not in workers
    assert np.array_equal(items[first["id"]]["landmarks"].numpy(), first["landmarks"].numpy())


def test_main_process_epoch_before_worker_epoch(demo_tree, tmp_path):
    """A num_workers=0 epoch (all in the helper) on one split, then num_workers=2 on a cold one."""
    dev = PhoenixLandmarks(demo_tree[RELEASE], "dev", cache=tmp_path / "c", settings=FAKE)
    assert len(list(DataLoader(dev, batch_size=None, num_workers=0))) == len(dev)
    train = PhoenixLandmarks(demo_tree[RELEASE], "train", cache=tmp_path / "c", settings=FAKE)
    assert len(list(DataLoader(train, batch_size=None, num_workers=2))) == len(train)
    assert os.getpid() not in set(record_pids(train).values()) | set(record_pids(dev).values())


@pytest.mark.slow
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_workers_of_other_start_methods_fill_a_cold_cache_and_one_the_main_process_read(demo_tree, tmp_path,
                                                                                        context):
    """One loader (one pair of spawned workers: each imports torch) over two datasets: one on a cache that
    does not exist yet (the workers create it), one on a cache the main process read a sample from first."""
    cold = PhoenixLandmarks(demo_tree[RELEASE], "dev", cache=tmp_path / "cold", settings=FAKE)
    read = PhoenixLandmarks(demo_tree[RELEASE], "test", cache=tmp_path / "read", settings=FAKE)
    first = read[0]
    helper = isolated_extractor(read.settings).pid
    loader = DataLoader(ConcatDataset([cold, read]), batch_size=None, num_workers=2, multiprocessing_context=context)
    items = {item["id"]: item for item in loader}
    assert set(items) == {s.id for s in cold.samples + read.samples}
    pids = {**record_pids(cold), **record_pids(read)}
    assert pids[read.samples[0].key] == helper
    workers = {pids[s.key] for s in cold.samples + read.samples[1:]}
    assert os.getpid() not in workers and helper not in workers
    assert np.array_equal(items[first["id"]]["landmarks"].numpy(), first["landmarks"].numpy())


@pytest.mark.slow
def test_notebook_script_without_main_guard(demo_tree, tmp_path):
    """A script as a notebook cell is: no ``if __name__ == "__main__"``, ds[0] then two workers."""
    script = tmp_path / "cell.py"
    script.write_text(textwrap.dedent(f"""
        from torch.utils.data import DataLoader
        from phoenix_data import PhoenixLandmarks
        from phoenix_data.extract.fake import FakeExtractorSettings
        ds = PhoenixLandmarks({str(demo_tree[RELEASE])!r}, "train", cache={str(tmp_path / "c")!r},
                              settings=FakeExtractorSettings())
        print("first", ds[0]["landmarks"].shape[0])
        print("epoch", len(list(DataLoader(ds, batch_size=None, num_workers=2))))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("first") == 1 and "epoch 3" in done.stdout  # the script ran once, not again


def test_fill_sample_records_failures_and_says_what_happened(demo_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(demo_tree[RELEASE], root / RELEASE)
    samples = read_corpus(root / RELEASE, "dev")
    for frame in list_frames(samples[0].frames_dir):
        frame.unlink()
    dataset = PhoenixLandmarks(root / RELEASE, "dev", cache=tmp_path / "c", settings=FAKE)
    cache, settings = dataset.cache, dataset.settings
    failed = fill_sample(cache, samples[0], settings)
    assert failed.outcome == Outcome.FAILED and "no PNG frames" in failed.reason
    assert cache.failures()[samples[0].key]["reason"] == failed.reason
    done = fill_sample(cache, samples[1], settings)
    assert done.outcome == Outcome.EXTRACTED and done.frames == len(list_frames(samples[1].frames_dir))
    assert done.detection["pose"] == 1.0 and done.pid not in (os.getpid(), 0)
    assert fill_sample(cache, samples[1], settings).outcome == Outcome.CACHED
    assert fill_sample(cache, samples[0], settings, retry_failed=False).reason == "failed before (not retried)"


def test_absurd_frame_is_a_failure_with_its_size(demo_tree, tmp_path):
    import cv2

    root = tmp_path / "tree"
    shutil.copytree(demo_tree[RELEASE], root / RELEASE)
    sample = read_corpus(root / RELEASE, "dev")[0]
    absurd = list_frames(sample.frames_dir)[2]
    cv2.imwrite(str(absurd), np.full((2, 70000, 3), 128, np.uint8))
    dataset = PhoenixLandmarks(root / RELEASE, "dev", cache=tmp_path / "c", settings=FAKE)
    status = fill_sample(dataset.cache, sample, dataset.settings)
    assert status.outcome == Outcome.FAILED
    assert "70000x2 pixels" in status.reason and absurd.name in status.reason


def test_a_sample_that_crashes_the_helper_is_a_failure_naming_the_signal(demo_tree, tmp_path, monkeypatch,
                                                                        holistic_settings):
    """Past the size check (raised on purpose), a 40000x20 frame aborts MediaPipe's process: twice."""
    import cv2

    monkeypatch.setenv("PHOENIX_DATA_MAX_FRAME_SIDE", "100000")
    root = tmp_path / "tree"
    shutil.copytree(demo_tree[RELEASE], root / RELEASE)
    crashing, good = read_corpus(root / RELEASE, "dev")[:2]
    cv2.imwrite(str(list_frames(crashing.frames_dir)[0]), np.full((20, 40000, 3), 128, np.uint8))
    dataset = PhoenixLandmarks(root / RELEASE, "dev", cache=tmp_path / "c", settings=holistic_settings)
    status = fill_sample(dataset.cache, crashing, dataset.settings)
    assert status.outcome == Outcome.FAILED
    assert status.reason == "the extractor crashed: signal 6 (SIGABRT)"
    assert fill_sample(dataset.cache, good, dataset.settings).outcome == Outcome.EXTRACTED  # a fresh helper


def test_unreadable_frame_is_a_failure_naming_the_path(demo_tree, tmp_path):
    """PermissionError while reading a frame (as an unprivileged user: root reads everything)."""
    root = tmp_path / "tree"
    shutil.copytree(demo_tree[RELEASE], root / RELEASE)
    sample = read_corpus(root / RELEASE, "dev")[0]
    locked = list_frames(sample.frames_dir)[1]
    locked.chmod(0)
    code = textwrap.dedent(f"""
        import os, pathlib
        import cv2, numpy  # imported while the interpreter's files are still readable
        from phoenix_data.frames import FramesError, read_frame_rgb
        if os.getuid() == 0:
            os.setgid(65534); os.setuid(65534)  # nobody: file permissions apply again
        try:
            read_frame_rgb(pathlib.Path({str(locked)!r}))
        except FramesError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cannot be read: Permission denied" in done.stdout and str(locked) in done.stdout
