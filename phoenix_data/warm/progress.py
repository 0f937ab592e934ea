"""Progress of a warm-up: a tqdm bar on a terminal, a heartbeat line in a log file."""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # for the annotation only: tqdm is imported when a terminal needs a bar
    from tqdm import tqdm

log = logging.getLogger(__name__)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A tqdm bar on a terminal; otherwise a heartbeat line every ``heartbeat`` seconds (no '\\r').

    The heartbeat comes from a thread of its own, so it also beats while a long sample is under way.
    ``pause()`` stops that thread while the job forks workers (a process should not fork while it
    runs threads); ``resume()`` starts it again.
    """

    def __init__(self, total: int, heartbeat: float, bar: bool) -> None:
        self.total, self.heartbeat = total, heartbeat
        self.done = self.failed = self.frames = 0
        self.started = time.monotonic()
        self._bar: Optional[tqdm] = None
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        if bar and total:
            from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

            self._bar = tqdm(total=total, unit="sample", file=sys.stderr, dynamic_ncols=True)
        self.resume()

    def resume(self) -> None:
        if self._bar is None and self.total and self.heartbeat > 0 and self._beat is None:
            self._stop.clear()
            self._beat = threading.Thread(target=self._beat_loop, name="warm-heartbeat", daemon=True)
            self._beat.start()

    def pause(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            log.info("%s", self.line())

    def update(self, failed: bool, frames: int) -> None:
        self.done += 1
        self.failed += failed
        self.frames += frames
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.frames_per_s:.1f} frames/s, {self.failed} failed", refresh=False)
            self._bar.update(1)
        elif self.heartbeat <= 0:  # --heartbeat 0: a line per sample
            log.info("%s", self.line())

    @property
    def frames_per_s(self) -> float:
        return self.frames / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / max(elapsed, 1e-9)
        eta = clock((self.total - self.done) / rate) if self.done else "?"
        return (f"[warm] {self.done}/{self.total} samples ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{self.failed} failed | {self.frames_per_s:.1f} frames/s, {rate:.2f} samples/s | "
                f"elapsed {clock(elapsed)}, ETA {eta}")

    def note(self, message: str) -> None:
        """A warning line that does not tear the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            log.warning("%s", message)

    def close(self) -> None:
        beating = self._beat is not None
        self.pause()
        if beating:
            log.info("%s", self.line())  # the final figures, whenever the last beat was
        if self._bar is not None:
            self._bar.close()


def make_progress(total: int, heartbeat: float, bar: Optional[bool]) -> Progress:
    return Progress(total, heartbeat, sys.stderr.isatty() if bar is None else bar)
