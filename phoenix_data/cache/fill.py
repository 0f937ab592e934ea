"""Put one sample's record into the cache and say what happened: the step the Dataset and the warm-up share.

Where a sample is extracted:
- in a DataLoader worker (the Dataset's workers, the warm-up's workers): by that process's own Holistic;
- anywhere else (a training script's or notebook's main process, ``--workers 0``, ``--render``): by
  the isolated helper process of ``phoenix_data.extract.helper``, because a process that has run MediaPipe
  breaks every DataLoader worker it forks later.

Processes extracting into one cache at once share the work through per-sample claims
(``cache.claims``): a sample is extracted once, by whichever process claimed it first.
"""
from __future__ import annotations

import enum
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Dict, Optional

from ..corpus import Sample
from ..extract import ExtractorSpec, extract_frames_dir
from ..extract.helper import ExtractorCrashed, isolated_extractor
from ..frames import FramesError
from ..record import LandmarkRecord
from .claims import claim
from .store import CacheError, CacheRecordError, LandmarkCache

log = logging.getLogger(__name__)

# How long a reader waits for another process that is extracting the sample it wants (the longest
# PHOENIX sample takes ~15 s); past that it extracts the sample itself.
CLAIM_WAIT_SECONDS = 300.0


class Outcome(str, enum.Enum):
    """What ``fill_sample`` did for one sample."""

    CACHED = "cached"  # a record was there (or another process wrote it meanwhile)
    EXTRACTED = "extracted"  # extracted and committed by this call
    FAILED = "failed"  # the sample's frames or its extraction failed; the reason is recorded
    DEFERRED = "deferred"  # another live process is extracting it right now


@dataclass
class SampleStatus:
    """What ``fill_sample`` did for one sample: small, cheap to send from a worker."""

    key: str
    outcome: Outcome
    frames: int = 0
    seconds: float = 0.0
    pid: int = field(default_factory=os.getpid)  # the process that extracted it
    detection: Dict[str, float] = field(default_factory=dict)
    reason: str = ""


def may_extract_here() -> bool:
    """Whether this process may run MediaPipe itself: only a DataLoader worker, which forks nothing."""
    data = sys.modules.get("torch.utils.data")
    return data is not None and data.get_worker_info() is not None


def extract_record(sample: Sample, settings: ExtractorSpec) -> LandmarkRecord:
    """The sample's landmarks, extracted here (in a worker) or by the isolated helper process."""
    if may_extract_here():
        return extract_frames_dir(sample.frames_dir, settings, sample.key)
    return isolated_extractor(settings).extract(sample.frames_dir, sample.key)


def cached_frames(cache: LandmarkCache, key: str, verify: bool = False) -> Optional[int]:
    """Frames of the cached record of ``key``; None when missing or damaged (header check; ``verify``:
    the whole record and its checksum)."""
    try:
        if not verify:
            return cache.num_frames(key)
        record = cache.get(key)
        return None if record is None else record.num_frames
    except CacheRecordError as exc:
        log.warning("re-extracting a damaged record: %s", exc)
        return None


def fetch_or_extract(cache: LandmarkCache, sample: Sample, settings: ExtractorSpec) -> LandmarkRecord:
    """A cache miss of the Dataset: wait for another process extracting it, else extract and store it."""
    with claim(cache.path, sample.key, wait=CLAIM_WAIT_SECONDS) as held:
        record = cache.get(sample.key, float16=True)
        if record is not None:
            return record
        if not held:
            log.warning("sample %s: another process has been extracting it for %.0f s; extracting it here too",
                        sample.key, CLAIM_WAIT_SECONDS)
        return cache.put(sample.key, extract_record(sample, settings))


def fill_sample(cache: LandmarkCache, sample: Sample, settings: ExtractorSpec, *,
                retry_failed: bool = True, verify: bool = False, wait: float = 0.0) -> SampleStatus:
    """Extract and store ``sample`` unless cached; report what happened. Never raises for a bad sample.

    Frames that are missing, unreadable or undecodable, an error inside MediaPipe, or an extractor
    that dies on the sample are recorded in the cache's failures with the reason. A frame where
    MediaPipe finds nobody is no failure. A damaged record is extracted again. Cache-level problems
    (disk full, settings changed under the job, the cache deleted) raise CacheError: they are not
    the sample's fault. ``wait``: seconds to wait for another process holding the sample's claim.
    """
    key = sample.key
    if not retry_failed and cache.failure(key) is not None:
        return SampleStatus(key, Outcome.FAILED, reason="failed before (not retried)")
    with claim(cache.path, key, wait=wait) as held:
        if not held:
            return SampleStatus(key, Outcome.DEFERRED, reason="another process is extracting it")
        frames = cached_frames(cache, key, verify)
        if frames is not None:  # cached meanwhile (by another job, or a worker of this one that died)
            return SampleStatus(key, Outcome.CACHED, frames=frames, pid=cache.extracted_by(key) or 0)
        return _extract_and_store(cache, sample, settings)


def _extract_retrying_a_crash(sample: Sample, settings: ExtractorSpec) -> LandmarkRecord:
    """A helper process that died on a sample gets one more try, in a fresh helper: the first death
    may have had another cause (the OOM killer, a kill)."""
    try:
        return extract_record(sample, settings)
    except ExtractorCrashed as exc:
        log.warning("sample %s: %s; trying it once more in a fresh extractor", sample.key, exc)
        return extract_record(sample, settings)


def _extract_and_store(cache: LandmarkCache, sample: Sample, settings: ExtractorSpec) -> SampleStatus:
    try:
        record = cache.put(sample.key, _extract_retrying_a_crash(sample, settings))
    except CacheError:
        raise
    except (FramesError, ValueError, RuntimeError, OSError) as exc:  # ExtractorCrashed is a RuntimeError
        reason = str(exc) if isinstance(exc, ExtractorCrashed) else f"{type(exc).__name__}: {exc}"
        log.warning("sample %s failed: %s", sample.key, reason)
        log.debug("%s", traceback.format_exc())
        cache.put_failure(sample.key, reason)
        return SampleStatus(sample.key, Outcome.FAILED, reason=reason)
    return SampleStatus(sample.key, Outcome.EXTRACTED, frames=record.num_frames, seconds=record.seconds,
                        pid=record.pid, detection=record.detection_rates())
