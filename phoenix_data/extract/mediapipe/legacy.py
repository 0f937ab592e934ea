"""The ``legacy`` backend: ``mp.solutions.holistic`` of mediapipe 0.10.21 behind the extractor seam.

A Holistic is built lazily, at most one per process and settings, on the first extraction in
that process: one built in a parent before DataLoader workers fork breaks the children.
"""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Iterable, Optional, Tuple

import numpy as np

from ...frames import check_frame
from ...record import PARTS, LandmarkRecord, part_slices
from .runtime import count_build, release_freed_memory

if TYPE_CHECKING:  # for the annotations only: importing mediapipe is heavy (and it has no type hints)
    from mediapipe.python.solutions.holistic import Holistic

    from .settings import HolisticSettings

log = logging.getLogger(__name__)


def _fill(out: np.ndarray, conf: np.ndarray, landmark_list, visibility: bool) -> None:
    if landmark_list is None:
        return  # not found: zeros, confidence 0
    points = landmark_list.landmark
    out[:] = [(p.x, p.y, p.z) for p in points]
    conf[:] = [p.visibility for p in points] if visibility else 1.0


class HolisticExtractor:
    """One MediaPipe Holistic, built on first use; not to be shared between threads."""

    def __init__(self, settings: HolisticSettings) -> None:
        settings.check_model_installed()  # a setting problem, not any one sample's
        self.settings = settings
        self._holistic: Optional[Holistic] = None

    def _build(self) -> Holistic:
        # Only extracting processes get here (workers, the isolated helper), never a user's main
        # process: MediaPipe's own log lines are filtered out of this process's stderr from now on.
        from .logs import quiet_mediapipe  # noqa: PLC0415

        quiet_mediapipe()
        import mediapipe as mp  # noqa: PLC0415 - heavy, and only extracting processes need it

        s = self.settings
        log.debug("building MediaPipe Holistic in pid %d with %s", os.getpid(), s)
        count_build()
        return mp.solutions.holistic.Holistic(
            static_image_mode=s.static_image_mode, model_complexity=s.model_complexity,
            smooth_landmarks=s.smooth_landmarks, refine_face_landmarks=s.refine_face_landmarks,
            min_detection_confidence=s.min_detection_confidence,
            min_tracking_confidence=s.min_tracking_confidence)

    def extract(self, frames: Iterable[np.ndarray]) -> LandmarkRecord:
        """Landmarks of one video from its RGB uint8 frames [H, W, 3], in time order."""
        holistic = self._holistic if self._holistic is not None else self._build()
        self._holistic = holistic
        holistic.reset()  # tracking state must not carry over from the previous video
        release_freed_memory()
        try:
            return self._extract_video(holistic, frames)
        except BaseException:
            self.close()  # a graph that raised may be left broken: the next video builds a new one
            raise

    def _extract_video(self, holistic: Holistic, frames: Iterable[np.ndarray]) -> LandmarkRecord:
        start = time.perf_counter()
        rows, confs, found, size = [], [], [], None
        for index, frame in enumerate(frames):
            size = check_frame(frame, index, size)
            points, conf, part_found = self._extract_frame(holistic, frame)
            rows.append(points)
            confs.append(conf)
            found.append(part_found)
        if size is None:
            raise ValueError("no frames to extract from.")
        n = self.settings.num_points
        landmarks = np.stack(rows) if rows else np.zeros((0, n, 3), np.float32)
        return LandmarkRecord(landmarks, np.stack(confs), width=size[1], height=size[0],
                              seconds=time.perf_counter() - start, found=np.array(found, dtype=bool))

    def _extract_frame(self, holistic: Holistic, frame: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Tuple[bool, ...]]:
        results = holistic.process(frame)
        n = self.settings.num_points
        points = np.zeros((n, 3), np.float32)
        conf = np.zeros((n,), np.float32)
        slices = part_slices(n)
        parts = (results.pose_landmarks, results.face_landmarks,
                 results.left_hand_landmarks, results.right_hand_landmarks)
        for part, found in zip(PARTS, parts):
            s = slices[part]
            _fill(points[s], conf[s], found, visibility=part == "pose")
        return points, conf, tuple(found is not None for found in parts)

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None


