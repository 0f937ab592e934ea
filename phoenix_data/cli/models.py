"""``phoenix-models``: the tasks backend's model bundle (``holistic_landmarker.task``), built offline.

    phoenix-models build                 # into the models folder, from mediapipe 0.10.21's models
    phoenix-models build --from X.whl    # from a wheel (or a folder, or an official .task) you have
    phoenix-models show                  # where it is, its SHA-256, and whether it checks out

Exit 0 done, 2 when the bundle cannot be built or is damaged (the message says the fix).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..exit_codes import EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phoenix-models",
        description="The HolisticLandmarker bundle of the tasks backend, built from mediapipe 0.10.21's models "
                    "(installed, else its wheel from PyPI), with no download from elsewhere.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the bundle (skipped when a current, intact one is there)")
    build.add_argument("--out", type=Path, default=None, metavar="FILE.task",
                       help="where to write it (default: $PHOENIX_DATA_MODELS, else ~/.cache/phoenix_data/models)")
    build.add_argument("--from", dest="source", type=Path, default=None, metavar="PATH",
                       help="mediapipe 0.10.21's wheel, a folder holding its mediapipe/modules/, or an official "
                            "holistic_landmarker.task (copied as it is)")
    build.add_argument("--force", action="store_true", help="rebuild even if a current bundle is there")
    show = sub.add_parser("show", help="check the bundle and print what it is")
    show.add_argument("--bundle", type=Path, default=None, metavar="FILE.task",
                      help="default: the models folder's")
    return parser


def _show(path: Optional[Path]) -> int:
    from ..extract.mediapipe.bundle import load_bundle, manifest_path  # noqa: PLC0415

    info = load_bundle(path, build=False)
    print(f"bundle:      {info.path}")
    print(f"sha256:      {info.sha256} (checked)")
    kind = 'refined, with irises' if info.face_points > 468 else 'the legacy mesh'
    print(f"face points: {info.face_points} ({kind})")
    print(f"source:      {info.source}")
    print(f"manifest:    {manifest_path(info.path)}")
    return 0


def _build(out: Optional[Path], source: Optional[Path], force: bool) -> int:
    from ..extract.mediapipe.bundle import build_bundle, default_bundle_path, load_bundle  # noqa: PLC0415

    target = out if out is not None else default_bundle_path()
    if target.is_file() and not force and source is None:
        info = load_bundle(target, build=False)  # damaged: an error that says --force
        print(f"{info.path} is there and intact (sha256 {info.sha256[:16]}...); --force rebuilds it.")
        return 0
    info = build_bundle(target, source)
    print(f"wrote {info.path} from {info.source} (sha256 {info.sha256[:16]}..., {info.face_points} face points)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    from ..extract.mediapipe.bundle import BundleError  # noqa: PLC0415

    try:
        if args.command == "show":
            return _show(args.bundle)
        return _build(args.out, args.source, args.force)
    except (BundleError, OSError) as exc:
        print(f"phoenix-models: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
