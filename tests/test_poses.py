""".pose files (pose-format): export a cache, read it back with pose-format itself, import it again.

Most tests use records of the fake extractor in a real cache and pose-format's own reader, visualizer and
normalisation; one compares the header with pose-format's ``holistic_components()`` and one imports what
pose-format's own ``load_holistic`` extracted from real frames with hands (both need mediapipe 0.10.21).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import fake_record, legacy_mediapipe_only, write_corpus_csv

from phoenix_data.cache import LandmarkCache
from phoenix_data.cli.check import main as check_main
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.formats.poses import PoseFormatError, from_pose, holistic_header, read_pose, to_pose, write_pose
from phoenix_data.record import LandmarkRecord, part_slices

pose_format = pytest.importorskip("pose_format", reason="pose-format is not installed: pip install -e '.[pose]'")
from pose_format import Pose  # noqa: E402
from pose_format.pose_visualizer import PoseVisualizer  # noqa: E402

FAKE = FakeExtractorSettings()
RELEASE = "PHOENIX-2014-T"
HANDS = Path(__file__).resolve().parent / "fixtures" / "hands" / "signer_both_hands_9"
S = part_slices(543)


def record_with_gaps(frames: int, seed: int) -> LandmarkRecord:
    """A plausible record; the right hand missing in every other frame, landmarks already float16 values."""
    record = fake_record(frames, seed=seed)
    landmarks = record.landmarks.astype(np.float16).astype(np.float32)
    confidence = record.confidence.copy()
    landmarks[::2, S["right_hand"]] = 0
    confidence[::2, S["right_hand"]] = 0
    return LandmarkRecord(landmarks, confidence, width=210, height=260)


@pytest.fixture
def cached_tree(tmp_path):
    """A 2014-T tree (no frames) whose train and dev samples are cached, except dev's last one."""
    for split, count in (("train", 3), ("dev", 2)):
        rows = [f"{split}{i}|{split}{i}/1/*.png|-1|-1|Signer01|MORGEN SONNE|satz" for i in range(count)]
        root = write_corpus_csv(tmp_path, RELEASE, split, rows).parents[2]
    store = LandmarkCache(tmp_path / "cache", FAKE)
    for key, seed in (("train/train0", 0), ("train/train1", 1), ("train/train2", 2), ("dev/dev0", 3)):
        store.put(f"{RELEASE}/{key}", record_with_gaps(6 + seed, seed))
    store.close()
    return root, tmp_path / "cache"


def test_export_writes_pose_files_pose_format_reads_draws_and_normalises(cached_tree, tmp_path, capsys):
    root, cache = cached_tree
    out = tmp_path / "poses"
    assert check_main(["--root", str(root), "--cache", str(cache), "--export-poses", str(out)], spec=FAKE) == 0
    printed = capsys.readouterr().out
    assert f"wrote 4 .pose files to {out}" in printed and f"{RELEASE}/dev/dev1" in printed  # missing: listed
    store = LandmarkCache(cache, FAKE, readonly=True)
    for key in ("train/train0", "train/train2", "dev/dev0"):
        pose = Pose.read((out / RELEASE / f"{key}.pose").read_bytes())
        stored = store.get(f"{RELEASE}/{key}")
        assert [c.name for c in pose.header.components] == ["POSE_LANDMARKS", "FACE_LANDMARKS",
                                                           "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"]
        assert (pose.header.dimensions.width, pose.header.dimensions.height) == (210, 260)
        assert pose.body.fps == 25 and pose.body.data.shape == (stored.num_frames, 1, 543, 3)
        found = pose.body.confidence[:, 0] > 0
        np.testing.assert_allclose(pose.body.data.data[:, 0, :, :2][found],
                                   (stored.landmarks[..., :2] * [210, 260])[found], rtol=1e-6)
        np.testing.assert_array_equal(pose.body.confidence[:, 0], stored.confidence)
        assert pose.body.data.mask[::2, 0, S["right_hand"]].all()  # a missing hand is masked, as pose-format does
        frame = next(iter(PoseVisualizer(pose).draw()))
        assert frame.shape == (260, 210, 3) and frame.any()
        pose.normalize()  # pose-format's own normalisation (shoulders) runs on it
    assert not (out / RELEASE / "dev" / "dev1.pose").exists()


def test_export_resumes_keeping_what_is_there(cached_tree, tmp_path, capsys):
    root, cache = cached_tree
    args = ["--root", str(root), "--cache", str(cache), "--export-poses", str(tmp_path / "poses"), "--split", "train"]
    assert check_main(args, spec=FAKE) == 0
    (tmp_path / "poses" / RELEASE / "train" / "train1.pose").unlink()  # as if interrupted before it
    capsys.readouterr()
    assert check_main(args, spec=FAKE) == 0
    assert "wrote 1 .pose files to" in (printed := capsys.readouterr().out) and "(2 already there, kept)" in printed
    assert sorted(p.name for p in (tmp_path / "poses" / RELEASE / "train").iterdir()) == [
        "train0.pose", "train1.pose", "train2.pose"]


def test_export_without_a_cache_is_a_usage_error(cached_tree, tmp_path, capsys):
    root, _ = cached_tree
    with pytest.raises(SystemExit) as exit_info:
        check_main(["--root", str(root), "--export-poses", str(tmp_path / "p")], spec=FAKE)
    assert exit_info.value.code == 2 and "--export-poses DIR needs --cache" in capsys.readouterr().err


def test_import_gives_back_the_records(tmp_path):
    for seed in range(3):
        record = record_with_gaps(7, seed)
        write_pose(tmp_path / f"{seed}.pose", record)
        back = read_pose(tmp_path / f"{seed}.pose")
        np.testing.assert_allclose(back.landmarks, record.landmarks, atol=1e-5)
        np.testing.assert_array_equal(back.confidence, record.confidence)
        np.testing.assert_array_equal(back.presence(), record.presence())
        assert (back.width, back.height) == (210, 260)


def test_the_world_landmarks_of_a_five_component_file_are_dropped(tmp_path):
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent

    record = record_with_gaps(4, 0)
    pose = to_pose(record)
    world = PoseHeaderComponent("POSE_WORLD_LANDMARKS", list(pose.header.components[0].points), [], [(255, 0, 0)],
                                "XYZC")
    header = PoseHeader(0.2, pose.header.dimensions, [*pose.header.components, world])
    data = np.concatenate([pose.body.data.data, np.ones((4, 1, 33, 3), np.float32)], axis=2)
    confidence = np.concatenate([pose.body.confidence, np.ones((4, 1, 33), np.float32)], axis=2)
    back = from_pose(Pose(header, NumPyPoseBody(25, data, confidence)))
    np.testing.assert_allclose(back.landmarks, record.landmarks, atol=1e-5)


def test_other_layouts_truncated_files_and_a_refined_face_are_refused(tmp_path):
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    body_135 = PoseHeaderComponent("BODY_135", [str(i) for i in range(135)], [], [(255, 0, 0)], "XYZC")
    openpose = Pose(PoseHeader(0.1, PoseHeaderDimensions(210, 260, 0), [body_135]),
                    NumPyPoseBody(25, np.zeros((2, 1, 135, 3), np.float32), np.ones((2, 1, 135), np.float32)))
    with pytest.raises(PoseFormatError, match=r"components BODY_135 135; expected MediaPipe Holistic's "
                                              r"POSE_LANDMARKS 33, FACE_LANDMARKS 468, LEFT_HAND_LANDMARKS 21, "
                                              r"RIGHT_HAND_LANDMARKS 21"):
        from_pose(openpose)
    write_pose(tmp_path / "a.pose", record_with_gaps(5, 0))
    data = (tmp_path / "a.pose").read_bytes()
    (tmp_path / "cut.pose").write_bytes(data[: len(data) // 2])
    with pytest.raises(PoseFormatError, match="cut.pose is not a readable .pose file"):
        read_pose(tmp_path / "cut.pose")
    refined = LandmarkRecord(np.zeros((2, 553, 3), np.float32), np.zeros((2, 553), np.float32), 210, 260)
    write_pose(tmp_path / "refined.pose", refined)
    with pytest.raises(PoseFormatError, match="FACE_LANDMARKS 478"):
        read_pose(tmp_path / "refined.pose")  # the cache's settings hold 543 points
    assert read_pose(tmp_path / "refined.pose", num_points=553).landmarks.shape == (2, 553, 3)


def test_without_pose_format_the_error_gives_the_install_command(tmp_path):
    code = ("import sys; sys.modules['pose_format'] = None\n"
            "from phoenix_data.formats.poses import read_pose\n"
            f"read_pose({str(tmp_path / 'x.pose')!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "pip install -e '.[pose]'" in done.stderr, done.stderr


@legacy_mediapipe_only
def test_the_header_is_pose_formats_own(tmp_path):
    from pose_format.utils.holistic import holistic_components

    for extra, face in ((0, 468), (10, 478)):
        ours = holistic_header(210, 260, face).components
        theirs = holistic_components("XYZC", extra)[:4]
        for a, b in zip(ours, theirs):
            assert (a.name, a.points, a.format) == (b.name, list(b.points), b.format)
            assert [tuple(x) for x in a.limbs] == [tuple(map(int, x)) for x in b.limbs]
            assert [tuple(x) for x in a.colors] == [tuple(x) for x in b.colors]


@legacy_mediapipe_only
@pytest.mark.in_child  # runs MediaPipe here: in a throw-away child
def test_poses_pose_format_extracted_import_as_our_own_extraction(tmp_path):
    """pose-format's load_holistic (its code, mediapipe 0.10.21) on real frames with hands, written as .pose and
    imported, against phoenix_data's own extraction of the same frames: x, y within 0.005, presence identical."""
    from pose_format.utils.holistic import load_holistic

    from phoenix_data.extract import get_extractor
    from phoenix_data.extract.mediapipe.settings import HolisticSettings
    from phoenix_data.frames import list_frames, read_frames_rgb

    frames = list(read_frames_rgb(list_frames(HANDS)))
    height, width = frames[0].shape[:2]
    theirs = load_holistic(frames, fps=25, width=width, height=height)
    with open(tmp_path / "theirs.pose", "wb") as out:
        theirs.write(out)
    imported = read_pose(tmp_path / "theirs.pose")
    ours = get_extractor(HolisticSettings()).extract(iter(frames))
    np.testing.assert_array_equal(imported.presence(), ours.presence())
    both = imported.confidence > 0
    assert np.abs(imported.landmarks[..., :2] - ours.landmarks[..., :2])[both].max() < 0.005


# --- filling a cache from .pose files: phoenix-warm-cache --from-poses ------------------------------------

@pytest.fixture(scope="module")
def exported(demo_dir, tmp_path_factory):
    """The demo tree's 2014-T samples warmed by the fake extractor, then exported as .pose files."""
    from phoenix_data.warm import WarmOptions, warm

    base = tmp_path_factory.mktemp("exported")
    options = WarmOptions(root=demo_dir, cache=base / "fake", release="2014-T", workers=0, settings=FAKE,
                          progress_bar=False, heartbeat=0)
    assert warm(options).exit_status == 0
    assert check_main(["--root", str(demo_dir), "--release", "2014-T", "--cache", str(base / "fake"),
                       "--export-poses", str(base / "poses")], spec=FAKE) == 0
    return base


def keys_of(root) -> list:
    from phoenix_data.corpus import find_release, read_release_split

    return [s.key for split in ("train", "dev", "test") for s in read_release_split(find_release(root, "2014-T"),
                                                                                     split)]


def test_from_poses_fills_a_cache_with_the_same_landmarks_running_no_extractor(demo_dir, exported, tmp_path):
    from phoenix_data.cli.warm import main as warm_main
    from phoenix_data.formats.imported import PoseFileSettings

    args = ["--root", str(demo_dir), "--release", "2014-T", "--cache", str(tmp_path / "c"),
            "--from-poses", str(exported / "poses"), "--workers", "2"]
    assert warm_main(args) == 0
    imported = LandmarkCache(tmp_path / "c", PoseFileSettings(str(exported / "poses")), readonly=True)
    original = LandmarkCache(exported / "fake", FAKE, readonly=True)
    for key in keys_of(demo_dir):
        a, b = imported.get(key), original.get(key)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=2**-11)  # stored as float16 twice
        np.testing.assert_array_equal(a.presence(), b.presence())
    assert warm_main(args) == 0  # a rerun resumes: nothing left to do
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["counts"]["cached"] == len(keys_of(demo_dir)) and summary["counts"]["extracted"] == 0


def test_a_file_of_other_frames_or_none_is_that_samples_failure(demo_dir, exported, tmp_path, capsys):
    from phoenix_data.cli.warm import main as warm_main

    poses = tmp_path / "poses"
    shutil.copytree(exported / "poses", poses)
    keys = keys_of(demo_dir)
    short, gone, cut = (poses / f"{k}.pose" for k in keys[:3])
    record = read_pose(short)
    write_pose(short, LandmarkRecord(record.landmarks[:-1], record.confidence[:-1], 210, 260))
    gone.unlink()
    cut.write_bytes(cut.read_bytes()[:100])
    code = warm_main(["--root", str(demo_dir), "--release", "2014-T", "--cache", str(tmp_path / "c"),
                      "--from-poses", str(poses), "--workers", "0"])
    assert code == 1
    failed = {f["key"]: f["reason"] for f in json.loads((tmp_path / "c" / "failed_samples.json").read_text())}
    assert set(failed) == set(keys[:3])
    assert f"holds {record.num_frames - 1} frames, its frame folder" in failed[keys[0]]
    assert f"{record.num_frames}." in failed[keys[0]]
    assert "no .pose file" in failed[keys[1]] and "not a readable .pose file" in failed[keys[2]]


def test_an_imported_cache_and_an_extracted_one_refuse_each_other(demo_dir, exported, tmp_path, capsys):
    from phoenix_data.cli.warm import main as warm_main

    scope = ["--root", str(demo_dir), "--release", "2014-T", "--workers", "0"]
    with pytest.raises(SystemExit) as exit_info:  # files into a cache the fake extracted
        warm_main([*scope, "--cache", str(exported / "fake"), "--from-poses", str(exported / "poses")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "was built with other extraction settings" in err
    assert "source: cache None, now 'pose-format files'" in err, err
    assert warm_main([*scope, "--cache", str(tmp_path / "c"), "--from-poses", str(exported / "poses")]) == 0
    with pytest.raises(SystemExit) as exit_info:  # an extractor into a cache filled from files
        warm_main([*scope, "--cache", str(tmp_path / "c")], spec=FAKE)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "source: cache 'pose-format files', now None" in err, err


def test_from_poses_names_a_missing_folder(demo_dir, tmp_path, capsys):
    from phoenix_data.cli.warm import main as warm_main

    with pytest.raises(SystemExit) as exit_info:
        warm_main(["--root", str(demo_dir), "--cache", str(tmp_path / "c"), "--from-poses", str(tmp_path / "nope")])
    assert exit_info.value.code == 2 and "no such folder; expected the folder of .pose files" in capsys.readouterr().err
