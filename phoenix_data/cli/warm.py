"""``phoenix-warm-cache``: extract every sample of a PHOENIX tree into the cache (the job is ``phoenix_data.warm``).

Arguments, the lines printed when done, exit statuses.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

from ..corpus import SPLITS
from ..exit_codes import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_USAGE
from .common import add_settings_arguments, guarded, non_negative, set_up_logging, settings_flags, settings_from_args

if TYPE_CHECKING:
    from ..extract import ExtractorSpec
    from ..warm import WarmOptions, WarmOutcome

ALL_SPLITS = "all"
DEFAULT_HEARTBEAT_SECONDS = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phoenix-warm-cache",
        description="Extract MediaPipe Holistic landmarks of every PHOENIX sample into the LMDB cache, "
                    "with worker processes. Resumable: a rerun extracts only what is missing.",
        epilog="Exit status: 0 done, 1 samples failed (see failed_samples.json), 2 bad arguments, "
               "3 aborted (rerun to finish), 130 interrupted by Ctrl+C (rerun to finish).")
    where = parser.add_argument_group("what to warm")
    where.add_argument("--root", type=Path, help="a release folder or the folder above it (all releases found "
                                                  "there are warmed unless --release picks one)")
    where.add_argument("--cache", type=Path, help="the LMDB cache directory (created if missing)")
    where.add_argument("--split", default=ALL_SPLITS, choices=(*SPLITS, ALL_SPLITS),
                       help="split to warm (default: all)")
    where.add_argument("--release", help="one release where ROOT holds several: multisigner, si5, 2014-T, ...")
    where.add_argument("--demo", action="store_true",
                       help="build the demo tree (3 small releases) and warm it; no --root needed")
    where.add_argument("--demo-dir", type=Path, help="where --demo writes the tree (default: a new temporary "
                                                      "folder); the cache goes inside it unless --cache")
    how = parser.add_argument_group("how")
    how.add_argument("--workers", type=non_negative(int, "a whole number", "0 extracts in one helper process"),
                     default=None, help="worker processes (default: one per core, at most one per GiB of free "
                                        "memory); 0 extracts in one helper process")
    how.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="extract with Ray actors on a cluster; the cache stays on this machine. Without "
                          "ADDRESS: the cluster RAY_ADDRESS or a running `ray start --head` names, else a "
                          "new local one. --workers then counts actors (default: one per cluster CPU, at "
                          "most one per GiB of its memory). Needs: pip install -e '.[ray]'")
    how.add_argument("--from-poses", type=Path, metavar="DIR",
                     help="fill the cache from pose-format .pose files (DIR/<release>/<split>/<id>.pose or "
                          "DIR/<id>.pose) instead of running MediaPipe; --refine-face for 478-point faces. "
                          "Needs: pip install -e '.[pose]'")
    how.add_argument("--retry-failed", action="store_true", help="try samples that failed before again")
    how.add_argument("--allow-failures", action="store_true", help="exit 0 even when samples failed")
    how.add_argument("--overwrite", action="store_true",
                     help="discard a cache made with other extraction settings")
    how.add_argument("--repair", action="store_true",
                     help="decode every cached record (checksums too) and extract damaged ones again; "
                          "without it a rerun checks each record's header only")
    how.add_argument("--report-dir", type=Path, help="where summary.json, metrics.csv and "
                                                      "failed_samples.json go (default: the cache directory)")
    how.add_argument("--heartbeat", type=non_negative(float, "seconds", "0: a line per sample"),
                     default=DEFAULT_HEARTBEAT_SECONDS,
                     help="seconds between progress lines when stderr is not a terminal (default: 10)")
    add_settings_arguments(parser)
    return parser


def warm_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 spec: Optional["ExtractorSpec"] = None) -> "WarmOptions":
    """Check the argument combination; builds the demo tree for --demo. ``spec``: the extractor (default:
    MediaPipe Holistic with the settings flags)."""
    from ..warm import WarmOptions, default_workers  # noqa: PLC0415

    if args.demo_dir is not None and not args.demo:
        parser.error("--demo-dir is only used with --demo; add --demo or drop --demo-dir.")
    if args.demo and args.root is not None:
        parser.error("--demo builds its own tree; drop --root (or drop --demo to warm ROOT).")
    if not args.demo and (args.root is None or args.cache is None):
        parser.error("--root ROOT and --cache CACHE are required (or --demo to warm the built-in demo tree).")
    try:
        settings = spec if spec is not None else _from_poses(args) if args.from_poses else settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    root = _build_demo(args.demo_dir) if args.demo else args.root
    cache = args.cache if args.cache is not None else root / "cache"
    if args.demo and args.cache is None:
        logging.getLogger("phoenix_data.warm").info("[warm] demo: the cache goes inside the demo folder: %s", cache)
    return WarmOptions(root=root, cache=cache, split=args.split, release=args.release,
                       workers=default_workers() if args.workers is None else args.workers,
                       report_dir=args.report_dir, retry_failed=args.retry_failed,
                       allow_failures=args.allow_failures, overwrite=args.overwrite, repair=args.repair,
                       heartbeat=args.heartbeat, settings=settings)


def _from_poses(args: argparse.Namespace) -> "ExtractorSpec":
    """--from-poses DIR: the landmarks come from .pose files (checked now: pose-format installed, DIR there)."""
    from ..formats.imported import PoseFileSettings  # noqa: PLC0415
    from ..record import FACE_POINTS, FACE_POINTS_REFINED  # noqa: PLC0415

    settings = PoseFileSettings(str(args.from_poses), FACE_POINTS_REFINED if args.refine_face else FACE_POINTS)
    settings.check_ready()
    return settings


def _build_demo(demo_dir: Optional[Path]) -> Path:
    from ..demo import build_demo  # noqa: PLC0415

    out = Path(demo_dir).expanduser() if demo_dir is not None else Path(tempfile.mkdtemp(prefix="phoenix-demo-"))
    roots = build_demo(out)
    logging.getLogger("phoenix_data.warm").info(
        "[warm] demo tree (%d releases, made-up annotations, frames of real signing) written to %s", len(roots), out)
    return out


def warm_report(outcome: "WarmOutcome", demo_root: Optional[Path], flags: str = "") -> List[str]:
    """What the command prints when done: one summary line, then where things are and what to do next."""
    from ..cache import describe_discarded  # noqa: PLC0415

    s, c = outcome.summary, outcome.summary.counts
    fps = f"{s.frames_per_s:.1f} frames/s" if s.frames_per_s else "no frames extracted"
    unit = "Ray actor" if s.ray is not None else "worker"
    workers = f"{s.workers} {unit}{'' if s.workers == 1 else 's'}"
    head = {EXIT_INTERRUPTED: "Warm-up interrupted", EXIT_ABORTED: "Warm-up aborted"}.get(
        outcome.exit_status, "Warm-up done")
    lines = [f"{head}: {c.total} samples: {c.extracted} extracted, {c.cached} already cached, "
             f"{c.failed} failed, {c.remaining} left | {fps} over {s.wall_seconds:.1f} s with {workers}"]
    if s.discarded_records:
        lines.append(f"Discarded: {describe_discarded(s.discarded_records)} of other extraction settings")
    if demo_root is not None:
        lines.append(f"Demo tree: {demo_root}")
    lines += [f"Cache:     {s.cache}",
              f"Reports:   {outcome.summary_path}, {outcome.metrics_path.name}, {outcome.failed_path.name}"]
    return lines + _warm_advice(outcome, demo_root, flags)


def _warm_advice(outcome: "WarmOutcome", demo_root: Optional[Path], flags: str) -> List[str]:
    s, c, lines = outcome.summary, outcome.summary.counts, []
    if outcome.reports_error:
        lines.append(f"Error: {outcome.reports_error}")
    if c.failed:
        lines.append(f"{c.failed} samples failed; reasons in {outcome.failed_path}. Fix their frames and "
                     "rerun with --retry-failed" + ("." if s.allow_failures else ", or pass --allow-failures."))
    if s.held_by_other_process:
        lines.append(f"{len(s.held_by_other_process)} samples are still being extracted by another process "
                     "on this cache; rerun when it is done.")
    if c.remaining:
        lines.append(f"{c.remaining} samples left: rerun the same command to finish "
                     "(what finished is kept and skipped).")
    if s.aborted:
        lines.append(f"Cause: {s.aborted}")
    if demo_root is not None and outcome.exit_status == 0:
        lines.append(f"Next:      phoenix-dataset --root {demo_root / 'PHOENIX-2014-T-release-v3'} "
                     f"--cache {s.cache} --verify{flags}")
    return lines


def _check_report_dir(reports: Path) -> None:
    """Fail before any work (and before --overwrite discards anything) when the reports cannot be
    written, not after hours of extraction. Creates nothing: a bad --root must leave no folder behind."""
    existing = reports
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise OSError(f"report folder {reports} is not writable ({existing} is not a writable folder); "
                      "pass --report-dir DIR.")


def _warm(argv: Optional[Sequence[str]], spec: Optional["ExtractorSpec"]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_up_logging(args.verbose, logging.INFO)
    import lmdb  # noqa: PLC0415

    from ..cache import CacheError, CacheSpaceError  # noqa: PLC0415
    from ..corpus import CorpusError  # noqa: PLC0415
    from ..warm import make_plan, warm  # noqa: PLC0415

    try:
        options = warm_options(parser, args, spec)
        _check_report_dir(options.reports)  # before make_plan: --overwrite discards records there
        plan = make_plan(options)
    except CacheSpaceError as exc:  # not a bad argument: the disk (exit 3, as when it fills up mid-run)
        parser.exit(EXIT_ABORTED, f"{parser.prog}: error: {exc}\n")
    except (CorpusError, CacheError, OSError, lmdb.Error) as exc:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc}\n")
    if args.ray is not None:
        outcome = _warm_on_ray(parser, args, options, plan)
    else:
        outcome = warm(options, plan)
    print("\n".join(warm_report(outcome, options.root if args.demo else None, settings_flags(parser, args))))
    return outcome.exit_status


def _warm_on_ray(parser: argparse.ArgumentParser, args: argparse.Namespace, options: "WarmOptions",
                 plan) -> "WarmOutcome":
    """``--ray``: the same job with Ray actors; Ray is imported only here."""
    from ..warm.ray import RayWarmError, warm_on_ray  # noqa: PLC0415

    if args.workers == 0:
        parser.error("--workers 0 (one local helper process) has no meaning with --ray; give the number of "
                     "actors, or leave --workers out for one per cluster CPU.")
    try:
        return warm_on_ray(options, plan, address=args.ray or None, actors=args.workers)
    except RayWarmError as exc:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc}\n")


def main(argv: Optional[Sequence[str]] = None, spec: Optional["ExtractorSpec"] = None) -> int:
    """``phoenix-warm-cache``: parse, warm, print where the cache and reports are; returns the exit status.

    ``spec``: run another extractor than MediaPipe Holistic (the settings flags are then unused): how
    tests drive the whole command with the fast fake (``extract.fake.FakeExtractorSettings``).
    """
    return guarded("warm", lambda: _warm(argv, spec))
