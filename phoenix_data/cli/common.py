"""What the commands share: the Ctrl+C policy, logging, the extraction-settings flags.

Heavy modules (torch, MediaPipe) are imported inside the commands, after the Ctrl+C handler is in
place, so that Ctrl+C during start-up exits 130 quietly.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..exit_codes import EXIT_INTERRUPTED, EXIT_USAGE

if TYPE_CHECKING:
    from ..extract.mediapipe.settings import HolisticSettings

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


def guarded(prog: str, body: Callable[[], int]) -> int:
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
              "torch==2.13.0` (docs/python-versions.md). Extraction, the cache and phoenix-models work "
              "without it.",
              file=sys.stderr)
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGINT, previous)



# --- shared arguments ---

def non_negative(kind: type, what: str, hint: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r}; expected {what} >= 0 ({hint})")
        return value
    return parse


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}; expected a value in [0, 1]")
    return value


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """MediaPipe Holistic settings: a cache holds records of one setting (its fingerprint).

    Defaults are ``HolisticSettings``' own (read from the dataclass, not retyped here).
    """
    # inside the function: commands build their parser after the Ctrl+C handler is in place
    from ..extract.mediapipe.settings import BACKENDS, HolisticSettings  # noqa: PLC0415

    default = {f.name: f.default for f in dataclasses.fields(HolisticSettings)}
    group = parser.add_argument_group("extraction settings (must match the cache's)")
    group.add_argument("--model-complexity", type=int, choices=(0, 1, 2), default=default["model_complexity"],
                       help="pose model: 1 is bundled with mediapipe 0.10.21; 0 and 2 need their model file")
    group.add_argument("--refine-face", action="store_true",
                       help="refined face landmarks (478 face points, 553 per frame)")
    for flag, name in (("--min-detection-confidence", "min_detection_confidence"),
                       ("--min-tracking-confidence", "min_tracking_confidence")):
        group.add_argument(flag, type=unit_interval, default=default[name], metavar="P",
                           help=f"default {default[name]}")
    group.add_argument("--static-image-mode", action="store_true",
                       help="detect in every frame instead of tracking within a video")
    group.add_argument("--backend", choices=BACKENDS, default=None,
                       help="legacy: mp.solutions.holistic (mediapipe 0.10.21); tasks: HolisticLandmarker on a "
                            "bundle built offline (phoenix-models). Default: legacy where mediapipe 0.10.21 is "
                            "installed, tasks elsewhere")
    group.add_argument("--model-bundle", type=Path, default=None, metavar="FILE.task",
                       help="tasks backend: this bundle instead of the one `phoenix-models build` writes")
    parser.add_argument("--verbose", action="store_true",
                        help="also show MediaPipe's own log lines (hidden by default)")


def settings_from_args(args: argparse.Namespace) -> "HolisticSettings":
    """The command's MediaPipe settings, checked: chosen here, at the top, and passed down."""
    from ..extract.mediapipe.settings import HolisticSettings  # noqa: PLC0415

    settings = HolisticSettings(model_complexity=args.model_complexity, refine_face_landmarks=args.refine_face,
                                  min_detection_confidence=args.min_detection_confidence,
                                  min_tracking_confidence=args.min_tracking_confidence,
                                  static_image_mode=args.static_image_mode, backend=args.backend,
                                  model_bundle=None if args.model_bundle is None else str(args.model_bundle))
    settings.check_ready()  # ValueError (the bundle's BundleError too) says what to do; tasks: builds the bundle
    return settings


def set_up_logging(verbose: bool, level: int) -> None:
    if verbose:
        os.environ[MEDIAPIPE_LOGS_ENV] = "1"  # inherited by the workers and helper processes
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("phoenix_data").setLevel(logging.DEBUG if verbose else logging.INFO)


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
