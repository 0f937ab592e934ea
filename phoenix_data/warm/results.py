"""What a warm-up run collects: one result per sample, and how the run ended.

Torch-free, unlike ``run`` (whose workers are DataLoader workers): the Ray driver and the reports
use it too, and a Ray actor, which imports this package, never needs torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Set

from ..cache.fill import Outcome, SampleStatus
from .plan import WarmPlan
from .progress import Progress


@dataclass
class TaskResult:
    """What a worker sends back for one sample: small, no landmarks."""

    task: int  # index into plan.samples
    status: SampleStatus
    cpu_seconds: float  # process CPU time (all threads, MediaPipe's too) spent on this sample
    max_rss_mb: float  # the worker's peak resident memory so far
    fatal: str = ""  # a cache-level error: the run must stop (not the sample's fault)


@dataclass
class RunState:
    """What came back from the workers, and how the run ended."""

    results: List[TaskResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    interrupted: bool = False
    aborted: str = ""  # why the run stopped early, besides Ctrl+C
    fatal: bool = False  # aborted by a cache-level error (disk full, settings changed, cache deleted)
    job_pids: Set[int] = field(default_factory=set)  # every process of this job that may have extracted
    crashes: int = 0  # workers that died during the run
    waiting_elsewhere: List[int] = field(default_factory=list)  # still held by another process at the end

    def keys(self, outcome: Outcome) -> List[str]:
        return [r.status.key for r in self.results if r.status.outcome == outcome]


def take_result(plan: WarmPlan, state: RunState, metrics, progress: Progress, result: TaskResult) -> None:
    """One sample's final result, whoever ran it (local workers, Ray actors): state, metrics.csv, progress."""
    state.results.append(result)
    metrics.write(plan, result)
    failed = result.status.outcome == Outcome.FAILED
    progress.update(failed, result.status.frames if result.status.outcome == Outcome.EXTRACTED else 0)
    if failed:
        progress.note(f"[warm] failed: {result.status.key}: {result.status.reason}")
