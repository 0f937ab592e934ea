"""Landmarks that come from pose-format ``.pose`` files instead of an estimator, behind the extractor seam.

``PoseFileSettings(directory)`` is an ``ExtractorSpec``: the warm-up (``phoenix-warm-cache --from-poses DIR``)
and the Dataset fill a cache from it with everything they do for an estimator (workers, resume, Ctrl+C,
failure list, progress, reports), running no MediaPipe. A sample's file is ``DIR/<release>/<split>/<id>.pose``
(what ``--export-poses`` writes) or ``DIR/<id>.pose`` (a flat folder). Where the sample's frames are on disk,
their count must equal the file's frames: a mismatch, a missing or unreadable file, or another layout is
that sample's failure, with the reason.

Its identity says where the landmarks came from ("pose-format files" and a digest of the layout read), not
the folder: a cache filled from files and one extracted by MediaPipe refuse each other with the usual
settings error.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional

from ..frames import FramesError, list_frames
from ..record import FACE_POINTS, FACE_POINTS_REFINED, NUM_POINTS, SCHEMA_VERSION, LandmarkRecord
from .poses import HEADER_FILE, INSTALL_HINT, read_pose


@dataclass(frozen=True)
class PoseFileSettings:
    """Read each sample's landmarks from ``directory``; ``face_points`` 478 for files with the refined face."""

    directory: str
    face_points: int = FACE_POINTS

    def __post_init__(self) -> None:
        if self.face_points not in (FACE_POINTS, FACE_POINTS_REFINED):
            raise ValueError(f"face_points={self.face_points}; expected {FACE_POINTS} or {FACE_POINTS_REFINED}.")

    @property
    def num_points(self) -> int:
        return NUM_POINTS - FACE_POINTS + self.face_points

    def as_dict(self) -> dict:
        return {"source": "pose-format files", "face_points": self.face_points,
                "layout_sha256": hashlib.sha256(HEADER_FILE.read_bytes()).hexdigest()[:16]}

    def identity(self) -> dict:
        return {"settings": self.as_dict(), "extractor": "phoenix_data.formats.imported", "schema": SCHEMA_VERSION}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def versions(self) -> Dict[str, str]:
        try:
            return {"pose-format": metadata.version("pose-format")}
        except metadata.PackageNotFoundError:
            return {}

    def check_ready(self) -> None:
        if not self.versions():
            raise ValueError(f"reading .pose files needs pose-format, which is not installed: {INSTALL_HINT}.")
        if not Path(self.directory).is_dir():
            raise ValueError(f"--from-poses {self.directory}: no such folder; expected the folder of .pose files "
                             "(DIR/<release>/<split>/<id>.pose, or DIR/<id>.pose).")

    def build(self) -> "PoseFileReader":
        return PoseFileReader(self)


class PoseFileReader:
    """The 'extractor' of ``PoseFileSettings``: reads a sample's .pose file (``extract_sample``)."""

    def __init__(self, settings: PoseFileSettings) -> None:
        self.settings = settings

    def candidates(self, key: str) -> List[Path]:
        release, split, sample_id = key.split("/", 2)
        folder = Path(self.settings.directory)
        return [folder / release / split / f"{sample_id}.pose", folder / f"{sample_id}.pose"]

    def extract_sample(self, frames_dir: Path, key: str) -> LandmarkRecord:
        """The record of sample ``key`` from its file; FramesError (the sample's failure) when it has none."""
        paths = self.candidates(key)
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            raise FramesError(f"sample {key!r}: no .pose file (looked for {paths[0]} and {paths[1]}).")
        record = read_pose(path, self.settings.num_points)  # PoseFormatError: a ValueError, the sample's failure
        on_disk = _frames_on_disk(frames_dir)
        if on_disk is not None and on_disk != record.num_frames:
            raise FramesError(f"sample {key!r}: {path} holds {record.num_frames} frames, its frame folder "
                              f"{frames_dir} {on_disk}.")
        return record  # its pid: this process's

    def extract(self, frames):  # noqa: ANN001, ANN201 - the seam's other entry: not used for files
        raise TypeError("PoseFileReader reads files by sample key (extract_sample), not frames.")

    def close(self) -> None:
        """Nothing to free."""


def _frames_on_disk(frames_dir: Path) -> Optional[int]:
    try:
        return len(list_frames(frames_dir))
    except FramesError:  # no frames on disk (a copy of the annotations only): nothing to check against
        return None
