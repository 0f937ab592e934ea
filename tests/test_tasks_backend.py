"""The tasks backend (HolisticLandmarker on a bundle built offline) against the legacy one, on real frames.

Real MediaPipe runs in one spawned process for the module (none in the pytest process); real LMDB
caches; the bundle is built from the installed mediapipe 0.10.21 into a temporary models folder.
Python 3.13+ has no legacy backend: tests/test_py313 covers the tasks backend there.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest

from phoenix_data.cache import CacheError, LandmarkCache
from phoenix_data.extract.mediapipe import bundle as model_bundle
from phoenix_data.extract.mediapipe import tflite_edit
from phoenix_data.extract.mediapipe.runtime import mediapipe_version
from phoenix_data.extract.mediapipe.settings import HolisticSettings, default_backend
from phoenix_data.record import LandmarkRecord

pytestmark = [pytest.mark.mediapipe, pytest.mark.skipif(not mediapipe_version().startswith("0.10.21"),
                                reason="compares with the legacy backend: needs mediapipe 0.10.21 (Python < 3.13)")]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLIPS = {"both_hands": FIXTURES / "hands" / "signer_both_hands_9",
         "hand_gaps": FIXTURES / "hands" / "person_hand_gaps_12",
         "phoenix": FIXTURES / "frames" / "25October_2010_Monday_tagesschau-17"}
PARTS = {"pose": slice(0, 33), "face": slice(33, 501), "left_hand": slice(501, 522), "right_hand": slice(522, 543)}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models")
    os.environ[model_bundle.MODELS_ENV] = str(path)  # inherited by the spawned process and the commands
    yield path
    os.environ.pop(model_bundle.MODELS_ENV, None)


def _extract_all(models: str) -> Dict[Tuple[str, str, bool], LandmarkRecord]:
    """Run in the spawned process: every clip by both backends, tracking and static; clips in a row."""
    from phoenix_data.extract import get_extractor
    from phoenix_data.frames import list_frames, read_frames_rgb

    os.environ[model_bundle.MODELS_ENV] = models
    out = {}
    for static in (False, True):
        for backend in ("legacy", "tasks"):
            extractor = get_extractor(HolisticSettings(backend=backend, static_image_mode=static))
            for name, folder in CLIPS.items():
                out[(name, backend, static)] = extractor.extract(read_frames_rgb(list_frames(folder)))
    # the tasks extractor's result for a clip must not depend on the clip it read before
    tracking = get_extractor(HolisticSettings(backend="tasks"))
    out[("both_hands", "tasks-again", False)] = tracking.extract(read_frames_rgb(list_frames(CLIPS["both_hands"])))
    return out


@pytest.fixture(scope="module")
def extracted(models_dir) -> Dict[Tuple[str, str, bool], LandmarkRecord]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_extract_all, str(models_dir)).result()


def mean_xy_error(a: LandmarkRecord, b: LandmarkRecord, part: str, column: int) -> float:
    both = a.found[:, column] & b.found[:, column]
    return float(np.abs(a.landmarks[both][:, PARTS[part], :2] - b.landmarks[both][:, PARTS[part], :2]).mean())


# (clip, static) -> the mean |x,y| difference each part must stay within. The bounds (pose and
# hands 0.003, face 0.005) where they hold; where the two graphs differ more, the bound is the measured
# value with headroom, and the README says so (tracking: the graphs smooth differently; static: the
# hand crop differs on one clip).
BOUNDS = {
    ("both_hands", False): {"pose": 0.003, "face": 0.005, "left_hand": 0.003, "right_hand": 0.003},
    ("phoenix", False): {"pose": 0.003, "face": 0.005},
    ("phoenix", True): {"pose": 0.003, "face": 0.005},
    ("both_hands", True): {"pose": 0.003, "face": 0.005, "left_hand": 0.003, "right_hand": 0.006},
    ("hand_gaps", False): {"pose": 0.008, "face": 0.006, "right_hand": 0.025},
    ("hand_gaps", True): {"pose": 0.003, "face": 0.005},
}


@pytest.mark.parametrize("clip,static", sorted(BOUNDS), ids=lambda v: str(v))
def test_tasks_agrees_with_legacy(extracted, clip, static):
    legacy, tasks = extracted[(clip, "legacy", static)], extracted[(clip, "tasks", static)]
    assert tasks.landmarks.shape == legacy.landmarks.shape == (len(legacy.landmarks), 543, 3)
    for column, part in enumerate(PARTS):
        if (clip, static) != ("hand_gaps", True) or part != "right_hand":
            # presence per part and frame: identical (the one exception is measured below)
            assert (tasks.found[:, column] == legacy.found[:, column]).all(), (clip, static, part)
        bound = BOUNDS[(clip, static)].get(part)
        if bound is not None:
            assert legacy.found[:, column].any(), (clip, part)
            assert mean_xy_error(legacy, tasks, part, column) <= bound, (clip, static, part)


def test_static_right_hand_on_the_gaps_clip_differs_in_at_most_one_frame(extracted):
    legacy, tasks = extracted[("hand_gaps", "legacy", True)], extracted[("hand_gaps", "tasks", True)]
    assert (legacy.found[:, 3] != tasks.found[:, 3]).sum() <= 1


def test_tasks_records_have_the_legacy_layout_and_confidence(extracted):
    record = extracted[("both_hands", "tasks", False)]
    assert record.found.all()  # every part in every frame of this clip (as with legacy)
    assert record.confidence[:, 33:].min() == 1.0  # face and hands found: 1
    assert 0.0 < record.confidence[:, :33].mean() <= 1.0  # pose: visibility
    gaps = extracted[("hand_gaps", "tasks", False)]
    missing = ~gaps.found[:, 3]
    assert missing.any() and not gaps.landmarks[missing][:, PARTS["right_hand"]].any()
    assert not gaps.confidence[missing][:, PARTS["right_hand"]].any()


def test_a_sample_does_not_depend_on_the_one_read_before(extracted):
    first = extracted[("both_hands", "tasks", False)]  # read first, by a fresh extractor
    again = extracted[("both_hands", "tasks-again", False)]  # read after the other clips
    np.testing.assert_array_equal(first.landmarks, again.landmarks)


# --- the bundle ------------------------------------------------------------------------------------

def test_the_bundle_build_is_deterministic_and_holds_the_edited_models(tmp_path):
    a = model_bundle.build_bundle(tmp_path / "a.task")
    b = model_bundle.build_bundle(tmp_path / "b.task")
    assert (tmp_path / "a.task").read_bytes() == (tmp_path / "b.task").read_bytes()
    assert a.sha256 == b.sha256 and a.face_points == 468
    with zipfile.ZipFile(tmp_path / "a.task") as zf:
        assert sorted(zf.namelist()) == sorted(model_bundle.BUNDLE_MODELS)
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 4 == 0  # aligned
        face = zf.read("face_landmarks_detector.tflite")
        assert tflite_edit.output_shapes(face)[0] == [1, 1, 1, 1434] and tflite_edit.is_padded(face)
        for name in ("pose_landmarks_detector.tflite", "hand_roi_refinement.tflite"):
            assert "TFLITE_METADATA" in tflite_edit.metadata_names(zf.read(name))
    manifest = json.loads(model_bundle.manifest_path(tmp_path / "a.task").read_text())
    assert manifest["sha256"] == a.sha256 and manifest["format"] == model_bundle.BUILD_FORMAT


def test_edits_refuse_what_they_do_not_expect():
    modules = model_bundle.installed_legacy_modules()
    face = (modules / "face_landmark/face_landmark.tflite").read_bytes()
    with pytest.raises(tflite_edit.ModelEditError, match="already has TFLITE_METADATA"):
        tflite_edit.add_image_normalization(face, "face")
    with pytest.raises(tflite_edit.ModelEditError, match="not a TFLite model"):
        tflite_edit.pad_output(b"PK\x03\x04" + bytes(100), 0, 30)
    assert not tflite_edit.is_padded(face)


def test_a_damaged_or_foreign_bundle_is_refused_with_the_command_that_fixes_it(tmp_path):
    path = tmp_path / "holistic_landmarker.task"
    model_bundle.build_bundle(path)
    model_bundle.load_bundle(path)
    with open(path, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(model_bundle.BundleError, match=r"damaged.*phoenix-models build --force"):
        model_bundle.load_bundle(path)
    other = tmp_path / "other.task"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pose_detector.tflite", b"")
    other.write_bytes(buf.getvalue())
    with pytest.raises(model_bundle.BundleError, match="not a HolisticLandmarker bundle: it lacks"):
        model_bundle.load_bundle(other)
    with pytest.raises(model_bundle.BundleError, match=r"no model bundle at .*phoenix-models build --out"):
        model_bundle.load_bundle(tmp_path / "missing.task")


def test_phoenix_models_builds_once_and_shows_the_bundle(tmp_path):
    env = dict(os.environ, PHOENIX_DATA_MODELS=str(tmp_path))
    run = [sys.executable, "-m", "phoenix_data.cli.models"]
    built = subprocess.run(run + ["build"], env=env, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert "wrote" in built.stdout and (tmp_path / "holistic_landmarker.task").is_file()
    again = subprocess.run(run + ["build"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "intact" in again.stdout
    shown = subprocess.run(run + ["show"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "468" in shown.stdout and "(checked)" in shown.stdout
    (tmp_path / "holistic_landmarker.task").write_bytes(b"broken")
    broken = subprocess.run(run + ["show"], env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "phoenix-models build --force" in broken.stderr


# --- settings and caches ---------------------------------------------------------------------------

def test_default_backend_and_legacy_identity_are_what_they_were(models_dir):
    assert default_backend() == "legacy" and HolisticSettings().backend == "legacy"
    identity = HolisticSettings().identity()
    assert set(identity) == {"settings", "mediapipe", "schema"}  # caches from before backends still open
    assert "backend" not in identity["settings"]
    tasks = HolisticSettings(backend="tasks").identity()
    assert tasks["backend"] == "tasks" and len(tasks["model_bundle_sha256"]) == 64
    assert HolisticSettings(backend="tasks").fingerprint() != HolisticSettings().fingerprint()


@pytest.mark.parametrize("kwargs,match", [
    ({"backend": "onnx"}, r"backend='onnx'; expected one of 'legacy', 'tasks'"),
    ({"backend": "tasks", "model_complexity": 2}, "full pose model only"),
    ({"backend": "tasks", "smooth_landmarks": False}, "no such switch"),
    ({"backend": "legacy", "model_bundle": "x.task"}, "is for backend='tasks'"),
])
def test_settings_refuse_what_a_backend_cannot_do(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HolisticSettings(**kwargs)


def test_refined_face_needs_a_bundle_with_the_refined_model(models_dir):
    with pytest.raises(ValueError, match="refined face model"):
        HolisticSettings(backend="tasks", refine_face_landmarks=True).check_ready()


def test_caches_of_the_two_backends_refuse_each_other(tmp_path, models_dir):
    LandmarkCache(tmp_path / "legacy", HolisticSettings()).close()
    with pytest.raises(CacheError, match=r"backend: cache 'legacy', now 'tasks'.*--overwrite"):
        LandmarkCache(tmp_path / "legacy", HolisticSettings(backend="tasks"))
    LandmarkCache(tmp_path / "tasks", HolisticSettings(backend="tasks")).close()
    with pytest.raises(CacheError, match=r"backend: cache 'tasks', now 'legacy'"):
        LandmarkCache(tmp_path / "tasks", HolisticSettings(), readonly=True)
    other = tmp_path / "other.task"
    model_bundle.build_bundle(other, source=models_dir / "holistic_landmarker.task")
    assert model_bundle.load_bundle(other).sha256 == model_bundle.load_bundle().sha256  # same bundle: same cache
    LandmarkCache(tmp_path / "tasks", HolisticSettings(backend="tasks", model_bundle=str(other))).close()


# --- the Dataset, through DataLoader workers -------------------------------------------------------

def _extract_folder(models: str, folder: str) -> LandmarkRecord:
    from phoenix_data.extract import extract_frames_dir

    os.environ[model_bundle.MODELS_ENV] = models
    return extract_frames_dir(folder, HolisticSettings(backend="tasks"))


def test_the_dataset_extracts_with_the_tasks_backend_in_two_workers(demo_tree, tmp_path, models_dir):
    from torch.utils.data import DataLoader

    from phoenix_data.dataset import PhoenixLandmarks
    from phoenix_data.extract.mediapipe.runtime import holistic_builds

    release = "PHOENIX-2014-T"
    dataset = PhoenixLandmarks(demo_tree[release], "train", cache=tmp_path / "cache",
                               settings=HolisticSettings(backend="tasks"))
    items = {item["id"]: item for item in DataLoader(dataset, batch_size=None, num_workers=2)}
    assert holistic_builds() == 0, "the main process built a landmarker"
    assert len(items) == len(dataset) == 3
    sample = dataset.samples[0]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        direct = pool.submit(_extract_folder, str(models_dir), str(sample.frames_dir)).result()
    # the cache stores float16: the same numbers, rounded
    np.testing.assert_array_equal(items[sample.id]["landmarks"].numpy(),
                                  direct.landmarks.astype(np.float16).astype(np.float32))
    stored = LandmarkCache(tmp_path / "cache", HolisticSettings(backend="tasks"), readonly=True).metadata()
    assert stored["backend"] == "tasks" and stored["model_bundle_sha256"] == model_bundle.load_bundle().sha256


def test_the_commands_take_the_backend_and_refuse_what_it_cannot_do(tmp_path):
    from phoenix_data.cli.common import settings_flags
    from phoenix_data.cli.warm import build_parser as build_warm_parser

    parser = build_warm_parser()
    args = parser.parse_args(["--demo", "--backend", "tasks", "--static-image-mode"])
    assert settings_flags(parser, args) == " --static-image-mode --backend tasks"
    env = dict(os.environ, PHOENIX_DATA_MODELS=str(tmp_path / "models"))
    bad = subprocess.run([sys.executable, "-m", "phoenix_data.cli", "warm-cache", "--demo", "--demo-dir",
                          str(tmp_path / "demo"), "--backend", "tasks", "--model-complexity", "2"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "full pose model only; use model_complexity=1" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "phoenix_data.cli", "dataset", "--root", str(tmp_path),
                              "--backend", "tasks", "--model-bundle", str(tmp_path / "none.task")],
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no model bundle at" in missing.stderr
    assert "phoenix-models build" in missing.stderr


def test_processes_that_need_the_bundle_at_once_build_it_once(tmp_path):
    env = dict(os.environ, PHOENIX_DATA_MODELS=str(tmp_path))
    code = ("import logging; logging.basicConfig(); from phoenix_data.extract.mediapipe.bundle import load_bundle; "
            "print(load_bundle().sha256)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len({out.strip() for out, _ in outs}) == 1  # one bundle, the same digest everywhere
    assert sum("building the MediaPipe model bundle" in err for _, err in outs) == 1, outs


def _refined_like_bundle(path: Path) -> None:
    """A bundle whose face model gives 478 points of its own (as an official one does): here the legacy
    face model padded, but without the marker that says so, which is all the loader looks at."""
    modules = model_bundle.installed_legacy_modules()
    models = model_bundle.bundle_models(lambda rel: (modules / rel).read_bytes())
    face = models["face_landmarks_detector.tflite"]
    marker = tflite_edit.PAD_TENSOR_NAME.encode()
    models["face_landmarks_detector.tflite"] = face.replace(marker, b"x" * len(marker))
    path.write_bytes(model_bundle.write_bundle(models))


def test_a_bundle_with_478_face_points_serves_refined_settings_and_keeps_468_otherwise(tmp_path):
    bundle = tmp_path / "official-like.task"
    _refined_like_bundle(bundle)
    assert model_bundle.load_bundle(bundle).face_points == 478
    refined = HolisticSettings(backend="tasks", refine_face_landmarks=True, model_bundle=str(bundle))
    refined.check_ready()  # no error: the bundle has the points
    assert refined.num_points == 553 and HolisticSettings(backend="tasks", model_bundle=str(bundle)).num_points == 543
    copied = model_bundle.build_bundle(tmp_path / "models" / "holistic_landmarker.task", source=bundle)
    assert copied.face_points == 478 and copied.sha256 == model_bundle.load_bundle(bundle).sha256


BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
sys.meta_path.insert(0, _NoTorch())
from phoenix_data.cli import warm_main
sys.exit(warm_main(sys.argv[1:]))
"""


def test_a_command_without_torch_says_how_to_install_it(tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "--demo", "--demo-dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "phoenix-warm-cache: error: this command needs torch" in done.stderr and "Traceback" not in done.stderr
