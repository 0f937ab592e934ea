"""The extractor seam: what any landmark estimator provides, and running this process's one over a sample.

An estimator is two small classes: its spec (``ExtractorSpec``: a frozen, picklable value saying
what a cache's records depend on and how to build the estimator) and the estimator itself
(``Extractor``: frames -> ``LandmarkRecord``). MediaPipe Holistic (``extract.mediapipe``, the only
package that imports mediapipe) is the default; ``extract.fake`` is a fast stand-in for tests;
``extract.helper`` runs extraction in an isolated process. Each process that extracts builds its
own estimator, once (``get_extractor``). A new estimator is a new module or package here
(as ``fake.py`` and ``mediapipe/`` are) with two such classes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Protocol, Tuple, Union

import numpy as np

from ..frames import FramesError, list_frames, read_frames_rgb
from ..record import LandmarkRecord


class Extractor(Protocol):
    """Turns one sample's RGB frames into a LandmarkRecord. One per process, never shared between threads."""

    def extract(self, frames: Iterable[np.ndarray]) -> "LandmarkRecord":
        """Landmarks of one video from its RGB uint8 frames [H, W, 3], in time order."""

    def close(self) -> None:
        """Free what the extractor holds (its graph)."""


class ExtractorSpec(Protocol):
    """The extractor seam: what an estimator runs with, what its records depend on, how to build it.

    A frozen, picklable value: the Dataset, its workers and the isolated helper process each build
    their own extractor from it (``build()``), and its fingerprint names what a cache holds.
    MediaPipe Holistic (``extract.mediapipe.HolisticSettings``) is the default; ``extract.fake`` has a
    fast fake. Another estimator is a new module or package under ``extract/`` with a class like these two.
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

    def versions(self) -> Dict[str, str]:
        """{package: version} of what runs the estimator, for reports (cheap: builds nothing)."""

    def check_ready(self) -> None:
        """Raise ValueError, saying what to do, when the extractor cannot be built here."""

    def build(self) -> Extractor:
        """A new extractor (heavy: only in a process that extracts)."""


# pid -> graphs built in that process by an estimator that breaks children forked after it (MediaPipe:
# heap corruption in the child, even after close()). Workers fork from the main process, which checks this.
_FORK_UNSAFE_BUILDS: Dict[int, int] = {}


def note_fork_unsafe_build() -> None:
    """Called by an estimator when it builds a graph that a forked child must not inherit."""
    _FORK_UNSAFE_BUILDS[os.getpid()] = _FORK_UNSAFE_BUILDS.get(os.getpid(), 0) + 1


def fork_unsafe_builds(pid: Optional[int] = None) -> int:
    """How many such graphs this process (or ``pid``, as seen from here) has built."""
    return _FORK_UNSAFE_BUILDS.get(os.getpid() if pid is None else pid, 0)


# (pid, settings) -> extractor: one per process, never inherited across fork.
_EXTRACTORS: Dict[Tuple[int, ExtractorSpec], Extractor] = {}


def extractor_versions(settings: ExtractorSpec) -> Dict[str, str]:
    """{package: version} of what runs the estimator (reports); {} for a spec without ``versions()``."""
    versions = getattr(settings, "versions", None)
    return dict(versions()) if versions is not None else {}


def get_extractor(settings: ExtractorSpec) -> Extractor:
    """This process's extractor for ``settings``; one inherited from a parent is never used."""
    key = (os.getpid(), settings)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = settings.build()
    return _EXTRACTORS[key]


def extract_frames_dir(frames_dir: Union[str, Path], settings: ExtractorSpec, key: str = "?") -> LandmarkRecord:
    """Read one sample's frames and run this process's Holistic over them.

    Only for a process that may run MediaPipe: a DataLoader worker, a warm-up worker, the isolated
    extraction process (``extract.helper``). Raises FramesError for frames that cannot be used.
    """
    extractor = get_extractor(settings)  # outside the try: a settings error is the run's, not this sample's
    by_key = getattr(extractor, "extract_sample", None)  # landmarks from files (formats.imported), not frames
    if by_key is not None:
        try:
            return by_key(Path(frames_dir), key)
        except FramesError:
            raise
        except ValueError as exc:  # a file of another layout, or unreadable: this sample's failure
            raise FramesError(f"sample {key!r}: {exc}") from exc
    paths = list_frames(frames_dir)
    try:
        return extractor.extract(read_frames_rgb(paths))
    except ValueError as exc:  # the estimator's input checks (check_frame): this sample's frames
        raise FramesError(f"sample {key!r}: {exc}") from exc


def __getattr__(name: str):
    if name == "ExtractorSettings":  # the protocol's old name, one letter from MediaPipe's settings class
        import warnings  # noqa: PLC0415

        warnings.warn("phoenix_data.extract.ExtractorSettings is now ExtractorSpec; the old name goes in the "
                      "next release.", DeprecationWarning, stacklevel=2)
        return ExtractorSpec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
