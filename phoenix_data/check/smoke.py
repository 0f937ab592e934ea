"""One batch of cached samples through a DataLoader with worker processes: the training path, tried."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..corpus import Release
from .scan import CacheReport, CacheSplit

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4
SMOKE_WORKERS = 2


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
    if split is None or report is None:  # a split comes only with a report
        return SmokeResult("skipped", why)
    from torch.utils.data import DataLoader, Subset  # noqa: PLC0415 - torch only when there is a batch

    from ..batching import collate_ctc  # noqa: PLC0415
    from ..dataset import PhoenixLandmarks  # noqa: PLC0415

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
