"""The warm-up job: extract every sample of a PHOENIX tree into the landmark cache, with worker processes.

A program calls ``warm(WarmOptions(root=..., cache=...)) -> WarmOutcome``; the command line
(``phoenix-warm-cache``) lives in ``phoenix_data.cli``. The job's parts:

- ``plan``: options, and which samples still need extracting (no frame read for cached ones);
- ``run``: worker processes in rounds, crashed workers, Ctrl+C;
- ``progress``: the bar or heartbeat;
- ``report``: metrics.csv, summary.json, failed_samples.json, exit statuses.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, List, Optional

from ..cache import describe_discarded
from ..exit_codes import EXIT_ABORTED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .plan import ALL_SPLITS, WarmOptions, WarmPlan, available_cores, default_workers, make_plan
from .report import (
    FAILED_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    MetricsWriter,
    count_late_commits,
    exit_status,
    failed_samples,
    summarize,
    write_json_atomic,
)
from .run import RunState, run_tasks
from .summary import WarmCounts, WarmSummary

log = logging.getLogger(__name__)

__all__ = ["ALL_SPLITS", "EXIT_ABORTED", "EXIT_FAILURES", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "WarmCounts", "WarmOptions", "WarmOutcome", "WarmPlan", "WarmSummary", "available_cores",
           "default_workers", "make_plan", "warm"]


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


def warm(options: WarmOptions, plan: Optional[WarmPlan] = None) -> WarmOutcome:
    """Run one warm-up job and write its reports. Raises CorpusError/CacheError on bad input."""
    plan = plan if plan is not None else make_plan(options)
    reports = options.reports
    reports.mkdir(parents=True, exist_ok=True)
    if plan.cache.discarded:
        log.warning("[warm] --overwrite: discarded %s made with other extraction settings",
                    describe_discarded(plan.cache.discarded))
    log.info("[warm] %d samples (%s): %d cached, %d failed before%s, %d to do | %d worker%s | cache %s",
             len(plan.samples), plan.scope(), plan.cached, len(plan.failed_before),
             "" if options.retry_failed else " (not retried)", len(plan.todo), options.workers,
             "" if options.workers == 1 else "s", plan.cache.path)
    metrics = MetricsWriter(reports / METRICS_FILE, datetime.now().astimezone().isoformat(timespec="seconds"))
    try:
        with _quiet("phoenix_data.cache.fill"):  # failures are logged once, by the job, not by each worker
            state = run_tasks(plan, options, metrics)
    finally:
        metrics.close()
    return _finish(options, plan, state, reports)


def _finish(options: WarmOptions, plan: WarmPlan, state: RunState, reports: Path,
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


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
