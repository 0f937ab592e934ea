"""The landmark record: its point layout, ``LandmarkRecord``, and its binary encoding with the checks every read makes.

A record is a fixed header, then three arrays, in this order (``_sections``, the one place that
says so): landmarks float16 [T, N, 3], pose visibility uint8 [T, 33] (0..255 for 0..1), presence
uint8 [T, 4] (pose, face, left hand, right hand found: 0 or 1).

Version 2 (written now) makes a record self-identifying: its header carries the first 8 bytes of
the BLAKE2b digest of its sample key, and its CRC32 covers the header as well as the payload, so
a record stored under another key, or a header whose width was changed, is refused on read.
Version 1 records (no key digest; CRC of the payload only) are still read, with every check but
the identity one: caches built before version 2 stay usable without re-extracting them
(PHOENIX-2014 is ~10 CPU-hours); ``phoenix-warm-cache --repair`` rewrites only damaged records.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

# Points per frame, in pose-format's order: pose, face, left hand, right hand.
POSE_POINTS = 33
FACE_POINTS = 468
FACE_POINTS_REFINED = 478
HAND_POINTS = 21
PARTS: Tuple[str, ...] = ("pose", "face", "left_hand", "right_hand")
NUM_POINTS = POSE_POINTS + FACE_POINTS + 2 * HAND_POINTS  # 543
# Bump when the meaning or layout of a cached record changes.
SCHEMA_VERSION = 1

# Skeleton edges, as MediaPipe defines them (its POSE_CONNECTIONS and HAND_CONNECTIONS): indices into
# the 33 pose points and into one hand's 21. Data, so that drawing and exporting need no MediaPipe.
POSE_EDGES: Tuple[Tuple[int, int], ...] = (
    (0, 1), (0, 4), (1, 2), (2, 3), (3, 7), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (11, 23),
    (12, 14), (12, 24), (13, 15), (14, 16), (15, 17), (15, 19), (15, 21), (16, 18), (16, 20), (16, 22),
    (17, 19), (18, 20), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (27, 31), (28, 30),
    (28, 32), (29, 31), (30, 32))
HAND_EDGES: Tuple[Tuple[int, int], ...] = (
    (0, 1), (0, 5), (0, 17), (1, 2), (2, 3), (3, 4), (5, 6), (5, 9), (6, 7), (7, 8), (9, 10), (9, 13),
    (10, 11), (11, 12), (13, 14), (13, 17), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20))


@lru_cache(maxsize=None)
def part_slices(num_points: int) -> Dict[str, slice]:
    """Where each part sits in a [.., num_points, ..] array (face has the points not in the others).

    Cached (every record read asks for it; computing it took ~20 us): do not modify the returned dict.
    """
    face = num_points - POSE_POINTS - 2 * HAND_POINTS
    if face not in (FACE_POINTS, FACE_POINTS_REFINED):
        raise ValueError(f"{num_points} landmarks per frame; expected {NUM_POINTS} or "
                         f"{NUM_POINTS - FACE_POINTS + FACE_POINTS_REFINED}.")
    bounds = np.cumsum([0, POSE_POINTS, face, HAND_POINTS, HAND_POINTS])
    return {part: slice(int(a), int(b)) for part, a, b in zip(PARTS, bounds[:-1], bounds[1:])}


@dataclass
class LandmarkRecord:
    """One sample's landmarks, as extracted or as read back from a cache.

    landmarks (float32 [T, N, 3]): x, y normalized to image width and height, z as MediaPipe gives it.
    confidence (float32 [T, N]): pose visibility; 1 or 0 for face and hand presence.
    """

    landmarks: np.ndarray
    confidence: np.ndarray
    width: int
    height: int
    pid: int = field(default_factory=os.getpid)  # the process that extracted it
    seconds: float = 0.0  # wall time of the extraction
    # bool [T, 4]: pose, face, left hand, right hand found in each frame, as the extractor (or the
    # stored record) says; None only for a record built by hand, whose zeros then tell.
    found: Optional[np.ndarray] = None

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    def presence(self) -> np.ndarray:
        """bool [T, 4]: whether pose, face, left hand, right hand were found in each frame."""
        if self.found is not None:
            return self.found
        slices = part_slices(self.landmarks.shape[1])
        return np.stack([np.any(self.landmarks[:, slices[part]] != 0, axis=(1, 2)) for part in PARTS], axis=1)

    def detection_rates(self) -> Dict[str, float]:
        """Share of frames in which each part was found."""
        found = self.presence()
        rates = found.mean(axis=0) if self.num_frames else np.zeros(len(PARTS))
        return {part: float(rate) for part, rate in zip(PARTS, rates)}




MAGIC = b"PHXL"
RECORD_VERSION = 2
KEY_DIGEST_BYTES = 8
_PREFIX = struct.Struct("<4sH")  # magic, version: how to read the rest
_HEADERS = {
    # magic, version, frames, points, width, height, extracting pid, seconds, crc32 of the payload
    1: struct.Struct("<4sHIHHHIfI"),
    # the same, then the sample key's digest; crc32 of the header before it and the payload
    2: struct.Struct(f"<4sHIHHHIf{KEY_DIGEST_BYTES}sI"),
}
_CRC_BYTES = 4  # the header's last field
_FLOAT16_EXPONENT = 0x7C00  # all exponent bits set: inf or NaN
REPAIR_HINT = "Re-extract it: phoenix-warm-cache --repair checks every record and re-extracts damaged ones."

Bytes = Union[bytes, bytearray, memoryview]


class CacheError(RuntimeError):
    """A cache that cannot be used as asked (missing, other settings, read-only)."""


class CacheRecordError(CacheError):
    """A record that cannot be used: truncated, foreign, damaged, or not this sample's."""


@dataclass(frozen=True)
class RecordHeader:
    """A record's header fields; ``digest`` is None for version 1."""

    version: int
    frames: int
    points: int
    width: int
    height: int
    pid: int
    seconds: float
    digest: Optional[bytes]
    crc: int
    size: int  # bytes of the header


def key_digest(key: str) -> bytes:
    """The 8-byte digest of a sample key a version-2 record carries."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=KEY_DIGEST_BYTES).digest()


def _sections(frames: int, points: int) -> Tuple[Tuple[str, np.dtype, Tuple[int, ...]], ...]:
    """(name, dtype, shape) of the payload's arrays, in stored order."""
    return (("landmarks", np.dtype("<f2"), (frames, points, 3)),
            ("visibility", np.dtype(np.uint8), (frames, POSE_POINTS)),
            ("presence", np.dtype(np.uint8), (frames, len(PARTS))))


def _payload_size(frames: int, points: int) -> int:
    return sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in _sections(frames, points))


def _fail(key: str, what: str) -> CacheRecordError:
    return CacheRecordError(f"cache record of {key!r} {what}. {REPAIR_HINT}")


# --- writing ------------------------------------------------------------------------------------

def encode_record(record: LandmarkRecord, key: str) -> bytes:
    """A version-2 record of sample ``key``: header, then the arrays of ``_sections``."""
    t, n, _ = record.landmarks.shape
    landmarks = record.landmarks.astype("<f2")
    if not np.isfinite(landmarks).all():
        what = ("non-finite values (NaN or inf)" if not np.isfinite(record.landmarks).all() else
                f"values up to {np.abs(record.landmarks).max():.4g}, beyond float16's 65504")
        # ValueError: this sample's data, not the cache, is at fault
        raise ValueError(f"landmarks of {key!r} hold {what}; MediaPipe's normalized coordinates never "
                         "should: check the extraction.")
    arrays = {"landmarks": landmarks,
              "visibility": np.rint(np.clip(record.confidence[:, part_slices(n)["pose"]], 0, 1) * 255),
              "presence": record.presence()}
    payload = b"".join(arrays[name].astype(dtype, copy=False).reshape(shape).tobytes()
                       for name, dtype, shape in _sections(t, n))
    header = _HEADERS[RECORD_VERSION].pack(MAGIC, RECORD_VERSION, t, n, record.width, record.height,
                                           record.pid, record.seconds, key_digest(key), 0)[:-_CRC_BYTES]
    return header + struct.pack("<I", zlib.crc32(payload, zlib.crc32(header))) + payload


# --- reading ------------------------------------------------------------------------------------

def decode_header(data: Bytes, key: str, num_points: Optional[int] = None) -> RecordHeader:
    """The header of ``key``'s record, checked: version, identity, shape, length.

    ``num_points``: the points per frame the cache's settings give (543, or 553 with a refined
    face); None accepts either. Raises CacheRecordError naming ``key`` and what is wrong.
    """
    if len(data) < _PREFIX.size:
        raise _fail(key, f"is {len(data)} bytes, shorter than a header; it is truncated or not a "
                         "phoenix_data record")
    magic, version = _PREFIX.unpack_from(data)
    layout = _HEADERS.get(version)
    if magic != MAGIC or layout is None:
        raise _fail(key, f"is not a phoenix_data record of version {', '.join(map(str, _HEADERS))} "
                         f"(magic {magic!r}, version {version})")
    if len(data) < layout.size:
        raise _fail(key, f"is {len(data)} bytes, shorter than a header; it is truncated")
    fields = layout.unpack_from(data)
    digest = fields[8] if version >= 2 else None
    frames, points, width, height, pid, seconds = fields[2:8]
    header = RecordHeader(version, frames, points, width, height, pid, seconds, digest, fields[-1], layout.size)
    _check_header(header, key, num_points)
    expected = header.size + _payload_size(header.frames, header.points)
    if len(data) != expected:
        raise _fail(key, f"is {len(data)} bytes; its header promises {expected} ({header.frames} frames x "
                         f"{header.points} points): truncated or damaged")
    return header


def _check_header(header: RecordHeader, key: str, num_points: Optional[int]) -> None:
    if header.digest is not None and header.digest != key_digest(key):
        raise _fail(key, f"belongs to another sample (key digest {header.digest.hex()}, this key's is "
                         f"{key_digest(key).hex()}): records were swapped or copied between keys")
    if header.frames < 1:
        raise _fail(key, f"has {header.frames} frames; a record holds 1 or more")
    if num_points is not None and header.points != num_points:
        raise _fail(key, f"has {header.points} points per frame; this cache's settings give {num_points}")
    try:
        part_slices(header.points)
    except ValueError as exc:
        raise _fail(key, f"is not a landmark record: {exc}") from None


def decode_record(data: Bytes, key: str, float16: bool = False,
                  num_points: Optional[int] = None) -> LandmarkRecord:
    """The record ``encode_record`` wrote for ``key``; raises CacheRecordError naming ``key`` on any fault.

    Checked: the header (``decode_header``), the checksum, finite landmarks, presence 0 or 1 (pose
    visibility is in [0, 1] by its uint8 encoding). ``float16=True`` leaves the landmarks as stored,
    for a caller that converts them faster (torch's ``Tensor.float()`` is ~10x quicker than numpy's
    ``astype`` here). Returns landmarks [T, N, 3], confidence float32 [T, N].

    ``data`` is copied first and everything is checked and decoded from that copy: a buffer of LMDB's
    map (a ``buffers=True`` read) can change under a reader that holds no lock, between a check and a
    later copy. Whatever this returns has been checked byte for byte.
    """
    data = bytearray(data)  # our own bytes (writable: the arrays below are views of it, not copies)
    header, arrays = _checked(data, len(data), key, num_points)
    landmarks = arrays["landmarks"]  # a view of the checked copy
    landmarks = landmarks if float16 else landmarks.astype(np.float32)
    confidence = np.empty((header.frames, header.points), np.float32)
    fill_confidence(arrays, confidence)
    return LandmarkRecord(landmarks, confidence, width=header.width, height=header.height, pid=header.pid,
                          seconds=header.seconds, found=arrays["presence"].astype(bool))


def check_into(data: Bytes, key: str, scratch: List[np.ndarray],
               num_points: Optional[int] = None) -> Tuple[RecordHeader, Dict[str, np.ndarray]]:
    """``data`` copied into the buffer ``scratch[0]`` (replaced by a larger one when it is too small) and
    checked as ``decode_record`` checks it: its header and the arrays of its payload, views of that buffer
    (valid until it is written again). For a reader that copies records straight into batches (no new
    memory per record)."""
    size = len(data)
    if scratch[0].size < size:
        scratch[0] = np.empty(size + size // 4, np.uint8)
    scratch[0][:size] = np.frombuffer(data, np.uint8)
    return _checked(memoryview(scratch[0]), size, key, num_points)  # type: ignore[arg-type]


def _checked(data: Union[bytearray, memoryview], size: int, key: str,
             num_points: Optional[int]) -> Tuple[RecordHeader, Dict[str, np.ndarray]]:
    view = memoryview(data)[:size]
    header = decode_header(view, key, num_points)
    payload = view[header.size:]
    crc = zlib.crc32(payload) if header.version == 1 else zlib.crc32(payload, zlib.crc32(
        view[:header.size - _CRC_BYTES]))
    if crc != header.crc:
        raise _fail(key, "fails its checksum: damaged")
    arrays = _split_payload(payload, header)
    _check_values(arrays, key)
    return header, arrays


def fill_confidence(arrays: Dict[str, np.ndarray], confidence: np.ndarray) -> None:
    """A record's confidence [T, N] from its arrays: its part's presence (0 or 1) for every point, the
    pose's visibility for the pose. (Each frame's row is copied whole from a table of the 16 presence
    patterns: one contiguous copy a frame; ~1.3x quicker than filling each part's columns, 2026-12-04.)"""
    _rows_by_presence(arrays["presence"], _presence_rows(confidence.shape[1], np.float32), confidence)
    np.divide(arrays["visibility"], np.float32(255), out=confidence[:, part_slices(confidence.shape[1])["pose"]],
              casting="unsafe")


def fill_found(arrays: Dict[str, np.ndarray], valid: np.ndarray) -> None:
    """bool [T, N]: each point's part found in that frame (the record's presence bits)."""
    _rows_by_presence(arrays["presence"], _presence_rows(valid.shape[1], np.bool_), valid)


_PART_BITS = np.array([1 << i for i in range(len(PARTS))], np.uint8)


def _rows_by_presence(presence: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """``out[t] = table[pattern of presence[t]]``: presence uint8 [T, 4] of 0 or 1 (``_check_values``)."""
    patterns = presence @ _PART_BITS  # [T] in 0..15
    # mode="clip": "raise" would write through a buffer of its own (a second pass over ``out``)
    np.take(table, patterns, axis=0, out=out, mode="clip")


@lru_cache(maxsize=None)
def _presence_rows(num_points: int, dtype: type) -> np.ndarray:
    """[16, num_points] of ``dtype``: row p holds, at each point, bit i of p for the point's part i."""
    parts = part_of_points(num_points)
    table = (np.arange(16)[:, None] >> parts[None, :]) & 1
    table = table.astype(dtype)
    table.flags.writeable = False
    return table


def select_columns(arrays: Dict[str, np.ndarray], columns: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A record's landmarks (float16 as stored, [T, K, 3]), confidence (float32 [T, K]) and found mask (bool
    [T, K]) at the layout points ``columns`` (K indices) only: the values ``fill_confidence`` and
    ``fill_found`` give at those points, made without the other points. New arrays (no view of ``arrays``)."""
    frames = arrays["presence"].shape[0]
    confidence, found = np.empty((frames, len(columns)), np.float32), np.empty((frames, len(columns)), np.bool_)
    selection(arrays["landmarks"].shape[1], columns).fill(arrays, confidence, found)
    # np.take: C-contiguous results (a[:, columns] may come out with its axes' strides swapped)
    return np.take(arrays["landmarks"], columns, axis=1), confidence, found


def selection(num_points: int, columns: np.ndarray) -> "Selection":
    """The ``Selection`` of ``columns`` (kept for the last 64 selections asked for: its tables are made once)."""
    return _selection(num_points, np.asarray(columns, dtype=np.int64).tobytes())


@lru_cache(maxsize=64)
def _selection(num_points: int, columns: bytes) -> "Selection":
    return Selection(num_points, np.frombuffer(columns, np.int64))


class Selection:
    """Some layout points (``columns``, K indices into a layout of ``num_points``): their confidence and
    found mask from a record's arrays, each frame's row copied whole from a table of the 16 presence
    patterns (as ``fill_confidence``), then the pose's visibility."""

    def __init__(self, num_points: int, columns: np.ndarray) -> None:
        self.num_points, self.columns = num_points, columns
        self._confidence = np.ascontiguousarray(_presence_rows(num_points, np.float32)[:, columns])
        self._found = np.ascontiguousarray(_presence_rows(num_points, np.bool_)[:, columns])
        pose = np.flatnonzero(part_of_points(num_points)[columns] == 0)
        self._pose_columns = columns[pose]
        # where the pose's points go: a slice when they are consecutive (views, not copies, where indexed)
        consecutive = pose.size > 0 and np.array_equal(pose, np.arange(pose[0], pose[0] + pose.size))
        self._pose: Union[slice, np.ndarray] = slice(int(pose[0]), int(pose[-1]) + 1) if consecutive else pose

    @property
    def pose(self) -> Union[slice, np.ndarray]:
        """Which of the points are the pose's (a slice where they are consecutive)."""
        return self._pose

    def fill(self, arrays: Dict[str, np.ndarray], confidence: np.ndarray, found: np.ndarray) -> None:
        """``confidence`` (float32 [T, K]) and ``found`` (bool [T, K]) of the record's frames."""
        _rows_by_presence(arrays["presence"], self._confidence, confidence)
        self.fill_found(arrays, found)
        if isinstance(self._pose, slice) or self._pose.size:
            confidence[:, self._pose] = self.visibility(arrays)

    def fill_found(self, arrays: Dict[str, np.ndarray], found: np.ndarray) -> None:
        """``found`` (bool [T, K]) of the record's frames."""
        _rows_by_presence(arrays["presence"], self._found, found)

    def visibility(self, arrays: Dict[str, np.ndarray], out: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 [T, P]: the confidence of the pose's points among them (their visibility), into ``out``."""
        return np.divide(np.take(arrays["visibility"], self._pose_columns, axis=1), np.float32(255), out=out,
                         casting="unsafe")


@lru_cache(maxsize=None)
def part_of_points(num_points: int) -> np.ndarray:
    """int [num_points]: the index in PARTS of each point's part (kept: read-only)."""
    index = np.empty(num_points, np.intp)
    for i, part in enumerate(PARTS):
        index[part_slices(num_points)[part]] = i
    index.flags.writeable = False
    return index


def _split_payload(payload: memoryview, header: RecordHeader) -> Dict[str, np.ndarray]:
    """Views of the payload's arrays (no copy)."""
    arrays, offset = {}, 0
    for name, dtype, shape in _sections(header.frames, header.points):
        size = dtype.itemsize * math.prod(shape)  # (np.prod: 3.6 us a call, 40x math's)
        arrays[name] = np.frombuffer(payload[offset:offset + size], dtype).reshape(shape)
        offset += size
    return arrays


def _check_values(arrays: Dict[str, np.ndarray], key: str) -> None:
    # the exponent bits of the float16 words: all set is inf or NaN (~50 us for 140 frames,
    # 15x faster than np.isfinite on float16)
    exponents = np.bitwise_and(arrays["landmarks"].view(np.uint16), _FLOAT16_EXPONENT)
    if exponents.max() == _FLOAT16_EXPONENT:
        frames = np.flatnonzero((exponents == _FLOAT16_EXPONENT).any(axis=(1, 2)))
        raise _fail(key, f"holds non-finite landmarks (NaN or inf) in {len(frames)} frame(s), the first "
                         f"frame {frames[0]}")
    presence = arrays["presence"]
    if presence.max() > 1:
        raise _fail(key, f"holds presence flags up to {presence.max()}; expected 0 or 1")
