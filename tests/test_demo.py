"""The demo tree: real layouts that read_corpus reads, frames MediaPipe Holistic finds a person in."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict

import cv2
import pytest

from phoenix_data.corpus import SPLITS, find_release, read_corpus
from phoenix_data.demo import DEMO_SAMPLES, MARKER, STRAY_FILE, build_demo

REPO = Path(__file__).resolve().parents[1]
RELEASE_NAMES = ("phoenix-2014-multisigner", "phoenix-2014-signerindependent-SI5", "PHOENIX-2014-T")
COUNTS = {"train": 3, "dev": 2, "test": 2}
UMLAUTS = set("äöüßÄÖÜ")


@pytest.fixture(scope="session")
def demo_roots(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return build_demo(tmp_path_factory.mktemp("demo"))


def _all_files(root: Path) -> Dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_roots_are_the_release_folders(demo_roots):
    assert list(demo_roots) == list(RELEASE_NAMES)
    archive = {"phoenix-2014-multisigner": "phoenix2014-release",
               "phoenix-2014-signerindependent-SI5": "phoenix2014-release",
               "PHOENIX-2014-T": "PHOENIX-2014-T-release-v3"}
    for name, root in demo_roots.items():
        assert root.name == name and root.parent.name == archive[name]
        assert find_release(root).name == name
        assert find_release(root.parent.parent, release=name).root == root


def test_csv_file_names(demo_roots):
    # Spelled out, not taken from corpus.RELEASES: a wrong name in that table must fail here.
    out = demo_roots["PHOENIX-2014-T"].parents[1]
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv"))
    expected = sorted(
        [f"phoenix2014-release/phoenix-2014-multisigner/annotations/manual/{s}.corpus.csv" for s in SPLITS]
        + [f"phoenix2014-release/phoenix-2014-signerindependent-SI5/annotations/manual/{s}.SI5.corpus.csv"
           for s in SPLITS]
        + [f"PHOENIX-2014-T-release-v3/PHOENIX-2014-T/annotations/manual/PHOENIX-2014-T.{s}.corpus.csv"
           for s in SPLITS])
    assert found == expected
    headers = {"phoenix-2014-multisigner": "id|folder|signer|annotation",
               "phoenix-2014-signerindependent-SI5": "id|folder|signer|annotation",
               "PHOENIX-2014-T": "name|video|start|end|speaker|orth|translation"}
    for path in found:
        lines = (out / path).read_text("utf-8").splitlines()
        assert lines[0] == headers[Path(path).parts[1]]
        assert all(line.split("|")[1] == line.split("|")[0] + "/1/*.png" for line in lines[1:])
        if "2014-T" in path:
            assert all(line.split("|")[2:4] == ["-1", "-1"] for line in lines[1:])


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_read_corpus_reads_every_split(demo_roots, release, split):
    samples = read_corpus(demo_roots[release], split)
    assert len(samples) == COUNTS[split]
    assert [s.id for s in samples] == [d.id for d in DEMO_SAMPLES[release][split]]
    for sample in samples:
        assert isinstance(sample.glosses, tuple) and sample.glosses
        assert all(isinstance(g, str) and g and not g.isspace() and g == g.strip() for g in sample.glosses)
        assert sample.signer.startswith("Signer") and len(sample.signer) == len("Signer01")
        if release == "PHOENIX-2014-T":
            assert isinstance(sample.translation, str) and sample.translation.strip()
        else:
            assert sample.translation is None


@pytest.mark.parametrize("release, sample_id, expected", [
    ("phoenix-2014-multisigner", "12March_2011_Saturday_tagesschau_default-8",
     ("HEUTE", "NACHT", "REGEN", "loc-NORD", "TEMPERATUR", "KUEHL")),
    ("phoenix-2014-signerindependent-SI5", "02December_2009_Wednesday_tagesschau_default-4",
     ("__ON__", "LIEB", "ZUSCHAUER", "ABEND", "WINTER", "KALT", "SCHNEE", "loc-NORD", "__OFF__")),
])
def test_annotation_spaces_split_right(demo_roots, release, sample_id, expected):
    root = demo_roots[release]
    raw = {line.split("|")[0]: line.split("|")[3]
           for line in find_release(root).csv_path("train").read_text("utf-8").splitlines()[1:]}
    # the file really has the quirks
    assert "  " in raw[sample_id] and raw[sample_id] != raw[sample_id].strip()
    sample = next(s for s in read_corpus(root, "train") if s.id == sample_id)
    assert sample.glosses == expected


def test_translations_have_umlauts(demo_roots):
    samples = [s for split in SPLITS for s in read_corpus(demo_roots["PHOENIX-2014-T"], split)]
    assert any(UMLAUTS & set(s.translation) for s in samples)
    assert all(s.translation == s.translation.lower() for s in samples)


def test_csv_line_endings_and_encoding(demo_roots):
    for name, root in demo_roots.items():
        for split in SPLITS:
            data = find_release(root).csv_path(split).read_bytes()
            text = data.decode("utf-8")  # strict: fails on anything but UTF-8
            assert not text.startswith("\ufeff")
            if name == "PHOENIX-2014-T":
                assert text.endswith("\r\n") and text.count("\n") == text.count("\r\n") == COUNTS[split] + 1
            else:
                assert "\r" not in text and text.count("\n") == COUNTS[split] + 1


def test_signers_of_si5(demo_roots):
    root = demo_roots["phoenix-2014-signerindependent-SI5"]
    assert {s.signer for s in read_corpus(root, "test")} == {"Signer05"}
    assert "Signer05" not in {s.signer for s in read_corpus(root, "train")}


@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_dev_and_test_have_some_unseen_glosses(demo_roots, release):
    vocabulary = {g for s in read_corpus(demo_roots[release], "train") for g in s.glosses}
    for split in ("dev", "test"):
        glosses = [g for s in read_corpus(demo_roots[release], split) for g in s.glosses]
        unseen = [g for g in glosses if g not in vocabulary]
        assert unseen, f"{release} {split}: every gloss is in train"
        assert len(unseen) <= len(glosses) / 4, f"{release} {split}: mostly unseen glosses {unseen}"


@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_frames_on_disk(demo_roots, release):
    for split in SPLITS:
        for sample in read_corpus(demo_roots[release], split):
            assert sample.frames_dir.is_dir(), sample.frames_dir
            pngs = sorted(sample.frames_dir.glob("*.png"))
            assert 8 <= len(pngs) <= 20
            for png in pngs:
                image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                assert image is not None and image.shape == (260, 210, 3) and image.dtype.name == "uint8"
            if release == "PHOENIX-2014-T":
                assert sample.frames_dir.name == sample.id
                assert [p.name for p in pngs] == [f"images{t:04d}.png" for t in range(1, len(pngs) + 1)]
            else:
                assert sample.frames_dir.name == "1" and sample.frames_dir.parent.name == sample.id
                video = sample.id.rsplit("_default-", 1)[0]
                assert [p.name for p in pngs] == [f"{video}.avi_pid0_fn{t:06d}-0.png" for t in range(len(pngs))]


def test_frames_move_and_keep_colours(demo_roots):
    sample = read_corpus(demo_roots["phoenix-2014-multisigner"], "train")[0]
    frames = [cv2.imread(str(p)) for p in sorted(sample.frames_dir.glob("*.png"))]
    assert all((a != b).any() for a, b in zip(frames, frames[1:])), "consecutive frames are identical"
    sky = frames[0][:60, -40:].reshape(-1, 3).mean(axis=0)  # top right: blue sky behind her
    blue, red = sky[0], sky[2]  # cv2 reads BGR; a BGR/RGB mix-up on writing would make the sky orange
    assert blue > red + 40, f"top-right corner is not blue: BGR mean {sky}"


def test_stray_file_in_one_2014t_folder(demo_roots):
    strays = list(demo_roots["PHOENIX-2014-T"].rglob(STRAY_FILE))
    assert len(strays) == 1 and any(strays[0].parent.glob("images0001.png"))
    assert not list(demo_roots["phoenix-2014-multisigner"].rglob(STRAY_FILE))


def test_build_is_deterministic_and_rebuilds_in_place(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    build_demo(first)
    build_demo(second)
    files = _all_files(first)
    assert len([f for f in files if f.endswith(".png")]) == 3 * sum(
        8 + (3 * i) % 7 for i in range(sum(COUNTS.values())))
    assert files == _all_files(second)
    build_demo(first)  # into an existing demo tree: overwrites, no error
    assert _all_files(first) == files


def test_refuses_a_folder_with_a_real_release(tmp_path):
    csv = tmp_path / "phoenix2014-release/phoenix-2014-multisigner/annotations/manual/train.corpus.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("id|folder|signer|annotation\n")
    with pytest.raises(FileExistsError, match="not a demo tree"):
        build_demo(tmp_path)
    assert csv.read_text() == "id|folder|signer|annotation\n"
    assert not (tmp_path / MARKER).exists()


@pytest.mark.in_child  # a Holistic in the pytest process would break DataLoader workers forked later
def test_holistic_finds_pose_and_face_in_every_frame(demo_roots):
    mp = pytest.importorskip("mediapipe")
    samples = [read_corpus(demo_roots["phoenix-2014-multisigner"], "train")[0],
               read_corpus(demo_roots["PHOENIX-2014-T"], "train")[1]]
    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as holistic:
        for sample in samples:
            holistic.reset()  # a new video: no tracking carried over from the last one
            pngs = sorted(sample.frames_dir.glob("*.png"))
            assert len(pngs) >= 8
            for png in pngs:
                rgb = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
                result = holistic.process(rgb)
                assert result.pose_landmarks is not None, f"no pose in {png}"
                assert result.face_landmarks is not None, f"no face in {png}"


def test_command_line_prints_the_roots(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "phoenix_data.demo", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in RELEASE_NAMES:
        line = next(line for line in done.stdout.splitlines() if line.startswith(f"{name}: "))
        root = Path(line.split(": ", 1)[1])
        assert root.is_dir() and find_release(root).name == name
