"""A record belongs to its sample: identity, shape and value checks on every read; --verify and --repair.

Record faults are made by writing bytes straight into the LMDB file, as a swapped disk block, a
copying script or a bug elsewhere would; the record layout is spelled out here, not taken from
phoenix_data, so that a changed layout fails these tests.
"""
from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import List

import numpy as np
import pytest
from helpers import fake_record, raw_get, raw_put
from PIL import Image

from phoenix_data.cache import CacheRecordError, LandmarkCache, decode_record, encode_record
from phoenix_data.corpus import find_release, read_release_split
from phoenix_data.dataset import PhoenixLandmarks
from phoenix_data.demo import build_demo
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.frames import list_frames
from phoenix_data.record import NUM_POINTS, LandmarkRecord

MULTI = "phoenix-2014-multisigner"
FAKE = FakeExtractorSettings()  # the caches below hold hand-made records: no extractor runs
# version 2: magic, version, frames, points, width, height, pid, seconds, key digest, crc32
HEADER_V2 = struct.Struct("<4sHIHHHIf8sI")
# version 1 (caches written before): the same without the key digest; crc32 of the payload only
HEADER_V1 = struct.Struct("<4sHIHHHIfI")
WIDTH_OFFSET = 12  # magic 4 + version 2 + frames 4 + points 2
REFINED_POINTS = 553
RUN_TIMEOUT = 300


# --- helpers -----------------------------------------------------------------------------------------

def reseal(data: bytes) -> bytes:
    """A v2 record with its CRC recomputed: the change made to it passes the checksum."""
    head = data[:HEADER_V2.size - 4]
    payload = data[HEADER_V2.size:]
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def v1_record(record: LandmarkRecord) -> bytes:
    """The bytes a phoenix_data of record version 1 wrote for ``record``."""
    v2 = encode_record(record, "any")
    payload = v2[HEADER_V2.size:]
    t, n = record.landmarks.shape[:2]
    return HEADER_V1.pack(b"PHXL", 1, t, n, record.width, record.height, record.pid, record.seconds,
                          zlib.crc32(payload)) + payload


def with_nan(data: bytes, frame: int = 1) -> bytes:
    """The record with one landmark of ``frame`` set to float16 NaN, checksum made to match."""
    t, n = HEADER_V2.unpack_from(data)[2:4]
    landmarks = np.frombuffer(data, "<f2", t * n * 3, HEADER_V2.size).copy().reshape(t, n, 3)
    landmarks[frame, 0, 0] = np.nan
    return reseal(data[:HEADER_V2.size] + landmarks.tobytes() + data[HEADER_V2.size + landmarks.nbytes:])


def with_width(data: bytes, width: int) -> bytes:
    """The record with another width in its header (the checksum left as it was)."""
    return data[:WIDTH_OFFSET] + struct.pack("<H", width) + data[WIDTH_OFFSET + 2:]


def refined_record(frames: int) -> LandmarkRecord:
    """A 553-point record (refined face), as a cache of other settings holds."""
    base = fake_record(frames)
    extra = np.zeros((frames, REFINED_POINTS - NUM_POINTS, 3), np.float32)
    landmarks = np.concatenate([base.landmarks[:, :501], extra + 0.5, base.landmarks[:, 501:]], axis=1)
    confidence = np.concatenate([base.confidence[:, :501], np.ones(extra.shape[:2], np.float32),
                                 base.confidence[:, 501:]], axis=1)
    return LandmarkRecord(landmarks, confidence, width=210, height=260)


# --- the record alone ------------------------------------------------------------------------------------

def test_version_2_header_carries_the_key_digest():
    data = encode_record(fake_record(3), "rel/train/a")
    magic, version, frames, points, width, height, _, _, digest, _ = HEADER_V2.unpack_from(data)
    assert (magic, version, frames, points, width, height) == (b"PHXL", 2, 3, NUM_POINTS, 210, 260)
    assert digest == hashlib.blake2b(b"rel/train/a", digest_size=8).digest()
    assert decode_record(data, "rel/train/a").num_frames == 3
    with pytest.raises(CacheRecordError, match=r"'rel/train/b' belongs to another sample.*--repair"):
        decode_record(data, "rel/train/b")


@pytest.mark.parametrize("damage, says", [
    (lambda d: with_width(d, 211), "'k' fails its checksum"),  # the CRC covers the header
    (lambda d: with_nan(d), r"'k' holds non-finite landmarks \(NaN or inf\) in 1 frame\(s\), the first frame 1"),
    (lambda d: reseal(d[:-4] + b"\x02" + d[-3:]), "'k' holds presence flags up to 2"),
])
def test_header_and_values_are_checked(damage, says):
    data = encode_record(fake_record(3), "k")
    with pytest.raises(CacheRecordError, match=says + ".*phoenix-warm-cache --repair"):
        decode_record(damage(data), "k")


def test_float16_infinity_is_refused():
    data = bytearray(encode_record(fake_record(2), "k"))
    data[HEADER_V2.size:HEADER_V2.size + 2] = np.array([np.inf], "<f2").tobytes()
    with pytest.raises(CacheRecordError, match="non-finite"):
        decode_record(reseal(bytes(data)), "k")


def test_zero_frames_and_foreign_point_counts_are_refused():
    empty = encode_record(fake_record(0), "k")
    with pytest.raises(CacheRecordError, match="'k' has 0 frames; a record holds 1 or more"):
        decode_record(empty, "k")
    refined = encode_record(refined_record(2), "k")
    assert decode_record(refined, "k").landmarks.shape == (2, REFINED_POINTS, 3)  # fine in its own cache
    with pytest.raises(CacheRecordError, match="'k' has 553 points per frame; this cache's settings give 543"):
        decode_record(refined, "k", num_points=NUM_POINTS)


def test_non_finite_landmarks_are_refused_at_write():
    record = fake_record(2)
    record.landmarks[0, 5, 1] = np.nan
    with pytest.raises(ValueError, match="'k'.*non-finite"):
        encode_record(record, "k")


def test_version_1_records_still_read_with_every_check_but_identity():
    record = fake_record(4)
    data = v1_record(record)
    back = decode_record(data, "any/other/key")  # v1 carries no key digest: nothing to compare
    np.testing.assert_allclose(back.landmarks, record.landmarks, atol=6e-4)
    assert (back.width, back.height, back.num_frames) == (210, 260, 4)
    flipped = bytearray(data)
    flipped[-30] ^= 0xFF
    with pytest.raises(CacheRecordError, match="checksum"):
        decode_record(bytes(flipped), "k")
    with pytest.raises(CacheRecordError, match="553 points per frame"):
        decode_record(v1_record(refined_record(2)), "k", num_points=NUM_POINTS)
    nan = bytearray(data)
    nan[HEADER_V1.size:HEADER_V1.size + 2] = np.array([np.nan], "<f2").tobytes()
    payload = bytes(nan[HEADER_V1.size:])
    nan[HEADER_V1.size - 4:HEADER_V1.size] = struct.pack("<I", zlib.crc32(payload))
    with pytest.raises(CacheRecordError, match="non-finite"):
        decode_record(bytes(nan), "k")


# --- through the cache and the dataset ------------------------------------------------------------------

OTHER = "other/train/x"  # a good record, besides the faulty ones


def faulty_cache(demo: Path, path: Path) -> List[str]:
    """A cache of the seven multisigner samples, fake records, each made faulty in its own way.

    Returns their keys in the order of FAULTS: swapped a, swapped b, copied, 553 points, 0 frames,
    changed width, NaN.
    """
    rel = find_release(demo, "multisigner")
    keys = [s.key for split in ("train", "dev", "test") for s in read_release_split(rel, split)]
    assert len(keys) == len(FAULTS), keys
    cache = LandmarkCache(path, FAKE)
    with cache.session():
        for i, key in enumerate(keys + [OTHER]):
            cache.put(key, fake_record(3 + i, seed=i))
    damage(path, keys, raw_get(path, OTHER))
    return keys


def damage(path: Path, keys: List[str], foreign: bytes) -> None:
    """Make the records of ``keys`` faulty as FAULTS says; ``foreign`` is another sample's record."""
    a, b, copied, refined, empty, width, nan = keys
    raws = {k: raw_get(path, k) for k in keys}
    raw_put(path, {a: raws[b], b: raws[a], copied: foreign,
                   refined: encode_record(refined_record(3), refined), empty: encode_record(fake_record(0), empty),
                   width: with_width(raws[width], 300), nan: with_nan(raws[nan])})


FAULTS = ["belongs to another sample", "belongs to another sample", "belongs to another sample",
          "has 553 points per frame", "has 0 frames", "fails its checksum", "holds non-finite landmarks"]


def test_every_read_refuses_a_faulty_record_naming_the_sample(demo_dir, tmp_path):
    keys = faulty_cache(demo_dir, tmp_path / "c")
    cache = LandmarkCache(tmp_path / "c", FAKE, readonly=True)
    with cache.session():
        for key, says in zip(keys, FAULTS):
            with pytest.raises(CacheRecordError, match=f"{key!r} {says}"):
                cache.get(key)
        assert cache.get(OTHER).num_frames == 3 + len(keys)
        for key in keys[:5]:  # the header alone tells these
            with pytest.raises(CacheRecordError, match=key):
                cache.num_frames(key)
        good, damaged = cache.check_records(keys + [OTHER], full=True)
    assert set(damaged) == set(keys) and good == {OTHER}


def test_dataset_items_refuse_a_faulty_record(demo_dir, tmp_path):
    keys = faulty_cache(demo_dir, tmp_path / "c")
    for split in ("train", "dev", "test"):
        ds = PhoenixLandmarks(demo_dir, split, cache=tmp_path / "c", release="multisigner", readonly=True,
                              settings=FAKE)
        for index, sample in enumerate(ds.samples):
            says = FAULTS[keys.index(sample.key)]
            with pytest.raises(CacheRecordError, match=f"{sample.key!r} {says}.*--repair"):
                ds[index]


# --- --verify lists, --repair re-extracts (real MediaPipe, in subprocesses) -------------------------------

def command(name: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phoenix_data.cli", name, *map(str, args)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)


def verify_lines(demo: Path, cache: Path, release: str) -> subprocess.CompletedProcess:
    return command("dataset", "--root", demo, "--release", release, "--cache", cache, "--verify")


def test_verify_lists_and_repair_re_extracts_every_faulty_record(tmp_path, holistic_settings):
    demo, cache = tmp_path / "demo", tmp_path / "cache"
    build_demo(demo)
    samples = {name: [s for split in ("train", "dev", "test") for s in read_release_split(find_release(demo, name),
                                                                                          split)]
               for name in ("multisigner", "si5")}
    store = LandmarkCache(cache, holistic_settings)
    with store.session():  # records that pass --verify: as many frames as on disk, 210x260
        for seed, sample in enumerate(samples["multisigner"] + samples["si5"]):
            store.put(sample.key, fake_record(len(list_frames(sample.frames_dir)), seed=seed))
    faulty = [s.key for s in samples["multisigner"]]
    damage(cache, faulty, raw_get(cache, samples["si5"][0].key))
    lost_frame, resized = samples["si5"][1:3]
    list_frames(lost_frame.frames_dir)[-1].unlink()  # the frame folder lost a frame after caching
    for path in list_frames(resized.frames_dir):
        Image.open(path).resize((200, 250)).save(path)

    multi, si5 = verify_lines(demo, cache, "multisigner"), verify_lines(demo, cache, "si5")
    assert multi.returncode == si5.returncode == 1, multi.stdout[-3000:] + si5.stdout[-3000:]
    bad = multi.stdout.split(f"Bad cache records ({len(faulty)})")[1]
    for key, says in zip(faulty, FAULTS):
        assert re.search(rf"{re.escape(key.rsplit('/', 1)[1])} +cache record of {re.escape(repr(key))} {says}",
                         bad), (key, bad)
    bad = si5.stdout.split("Bad cache records (2)")[1]
    assert re.search(rf"{lost_frame.id} +record has \d+ frames, \d+ PNG frames on disk", bad), bad
    assert re.search(rf"{resized.id} +record made from 210x260 frames, frames on disk are 200x250", bad), bad

    for name in ("multisigner", "si5"):
        repaired = command("warm-cache", "--root", demo, "--cache", cache, "--release", name, "--workers", 2,
                           "--repair")
        assert repaired.returncode == 0, repaired.stderr[-3000:]
    store = LandmarkCache(cache, holistic_settings, readonly=True)
    with store.session():
        for sample in samples["multisigner"] + samples["si5"]:
            paths = list_frames(sample.frames_dir)
            record = store.get(sample.key)
            size = Image.open(paths[0]).size
            assert (record.num_frames, record.width, record.height) == (len(paths), *size), sample.key
            assert (record.pid == 4242) == (sample.key not in faulty + [lost_frame.key, resized.key]), sample.key
    again = verify_lines(demo, cache, "multisigner")
    assert again.returncode == 0, again.stdout[-3000:]
