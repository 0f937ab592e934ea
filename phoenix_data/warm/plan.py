"""What a warm-up job does: its options, and the plan (every sample, and which still need extracting)."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..cache import LandmarkCache
from ..cache.audit import records_to_repair
from ..corpus import RELEASES, SPLITS, CorpusError, Release, Sample, find_release, read_release_split
from ..extract import ExtractorSpec

log = logging.getLogger(__name__)

ALL_SPLITS = "all"
DEFAULT_HEARTBEAT_SECONDS = 10.0
# A worker's peak resident memory is ~0.5 GB (torch pages shared with the parent, MediaPipe's graph); headroom.
WORKER_MEMORY_BYTES = 1 << 30


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

    One Holistic worker keeps ~1.2 cores busy, so on 2 cores a second worker still gains and a
    third gains little (measured: docs/performance.md).
    """
    cores = available_cores() if cores is None else cores
    memory = available_memory() if memory is None else memory
    by_memory = cores if memory is None else memory // WORKER_MEMORY_BYTES
    return max(1, min(cores, by_memory))


@dataclass
class WarmOptions:
    """One warm-up job. ``report_dir`` None: the cache folder. ``progress_bar`` None: when stderr is a terminal."""

    root: Path
    cache: Path
    settings: ExtractorSpec  # what extracts (HolisticSettings, from the command's flags): chosen by the caller
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

    @property
    def reports(self) -> Path:
        return Path(self.report_dir if self.report_dir is not None else self.cache).expanduser()


@dataclass
class WarmPlan:
    """Every sample of the job, and which of them still need extracting."""

    cache: LandmarkCache
    samples: List[Sample]  # every sample of the job, releases and splits in order
    todo: List[int]  # indices into ``samples`` of those to extract
    cached: int  # samples with a record already: skipped, no frame read
    failed_before: Dict[str, str]  # key -> reason, samples that failed before and are not retried
    releases: List[str]
    splits: List[str]

    def scope(self) -> str:
        """'phoenix-2014-multisigner, PHOENIX-2014-T; train/dev'."""
        return f"{', '.join(self.releases)}; {'/'.join(self.splits)}"


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
    """Read the corpora and check the cache's coverage; leaves no cache environment open."""
    if options.split not in (*SPLITS, ALL_SPLITS):
        raise CorpusError(f"Unknown split {options.split!r}; expected one of "
                          f"{', '.join(map(repr, (*SPLITS, ALL_SPLITS)))}.")
    releases = find_releases(Path(options.root).expanduser(), options.release)
    parts = [(rel, split) for rel in releases for split in release_splits(rel, options.split)]
    samples = [sample for rel, split in parts for sample in read_release_split(rel, split)]
    # overwrite discards a cache only when it was made with other settings: rerunning the same
    # command with --overwrite still resumes.
    cache = LandmarkCache(options.cache, options.settings, overwrite=options.overwrite)
    keys = [sample.key for sample in samples]
    with cache.session():  # closed again: an LMDB env must not cross the workers' fork()
        if options.repair:  # what phoenix-dataset --verify lists, dropped so that the workers extract it
            cached, damaged = records_to_repair(cache, samples)
            cache.discard(damaged)
        else:
            cached, damaged = cache.check_records(keys)
        failures = {k: v.get("reason", "") for k, v in cache.failures().items() if k not in cached}
    for reason in damaged.values():
        log.warning("[warm] damaged record, extracting again: %s", reason)
    skip_failed = {} if options.retry_failed else failures
    todo = [i for i, key in enumerate(keys) if key not in cached and key not in skip_failed]
    failed_before = {k: skip_failed[k] for k in keys if k in skip_failed}
    return WarmPlan(cache, samples, todo, len(keys) - len(todo) - len(failed_before), failed_before,
                    releases=list(dict.fromkeys(rel.name for rel, _ in parts)),
                    splits=sorted({split for _, split in parts}, key=SPLITS.index))
