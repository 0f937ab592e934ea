"""The sanity check a researcher runs before training: corpus, cache, detection, a DataLoader batch, pictures.

Library side of ``phoenix-dataset`` (command line in ``phoenix_data.cli``): ``run(CheckOptions(...), emit)``.

Exit status: 0 when nothing is wrong, 1 when problems were found (samples without frames, failed
extractions, bad cache records, a failing DataLoader), 2 when the check cannot run (no release,
a cache built with other settings, an unknown sample id).

Fork safety: main-process cache reads happen inside ``LandmarkCache.session()`` (closed afterwards),
and ``--render`` of an uncached sample extracts it in the isolated helper process, never here.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import lmdb
import numpy as np
from tqdm import tqdm

from .cache import CacheError, CacheRecordError, LandmarkCache
from .corpus import SPLITS, CorpusError, Release, Sample, find_release, read_release_split
from .extract import ExtractorSettings
from .holistic import ExtractionSettings, mediapipe_version
from .record import PARTS, LandmarkRecord
from .exit_codes import EXIT_FAILURES, EXIT_OK
from .frames import FramesError, list_frames
from .verify import NO_FRAMES, record_problems

log = logging.getLogger(__name__)

LOWEST_HANDS = 5  # samples listed with the least hand detection
DEFAULT_BATCH_SIZE = 4
SMOKE_WORKERS = 2
EXAMPLE_IDS = 3  # valid ids listed per split when an id is unknown
# Samples without frames and failed extractions listed at most (a release whose frames are not unpacked
# would list every sample); bad records under --verify are all listed.
MAX_LISTED = 20
EITHER_HAND = "either_hand"  # a frame where the left or the right hand (or both) was found
COLUMN_TITLES = {"pose": "pose", "face": "face", "left_hand": "left hand", "right_hand": "right hand",
                 EITHER_HAND: "either hand"}


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
    from .vocab import Vocabulary  # noqa: PLC0415 - vocab is light, but keep the corpus part torch-free

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
    settings: ExtractorSettings
    exists: bool  # False: no cache built at ``path`` yet
    splits: List[CacheSplit]
    verified: bool


def open_cache(path: Path, settings: ExtractorSettings) -> Optional[LandmarkCache]:
    """The cache read-only, or None when none has been built at ``path``; CheckError when unusable."""
    if not (path / "data.mdb").is_file():
        return None
    try:
        return LandmarkCache(path, settings, readonly=True)
    except (CacheError, lmdb.Error) as exc:
        raise CheckError(str(exc)) from None


def check_cache(path: Path, settings: ExtractorSettings, scans: Sequence[SplitScan],
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


# --- DataLoader smoke test --------------------------------------------------------------------

@dataclass
class SmokeResult:
    status: str  # "ok" | "skipped" | "failed"
    message: str
    split: Optional[str] = None
    shapes: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def pick_smoke_batch(report: Optional[CacheReport], batch_size: int) -> Tuple[Optional[CacheSplit], str]:
    """The first selected split whose readable records fill a batch, or None and why not."""
    if report is None:
        return None, "no --cache given"
    if not report.exists:
        return None, f"no cache built at {report.path} yet"
    reasons = []
    for split in report.splits:
        need = min(batch_size, split.samples)
        if need and len(split.good) >= need:
            return split, ""
        reasons.append(f"{split.split} has {len(split.good)} readable records of {split.samples} samples")
    return None, f"the cache does not fill a batch of {batch_size} ({'; '.join(reasons)})"


def smoke_test(release: Release, report: Optional[CacheReport], batch_size: int) -> SmokeResult:
    """One batch of cached samples through a DataLoader with worker processes and ``collate_ctc``."""
    split, why = pick_smoke_batch(report, batch_size)
    if split is None:
        return SmokeResult("skipped", why)
    from torch.utils.data import DataLoader, Subset  # noqa: PLC0415 - torch only when there is a batch

    from .batching import collate_ctc  # noqa: PLC0415
    from .dataset import PhoenixLandmarks  # noqa: PLC0415

    start = time.perf_counter()
    try:
        dataset = PhoenixLandmarks(release.root, split.split, cache=report.path, release=release.name,
                                   settings=report.settings, readonly=True)
        index = {s.key: i for i, s in enumerate(dataset.samples)}
        chosen = [index[k] for k in split.good[:min(batch_size, split.samples)]]
        loader = DataLoader(Subset(dataset, chosen), batch_size=len(chosen), num_workers=SMOKE_WORKERS,
                            collate_fn=collate_ctc)
        batch = next(iter(loader))
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding to report
        return SmokeResult("failed", f"{type(exc).__name__}: {exc}", split.split)
    return SmokeResult("ok", f"batch of {len(chosen)}", split.split, _shapes(batch), time.perf_counter() - start)


def _shapes(batch: dict) -> Dict[str, str]:
    return {"landmarks": str(list(batch["landmarks"].shape)), "confidence": str(list(batch["confidence"].shape)),
            "lengths": str(batch["lengths"].tolist()), "targets": str(list(batch["targets"].shape)),
            "target_lengths": str(batch["target_lengths"].tolist())}


# --- render -----------------------------------------------------------------------------------

def find_sample(release: Release, sample_id: str, splits: Sequence[str]) -> Sample:
    """The sample ``sample_id`` of any split of ``release``; CheckError listing valid ids if unknown."""
    examples = []
    for split in sorted(SPLITS, key=lambda s: s not in splits):  # the selected splits first
        try:
            samples = read_release_split(release, split)
        except CorpusError:
            continue
        match = next((s for s in samples if s.id == sample_id), None)
        if match is not None:
            return match
        examples += [f"{s.id} ({split})" for s in samples[:EXAMPLE_IDS]]
    raise CheckError(f"Unknown sample id {sample_id!r} in {release.name}; expected an id from its corpus "
                     f"CSVs, e.g. {', '.join(examples) or '(no readable split)'}.")


def record_for_render(sample: Sample, cache_path: Optional[Path],
                      settings: ExtractorSettings) -> Tuple[LandmarkRecord, str]:
    """The sample's record and where it came from: the cache, or a fresh extraction (then stored)."""
    note = ""
    cache = open_cache(cache_path, settings) if cache_path is not None else None
    if cache is not None:
        with cache.session():
            try:
                record = cache.get(sample.key)
            except CacheRecordError as exc:
                record, note = None, f"cached record unusable ({exc}); "
        if record is not None:
            return record, "landmarks read from the cache"
    from .fill import extract_record  # noqa: PLC0415 - in the isolated helper process, not here

    record = extract_record(sample, settings)
    if cache_path is None:
        return record, note + "extracted (no cache given, not stored)"
    try:
        writable = LandmarkCache(cache_path, settings)
        with writable.session():
            writable.put(sample.key, record)
    except (CacheError, lmdb.Error, OSError) as exc:
        return record, note + f"extracted; not stored in the cache: {exc}"
    return record, note + "extracted and stored in the cache"


def render(sample: Sample, cache_path: Optional[Path], settings: ExtractorSettings, out: Path) -> List[str]:
    """Draw one sample's landmarks over its frames; the report lines saying what was written."""
    from .render import render_sample  # noqa: PLC0415

    if out.suffix.lower() != ".png":
        raise CheckError(f"--out {str(out)!r} must end in .png; the GIF is written beside it with .gif.")
    paths = list_frames(sample.frames_dir)
    record, source = record_for_render(sample, cache_path, settings)
    done = render_sample(paths, record, out)
    lines = [f"Render {sample.id} ({sample.split}; {source})",
             f"  contact sheet  {done.sheet}  ({len(done.tiles)} of {done.frames} frames, {done.columns} columns)",
             f"  animation      {done.gif}  ({done.frames} frames)"]
    if record.num_frames != len(paths):
        lines.append(f"  note: the record has {record.num_frames} frames, {len(paths)} PNG frames on disk")
    return lines


# --- report text --------------------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: Optional[str] = None,
          indent: int = 2) -> List[str]:
    """Aligned text columns; ``align`` has one "l" or "r" per column (default: first left, others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [" " * indent + "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                     for c, w, a in zip(row, widths, align)).rstrip()
            for row in cells]


def percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def format_corpus(report: CorpusReport) -> List[str]:
    rows = []
    for scan in report.scans:
        counts = list(scan.frames.values())
        if scan.missing:
            rows.append([scan.split, "-", "-", "-", "-", "-", "-", "-", "no CSV (not part of this copy)"])
            continue
        frames = ([sum(counts), min(counts), f"{np.mean(counts):.1f}", max(counts)] if counts else ["-"] * 4)
        rate = report.oov.get(scan.split)
        oov = f"{percent(rate[0])} of {rate[1]}" if rate else "-"
        rows.append([scan.split, len(scan.samples), scan.signers, *frames, oov, len(scan.problems)])
    lines = ["Corpus (frames: PNG files on disk)"]
    lines += table(["split", "samples", "signers", "frames", "min", "mean", "max", "OOV glosses", "problems"], rows)
    if report.glosses is None:
        lines.append("  Gloss vocabulary: no readable train split, so no vocabulary and no OOV rates.")
    else:
        lines.append(f"  Gloss vocabulary (train): {report.glosses} glosses "
                     f"(+ <blank> and <unk> = {report.glosses + 2} model tokens)")
    lines += _sample_list("Samples whose frames cannot be read", [
        (scan.split, key, reason) for scan in report.scans for key, reason in scan.problems.items()], MAX_LISTED)
    return lines


def _sample_list(title: str, entries: Sequence[Tuple[str, str, str]],
                 limit: Optional[int] = None) -> List[str]:
    """``title`` and one ``split  id  reason`` line per entry, the first ``limit`` of them if given."""
    if not entries:
        return []
    rows = [(split, key.rsplit("/", 1)[-1], reason) for split, key, reason in entries]
    lines = ["", f"{title} ({len(rows)})"] + table(["split", "sample", "reason"], rows[:limit], "lll")
    if limit is not None and len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more")
    return lines


def format_cache(report: CacheReport) -> List[str]:
    s = report.settings
    lines = [f"Cache {report.path}",
             f"  settings: {', '.join(f'{k}={v}' for k, v in s.as_dict().items())}, "
             f"mediapipe {mediapipe_version()}, fingerprint {s.fingerprint()}"]
    if not report.exists:
        lines += ["  no cache built here yet (no data.mdb): every sample is missing. Training would extract",
                  "  on the fly; phoenix-warm-cache fills it first."]
    rows = [[c.split, c.samples, len(c.cached), c.samples - len(c.cached) - len(c.failed), len(c.failed)]
            for c in report.splits]
    lines += table(["split", "samples", "cached", "missing", "failed"], rows)
    lines += _sample_list("Failed extractions", [(c.split, k, r) for c in report.splits for k, r in c.failed.items()],
                          MAX_LISTED)
    if report.exists:
        lines += [""] + format_detection(report.splits)
        lines += _format_bad_records(report)
    return lines


def format_detection(splits: Sequence[CacheSplit]) -> List[str]:
    columns = PARTS + (EITHER_HAND,)
    rows = [[c.split, len(c.detections), c.frames] + [percent(n / c.frames) for n in c.found]
            for c in splits if c.frames]
    if not rows:
        return ["Detection: no readable cached records in the selected splits."]
    lines = ["Detection (share of cached frames in which MediaPipe found each part)"]
    lines += table(["split", "records", "frames"] + [COLUMN_TITLES[p] for p in columns], rows)
    samples = sorted((d for c in splits for d in c.detections), key=lambda d: (d.rates[EITHER_HAND], d.id))
    lowest = samples[:LOWEST_HANDS]
    lines += ["", f"Least hand detection ({len(lowest)} lowest of {len(samples)} cached samples)"]
    lines += table(["split", "sample", "frames", "left hand", "right hand", "either hand"],
                   [[d.split, d.id, d.frames, percent(d.rates["left_hand"]), percent(d.rates["right_hand"]),
                     percent(d.rates[EITHER_HAND])] for d in lowest], "llrrrr")
    return lines


def _format_bad_records(report: CacheReport) -> List[str]:
    bad = [(c.split, k, r) for c in report.splits for k, r in c.bad.items()]
    checked = sum(len(c.cached) for c in report.splits)
    if report.verified:
        head = ["", "Verify (every cached record of the selected splits decoded and checked against the corpus)",
                f"  records checked: {checked} ({checked - len(bad)} OK, {len(bad)} bad)"]
        return head + _sample_list("Bad cache records", bad)
    return _sample_list("Cache records that do not decode (run --verify for the full check)", bad)


def format_smoke(result: SmokeResult) -> List[str]:
    title = f"DataLoader smoke test (num_workers={SMOKE_WORKERS}, collate_ctc)"
    if result.status == "skipped":
        return [title, f"  skipped: {result.message}."]
    if result.status == "failed":
        return [title, f"  FAILED on {result.split}: {result.message}"]
    shapes = "  ".join(f"{name} {shape}" for name, shape in result.shapes.items())
    return [title, f"  {result.split}, {result.message} in {result.seconds:.1f} s: {shapes}"]


def problem_summary(corpus: CorpusReport, cache: Optional[CacheReport], smoke: SmokeResult) -> List[str]:
    """One phrase per kind of problem found; empty when the data can be trusted."""
    counts = [(sum(len(s.problems) for s in corpus.scans), "sample(s) whose frames cannot be read")]
    if cache is not None:
        counts += [(sum(len(c.failed) for c in cache.splits), "failed extraction(s) in the cache"),
                   (sum(len(c.bad) for c in cache.splits), "bad cache record(s)")]
    found = [f"{n} {what}" for n, what in counts if n]
    return found + (["the DataLoader smoke test failed"] if smoke.status == "failed" else [])


# --- the check --------------------------------------------------------------------------------------

@dataclass
class CheckOptions:
    """What ``phoenix-dataset`` checks: a release (``split`` None: all three), optionally its cache."""

    root: Path
    release: Optional[str] = None
    split: Optional[str] = None
    cache: Optional[Path] = None
    verify: bool = False  # decode every cached record and check it against the corpus
    render: Optional[str] = None  # a sample id to draw, to ``out`` (.png; the GIF beside it)
    out: Optional[Path] = None
    batch_size: int = DEFAULT_BATCH_SIZE
    settings: ExtractorSettings = field(default_factory=ExtractionSettings)


def run(args: CheckOptions, emit: Callable[[str], None]) -> int:
    """The whole check; ``emit`` prints one report line. Raises CheckError when it cannot go on."""
    settings = args.settings
    release = find_release(args.root, args.release)
    splits = [args.split] if args.split else list(SPLITS)
    cache_path = args.cache.expanduser() if args.cache is not None else None
    target = find_sample(release, args.render, splits) if args.render else None  # fail before the long scan
    emit(f"Release  {release.name}")
    emit(f"Folder   {release.root}")
    corpus = check_corpus(release, splits)
    _emit(emit, [""] + format_corpus(corpus))
    cache = None
    if cache_path is not None:
        cache = check_cache(cache_path, settings, corpus.scans, args.verify)
        _emit(emit, [""] + format_cache(cache))
    smoke = smoke_test(release, cache, args.batch_size)  # before --render may build a Holistic here
    _emit(emit, [""] + format_smoke(smoke))
    if target is not None:
        _emit(emit, [""] + render(target, cache_path, settings, args.out.expanduser()))
    problems = problem_summary(corpus, cache, smoke)
    emit("")
    emit(f"Result: problems found: {'; '.join(problems)}." if problems else "Result: OK, no problems found.")
    return EXIT_FAILURES if problems else EXIT_OK


def _emit(emit: Callable[[str], None], lines: Sequence[str]) -> None:
    for line in lines:
        emit(line)


if __name__ == "__main__":  # python -m phoenix_data.check: the same as phoenix-dataset
    import sys

    from .cli import check_main

    sys.exit(check_main())
