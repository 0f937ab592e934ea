"""The demo tree: real layouts that read_corpus reads, frames in which MediaPipe Holistic finds hands."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from phoenix_data.corpus import SPLITS, find_release, read_corpus
from phoenix_data.demo import DEMO_SAMPLES, MARKER, STRAY_FILE, build_demo

REPO = Path(__file__).resolve().parents[1]
RELEASE_NAMES = ("phoenix-2014-multisigner", "phoenix-2014-signerindependent-SI5", "PHOENIX-2014-T")
COUNTS = {"train": 3, "dev": 2, "test": 2}
UMLAUTS = set("äöüßÄÖÜ")


@pytest.fixture(scope="session")
def demo_roots(demo_tree) -> Dict[str, Path]:
    """The session's demo tree (conftest), read only."""
    return demo_tree


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


@pytest.mark.parametrize("index", [0, 2])  # a signer sample and a person sample
def test_frames_move_and_keep_colours(demo_roots, index):
    sample = read_corpus(demo_roots["phoenix-2014-multisigner"], "train")[index]
    frames = [cv2.imread(str(p)) for p in sorted(sample.frames_dir.glob("*.png"))]
    assert all((a != b).any() for a, b in zip(frames, frames[1:])), "consecutive frames are identical"
    face = frames[0][45:85, 85:125].reshape(-1, 3).mean(axis=0)  # upper middle: the face
    blue, red = face[0], face[2]  # cv2 reads BGR; a BGR/RGB mix-up on writing would turn skin blue
    assert red > blue + 25, f"the face is not skin-coloured: BGR mean {face}"


def test_samples_are_all_different(demo_roots):
    firsts = [cv2.imread(str(sorted(s.frames_dir.glob("*.png"))[0]))
              for root in demo_roots.values() for split in SPLITS for s in read_corpus(root, split)]
    assert len(firsts) == 21
    for i, a in enumerate(firsts):
        for b in firsts[i + 1:]:
            assert np.abs(a.astype(int) - b).mean() > 2, "two demo samples start with the same picture"


def test_package_ships_the_frames_with_their_licence():
    from phoenix_data.demo import CLIP_FRAMES, FRAMES_DIR

    assert sorted(p.name for p in FRAMES_DIR.glob("*.jpg")) == sorted(
        [f"signer_{n:02d}.jpg" for n in range(1, 10)] + [f"person_{n:02d}.jpg" for n in range(15, 45)])
    assert sum(CLIP_FRAMES.values()) == 39
    licence = (FRAMES_DIR / "LICENSE-pose-format-MIT.txt").read_text()
    assert "MIT License" in licence and "Amit Moryossef" in licence
    readme = (FRAMES_DIR / "README.md").read_text()
    assert "sign-language-processing/pose" in readme and "22a7f2e6c5ba703ab1586913360c913068853b3c" in readme
    size = sum(p.stat().st_size for p in FRAMES_DIR.iterdir())
    assert size < 700_000, f"the demo frames take {size} bytes of the wheel"


def test_stray_file_in_one_2014t_folder(demo_roots):
    strays = list(demo_roots["PHOENIX-2014-T"].rglob(STRAY_FILE))
    assert len(strays) == 1 and any(strays[0].parent.glob("images0001.png"))
    assert not list(demo_roots["phoenix-2014-multisigner"].rglob(STRAY_FILE))


@pytest.mark.slow
def test_build_is_deterministic_and_rebuilds_in_place(demo_dir, tmp_path):
    first = tmp_path / "a"
    build_demo(first)
    files = _all_files(first)
    assert len([f for f in files if f.endswith(".png")]) == 3 * sum(
        8 + (3 * i) % 7 for i in range(sum(COUNTS.values())))
    assert files == _all_files(demo_dir)  # the session's, built earlier in this process
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


def _found(holistic, png: Path) -> Tuple[bool, bool, bool, bool]:
    result = holistic.process(cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB))
    return tuple(getattr(result, f"{part}_landmarks") is not None
                 for part in ("pose", "face", "left_hand", "right_hand"))


@pytest.mark.legacy
@pytest.mark.in_child  # a Holistic in the pytest process would break DataLoader workers forked later
def test_holistic_finds_both_hands_of_the_signer_and_loses_the_person_s_hand(demo_roots):
    mp = pytest.importorskip("mediapipe")
    signer, person = (read_corpus(demo_roots["phoenix-2014-multisigner"], "train")[i] for i in (0, 2))
    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as holistic:
        found = {}
        for sample in (signer, person):
            holistic.reset()  # a new video: no tracking carried over from the last one
            found[sample.id] = [_found(holistic, png) for png in sorted(sample.frames_dir.glob("*.png"))]
    for sample in (signer, person):
        assert len(found[sample.id]) >= 8
        assert all(pose and face for pose, face, _, _ in found[sample.id]), f"no pose or face in {sample.id}"
    assert all(left and right for _, _, left, right in found[signer.id]), found[signer.id]
    right = [r for _, _, _, r in found[person.id]]
    assert not any(left for _, _, left, _ in found[person.id])  # the person's left hand is out of view
    assert len(right) / 2 <= sum(right) < len(right), f"right hand found in {sum(right)} of {len(right)} frames"


def _detection_rows(stdout: str) -> Dict[str, List[str]]:
    lines = stdout.split("Detection (", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {line.split()[0]: line.split() for line in lines}


@pytest.mark.mediapipe
def test_demo_run_finds_hands_in_most_frames(tmp_path):
    """The README's first command on 2014-T, then the sanity check's report: hands found, some missing."""
    out = tmp_path / "demo"
    warm = subprocess.run([sys.executable, "-m", "phoenix_data.cli", "warm-cache", "--demo", "--demo-dir", str(out),
                           "--release", "2014-T", "--workers", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert warm.returncode == 0, warm.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "phoenix_data.cli", "dataset", "--root",
                            str(out / "PHOENIX-2014-T-release-v3"), "--cache", str(out / "cache")],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
    rows = _detection_rows(check.stdout)
    assert sorted(rows) == sorted(SPLITS)
    hands = {split: [float(v.rstrip("%")) for v in row[3:7]] for split, row in rows.items()}
    for split, (pose, face, left, right) in hands.items():
        assert pose == face == 100.0, check.stdout
        assert left > 50 and right > 50, f"{split}: hands in too few frames\n{check.stdout}"
    frames = {split: int(row[2]) for split, row in rows.items()}
    overall = {side: sum(hands[s][2 + k] * frames[s] for s in SPLITS) / sum(frames.values())
               for k, side in enumerate(("left", "right"))}
    assert all(70 < rate < 100 for rate in overall.values()), overall  # mostly found, sometimes missing


@pytest.mark.slow
def test_command_line_prints_the_roots(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "phoenix_data.demo", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in RELEASE_NAMES:
        line = next(line for line in done.stdout.splitlines() if line.startswith(f"{name}: "))
        root = Path(line.split(": ", 1)[1])
        assert root.is_dir() and find_release(root).name == name


@pytest.mark.slow
def test_a_built_wheel_ships_the_demo_frames(tmp_path):
    """``pip install .`` (not editable) installs a wheel: it must carry the frames, licence and README."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        (source / name).write_bytes((REPO / name).read_bytes())
    shutil.copytree(REPO / "phoenix_data", source / "phoenix_data",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # no build isolation: the build uses this venv's setuptools instead of fetching one from an index
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("phoenix_data-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {Path(n).name for n in archive.namelist() if n.startswith("phoenix_data/demo/frames/")}
    expected = {p.name for p in (REPO / "phoenix_data" / "demo" / "frames").iterdir()}
    assert shipped == expected and len(shipped) == 41
