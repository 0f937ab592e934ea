"""What a warm-up leaves behind: ``metrics.csv`` (appended), ``summary.json`` and ``failed_samples.json``.

``summary.json`` and ``failed_samples.json`` describe the last run (replaced atomically);
``metrics.csv`` gets one row per extracted sample, appended run after run, so a resumed warm-up
keeps the rows of its earlier runs.
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .. import __version__
from ..cache.fill import Outcome
from ..exit_codes import EXIT_ABORTED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK
from ..extract import extractor_versions
from ..record import PARTS
from .plan import WarmOptions, WarmPlan
from .results import RunState, TaskResult
from .summary import WarmCounts, WarmSummary

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed_samples.json"
METRICS_FILE = "metrics.csv"
METRICS_FIELDS: Tuple[str, ...] = ("run", "id", "release", "split", "frames", "seconds", "frames_per_s",
                                   "cpu_seconds", "worker_pid", *PARTS)


class MetricsWriter:
    """``metrics.csv``: one row per extracted sample, appended and flushed as results arrive."""

    def __init__(self, path: Path, run: str) -> None:
        self.path, self.run = path, run
        _repair_csv(path)
        new = not path.is_file() or path.stat().st_size == 0
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(METRICS_FIELDS)
            self._file.flush()

    def write(self, plan: WarmPlan, result: TaskResult) -> None:
        status = result.status
        if status.outcome != Outcome.EXTRACTED:
            return
        sample = plan.samples[result.task]
        fps = status.frames / status.seconds if status.seconds > 0 else 0.0
        self._writer.writerow([self.run, sample.id, sample.release, sample.split, status.frames,
                               f"{status.seconds:.3f}", f"{fps:.2f}", f"{result.cpu_seconds:.3f}", status.pid,
                               *(f"{status.detection.get(part, 0.0):.4f}" for part in PARTS)])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _repair_csv(path: Path) -> None:
    """Drop a row cut short by a kill; set aside a file with other columns (an older version's)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    header = ",".join(METRICS_FIELDS).encode()
    if data and not data.startswith(header + b"\r\n") and not data.startswith(header + b"\n"):
        aside = path.with_name(path.name + ".old")
        log.warning("[warm] %s has other columns; moved it to %s", path, aside)
        os.replace(path, aside)
    elif data and not data.endswith(b"\n"):
        with path.open("r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


def write_json_atomic(path: Path, value) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it: a reader sees old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def failed_samples(plan: WarmPlan, state: RunState) -> List[dict]:
    """Every sample that has no record because it failed: in this run, or before (not retried)."""
    now = [(r.status.key, r.status.reason, True) for r in state.results if r.status.outcome == Outcome.FAILED]
    before = [(key, reason, False) for key, reason in plan.failed_before.items()]
    entries = []
    for key, reason, this_run in sorted(now + before):
        release, split, sample_id = key.split("/", 2)
        entries.append({"key": key, "release": release, "split": split, "id": sample_id,
                        "reason": reason, "failed_this_run": this_run})
    return entries


def exit_status(options: WarmOptions, plan: WarmPlan, state: RunState) -> int:
    if state.interrupted:
        return EXIT_INTERRUPTED
    if state.aborted or state.waiting_elsewhere:
        return EXIT_ABORTED
    failed = len(plan.failed_before) + len(state.keys(Outcome.FAILED))
    return EXIT_FAILURES if failed and not options.allow_failures else EXIT_OK


def count_late_commits(plan: WarmPlan, state: RunState) -> Tuple[int, int]:
    """(samples, frames) a worker committed whose result the main process never received (stopped early)."""
    reported = {r.task for r in state.results}
    unreported = [plan.samples[t].key for t in plan.todo if t not in reported]
    if not unreported:
        return 0, 0
    with plan.cache.session():
        frames = [plan.cache.num_frames(key) for key in unreported]
    done = [n for n in frames if n is not None]
    return len(done), sum(done)


def summarize(options: WarmOptions, plan: WarmPlan, state: RunState, status: int,
              late: Tuple[int, int] = (0, 0)) -> WarmSummary:
    """What the run did (``summary.json``)."""
    done = [r for r in state.results if r.status.outcome == Outcome.EXTRACTED]
    ours = _cached_by_this_job(state)
    late = (late[0] + len(ours), late[1] + sum(r.status.frames for r in ours))
    frames = sum(r.status.frames for r in done) + late[1]
    cpu = sum(r.cpu_seconds for r in state.results)
    extracted, failed = len(done) + late[0], len(plan.failed_before) + len(state.keys(Outcome.FAILED))
    cached = plan.cached + len(state.keys(Outcome.CACHED)) - len(ours)
    counts = WarmCounts(total=len(plan.samples), extracted=extracted, cached=cached, failed=failed,
                        remaining=len(plan.samples) - extracted - cached - failed)
    rates = [r.status.frames / r.status.seconds for r in done if r.status.seconds > 0]
    wall = state.wall_seconds
    return WarmSummary(
        counts=counts,
        sent_to_workers=len(plan.todo),
        extracted_without_metrics=late[0],
        wall_seconds=round(wall, 3),
        worker_cpu_seconds=round(cpu, 3),
        speedup=round(cpu / wall, 3) if wall > 0 else None,
        frames_extracted=frames,
        frames_per_s=round(frames / wall, 3) if wall > 0 else None,
        per_sample_frames_per_s=_spread(rates),
        workers=options.workers,
        worker_crashes=state.crashes,
        main_pid=os.getpid(),
        peak_rss_mb_per_worker=_peak_rss(state.results),
        detection_rates=_detection_rates(done),
        interrupted=state.interrupted,
        aborted=state.aborted or None,
        held_by_other_process=[plan.samples[t].key for t in state.waiting_elsewhere],
        exit_status=status,
        **_context(options, plan),
    )


def _cached_by_this_job(state: RunState) -> List[TaskResult]:
    """Samples found cached during the run that a process of this job had committed: a worker that
    died (or was stopped) after its commit but before its result reached the main process."""
    pids = state.job_pids | {r.status.pid for r in state.results if r.status.outcome == Outcome.EXTRACTED}
    return [r for r in state.results if r.status.outcome == Outcome.CACHED and r.status.pid in pids]


def _spread(values: List[float]) -> Optional[Dict[str, float]]:
    if not values:
        return None
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


def _peak_rss(results: List[TaskResult]) -> Dict[str, float]:
    peak: Dict[str, float] = {}
    for result in results:
        if result.status.outcome != Outcome.EXTRACTED:
            continue
        pid = str(result.status.pid)
        peak[pid] = round(max(peak.get(pid, 0.0), result.max_rss_mb), 1)
    return peak


def _detection_rates(done: List[TaskResult]) -> Dict[str, Optional[float]]:
    """Share of extracted frames in which each part was found (frame-weighted over samples)."""
    frames = sum(r.status.frames for r in done)
    return {part: (round(sum(r.status.detection.get(part, 0.0) * r.status.frames for r in done) / frames, 4)
                   if frames else None) for part in PARTS}


def _context(options: WarmOptions, plan: WarmPlan) -> dict:
    return {
        "cache": str(plan.cache.path),
        "report_dir": str(options.reports),
        "releases": plan.releases,
        "splits": plan.splits,
        "retry_failed": options.retry_failed,
        "allow_failures": options.allow_failures,
        "settings": options.settings.as_dict(),
        "settings_fingerprint": options.settings.fingerprint(),
        "discarded_records": plan.cache.discarded,
        "versions": {"phoenix_data": __version__, **extractor_versions(options.settings),
                     "torch": _version_of("torch"), "python": platform.python_version()},
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _version_of(package: str) -> Optional[str]:
    """A package's version: its ``__version__`` where it is imported (torch's names its build, e.g.
    2.13.0+cu130), else the installed distribution's (a Ray driver never imports torch for it)."""
    module = sys.modules.get(package)
    if module is not None:
        return str(getattr(module, "__version__", None))
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class WarmOutcome:
    """What a warm-up did: the summary (as written to summary.json), the failures, the exit status."""

    summary: WarmSummary  # written to summary.json (``to_json()``)
    failed: List[dict]
    exit_status: int
    summary_path: Path
    failed_path: Path
    metrics_path: Path
    reports_error: str = ""  # the reports could not be written (a full disk): why


def finish(options: WarmOptions, plan: WarmPlan, state: RunState, reports: Path,
            extra: Optional[dict] = None) -> WarmOutcome:
    """Write summary.json (with ``extra``'s entries, e.g. a Ray run's nodes) and failed_samples.json."""
    late = count_late_commits(plan, state) if (state.interrupted or state.aborted) else (0, 0)
    status = exit_status(options, plan, state)
    summary, failed = summarize(options, plan, state, status, late), failed_samples(plan, state)
    summary = dataclasses.replace(summary, **(extra or {}))
    outcome = WarmOutcome(summary, failed, status, reports / SUMMARY_FILE, reports / FAILED_FILE,
                          reports / METRICS_FILE)
    try:
        write_json_atomic(outcome.failed_path, failed)
        write_json_atomic(outcome.summary_path, summary.to_json())
    except OSError as exc:  # a full disk: the cache holds what finished; say so instead of a traceback
        outcome.reports_error = f"reports not written to {reports}: {exc.strerror or exc}"
        outcome.exit_status = status if status == EXIT_INTERRUPTED else EXIT_ABORTED
    return outcome
