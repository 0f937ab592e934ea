"""pose-format's ``.pose`` files: landmark records written as pose-format writes MediaPipe Holistic, and read back.

``to_pose(record)`` gives a ``pose_format.Pose`` with the four holistic components exactly as pose-format's
``holistic_components()`` defines them (names, point names, limbs, colours, format "XYZC"), header dimensions
the frames' width and height, x and y in pixels, z as MediaPipe gives it, confidence as pose-format's
``load_holistic`` writes it (pose visibility; 1 for a found face or hand; 0 with zero coordinates where a
part is missing), fps 25 (PHOENIX). ``from_pose(pose)`` is the reverse; it accepts the 4-component (543
points) and 5-component (576: the world landmarks are dropped) holistic layouts, with the 468- or the
refined 478-point face, and refuses any other layout naming what it found and what it wants.

The component definitions are read from ``holistic_header.json`` beside this module: generated from
pose-format 0.15.0's ``holistic_components()`` with mediapipe 0.10.21 (the limbs are MediaPipe's
connection lists), so that writing needs neither mediapipe nor its ``solutions`` (absent from 1.x).
pose-format itself is an optional dependency: ``pip install -e '.[pose]'``.
"""
from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ..record import FACE_POINTS, FACE_POINTS_REFINED, NUM_POINTS, PARTS, LandmarkRecord, part_slices

FPS = 25.0  # PHOENIX's frame rate
HEADER_FILE = Path(__file__).resolve().parent / "holistic_header.json"
COMPONENTS = ("POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS")
WORLD = "POSE_WORLD_LANDMARKS"
INSTALL_HINT = "pip install -e '.[pose]' (pose-format)"


class PoseFormatError(ValueError):
    """A .pose file that is not a MediaPipe Holistic pose of the layout asked for."""


def import_pose_format() -> Any:
    try:
        import pose_format  # noqa: PLC0415 - optional dependency, only where .pose files are used
    except ImportError as exc:
        raise ImportError(f".pose files need pose-format, which is not installed ({exc}): {INSTALL_HINT}.") from None
    return pose_format


@functools.lru_cache(maxsize=None)
def _definitions() -> Dict[str, Any]:
    return json.loads(HEADER_FILE.read_text())


def holistic_header(width: int, height: int, face_points: int = FACE_POINTS) -> Any:
    """pose-format's holistic header (its first four components) for frames of ``width`` x ``height``."""
    import_pose_format()
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions  # noqa: PLC0415

    if face_points not in (FACE_POINTS, FACE_POINTS_REFINED):
        raise ValueError(f"face_points={face_points}; expected {FACE_POINTS} or {FACE_POINTS_REFINED} (refined).")
    definitions = _definitions()
    components = []
    for spec in definitions["components"]:
        points, limbs = list(spec["points"]), [tuple(limb) for limb in spec["limbs"]]
        if spec["name"] == "FACE_LANDMARKS" and face_points == FACE_POINTS_REFINED:
            points = [str(i) for i in range(FACE_POINTS_REFINED)]
            limbs += [tuple(limb) for limb in definitions["face_irises"]]
        components.append(PoseHeaderComponent(name=spec["name"], points=points, limbs=limbs,
                                              colors=[tuple(c) for c in spec["colors"]],
                                              point_format=spec["format"]))
    return PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                      components=components)


def to_pose(record: LandmarkRecord, fps: float = FPS) -> Any:
    """A ``pose_format.Pose`` of one record (one person)."""
    import_pose_format()
    from pose_format import Pose  # noqa: PLC0415
    from pose_format.numpy.pose_body import NumPyPoseBody  # noqa: PLC0415

    points = record.landmarks.shape[1]
    header = holistic_header(record.width, record.height, points - (NUM_POINTS - FACE_POINTS))
    data = record.landmarks.astype(np.float32) * np.array([record.width, record.height, 1], np.float32)
    confidence = record.confidence.astype(np.float32)
    # a plain array, as load_holistic passes it: pose-format masks the points of confidence 0 itself
    return Pose(header, NumPyPoseBody(fps=fps, data=data[:, None], confidence=confidence[:, None]))


def layout(pose: Any) -> List[Tuple[str, int]]:
    """(component name, points) of a pose's header, in order."""
    return [(c.name, len(c.points)) for c in pose.header.components]


def from_pose(pose: Any, num_points: int = NUM_POINTS) -> LandmarkRecord:
    """The landmark record of a holistic ``pose`` (its first person); raises PoseFormatError for another layout.

    ``num_points``: what the cache's settings hold (543, or 553 with the refined face).
    """
    face = num_points - (NUM_POINTS - FACE_POINTS)
    wanted = [("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", face), ("LEFT_HAND_LANDMARKS", 21),
              ("RIGHT_HAND_LANDMARKS", 21)]
    found = layout(pose)
    if found[:4] != wanted or found[4:] not in ([], [(WORLD, 33)]):
        raise PoseFormatError(f"a .pose of components {_describe(found)}; expected MediaPipe Holistic's "
                              f"{_describe(wanted)} (optionally then {WORLD} 33).")
    body = pose.body
    data = np.ma.getdata(body.data)
    if data.ndim != 4 or data.shape[1] < 1 or data.shape[3] < 3:
        raise PoseFormatError(f"a .pose body of shape {tuple(data.shape)}; expected [frames, people, points, 3+].")
    width, height = int(pose.header.dimensions.width), int(pose.header.dimensions.height)
    if width <= 0 or height <= 0:
        raise PoseFormatError(f"a .pose header of {width}x{height} pixels; expected the frames' size.")
    confidence = np.asarray(body.confidence)[:, 0, :num_points].astype(np.float32)
    landmarks = np.array(data[:, 0, :num_points, :3], dtype=np.float32) / np.array([width, height, 1], np.float32)
    slices = part_slices(num_points)
    # found: the pose where any of its points has a confidence (pose visibility), a face or hand by its presence
    presence = np.stack([confidence[:, slices[part]].max(axis=1) > 0 if part == "pose"
                         else confidence[:, slices[part].start] > 0 for part in PARTS], axis=1)
    for index, part in enumerate(PARTS):  # a part not found is zeros with confidence 0, whatever the file holds
        landmarks[~presence[:, index], slices[part]] = 0
        confidence[~presence[:, index], slices[part]] = 0
    return LandmarkRecord(landmarks, confidence, width=width, height=height, found=presence)


def write_pose(path: Path, record: LandmarkRecord, fps: float = FPS) -> None:
    """Write ``record`` as a .pose file, atomically (a killed export leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        to_pose(record, fps).write(out)
    tmp.replace(path)


def read_pose(path: Path, num_points: int = NUM_POINTS) -> LandmarkRecord:
    """The record of a .pose file; PoseFormatError for another layout or a file pose-format cannot read."""
    pose_format = import_pose_format()
    try:
        pose = pose_format.Pose.read(Path(path).read_bytes())
    except (ValueError, EOFError, IndexError, KeyError, TypeError, RuntimeError, struct.error) as exc:  # truncated
        raise PoseFormatError(f"{path} is not a readable .pose file ({type(exc).__name__}: {exc}).") from None
    try:
        return from_pose(pose, num_points)
    except PoseFormatError as exc:
        raise PoseFormatError(f"{path}: {exc}") from None


def _describe(components: List[Tuple[str, int]]) -> str:
    return ", ".join(f"{name} {points}" for name, points in components) or "none"
