"""Pictures of one sample: its frames with the landmarks drawn over them.

``render_sample`` writes a contact sheet (PNG, a grid of frames; frame 0 is the top-left tile at full
size) and an animation (GIF, every frame) beside it. Pose and hands are drawn as skeletons with
MediaPipe's connection lists (kept as data in ``record``), the face as dots. x and y are scaled by the
frame's width and height.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .frames import read_frame_rgb
from .record import HAND_EDGES, PARTS, POSE_EDGES, LandmarkRecord, part_slices

log = logging.getLogger(__name__)

Colour = Tuple[int, int, int]
# Pure, saturated colours that a TV frame hardly holds, so a drawn point is told from the image.
POSE_COLOUR: Colour = (0, 255, 0)
FACE_COLOUR: Colour = (255, 0, 255)
LEFT_HAND_COLOUR: Colour = (255, 128, 0)
RIGHT_HAND_COLOUR: Colour = (0, 160, 255)
LABEL_COLOUR: Colour = (255, 255, 255)
LABEL_BACKGROUND: Colour = (0, 0, 0)
GAP_COLOUR: Colour = (40, 40, 40)
LINE_WIDTH = 2
JOINT_RADIUS = 2
# mediapipe's drawing_utils skips pose landmarks below this visibility (off-screen hips, knees, ...).
VISIBILITY_THRESHOLD = 0.5
SHEET_COLUMNS = 8
MAX_TILES = 64
TILE_GAP = 4
GIF_FPS = 25  # PHOENIX is filmed at 25 fps


@dataclass(frozen=True)
class RenderedSample:
    """What ``render_sample`` wrote."""

    sheet: Path
    gif: Path
    frames: int  # frames drawn (and in the GIF)
    tiles: List[int]  # frame indices on the contact sheet, in grid order
    columns: int


def connections() -> Dict[str, List[Tuple[int, int]]]:
    """Skeleton edges (``record.POSE_EDGES``, ``record.HAND_EDGES``): ``pose`` (indices into the 33 pose
    points) and ``hand`` (into 21)."""
    return {"pose": list(POSE_EDGES), "hand": list(HAND_EDGES)}


def draw_landmarks(frame: np.ndarray, landmarks: np.ndarray, confidence: np.ndarray,
                   edges: Dict[str, List[Tuple[int, int]]], found: Sequence[bool]) -> Image.Image:
    """``frame`` (uint8 RGB [H, W, 3]) with one frame's landmarks (float [N, 3], confidence [N]) drawn on it.

    ``found`` (bool [4], ``record.PARTS`` order: the record's presence in this frame): a part the
    estimator did not find is not drawn.
    """
    image = Image.fromarray(frame, "RGB")
    draw = ImageDraw.Draw(image)
    height, width = frame.shape[:2]
    xy = landmarks[:, :2] * np.array([width, height], np.float32)
    slices = part_slices(landmarks.shape[0])
    present = dict(zip(PARTS, (bool(f) for f in found)))
    if present["face"]:  # one pixel a point: 468 bigger dots would hide a face 40 px wide
        draw.point([tuple(p) for p in xy[slices["face"]]], fill=FACE_COLOUR)
    if present["pose"]:
        pose = slices["pose"]
        visible = confidence[pose] >= VISIBILITY_THRESHOLD
        _skeleton(draw, xy[pose], [(a, b) for a, b in edges["pose"] if visible[a] and visible[b]], POSE_COLOUR)
    for part, colour in (("left_hand", LEFT_HAND_COLOUR), ("right_hand", RIGHT_HAND_COLOUR)):
        if present[part]:
            _skeleton(draw, xy[slices[part]], edges["hand"], colour, joints=True)
    return image


def _box(x: float, y: float, radius: float) -> Tuple[float, float, float, float]:
    return (x - radius, y - radius, x + radius, y + radius)


def _skeleton(draw: ImageDraw.ImageDraw, xy: np.ndarray, edges: Sequence[Tuple[int, int]], colour: Colour,
              joints: bool = False) -> None:
    for a, b in edges:
        draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=LINE_WIDTH)
    if joints:
        for x, y in xy:
            draw.ellipse(_box(x, y, JOINT_RADIUS), fill=colour)


def tile_indices(num_frames: int, max_tiles: int = MAX_TILES) -> List[int]:
    """Frames shown on a contact sheet: all of them, or ``max_tiles`` spread evenly (first and last kept)."""
    if num_frames <= max_tiles:
        return list(range(num_frames))
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, max_tiles)})


def contact_sheet(tiles: Sequence[Image.Image], labels: Sequence[str], columns: int = SHEET_COLUMNS) -> Image.Image:
    """``tiles`` (all one size) in a grid, row by row, ``TILE_GAP`` pixels apart; the first at (0, 0)."""
    width, height = tiles[0].size
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (width + TILE_GAP) - TILE_GAP, rows * (height + TILE_GAP) - TILE_GAP),
                      GAP_COLOUR)
    for number, (tile, label) in enumerate(zip(tiles, labels)):
        left, top = (number % columns) * (width + TILE_GAP), (number // columns) * (height + TILE_GAP)
        sheet.paste(tile, (left, top))
        draw = ImageDraw.Draw(sheet)
        box = draw.textbbox((left + 3, top + 2), label)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=LABEL_BACKGROUND)
        draw.text((left + 3, top + 2), label, fill=LABEL_COLOUR)
    return sheet


def write_gif(images: Sequence[Image.Image], path: Path, fps: int = GIF_FPS) -> None:
    """An endlessly looping GIF. Pillow merges consecutive identical frames into one longer frame."""
    images[0].save(path, format="GIF", save_all=True, append_images=list(images[1:]),
                   duration=round(1000 / fps), loop=0)


def render_sample(frame_paths: Sequence[Path], record: LandmarkRecord, sheet_path: Path,
                  max_tiles: int = MAX_TILES) -> RenderedSample:
    """Draw ``record`` over the sample's frames; write the contact sheet to ``sheet_path`` and a GIF beside it.

    Frame t of the record is drawn on ``frame_paths[t]``; if their counts differ, the shorter one wins.
    """
    sheet_path = Path(sheet_path)
    count = min(len(frame_paths), record.num_frames)
    if count == 0:
        raise ValueError(f"nothing to draw: {len(frame_paths)} frames on disk, {record.num_frames} in the record.")
    if len(frame_paths) != record.num_frames:
        log.warning("%d frames on disk but %d in the record; drawing the first %d",
                    len(frame_paths), record.num_frames, count)
    edges, found = connections(), record.presence()
    drawn = [draw_landmarks(read_frame_rgb(frame_paths[t]), record.landmarks[t], record.confidence[t], edges, found[t])
             for t in range(count)]
    shown = tile_indices(count, max_tiles)
    columns = min(SHEET_COLUMNS, len(shown))
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet([drawn[t] for t in shown], [f"t={t}" for t in shown], columns).save(sheet_path, format="PNG")
    gif_path = sheet_path.with_suffix(".gif")
    write_gif(drawn, gif_path)
    return RenderedSample(sheet_path, gif_path, count, shown, columns)
