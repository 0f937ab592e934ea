"""The warm-up job as a user runs it: real LMDB files, real worker processes, real signals.

Each run is a subprocess, so kill -9 and Ctrl+C hit a real process group. The job's logic (resume,
reports, rounds, failures) runs on the fast fake extractor (``helpers.FAKE_WARM``); one run of the command
itself with real MediaPipe (``real_warm_run``) checks what the records and reports hold. Runs use the
demo tree (samples of 8-14 frames), mostly one release and split of it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

import cv2
import numpy as np
import pytest
import torch
from helpers import (
    INTERRUPT_DELAY,
    MULTI,
    RUN_TIMEOUT,
    check_records,
    expected_frames,
    metrics_rows,
    raw_put,
    raw_records,
    read_json,
    run_warm,
    start_warm,
    wait_for_rows,
    wait_group_gone,
    warm_cmd,
)

from phoenix_data.cache import LandmarkCache
from phoenix_data.cli.warm import main
from phoenix_data.corpus import find_release, read_release_split
from phoenix_data.extract.fake import HAND_THRESHOLD
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.frames import list_frames, read_frames_rgb
from phoenix_data.record import LandmarkRecord

REPO = Path(__file__).resolve().parents[1]
# What a user reads in metrics.csv; spelled out so that a renamed column fails here.
METRICS_COLUMNS = ("id", "release", "split", "frames", "seconds", "frames_per_s", "worker_pid",
                   "pose", "face", "left_hand", "right_hand")


# Layout of a record, spelled out: pose 33, face 468, left hand 21, right hand 21.
PART_BOUNDS = {"pose": (0, 33), "face": (33, 501), "left_hand": (501, 522), "right_hand": (522, 543)}


def found_shares(cache: Path, keys: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """key (and "all") -> part -> share of frames in which the cached record holds that part (non-zero)."""
    found: Dict[str, Dict[str, int]] = {}
    frames: Dict[str, int] = {}
    store = LandmarkCache(cache, HolisticSettings(), readonly=True)
    with store.session():
        for key in keys:
            record = store.get(key)
            frames[key] = record.num_frames
            found[key] = {part: int(np.any(record.landmarks[:, a:b] != 0, axis=(1, 2)).sum())
                          for part, (a, b) in PART_BOUNDS.items()}
    shares = {key: {part: n / frames[key] for part, n in parts.items()} for key, parts in found.items()}
    shares["all"] = {part: sum(f[part] for f in found.values()) / sum(frames.values()) for part in PART_BOUNDS}
    return shares


# --- a full run with two workers, then a second run -------------------------------------------------

@pytest.fixture(scope="module")
def real_warm_run(tmp_path_factory):
    """``--demo`` restricted to one release and split, two workers; stderr to a file (not a terminal)."""
    demo_dir = tmp_path_factory.mktemp("demo-run")
    err_path = demo_dir.parent / f"{demo_dir.name}-stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(warm_cmd("--demo", "--demo-dir", demo_dir, "--release", "multisigner", "--split",
                                         "train", "--workers", 2, "--heartbeat", 0, real=True),
                                stdout=subprocess.PIPE, stderr=err, text=True)
        proc.stdout_text = proc.communicate(timeout=RUN_TIMEOUT)[0]
    return {"demo": demo_dir, "cache": demo_dir / "cache", "proc": proc, "stderr": err_path.read_text()}


def test_demo_run_fills_the_cache(real_warm_run):
    proc, cache = real_warm_run["proc"], real_warm_run["cache"]
    assert proc.returncode == 0, real_warm_run["stderr"][-3000:]
    expected = expected_frames(real_warm_run["demo"], MULTI, ["train"])
    assert len(expected) == 3
    check_records(cache, expected)
    assert set(raw_records(cache)) == set(expected)  # one release, one split: nothing else
    assert f"Cache:     {cache}" in proc.stdout_text
    assert f"Demo tree: {real_warm_run['demo']}" in proc.stdout_text
    assert proc.stdout_text.startswith("Warm-up done: 3 samples: 3 extracted, 0 already cached, 0 failed")


def test_demo_run_writes_summary_and_metrics(real_warm_run):
    cache = real_warm_run["cache"]
    summary = read_json(cache / "summary.json")
    assert summary["counts"] == {"total": 3, "extracted": 3, "cached": 0, "failed": 0, "remaining": 0}
    assert summary["frames_extracted"] == sum(expected_frames(real_warm_run["demo"], MULTI, ["train"]).values())
    assert summary["wall_seconds"] > 0 and summary["worker_cpu_seconds"] > 0
    assert summary["speedup"] == pytest.approx(summary["worker_cpu_seconds"] / summary["wall_seconds"], rel=0.01)
    spread = summary["per_sample_frames_per_s"]
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert summary["workers"] == 2 and summary["main_pid"] == real_warm_run["proc"].pid
    assert set(summary["versions"]) == {"phoenix_data", "mediapipe", "torch", "python"}
    assert summary["versions"]["torch"] == torch.__version__  # with its build tag (e.g. +cu130)
    assert summary["settings_fingerprint"] == HolisticSettings().fingerprint()
    # What the records hold: pose and face in every frame, hands in most (a signer), not all (a person
    # whose right hand comes and goes and whose left one is out of view).
    shares = found_shares(cache, list(expected_frames(real_warm_run["demo"], MULTI, ["train"])))
    assert summary["detection_rates"] == pytest.approx(shares["all"], abs=1e-3)
    assert summary["detection_rates"]["pose"] == summary["detection_rates"]["face"] == 1.0
    assert 0.5 < summary["detection_rates"]["left_hand"] < 1 and 0.5 < summary["detection_rates"]["right_hand"] < 1
    assert summary["interrupted"] is False and summary["exit_status"] == 0
    assert read_json(cache / "failed_samples.json") == []

    rows = metrics_rows(cache)
    assert set(METRICS_COLUMNS) <= set(rows[0])
    expected = expected_frames(real_warm_run["demo"], MULTI, ["train"])
    assert {f"{r['release']}/{r['split']}/{r['id']}": int(r["frames"]) for r in rows} == expected
    for row in rows:
        assert float(row["frames_per_s"]) == pytest.approx(int(row["frames"]) / float(row["seconds"]), rel=0.02)
        key = f"{row['release']}/{row['split']}/{row['id']}"
        assert {part: float(row[part]) for part in PART_BOUNDS} == pytest.approx(shares[key], abs=1e-3)
    assert sorted(float(row["left_hand"]) for row in rows) == [0.0, 1.0, 1.0]  # two signer samples, a person
    assert set(summary["peak_rss_mb_per_worker"]) == {r["worker_pid"] for r in rows}
    assert all(mb > 50 for mb in summary["peak_rss_mb_per_worker"].values())


def test_two_workers_extract_outside_the_main_process(real_warm_run):
    cache = real_warm_run["cache"]
    main_pid = read_json(cache / "summary.json")["main_pid"]
    pids = set(check_records(cache, expected_frames(real_warm_run["demo"], MULTI, ["train"])).values())
    assert main_pid not in pids
    assert 1 <= len(pids) <= 2


def test_heartbeat_lines_when_stderr_is_a_file(real_warm_run):
    stderr = real_warm_run["stderr"]
    assert "\r" not in stderr
    assert "[warm] 3 samples" in stderr and "0 cached" in stderr and "3 to do" in stderr  # the start line
    beats = [line for line in stderr.splitlines() if line.startswith("[warm] ") and "samples/s" in line]
    assert [b.split()[1] for b in beats] == ["1/3", "2/3", "3/3"]  # --heartbeat 0: one per sample
    assert all("frames/s" in b and "ETA" in b and "failed" in b for b in beats)


def test_second_run_extracts_nothing(real_warm_run, tmp_path):
    cache = real_warm_run["cache"]
    before = raw_records(cache)
    proc = run_warm("--root", real_warm_run["demo"], "--cache", cache, "--release", "multisigner",
                    "--split", "train", "--workers", 2, "--report-dir", tmp_path, real=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(tmp_path / "summary.json")
    assert summary["counts"] == {"total": 3, "extracted": 0, "cached": 3, "failed": 0, "remaining": 0}
    assert "3 cached, 0 failed before (not retried), 0 to do" in proc.stderr
    assert summary["sent_to_workers"] == 0
    assert summary["peak_rss_mb_per_worker"] == {} and summary["worker_cpu_seconds"] == 0  # no worker ran
    assert metrics_rows(tmp_path) == []
    assert raw_records(cache) == before


# --- interruptions -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_completes(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    expected = {k: n for rel in (MULTI, "phoenix-2014-signerindependent-SI5", "PHOENIX-2014-T")
                for k, n in expected_frames(demo_dir, rel).items()}
    proc = start_warm(tmp_path, "--root", demo_dir, "--cache", cache, "--workers", 2, "--heartbeat", 0)
    wait_for_rows(proc, cache, 2)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    wait_group_gone(proc.pid)  # orphaned workers finish the sample they hold, then leave
    before = raw_records(cache)
    assert 2 <= len(before) < len(expected), "the kill came too late to test a resume"
    check_records(cache, {k: expected[k] for k in before})  # no partial or damaged record
    rows_before = len(metrics_rows(cache))

    rerun = run_warm("--root", demo_dir, "--cache", cache, "--workers", 2, delay=INTERRUPT_DELAY)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = read_json(cache / "summary.json")
    assert summary["counts"] == {"total": len(expected), "extracted": len(expected) - len(before),
                                 "cached": len(before), "failed": 0, "remaining": 0}
    after = raw_records(cache)
    assert set(after) == set(expected)
    assert {k: after[k] for k in before} == before  # not extracted again: byte-identical, same pid
    rerun_keys = {f"{r['release']}/{r['split']}/{r['id']}" for r in metrics_rows(cache)[rows_before:]}
    assert rerun_keys == set(expected) - set(before)
    check_records(cache, expected)


def _interrupt(demo_dir: Path, tmp_path: Path, second: bool) -> subprocess.Popen:
    """Start a run of one release, wait for one committed sample, press Ctrl+C (twice if ``second``)."""
    proc = start_warm(tmp_path, "--root", demo_dir, "--cache", tmp_path / "cache", "--release", "multisigner",
                      "--workers", 2, "--heartbeat", 0)
    wait_for_rows(proc, tmp_path / "cache", 1)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl+C reaches the whole group, workers too
    if second:
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    return proc


def _rerun_completes(demo_dir: Path, cache: Path) -> None:
    rerun = run_warm("--root", demo_dir, "--cache", cache, "--release", "multisigner", "--workers", 2,
                     delay=INTERRUPT_DELAY)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counts = read_json(cache / "summary.json")["counts"]
    assert counts["extracted"] + counts["cached"] == counts["total"] == 7
    check_records(cache, expected_frames(demo_dir, MULTI))


@pytest.mark.slow
def test_ctrl_c_stops_writes_summary_and_rerun_completes(demo_dir, tmp_path):
    proc = _interrupt(demo_dir, tmp_path, second=False)
    assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()[-3000:]
    wait_group_gone(proc.pid, timeout=15)
    cache = tmp_path / "cache"
    summary = read_json(cache / "summary.json")
    assert summary["interrupted"] is True and summary["exit_status"] == 130
    assert summary["counts"]["remaining"] > 0
    done = raw_records(cache)
    assert summary["counts"]["extracted"] == len(done)  # what finished is kept, and counted
    assert summary["frames_extracted"] == sum(n for k, n in expected_frames(demo_dir, MULTI).items() if k in done)
    assert "no frames extracted" not in (tmp_path / "stdout.txt").read_text()
    check_records(cache, {k: n for k, n in expected_frames(demo_dir, MULTI).items() if k in done})
    assert "rerun the same command" in (tmp_path / "stdout.txt").read_text()
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    _rerun_completes(demo_dir, cache)


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_without_harm(demo_dir, tmp_path):
    proc = _interrupt(demo_dir, tmp_path, second=True)
    assert proc.returncode == 130
    assert "second Ctrl+C" in (tmp_path / "stderr.txt").read_text()
    wait_group_gone(proc.pid)
    cache = tmp_path / "cache"
    done = raw_records(cache)
    check_records(cache, {k: n for k, n in expected_frames(demo_dir, MULTI).items() if k in done})
    _rerun_completes(demo_dir, cache)


def test_overwrite_discards_only_a_cache_of_other_settings(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    old = LandmarkCache(cache, HolisticSettings(backend="legacy", min_detection_confidence=0.3))
    with old.session():
        old.put("old/settings/record", LandmarkRecord(np.zeros((2, 543, 3), np.float32),
                                                      np.zeros((2, 543), np.float32), width=210, height=260))
    args = ("--root", demo_dir, "--cache", cache, "--release", "multisigner", "--split", "dev", "--workers", 1)
    refused = run_warm(*args)
    assert refused.returncode == 2
    assert "other extraction settings" in refused.stderr and "--overwrite" in refused.stderr
    assert "Traceback" not in refused.stderr

    discarded = run_warm(*args, "--overwrite")
    assert discarded.returncode == 0, discarded.stderr[-3000:]
    assert "Discarded: 1 record (old/settings 1) of other extraction settings" in discarded.stdout
    assert read_json(cache / "summary.json")["discarded_records"] == {"old/settings": 1}
    assert set(raw_records(cache)) == set(expected_frames(demo_dir, MULTI, ["dev"]))
    kept = run_warm(*args, "--overwrite")  # same settings now: the same command resumes, discards nothing
    assert kept.returncode == 0 and "Discarded" not in kept.stdout
    assert read_json(cache / "summary.json")["counts"]["cached"] == 2


# --- bad samples ---------------------------------------------------------------------------------------

def _break_samples(tree: Path):
    """Demo train samples of multisigner: one with a corrupt PNG, one with no frames, one with a black frame."""
    samples = read_release_split(find_release(tree, "multisigner"), "train")
    corrupt, empty, nobody = samples
    corrupt_png = list_frames(corrupt.frames_dir)[3]
    good_bytes = corrupt_png.read_bytes()
    corrupt_png.write_bytes(b"not a png at all")
    for png in list_frames(empty.frames_dir):
        png.unlink()
    black = np.zeros((260, 210, 3), np.uint8)  # a frame where a part is not found: no failure
    cv2.imwrite(str(list_frames(nobody.frames_dir)[0]), black)
    return samples, corrupt_png, good_bytes


def test_failures_are_listed_and_retried_on_request(demo_dir, tmp_path):
    shutil.copytree(demo_dir, tmp_path / "tree")
    (corrupt, empty, nobody), corrupt_png, good_bytes = _break_samples(tmp_path / "tree")
    args = ("--root", tmp_path / "tree", "--cache", tmp_path / "cache", "--release", "multisigner",
            "--split", "train", "--workers", 2)

    first = run_warm(*args)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "failed_samples.json" in first.stdout
    failed = {f["key"]: f for f in read_json(tmp_path / "cache" / "failed_samples.json")}
    assert set(failed) == {corrupt.key, empty.key}
    assert "cannot be decoded" in failed[corrupt.key]["reason"]
    assert corrupt_png.name in failed[corrupt.key]["reason"]
    assert "holds no PNG frames" in failed[empty.key]["reason"]
    assert all(f["failed_this_run"] for f in failed.values())
    check_records(tmp_path / "cache", {nobody.key: len(list_frames(nobody.frames_dir))})
    assert set(raw_records(tmp_path / "cache")) == {nobody.key}
    rows = metrics_rows(tmp_path / "cache")
    frames = list(read_frames_rgb(list_frames(nobody.frames_dir)))
    right = np.mean([frame[..., 0].mean() > HAND_THRESHOLD for frame in frames])  # the fake's right hand
    assert right < 1, "the black frame has no hand"
    assert [float(r["right_hand"]) for r in rows] == [pytest.approx(right, abs=1e-3)]

    allowed = run_warm(*args, "--allow-failures")  # failed before: not retried, still listed
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    summary = read_json(tmp_path / "cache" / "summary.json")
    assert summary["counts"] == {"total": 3, "extracted": 0, "cached": 1, "failed": 2, "remaining": 0}
    listed = read_json(tmp_path / "cache" / "failed_samples.json")
    assert {f["key"] for f in listed} == {corrupt.key, empty.key}
    assert not any(f["failed_this_run"] for f in listed)

    corrupt_png.write_bytes(good_bytes)
    retried = run_warm(*args[:-2], "--workers", 0, "--retry-failed")
    assert retried.returncode == 1
    summary = read_json(tmp_path / "cache" / "summary.json")
    assert summary["counts"] == {"total": 3, "extracted": 1, "cached": 1, "failed": 1, "remaining": 0}
    listed = read_json(tmp_path / "cache" / "failed_samples.json")
    assert [(f["key"], f["failed_this_run"]) for f in listed] == [(empty.key, True)]
    pids = check_records(tmp_path / "cache", {corrupt.key: len(list_frames(corrupt.frames_dir))})
    assert pids[corrupt.key] != summary["main_pid"]  # --workers 0: in the helper process, never the main one


# --- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--split", "tran"], ["invalid choice: 'tran'", "'train'", "'dev'", "'test'", "'all'"]),
    (["--workers", "-1"], ["--workers", "'-1'", ">= 0"]),
    (["--release", "nope"], ["Unknown release 'nope'", "multisigner"]),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, args, says, demo_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(demo_dir), "--cache", str(tmp_path / "cache"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert all(s in err for s in says), err
    assert "Traceback" not in err
    assert not (tmp_path / "cache").exists()


def test_missing_root_exits_2_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(tmp_path / "nowhere"), "--cache", str(tmp_path / "cache")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere'}" in err and "is not a directory" in err
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_script_is_a_thin_entry_point():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "warm_cache.py"), "--root", "/nonexistent"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 2
    assert "--cache CACHE are required" in proc.stderr and "Traceback" not in proc.stderr


# --- damaged records and the heartbeat thread ----------------------------------------------------------

def put_raw(cache: Path, key: str, value: bytes) -> None:
    raw_put(cache, {key: value})


def test_rerun_and_repair_extract_damaged_records_again(demo_dir, tmp_path):
    cache = tmp_path / "cache"
    args = ("--root", demo_dir, "--cache", cache, "--release", "multisigner", "--split", "train",
            "--workers", 1, "--report-dir", tmp_path / "r")
    assert run_warm(*args).returncode == 0
    records = raw_records(cache)
    truncated, flipped, *_ = sorted(records)
    put_raw(cache, truncated, records[truncated][:-10])
    damaged = bytearray(records[flipped])
    damaged[len(damaged) // 2] ^= 0xFF  # same length: only the checksum tells
    put_raw(cache, flipped, bytes(damaged))

    plain = run_warm(*args)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert read_json(tmp_path / "r" / "summary.json")["counts"]["extracted"] == 1
    assert f"damaged record, extracting again: cache record of {truncated!r}" in plain.stderr
    assert raw_records(cache)[flipped] == bytes(damaged)  # a header check cannot see a flipped byte

    repaired = run_warm(*args, "--repair")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert read_json(tmp_path / "r" / "summary.json")["counts"]["extracted"] == 1
    assert "fails its checksum" in repaired.stderr
    expected = expected_frames(demo_dir, MULTI, ["train"])
    check_records(cache, expected)  # every record decodes again, checksums included


@pytest.mark.slow
def test_heartbeat_beats_on_a_clock(demo_dir, tmp_path):
    proc = run_warm("--root", demo_dir, "--cache", tmp_path / "c", "--release", "si5", "--split", "dev",
                    "--workers", 1, "--heartbeat", 0.2, delay=0.1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    beats = [line for line in proc.stderr.splitlines() if re.match(r"\[warm\] \d+/2 samples \(", line)]
    # while the first sample is under way (>= 0.5 s), only the clock can print "0/2" lines
    assert sum(1 for line in beats if line.split()[1] == "0/2") >= 2, proc.stderr[-3000:]
    assert "\r" not in proc.stderr
