"""MediaPipe extraction: layout, RGB input, reset between videos, settings. Real Holistic throughout.

The extractor under test is the installed mediapipe's backend (``get_extractor``, as the package picks
it); the comparison with plain ``mp.solutions`` is the legacy backend's (tests/test_tasks_backend.py and
tests/test_py313.py compare the tasks backend with it)."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from helpers import legacy_mediapipe_only

from phoenix_data.extract import get_extractor
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.frames import FramesError, list_frames, read_frames_rgb
from phoenix_data.record import NUM_POINTS, PARTS, part_slices

# Tests that run MediaPipe in the test process carry in_child: their body runs in a forked child,
# so that no Holistic stays in the pytest process, whose later DataLoader workers it would break.

# Max |x, y| difference (share of the image size, ~1.3 px at 260 px) between our extraction and
# plain MediaPipe on the same RGB frames. Feeding BGR moves pose points by ~0.09 and face points by
# ~0.01 on these frames, so a colour mix-up fails it.
TOLERANCE = 0.005


def plain_mediapipe(paths, to_rgb=True):
    """The reference: mediapipe's Holistic used as its documentation shows, nothing of ours."""
    import mediapipe as mp

    out = []
    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as holistic:
        for path in paths:
            image = cv2.imread(str(path))
            results = holistic.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if to_rgb else image)
            out.append(results)
    return out


def xy(landmark_list):
    return np.array([(p.x, p.y) for p in landmark_list.landmark], np.float32)


def extract_real(frames_dir):
    return get_extractor(HolisticSettings()).extract(read_frames_rgb(list_frames(frames_dir)))


@pytest.mark.in_child
def test_real_frames_layout_and_parts(real_frames_dir):
    rec = extract_real(real_frames_dir)
    assert rec.landmarks.shape == (2, NUM_POINTS, 3) and rec.landmarks.dtype == np.float32
    assert rec.confidence.shape == (2, NUM_POINTS)
    assert (rec.width, rec.height) == (210, 260)
    rates = rec.detection_rates()
    assert rates["pose"] == 1.0 and rates["face"] == 1.0
    assert rates["left_hand"] == 0.0 and rates["right_hand"] == 0.0
    s = part_slices(NUM_POINTS)
    for hand in ("left_hand", "right_hand"):
        assert not rec.landmarks[:, s[hand]].any() and not rec.confidence[:, s[hand]].any()
    assert (rec.confidence[:, s["face"]] == 1).all()
    pose_visibility = rec.confidence[:, s["pose"]]
    assert ((pose_visibility >= 0) & (pose_visibility <= 1)).all() and pose_visibility.max() > 0.9
    # the signer's face is in the upper middle of the frame
    face = rec.landmarks[:, s["face"], :2]
    assert 0.25 < face[..., 0].mean() < 0.75 and 0.05 < face[..., 1].mean() < 0.5


@pytest.mark.legacy  # the reference is mp.solutions
@pytest.mark.in_child
@pytest.mark.parametrize("to_rgb, should_match", [(True, True), (False, False)])
def test_matches_plain_mediapipe_on_rgb_and_not_on_bgr(real_frames_dir, to_rgb, should_match):
    real_record = extract_real(real_frames_dir)
    reference = plain_mediapipe(list_frames(real_frames_dir), to_rgb=to_rgb)
    s = part_slices(NUM_POINTS)
    worst = 0.0
    for t, results in enumerate(reference):
        for part, found in (("pose", results.pose_landmarks), ("face", results.face_landmarks)):
            worst = max(worst, float(np.abs(real_record.landmarks[t, s[part], :2] - xy(found)).max()))
    assert (worst < TOLERANCE) == should_match, f"max |dxy| = {worst:.4f}"


@pytest.mark.in_child
def test_reset_between_videos(demo_tree, real_frames_dir):
    """With tracking, a video's landmarks must not depend on the video extracted before it."""
    from phoenix_data.corpus import read_corpus

    other = read_corpus(demo_tree["PHOENIX-2014-T"], "dev")[0].frames_dir
    real = list_frames(real_frames_dir)
    extractor = HolisticSettings().build()  # built here, not get_extractor's: the reference must be fresh
    extractor.extract(read_frames_rgb(list_frames(other)))
    after_other = extractor.extract(read_frames_rgb(real))
    extractor.close()
    fresh = HolisticSettings().build().extract(read_frames_rgb(real))
    assert np.abs(after_other.landmarks - fresh.landmarks).max() < 1e-4


@pytest.mark.in_child
def test_frames_go_in_as_rgb_in_time_order(tmp_path, real_frames_dir):
    frames = list_frames(real_frames_dir)
    (tmp_path / "notes.txt").write_text("not a frame")
    for path in reversed(frames):  # names sort in time order, not creation order
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert [p.name for p in list_frames(tmp_path)] == ["images0001.png", "images0002.png"]
    first = next(read_frames_rgb(list_frames(tmp_path)))
    bgr = cv2.imread(str(frames[0]))
    assert np.array_equal(first, bgr[..., ::-1])


def test_unreadable_frames_raise(tmp_path):
    with pytest.raises(FramesError, match="does not exist"):
        list_frames(tmp_path / "missing")
    with pytest.raises(FramesError, match="no PNG frames"):
        list_frames(tmp_path)
    (tmp_path / "images0001.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(FramesError, match="cannot be decoded"):
        list(read_frames_rgb(list_frames(tmp_path)))


@legacy_mediapipe_only
def test_settings_fingerprint_and_validation():
    base = HolisticSettings()
    assert base.fingerprint() == HolisticSettings().fingerprint()
    assert base.fingerprint() != HolisticSettings(min_detection_confidence=0.6).fingerprint()
    assert base.fingerprint() != HolisticSettings(refine_face_landmarks=True).fingerprint()
    assert HolisticSettings(refine_face_landmarks=True).num_points == 553
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.model_complexity = 2
    with pytest.raises(ValueError, match="expected one of 0, 1, 2"):
        HolisticSettings(model_complexity=3)
    with pytest.raises(ValueError, match=r"expected a value in \[0, 1\]"):
        HolisticSettings(min_tracking_confidence=1.5)
    assert set(base.identity()) == {"settings", "mediapipe", "schema"}


@pytest.mark.in_child  # would build a Holistic if the check let it through
@pytest.mark.parametrize("complexity", [0, 2])
def test_downloading_complexities_are_refused(complexity):
    from phoenix_data.extract.mediapipe import default_backend
    from phoenix_data.extract.mediapipe.runtime import pose_model_path

    if default_backend() == "tasks":  # refused when the settings are made: the bundle has one pose model
        with pytest.raises(ValueError, match="full pose model only; use model_complexity=1"):
            HolisticSettings(model_complexity=complexity)
        return
    if pose_model_path(complexity).is_file():
        pytest.skip("this mediapipe install has that model file; nothing would be downloaded")
    settings = HolisticSettings(model_complexity=complexity)
    with pytest.raises(ValueError, match="would download") as info:
        get_extractor(settings).extract(iter([np.zeros((260, 210, 3), np.uint8)]))
    assert "model_complexity=1" in str(info.value)


def test_parts_order_is_pose_format():
    s = part_slices(NUM_POINTS)
    assert PARTS == ("pose", "face", "left_hand", "right_hand")
    assert [(s[p].start, s[p].stop) for p in PARTS] == [(0, 33), (33, 501), (501, 522), (522, 543)]
    with pytest.raises(ValueError, match="543"):
        part_slices(100)
