"""A reader without LMDB's lock (a finished cache copied without lock.mdb) and a writer that arrives later:
every record the reader gets is checked byte for byte, so it never returns wrong landmarks.

The race is made certain instead of waited for: the reader's checksum call pauses while a writer
process rewrites the record it is reading (a new commit frees its pages) and writes records of other
keys that reuse those pages.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import fake_record

from phoenix_data.cache import LandmarkCache, decode_record, encode_record
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.record import fill_confidence

FAKE = FakeExtractorSettings()
KEY = "rel/train/read-while-rewritten"
FRAMES = 60

WRITER = """
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from helpers import fake_record
    from phoenix_data.cache import LandmarkCache
    from phoenix_data.extract.fake import FakeExtractorSettings

    cache = LandmarkCache({path!r}, FakeExtractorSettings())
    cache.put({key!r}, fake_record({frames}, seed=0))  # the same record again: a new commit frees the old pages
    for round_ in range(6):  # records of other keys, one commit each: they take the freed pages
        cache.put(f"rel/train/filler-{{round_}}", fake_record({frames}, seed=100 + round_))
    cache.close()
"""


def lock_free_cache(tmp_path):
    path = tmp_path / "cache"
    writer = LandmarkCache(path, FAKE)
    writer.put(KEY, fake_record(FRAMES, seed=0))
    writer.close()
    (path / "lock.mdb").unlink()  # copied without its lock file
    reader = LandmarkCache(path, FAKE, readonly=True)
    return path, reader


@pytest.mark.parametrize("read", ["get", "read_batch"])
def test_a_lock_free_read_under_a_writer_reusing_its_pages_returns_the_record(tmp_path, monkeypatch, read):
    """``get`` (one record), ``read_batch`` (the records of a batch, straight into the batch's memory)."""
    path, reader = lock_free_cache(tmp_path)
    expected = decode_record(encode_record(fake_record(FRAMES, seed=0), KEY), KEY)
    real_crc32, calls = zlib.crc32, []

    def crc32_then_a_writer(data, *start):
        value = real_crc32(data, *start)
        calls.append(len(data))
        if len(calls) == 2:  # the payload's checksum (the header's comes first): the writer runs now
            code = textwrap.dedent(WRITER.format(tests=str(__import__("helpers").__file__.rsplit("/", 1)[0]),
                                                 path=str(path), key=KEY, frames=FRAMES))
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
        return value

    with reader.session():
        monkeypatch.setattr(zlib, "crc32", crc32_then_a_writer)
        record = reader.get(KEY) if read == "get" else _read_batch(reader)
        monkeypatch.undo()
    assert len(calls) >= 2, "the race was not staged: the checksum was never computed"
    assert record is not None
    np.testing.assert_array_equal(record.landmarks, expected.landmarks)
    np.testing.assert_array_equal(record.confidence, expected.confidence)


def _read_batch(reader):
    """The one record, as ``read_batch`` hands it to a batch: landmarks and confidence copied out."""
    out = {}

    def fill(sizes):
        out["landmarks"] = np.zeros((sizes[0], 543, 3), np.float32)
        out["confidence"] = np.zeros((sizes[0], 543), np.float32)

        def put(i, header, arrays):
            out["landmarks"][:] = arrays["landmarks"]
            fill_confidence(arrays, out["confidence"])
        return put

    assert reader.read_batch([KEY], fill, [np.empty(0, np.uint8)])
    return SimpleNamespace(**out)


def test_a_lock_free_reader_retries_a_record_once_before_calling_it_damaged(tmp_path, monkeypatch):
    path, reader = lock_free_cache(tmp_path)
    real_crc32, calls = zlib.crc32, []

    def wrong_once(data, *start):
        calls.append(1)
        value = real_crc32(data, *start)
        return value ^ 1 if len(calls) == 2 else value  # the first read sees a checksum that fails

    monkeypatch.setattr(zlib, "crc32", wrong_once)
    with reader.session():
        record = reader.get(KEY)
    assert record is not None and record.num_frames == FRAMES and len(calls) == 4  # read twice


def test_a_locked_reader_does_not_retry_a_damaged_record(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    cache = LandmarkCache(path, FAKE)
    cache.put(KEY, fake_record(FRAMES, seed=0))
    cache.close()
    reader = LandmarkCache(path, FAKE, readonly=True)  # lock.mdb is there: a reader with locks
    real_crc32 = zlib.crc32
    monkeypatch.setattr(zlib, "crc32", lambda data, *start: real_crc32(data, *start) ^ 1)
    from phoenix_data.cache import CacheRecordError

    with reader.session(), pytest.raises(CacheRecordError, match="checksum"):
        reader.get(KEY)
