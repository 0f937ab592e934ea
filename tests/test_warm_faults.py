"""The warm-up against what a user's machine throws at it: crashing samples, full disks, a cache
deleted or rewritten under the job, two jobs on one cache, Ctrl+C during start-up.

Each run is a real subprocess with real worker processes on the demo tree, extracting with the fast fake
(whose CRASH_COLOUR frame aborts the process extracting it, as MediaPipe aborts on some frames); the
settings flags run real MediaPipe.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import cv2
import pytest
from helpers import (
    MULTI,
    RUN_TIMEOUT,
    check_records,
    ci_is_set,
    expected_frames,
    fake_warm_spec,
    metrics_rows,
    raw_records,
    read_json,
    run_warm,
    start_warm,
    wait_for_rows,
    worker_pids,
)

from phoenix_data.cache import LandmarkCache
from phoenix_data.corpus import find_release, read_release_split
from phoenix_data.extract.fake import CRASH_COLOUR, FakeExtractorSettings, fault_frame
from phoenix_data.frames import list_frames

ALL_RELEASES = (MULTI, "phoenix-2014-signerindependent-SI5", "PHOENIX-2014-T")


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB mounted at ``path`` (needs root; CI runs as root)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs to fill up ({mounted.stderr.strip()}); run as root"
        if ci_is_set():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def all_expected(demo_dir: Path) -> dict:
    return {k: n for rel in ALL_RELEASES for k, n in expected_frames(demo_dir, rel).items()}


def no_failures(cache: Path) -> dict:
    store = LandmarkCache(cache, fake_warm_spec(), readonly=True)
    with store.session():
        return store.failures()


# --- a sample that kills its worker ---------------------------------------------------------------

def test_sample_that_crashes_its_worker_fails_alone_and_the_run_finishes(demo_dir, tmp_path):
    """A frame that aborts the extracting process: in a worker, then alone in the helper: failed."""
    shutil.copytree(demo_dir, tmp_path / "tree")
    samples = read_release_split(find_release(tmp_path / "tree", "multisigner"), "train")
    crashing = samples[1]
    cv2.imwrite(str(list_frames(crashing.frames_dir)[0]), fault_frame(CRASH_COLOUR)[..., ::-1])  # BGR on disk
    args = ["--root", tmp_path / "tree", "--cache", tmp_path / "cache", "--release", "multisigner",
            "--workers", 2]
    first = run_warm(*args)
    assert first.returncode == 1, first.stderr[-3000:]
    failed = read_json(tmp_path / "cache" / "failed_samples.json")
    assert [(f["key"], f["reason"]) for f in failed] == [
        (crashing.key, "the extractor crashed: signal 6 (SIGABRT)")]
    summary = read_json(tmp_path / "cache" / "summary.json")
    assert summary["counts"] == {"total": 7, "extracted": 6, "cached": 0, "failed": 1, "remaining": 0}
    assert summary["worker_crashes"] >= 1
    others = {k: n for k, n in expected_frames(tmp_path / "tree", MULTI).items() if k != crashing.key}
    check_records(tmp_path / "cache", others)

    rerun = run_warm(*args)
    assert rerun.returncode == 1  # listed again, not retried: the run finishes at once
    assert read_json(tmp_path / "cache" / "summary.json")["sent_to_workers"] == 0


@pytest.mark.slow
def test_killed_worker_its_samples_are_retried_and_the_run_completes(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = start_warm(tmp_path, "--root", demo_dir, "--cache", cache, "--release", "multisigner",
                      "--workers", 2, "--heartbeat", 0)
    wait_for_rows(proc, cache, 1)
    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    assert proc.wait(timeout=120) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    summary = read_json(cache / "summary.json")
    assert summary["worker_crashes"] == 1 and summary["counts"]["remaining"] == 0
    assert summary["counts"]["extracted"] == 7
    check_records(cache, expected_frames(demo_dir, MULTI))


# --- errors of the run, not of a sample -------------------------------------------------------------

def test_full_disk_mid_run_stops_with_one_line_and_no_sample_failures(demo_dir, tmp_path):
    with small_disk(tmp_path / "disk", 1300) as disk:
        cache = disk / "cache"
        done = run_warm("--root", demo_dir, "--cache", cache, "--workers", 2)
        assert done.returncode == 3, done.stderr[-3000:]
        assert "Traceback" not in done.stderr + done.stdout
        assert f"no space left on {disk}" in done.stdout
        assert re.search(r": \d+\.\d (KB|MB) free, the cache .* needs", done.stdout), done.stdout
        records = raw_records(cache)
        assert records, "the disk filled before the first record: make it larger"
        check_records(cache, {k: n for k, n in all_expected(demo_dir).items() if k in records})
        assert no_failures(cache) == {}  # a full disk is no sample's failure
        summary = read_json(cache / "summary.json")  # the space kept free holds the reports
        assert summary["exit_status"] == 3 and "no space left" in summary["aborted"]
        assert summary["counts"]["failed"] == 0


def test_full_disk_at_start_is_an_error_not_a_bus_error(demo_dir, tmp_path):
    with small_disk(tmp_path / "disk", 512) as disk:
        with open(disk / "filler", "wb") as filler:
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 65536)
        done = run_warm("--root", demo_dir, "--cache", disk / "cache", "--workers", 1)
        assert done.returncode == 3, (done.returncode, done.stderr[-3000:])
        assert f"no space left on {disk}" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cache_rewritten_with_other_settings_under_the_job(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = start_warm(tmp_path, "--root", demo_dir, "--cache", cache, "--workers", 1, "--heartbeat", 0,
                      "--report-dir", tmp_path / "r")
    wait_for_rows(proc, tmp_path / "r", 1)
    other = FakeExtractorSettings(delay=0.01)
    LandmarkCache(cache, other, overwrite=True)
    assert proc.wait(timeout=120) == 3
    out = (tmp_path / "stdout.txt").read_text()
    assert "other extraction settings" in out and "Traceback" not in (tmp_path / "stderr.txt").read_text()
    store = LandmarkCache(cache, other, readonly=True)
    with store.session():
        assert store.failures() == {}  # not "failed before" for the next job
    rerun = run_warm("--root", demo_dir, "--cache", cache, "--workers", 2,
                     delay=other.delay)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_json(cache / "summary.json")["counts"]["extracted"] == 21


@pytest.mark.slow
def test_cache_deleted_under_the_job(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = start_warm(tmp_path, "--root", demo_dir, "--cache", cache, "--workers", 1, "--heartbeat", 0,
                      "--report-dir", tmp_path / "r")
    wait_for_rows(proc, tmp_path / "r", 1)
    shutil.rmtree(cache)
    assert proc.wait(timeout=120) == 3
    assert "was deleted" in (tmp_path / "stdout.txt").read_text()
    assert read_json(tmp_path / "r" / "summary.json")["counts"]["failed"] == 0


# --- two jobs on one cache --------------------------------------------------------------------------

@pytest.mark.slow
def test_two_warm_ups_on_one_cache_share_the_work(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    jobs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        jobs.append(start_warm(tmp_path / name, "--root", demo_dir, "--cache", cache, "--workers", 1,
                               "--report-dir", tmp_path / name))
    assert [job.wait(timeout=RUN_TIMEOUT) for job in jobs] == [0, 0]
    extracted = [f"{r['release']}/{r['split']}/{r['id']}" for n in "ab" for r in metrics_rows(tmp_path / n)]
    assert sorted(extracted) == sorted(all_expected(demo_dir)), "a sample extracted twice, or not at all"
    counts = [read_json(tmp_path / n / "summary.json")["counts"] for n in "ab"]
    assert all(c["remaining"] == 0 and c["failed"] == 0 for c in counts)
    assert sum(c["extracted"] for c in counts) == 21
    assert all(c["extracted"] > 0 for c in counts), "one job did everything: nothing was shared"
    check_records(cache, all_expected(demo_dir))


# --- start-up --------------------------------------------------------------------------------------

def test_ctrl_c_during_start_up_exits_130_quietly(demo_dir, tmp_path):
    script = Path(sys.executable).parent / "phoenix-warm-cache"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "phoenix_data.cli", "warm-cache"]
    proc = subprocess.Popen([*command, "--root", str(demo_dir), "--cache", str(tmp_path / "c")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text():  # importing torch
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Rerun the same command" in err


@pytest.mark.mediapipe
def test_extraction_settings_flags_warm_and_check_a_cache_of_those_settings(demo_dir, tmp_path):
    cache, flags = tmp_path / "cache", ("--min-detection-confidence", "0.7", "--static-image-mode")
    done = run_warm("--root", demo_dir, "--cache", cache, "--release", "si5", "--split", "test", "--workers", 1,
                    *flags, real=True)
    assert done.returncode == 0, done.stderr[-3000:]
    settings = read_json(cache / "summary.json")["settings"]
    assert settings["min_detection_confidence"] == 0.7 and settings["static_image_mode"] is True
    check = [sys.executable, "-m", "phoenix_data.cli", "dataset", "--root", str(demo_dir), "--release", "si5",
             "--split", "test", "--cache", str(cache)]
    same = subprocess.run([*check, *flags], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr[-2000:]
    default = subprocess.run(check, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert default.returncode == 2
    assert "min_detection_confidence: cache 0.7, now 0.5" in default.stderr
