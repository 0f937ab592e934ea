"""The warm-up job: extract every sample of a PHOENIX tree into the landmark cache, with worker processes.

A program calls ``warm(WarmOptions(root=..., cache=..., settings=HolisticSettings())) -> WarmOutcome``;
the command line (``phoenix-warm-cache``) lives in ``phoenix_data.cli``. The job's parts:

- ``plan``: options, and which samples still need extracting (no frame read for cached ones);
- ``run``: worker processes in rounds, crashed workers, Ctrl+C (DataLoader workers: the one part
  that imports torch, so the package imports it only when a job runs here);
- ``results``: what comes back per sample, and how the run ended;
- ``progress``: the bar or heartbeat;
- ``report``: metrics.csv, summary.json, failed_samples.json, exit statuses.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Iterator, Optional

from ..cache import describe_discarded
from ..exit_codes import EXIT_ABORTED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .plan import ALL_SPLITS, WarmOptions, WarmPlan, available_cores, default_workers, make_plan
from .report import METRICS_FILE, MetricsWriter, WarmOutcome, finish
from .summary import WarmCounts, WarmSummary

log = logging.getLogger(__name__)

__all__ = ["ALL_SPLITS", "EXIT_ABORTED", "EXIT_FAILURES", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "WarmCounts", "WarmOptions", "WarmOutcome", "WarmPlan", "WarmSummary", "available_cores",
           "default_workers", "make_plan", "warm"]


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
    from .run import run_tasks  # noqa: PLC0415 - torch (DataLoader workers); a Ray actor imports this package without it

    metrics = MetricsWriter(reports / METRICS_FILE, datetime.now().astimezone().isoformat(timespec="seconds"))
    try:
        with _quiet("phoenix_data.cache.fill"):  # failures are logged once, by the job, not by each worker
            state = run_tasks(plan, options, metrics)
    finally:
        metrics.close()
    return finish(options, plan, state, reports)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
