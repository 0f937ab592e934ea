"""phoenix-dataset, the sanity check: run as the user runs it, on the demo tree, with real LMDB files.

The report's logic runs on caches of the fast fake extractor (the command driven with it as its spec);
the report of a real cache and the picture drawn over real hands run real MediaPipe (``real_demo_cache``).

Anything that extracts uses one release and split (PHOENIX-2014-T, dev). Expected figures are computed here
from the files themselves (CSV lines, PNG files, cache records), not taken from phoenix_data.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
from helpers import raw_get, raw_put, run_forked
from PIL import Image
from torch.utils.data import DataLoader

from phoenix_data.cache import LandmarkCache
from phoenix_data.cli.check import main
from phoenix_data.cli.warm import main as warm_main
from phoenix_data.dataset import PhoenixLandmarks
from phoenix_data.extract import fork_unsafe_builds
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.render import FACE_COLOUR, LEFT_HAND_COLOUR, POSE_COLOUR, RIGHT_HAND_COLOUR

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "phoenix_dataset.py"
RELEASE = "PHOENIX-2014-T"
SI5 = "phoenix-2014-signerindependent-SI5"
SPLIT = "dev"  # the one split that is extracted
KEY_PREFIX = f"{RELEASE}/{SPLIT}/"
FAKE = FakeExtractorSettings()
FRAME_WIDTH, FRAME_HEIGHT = 210, 260
# Layout of a record, spelled out: pose 33, face 468, left hand 21, right hand 21.
PART_BOUNDS = {"pose": (0, 33), "face": (33, 501), "left_hand": (501, 522), "right_hand": (522, 543)}


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(demo_tree) -> Path:
    """The 2014-T release folder of the session's demo tree (read only: tests that change it copy it)."""
    return demo_tree[RELEASE]


def first_id(items: list) -> str:
    return items[0]["id"]


def fill(root: Path, path: Path, settings) -> Path:
    """A cache holding every dev sample, filled through DataLoader workers (no extractor in this process)."""
    dataset = PhoenixLandmarks(root, SPLIT, cache=path, settings=settings)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=first_id)
    assert sorted(loader) == sorted(s.id for s in dataset.samples)
    return path


@pytest.fixture(scope="module")
def warm_cache(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dev sample, extracted by the fake."""
    return fill(root, tmp_path_factory.mktemp("warm") / "cache", FAKE)


@pytest.fixture(scope="module")
def real_demo_cache(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dev sample, extracted by real MediaPipe (marks its tests ``mediapipe``)."""
    return fill(root, tmp_path_factory.mktemp("real") / "cache", HolisticSettings())


@pytest.fixture
def cache_copy(warm_cache: Path, tmp_path: Path) -> Path:
    """A copy of the warm cache a test may damage."""
    return Path(shutil.copytree(warm_cache, tmp_path / "cache"))


# --- helpers ----------------------------------------------------------------------------------------

# phoenix-dataset with the fake extractor as its spec (the settings flags are then unused)
FAKE_COMMAND = [sys.executable, "-c", "import sys; from phoenix_data.cli.check import main; "
                "from phoenix_data.extract.fake import FakeExtractorSettings; "
                "sys.exit(main(sys.argv[1:], spec=FakeExtractorSettings()))"]


def run(*args: object, real: bool = False, command: Optional[List[str]] = None) -> subprocess.CompletedProcess:
    """The command as a user runs it (``real``: the script, MediaPipe's settings), else with the fake: its
    ``main`` in a child forked from this process (``helpers.run_forked``: a Python start and a torch import
    less), or as a subprocess after this process built a MediaPipe graph."""
    if not real and command is None and not fork_unsafe_builds():
        return run_forked(main, args, FAKE, prog="phoenix-dataset")
    command = command or ([sys.executable, str(SCRIPT)] if real else FAKE_COMMAND)
    return subprocess.run(command + [str(a) for a in args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def section(stdout: str, title: str) -> List[str]:
    """The report lines from the one starting with ``title`` up to the next blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def row(lines: List[str], first: str) -> List[str]:
    """The cells of the table row whose first cell is ``first``."""
    return next(line.split() for line in lines if line.split()[:1] == [first])


def csv_rows(root: Path, split: str) -> List[Dict[str, str]]:
    text = (root / f"annotations/manual/PHOENIX-2014-T.{split}.corpus.csv").read_text("utf-8")
    header, *lines = text.splitlines()
    return [dict(zip(header.split("|"), line.split("|"))) for line in lines if line]


def frames_on_disk(root: Path, split: str) -> Dict[str, int]:
    """sample id -> PNG files in its folder (2014-T: features/fullFrame-210x260px/<split>/<id>/*.png)."""
    folder = root / "features" / "fullFrame-210x260px" / split
    return {r["name"]: len(list((folder / r["name"]).glob("*.png"))) for r in csv_rows(root, split)}


def cached_records(path: Path, settings=FAKE) -> Dict[str, object]:
    cache = LandmarkCache(path, settings, readonly=True)
    with cache.session():
        return {key[len(KEY_PREFIX):]: cache.get(key) for key in cache.keys() if key.startswith(KEY_PREFIX)}


def percent(share: float) -> str:
    return f"{100 * share:.1f}%"


# --- the corpus part ----------------------------------------------------------------------------------

def test_report_without_cache(root):
    done = run("--root", root.parent, command=[str(Path(sys.executable).parent / "phoenix-dataset")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Release  {RELEASE}" in done.stdout and f"Folder   {root}" in done.stdout
    corpus = section(done.stdout, "Corpus")
    train_glosses = {g for r in csv_rows(root, "train") for g in r["orth"].split()}
    for split in ("train", "dev", "test"):
        counts = list(frames_on_disk(root, split).values())
        rows = csv_rows(root, split)
        cells = row(corpus, split)
        assert cells[1:7] == [str(len(rows)), str(len({r["speaker"] for r in rows})), str(sum(counts)),
                              str(min(counts)), f"{np.mean(counts):.1f}", str(max(counts))], cells
        assert cells[-1] == "0"  # no problem samples
        if split != "train":
            tokens = [g for r in rows for g in r["orth"].split()]
            unseen = sum(g not in train_glosses for g in tokens)
            assert cells[7:10] == [percent(unseen / len(tokens)), "of", str(len(tokens))]
    assert f"Gloss vocabulary (train): {len(train_glosses)} glosses" in done.stdout
    assert "Cache" not in done.stdout
    assert section(done.stdout, "DataLoader smoke test")[1].strip() == "skipped: no --cache given."
    assert done.stdout.rstrip().endswith("Result: OK, no problems found.")


@pytest.mark.slow
def test_a_split_without_csv_is_not_a_problem_for_the_check_nor_the_warm_up(demo_tree, tmp_path):
    """An SI5 copy without dev (as the release ships): the check reports it, the warm-up skips it."""
    si5 = Path(shutil.copytree(demo_tree[SI5], tmp_path / "demo" / SI5))
    (si5 / "annotations" / "manual" / "dev.SI5.corpus.csv").unlink()
    done = run("--root", si5)
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(section(done.stdout, "Corpus"), "dev")[1:] == ["-"] * 7 + ["no", "CSV", "(not", "part", "of",
                                                                          "this", "copy)"]
    assert done.stdout.rstrip().endswith("Result: OK, no problems found.")
    assert warm_main(["--root", str(si5), "--cache", str(tmp_path / "c"), "--workers", "2"], spec=FAKE) == 0
    done = run("--root", si5, "--cache", tmp_path / "c")
    assert done.returncode == 0 and "no CSV (not part of this copy)" in done.stdout, done.stdout + done.stderr
    assert row(section(done.stdout, "Cache"), "dev") == ["dev", "0", "0", "0", "0"]


@pytest.mark.parametrize("kind", ["empty", "absent"])
def test_report_with_a_cold_cache(root, tmp_path, kind):
    path = tmp_path / "cache"
    if kind == "empty":
        LandmarkCache(path, FAKE)  # a real cache with metadata and no record
        assert (path / "data.mdb").is_file()
    done = run("--root", root, "--cache", path, "--split", SPLIT)
    assert done.returncode == 0, done.stdout + done.stderr
    coverage = section(done.stdout, "Cache")
    samples = len(csv_rows(root, SPLIT))
    assert row(coverage, SPLIT) == [SPLIT, str(samples), "0", str(samples), "0"]
    assert not any(row_.split()[:1] in (["train"], ["test"]) for row_ in coverage)  # --split dev only
    smoke = section(done.stdout, "DataLoader smoke test")[1]
    if kind == "empty":
        assert "Detection: no readable cached records" in done.stdout
        assert smoke.strip().startswith("skipped: the cache does not fill a batch") and "0 readable" in smoke
    else:
        assert "no cache built here yet" in done.stdout and not (path / "data.mdb").exists()
        assert smoke.strip() == f"skipped: no cache built at {path} yet."


def test_report_with_a_warm_cache(root, real_demo_cache):
    warm_cache = real_demo_cache
    done = run("--root", root, "--cache", warm_cache, real=True)
    assert done.returncode == 0, done.stdout + done.stderr
    coverage = section(done.stdout, "Cache")
    for split in ("train", "dev", "test"):
        n = len(csv_rows(root, split))
        assert row(coverage, split) == [split, str(n)] + (["0", str(n)] if split != SPLIT else [str(n), "0"]) + ["0"]
    records = cached_records(warm_cache, HolisticSettings())
    assert sorted(records) == sorted(frames_on_disk(root, SPLIT))
    found = {part: sum(int(np.any(r.landmarks[:, a:b] != 0, axis=(1, 2)).sum()) for r in records.values())
             for part, (a, b) in PART_BOUNDS.items()}
    frames = sum(r.num_frames for r in records.values())
    assert found["pose"] > frames / 2 and found["face"] > frames / 2  # the demo person is found
    assert found["left_hand"] > frames / 2 and found["right_hand"] > frames / 2  # and the signer's hands
    detection = section(done.stdout, "Detection")
    assert row(detection, SPLIT)[1:7] == [str(len(records)), str(frames)] + [
        percent(found[p] / frames) for p in ("pose", "face", "left_hand", "right_hand")]
    lowest = section(done.stdout, "Least hand detection")
    assert {line.split()[1] for line in lowest[2:]} == set(records)
    smoke = section(done.stdout, "DataLoader smoke test")[1]
    longest = max(frames_on_disk(root, SPLIT).values())
    assert smoke.strip().startswith(f"{SPLIT}, batch of 2 in"), smoke
    assert f"landmarks [2, {longest}, 543, 3]" in smoke and f"confidence [2, {longest}, 543]" in smoke
    assert done.stdout.rstrip().endswith("Result: OK, no problems found.")


# --- verify ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_verify_passes_on_an_untouched_cache(root, warm_cache):
    done = run("--root", root, "--cache", warm_cache, "--split", SPLIT, "--verify")
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(csv_rows(root, SPLIT))
    assert f"records checked: {n} ({n} OK, 0 bad)" in done.stdout
    assert "Bad cache records" not in done.stdout


def test_verify_names_a_truncated_record(root, cache_copy):
    victim, other = sorted(frames_on_disk(root, SPLIT))
    data = raw_get(cache_copy, KEY_PREFIX + victim)
    raw_put(cache_copy, {KEY_PREFIX + victim: data[: len(data) // 2]})
    done = run("--root", root, "--cache", cache_copy, "--split", SPLIT, "--verify")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "records checked: 2 (1 OK, 1 bad)" in done.stdout
    bad = section(done.stdout, "Bad cache records")
    assert bad[0] == "Bad cache records (1)"
    assert len(bad) == 3 and bad[2].split()[:2] == [SPLIT, victim] and "truncated" in bad[2]
    assert other not in "\n".join(bad)
    assert "1 bad cache record(s)" in done.stdout.splitlines()[-1]


def test_verify_checks_records_against_the_frames_on_disk(root, warm_cache, tmp_path):
    # A copy of the release where one cached dev sample lost its last frame and a train sample its folder.
    copy = Path(shutil.copytree(root, tmp_path / "PHOENIX-2014-T-release-v3" / RELEASE))
    shorter = sorted(frames_on_disk(copy, SPLIT))[0]
    frames_dir = copy / "features" / "fullFrame-210x260px" / SPLIT / shorter
    before = len(list(frames_dir.glob("*.png")))
    max(frames_dir.glob("*.png")).unlink()
    gone = csv_rows(copy, "train")[0]["name"]
    shutil.rmtree(copy / "features" / "fullFrame-210x260px" / "train" / gone)
    done = run("--root", copy, "--cache", warm_cache, "--verify")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    missing = section(done.stdout, "Samples whose frames cannot be read")
    assert len(missing) == 3 and missing[2].split()[:2] == ["train", gone] and "does not exist" in missing[2]
    assert row(section(done.stdout, "Corpus"), "train")[-1] == "1"
    bad = section(done.stdout, "Bad cache records")
    assert len(bad) == 3 and bad[2].split()[:2] == [SPLIT, shorter]
    assert f"record has {before} frames, {before - 1} PNG frames on disk" in bad[2]


def test_verify_needs_a_cache(root, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(root), "--verify"])
    assert exit_.value.code == 2 and "--verify needs --cache" in capsys.readouterr().err


def test_cache_of_other_settings_is_refused(root, tmp_path):
    path = tmp_path / "cache"
    LandmarkCache(path, FakeExtractorSettings(delay=0.5))
    done = run("--root", root, "--cache", path, "--split", SPLIT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Corpus" in done.stdout  # the corpus part is still reported
    assert "built with other extraction settings" in done.stderr
    assert "delay: cache 0.5, now 0.0" in done.stderr
    assert "Traceback" not in done.stderr


# --- render ---------------------------------------------------------------------------------------------

def face_box(record, t: int, part: str = "face"):
    a, b = PART_BOUNDS[part]
    xy = record.landmarks[t, a:b, :2] * np.array([FRAME_WIDTH, FRAME_HEIGHT])
    (x0, y0), (x1, y1) = np.floor(xy.min(axis=0)).astype(int), np.ceil(xy.max(axis=0)).astype(int)
    return x0, y0, x1, y1


def test_render_draws_the_landmarks_on_the_signer(root, real_demo_cache, tmp_path):
    warm_cache = real_demo_cache
    sample_id = sorted(frames_on_disk(root, SPLIT))[0]
    out = tmp_path / "pictures" / "sheet.png"
    done = run("--root", root, "--cache", warm_cache, "--render", sample_id, "--out", out, real=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Render {sample_id} ({SPLIT}; landmarks read from the cache)" in done.stdout
    sheet = np.asarray(Image.open(out).convert("RGB"))
    tile = sheet[:FRAME_HEIGHT, :FRAME_WIDTH]  # frame 0 is the top-left tile, at full size
    first_png = sorted((root / "features" / "fullFrame-210x260px" / SPLIT / sample_id).glob("*.png"))[0]
    raw = np.asarray(Image.open(first_png).convert("RGB"))
    face = np.all(tile == FACE_COLOUR, axis=2)
    assert not np.all(raw == FACE_COLOUR, axis=2).any()  # the colour is the drawing, not the photo
    record = cached_records(warm_cache, HolisticSettings())[sample_id]
    x0, y0, x1, y1 = face_box(record, 0)
    margin = 3  # dot radius and rounding
    inside = face[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin].sum()
    assert inside > 200, f"only {inside} face-coloured pixels in the face box {(x0, y0, x1, y1)}"
    assert face.sum() - inside <= inside // 50, "face dots drawn away from the face"
    pose = np.all(tile == POSE_COLOUR, axis=2)
    assert pose[y0:, :].sum() > 20  # skeleton lines (shoulders) at and below the face
    for part, colour in (("left_hand", LEFT_HAND_COLOUR), ("right_hand", RIGHT_HAND_COLOUR)):
        a, b = PART_BOUNDS[part]
        assert np.any(record.landmarks[0, a:b] != 0), f"the demo sample {sample_id} has no {part} at t=0"
        assert not np.all(raw == colour, axis=2).any()
        hand = np.all(tile == colour, axis=2)
        x0, y0, x1, y1 = face_box(record, 0, part)
        inside = hand[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin].sum()
        assert inside > 100, f"only {inside} pixels of the {part} skeleton in its box {(x0, y0, x1, y1)}"
        assert hand.sum() - inside <= inside // 50, f"{part} skeleton drawn away from the hand"
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == frames_on_disk(root, SPLIT)[sample_id]


def test_render_extracts_an_uncached_sample_and_leaves_the_cache_as_it_was(root, warm_cache, tmp_path):
    """A sanity check does not change what it checks: a sample missing from the cache is extracted for
    the picture only."""
    sample_id = sorted(frames_on_disk(root, SPLIT))[1]
    path = Path(shutil.copytree(warm_cache, tmp_path / "cache"))
    cache = LandmarkCache(path, FAKE)
    key = KEY_PREFIX + sample_id
    assert cache.discard([key]) == 1
    cache.close()
    before = {name: (path / name).read_bytes() for name in ("data.mdb",)}
    out = tmp_path / "sheet.png"
    done = run("--root", root, "--cache", path, "--split", SPLIT, "--render", sample_id, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Render {sample_id} ({SPLIT}; extracted (not in the cache; phoenix-warm-cache stores it; not stored)" \
        in done.stdout
    assert {name: (path / name).read_bytes() for name in before} == before
    assert sample_id not in cached_records(path)
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == frames_on_disk(root, SPLIT)[sample_id]


def test_render_of_an_unknown_id_lists_valid_ones(root, tmp_path):
    done = run("--root", root, "--render", "NoSuchSample-1", "--out", tmp_path / "x.png")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Unknown sample id 'NoSuchSample-1' in PHOENIX-2014-T" in done.stderr
    assert re.search(re.escape(csv_rows(root, "train")[0]["name"]) + r" \(train\)", done.stderr)
    assert not (tmp_path / "x.png").exists()


def test_verify_of_a_missing_cache_exits_2(root, tmp_path, capsys):
    code = main(["--root", str(root), "--split", SPLIT, "--cache", str(tmp_path / "typo"), "--verify"])
    assert code == 2 and "no cache at" in capsys.readouterr().err
