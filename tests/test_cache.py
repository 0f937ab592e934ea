"""The LMDB cache: encoding, checks on read, settings, concurrency, read-only use. Real LMDB files."""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import stat
import time

import lmdb
import numpy as np
import pytest
from helpers import fake_record, raw_lmdb, raw_put

from phoenix_data.cache import CacheError, CacheRecordError, LandmarkCache, decode_record, encode_record
from phoenix_data.cache.lmdb_env import close_every_process_handle
from phoenix_data.extract.mediapipe.runtime import mediapipe_version
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.record import NUM_POINTS, fill_confidence, fill_found, part_slices

# MediaPipe's settings, built and fingerprinted without running (or importing) MediaPipe: the legacy
# backend's identity reads the installed version only, on every Python.
SETTINGS = HolisticSettings(backend="legacy")


def test_round_trip_precision_and_size():
    record = fake_record(140, hands=False)
    data = encode_record(record, "k")
    assert len(data) / 140 < 3300  # bytes per frame, header included
    back = decode_record(data, "k")
    assert back.landmarks.shape == (140, NUM_POINTS, 3) and back.landmarks.dtype == np.float32
    # float16: relative error 2**-11, so <0.0006 for |values| < 1.2
    assert np.abs(back.landmarks - record.landmarks).max() < 6e-4
    s = part_slices(NUM_POINTS)
    assert np.abs(back.confidence[:, s["pose"]] - record.confidence[:, s["pose"]]).max() <= 1 / 510 + 1e-6
    np.testing.assert_array_equal(back.confidence[:, 33:], record.confidence[:, 33:])
    assert (back.width, back.height, back.pid) == (210, 260, 4242)


@pytest.mark.parametrize("num_points", [NUM_POINTS, NUM_POINTS + 10])  # 553: a refined face
def test_confidence_and_found_rows_for_every_presence_pattern(num_points):
    # every combination of the 4 parts found or not, each in a frame of its own, written into a
    # batch's rows as __getitems__ does (strided rows of a larger array)
    presence = ((np.arange(16)[:, None] >> np.arange(4)[None, :]) & 1).astype(np.uint8)  # [16, 4]
    visibility = np.random.default_rng(0).integers(0, 256, (16, 33)).astype(np.uint8)
    arrays = {"presence": presence, "visibility": visibility}
    sizes = [s.stop - s.start for s in part_slices(num_points).values()]
    confidence = np.full((2, 16, num_points), -1, np.float32)
    found = np.zeros((2, 16, num_points), bool)
    fill_confidence(arrays, confidence[1])
    fill_found(arrays, found[1])
    expected_found = np.repeat(presence.astype(bool), sizes, axis=1)
    np.testing.assert_array_equal(found[1], expected_found)
    expected = expected_found.astype(np.float32)
    expected[:, :33] = visibility / np.float32(255)  # the pose's visibility, found or not
    np.testing.assert_array_equal(confidence[1], expected)
    assert (confidence[0] == -1).all() and not found[0].any()  # the other rows untouched


def test_damaged_records_raise_naming_the_sample():
    data = encode_record(fake_record(5), "rel/dev/abc")
    with pytest.raises(CacheRecordError, match="'rel/dev/abc'.*truncated"):
        decode_record(data[:-7], "rel/dev/abc")
    with pytest.raises(CacheRecordError, match="'rel/dev/abc'.*shorter than a header"):
        decode_record(data[:10], "rel/dev/abc")
    with pytest.raises(CacheRecordError, match="'x'.*not a phoenix_data"):
        decode_record(b"\x80\x04" + b"\0" * 100, "x")  # a pickle, say
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF
    with pytest.raises(CacheRecordError, match="'rel/dev/abc'.*checksum"):
        decode_record(bytes(flipped), "rel/dev/abc")


def overwrite_raw(cache: LandmarkCache, key: str, value: bytes) -> None:
    raw_put(cache.path, {key: value})


def test_truncated_record_in_the_cache_raises(tmp_path):
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    cache.put("r/train/a", fake_record(4))
    cache.close()
    overwrite_raw(cache, "r/train/a", encode_record(fake_record(4), "r/train/a")[:-1])
    with pytest.raises(CacheRecordError, match="r/train/a"):
        cache.get("r/train/a")
    cache.close()


def test_put_get_failures_and_metadata(tmp_path):
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    assert cache.get("a") is None and "a" not in cache
    cache.put_failure("a", "FramesError: no frames")
    assert cache.failures()["a"]["reason"] == "FramesError: no frames"
    cache.put("a", fake_record(3))
    assert "a" in cache and cache.num_frames("a") == 3 and "a" not in cache.failures()
    assert cache.cached(["a", "b"]) == {"a"} and list(cache.keys()) == ["a"]
    meta = cache.metadata()
    assert meta["fingerprint"] == SETTINGS.fingerprint()
    assert meta["settings"]["model_complexity"] == 1 and meta["mediapipe"] == mediapipe_version()
    cache.close()


def test_other_settings_raise_then_overwrite(tmp_path):
    LandmarkCache(tmp_path / "c", SETTINGS).put("a", fake_record(2))
    other = HolisticSettings(backend="legacy", min_detection_confidence=0.7)
    with pytest.raises(CacheError) as info:
        LandmarkCache(tmp_path / "c", other)
    message = str(info.value)
    assert "min_detection_confidence: cache 0.5, now 0.7" in message
    assert "another cache path" in message and "overwrite=True" in message
    cache = LandmarkCache(tmp_path / "c", other, overwrite=True)
    assert cache.get("a") is None and cache.metadata()["settings"]["min_detection_confidence"] == 0.7
    cache.put("b", fake_record(2))
    cache.close()
    # with the settings it holds, overwrite=True keeps the records: rerunning a script resumes
    assert LandmarkCache(tmp_path / "c", other, overwrite=True).num_frames("b") == 2
    LandmarkCache(tmp_path / "c", other).close()


def test_pickles_without_its_environment(tmp_path):
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    cache.put("a", fake_record(2))  # the environment is open in this process now
    state = pickle.dumps(cache)
    assert len(state) < 2000  # path and settings, no handle
    clone = pickle.loads(state)
    assert set(vars(clone)) == {"path", "settings", "readonly", "map_size", "discarded"}
    assert clone.num_frames("a") == 2
    cache.close()


def _writer(path, worker, count, map_size):
    try:
        cache = LandmarkCache(path, SETTINGS, map_size=map_size)
        for i in range(count):
            cache.put(f"w{worker}/{i}", fake_record(20 + i % 7, seed=worker * 1000 + i))
    except BaseException:  # for the assertion's message: why this writer failed, not only its exit code
        import traceback

        (path.parent / f"writer{worker}.txt").write_text(traceback.format_exc())
        raise


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_two_processes_write_at_once(tmp_path, start_method):
    """Every record intact; a tiny map forces growth (MapFullError) that the other follows."""
    path = tmp_path / "c"
    LandmarkCache(path, SETTINGS, map_size=1 << 20).close()
    context = mp.get_context(start_method)
    procs = [context.Process(target=_writer, args=(path, w, 40, 1 << 20)) for w in range(2)]
    for proc in procs:
        proc.start()
    for worker, proc in enumerate(procs):
        proc.join(120)
        failure = tmp_path / f"writer{worker}.txt"
        assert proc.exitcode == 0, (proc.exitcode, failure.read_text() if failure.exists() else "no Python error")
    cache = LandmarkCache(path, SETTINGS, readonly=True)
    assert len(list(cache.keys())) == 80
    for w in range(2):
        for i in range(40):
            expected = fake_record(20 + i % 7, seed=w * 1000 + i)
            got = cache.get(f"w{w}/{i}")
            assert np.abs(got.landmarks - expected.landmarks).max() < 6e-4
    cache.close()


def _grow(path, stop, commits):
    """Any writer of the cache's file, committing as fast as LMDB can (no fsync): each commit adds pages."""
    with raw_lmdb(path, write=True, map_size=1 << 30, sync=False) as env:
        junk = env.open_db(b"junk")
        while not stop.is_set() and commits.value < 50_000:  # <= ~200 MB
            with env.begin(write=True, db=junk) as txn:
                txn.put(b"%d" % commits.value, bytes(4000))
            commits.value += 1


def test_opening_while_another_process_grows_the_file(tmp_path):
    """``lmdb.open`` maps the data's size at that moment, then begins a transaction: a commit in between
    made the open fail (MapResizedError). With the retry removed, 150-250 of these 300 opens failed."""
    path = tmp_path / "c"
    LandmarkCache(path, SETTINGS, map_size=1 << 20).put("a", fake_record(3))
    close_every_process_handle()
    context = mp.get_context()
    stop, commits = context.Event(), context.Value("i", 0, lock=False)
    writer = context.Process(target=_grow, args=(path, stop, commits))
    writer.start()
    try:
        while commits.value < 100 and writer.is_alive():
            time.sleep(0.01)
        before = commits.value
        for readonly in (False, True) * 150:
            cache = LandmarkCache(path, SETTINGS, readonly=readonly, map_size=1 << 20)  # opens, checks, closes
            with cache.session():  # opens again, closes after
                assert cache.num_frames("a") == 3
        grown = commits.value - before
    finally:
        stop.set()
        writer.join(60)
    assert writer.exitcode == 0
    assert grown >= 1000, f"the writer committed {grown} times during the opens: too few to race them"


def _read_in_child(cache, queue):
    queue.put(cache.num_frames("a"))


def test_a_forked_child_opens_its_own_environment(tmp_path):
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    cache.put("a", fake_record(6))  # open in the parent, as after a num_workers=0 epoch
    queue = mp.get_context("fork").Queue()
    child = mp.get_context("fork").Process(target=_read_in_child, args=(cache, queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5) == 6
    cache.put("b", fake_record(1))  # the parent's environment still works
    assert cache.num_frames("b") == 1
    cache.close()


def test_read_only_cache_on_a_read_only_folder(tmp_path):
    LandmarkCache(tmp_path / "c", SETTINGS).put("a", fake_record(3))
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    shutil.copy(tmp_path / "c" / "data.mdb", frozen / "data.mdb")  # no lock file, as shipped
    os.chmod(frozen / "data.mdb", stat.S_IRUSR | stat.S_IRGRP)
    os.chmod(frozen, stat.S_IRUSR | stat.S_IXUSR)
    try:
        cache = LandmarkCache(frozen, SETTINGS, readonly=True)
        assert cache.get("a").num_frames == 3
        with pytest.raises(CacheError, match="read-only"):
            cache.put("b", fake_record(1))
        cache.close()
        assert sorted(p.name for p in frozen.iterdir()) == ["data.mdb"]  # nothing written there
    finally:
        os.chmod(frozen, stat.S_IRWXU)


def test_read_only_without_a_cache_says_how_to_build_one(tmp_path):
    with pytest.raises(CacheError, match="no cache at .*phoenix-warm-cache"):
        LandmarkCache(tmp_path / "nothing", SETTINGS, readonly=True)
    assert not (tmp_path / "nothing").exists()


def test_a_write_after_another_process_changed_the_settings_raises(tmp_path):
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    cache.put("a", fake_record(2))
    cache.close()
    other = HolisticSettings(backend="legacy", min_detection_confidence=0.9)
    # another process takes the path over for other settings while this one still holds it
    child = mp.get_context("spawn").Process(target=LandmarkCache, args=(tmp_path / "c", other),
                                            kwargs={"overwrite": True})
    child.start()
    child.join(60)
    assert child.exitcode == 0
    with pytest.raises(CacheError, match="now holds records of other extraction settings"):
        cache.put("b", fake_record(2))
    cache.close()


def test_check_records_tells_good_damaged_and_missing(tmp_path):
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    for key in ("good", "short", "flipped"):
        cache.put(key, fake_record(3))
    cache.close()
    overwrite_raw(cache, "short", encode_record(fake_record(3), "short")[:-1])
    flipped = bytearray(encode_record(fake_record(3), "flipped"))
    flipped[-50] ^= 1
    overwrite_raw(cache, "flipped", bytes(flipped))
    good, damaged = cache.check_records(["good", "short", "flipped", "missing"])
    assert good == {"good", "flipped"} and set(damaged) == {"short"}
    good, damaged = cache.check_records(["good", "short", "flipped", "missing"], full=True)
    assert good == {"good"} and set(damaged) == {"short", "flipped"} and "checksum" in damaged["flipped"]
    cache.close()


def test_handles_close_before_fork_and_reopen(tmp_path):
    from phoenix_data.cache.lmdb_env import has_process_handle

    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    cache.put("a", fake_record(2))
    assert has_process_handle(cache.path)
    child = mp.get_context("fork").Process(target=_writer, args=(tmp_path / "c", 7, 5, 1 << 20))
    child.start()  # the fork closes this process's environment first
    assert not has_process_handle(cache.path)
    child.join(60)
    assert child.exitcode == 0
    assert cache.num_frames("a") == 2 and cache.num_frames("w7/4") == 20 + 4 % 7
    cache.close()


# --- keys past LMDB's limit, small maps -----------------------------------------------------------------

LONG_KEY = "PHOENIX-2014-T/train/" + "x" * 600


def test_max_key_bytes_is_lmdbs_own_limit(tmp_path):
    from phoenix_data.cache import MAX_KEY_BYTES

    env = lmdb.open(str(tmp_path / "e"))
    try:
        assert env.max_key_size() == MAX_KEY_BYTES
    finally:
        env.close()


def test_a_key_past_lmdbs_limit_is_stored_and_read_in_every_table(tmp_path):
    other = LONG_KEY[:-1] + "y"  # the same first 600 bytes: no collision
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    with cache.session():
        cache.put_failure(LONG_KEY, "FramesError: no frames")
        assert cache.failures()[LONG_KEY]["reason"] == "FramesError: no frames"
        cache.put(LONG_KEY, fake_record(3))
        cache.put(other, fake_record(5))
        assert LONG_KEY not in cache.failures()
        assert cache.get(LONG_KEY).num_frames == 3 and cache.num_frames(other) == 5
        assert LONG_KEY in cache and cache.cached([LONG_KEY, other, LONG_KEY + "z"]) == {LONG_KEY, other}
        assert cache.check_records([LONG_KEY, other], full=True) == ({LONG_KEY, other}, {})
        stored = list(cache.keys())
        assert len(stored) == 2 and all(k.startswith("PHOENIX-2014-T/train/#") and len(k) < 100 for k in stored)
        assert cache.discard([LONG_KEY]) == 1 and cache.get(LONG_KEY) is None and cache.num_frames(other) == 5


@pytest.mark.parametrize("map_size", [4096, 8192, 16384])
def test_a_small_map_grows_instead_of_failing(tmp_path, map_size):
    cache = LandmarkCache(tmp_path / "c", SETTINGS, map_size=map_size)
    with cache.session():
        for i in range(3):
            cache.put(f"r/train/{i}", fake_record(20 + i, seed=i))
        cache.put_failure("r/train/bad", "FramesError: no frames")
    reader = LandmarkCache(tmp_path / "c", SETTINGS, readonly=True)
    with reader.session():
        assert [reader.get(f"r/train/{i}").num_frames for i in range(3)] == [20, 21, 22]
        assert list(reader.failures()) == ["r/train/bad"]


def test_cannot_open_names_the_path_once(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "data.mdb").write_bytes(b"not lmdb" * 1024)
    with pytest.raises(CacheError, match="cannot open the cache") as caught:
        LandmarkCache(tmp_path / "c", SETTINGS)
    assert str(caught.value).count(str(tmp_path / "c")) == 1, caught.value
    assert "File is not an LMDB file" in str(caught.value)


def test_without_posix_fallocate_the_lock_file_still_gets_its_blocks(tmp_path, monkeypatch):
    """macOS has no os.posix_fallocate: the cache must still open, write and read there."""
    from phoenix_data.cache import lmdb_env

    monkeypatch.delattr(os, "posix_fallocate")
    cache = LandmarkCache(tmp_path / "c", SETTINGS)
    cache.put("r/train/a", fake_record(3))
    assert cache.get("r/train/a").num_frames == 3
    cache.close()
    lock = os.stat(tmp_path / "c" / "lock.mdb")
    assert lock.st_size >= lmdb_env.LOCK_FILE_BYTES and lock.st_blocks * 512 >= lmdb_env.LOCK_FILE_BYTES


def test_allocate_without_posix_fallocate_leaves_existing_bytes_alone(tmp_path, monkeypatch):
    from phoenix_data.cache.lmdb_env import allocate

    monkeypatch.delattr(os, "posix_fallocate")
    path = tmp_path / "f"
    path.write_bytes(b"live lock table")
    fd = os.open(path, os.O_RDWR)
    try:
        allocate(fd, 200_000)
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert data[:15] == b"live lock table" and len(data) == 200_000 and not any(data[15:])


def test_on_windows_the_cache_says_why_it_cannot_run():
    from phoenix_data.cache import require_posix

    with pytest.raises(ImportError, match=r"POSIX system \(Linux or macOS\).*WSL2"):
        require_posix("win32")
    require_posix("darwin")  # macOS is POSIX
