"""MediaPipe Holistic's settings (``HolisticSettings``): what a cache's records depend on, and which backend runs.

Two backends run Holistic. ``legacy``: ``mp.solutions.holistic`` of mediapipe 0.10.21, whose wheel
holds the models (Python 3.9-3.12). ``tasks``: the Tasks API's HolisticLandmarker on a bundle built
from those same models (``tasks``, ``bundle``), the one backend of mediapipe 1.x (Python 3.13+).
The default is ``legacy`` where mediapipe is older than 0.10.30, ``tasks`` elsewhere.

Layout (pose-format's order): pose 33, face 468 (478 with refined landmarks), left hand 21,
right hand 21. A part not found in a frame is zeros with confidence 0.

This module imports no mediapipe: settings are values, built anywhere; the graphs are built by
``build()`` in an extracting process only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Union

from ...record import FACE_POINTS, FACE_POINTS_REFINED, NUM_POINTS, SCHEMA_VERSION
from .runtime import COMPLEXITY_MODELS, LEGACY_MEDIAPIPE, mediapipe_version, pose_model_path, version_tuple

if TYPE_CHECKING:
    from .legacy import HolisticExtractor
    from .tasks import TasksHolisticExtractor

BACKENDS = ("legacy", "tasks")


def default_backend() -> str:
    """``legacy`` where the installed mediapipe still has ``mp.solutions`` (< 0.10.30), else ``tasks``."""
    version = mediapipe_version()
    if version == "not installed":
        return "legacy"  # check_ready() says to install it
    return "legacy" if version_tuple(version) < (0, 10, 30) else "tasks"


@dataclass(frozen=True)
class HolisticSettings:
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
        if self.model_complexity not in COMPLEXITY_MODELS:
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
            from .bundle import load_bundle  # noqa: PLC0415 - only the tasks backend needs it

            identity.update(backend="tasks", model_bundle_sha256=load_bundle(self.model_bundle).sha256)
        return identity

    def versions(self) -> Dict[str, str]:
        return {"mediapipe": mediapipe_version()}

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_ready(self) -> None:
        self.check_model_installed()

    def build(self) -> Union["HolisticExtractor", "TasksHolisticExtractor"]:
        if self.backend == "tasks":
            from .tasks import TasksHolisticExtractor  # noqa: PLC0415 - heavy; extracting processes only

            return TasksHolisticExtractor(self)
        from .legacy import HolisticExtractor  # noqa: PLC0415 - heavy; extracting processes only

        return HolisticExtractor(self)

    def check_model_installed(self) -> None:
        """Refuse what cannot run here: a backend the installed mediapipe lacks, a missing model or bundle."""
        if self.backend == "tasks":
            from .bundle import load_bundle  # noqa: PLC0415 - only the tasks backend needs it

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
        path = pose_model_path(self.model_complexity)
        if path is not None and not path.is_file():
            raise ValueError(
                f"model_complexity={self.model_complexity} needs {path.name}, which mediapipe "
                f"{mediapipe_version()} does not bundle and would download at construction; it is not "
                f"installed at {path}. Use model_complexity=1 (bundled), or place the model file there.")

