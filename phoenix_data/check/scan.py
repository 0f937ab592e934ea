"""What lies on disk: the corpus's splits and frames, the cache's coverage, detection and records."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import lmdb
import numpy as np
from tqdm import tqdm

from ..cache import CacheError, CacheRecordError, LandmarkCache
from ..cache.audit import NO_FRAMES, record_problems
from ..corpus import Release, Sample, read_release_split
from ..extract import ExtractorSpec
from ..frames import FramesError, list_frames
from ..record import PARTS, LandmarkRecord

log = logging.getLogger(__name__)

EITHER_HAND = "either_hand"  # a frame where the left or the right hand (or both) was found


class CheckError(RuntimeError):
    """The check cannot go on: the message says what was asked, what exists and what to do."""


# --- corpus ---------------------------------------------------------------------------------

@dataclass
class SplitScan:
    """One split as it lies on disk: its samples and the PNG frames counted for each."""

    split: str
    samples: List[Sample] = field(default_factory=list)
    frames: Dict[str, int] = field(default_factory=dict)  # sample key -> PNG frames on disk
    first_frame: Dict[str, Path] = field(default_factory=dict)
    problems: Dict[str, str] = field(default_factory=dict)  # sample key -> why its frames cannot be read
    missing: bool = False  # no CSV for this split: not part of this copy (SI5 has no dev), no problem

    @property
    def signers(self) -> int:
        return len({s.signer for s in self.samples})


@dataclass
class CorpusReport:
    release: Release
    scans: List[SplitScan]
    glosses: Optional[int]  # distinct train glosses; None without a readable train CSV
    oov: Dict[str, Tuple[float, int]]  # dev/test -> (out-of-vocabulary rate, gloss tokens)


def scan_split(release: Release, split: str) -> SplitScan:
    """Read a split's CSV and count each sample's PNG frames; a bad sample is noted, not raised.

    A split without a CSV is noted as missing; a CSV that cannot be read raises CorpusError.
    """
    if not release.csv_path(split).is_file():
        return SplitScan(split, missing=True)
    scan = SplitScan(split, read_release_split(release, split))
    log.info("counting the frames of %d %s samples of %s", len(scan.samples), split, release.name)
    for sample in tqdm(scan.samples, desc=f"frames {split}", unit="sample", disable=None, leave=False):
        try:
            paths = list_frames(sample.frames_dir)
        except (FramesError, OSError) as exc:
            scan.problems[sample.key] = str(exc)
            continue
        scan.frames[sample.key] = len(paths)
        scan.first_frame[sample.key] = paths[0]
    return scan


def check_corpus(release: Release, splits: Sequence[str]) -> CorpusReport:
    """Frames of the selected splits, the train gloss vocabulary and the dev/test OOV rates."""
    from ..vocab import Vocabulary  # noqa: PLC0415 - vocab is light, but keep the corpus part torch-free

    scans = [scan_split(release, split) for split in splits]
    train = next((s for s in scans if s.split == "train"), None)
    if train is not None:
        train_samples = train.samples
    else:
        train_samples = read_release_split(release, "train") if release.csv_path("train").is_file() else []
    if not train_samples:
        return CorpusReport(release, scans, None, {})
    vocab = Vocabulary.from_samples(train_samples)
    oov = {}
    for scan in scans:
        if scan.split != "train" and scan.samples:
            tokens = sum(len(vocab.prepare(s.glosses)) for s in scan.samples)
            oov[scan.split] = (vocab.oov_rate(scan.samples), tokens)
    return CorpusReport(release, scans, len({g for s in train_samples for g in s.glosses}), oov)


# --- cache ----------------------------------------------------------------------------------

@dataclass
class SampleDetection:
    """Share of one cached sample's frames in which each part (and either hand) was found."""

    split: str
    id: str
    frames: int
    rates: Dict[str, float]  # PARTS and EITHER_HAND


@dataclass
class CacheSplit:
    split: str
    samples: int
    cached: List[str]  # keys with a record (readable or not)
    failed: Dict[str, str]  # key -> reason of a failed extraction
    found: np.ndarray  # frames in which each part and either hand was found: int [5]
    frames: int = 0  # frames of the readable records
    detections: List[SampleDetection] = field(default_factory=list)
    bad: Dict[str, str] = field(default_factory=dict)  # key -> why its record is unusable

    @property
    def good(self) -> List[str]:
        return [k for k in self.cached if k not in self.bad]


@dataclass
class CacheReport:
    path: Path
    settings: ExtractorSpec
    exists: bool  # False: no cache built at ``path`` yet
    splits: List[CacheSplit]
    verified: bool


def open_cache(path: Path, settings: ExtractorSpec) -> Optional[LandmarkCache]:
    """The cache read-only, or None when none has been built at ``path``; CheckError when unusable."""
    if not (path / "data.mdb").is_file():
        return None
    try:
        return LandmarkCache(path, settings, readonly=True)
    except (CacheError, lmdb.Error) as exc:
        raise CheckError(str(exc)) from None


def check_cache(path: Path, settings: ExtractorSpec, scans: Sequence[SplitScan],
                verify: bool) -> CacheReport:
    """Coverage and detection per split; every record is decoded, and with ``verify`` checked too."""
    cache = open_cache(path, settings)
    if cache is None and verify:
        raise CheckError(f"--verify: no cache at {path} (no data.mdb) to verify; check the --cache path, "
                         "or build the cache first (phoenix-warm-cache).")
    if cache is None:
        empty = [CacheSplit(s.split, len(s.samples), [], {}, np.zeros(len(PARTS) + 1, int)) for s in scans]
        return CacheReport(path, settings, False, empty, verify)
    with cache.session():  # closed afterwards: DataLoader workers fork later
        failures = cache.failures()
        splits = [_check_cache_split(cache, scan, failures, verify) for scan in scans]
    return CacheReport(path, settings, True, splits, verify)


def _check_cache_split(cache: LandmarkCache, scan: SplitScan, failures: Dict[str, dict],
                       verify: bool) -> CacheSplit:
    keys = [s.key for s in scan.samples]
    present = cache.cached(keys)
    result = CacheSplit(scan.split, len(keys), [k for k in keys if k in present],
                        {k: str(failures[k].get("reason", "")) for k in keys if k in failures and k not in present},
                        np.zeros(len(PARTS) + 1, int))
    for sample in tqdm([s for s in scan.samples if s.key in present], desc=f"records {scan.split}",
                       unit="record", disable=None, leave=False):
        try:
            record = cache.get(sample.key)
        except CacheRecordError as exc:
            result.bad[sample.key] = str(exc)
            continue
        if record is None:  # listed as cached above; another process may have rewritten the cache since
            result.bad[sample.key] = "no record any more (the cache changed during the check)"
            continue
        reasons = record_problems(record, cache.settings.num_points, scan.frames.get(sample.key),
                                  scan.first_frame.get(sample.key),
                                  scan.problems.get(sample.key, NO_FRAMES)) if verify else []
        if reasons:
            result.bad[sample.key] = "; ".join(reasons)
        _add_detection(result, sample, record)
    return result


def _add_detection(result: CacheSplit, sample: Sample, record: LandmarkRecord) -> None:
    found = record.presence()  # bool [T, 4]
    either = found[:, PARTS.index("left_hand")] | found[:, PARTS.index("right_hand")]
    counts = np.concatenate([found.sum(axis=0), [either.sum()]]).astype(int)
    result.found += counts
    result.frames += record.num_frames
    rates = counts / max(record.num_frames, 1)
    result.detections.append(SampleDetection(sample.split, sample.id, record.num_frames,
                                             dict(zip(PARTS + (EITHER_HAND,), map(float, rates)))))
