"""The two command lines, ``phoenix-warm-cache`` and ``phoenix-dataset``: arguments, printing, exit statuses, Ctrl+C.

Nothing else in the package prints. Heavy modules (torch, MediaPipe) are imported inside the
commands, after the Ctrl+C handler is in place, so that Ctrl+C during start-up exits 130 quietly.

``python -m phoenix_data.cli warm-cache ...`` and ``python -m phoenix_data.cli dataset ...`` run
the same commands as the console scripts. ``phoenix-models`` (the tasks backend's model bundle) is
in ``cli_models``.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from .exit_codes import EXIT_ABORTED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_USAGE

if TYPE_CHECKING:
    from .holistic import ExtractionSettings
    from .warm import WarmOptions, WarmOutcome

SPLITS = ("train", "dev", "test")
ALL_SPLITS = "all"
DEFAULT_HEARTBEAT_SECONDS = 10.0
# Set in the environment by --verbose, so that worker and helper processes show MediaPipe's own logs too.
MEDIAPIPE_LOGS_ENV = "PHOENIX_DATA_MEDIAPIPE_LOGS"


class _CtrlC:
    """First Ctrl+C: KeyboardInterrupt (the run stops taking samples and reports); second: leave at once."""

    def __init__(self, prog: str) -> None:
        self.prog, self.count = prog, 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            # Every finished sample is committed already, and reports are replaced atomically.
            os.write(2, f"[{self.prog}] second Ctrl+C: exiting now; finished samples stay cached, "
                        "rerun to finish.\n".encode())
            os._exit(EXIT_INTERRUPTED)
        raise KeyboardInterrupt


def _guarded(prog: str, body: Callable[[], int]) -> int:
    """Run a command with the Ctrl+C policy, from before its heavy imports to its last line."""
    previous = signal.signal(signal.SIGINT, _CtrlC(prog))
    try:
        return body()
    except KeyboardInterrupt:
        print("Interrupted; finished samples stay cached. Rerun the same command to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        command = "phoenix-warm-cache" if prog == "warm" else f"phoenix-{prog}"
        print(f"{command}: error: this command needs torch, which is not installed: `pip install "
              "torch==2.13.0` (README, \"Set up\"). Extraction, the cache and phoenix-models work without it.",
              file=sys.stderr)
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGINT, previous)


# --- shared arguments -----------------------------------------------------------------------------

def _non_negative(kind: type, what: str, hint: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r}; expected {what} >= 0 ({hint})")
        return value
    return parse


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}; expected a value in [0, 1]")
    return value


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """MediaPipe Holistic settings: a cache holds records of one setting (its fingerprint)."""
    group = parser.add_argument_group("extraction settings (must match the cache's)")
    group.add_argument("--model-complexity", type=int, choices=(0, 1, 2), default=1,
                       help="pose model: 1 is bundled with mediapipe 0.10.21; 0 and 2 need their model file")
    group.add_argument("--refine-face", action="store_true",
                       help="refined face landmarks (478 face points, 553 per frame)")
    group.add_argument("--min-detection-confidence", type=_unit_interval, default=0.5, metavar="P",
                       help="default 0.5")
    group.add_argument("--min-tracking-confidence", type=_unit_interval, default=0.5, metavar="P",
                       help="default 0.5")
    group.add_argument("--static-image-mode", action="store_true",
                       help="detect in every frame instead of tracking within a video")
    group.add_argument("--backend", choices=("legacy", "tasks"), default=None,
                       help="legacy: mp.solutions.holistic (mediapipe 0.10.21); tasks: HolisticLandmarker on a "
                            "bundle built offline (phoenix-models). Default: legacy where mediapipe 0.10.21 is "
                            "installed, tasks elsewhere")
    group.add_argument("--model-bundle", type=Path, default=None, metavar="FILE.task",
                       help="tasks backend: this bundle instead of the one `phoenix-models build` writes")
    parser.add_argument("--verbose", action="store_true",
                        help="also show MediaPipe's own log lines (hidden by default)")


def settings_from_args(args: argparse.Namespace) -> "ExtractionSettings":
    from .holistic import ExtractionSettings  # noqa: PLC0415

    settings = ExtractionSettings(model_complexity=args.model_complexity, refine_face_landmarks=args.refine_face,
                                  min_detection_confidence=args.min_detection_confidence,
                                  min_tracking_confidence=args.min_tracking_confidence,
                                  static_image_mode=args.static_image_mode, backend=args.backend,
                                  model_bundle=None if args.model_bundle is None else str(args.model_bundle))
    settings.check_ready()  # ValueError (the bundle's BundleError too) says what to do; tasks: builds the bundle
    return settings


def _set_up_logging(verbose: bool, level: int) -> None:
    if verbose:
        os.environ[MEDIAPIPE_LOGS_ENV] = "1"  # inherited by the workers and helper processes
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("phoenix_data").setLevel(logging.DEBUG if verbose else logging.INFO)


# --- phoenix-warm-cache ---------------------------------------------------------------------------

def build_warm_parser() -> argparse.ArgumentParser:
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
    how.add_argument("--workers", type=_non_negative(int, "a whole number", "0 extracts in one helper process"),
                     default=None, help="worker processes (default: one per core, at most one per GiB of free "
                                        "memory); 0 extracts in one helper process")
    how.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="extract with Ray actors on a cluster; the cache stays on this machine. Without "
                          "ADDRESS: the cluster RAY_ADDRESS or a running `ray start --head` names, else a "
                          "new local one. --workers then counts actors (default: one per cluster CPU, at "
                          "most one per GiB of its memory). Needs: pip install -e '.[ray]'")
    how.add_argument("--retry-failed", action="store_true", help="try samples that failed before again")
    how.add_argument("--allow-failures", action="store_true", help="exit 0 even when samples failed")
    how.add_argument("--overwrite", action="store_true",
                     help="discard a cache made with other extraction settings")
    how.add_argument("--repair", action="store_true",
                     help="decode every cached record (checksums too) and extract damaged ones again; "
                          "without it a rerun checks each record's header only")
    how.add_argument("--report-dir", type=Path, help="where summary.json, metrics.csv and "
                                                      "failed_samples.json go (default: the cache directory)")
    how.add_argument("--heartbeat", type=_non_negative(float, "seconds", "0: a line per sample"),
                     default=DEFAULT_HEARTBEAT_SECONDS,
                     help="seconds between progress lines when stderr is not a terminal (default: 10)")
    add_settings_arguments(parser)
    return parser


def warm_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> "WarmOptions":
    """Check the argument combination; builds the demo tree for --demo."""
    from .warm import WarmOptions, default_workers  # noqa: PLC0415

    if args.demo_dir is not None and not args.demo:
        parser.error("--demo-dir is only used with --demo; add --demo or drop --demo-dir.")
    if args.demo and args.root is not None:
        parser.error("--demo builds its own tree; drop --root (or drop --demo to warm ROOT).")
    if not args.demo and (args.root is None or args.cache is None):
        parser.error("--root ROOT and --cache CACHE are required (or --demo to warm the built-in demo tree).")
    try:
        settings = settings_from_args(args)
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


def _build_demo(demo_dir: Optional[Path]) -> Path:
    from .demo import build_demo  # noqa: PLC0415

    out = Path(demo_dir).expanduser() if demo_dir is not None else Path(tempfile.mkdtemp(prefix="phoenix-demo-"))
    roots = build_demo(out)
    logging.getLogger("phoenix_data.warm").info(
        "[warm] demo tree (%d releases, made-up annotations, frames of real signing) written to %s", len(roots), out)
    return out


# The flags add_settings_arguments() adds, in its order (settings_flags() repeats those given).
SETTINGS_FLAGS = ("--model-complexity", "--refine-face", "--min-detection-confidence", "--min-tracking-confidence",
                  "--static-image-mode", "--backend", "--model-bundle")


def settings_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The extraction-settings flags given on a command line (' --backend tasks ...'), to repeat them."""
    flags = []
    for flag in SETTINGS_FLAGS:
        dest = flag[2:].replace("-", "_")
        value = getattr(args, dest)
        if value != parser.get_default(dest):
            flags.append(flag if value is True else f"{flag} {value}")
    return "".join(" " + flag for flag in flags)


def warm_report(outcome: "WarmOutcome", demo_root: Optional[Path], flags: str = "") -> List[str]:
    """What the command prints when done: one summary line, then where things are and what to do next."""
    from .cache import describe_discarded  # noqa: PLC0415

    s, c = outcome.summary, outcome.summary["counts"]
    fps = f"{s['frames_per_s']:.1f} frames/s" if s["frames_per_s"] else "no frames extracted"
    unit = "Ray actor" if "ray" in s else "worker"
    workers = f"{s['workers']} {unit}{'' if s['workers'] == 1 else 's'}"
    head = {EXIT_INTERRUPTED: "Warm-up interrupted", EXIT_ABORTED: "Warm-up aborted"}.get(
        outcome.exit_status, "Warm-up done")
    lines = [f"{head}: {c['total']} samples: {c['extracted']} extracted, {c['cached']} already cached, "
             f"{c['failed']} failed, {c['remaining']} left | {fps} over {s['wall_seconds']:.1f} s with {workers}"]
    if s["discarded_records"]:
        lines.append(f"Discarded: {describe_discarded(s['discarded_records'])} of other extraction settings")
    if demo_root is not None:
        lines.append(f"Demo tree: {demo_root}")
    lines += [f"Cache:     {s['cache']}",
              f"Reports:   {outcome.summary_path}, {outcome.metrics_path.name}, {outcome.failed_path.name}"]
    return lines + _warm_advice(outcome, demo_root, flags)


def _warm_advice(outcome: "WarmOutcome", demo_root: Optional[Path], flags: str) -> List[str]:
    s, c, lines = outcome.summary, outcome.summary["counts"], []
    if outcome.reports_error:
        lines.append(f"Error: {outcome.reports_error}")
    if c["failed"]:
        lines.append(f"{c['failed']} samples failed; reasons in {outcome.failed_path}. Fix their frames and "
                     "rerun with --retry-failed" + ("." if s["allow_failures"] else ", or pass --allow-failures."))
    if s["held_by_other_process"]:
        lines.append(f"{len(s['held_by_other_process'])} samples are still being extracted by another process "
                     "on this cache; rerun when it is done.")
    if c["remaining"]:
        lines.append(f"{c['remaining']} samples left: rerun the same command to finish "
                     "(what finished is kept and skipped).")
    if s["aborted"]:
        lines.append(f"Cause: {s['aborted']}")
    if demo_root is not None and outcome.exit_status == 0:
        lines.append(f"Next:      phoenix-dataset --root {demo_root / 'PHOENIX-2014-T-release-v3'} "
                     f"--cache {s['cache']} --verify{flags}")
    return lines


def _check_report_dir(reports: Path) -> None:
    """Fail before any work when the reports cannot be written, not after hours of extraction."""
    reports.mkdir(parents=True, exist_ok=True)
    if not os.access(reports, os.W_OK):
        raise OSError(f"report folder {reports} is not writable; pass --report-dir DIR.")


def _warm(argv: Optional[Sequence[str]]) -> int:
    parser = build_warm_parser()
    args = parser.parse_args(argv)
    _set_up_logging(args.verbose, logging.INFO)
    import lmdb  # noqa: PLC0415

    from .cache import CacheError, CacheSpaceError  # noqa: PLC0415
    from .corpus import CorpusError  # noqa: PLC0415
    from .warm import make_plan, warm  # noqa: PLC0415

    try:
        options = warm_options(parser, args)
        plan = make_plan(options)
        _check_report_dir(options.reports)
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
    from .warm.ray import RayWarmError, warm_on_ray  # noqa: PLC0415

    if args.workers == 0:
        parser.error("--workers 0 (one local helper process) has no meaning with --ray; give the number of "
                     "actors, or leave --workers out for one per cluster CPU.")
    try:
        return warm_on_ray(options, plan, address=args.ray or None, actors=args.workers)
    except RayWarmError as exc:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc}\n")


def warm_main(argv: Optional[Sequence[str]] = None) -> int:
    """``phoenix-warm-cache``: parse, warm, print where the cache and reports are; returns the exit status."""
    return _guarded("warm", lambda: _warm(argv))


# --- phoenix-dataset ------------------------------------------------------------------------------

def build_check_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--batch-size", type=int, default=4,
                        help="samples in the DataLoader smoke test batch (default 4)")
    add_settings_arguments(parser)
    return parser


def _check(argv: Optional[Sequence[str]]) -> int:
    parser = build_check_parser()
    args = parser.parse_args(argv)
    if args.verify and args.cache is None:
        parser.error("--verify needs --cache CACHE: it checks the cached records.")
    if (args.render is None) != (args.out is None):
        parser.error("--render ID and --out PATH go together: which sample, and where its contact sheet goes.")
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}; expected 1 or more.")
    _set_up_logging(args.verbose, logging.WARNING)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.getLogger("phoenix_data").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    import lmdb  # noqa: PLC0415

    from .check import CheckError, CheckOptions, run  # noqa: PLC0415
    from .corpus import CorpusError  # noqa: PLC0415
    from .frames import FramesError  # noqa: PLC0415

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


def check_main(argv: Optional[Sequence[str]] = None) -> int:
    """``phoenix-dataset``: print the report; 0 all good, 1 problems found, 2 the check cannot run."""
    return _guarded("dataset", lambda: _check(argv))


COMMANDS = {"warm-cache": warm_main, "dataset": check_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m phoenix_data.cli {{{','.join(COMMANDS)}}} [ARGS]")
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
