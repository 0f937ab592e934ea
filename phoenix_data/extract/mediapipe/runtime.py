"""What the MediaPipe backends share at run time: the installed version, model files, memory, build counts.

A leaf of the ``mediapipe`` package (it imports no other module of it), so that ``legacy`` and
``tasks`` both use it without importing each other.
"""
from __future__ import annotations

import ctypes
import os
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional, Tuple

from .. import note_fork_unsafe_build

# The last mediapipe with mp.solutions.holistic and its models in the wheel; the tasks backend's
# bundle is built from its models.
LEGACY_MEDIAPIPE = "0.10.21"
COMPLEXITY_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite",
                     2: "pose_landmark_heavy.tflite"}


def mediapipe_version() -> str:
    try:
        return metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return "not installed"


def version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def pose_model_path(model_complexity: int) -> Optional[Path]:
    """Where mediapipe keeps the pose model of a complexity, or None when mediapipe is missing."""
    try:
        dist = metadata.distribution("mediapipe")
    except metadata.PackageNotFoundError:
        return None
    return Path(str(dist.locate_file("mediapipe/modules/pose_landmark"))) / COMPLEXITY_MODELS[model_complexity]


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
    note_fork_unsafe_build()


def holistic_builds(pid: Optional[int] = None) -> int:
    """How many Holistic graphs this process (or ``pid``, as seen from here) has built."""
    return _BUILDS.get(os.getpid() if pid is None else pid, 0)
