"""The check's report as text lines: tables of the corpus, the cache, detection, the smoke test."""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..extract import extractor_versions
from ..record import PARTS
from .scan import EITHER_HAND, CacheReport, CacheSplit, CorpusReport
from .smoke import SMOKE_WORKERS, SmokeResult

log = logging.getLogger(__name__)

LOWEST_HANDS = 5  # samples listed with the least hand detection
# Samples without frames and failed extractions listed at most (a release whose frames are not unpacked
# would list every sample); bad records under --verify are all listed.
MAX_LISTED = 20
COLUMN_TITLES = {"pose": "pose", "face": "face", "left_hand": "left hand", "right_hand": "right hand",
                 EITHER_HAND: "either hand"}


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
    rows: List[List[object]] = []
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
    versions = "".join(f"{name} {version}, " for name, version in extractor_versions(s).items())
    lines = [f"Cache {report.path}",
             f"  settings: {', '.join(f'{k}={v}' for k, v in s.as_dict().items())}, "
             f"{versions}fingerprint {s.fingerprint()}"]
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
