"""MediaPipe Holistic behind the extractor seam: its settings (the default) and the legacy extractor.

Two backends run it. ``legacy``: ``mp.solutions.holistic`` of mediapipe 0.10.21, whose wheel holds
the models (Python 3.9-3.12). ``tasks``: the Tasks API's HolisticLandmarker on a bundle built from
those same models (``holistic_tasks``, ``model_bundle``), the one backend of mediapipe 1.x
(Python 3.13+). The default is ``legacy`` where mediapipe is older than 0.10.30, ``tasks`` elsewhere.

Layout (pose-format's order): pose 33, face 468 (478 with refined landmarks), left hand 21,
right hand 21. A part not found in a frame is zeros with confidence 0.

A Holistic is built lazily, at most one per process and settings, on the first extraction in
that process: one built in a parent before DataLoader workers fork breaks the children.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Tuple, Union

import numpy as np

from .extract import check_frame
from .record import FACE_POINTS, FACE_POINTS_REFINED, NUM_POINTS, PARTS, SCHEMA_VERSION, LandmarkRecord, part_slices

if TYPE_CHECKING:  # for the annotations only: importing mediapipe is heavy (and it has no type hints)
    from mediapipe.python.solutions.holistic import Holistic

    from .holistic_tasks import TasksHolisticExtractor

log = logging.getLogger(__name__)

LEGACY_MEDIAPIPE = "0.10.21"
_COMPLEXITY_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite",
                      2: "pose_landmark_heavy.tflite"}


def mediapipe_version() -> str:
    try:
        return metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return "not installed"


BACKENDS = ("legacy", "tasks")


def _version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def default_backend() -> str:
    """``legacy`` where the installed mediapipe still has ``mp.solutions`` (< 0.10.30), else ``tasks``."""
    version = mediapipe_version()
    if version == "not installed":
        return "legacy"  # check_ready() says to install it
    return "legacy" if _version_tuple(version) < (0, 10, 30) else "tasks"


def _pose_model_path(model_complexity: int) -> Optional[Path]:
    """Where mediapipe keeps the pose model of a complexity, or None when mediapipe is missing."""
    try:
        dist = metadata.distribution("mediapipe")
    except metadata.PackageNotFoundError:
        return None
    return Path(str(dist.locate_file("mediapipe/modules/pose_landmark"))) / _COMPLEXITY_MODELS[model_complexity]


@dataclass(frozen=True)
class ExtractionSettings:
    """What MediaPipe Holistic is run with; its fingerprint names what a cache holds."""

    model_complexity: int = 1
    refine_face_landmarks: bool = False
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    # False: track within a video, with reset() between videos.
    static_image_mode: bool = False
    smooth_landmarks: bool = True
    # "legacy" or "tasks"; None: the default for the installed mediapipe (default_backend()).
    backend: Optional[str] = None
    # tasks backend: a .task bundle; None: the models folder's, built on first need (model_bundle).
    model_bundle: Optional[str] = None

    def __post_init__(self) -> None:
        if self.backend is None:
            object.__setattr__(self, "backend", default_backend())
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}; expected one of {', '.join(map(repr, BACKENDS))}.")
        if self.model_bundle is not None:
            if self.backend != "tasks":
                raise ValueError(f"model_bundle={self.model_bundle!r} is for backend='tasks' (this is "
                                 f"backend={self.backend!r}).")
            object.__setattr__(self, "model_bundle", str(Path(self.model_bundle).expanduser()))
        if self.backend == "tasks" and self.model_complexity != 1:
            raise ValueError(f"model_complexity={self.model_complexity!r} with backend='tasks': its bundle holds "
                             "the full pose model only; use model_complexity=1.")
        if self.backend == "tasks" and not self.smooth_landmarks:
            raise ValueError("smooth_landmarks=False with backend='tasks': the HolisticLandmarker has no such "
                             "switch; leave it True, or use backend='legacy' (mediapipe 0.10.21).")
        if self.model_complexity not in _COMPLEXITY_MODELS:
            raise ValueError(f"model_complexity={self.model_complexity!r}; expected one of 0, 1, 2 "
                             "(1 is the model bundled with mediapipe 0.10.21).")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r}; expected a value in [0, 1].")

    @property
    def num_points(self) -> int:
        return NUM_POINTS - FACE_POINTS + (FACE_POINTS_REFINED if self.refine_face_landmarks else FACE_POINTS)

    def as_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """Everything a cached record depends on.

        Legacy: the same dict as before backends existed, so caches made then still open. Tasks: the
        backend and the bundle's SHA-256 too (building the default bundle if it is missing).
        """
        settings = {k: v for k, v in self.as_dict().items() if k not in ("backend", "model_bundle")}
        identity = {"settings": settings, "mediapipe": mediapipe_version(), "schema": SCHEMA_VERSION}
        if self.backend == "tasks":
            from .model_bundle import load_bundle  # noqa: PLC0415 - only the tasks backend needs it

            identity.update(backend="tasks", model_bundle_sha256=load_bundle(self.model_bundle).sha256)
        return identity

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_ready(self) -> None:
        self.check_model_installed()

    def build(self) -> Union["HolisticExtractor", "TasksHolisticExtractor"]:
        if self.backend == "tasks":
            from .holistic_tasks import TasksHolisticExtractor  # noqa: PLC0415 - holistic_tasks imports this module

            return TasksHolisticExtractor(self)
        return HolisticExtractor(self)

    def check_model_installed(self) -> None:
        """Refuse what cannot run here: a backend the installed mediapipe lacks, a missing model or bundle."""
        if self.backend == "tasks":
            from .model_bundle import load_bundle  # noqa: PLC0415 - only the tasks backend needs it

            bundle = load_bundle(self.model_bundle)
            if self.refine_face_landmarks and bundle.face_points < FACE_POINTS_REFINED:
                raise ValueError(
                    f"refine_face_landmarks=True with backend='tasks' needs a bundle with the refined face model "
                    f"(478 points: an official holistic_landmarker.task, `phoenix-models build --from FILE.task`); "
                    f"{bundle.path} is built from mediapipe {LEGACY_MEDIAPIPE}'s 468-point face model.")
            return
        if default_backend() == "tasks":
            raise ValueError(f"backend='legacy' needs mediapipe {LEGACY_MEDIAPIPE} (mp.solutions.holistic); this is "
                             f"mediapipe {mediapipe_version()}, which has only the Tasks API: use backend='tasks'.")
        path = _pose_model_path(self.model_complexity)
        if path is not None and not path.is_file():
            raise ValueError(
                f"model_complexity={self.model_complexity} needs {path.name}, which mediapipe "
                f"{mediapipe_version()} does not bundle and would download at construction; it is not "
                f"installed at {path}. Use model_complexity=1 (bundled), or place the model file there.")


def _fill(out: np.ndarray, conf: np.ndarray, landmark_list, visibility: bool) -> None:
    if landmark_list is None:
        return  # not found: zeros, confidence 0
    points = landmark_list.landmark
    out[:] = [(p.x, p.y, p.z) for p in points]
    conf[:] = [p.visibility for p in points] if visibility else 1.0


class HolisticExtractor:
    """One MediaPipe Holistic, built on first use; not to be shared between threads."""

    def __init__(self, settings: ExtractionSettings) -> None:
        settings.check_model_installed()  # a setting problem, not any one sample's
        self.settings = settings
        self._holistic: Optional[Holistic] = None

    def _build(self) -> Holistic:
        # Only extracting processes get here (workers, the isolated helper), never a user's main
        # process: MediaPipe's own log lines are filtered out of this process's stderr from now on.
        from .mediapipe_logs import quiet_mediapipe  # noqa: PLC0415

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


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give memory freed by the last video's graph back to the system.

    glibc keeps what MediaPipe frees on reset(); without this a worker's RSS grew ~10 MB per video
    (measured +165 MB over 16 videos, still rising; flat with it, benchmarks/bench_memory.py).
    """
    if _TRIM is not None:
        _TRIM(0)


# pid -> Holistic instances built in that process (tests check the main process builds none).
_BUILDS: Dict[int, int] = {}


def count_build() -> None:
    _BUILDS[os.getpid()] = _BUILDS.get(os.getpid(), 0) + 1


def holistic_builds(pid: Optional[int] = None) -> int:
    """How many Holistic graphs this process (or ``pid``, as seen from here) has built."""
    return _BUILDS.get(os.getpid() if pid is None else pid, 0)
