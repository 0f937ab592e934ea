"""What a stalled process costs: a hung worker, a hung helper process, a claim held too long; and the
Dataset path's sample failures. In-process, with the fake extractor's HANG_COLOUR frame and the time
limits made short (module constants, read at each use)."""
from __future__ import annotations

import logging
import multiprocessing as mp
import shutil

import cv2
import pytest
import torch.utils.data
from helpers import MULTI, read_json
from torch.utils.data import DataLoader

from phoenix_data import PhoenixLandmarks
from phoenix_data.cache import LandmarkCache
from phoenix_data.cache import fill as fill_module
from phoenix_data.cache.claims import claim
from phoenix_data.cache.fill import Outcome, fill_sample
from phoenix_data.corpus import find_release, read_release_split
from phoenix_data.extract import helper as helper_module
from phoenix_data.extract.fake import HANG_COLOUR, FakeExtractorSettings, fault_frame
from phoenix_data.extract.helper import close_helpers
from phoenix_data.frames import FramesError, list_frames
from phoenix_data.warm import WarmOptions, warm
from phoenix_data.warm import run as run_module
from phoenix_data.warm.report import METRICS_FIELDS, MetricsWriter

FAKE = FakeExtractorSettings()


@pytest.fixture(autouse=True)
def _stop_helpers():
    yield
    close_helpers()  # a hung helper is killed by the code under test; this catches the rest


def hanging_tree(demo_dir, tmp_path):
    """A copy of the demo's multisigner release whose second train sample hangs the extractor."""
    root = tmp_path / "tree"
    shutil.copytree(find_release(demo_dir, MULTI).root, root)
    samples = read_release_split(find_release(root), "train")
    cv2.imwrite(str(list_frames(samples[1].frames_dir)[0]), fault_frame(HANG_COLOUR)[..., ::-1])  # BGR on disk
    return root, samples


@pytest.mark.slow
def test_a_hung_helper_is_stopped_and_its_sample_fails(demo_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(helper_module, "HUNG_SECONDS", 1.0)
    root, samples = hanging_tree(demo_dir, tmp_path)
    cache = LandmarkCache(tmp_path / "c", FAKE)
    status = fill_sample(cache, samples[1], FAKE)  # this process: the isolated helper extracts
    assert status.outcome == Outcome.FAILED and status.reason == "the extractor hung: no result after 1 s"
    assert fill_sample(cache, samples[0], FAKE).outcome == Outcome.EXTRACTED  # a fresh helper


@pytest.mark.slow
def test_a_hung_worker_costs_its_sample_only(demo_dir, tmp_path, monkeypatch):
    # short, but longer than workers take to start: spawned ones import torch first (seconds)
    started_by_fork = mp.get_start_method() == "fork"
    monkeypatch.setattr(run_module, "RESULT_TIMEOUT_SECONDS", 2.0 if started_by_fork else 15.0)
    monkeypatch.setattr(helper_module, "HUNG_SECONDS", 1.0)
    # torch's wait for a worker to exit before it terminates it (5 s; the hung one never does)
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 1.0)
    root, samples = hanging_tree(demo_dir, tmp_path)
    outcome = warm(WarmOptions(root=root, cache=tmp_path / "c", settings=FAKE, workers=2, progress_bar=False,
                               heartbeat=0))
    assert outcome.exit_status == 1
    assert [(f["key"], f["reason"]) for f in outcome.failed] == [
        (samples[1].key, "the extractor hung: no result after 1 s")]
    counts = outcome.summary.counts
    assert (counts.extracted, counts.failed, counts.remaining) == (6, 1, 0)
    assert outcome.summary.worker_crashes >= 1
    assert read_json(outcome.summary_path)["counts"]["failed"] == 1


def _hold(cache_dir, key, holding, release):
    with claim(cache_dir, key) as held:
        assert held
        holding.set()
        release.wait(60)


@pytest.mark.slow
def test_a_claim_held_past_the_wait_is_extracted_here_too(demo_tree, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(fill_module, "CLAIM_WAIT_SECONDS", 0.5)
    dataset = PhoenixLandmarks(demo_tree["PHOENIX-2014-T"], "dev", cache=tmp_path / "c", settings=FAKE)
    sample = dataset.samples[0]
    context = mp.get_context()  # the platform's start method
    holding, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(dataset.cache.path, sample.key, holding, release))
    holder.start()
    try:
        assert holding.wait(30)
        with caplog.at_level(logging.WARNING, logger="phoenix_data.cache.fill"):
            item = dataset[0]
    finally:
        release.set()
        holder.join(30)
    assert item["num_frames"] == len(list_frames(sample.frames_dir))
    assert "another process has been extracting it for 0 s; extracting it here too" in caplog.text


def test_a_sample_without_frames_raises_on_the_dataset_path_naming_it(demo_dir, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(find_release(demo_dir, MULTI).root, root)
    samples = read_release_split(find_release(root), "dev")
    for frame in list_frames(samples[0].frames_dir):
        frame.unlink()
    dataset = PhoenixLandmarks(root, "dev", cache=tmp_path / "c", settings=FAKE)
    with pytest.raises(FramesError, match="holds no PNG frames"):
        dataset[0]  # the main process: through the helper
    batches = iter(DataLoader(dataset, batch_size=None, num_workers=2))
    try:
        with pytest.raises(Exception, match="holds no PNG frames"):  # re-raised by the DataLoader from its worker
            next(batches)
    finally:  # now: collected later (the traceback holds it), its queues may close first; each join then waits 5 s
        batches._shutdown_workers()
    assert dataset[1]["num_frames"] == len(list_frames(samples[1].frames_dir))  # the next sample still reads


def test_metrics_csv_drops_a_row_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.csv"
    header = ",".join(METRICS_FIELDS)
    path.write_text(f"{header}\nrun1,a,r,s,3,1.0,3.0,1.0,1,1,1,0,0\nrun1,b,r,s,4,1.0")  # killed mid-row
    MetricsWriter(path, "run2").close()
    assert path.read_text() == f"{header}\nrun1,a,r,s,3,1.0,3.0,1.0,1,1,1,0,0\n"


def test_metrics_csv_of_other_columns_is_set_aside(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("id,frames\na,3\n")  # an older version's columns
    MetricsWriter(path, "run").close()
    assert (tmp_path / "metrics.csv.old").read_text() == "id,frames\na,3\n"
    assert path.read_text() == ",".join(METRICS_FIELDS) + "\n"
