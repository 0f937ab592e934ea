"""The warm-up job: extract every sample of a PHOENIX tree into the landmark cache, with worker processes.

Library side of ``scripts/warm_cache.py`` and the ``phoenix-warm-cache`` command::

    phoenix-warm-cache --root /data/phoenix2014-release --cache /data/phoenix.lmdb
    phoenix-warm-cache --demo          # builds the demo tree in a temporary folder and warms it

One DataLoader runs over every (release, split, sample) still to do, so each worker builds its
MediaPipe Holistic once. A worker writes each sample in one LMDB commit: that commit is the
checkpoint. After Ctrl+C, ``kill -9`` or a dead worker, a rerun skips what was committed (the main
process checks coverage in a cache session, closed again before the workers fork) and extracts the
rest. The main process receives small per-sample metadata (:class:`TaskResult`), never landmarks.

Exit status: 0 done; 1 some samples failed (0 with ``--allow-failures``); 2 bad arguments;
3 aborted (a worker died, or an error no sample policy covers): rerun to finish; 130 Ctrl+C: rerun to finish.

Reports in ``--report-dir`` (default: the cache folder): ``summary.json`` and ``failed_samples.json``
describe the last run (replaced atomically); ``metrics.csv`` gets one row per extracted sample,
appended run after run, so a resumed warm-up keeps the rows of its earlier runs.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import platform
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import lmdb
import torch
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .cache import CacheError, LandmarkCache
from .corpus import RELEASES, SPLITS, CorpusError, Release, Sample, find_release
from .dataset import PhoenixLandmarks, SampleStatus
from .extract import PARTS, ExtractionSettings, holistic_builds, mediapipe_version
from .vocab import Vocabulary

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
EXIT_INTERRUPTED = 130
ALL_SPLITS = "all"
DEFAULT_HEARTBEAT_SECONDS = 10.0
# A worker's peak resident memory is ~0.5 GB (torch pages shared with the parent, MediaPipe's graph); headroom.
WORKER_MEMORY_BYTES = 1 << 30
# No result from any worker for this long is a hang, not a slow sample (PHOENIX's longest, 299 frames,
# takes ~15 s): the run stops (exit 3) instead of waiting forever.
RESULT_TIMEOUT_SECONDS = 600.0
SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed_samples.json"
METRICS_FILE = "metrics.csv"
METRICS_FIELDS: Tuple[str, ...] = ("run", "id", "release", "split", "frames", "seconds", "frames_per_s",
                                   "cpu_seconds", "worker_pid", *PARTS)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a batch scheduler)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> Optional[int]:
    """Bytes of memory available for new processes (MemAvailable), or None where /proc/meminfo is missing."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_workers(cores: Optional[int] = None, memory: Optional[int] = None) -> int:
    """One worker per available core, at most one per GiB of available memory, at least one.

    Measured on a 2-core machine, cold cache (frames/s; 1 / 2 / 3 workers) on frames without hands:
    21 samples of 8-14 frames: 24.5 / 37.6 / 35.5; 2,040 frames in 15 videos (benchmarks/bench_extraction.py):
    35.8 / 59.6 / 57.0, i.e. 2 workers reach 0.95 of the machine's limit. One Holistic worker keeps
    ~1.2 cores busy, so a second worker on 2 cores gains ~1.6x; a third only competes.
    """
    cores = available_cores() if cores is None else cores
    memory = available_memory() if memory is None else memory
    by_memory = cores if memory is None else memory // WORKER_MEMORY_BYTES
    return max(1, min(cores, by_memory))


# --- what to warm --------------------------------------------------------------------------------

@dataclass
class WarmOptions:
    """One warm-up job. ``report_dir`` None: the cache folder. ``progress_bar`` None: when stderr is a terminal."""

    root: Path
    cache: Path
    split: str = ALL_SPLITS
    release: Optional[str] = None
    workers: int = field(default_factory=default_workers)
    report_dir: Optional[Path] = None
    retry_failed: bool = False
    allow_failures: bool = False
    overwrite: bool = False
    repair: bool = False  # decode every cached record (checksums too); re-extract damaged ones
    heartbeat: float = DEFAULT_HEARTBEAT_SECONDS
    progress_bar: Optional[bool] = None
    settings: ExtractionSettings = field(default_factory=ExtractionSettings)

    @property
    def reports(self) -> Path:
        return Path(self.report_dir if self.report_dir is not None else self.cache).expanduser()


@dataclass
class WarmPlan:
    """Every sample of the job, and which of them go to the workers."""

    cache: LandmarkCache
    datasets: List[PhoenixLandmarks]
    tasks: List[Tuple[int, int]]  # (dataset, sample index) of the samples to extract
    cached: int  # samples with a record already: skipped, no frame read
    failed_before: Dict[str, str]  # key -> reason, samples that failed before and are not retried

    @property
    def samples(self) -> List[Sample]:
        return [sample for dataset in self.datasets for sample in dataset.samples]

    def sample(self, task: int) -> Sample:
        dataset, index = self.tasks[task]
        return self.datasets[dataset].samples[index]


def find_releases(root: Path, release: Optional[str] = None) -> List[Release]:
    """The releases under ``root``: the one named by ``release``, else every release found there."""
    if release is not None:
        return [find_release(root, release)]
    found = []
    for name in RELEASES:
        with contextlib.suppress(CorpusError):
            found.append(find_release(root, name))
    return found or [find_release(root)]  # none: find_release says what it looked for


def release_splits(release: Release, split: str) -> List[str]:
    """``[split]``, or for "all" the splits whose corpus CSV exists (SI5 copies may lack dev)."""
    if split != ALL_SPLITS:
        return [split]
    present = [s for s in SPLITS if release.csv_path(s).is_file()]
    missing = sorted(set(SPLITS) - set(present))
    if missing:
        log.info("%s has no %s split (no corpus CSV); warming %s", release.name, "/".join(missing),
                 "/".join(present))
    return present


def make_plan(options: WarmOptions) -> WarmPlan:
    """Read the corpora and check the cache's coverage; opens no cache beyond a closed session."""
    if options.split not in (*SPLITS, ALL_SPLITS):
        raise CorpusError(f"Unknown split {options.split!r}; expected one of "
                          f"{', '.join(map(repr, (*SPLITS, ALL_SPLITS)))}.")
    releases = find_releases(Path(options.root).expanduser(), options.release)
    # overwrite discards a cache only when it was made with other settings: rerunning the same
    # command with --overwrite still resumes.
    cache = LandmarkCache(options.cache, options.settings, overwrite=options.overwrite)
    no_vocab = Vocabulary(())  # glosses play no part in warming; skip reading train CSVs for them
    datasets = [PhoenixLandmarks(rel.root, split, cache=cache.path, release=rel.name,
                                 settings=options.settings, vocab=no_vocab)
                for rel in releases for split in release_splits(rel, options.split)]
    keys = [sample.key for dataset in datasets for sample in dataset.samples]
    with cache.session():  # closed again: an LMDB env must not cross the workers' fork()
        cached, damaged = cache.check_records(keys, full=options.repair)
        failures = {k: v.get("reason", "") for k, v in cache.failures().items() if k not in cached}
    for key, reason in damaged.items():
        log.warning("[warm] damaged record, extracting again: %s", reason)
    skip_failed = {} if options.retry_failed else failures
    tasks = [(d, i) for d, dataset in enumerate(datasets) for i, sample in enumerate(dataset.samples)
             if sample.key not in cached and sample.key not in skip_failed]
    failed_before = {k: skip_failed[k] for k in keys if k in skip_failed}
    return WarmPlan(cache, datasets, tasks, len(keys) - len(tasks) - len(failed_before), failed_before)


# --- the workers' side ---------------------------------------------------------------------------

@dataclass
class TaskResult:
    """What a worker sends back for one sample: small, no landmarks."""

    task: int
    status: SampleStatus
    cpu_seconds: float  # process CPU time (all threads, MediaPipe's too) spent on this sample
    max_rss_mb: float  # the worker's peak resident memory so far


class WarmTasks(Dataset):
    """The samples to extract as a Dataset: item ``i`` extracts and stores one sample, returns a TaskResult."""

    def __init__(self, plan: WarmPlan, retry_failed: bool, verify: bool = False) -> None:
        self.datasets = plan.datasets
        self.tasks = plan.tasks
        self.retry_failed = retry_failed
        self.verify = verify

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, task: int) -> TaskResult:
        dataset, index = self.tasks[task]
        cpu = time.process_time()
        status = self.datasets[dataset].ensure_cached(index, retry_failed=self.retry_failed, verify=self.verify)
        cpu = time.process_time() - cpu
        return TaskResult(task, status, cpu, _max_rss_mb())


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl+C in a terminal reaches the whole process group: the main process alone decides to
    # stop; a worker finishes (and commits) the sample it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _as_is(result: TaskResult) -> TaskResult:
    return result


# --- progress --------------------------------------------------------------------------------------

class Progress:
    """A tqdm bar on a terminal; otherwise a heartbeat line every ``heartbeat`` seconds (no '\\r').

    The heartbeat comes from a thread of its own, so it also beats while a long sample is under way.
    Create it after the workers have forked: a process should not fork while it runs threads.
    """

    def __init__(self, total: int, heartbeat: float, bar: bool) -> None:
        self.total, self.heartbeat = total, heartbeat
        self.done = self.failed = self.frames = 0
        self.started = time.monotonic()
        self._bar, self._stop, self._beat = None, threading.Event(), None
        if bar and total:
            from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

            self._bar = tqdm(total=total, unit="sample", file=sys.stderr, dynamic_ncols=True)
        elif total and heartbeat > 0:
            self._beat = threading.Thread(target=self._beat_loop, name="warm-heartbeat", daemon=True)
            self._beat.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            log.info("%s", self.line())

    def update(self, result: TaskResult) -> None:
        self.done += 1
        self.failed += result.status.status == "failed"
        self.frames += result.status.frames if result.status.status == "extracted" else 0
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
        eta = _clock((self.total - self.done) / rate) if self.done else "?"
        return (f"[warm] {self.done}/{self.total} samples ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{self.failed} failed | {self.frames_per_s:.1f} frames/s, {rate:.2f} samples/s | "
                f"elapsed {_clock(elapsed)}, ETA {eta}")

    def note(self, message: str) -> None:
        """A warning line that does not tear the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            log.warning("%s", message)

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            log.info("%s", self.line())  # the final figures, whenever the last beat was
        if self._bar is not None:
            self._bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- running --------------------------------------------------------------------------------------

@dataclass
class RunState:
    """What came back from the workers, and how the run ended."""

    results: List[TaskResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    interrupted: bool = False
    aborted: str = ""  # why the run stopped early, besides Ctrl+C
    late_extracted: int = 0  # committed by a worker, but its result never reached the main process

    def keys(self, status: str) -> List[str]:
        return [r.status.key for r in self.results if r.status.status == status]


def run_tasks(plan: WarmPlan, options: WarmOptions, metrics: "MetricsWriter") -> RunState:
    """Extract the plan's tasks with ``options.workers`` processes; returns when done, stopped or broken."""
    state = RunState()
    if not plan.tasks:
        return state
    _check_nothing_to_inherit(plan, options.workers)
    loader = DataLoader(WarmTasks(plan, options.retry_failed, options.repair), batch_size=None, num_workers=options.workers,
                        collate_fn=_as_is, worker_init_fn=_ignore_sigint if options.workers else None,
                        timeout=RESULT_TIMEOUT_SECONDS if options.workers else 0,
                        in_order=False)  # results as they finish: progress is true, no worker waits
    bar = sys.stderr.isatty() if options.progress_bar is None else options.progress_bar
    started, batches, progress = time.monotonic(), None, None
    try:
        with _sigint_ignored():  # workers fork with SIGINT ignored, so no Ctrl+C lands before their init
            batches = iter(loader)
        progress = Progress(len(plan.tasks), options.heartbeat, bar)  # after the fork: it may run a thread
        for result in batches:
            state.results.append(result)
            metrics.write(plan, result)
            progress.update(result)
            if result.status.status == "failed":
                progress.note(f"[warm] failed: {result.status.key}: {result.status.reason}")
    except KeyboardInterrupt:
        state.interrupted = True
    except Exception as exc:  # noqa: BLE001 - a dead worker, a hang, an unexpected error: report, then stop
        state.aborted = f"{type(exc).__name__}: {exc}"
    finally:
        if progress is not None:
            progress.close()
        if state.interrupted:
            log.warning("[warm] Ctrl+C: taking no new samples; stopping the workers (Ctrl+C again quits at once)")
        if state.aborted:
            log.error("[warm] run aborted: %s", state.aborted)
        _shutdown(batches)
        state.wall_seconds = time.monotonic() - started
    return state


def _check_nothing_to_inherit(plan: WarmPlan, workers: int) -> None:
    """Workers fork from this process: a built Holistic here would break them (LMDB handles close
    themselves before any fork)."""
    if workers and holistic_builds():
        raise RuntimeError("this process built a MediaPipe Holistic (it extracted a sample itself) before the "
                           "warm-up forks its workers, which that would break. Run the warm-up in a fresh "
                           "process, or with workers=0.")


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _shutdown(batches) -> None:
    """Stop the workers now (rather than whenever the iterator is collected), before the cache is re-read.

    A worker gets a few seconds to commit the sample it holds, then is terminated; an uncommitted
    sample leaves nothing behind and is extracted on the next run.
    """
    shutdown = getattr(batches, "_shutdown_workers", None)  # torch's own clean-up of the iterator
    if shutdown is not None:
        shutdown()


def count_late_commits(plan: WarmPlan, state: RunState) -> int:
    """Samples a worker committed whose result the main process never received (stopped early)."""
    reported = {r.task for r in state.results}
    unreported = [plan.sample(t).key for t in range(len(plan.tasks)) if t not in reported]
    if not unreported:
        return 0
    with plan.cache.session():
        return len(plan.cache.cached(unreported))


# --- reports --------------------------------------------------------------------------------------

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
        if status.status != "extracted":
            return
        sample = plan.sample(result.task)
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
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def failed_samples(plan: WarmPlan, state: RunState) -> List[dict]:
    """Every sample that has no record because it failed: in this run, or before (not retried)."""
    now = [(r.status.key, r.status.reason, True) for r in state.results if r.status.status == "failed"]
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
    if state.aborted:
        return EXIT_ABORTED
    failed = len(plan.failed_before) + len(state.keys("failed"))
    return EXIT_FAILURES if failed and not options.allow_failures else EXIT_OK


def summarize(options: WarmOptions, plan: WarmPlan, state: RunState, status: int) -> dict:
    """The content of ``summary.json``."""
    done = [r for r in state.results if r.status.status == "extracted"]
    frames = sum(r.status.frames for r in done)
    cpu = sum(r.cpu_seconds for r in state.results)
    counts = {"total": len(plan.samples), "extracted": len(done) + state.late_extracted,
              "cached": plan.cached + len(state.keys("cached")),
              "failed": len(plan.failed_before) + len(state.keys("failed"))}
    counts["remaining"] = counts["total"] - counts["extracted"] - counts["cached"] - counts["failed"]
    rates = [r.status.frames / r.status.seconds for r in done if r.status.seconds > 0]
    return {
        "counts": counts,
        "sent_to_workers": len(plan.tasks),  # the rest was cached or failed before: no frame read
        "extracted_without_metrics": state.late_extracted,
        "wall_seconds": round(state.wall_seconds, 3),
        "worker_cpu_seconds": round(cpu, 3),
        "speedup": round(cpu / state.wall_seconds, 3) if state.wall_seconds > 0 else None,
        "frames_extracted": frames,
        "frames_per_s": round(frames / state.wall_seconds, 3) if state.wall_seconds > 0 else None,
        "per_sample_frames_per_s": _spread(rates),
        "workers": options.workers,
        "main_pid": os.getpid(),
        "peak_rss_mb_per_worker": _peak_rss(state.results),
        "detection_rates": _detection_rates(done),
        "interrupted": state.interrupted,
        "aborted": state.aborted or None,
        "exit_status": status,
        **_context(options, plan),
    }


def _spread(values: List[float]) -> Optional[Dict[str, float]]:
    if not values:
        return None
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


def _peak_rss(results: List[TaskResult]) -> Dict[str, float]:
    peak: Dict[str, float] = {}
    for result in results:
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
        "releases": list(dict.fromkeys(d.release.name for d in plan.datasets)),
        "splits": sorted({d.split for d in plan.datasets}, key=SPLITS.index),
        "retry_failed": options.retry_failed,
        "allow_failures": options.allow_failures,
        "settings": options.settings.as_dict(),
        "settings_fingerprint": options.settings.fingerprint(),
        "versions": {"phoenix_data": __version__, "mediapipe": mediapipe_version(),
                     "torch": torch.__version__, "python": platform.python_version()},
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# --- the job --------------------------------------------------------------------------------------

@dataclass
class WarmOutcome:
    summary: dict
    failed: List[dict]
    exit_status: int
    summary_path: Path
    failed_path: Path
    metrics_path: Path


def warm(options: WarmOptions, plan: Optional[WarmPlan] = None) -> WarmOutcome:
    """Run one warm-up job and write its reports. Raises CorpusError/CacheError on bad input."""
    plan = plan if plan is not None else make_plan(options)
    reports = options.reports
    reports.mkdir(parents=True, exist_ok=True)
    log.info("[warm] %d samples (%s): %d cached, %d failed before%s, %d to do | %d worker%s | cache %s",
             len(plan.samples), _scope(plan), plan.cached, len(plan.failed_before),
             "" if options.retry_failed else " (not retried)", len(plan.tasks), options.workers,
             "" if options.workers == 1 else "s", plan.cache.path)
    metrics = MetricsWriter(reports / METRICS_FILE, datetime.now().astimezone().isoformat(timespec="seconds"))
    try:
        with _quiet("phoenix_data.dataset"):  # failures are logged once, here, not by each worker
            state = run_tasks(plan, options, metrics)
    finally:
        metrics.close()
    state.late_extracted = count_late_commits(plan, state) if (state.interrupted or state.aborted) else 0
    status = exit_status(options, plan, state)
    summary, failed = summarize(options, plan, state, status), failed_samples(plan, state)
    write_json_atomic(reports / FAILED_FILE, failed)
    write_json_atomic(reports / SUMMARY_FILE, summary)
    return WarmOutcome(summary, failed, status, reports / SUMMARY_FILE, reports / FAILED_FILE,
                       reports / METRICS_FILE)


def _scope(plan: WarmPlan) -> str:
    releases = dict.fromkeys(d.release.name for d in plan.datasets)  # in RELEASES order, once each
    splits = "/".join(sorted({d.split for d in plan.datasets}, key=SPLITS.index))
    return f"{', '.join(releases)}; {splits}"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- command line ----------------------------------------------------------------------------------

def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}; expected a whole number >= 0 (0 extracts in the main "
                                         f"process; the default here is {default_workers()})")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}; expected seconds >= 0 (0: a line per sample)")
    return value


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
    how.add_argument("--workers", type=_workers, default=None,
                     help=f"worker processes (default: one per core, at most one per GiB of free memory; "
                          f"{default_workers()} here); 0 extracts in the main process")
    how.add_argument("--retry-failed", action="store_true", help="try samples that failed before again")
    how.add_argument("--allow-failures", action="store_true", help="exit 0 even when samples failed")
    how.add_argument("--overwrite", action="store_true",
                     help="discard a cache made with other extraction settings")
    how.add_argument("--repair", action="store_true",
                     help="decode every cached record (checksums too) and extract damaged ones again; "
                          "without it a rerun checks each record's header only")
    how.add_argument("--report-dir", type=Path, help="where summary.json, metrics.csv and "
                                                      "failed_samples.json go (default: the cache directory)")
    how.add_argument("--heartbeat", type=_seconds, default=DEFAULT_HEARTBEAT_SECONDS,
                     help="seconds between progress lines when stderr is not a terminal (default: 10)")
    return parser


def options_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> WarmOptions:
    """Check the argument combination; builds the demo tree for --demo."""
    if args.demo_dir is not None and not args.demo:
        parser.error("--demo-dir is only used with --demo; add --demo or drop --demo-dir.")
    if args.demo and args.root is not None:
        parser.error("--demo builds its own tree; drop --root (or drop --demo to warm ROOT).")
    if not args.demo and (args.root is None or args.cache is None):
        parser.error("--root ROOT and --cache CACHE are required (or --demo to warm the built-in demo tree).")
    root = _build_demo(args.demo_dir) if args.demo else args.root
    cache = args.cache if args.cache is not None else root / "cache"
    if args.demo and args.cache is None:
        log.info("[warm] demo: the cache goes inside the demo folder: %s", cache)
    return WarmOptions(root=root, cache=cache, split=args.split, release=args.release,
                       workers=default_workers() if args.workers is None else args.workers,
                       report_dir=args.report_dir, retry_failed=args.retry_failed,
                       allow_failures=args.allow_failures, overwrite=args.overwrite, repair=args.repair,
                       heartbeat=args.heartbeat)


def _build_demo(demo_dir: Optional[Path]) -> Path:
    from .demo import build_demo  # noqa: PLC0415 - only --demo needs it

    out = Path(demo_dir).expanduser() if demo_dir is not None else Path(tempfile.mkdtemp(prefix="phoenix-demo-"))
    roots = build_demo(out)
    log.info("[warm] demo tree (%d releases, made-up annotations, frames of real signing) written to %s",
             len(roots), out)
    return out


class _CtrlC:
    """First Ctrl+C: KeyboardInterrupt (the run stops taking samples and reports); second: leave at once."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            # Every finished sample is committed already, and reports are replaced atomically.
            os.write(2, b"[warm] second Ctrl+C: exiting now; finished samples stay cached, rerun to finish.\n")
            os._exit(EXIT_INTERRUPTED)
        raise KeyboardInterrupt


def report_lines(outcome: WarmOutcome, demo_root: Optional[Path]) -> List[str]:
    """What the command prints when done: one summary line, then where things are and what to do next."""
    s, c = outcome.summary, outcome.summary["counts"]
    fps = f"{s['frames_per_s']:.1f} frames/s" if s["frames_per_s"] else "no frames extracted"
    workers = f"{s['workers']} worker{'' if s['workers'] == 1 else 's'}"
    head = {EXIT_INTERRUPTED: "Warm-up interrupted", EXIT_ABORTED: "Warm-up aborted"}.get(
        outcome.exit_status, "Warm-up done")
    lines = [f"{head}: {c['total']} samples: {c['extracted']} extracted, {c['cached']} already cached, "
             f"{c['failed']} failed, {c['remaining']} left | {fps} over {s['wall_seconds']:.1f} s with {workers}"]
    if demo_root is not None:
        lines.append(f"Demo tree: {demo_root}")
    lines += [f"Cache:     {s['cache']}",
              f"Reports:   {outcome.summary_path}, {outcome.metrics_path.name}, {outcome.failed_path.name}"]
    if c["failed"]:
        lines.append(f"{c['failed']} samples failed; reasons in {outcome.failed_path}. Fix their frames and "
                     "rerun with --retry-failed" + ("." if s["allow_failures"] else ", or pass --allow-failures."))
    if c["remaining"]:
        lines.append(f"{c['remaining']} samples left: rerun the same command to finish "
                     "(what finished is kept and skipped).")
    if s["aborted"]:
        lines.append(f"Cause: {s['aborted']}. If a worker keeps dying, lower --workers (memory) "
                     "or use --workers 0 to see the error.")
    if demo_root is not None and outcome.exit_status == 0:
        lines.append(f"Next:      phoenix-dataset --root {demo_root / 'PHOENIX-2014-T-release-v3'} "
                     f"--cache {s['cache']} --verify")
    return lines


def _prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Tuple[WarmOptions, WarmPlan]:
    """Options and plan, or a one-line error and exit status 2 for input the user can fix."""
    try:
        options = options_from_args(parser, args)
        plan = make_plan(options)
        _check_report_dir(options.reports)
        return options, plan
    except (CorpusError, CacheError, FileExistsError, OSError, lmdb.Error) as exc:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc}\n")


def _check_report_dir(reports: Path) -> None:
    """Fail before any work when the reports cannot be written, not after hours of extraction."""
    reports.mkdir(parents=True, exist_ok=True)
    if not os.access(reports, os.W_OK):
        raise OSError(f"report folder {reports} is not writable; pass --report-dir DIR.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``phoenix-warm-cache``: parse, warm, print where the cache and reports are; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("phoenix_data").setLevel(logging.INFO)
    previous = signal.signal(signal.SIGINT, _CtrlC())
    try:
        options, plan = _prepare(parser, args)
        outcome = warm(options, plan)
    except KeyboardInterrupt:  # outside the extraction loop, which handles its own
        print("Interrupted; finished samples stay cached. Rerun the same command to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    print("\n".join(report_lines(outcome, options.root if args.demo else None)))
    return outcome.exit_status


if __name__ == "__main__":
    sys.exit(main())
