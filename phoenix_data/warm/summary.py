"""``WarmSummary``: what a warm-up did, typed; ``to_json()`` is the content of ``summary.json``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class WarmCounts:
    """Samples of the job by what became of them; ``remaining`` have neither a record nor a failure."""

    total: int
    extracted: int
    cached: int
    failed: int
    remaining: int


@dataclass
class WarmSummary:
    """One warm-up run. Times in seconds; ``frames_per_s`` over the run's wall time (None: no time passed)."""

    counts: WarmCounts
    sent_to_workers: int  # the rest was cached or failed before: no frame read
    extracted_without_metrics: int  # committed by a worker whose result never arrived (a stopped run)
    wall_seconds: float
    worker_cpu_seconds: float
    speedup: Optional[float]
    frames_extracted: int
    frames_per_s: Optional[float]
    per_sample_frames_per_s: Optional[Dict[str, float]]
    workers: int
    worker_crashes: int
    main_pid: int
    peak_rss_mb_per_worker: Dict[str, float]
    detection_rates: Dict[str, Optional[float]]
    interrupted: bool
    aborted: Optional[str]
    held_by_other_process: List[str]
    exit_status: int
    cache: str
    report_dir: str
    releases: List[str]
    splits: List[str]
    retry_failed: bool
    allow_failures: bool
    settings: Dict[str, Any]
    settings_fingerprint: str
    discarded_records: Dict[str, int]
    versions: Dict[str, str]
    finished: str
    ray: Optional[Dict[str, Any]] = field(default=None)  # a --ray run: nodes, actors, per-node figures

    def to_json(self) -> Dict[str, Any]:
        """The ``summary.json`` dict (``ray`` only for a Ray run)."""
        data = dataclasses.asdict(self)
        if data["ray"] is None:
            del data["ray"]
        return data
