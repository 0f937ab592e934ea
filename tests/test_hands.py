"""The hand path on real hands (tests/fixtures/hands, see its README): real MediaPipe (in one spawned
process for the module: none in the pytest process), a real LMDB cache, the real renderer.

The layout is spelled out here (pose-format's order), not taken from phoenix_data: pose 0:33, face 33:501,
left hand 501:522, right hand 522:543; pose point 15 is the left wrist, 16 the right wrist.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
from PIL import Image

from phoenix_data.cache import LandmarkCache
from phoenix_data.extract import get_extractor
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.frames import list_frames, read_frames_rgb
from phoenix_data.record import LandmarkRecord
from phoenix_data.render import LEFT_HAND_COLOUR, RIGHT_HAND_COLOUR, TILE_GAP, render_sample

pytestmark = pytest.mark.mediapipe  # every test here runs real MediaPipe

HANDS = Path(__file__).resolve().parent / "fixtures" / "hands"
BOTH_HANDS = HANDS / "signer_both_hands_9"
HAND_GAPS = HANDS / "person_hand_gaps_12"
WIDTH, HEIGHT = 210, 260
POSE, LEFT, RIGHT = slice(0, 33), slice(501, 522), slice(522, 543)
LEFT_WRIST, RIGHT_WRIST = 15, 16
HAND_WRIST = 0  # a hand's own point 0
NEAR = 0.1  # a hand's wrist and the pose's wrist of that side: within 10% of the frame (measured <= 0.07)
FAR = 0.3  # ... and the other side's pose wrist: farther (measured >= 0.4)


def extract(folder: Path) -> LandmarkRecord:
    """Run in the spawned process: MediaPipe Holistic over the folder's frames, in order."""
    return get_extractor(HolisticSettings()).extract(read_frames_rgb(list_frames(folder)))


@pytest.fixture(scope="module")
def extracted() -> Dict[Path, LandmarkRecord]:
    """Both clips extracted once, by one Holistic in a spawned process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip((BOTH_HANDS, HAND_GAPS), pool.map(extract, (BOTH_HANDS, HAND_GAPS))))


def found(record: LandmarkRecord, part: slice) -> np.ndarray:
    """bool [T]: frames whose points of ``part`` are not all zero."""
    return np.any(record.landmarks[:, part] != 0, axis=(1, 2))


def wrist_distance(record: LandmarkRecord, hand: slice, pose_wrist: int) -> np.ndarray:
    """[T]: distance (x, y, in frame units) from a hand's wrist to a pose wrist."""
    xy = record.landmarks[:, :, :2]
    return np.linalg.norm(xy[:, hand.start + HAND_WRIST] - xy[:, pose_wrist], axis=1)


def test_both_hands_sit_in_pose_formats_order(extracted):
    record = extracted[BOTH_HANDS]
    assert record.landmarks.shape == (len(list_frames(BOTH_HANDS)), 543, 3) == (9, 543, 3)
    for part in (POSE, LEFT, RIGHT):
        assert found(record, part).all()
    # the hand MediaPipe calls left is at the pose's left wrist (the signer's left: the image's right)
    assert (wrist_distance(record, LEFT, LEFT_WRIST) < NEAR).all(), wrist_distance(record, LEFT, LEFT_WRIST)
    assert (wrist_distance(record, RIGHT, RIGHT_WRIST) < NEAR).all(), wrist_distance(record, RIGHT, RIGHT_WRIST)
    assert (wrist_distance(record, LEFT, RIGHT_WRIST) > FAR).all()
    assert (wrist_distance(record, RIGHT, LEFT_WRIST) > FAR).all()
    assert (record.landmarks[:, LEFT, 0].mean(axis=1) > 0.5).all()
    assert (record.landmarks[:, RIGHT, 0].mean(axis=1) < 0.5).all()
    assert (record.confidence[:, LEFT] == 1).all() and (record.confidence[:, RIGHT] == 1).all()


def test_a_hand_that_comes_and_goes_has_presence_and_confidence_frame_by_frame(extracted):
    record = extracted[HAND_GAPS]
    right = found(record, RIGHT)
    # the right hand: absent at first, found for a while, lost again (see the fixture's README)
    assert not right[:3].any() and right.sum() >= 6
    first = int(np.argmax(right))
    assert not right[first:].all(), right
    assert (record.confidence[right][:, RIGHT] == 1).all()
    assert (record.landmarks[~right][:, RIGHT] == 0).all() and (record.confidence[~right][:, RIGHT] == 0).all()
    assert (np.abs(record.landmarks[right][:, RIGHT]).sum(axis=(1, 2)) > 1).all()  # real points, not zeros
    assert (wrist_distance(record, RIGHT, RIGHT_WRIST)[right] < NEAR).all()
    # the left hand is never found: zeros and confidence 0 throughout
    assert not found(record, LEFT).any()
    assert (record.landmarks[:, LEFT] == 0).all() and (record.confidence[:, LEFT] == 0).all()
    np.testing.assert_array_equal(record.presence()[:, 2:], np.stack([found(record, LEFT), right], axis=1))
    assert record.detection_rates()["right_hand"] == pytest.approx(right.mean())
    assert record.detection_rates()["left_hand"] == 0


def test_hand_records_round_trip_through_a_real_cache(extracted, tmp_path):
    records = {"rel/train/both": extracted[BOTH_HANDS], "rel/train/gaps": extracted[HAND_GAPS]}
    cache = LandmarkCache(tmp_path / "cache", HolisticSettings())
    with cache.session():
        for key, record in records.items():
            cache.put(key, record)
    reader = LandmarkCache(tmp_path / "cache", HolisticSettings(), readonly=True)
    with reader.session():
        for key, record in records.items():
            back = reader.get(key)
            # float16: relative error <= 2**-11 (plus float16's smallest steps near 0)
            np.testing.assert_allclose(back.landmarks, record.landmarks, rtol=2 ** -11, atol=1e-6)
            for part in (LEFT, RIGHT, slice(33, 501)):
                np.testing.assert_array_equal(back.confidence[:, part], record.confidence[:, part])
            assert np.abs(back.confidence[:, POSE] - record.confidence[:, POSE]).max() <= 1 / 510 + 1e-6
            np.testing.assert_array_equal(back.presence(), record.presence())
            assert (back.width, back.height) == (WIDTH, HEIGHT)
            half = reader.get(key, float16=True)
            assert half.landmarks.dtype == np.float16
            np.testing.assert_array_equal(half.landmarks.astype(np.float32), back.landmarks)


def tile(sheet: np.ndarray, t: int, columns: int) -> np.ndarray:
    """Tile ``t`` of a contact sheet (full-size tiles, row by row)."""
    left, top = (t % columns) * (WIDTH + TILE_GAP), (t // columns) * (HEIGHT + TILE_GAP)
    return sheet[top:top + HEIGHT, left:left + WIDTH]


def colour_in_box(image: np.ndarray, colour, xy: np.ndarray, margin: int = 4) -> Tuple[int, int]:
    """(pixels of ``colour`` inside the box around points ``xy`` (frame units), pixels of it outside)."""
    mask = np.all(image == colour, axis=2)
    (x0, y0), (x1, y1) = np.floor(xy.min(axis=0) * (WIDTH, HEIGHT)), np.ceil(xy.max(axis=0) * (WIDTH, HEIGHT))
    box = np.zeros_like(mask)
    box[max(int(y0) - margin, 0):int(y1) + margin, max(int(x0) - margin, 0):int(x1) + margin] = True
    return int(mask[box].sum()), int(mask[~box].sum())


def test_render_draws_each_hand_in_its_colour_on_that_hand(extracted, tmp_path):
    for folder, record in extracted.items():
        paths = list_frames(folder)
        done = render_sample(paths, record, tmp_path / folder.name / "sheet.png")
        sheet = np.asarray(Image.open(done.sheet).convert("RGB"))
        for t, path in enumerate(paths):
            drawn = tile(sheet, t, done.columns)
            raw = np.asarray(Image.open(path).convert("RGB"))
            for part, colour in ((LEFT, LEFT_HAND_COLOUR), (RIGHT, RIGHT_HAND_COLOUR)):
                assert not np.all(raw == colour, axis=2).any()  # the colour is the drawing's, not the photo's
                if not found(record, part)[t]:
                    assert not np.all(drawn == colour, axis=2).any(), (folder.name, t, part)
                    continue
                inside, outside = colour_in_box(drawn, colour, record.landmarks[t, part, :2])
                assert inside > 40 and outside == 0, (folder.name, t, part, inside, outside)
