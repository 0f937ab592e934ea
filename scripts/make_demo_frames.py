#!/usr/bin/env python
"""Write phoenix_data/demo/frames/ (the demo's source frames) from the hands-real clips.

    python scripts/make_demo_frames.py /path/to/shared/hands-real

The clips are 210x260 PNG frames cut from pose-format's MIT-licensed sample videos (see the
MANIFEST.txt beside them). This keeps the frames the demo uses and stores them as JPEG (quality 90)
to keep the wheel small; the demo decodes them and writes PNG frames, as PHOENIX ships them.
Maintainers run it once; the demo itself never needs the clips.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

OUT = Path(__file__).resolve().parents[1] / "phoenix_data" / "demo" / "frames"
JPEG_QUALITY = 90
LICENCE = "LICENSE-pose-format-MIT.txt"
# clip folder -> (name prefix in demo/frames, first and last frame kept, 1-based as in the file names)
CLIPS = {"signer_both_hands_9": ("signer", 1, 9), "person_hand_gaps_58": ("person", 15, 44)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hands_real", type=Path, help="the hands-real folder (MANIFEST.txt, clip folders)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    for folder, (prefix, first, last) in CLIPS.items():
        for number in range(first, last + 1):
            image = cv2.imread(str(args.hands_real / folder / f"images{number:04d}.png"), cv2.IMREAD_COLOR)
            if image is None:
                sys.exit(f"cannot read frame {number} of {folder} under {args.hands_real}")
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                sys.exit("OpenCV could not encode JPEG")
            (OUT / f"{prefix}_{number:02d}.jpg").write_bytes(jpeg.tobytes())
    shutil.copyfile(args.hands_real / LICENCE, OUT / LICENCE)
    print(f"wrote {len(list(OUT.glob('*.jpg')))} frames to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
