"""Landmark transforms: the invariants of issue #13 on real MediaPipe landmarks and synthetic sequences,
hypothesis properties, and seeded DataLoader runs with num_workers=2 (fake cached records, and the demo
tree extracted by real MediaPipe in the workers)."""
from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import legacy_mediapipe_only, write_corpus_csv
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from phoenix_data.batching import collate_ctc
from phoenix_data.cache import LandmarkCache
from phoenix_data.dataset import PhoenixLandmarks
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.record import NUM_POINTS, POSE_POINTS, LandmarkRecord, part_slices
from phoenix_data.transforms import (
    SUBSETS,
    Compose,
    FillGaps,
    FrameDropout,
    Mirror,
    Normalize,
    RandomAffine,
    SelectPoints,
    TimeWarp,
    Velocity,
    ensure_masks,
    has_value,
    mirror_ids,
    subset_ids,
    validity,
)
from phoenix_data.transforms.points import FACE_MIRROR_PAIRS

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REAL_LANDMARKS = FIXTURES / "landmarks" / "real_frames.npz"
FAKE = FakeExtractorSettings()
S = part_slices(NUM_POINTS)
LS, RS = 11, 12  # pose shoulders
HANDS = ("left_hand", "right_hand")


# --- items ---------------------------------------------------------------------------------------------

def real_item(repeat: int = 1) -> dict:
    """The two real frames' landmarks (MediaPipe: pose and face found, no hands), tiled ``repeat`` times."""
    data = np.load(REAL_LANDMARKS)
    landmarks = torch.from_numpy(np.tile(data["landmarks"], (repeat, 1, 1)))
    confidence = torch.from_numpy(np.tile(data["confidence"], (repeat, 1)))
    item = {"landmarks": landmarks, "confidence": confidence, "id": "tagesschau-17", "num_frames": len(landmarks)}
    return ensure_masks(item)


def synthetic_item(frames: int = 12, seed: int = 0, missing=None, sid: str = "synthetic") -> dict:
    """Random landmarks in [0.2, 0.8]; ``missing`` maps a part to the frames where it was not found."""
    rng = np.random.default_rng(seed)
    landmarks = rng.uniform(0.2, 0.8, (frames, NUM_POINTS, 3)).astype(np.float32)
    confidence = np.ones((frames, NUM_POINTS), np.float32)
    confidence[:, S["pose"]] = rng.uniform(0.05, 1, (frames, POSE_POINTS))
    for part, where in (missing or {}).items():
        for t in where:
            landmarks[t, S[part]] = 0
            confidence[t, S[part]] = 0
    item = {"landmarks": torch.from_numpy(landmarks), "confidence": torch.from_numpy(confidence), "id": sid,
            "num_frames": frames}
    return ensure_masks(item)


def copy(item: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in item.items()}


def assert_missing_stay_zero(item: dict) -> None:
    """The issue's invariant: a point without a value is exactly zero with confidence 0."""
    missing = ~has_value(item)
    assert (item["landmarks"][missing] == 0).all(), "a missing point was given a value"
    assert (item["confidence"][missing] == 0).all(), "a missing point was given a confidence"
    assert not (item["valid"] & item["imputed"]).any()


# --- validity ----------------------------------------------------------------------------------------

def test_validity_of_the_real_frames_matches_what_mediapipe_found():
    item = real_item()
    valid = item["valid"]
    assert valid[:, S["pose"]].all() and valid[:, S["face"]].all()
    assert not valid[:, S["left_hand"]].any() and not valid[:, S["right_hand"]].any()
    for part in ("face", "left_hand", "right_hand"):  # presence parts: valid == confidence 1
        assert torch.equal(valid[:, S[part]], item["confidence"][:, S[part]] == 1)
    assert (item["confidence"][:, S["pose"]] < 1).any(), "pose validity does not come from visibility"


def test_validity_is_per_part_and_frame():
    item = synthetic_item(5, missing={"left_hand": [1, 3], "pose": [2]})
    assert item["valid"][:, S["left_hand"]].all(dim=1).tolist() == [True, False, True, False, True]
    assert item["valid"][:, S["pose"]].all(dim=1).tolist() == [True, True, False, True, True]
    assert item["valid"][:, S["right_hand"]].all()


# --- SelectPoints ------------------------------------------------------------------------------------

@legacy_mediapipe_only
def test_named_subsets_come_from_mediapipe_face_mesh_connections():
    connections = _load_by_path("mediapipe/python/solutions/face_mesh_connections.py")
    for name, constant in (("lips", "FACEMESH_LIPS"), ("face_contour", "FACEMESH_FACE_OVAL"),
                           ("left_eye", "FACEMESH_LEFT_EYE"), ("right_eyebrow", "FACEMESH_RIGHT_EYEBROW"),
                           ("nose", "FACEMESH_NOSE")):
        expected = sorted({p for edge in getattr(connections, constant) for p in edge})
        assert list(SUBSETS[name][1]) == expected, name
    assert subset_ids("lips", NUM_POINTS)[:2] == [POSE_POINTS + 0, POSE_POINTS + 13]
    assert subset_ids("right_hand", NUM_POINTS) == list(range(S["right_hand"].start, S["right_hand"].stop))


def test_select_points_keeps_the_given_order_and_the_masks_follow():
    item = synthetic_item(4, missing={"right_hand": [0, 2]})
    original = copy(item)
    picked = [S["right_hand"].start + 3, 12, 11, S["right_hand"].start + 3, POSE_POINTS + 61]
    out = SelectPoints(picked, "left_hand")(item)
    order = picked[:1] + picked[1:3] + picked[4:] + list(range(S["left_hand"].start, S["left_hand"].stop))
    assert out["point_ids"].tolist() == order and out["landmarks"].shape == (4, len(order), 3)
    for key in ("landmarks", "confidence", "valid"):
        assert torch.equal(out[key], original[key][:, order]), key
    assert out["valid"][:, 0].tolist() == [False, True, False, True]
    assert repr(SelectPoints("lips", [1, 2])) == "SelectPoints('lips', <2 indices>)"


def test_select_points_errors_name_the_way_out():
    with pytest.raises(ValueError, match="unknown point subset 'lip'.*lips"):
        SelectPoints("lip")
    item = SelectPoints("left_hand")(synthetic_item(2))
    with pytest.raises(ValueError, match="Normalize needs layout points \\[11, 12\\]"):
        Normalize()(item)
    with pytest.raises(ValueError, match="an earlier SelectPoints removed"):
        SelectPoints("lips")(item)


# --- Mirror ------------------------------------------------------------------------------------------

def _load_by_path(relative: str):
    """A mediapipe source file as a module, without importing mediapipe (no graph in the test process)."""
    spec_root = importlib.util.find_spec("mediapipe")
    path = Path(spec_root.origin).parent.parent / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@legacy_mediapipe_only
def test_face_mirror_map_agrees_with_mediapipe_connections():
    c = _load_by_path("mediapipe/python/solutions/face_mesh_connections.py")
    face = mirror_ids(NUM_POINTS)[S["face"]] - POSE_POINTS

    def mapped(edges):
        return {tuple(sorted((int(face[a]), int(face[b])))) for a, b in edges}

    def plain(edges):
        return {tuple(sorted(e)) for e in edges}

    assert torch.equal(face[face], torch.arange(len(face))), "not an involution"
    assert mapped(c.FACEMESH_LEFT_EYE) == plain(c.FACEMESH_RIGHT_EYE)
    assert mapped(c.FACEMESH_LEFT_EYEBROW) == plain(c.FACEMESH_RIGHT_EYEBROW)
    for constant in (c.FACEMESH_LIPS, c.FACEMESH_FACE_OVAL, c.FACEMESH_NOSE):
        assert mapped(constant) == plain(constant)
    tessellation = plain(c.FACEMESH_TESSELATION)
    assert len(mapped(c.FACEMESH_TESSELATION) & tessellation) >= len(tessellation) - 6
    assert len(FACE_MIRROR_PAIRS) == 220


@legacy_mediapipe_only
def test_pose_mirror_map_follows_mediapipe_pose_landmark_names():
    spec = importlib.util.find_spec("mediapipe")
    text = (Path(spec.origin).parent / "python" / "solutions" / "pose.py").read_text()
    names = {int(i): n for n, i in re.findall(r"^\s+([A-Z_]+) = (\d+)$", text, re.M) if int(i) < POSE_POINTS}
    assert len(names) == POSE_POINTS
    mirror = mirror_ids(NUM_POINTS)
    for index, name in names.items():
        swapped = name.replace("LEFT", "@").replace("RIGHT", "LEFT").replace("@", "RIGHT")
        assert names[int(mirror[index])] == swapped, name


@pytest.mark.parametrize("make", [real_item, lambda: synthetic_item(6, missing={"left_hand": [1, 2]})])
def test_mirror_twice_is_the_identity(make):
    item = make()
    original = copy(item)
    once = Mirror(p=1.0)(copy(item))
    twice = Mirror(p=1.0)(copy(once))
    assert torch.allclose(twice["landmarks"], original["landmarks"], atol=1e-6)
    for key in ("confidence", "valid", "imputed"):
        assert torch.equal(twice[key], original[key]), key
    assert not torch.allclose(once["landmarks"], original["landmarks"])
    assert_missing_stay_zero(once)


def test_mirror_swaps_hands_pose_sides_and_face_points():
    item = synthetic_item(3, missing={"left_hand": [0]})
    original = copy(item)
    out = Mirror(p=1.0)(item)
    lh, rh = S["left_hand"], S["right_hand"]
    assert torch.equal(out["valid"][:, rh], original["valid"][:, lh])
    assert torch.allclose(out["landmarks"][1:, rh, 0], 1 - original["landmarks"][1:, lh, 0])
    assert torch.equal(out["landmarks"][0, rh], torch.zeros(21, 3)), "the missing left hand became a zero right hand"
    assert torch.allclose(out["landmarks"][:, LS, 0], 1 - original["landmarks"][:, RS, 0])
    assert torch.equal(out["confidence"][:, LS], original["confidence"][:, RS])
    assert torch.allclose(out["landmarks"][:, POSE_POINTS + 33, 1], original["landmarks"][:, POSE_POINTS + 263, 1])
    assert out["mirrored"] is True
    assert Mirror(p=0.0)(copy(original))["mirrored"] is False


def test_mirror_after_normalize_flips_about_the_shoulder_midpoint():
    item = Normalize()(real_item())
    out = Mirror(p=1.0)(copy(item))
    assert torch.allclose(out["landmarks"][:, LS, 0], -item["landmarks"][:, RS, 0], atol=1e-6)
    assert torch.allclose(out["landmarks"][:, [LS, RS], :2].mean(dim=1), torch.zeros(2, 2), atol=1e-5)


@pytest.mark.parametrize("subsets", [("right_hand", "pose_upper_body", "left_hand", "eyes"),
                                     ("eyebrows", "pose", "lips", "right_hand", "left_hand", "face_contour")])
def test_mirror_and_normalize_after_select_points_give_the_selection_of_their_result(subsets):
    """Steps after SelectPoints find shoulders and mirror partners by the item's point_ids: the same values
    as the step on all points, then the selection (selections closed under mirroring, in scrambled order)."""
    select = SelectPoints(*subsets)
    item = synthetic_item(5, missing={"left_hand": [1], "face": [3]})
    for step in (Mirror(p=1.0), Normalize(image_size=(210, 260))):
        before, after = select(step(copy(item))), step(select(copy(item)))
        for key in ("landmarks", "confidence", "valid", "imputed", "point_ids"):
            assert torch.equal(before[key], after[key]), (step, key)


# --- RandomAffine -----------------------------------------------------------------------------------

def distances(xy):
    return torch.cdist(xy, xy, compute_mode="donot_use_mm_for_euclid_dist")  # exact, not |a|^2+|b|^2-2ab


def pixel_distances(landmarks, size=(210, 260)):
    return distances(landmarks[..., :2] * torch.tensor(size, dtype=torch.float32))


def test_random_affine_scales_about_the_centre_and_keeps_pixel_distances_when_rotating():
    item = real_item()
    scaled = RandomAffine(rotation=0, scale=(2.0, 2.0), shear=0, translate=(0, 0))(copy(item))
    found = item["valid"]
    assert torch.allclose(scaled["landmarks"][found][:, :2], 0.5 + 2 * (item["landmarks"][found][:, :2] - 0.5),
                          atol=1e-5)
    assert torch.allclose(scaled["landmarks"][found][:, 2], 2 * item["landmarks"][found][:, 2], atol=1e-6)
    rotate = dict(rotation=30, scale=(1.0, 1.0), shear=0, translate=(0, 0), seed=5)
    pose = S["pose"]
    before = pixel_distances(item["landmarks"][:, pose])
    in_pixels = RandomAffine(image_size=(210, 260), **rotate)(copy(item))
    assert torch.allclose(pixel_distances(in_pixels["landmarks"][:, pose]), before, atol=1e-3)
    in_units = RandomAffine(**rotate)(copy(item))  # x and y normalised to different lengths: distorts
    assert not torch.allclose(pixel_distances(in_units["landmarks"][:, pose]), before, atol=0.5)
    normalized = Normalize(image_size=(210, 260))(copy(item))
    turned = RandomAffine(image_size=(210, 260), **rotate)(copy(normalized))  # already isotropic
    assert torch.allclose(distances(turned["landmarks"][:, pose, :2]), distances(normalized["landmarks"][:, pose, :2]),
                          atol=1e-4)
    assert_missing_stay_zero(in_pixels)


# --- Normalize ---------------------------------------------------------------------------------------

def shoulder_midpoint_and_width(item):
    xy = item["landmarks"][:, [LS, RS], :2]
    return xy.mean(dim=1), (xy[:, 0] - xy[:, 1]).norm(dim=-1)


@pytest.mark.parametrize("image_size", [None, (210, 260)])
def test_normalize_per_frame_on_real_frames(image_size):
    out = Normalize(image_size=image_size)(real_item())
    mid, width = shoulder_midpoint_and_width(out)
    assert torch.allclose(mid, torch.zeros_like(mid), atol=1e-5) and torch.allclose(width, torch.ones(2), atol=1e-5)
    assert out["coords"] == "shoulders" and out["isotropic"] == (image_size is not None)
    assert_missing_stay_zero(out)  # the hands MediaPipe did not find


def test_normalize_frames_without_shoulders_use_the_clip_value():
    item = synthetic_item(6, missing={"pose": [2, 4], "left_hand": [0]})
    original = copy(item)
    mid0, width0 = shoulder_midpoint_and_width(original)
    found = torch.tensor([True, True, False, True, False, True])
    out = Normalize("frame")(item)
    mid, width = shoulder_midpoint_and_width(out)
    assert torch.allclose(mid[found], torch.zeros(4, 2), atol=1e-5) and torch.allclose(width[found], torch.ones(4))
    clip_mid, clip_width = mid0[found].mean(dim=0), width0[found].mean()
    expected = (original["landmarks"][2, POSE_POINTS + 1, :2] - clip_mid) / clip_width
    assert torch.allclose(out["landmarks"][2, POSE_POINTS + 1, :2], expected, atol=1e-5)
    assert (out["landmarks"][[2, 4]][:, S["pose"]] == 0).all()
    assert_missing_stay_zero(out)


def test_normalize_per_clip_uses_one_centre_and_scale():
    item = synthetic_item(5)
    mid0, width0 = shoulder_midpoint_and_width(item)
    out = Normalize("clip")(copy(item))
    mid, width = shoulder_midpoint_and_width(out)
    assert torch.allclose(mid.mean(dim=0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(width, width0 / width0.mean(), atol=1e-5)


def test_normalize_without_shoulders_leaves_the_clip_and_warns(caplog):
    item = synthetic_item(3, missing={"pose": [0, 1, 2]})
    original = copy(item)
    with caplog.at_level(logging.WARNING, logger="phoenix_data.transforms.geometry"):
        out = Normalize()(item)
    assert torch.equal(out["landmarks"], original["landmarks"]) and "coords" not in out
    assert "no frame with both shoulders" in caplog.text and "'synthetic'" in caplog.text
    coincident = synthetic_item(2)
    coincident["landmarks"][:, RS] = coincident["landmarks"][:, LS]  # width 0: no scale, no division
    out = Normalize()(coincident)
    assert torch.isfinite(out["landmarks"]).all() and "coords" not in out


# --- FillGaps ----------------------------------------------------------------------------------------

def expected_fills(found: list, k: int) -> list:
    """Reference: frames of inner gaps of at most k frames, by a plain scan."""
    fills, t = [], 0
    while t < len(found):
        if found[t]:
            t += 1
            continue
        end = t
        while end < len(found) and not found[end]:
            end += 1
        if t > 0 and end < len(found) and end - t <= k:
            fills += list(range(t, end))
        t = end
    return fills


def test_fill_gaps_fills_short_inner_gaps_only_and_marks_them():
    missing = [0, 3, 6, 7, 10, 11, 12, 15]  # end gap, gaps of 1, 2, 3, end gap
    item = synthetic_item(16, missing={"right_hand": missing})
    original = copy(item)
    out = FillGaps(max_gap=2)(item)
    rh = S["right_hand"]
    filled = out["imputed"][:, rh].all(dim=1).nonzero().flatten().tolist()
    assert filled == [3, 6, 7]
    assert not out["imputed"][:, :rh.start].any(), "only the right hand was missing"
    assert torch.equal(out["valid"], original["valid"]), "filling does not make points found"
    lm = original["landmarks"]
    assert torch.allclose(out["landmarks"][3, rh], (lm[2, rh] + lm[4, rh]) / 2)
    assert torch.allclose(out["landmarks"][7, rh], lm[5, rh] + (lm[8, rh] - lm[5, rh]) * 2 / 3)
    for t in (0, 10, 11, 12, 15):
        assert (out["landmarks"][t, rh] == 0).all() and not out["imputed"][t].any()
    assert (out["confidence"][out["imputed"]] == 0).all()
    assert_missing_stay_zero(out)


@settings(max_examples=60, deadline=None)
@given(found=st.lists(st.booleans(), min_size=1, max_size=30), k=st.integers(1, 5))
def test_fill_gaps_property_matches_a_plain_scan(found, k):
    missing = [t for t, f in enumerate(found) if not f]
    item = FillGaps(max_gap=k, parts=["left_hand"])(synthetic_item(len(found), missing={"left_hand": missing}))
    assert item["imputed"][:, S["left_hand"]].all(dim=1).nonzero().flatten().tolist() == expected_fills(found, k)
    assert not item["imputed"][:, S["right_hand"]].any()
    assert_missing_stay_zero(item)


# --- TimeWarp, FrameDropout, Velocity ----------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: real_item(3), lambda: synthetic_item(9, missing={"left_hand": [2, 3]})])
def test_time_warp_at_speed_one_is_the_identity(make):
    item = make()
    original = copy(item)
    out = TimeWarp(speed=1.0)(item)
    for key in ("landmarks", "confidence", "valid", "imputed"):
        assert torch.equal(out[key], original[key]), key


def test_time_warp_resamples_and_masks_follow_the_nearest_frame():
    item = synthetic_item(20, missing={"left_hand": list(range(5, 11))})
    out = TimeWarp(speed=2.0)(item)
    assert out["landmarks"].shape[0] == out["num_frames"] == 10
    # output frame j is source frame 2j: left hand missing at sources 6, 8, 10
    assert (~out["valid"][:, S["left_hand"]].any(dim=1)).nonzero().flatten().tolist() == [3, 4, 5]
    odd = synthetic_item(10, missing={"left_hand": [2]})
    warped = TimeWarp(speed=1.5)(copy(odd))  # source times 0, 1.5, 3, 4.5, 6, 7.5, 9
    assert warped["num_frames"] == 7
    assert (~warped["valid"][:, S["left_hand"]].all(dim=1)).nonzero().flatten().tolist() == [1]
    lm = odd["landmarks"]
    assert torch.allclose(warped["landmarks"][3], (lm[4] + lm[5]) / 2)
    assert torch.equal(warped["landmarks"][1, S["left_hand"]], torch.zeros(21, 3))
    assert torch.allclose(warped["landmarks"][1, S["pose"]], (lm[1, S["pose"]] + lm[2, S["pose"]]) / 2)
    slow = TimeWarp(speed=0.5)(synthetic_item(10, missing={"left_hand": [4]}))
    assert slow["num_frames"] == 20
    assert_missing_stay_zero(out)
    assert_missing_stay_zero(slow)


def test_frame_dropout_removes_frames_with_their_masks():
    item = synthetic_item(50, missing={"right_hand": list(range(0, 50, 2))})
    out = FrameDropout(p=0.5, seed=1)(item)
    assert 10 < out["num_frames"] < 40 and out["landmarks"].shape[0] == out["num_frames"]
    assert torch.equal(out["valid"], validity(out["landmarks"]))
    assert FrameDropout(p=0.99, min_frames=3, seed=0)(synthetic_item(8))["num_frames"] == 3


def test_velocity_appends_differences_zero_where_a_frame_is_missing():
    item = synthetic_item(4, missing={"left_hand": [2]})
    original = copy(item)
    out = Velocity()(item)
    lh = S["left_hand"]
    assert out["landmarks"].shape == (4, NUM_POINTS, 6)
    assert torch.equal(out["landmarks"][..., :3], original["landmarks"])
    assert (out["landmarks"][0, :, 3:] == 0).all()
    assert torch.allclose(out["landmarks"][1, :, 3:], original["landmarks"][1] - original["landmarks"][0])
    assert (out["landmarks"][2:4, lh, 3:] == 0).all()
    with pytest.raises(ValueError, match="Velocity appends channels: put it last"):
        Mirror(p=1.0)(out)


# --- every transform: missing stays missing ------------------------------------------------------------

ALL_STEPS = [Normalize(), Normalize("clip", image_size=(210, 260)), SelectPoints("pose_upper_body", "lips", *HANDS),
             Mirror(p=1.0), RandomAffine(rotation=30, shear=10, image_size=(210, 260)), TimeWarp((0.5, 2.0)),
             FrameDropout(p=0.3), FillGaps(max_gap=2, parts=("left_hand", "right_hand", "pose"))]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 16), frames=st.integers(1, 12),
       order=st.permutations(range(len(ALL_STEPS))), length=st.integers(1, len(ALL_STEPS)),
       hands=st.lists(st.booleans(), min_size=12, max_size=12), pose=st.lists(st.booleans(), min_size=12,
                                                                              max_size=12))
def test_no_transform_gives_a_missing_point_a_value_unless_imputed(seed, frames, order, length, hands, pose):
    missing = {"left_hand": [t for t in range(frames) if not hands[t]],
               "pose": [t for t in range(frames) if not pose[t]]}
    item = synthetic_item(frames, seed=seed, missing=missing, sid=f"s{seed}")
    steps = [ALL_STEPS[i] for i in order[:length]]
    steps = [s for i, s in enumerate(steps) if not (isinstance(s, Normalize) and
                                                  any(isinstance(p, Normalize) for p in steps[:i]))]
    out = Compose(steps, seed=seed)(item)
    assert_missing_stay_zero(out)
    if not any(isinstance(s, FillGaps) for s in steps):
        assert not out["imputed"].any()
    assert torch.isfinite(out["landmarks"]).all()


GEOMETRIC = [Normalize(), Normalize("clip", image_size=(210, 260)), Mirror(p=1.0), Mirror(p=0.0),
             RandomAffine(rotation=30, shear=10, image_size=(210, 260)), RandomAffine(translate=(0.2, 0.1))]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 16), frames=st.integers(1, 9), select=st.booleans(),
       order=st.lists(st.integers(0, len(GEOMETRIC) - 1), min_size=2, max_size=5),
       pose=st.lists(st.booleans(), min_size=9, max_size=9))
def test_geometric_steps_in_compose_equal_the_steps_one_by_one(seed, frames, select, order, pose):
    """Compose applies a run of Normalize, Mirror and RandomAffine as one map (AffineMap): the same item as
    calling each step on its own, to float32 rounding, in any order and with points missing."""
    steps = ([SelectPoints("pose_upper_body", *HANDS, "lips")] if select else []) + [GEOMETRIC[i] for i in order]
    steps = [s for i, s in enumerate(steps) if not (isinstance(s, Normalize) and
                                                  any(isinstance(p, Normalize) for p in steps[:i]))]
    item = synthetic_item(frames, seed=seed, missing={"pose": [t for t in range(frames) if not pose[t]],
                                                      "right_hand": [0]}, sid=f"s{seed}")
    fused = Compose(steps, seed=seed)
    one_by_one = copy(item)
    for step in fused.transforms:  # the same seeded copies, so the same draws
        one_by_one = step(one_by_one)
    out = fused(copy(item))
    # float32 rounding, relative to the largest value: Normalize divides by the shoulder width, so a rounding
    # of coordinates in image units grows with how narrow the shoulders are (hypothesis found 1.2e-3 on
    # values up to 86: shoulders 1% of the picture apart, 1.4e-5 of the largest value)
    scale = float(one_by_one["landmarks"].abs().max()) if one_by_one["landmarks"].numel() else 0.0
    assert float((out["landmarks"] - one_by_one["landmarks"]).abs().max()) <= 1e-4 * scale + 1e-6
    for key in ("confidence", "valid", "imputed", "point_ids"):
        if key in one_by_one:
            assert torch.equal(out[key], one_by_one[key]), key
    assert {k: out.get(k) for k in ("coords", "isotropic", "mirrored")} == {
        k: one_by_one.get(k) for k in ("coords", "isotropic", "mirrored")}
    assert_missing_stay_zero(out)


def test_a_geometric_step_whose_call_a_subclass_overrides_runs_as_the_subclass_says():
    calls = []

    class Logged(Normalize):
        def __call__(self, item):
            calls.append(item["id"])
            return super().__call__(item)

    out = Compose([Logged(), Mirror(p=1.0), RandomAffine()], seed=1)(synthetic_item(4))
    assert calls == ["synthetic"] and out["coords"] == "shoulders" and out["mirrored"] is True


# --- randomness -----------------------------------------------------------------------------------------

def pipeline(seed=None):
    return Compose([Normalize(image_size=(210, 260)), SelectPoints("pose_upper_body", *HANDS, "lips"),
                    Mirror(p=0.5), RandomAffine(), TimeWarp()], seed=seed)


def test_seeded_draws_depend_on_seed_epoch_and_sample_only():
    item = synthetic_item(10)
    a, b = pipeline(seed=3), pipeline(seed=3)
    b(copy(synthetic_item(7, sid="other")))  # b has drawn before: no shared stream state
    assert torch.equal(a(copy(item))["landmarks"], b(copy(item))["landmarks"])
    b.set_epoch(1)
    assert not torch.equal(a(copy(item))["landmarks"], b(copy(item))["landmarks"])
    other = copy(item)
    other["id"] = "another sample"
    assert not torch.equal(a(copy(item))["landmarks"], a(other)["landmarks"])
    free = pipeline()
    assert not torch.equal(free(copy(item))["landmarks"], free(copy(item))["landmarks"])


def test_repr_is_readable():
    text = repr(pipeline(seed=3))
    assert "Normalize(mode='frame', image_size=(210, 260))" in text and "Mirror(p=0.5, seed=3)" in text
    assert "RandomAffine(rotation=10.0, scale=(0.9, 1.1), shear=5.0, translate=(0.05, 0.05), seed=3)" in text
    assert repr(FillGaps(2)) == "FillGaps(max_gap=2, parts=('left_hand', 'right_hand'))"


# --- batching and DataLoader runs ------------------------------------------------------------------------

def test_collate_pads_and_stacks_the_masks():
    items = [FillGaps(2)(synthetic_item(3, missing={"left_hand": [1]})), synthetic_item(5, seed=1)]
    batch = collate_ctc([dict(i, glosses=torch.tensor([2])) for i in items])
    assert batch["valid"].shape == batch["imputed"].shape == (2, 5, NUM_POINTS)
    assert batch["valid"].dtype == torch.bool and not batch["valid"][0, 3:].any()
    assert batch["imputed"][0, 1, S["left_hand"]].all() and batch["imputed"].sum() == 21


def fake_release(base: Path, samples: int) -> Path:
    """A 2014-T train split of ``samples`` ids with no frames; returns the release folder."""
    rows = [f"fake-{i}|fake-{i}/1/*.png|-1|-1|Signer0{i % 3 + 1}|MORGEN SONNE WARM|satz {i}" for i in range(samples)]
    return write_corpus_csv(base, "PHOENIX-2014-T", "train", rows).parents[2]


@pytest.fixture(scope="module")
def fake_cached_dataset(tmp_path_factory):
    """A dataset whose every sample is a fake record in a real LMDB cache: it never extracts."""
    base = tmp_path_factory.mktemp("transforms")
    root = fake_release(base, 10)
    cache = LandmarkCache(base / "cache", FAKE)
    rng = np.random.default_rng(0)
    for i in range(10):
        frames = 20 + 3 * i
        landmarks = rng.uniform(0.2, 0.8, (frames, NUM_POINTS, 3)).astype(np.float32)
        landmarks[rng.uniform(size=frames) < 0.3, S["left_hand"]] = 0
        confidence = (landmarks[..., 0] != 0).astype(np.float32)
        cache.put(f"PHOENIX-2014-T/train/fake-{i}", LandmarkRecord(landmarks, confidence, width=210, height=260))
    cache.close()
    return root, base / "cache"


def batches(dataset, seed=None, epoch=0):
    dataset.transform = pipeline(seed)
    dataset.transform.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=3, collate_fn=collate_ctc, num_workers=2)
    return list(loader)


def same_batches(one, two) -> bool:
    return all(a["id"] == b["id"] and torch.equal(a["landmarks"], b["landmarks"]) and torch.equal(
        a["valid"], b["valid"]) and torch.equal(a["lengths"], b["lengths"]) for a, b in zip(one, two))


def test_seeded_loader_with_two_workers_repeats_its_batches(fake_cached_dataset):
    root, cache = fake_cached_dataset
    dataset = PhoenixLandmarks(root, "train", cache=cache, readonly=True, settings=FAKE)
    first, second = batches(dataset, seed=7), batches(dataset, seed=7)
    assert len(first) == 4 and same_batches(first, second)
    dataset.transform = None
    in_process = pipeline(7)(dataset[0])  # the main process draws what a worker drew for this sample
    assert first[0]["id"][0] == in_process["id"]
    assert torch.equal(first[0]["landmarks"][0, :in_process["num_frames"]], in_process["landmarks"])
    assert not same_batches(first, batches(dataset, seed=7, epoch=1)), "a new epoch must give new draws"
    assert not same_batches(first, batches(dataset, seed=8))
    for batch in first:
        assert_missing_stay_zero({k: batch[k] for k in ("landmarks", "confidence", "valid")} |
                                 {"imputed": torch.zeros_like(batch["valid"])})


def test_unseeded_workers_do_not_repeat_each_other(fake_cached_dataset):
    root, cache = fake_cached_dataset
    dataset = PhoenixLandmarks(root, "train", cache=cache, readonly=True, settings=FAKE)
    dataset.transform = Compose([RandomAffine(rotation=20)])
    same = Subset(dataset, [0] * 8)  # one sample eight times, spread over both workers
    loader = DataLoader(same, batch_size=1, collate_fn=collate_ctc, num_workers=2)
    outputs = [batch["landmarks"][0] for batch in loader]
    assert all(not torch.equal(outputs[i], outputs[j]) for i in range(8) for j in range(i))


class Subset(torch.utils.data.Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


def test_demo_tree_extracted_in_workers_gives_the_same_batches_twice(demo_tree, tmp_path):
    dataset = PhoenixLandmarks(demo_tree["PHOENIX-2014-T"], "train", cache=tmp_path / "cache", settings=FAKE)
    cold = batches(dataset, seed=11)  # the workers extract and transform
    warm = batches(dataset, seed=11)  # read back from the cache
    assert sum(len(b["id"]) for b in cold) == len(dataset) and same_batches(cold, warm)
    assert all(b["landmarks"].shape[2] == len(SelectPoints("pose_upper_body", *HANDS, "lips").layout_ids(543))
               for b in cold)
