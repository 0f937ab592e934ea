"""A fast stand-in for MediaPipe, behind the same extractor seam: for tests and examples, not for training.

``PhoenixLandmarks(root, split, cache=..., settings=FakeExtractorSettings())``,
``WarmOptions(..., settings=FakeExtractorSettings())`` or ``phoenix_data.cli.warm.main(argv, spec=...)``
run the whole path (frames, the isolated helper or workers, the LMDB cache, the items) in
milliseconds a frame instead of 30-45. Its landmarks are a function of the frame's pixels, so a test
can still tell which frames a record was made from and in which order. Its fingerprint differs from
every MediaPipe setting: a cache never mixes the two.
"""
from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Dict, Iterable

import numpy as np

from ..record import NUM_POINTS, PARTS, SCHEMA_VERSION, LandmarkRecord, part_slices

# The fake's one part that comes and goes: the right hand is "found" where the frame's mean red
# value is above this (a frame turned dark loses it, as a hand out of view would).
HAND_THRESHOLD = 64
# Faults on demand, for tests of what survives them: a frame filled with one of these RGB colours makes
# the extracting process abort (as MediaPipe's graph aborts on some frames) or hang.
CRASH_COLOUR = (255, 0, 255)
HANG_COLOUR = (0, 255, 255)
# A process with this set computes another identity for the same settings, as a machine with another
# mediapipe release or model bundle would (tests of a cluster whose nodes disagree).
VERSION_ENV = "PHOENIX_FAKE_EXTRACTOR_VERSION"


@dataclass(frozen=True)
class FakeExtractorSettings:
    """Settings of the fake extractor; ``delay`` seconds per frame imitate a slow estimator."""

    delay: float = 0.0

    @property
    def num_points(self) -> int:
        return NUM_POINTS

    def as_dict(self) -> dict:
        return dict(asdict(self), extractor="fake")

    def identity(self) -> dict:
        # "phoenix_data.testing": its old module, kept so that fingerprints stay
        identity = {"settings": self.as_dict(), "extractor": "phoenix_data.testing",
                    "schema": SCHEMA_VERSION}
        if os.environ.get(VERSION_ENV):
            identity["version"] = os.environ[VERSION_ENV]
        return identity

    def versions(self) -> Dict[str, str]:
        return {"fake": os.environ[VERSION_ENV]} if os.environ.get(VERSION_ENV) else {}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def check_ready(self) -> None:
        """Always ready: needs nothing installed."""

    def build(self) -> "FakeExtractor":
        return FakeExtractor(self)


class FakeExtractor:
    """Landmarks from pixel statistics: pose and face in every frame, right hand in bright frames."""

    def __init__(self, settings: FakeExtractorSettings) -> None:
        self.settings = settings

    def extract(self, frames: Iterable[np.ndarray]) -> LandmarkRecord:
        start, rows, size = time.perf_counter(), [], None
        for frame in frames:
            size = frame.shape[:2]
            _fault_on_demand(frame)
            rows.append(fake_points(frame))
            time.sleep(self.settings.delay)
        if size is None:
            raise ValueError("no frames to extract from.")
        landmarks = np.stack(rows)
        confidence = np.zeros(landmarks.shape[:2], np.float32)
        slices = part_slices(NUM_POINTS)
        confidence[:, slices["pose"]] = 0.9
        confidence[:, slices["face"]] = 1.0
        right = np.any(landmarks[:, slices["right_hand"]] != 0, axis=(1, 2))
        confidence[right, slices["right_hand"]] = 1.0
        # what the fake "found", part by part (PARTS order), as a real estimator reports it
        found = np.zeros((len(landmarks), len(PARTS)), bool)
        found[:, PARTS.index("pose")] = found[:, PARTS.index("face")] = True
        found[:, PARTS.index("right_hand")] = right
        return LandmarkRecord(landmarks, confidence, width=size[1], height=size[0], pid=os.getpid(),
                              seconds=time.perf_counter() - start, found=found)

    def close(self) -> None:
        """Nothing to free."""


def _fault_on_demand(frame: np.ndarray) -> None:
    corner = tuple(int(v) for v in frame[0, 0])
    if corner not in (CRASH_COLOUR, HANG_COLOUR) or not np.all(frame == frame[0, 0]):
        return
    if corner == CRASH_COLOUR:
        faulthandler.disable()  # a native abort, not a Python traceback on an inherited stderr
        os.abort()
    while True:  # hung: only a kill ends it
        time.sleep(60)


def fault_frame(colour: tuple, height: int = 260, width: int = 210) -> np.ndarray:
    """A frame that makes the fake abort (``CRASH_COLOUR``) or hang (``HANG_COLOUR``): uint8 RGB [H, W, 3]."""
    return np.full((height, width, 3), colour, np.uint8)


def fake_points(frame: np.ndarray) -> np.ndarray:
    """float32 [543, 3] from one RGB frame: each found part's points spread around the frame's mean colour."""
    mean = frame.reshape(-1, 3).mean(axis=0) / 255.0
    points = np.zeros((NUM_POINTS, 3), np.float32)
    slices = part_slices(NUM_POINTS)
    for part in ("pose", "face", "right_hand"):
        if part == "right_hand" and mean[0] * 255 <= HAND_THRESHOLD:
            continue
        index = np.arange(slices[part].stop - slices[part].start, dtype=np.float32)
        points[slices[part]] = np.stack([mean[0] + index / 1000, mean[1] + index / 2000,
                                         np.full_like(index, mean[2] - 0.5)], axis=1)
    return points
