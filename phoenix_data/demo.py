"""The built-in demo tree: a few samples of each PHOENIX release in its real on-disk layout.

``build_demo(out_dir)`` writes, under ``out_dir``::

    phoenix2014-release/phoenix-2014-multisigner/            {split}.corpus.csv, <id>/1/<video>.avi_pid0_fn000000-0.png
    phoenix2014-release/phoenix-2014-signerindependent-SI5/  {split}.SI5.corpus.csv, same frame layout
    PHOENIX-2014-T-release-v3/PHOENIX-2014-T/                PHOENIX-2014-T.{split}.corpus.csv (UTF-8, CRLF),
                                                             <name>/images0001.png (no ``1/`` folder)

Frames are 210 x 260 RGB PNGs of matplotlib's public-domain photo of Grace Hopper, moved a little from
frame to frame, so MediaPipe Holistic finds a pose and a face in each. Annotations are made up from
PHOENIX gloss tokens, not copied from the corpus. The same bytes are written on every run.

Command line: ``python -m phoenix_data.demo OUT_DIR`` prints the release folders.
"""
from __future__ import annotations

import argparse
import logging
import math
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
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fixed, so the bytes do not depend on OpenCV defaults
PHOTO = "grace_hopper.jpg"  # public domain; ships with matplotlib
STRAY_FILE = "createDnnTrainingLabels-profile.py.lprof"  # real 2014-T copies have it in some frame folders
MARKER = "PHOENIX-DEMO.txt"
MARKER_TEXT = (
    "Demo tree written by phoenix_data.demo; rebuilding here overwrites it.\n"
    "Layout of RWTH-PHOENIX-Weather 2014 / 2014-T (RWTH Aachen, CC BY-NC-SA); annotations are made up.\n"
    "Frames: photo of Grace Hopper (public domain), from matplotlib's sample data.\n"
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
    base = base_image()
    roots = {}
    for name, splits in DEMO_SAMPLES.items():
        layout = RELEASES[name]
        roots[name] = _write_release(out / layout.archive / layout.name, layout, splits, base)
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


def base_image() -> np.ndarray:
    """The demo photo cropped to the frame's aspect and resized: ``uint8[260, 210, 3]``, BGR."""
    import matplotlib.cbook  # noqa: PLC0415 - lazily: only the demo needs matplotlib

    path = matplotlib.cbook.get_sample_data(PHOTO, asfileobj=False)
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(f"Cannot read matplotlib's sample photo {str(path)!r}; "
                                "reinstall matplotlib (pip install --force-reinstall matplotlib).")
    height, width = photo.shape[:2]
    # Keep the full height (cap to chest) and cut the sides, like a signer framed on TV.
    crop_width = min(width, round(height * FRAME_WIDTH / FRAME_HEIGHT))
    left = (width - crop_width) // 2
    crop = photo[:, left:left + crop_width]
    return cv2.resize(crop, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)


def demo_frame(base: np.ndarray, sample_number: int, t: int) -> np.ndarray:
    """Frame ``t`` of a sample: ``base`` shifted, scaled and turned a little, deterministically."""
    phase = 0.9 * sample_number
    dx = 4.0 * math.sin(2 * math.pi * t / 12 + phase)
    dy = 2.0 * math.sin(2 * math.pi * t / 9 + phase)
    scale = 1.0 + 0.03 * math.sin(2 * math.pi * t / 15 + phase)
    angle = 1.5 * math.sin(2 * math.pi * t / 10 + phase)
    matrix: np.ndarray = cv2.getRotationMatrix2D((FRAME_WIDTH / 2, FRAME_HEIGHT / 2), angle, scale)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(base, matrix, (FRAME_WIDTH, FRAME_HEIGHT), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


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
                   base: np.ndarray) -> Path:
    """Write one release's CSVs and frames under its release folder ``root``."""
    newline = LINE_ENDINGS.get(layout.name, "\n")
    index = frames = 0
    for split, samples in splits.items():
        csv_path = root / layout.csv_pattern.format(split=split)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["|".join(layout.header)] + [_csv_row(layout, s) for s in samples]
        csv_path.write_bytes(newline.join(lines + [""]).encode("utf-8"))
        for sample in samples:
            names = frame_names(layout, sample.id, frame_count(index))
            _write_frames(root / FRAMES_SUBDIR / split, names, base, index)
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


def _write_frames(split_dir: Path, names: Sequence[str], base: np.ndarray, sample_number: int) -> None:
    """Write one sample's frames; OpenCV frames are BGR, so the PNGs hold the right RGB colours."""
    for t, name in enumerate(names):
        path = split_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, png = cv2.imencode(".png", demo_frame(base, sample_number, t), PNG_PARAMS)
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
