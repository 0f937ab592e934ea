"""The built-in demo tree: a few samples of each PHOENIX release in its real on-disk layout.

``build_demo(out_dir)`` writes, under ``out_dir``::

    phoenix2014-release/phoenix-2014-multisigner/            {split}.corpus.csv, <id>/1/<video>.avi_pid0_fn000000-0.png
    phoenix2014-release/phoenix-2014-signerindependent-SI5/  {split}.SI5.corpus.csv, same frame layout
    PHOENIX-2014-T-release-v3/PHOENIX-2014-T/                PHOENIX-2014-T.{split}.corpus.csv (UTF-8, CRLF),
                                                             <name>/images0001.png (no ``1/`` folder)

Frames are 210 x 260 RGB PNGs of real signing: two short clips cut from pose-format's MIT-licensed
sample videos, shipped in ``phoenix_data/demo/frames/`` (licence and source beside them). Most samples
show a signer whose hands MediaPipe Holistic finds in every frame; two of each release show a person
whose right hand comes and goes, so frames with a missing hand are in the demo too. Each sample plays
its clip forth and back from its own start, mirrored or not, moved and scaled a little, so no two
samples are alike. Annotations are made up from PHOENIX gloss tokens, not copied from the corpus.
The same bytes are written on every run, offline.

Command line: ``python -m phoenix_data.demo OUT_DIR`` prints the release folders.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from phoenix_data.corpus import FRAMES_SUBDIR, RELEASES, ReleaseLayout

logger = logging.getLogger(__name__)

FRAME_WIDTH = 210
FRAME_HEIGHT = 260
MIN_FRAMES = 8
FRAME_COUNT_SPREAD = 7  # samples get MIN_FRAMES .. MIN_FRAMES + 6 frames
# Fixed, so the bytes do not depend on OpenCV defaults. zlib's run-length strategy: 2.5 ms a frame against
# 4.1 with the default strategy at this level, 2% smaller, the same pixels, decoded as fast.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
FRAMES_DIR = Path(__file__).resolve().parent / "frames"  # package data: <clip>_NN.jpg + licence
SIGNER = "signer"  # both hands found in all 9 frames
PERSON = "person"  # the right hand comes and goes; the left one is never in view
CLIP_FRAMES: Dict[str, int] = {SIGNER: 9, PERSON: 30}
RELEASE_SIZE = 7  # samples per release: train 3, dev 2, test 2
PERSON_INDICES = (2, 5)  # the samples of each release cut from the person clip (a train and a test one)
# Where the six person samples start on the clip's walk (positions >= 30 walk backwards), chosen so each
# one holds frames before the hand comes in, after it leaves, or where MediaPipe loses it for a moment.
PERSON_STARTS = (52, 21, 0, 24, 44, 5)
STRAY_FILE = "createDnnTrainingLabels-profile.py.lprof"  # real 2014-T copies have it in some frame folders
MARKER = "PHOENIX-DEMO.txt"
MARKER_TEXT = (
    "Demo tree written by phoenix_data.demo; rebuilding here overwrites it.\n"
    "Layout of RWTH-PHOENIX-Weather 2014 / 2014-T (RWTH Aachen, CC BY-NC-SA); annotations are made up.\n"
    "Frames: cut from pose-format's sample videos (MIT licence, Copyright (c) 2021 Amit Moryossef;\n"
    "https://github.com/sign-language-processing/pose), see phoenix_data/demo/frames/README.md.\n"
)


@dataclass(frozen=True)
class DemoSample:
    """One demo video: its CSV fields, written as they stand (spaces included)."""

    id: str
    signer: str
    annotation: str
    translation: Optional[str] = None


_S = DemoSample
# release -> split -> samples. Dev/test use a few glosses train lacks (GEWITTER, SCHNEE, NEBEL), and
# some annotations keep the double and leading/trailing spaces real 2014 CSVs have.
DEMO_SAMPLES: Dict[str, Dict[str, Tuple[DemoSample, ...]]] = {
    "phoenix-2014-multisigner": {
        "train": (
            _S("01April_2010_Thursday_heute_default-0", "Signer04",
               "__ON__ LIEB ZUSCHAUER ABEND WINTER GESTERN loc-NORD REGEN WOLKE IX __OFF__"),
            _S("05May_2011_Thursday_tagesschau_default-3", "Signer07", "MORGEN SONNE SUED WARM NORD WOLKE REGEN"),
            _S("12March_2011_Saturday_tagesschau_default-8", "Signer01",
               " HEUTE NACHT  REGEN loc-NORD TEMPERATUR KUEHL "),
        ),
        "dev": (
            _S("01April_2010_Thursday_heute_default-1", "Signer04", "MORGEN REGEN WOLKE SONNE GEWITTER"),
            _S("23October_2010_Saturday_tagesschau_default-5", "Signer01", "NORD WOLKE IX SUED SONNE WARM"),
        ),
        "test": (
            _S("01April_2010_Thursday_heute_default-5", "Signer04", "ABEND SONNE NORD REGEN SCHNEE"),
            _S("14July_2011_Thursday_heute_default-2", "Signer07", "__ON__ HEUTE WARM SUED WOLKE __OFF__"),
        ),
    },
    "phoenix-2014-signerindependent-SI5": {
        "train": (  # never Signer05: SI5 holds that signer out
            _S("02December_2009_Wednesday_tagesschau_default-4", "Signer08",
               "__ON__ LIEB ZUSCHAUER ABEND  WINTER KALT SCHNEE loc-NORD __OFF__ "),
            _S("17April_2010_Saturday_tagesschau_default-2", "Signer03", "MORGEN SONNE WOLKE REGEN SUED WARM"),
            _S("26January_2010_Tuesday_heute_default-6", "Signer09", " NORD WIND STARK IX REGEN KALT"),
        ),
        "dev": (
            _S("01December_2011_Thursday_heute_default-2", "Signer05", "MORGEN SCHNEE WIND NORD NEBEL"),
            _S("02October_2010_Saturday_tagesschau_default-4", "Signer05", "SUED SONNE WARM WOLKE IX"),
        ),
        "test": (
            _S("01May_2010_Saturday_tagesschau_default-9", "Signer05", "SONNE WARM SUED GEWITTER"),
            _S("08April_2010_Thursday_heute_default-7", "Signer05", "REGEN WOLKE KALT NORD IX"),
        ),
    },
    "PHOENIX-2014-T": {
        "train": (
            _S("11August_2010_Wednesday_tagesschau-2", "Signer08", "MORGEN SUED SONNE WARM NORD WOLKE REGEN",
               "morgen im süden viel sonne und warm im norden wolken und etwas regen"),
            _S("25October_2010_Monday_tagesschau-9", "Signer01", "HEUTE NACHT NORD REGEN KALT",
               "heute nacht im norden regen bei kühlen temperaturen"),
            _S("03February_2011_Thursday_tagesschau-5", "Signer05", "__ON__ WETTER MORGEN FREITAG WIND STARK KUESTE",
               "das wetter morgen am freitag an der küste weht ein starker wind"),
        ),
        "dev": (
            _S("14May_2010_Friday_tagesschau-3", "Signer04", "MORGEN SONNE SUED GEWITTER",
               "morgen im süden sonne später örtlich gewitter"),
            _S("06January_2011_Thursday_tagesschau-7", "Signer02", "NACHT KALT NORD SCHNEE",
               "in der nacht wird es kalt im norden fällt schnee"),
        ),
        "test": (
            _S("21November_2011_Monday_tagesschau-4", "Signer01", "REGEN WIND KUESTE NEBEL",
               "regen und wind an der küste dazu nebel"),
            _S("09March_2011_Wednesday_tagesschau-6", "Signer07", "SONNE WARM SUED WOLKE",
               "viel sonne und es wird wärmer im süden ein paar wolken"),
        ),
    },
}
# Real 2014-T copies have CRLF line endings; the 2014 ones LF.
LINE_ENDINGS: Dict[str, str] = {"PHOENIX-2014-T": "\r\n"}
STRAY_SAMPLE = ("PHOENIX-2014-T", "dev", "14May_2010_Friday_tagesschau-3")


def build_demo(out_dir: Union[str, Path]) -> Dict[str, Path]:
    """Write the demo tree under ``out_dir``; returns ``{release name: release folder}``.

    Rebuilding into a demo tree overwrites its files. A folder that holds a PHOENIX release but
    was not written here is refused, so a real copy is never overwritten.
    """
    out = Path(out_dir).expanduser()
    _check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_bytes(MARKER_TEXT.encode("utf-8"))
    clips = load_clips()
    roots = {}
    for number, (name, splits) in enumerate(DEMO_SAMPLES.items()):
        layout = RELEASES[name]
        roots[name] = _write_release(out / layout.archive / layout.name, layout, splits, clips,
                                     first_sample=number * RELEASE_SIZE)
    return roots


def _check_out_dir(out: Path) -> None:
    """Refuse a folder that holds a release which is not a demo tree."""
    if (out / MARKER).is_file():
        return
    for layout in RELEASES.values():
        folder = out / layout.archive / layout.name
        if folder.exists():
            raise FileExistsError(
                f"{str(folder)!r} exists and {str(out)!r} is not a demo tree (no {MARKER}); "
                "refusing to overwrite what may be a real PHOENIX copy. Pass an empty or new folder.")


def load_clips() -> Dict[str, List[np.ndarray]]:
    """The shipped source frames, decoded: ``{clip: [uint8[260, 210, 3] BGR, ...]}`` in time order."""
    clips: Dict[str, List[np.ndarray]] = {}
    for clip, count in CLIP_FRAMES.items():
        paths = sorted(FRAMES_DIR.glob(f"{clip}_*.jpg"))
        if len(paths) != count:
            raise FileNotFoundError(
                f"Expected {count} demo frames {clip}_*.jpg in {str(FRAMES_DIR)!r}, found {len(paths)}; "
                "reinstall phoenix_data (pip install --force-reinstall .) so its package data is complete.")
        frames = [cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_COLOR) for p in paths]
        if any(f is None or f.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3) for f in frames):
            raise ValueError(f"A demo frame in {str(FRAMES_DIR)!r} is not a {FRAME_WIDTH}x{FRAME_HEIGHT} "
                             "colour image; reinstall phoenix_data.")
        clips[clip] = frames
    return clips


@dataclass(frozen=True)
class Take:
    """How one demo sample is cut from a clip: where it starts, mirrored or not, moved and scaled."""

    clip: str
    start: int  # position on the clip's back-and-forth walk (see ``walk``)
    flip: bool  # mirrored: MediaPipe's left hand becomes the right one
    dx: int
    dy: int
    scale: float


def take_for(sample_number: int) -> Take:
    """The take of the ``sample_number``-th sample of the tree (0 .. 20), varied so no two are alike."""
    release, index = divmod(sample_number, RELEASE_SIZE)
    if index in PERSON_INDICES:
        clip, start = PERSON, PERSON_STARTS[(release * len(PERSON_INDICES) + PERSON_INDICES.index(index))
                                            % len(PERSON_STARTS)]
    else:
        clip, start = SIGNER, (5 * sample_number) % (2 * CLIP_FRAMES[SIGNER] - 2)
    return Take(clip=clip, start=start,
                flip=sample_number % 2 == 1, dx=(5 * sample_number) % 13 - 6, dy=(3 * sample_number) % 9 - 4,
                scale=1.0 + 0.01 * (sample_number % 5 - 2))


def walk(length: int, start: int, count: int) -> List[int]:
    """Frame indices of a clip of ``length`` frames played forth and back from ``start``: 0 1 2 1 0 1 ..."""
    period = 2 * length - 2
    positions = ((start + t) % period for t in range(count))
    return [p if p < length else period - p for p in positions]


def demo_frame(source: np.ndarray, take: Take) -> np.ndarray:
    """``source`` (BGR) mirrored if ``take.flip``, then shifted and scaled a little, deterministically."""
    image = source[:, ::-1] if take.flip else source
    matrix: np.ndarray = cv2.getRotationMatrix2D((FRAME_WIDTH / 2, FRAME_HEIGHT / 2), 0.0, take.scale)
    matrix[:, 2] += (take.dx, take.dy)
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (FRAME_WIDTH, FRAME_HEIGHT),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def sample_frames(clips: Dict[str, List[np.ndarray]], sample_number: int, count: int) -> List[np.ndarray]:
    """The ``count`` frames (BGR) of the ``sample_number``-th sample."""
    take = take_for(sample_number)
    source = clips[take.clip]
    return [demo_frame(source[i], take) for i in walk(len(source), take.start, count)]


def frame_count(index: int) -> int:
    """Frames of the ``index``-th sample of a release: 8 .. 14, varied so lengths differ."""
    return MIN_FRAMES + (3 * index) % FRAME_COUNT_SPREAD


def frame_names(layout: ReleaseLayout, sample_id: str, count: int) -> List[str]:
    """Frame paths relative to the split folder, in time order, as the release names them."""
    if layout.drop_folder_one:  # 2014-T: <name>/images0001.png, from 1
        return [f"{sample_id}/images{t + 1:04d}.png" for t in range(count)]
    # 2014: <id>/1/<video>.avi_pid0_fn000000-0.png, from 0; <video> is the id without "_default-N".
    video = sample_id.rsplit("_default-", 1)[0]
    return [f"{sample_id}/1/{video}.avi_pid0_fn{t:06d}-0.png" for t in range(count)]


def _write_release(root: Path, layout: ReleaseLayout, splits: Dict[str, Tuple[DemoSample, ...]],
                   clips: Dict[str, List[np.ndarray]], first_sample: int) -> Path:
    """Write one release's CSVs and frames under its release folder ``root``.

    Its samples are the ``first_sample``-th and following of the tree (see ``take_for``).
    """
    newline = LINE_ENDINGS.get(layout.name, "\n")
    index = frames = 0
    for split, samples in splits.items():
        csv_path = root / layout.csv_pattern.format(split=split)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["|".join(layout.header)] + [_csv_row(layout, s) for s in samples]
        csv_path.write_bytes(newline.join(lines + [""]).encode("utf-8"))
        for sample in samples:
            names = frame_names(layout, sample.id, frame_count(index))
            images = sample_frames(clips, first_sample + index, len(names))
            _write_frames(root / FRAMES_SUBDIR / split, names, images)
            frames += len(names)
            if (layout.name, split, sample.id) == STRAY_SAMPLE:
                (root / FRAMES_SUBDIR / split / sample.id / STRAY_FILE).write_bytes(b"\x00demo profile\n")
            index += 1
    logger.info("Wrote demo %s: %d samples, %d frames under %s", layout.name, index, frames, root)
    return root


def _csv_row(layout: ReleaseLayout, sample: DemoSample) -> str:
    """One CSV line; the folder column reads ``<id>/1/*.png`` in every release (2014-T included)."""
    folder = f"{sample.id}/1/*.png"
    if layout.translation_field is None:
        return "|".join((sample.id, folder, sample.signer, sample.annotation))
    return "|".join((sample.id, folder, "-1", "-1", sample.signer, sample.annotation, sample.translation or ""))


def _write_frames(split_dir: Path, names: Sequence[str], images: Sequence[np.ndarray]) -> None:
    """Write one sample's frames; OpenCV frames are BGR, so the PNGs hold the right RGB colours."""
    for name, image in zip(names, images):
        path = split_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, png = cv2.imencode(".png", image, PNG_PARAMS)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode demo frame {str(path)!r} as PNG.")
        path.write_bytes(png.tobytes())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m phoenix_data.demo OUT_DIR``: build the demo tree and print its release folders."""
    parser = argparse.ArgumentParser(prog="python -m phoenix_data.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the demo tree into (created if missing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        roots = build_demo(args.out_dir)
    except FileExistsError as error:
        parser.error(str(error))
    for name, root in roots.items():
        print(f"{name}: {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
