"""The extractor seam: what any landmark estimator provides, and running this process's one over a sample.

An estimator is two small classes: its settings (a frozen, picklable value: what a cache's records
depend on, and how to build the estimator) and the estimator itself (frames -> ``LandmarkRecord``).
MediaPipe Holistic (``phoenix_data.holistic``) is the default; ``phoenix_data.testing`` holds a fast
fake. Each process that extracts builds its own estimator, once (``get_extractor``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Protocol, Tuple, Union

import numpy as np

from .frames import FramesError, list_frames, read_frames_rgb
from .record import LandmarkRecord


class Extractor(Protocol):
    """Turns one sample's RGB frames into a LandmarkRecord. One per process, never shared between threads."""

    def extract(self, frames: Iterable[np.ndarray]) -> "LandmarkRecord":
        """Landmarks of one video from its RGB uint8 frames [H, W, 3], in time order."""

    def close(self) -> None:
        """Free what the extractor holds (its graph)."""


class ExtractorSettings(Protocol):
    """The extractor seam: what an estimator runs with, what its records depend on, how to build it.

    A frozen, picklable value: the Dataset, its workers and the isolated helper process each build
    their own extractor from it (``build()``), and its fingerprint names what a cache holds.
    MediaPipe Holistic (``phoenix_data.holistic.ExtractionSettings``) is the default; ``phoenix_data.testing`` has a
    fast fake. Another estimator is a new module with a class like these two.
    """

    @property
    def num_points(self) -> int:
        """Landmarks per frame of its records."""

    def as_dict(self) -> dict:
        """The settings, for reports and for listing what differs from a cache's."""

    def identity(self) -> dict:
        """Everything a cached record depends on (settings, versions, record schema)."""

    def fingerprint(self) -> str:
        """A short digest of ``identity()``."""

    def check_ready(self) -> None:
        """Raise ValueError, saying what to do, when the extractor cannot be built here."""

    def build(self) -> Extractor:
        """A new extractor (heavy: only in a process that extracts)."""


def check_frame(frame: np.ndarray, index: int, size: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame {index}: shape {frame.shape} {frame.dtype}; expected uint8 RGB [H, W, 3].")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}; the video's first frame is "
                         f"{size[1]}x{size[0]}.")
    return frame.shape[0], frame.shape[1]



# (pid, settings) -> extractor: one per process, never inherited across fork.
_EXTRACTORS: Dict[Tuple[int, ExtractorSettings], Extractor] = {}


def get_extractor(settings: ExtractorSettings) -> Extractor:
    """This process's extractor for ``settings``; one inherited from a parent is never used."""
    key = (os.getpid(), settings)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = settings.build()
    return _EXTRACTORS[key]


def extract_frames_dir(frames_dir: Union[str, Path], settings: ExtractorSettings, key: str = "?") -> LandmarkRecord:
    """Read one sample's frames and run this process's Holistic over them.

    Only for a process that may run MediaPipe: a DataLoader worker, a warm-up worker, the isolated
    extraction process (``phoenix_data.isolated``). Raises FramesError for frames that cannot be used.
    """
    paths = list_frames(frames_dir)
    try:
        return get_extractor(settings).extract(read_frames_rgb(paths))
    except FramesError:
        raise
    except ValueError as exc:
        raise FramesError(f"sample {key!r}: {exc}") from exc
