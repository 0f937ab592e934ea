"""The ``tasks`` backend: MediaPipe's HolisticLandmarker (Tasks API) on a model bundle built offline.

The only backend on Python 3.13+ (mediapipe 1.x has no ``mp.solutions``); also runs on mediapipe
0.10.21, which is how the tests compare it with the legacy backend. Records have the legacy layout
(pose 33, face 468, hands 21 + 21; confidence: pose visibility, 1 for other parts found, 0 where a
part is missing). The Tasks face graph reads 478 points; a bundle built from 0.10.21's models pads
the legacy 468-point face model with zeros, and those last 10 are dropped.

Tracking (``static_image_mode=False``) runs the VIDEO mode with a fresh landmarker per sample: the
Tasks API has no reset(), and one sample's landmarks must not depend on the sample read before it.
Creating one costs ~0.2 s, against ~0.06 s per frame. Static mode (IMAGE mode) is not stateless
either: the graph tracks from one call to the next, so it starts afresh before every frame, which
costs about twice a frame's work on mediapipe 0.10.21 (``restart()``) and ~3.5 times on 1.x (a new
landmarker: 0.29 s a frame against 0.08 s in tracking mode; see ``_fresh``).
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ...frames import check_frame
from ...record import FACE_POINTS, PARTS, LandmarkRecord, part_slices
from .bundle import read_bundle
from .runtime import count_build, release_freed_memory

if TYPE_CHECKING:
    from .settings import HolisticSettings

log = logging.getLogger(__name__)

# Non-maximum suppression of the pose and face detectors: what the legacy graphs use.
SUPPRESSION_THRESHOLD = 0.3
FRAME_MS = 33  # VIDEO-mode timestamps: 30 frames/s, as the legacy Holistic's own simulated clock


class TasksHolisticExtractor:
    """One HolisticLandmarker at a time, built on first use; not to be shared between threads."""

    def __init__(self, settings: "HolisticSettings") -> None:
        self.settings = settings
        # the bytes whose digest is checked are the bytes the graph runs (a setting problem, not a sample's)
        self.bundle, self._model = read_bundle(settings.model_bundle)
        self._landmarker: Any = None
        self._used = False  # whether the landmarker has seen a frame since it was built or restarted
        # mediapipe 1.x closes a landmarker left open in its __del__, which at interpreter exit runs
        # after its modules are torn down and prints a TypeError traceback: close it before that.
        atexit.register(_close_at_exit, weakref.ref(self), os.getpid())

    def _create(self) -> Any:
        # Only extracting processes get here (workers, the isolated helper), never a user's main process.
        from .logs import quiet_mediapipe  # noqa: PLC0415

        quiet_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision  # noqa: PLC0415 - heavy; extracting processes only

        s = self.settings
        mode = vision.RunningMode.IMAGE if s.static_image_mode else vision.RunningMode.VIDEO
        # Option names differ between mediapipe 0.10.x (*_landmarks_confidence) and 1.x
        # (*_presence_confidence), and so do the suppression defaults (0.5, 0.3): set all, by name.
        wanted = {
            "min_face_detection_confidence": s.min_detection_confidence,
            "min_pose_detection_confidence": s.min_detection_confidence,
            "min_face_suppression_threshold": SUPPRESSION_THRESHOLD,
            "min_pose_suppression_threshold": SUPPRESSION_THRESHOLD,
            "min_face_landmarks_confidence": s.min_tracking_confidence,
            "min_face_presence_confidence": s.min_tracking_confidence,
            "min_pose_landmarks_confidence": s.min_tracking_confidence,
            "min_pose_presence_confidence": s.min_tracking_confidence,
            "min_hand_landmarks_confidence": s.min_tracking_confidence,
        }
        fields = {f.name for f in dataclasses.fields(vision.HolisticLandmarkerOptions)}
        options = vision.HolisticLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=self._model), running_mode=mode,
            **{name: value for name, value in wanted.items() if name in fields})
        log.debug("building a HolisticLandmarker in pid %d with %s", os.getpid(), s)
        count_build()
        return vision.HolisticLandmarker.create_from_options(options)

    def _fresh(self) -> None:
        """A landmarker that remembers nothing: restarted (mediapipe 0.10.x, ~0.12 s) or built anew (~0.2 s)."""
        if self._landmarker is not None and not self._used:
            return
        runner = getattr(self._landmarker, "_runner", None)
        if runner is not None and hasattr(runner, "restart"):
            runner.restart()
        else:
            self.close()
            self._landmarker = self._create()
        self._used = False
        # as after the legacy reset(): without it a worker grew ~100-150 MB over a dozen videos, and a
        # static-mode one sat ~150 MB higher (benchmarks/bench_backends.py --rss-only)
        release_freed_memory()

    def extract(self, frames: Iterable[np.ndarray]) -> LandmarkRecord:
        """Landmarks of one video from its RGB uint8 frames [H, W, 3], in time order."""
        self._fresh()  # a fresh timeline: nothing tracked from the previous video (or frame)
        try:
            return self._extract_video(frames)
        except BaseException:
            self.close()
            raise

    def _extract_video(self, frames: Iterable[np.ndarray]) -> LandmarkRecord:
        import mediapipe as mp  # noqa: PLC0415 - loaded already by _create

        start = time.perf_counter()
        video = not self.settings.static_image_mode
        n = self.settings.num_points
        rows: List[np.ndarray] = []
        confs: List[np.ndarray] = []
        found: List[Tuple[bool, ...]] = []
        size: Optional[Tuple[int, int]] = None
        for index, frame in enumerate(frames):
            size = check_frame(frame, index, size)
            if not video:
                # IMAGE mode is not stateless: the graph still tracks from the previous call (measured:
                # pose off by 0.02 from a fresh landmarker's by the 2nd frame). Static means fresh.
                self._fresh()
            self._used = True
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            parts = _detect(self._landmarker, image, index * FRAME_MS if video else None)
            points, conf, part_found = _frame_arrays(parts, n)
            rows.append(points)
            confs.append(conf)
            found.append(part_found)
        if size is None:
            raise ValueError("no frames to extract from.")
        return LandmarkRecord(np.stack(rows), np.stack(confs), width=size[1], height=size[0],
                              seconds=time.perf_counter() - start, found=np.array(found, dtype=bool))

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
        self._used = False


def _close_at_exit(extractor: "weakref.ref[TasksHolisticExtractor]", pid: int) -> None:
    alive = extractor()
    if alive is not None and os.getpid() == pid:  # never a landmarker inherited across fork()
        alive.close()


_STREAMS = ("pose_landmarks", "face_landmarks", "left_hand_landmarks", "right_hand_landmarks")  # PARTS' order


def _detect(landmarker: Any, image: Any, timestamp_ms: Optional[int]) -> Tuple[Sequence[Any], ...]:
    """The landmarks of each part (an empty list where a part is not found), in PARTS' order.

    mediapipe 1.x: its public detect calls. mediapipe 0.10.21's Python wrapper cannot be used as it
    is: it returns nothing at all when no face is found, and aborts the process (``Check failed:
    holder_ != nullptr The packet is empty``) when a face is found but a hand is not. Its output
    packets are read here instead, each checked for emptiness.
    """
    if not hasattr(landmarker, "_process_video_data"):  # 1.x: a C API, complete results
        result = (landmarker.detect(image) if timestamp_ms is None
                  else landmarker.detect_for_video(image, timestamp_ms))
        return tuple(getattr(result, stream) for stream in _STREAMS)
    from mediapipe.framework.formats import landmark_pb2  # noqa: PLC0415 - 0.10.x only
    from mediapipe.python import packet_creator, packet_getter  # noqa: PLC0415

    packet = packet_creator.create_image(image)
    if timestamp_ms is None:
        packets = landmarker._process_image_data({"image_in": packet})
    else:
        packets = landmarker._process_video_data({"image_in": packet.at(timestamp_ms * 1000)})
    parts: List[Sequence[Any]] = []
    for stream in _STREAMS:
        found = packets.get(stream)
        if found is None or found.is_empty():
            parts.append([])
            continue
        landmarks = landmark_pb2.NormalizedLandmarkList()
        landmarks.MergeFrom(packet_getter.get_proto(found))
        parts.append(list(landmarks.landmark))
    return tuple(parts)


def _frame_arrays(parts: Tuple[Sequence[Any], ...], n: int) -> Tuple[np.ndarray, np.ndarray, Tuple[bool, ...]]:
    points = np.zeros((n, 3), np.float32)
    conf = np.zeros((n,), np.float32)
    slices = part_slices(n)
    for part, landmarks in zip(PARTS, parts):
        if not landmarks:
            continue  # not found: zeros, confidence 0
        s = slices[part]
        want = s.stop - s.start
        if part == "face" and len(landmarks) < want:
            raise ValueError(f"the bundle's face model gave {len(landmarks)} points; refine_face_landmarks "
                             f"needs {want} (an official holistic_landmarker.task).")
        if part == "face" and want == FACE_POINTS:
            landmarks = landmarks[:FACE_POINTS]  # 468-477: irises of a refined model, or the bundle's padding
        points[s] = [(p.x, p.y, p.z) for p in landmarks]
        if part == "pose":
            conf[s] = [p.visibility if p.visibility is not None else 0.0 for p in landmarks]
        else:
            conf[s] = 1.0
    return points, conf, tuple(bool(landmarks) for landmarks in parts)
