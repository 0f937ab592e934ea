"""``phoenix-dataset``: the sanity check before training (the checks are ``phoenix_data.check``).

Read-only: it reports on the corpus and the cache and never changes either.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..corpus import SPLITS
from ..exit_codes import EXIT_FAILURES, EXIT_USAGE
from .common import add_settings_arguments, guarded, set_up_logging, settings_from_args

if TYPE_CHECKING:
    from ..extract import ExtractorSpec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phoenix-dataset",
        description="The sanity check a researcher runs before training: corpus, cache, detection, a "
                    "DataLoader batch, pictures.",
        epilog="Exit status: 0 nothing wrong, 1 problems found (listed), 2 the check cannot run.")
    parser.add_argument("--root", type=Path, required=True,
                        help="the release folder, or a parent of it up to the archive folder")
    parser.add_argument("--release", help="which release, where ROOT holds several (multisigner, si5, 2014-T)")
    parser.add_argument("--split", choices=SPLITS, help="check one split (default: all three)")
    parser.add_argument("--cache", type=Path, help="the LMDB landmark cache to report on")
    parser.add_argument("--verify", action="store_true",
                        help="check every cached record against the corpus (needs --cache)")
    parser.add_argument("--render", metavar="ID", help="draw the landmarks of sample ID over its frames")
    parser.add_argument("--out", type=Path, help="contact sheet PNG for --render; the GIF goes beside it")
    parser.add_argument("--export-poses", type=Path, metavar="DIR",
                        help="write every cached sample as DIR/<release>/<split>/<id>.pose (pose-format; needs "
                             "--cache; resumable) instead of the report")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="samples in the DataLoader smoke test batch (default 4)")
    add_settings_arguments(parser)
    return parser


def _check(argv: Optional[Sequence[str]], spec: Optional["ExtractorSpec"]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verify and args.cache is None:
        parser.error("--verify needs --cache CACHE: it checks the cached records.")
    if args.export_poses is not None and args.cache is None:
        parser.error("--export-poses DIR needs --cache CACHE: it writes the cached records.")
    if (args.render is None) != (args.out is None):
        parser.error("--render ID and --out PATH go together: which sample, and where its contact sheet goes.")
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}; expected 1 or more.")
    set_up_logging(args.verbose, logging.WARNING)
    try:
        settings = spec if spec is not None else settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.getLogger("phoenix_data").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    import lmdb  # noqa: PLC0415

    from ..check import CheckError, CheckOptions, run  # noqa: PLC0415
    from ..corpus import CorpusError  # noqa: PLC0415
    from ..frames import FramesError  # noqa: PLC0415

    if args.export_poses is not None:
        return _export(args, settings)
    options = CheckOptions(root=args.root, release=args.release, split=args.split, cache=args.cache,
                           verify=args.verify, render=args.render, out=args.out, batch_size=args.batch_size,
                           settings=settings)
    try:
        return run(options, emit=lambda line: print(line, flush=True))
    except CorpusError as exc:
        print(f"phoenix-dataset: error: {exc}", file=sys.stderr)  # one line: it names the file, or --root
    except (CheckError, FramesError) as exc:
        print(f"phoenix-dataset: error: {exc}", file=sys.stderr)
    except lmdb.Error as exc:
        print(f"phoenix-dataset: error: LMDB cannot read the cache {str(args.cache)!r}: {exc}", file=sys.stderr)
    except BrokenPipeError:  # the report piped into `head`: stop quietly, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURES
    return EXIT_USAGE


def _export(args: argparse.Namespace, settings: "ExtractorSpec") -> int:
    from ..cache import CacheError  # noqa: PLC0415
    from ..corpus import CorpusError  # noqa: PLC0415
    from ..formats.export import export_poses  # noqa: PLC0415

    try:
        result = export_poses(args.root, args.cache, settings, args.export_poses, release=args.release,
                              split=args.split)
    except ImportError as exc:
        print(f"phoenix-dataset: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CorpusError, CacheError) as exc:
        print(f"phoenix-dataset: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {result.written} .pose files to {result.out_dir} ({result.existing} already there, kept)")
    if result.missing:
        print(f"{len(result.missing)} samples are not in the cache (warm them first: phoenix-warm-cache): "
              + ", ".join(result.missing[:10]) + (" ..." if len(result.missing) > 10 else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None, spec: Optional["ExtractorSpec"] = None) -> int:
    """``phoenix-dataset``: print the report; 0 all good, 1 problems found, 2 the check cannot run.

    ``spec``: another extractor than MediaPipe Holistic (tests: the fake), as for ``phoenix-warm-cache``.
    """
    return guarded("dataset", lambda: _check(argv, spec))
