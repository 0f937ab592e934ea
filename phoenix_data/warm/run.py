"""Running a warm-up plan: worker processes, rounds, crashed workers, Ctrl+C.

One DataLoader runs over the samples still to do, so each worker builds its MediaPipe Holistic once.
A worker writes each sample in one LMDB commit: that commit is the checkpoint. The main process
receives small per-sample metadata (:class:`TaskResult`), never landmarks, and runs no MediaPipe.

A run goes in rounds. When a worker dies (a sample crashed MediaPipe's native code, the OOM killer,
a kill), the samples the workers held are retried one at a time in the isolated helper process:
one that kills it again is recorded as failed ("the extractor crashed: signal 6 (SIGABRT)"), and
the next round goes on with the rest. Samples another process is extracting (a second warm-up on
the same cache) are left for a last round, which waits for that process and then finds them cached.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

from torch.utils.data import DataLoader, Dataset, get_worker_info

from ..cache import CacheError
from ..cache.fill import CLAIM_WAIT_SECONDS, Outcome, SampleStatus, fill_sample
from ..extract import fork_unsafe_builds
from .plan import WarmOptions, WarmPlan
from .progress import Progress, make_progress
from .results import RunState, TaskResult, take_result

log = logging.getLogger(__name__)

# No result from any worker for this long is a hang, not a slow sample (PHOENIX's longest, 299 frames,
# takes ~15 s): the round stops and the samples held are retried alone.
RESULT_TIMEOUT_SECONDS = 600.0
# Rounds in a row in which workers died before finishing or isolating any sample: then the run stops.
MAX_FRUITLESS_ROUNDS = 3


class WarmTasks(Dataset):
    """Samples to extract as a Dataset: item ``i`` fills one sample into the cache, returns a TaskResult.

    ``in_progress[worker]`` holds the sample a worker is on (-1: none) and ``pids[worker]`` its pid, in
    memory shared with the main process: when a worker dies, the main process knows which samples to
    retry alone, and which records its own workers committed without reporting them.
    """

    def __init__(self, plan: WarmPlan, tasks: Sequence[int], options: WarmOptions, in_progress, pids,
                 wait: float) -> None:
        self.plan, self.tasks, self.options = plan, list(tasks), options
        self.in_progress, self.pids, self.wait = in_progress, pids, wait

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> TaskResult:
        task = self.tasks[i]
        info = get_worker_info()
        slot = info.id if info is not None else 0
        self.pids[slot] = os.getpid()
        self.in_progress[slot] = task
        try:
            return run_one(self.plan, task, self.options, self.wait)
        finally:
            self.in_progress[slot] = -1


def run_one(plan: WarmPlan, task: int, options: WarmOptions, wait: float = 0.0) -> TaskResult:
    """Fill one sample; a cache-level error comes back as ``fatal`` rather than a worker traceback."""
    sample = plan.samples[task]
    cpu = time.process_time()
    try:
        status = fill_sample(plan.cache, sample, options.settings, retry_failed=options.retry_failed,
                             verify=options.repair, wait=wait)
    except CacheError as exc:
        return TaskResult(task, SampleStatus(sample.key, Outcome.FAILED, reason=str(exc)), 0.0,
                          _max_rss_mb(), fatal=str(exc))
    return TaskResult(task, status, time.process_time() - cpu, _max_rss_mb())


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl+C in a terminal reaches the whole process group: the main process alone decides to
    # stop; a worker finishes (and commits) the sample it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _as_is(result: TaskResult) -> TaskResult:
    return result


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _Round:
    deferred: List[int] = field(default_factory=list)  # another process held these
    broken: str = ""  # why the workers stopped early (a worker died or hung)
    suspects: List[int] = field(default_factory=list)  # samples the workers held then


class _Runner:
    """One run: rounds of workers over what is left, results recorded as they arrive."""

    def __init__(self, plan: WarmPlan, options: WarmOptions, metrics, progress: Progress) -> None:
        self.plan, self.options, self.metrics, self.progress = plan, options, metrics, progress
        self.state = RunState()

    def record(self, result: TaskResult) -> bool:
        """Take one result; False when the run must stop (a cache-level error)."""
        if result.fatal:
            self.state.aborted, self.state.fatal = result.fatal, True
            return False
        if result.status.outcome != Outcome.DEFERRED:
            take_result(self.plan, self.state, self.metrics, self.progress, result)
        return True

    def run_round(self, tasks: List[int], wait: float) -> _Round:
        workers = self.options.workers
        in_progress = multiprocessing.RawArray("q", [-1] * max(workers, 1))
        pids = multiprocessing.RawArray("q", [os.getpid()] * max(workers, 1))
        loader = DataLoader(WarmTasks(self.plan, tasks, self.options, in_progress, pids, wait), batch_size=None,
                            # torch's stub types collate_fn as taking a list; with batch_size=None it gets one item
                            num_workers=workers, collate_fn=_as_is,  # type: ignore[arg-type]
                            worker_init_fn=_ignore_sigint if workers else None,
                            timeout=RESULT_TIMEOUT_SECONDS + wait if workers else 0,
                            in_order=False)  # results as they finish: progress is true, no worker waits
        end, batches = _Round(), None
        try:
            self.progress.pause()  # no thread runs while the workers fork
            with _sigint_ignored():  # workers fork with SIGINT ignored, so no Ctrl+C lands before their init
                batches = iter(loader)
            self.progress.resume()
            for result in batches:
                if result.status.outcome == Outcome.DEFERRED:
                    end.deferred.append(result.task)
                if not self.record(result):
                    break
        except KeyboardInterrupt:
            self.state.interrupted = True
        except Exception as exc:  # noqa: BLE001 - a dead or hung worker: retry what it held, then go on
            end.broken = f"{type(exc).__name__}: {exc}"
            end.suspects = [int(t) for t in in_progress if t >= 0]  # read before the shutdown below
        finally:
            _shutdown(batches)
            self.state.job_pids.update(int(pid) for pid in pids)
        return end

    def run_alone(self, tasks: List[int]) -> None:
        """Retry samples one at a time in the isolated helper process (which runs no other sample)."""
        for task in tasks:
            log.warning("[warm] retrying alone: %s", self.plan.samples[task].key)
            if not self.record(run_one(self.plan, task, self.options)):
                return


def run_tasks(plan: WarmPlan, options: WarmOptions, metrics) -> RunState:
    """Extract the plan's samples with ``options.workers`` processes; returns when done, stopped or broken."""
    if not plan.todo:
        return RunState()
    _check_nothing_to_inherit(options.workers)
    progress = make_progress(len(plan.todo), options.heartbeat, options.progress_bar)
    runner = _Runner(plan, options, metrics, progress)
    state, started = runner.state, time.monotonic()
    try:
        _run_rounds(runner, list(plan.todo))
    except KeyboardInterrupt:
        state.interrupted = True
    finally:
        progress.close()
        if state.interrupted:
            log.warning("[warm] Ctrl+C: taking no new samples; stopping the workers (Ctrl+C again quits at once)")
        if state.aborted:
            log.error("[warm] run aborted: %s", state.aborted)
        state.wall_seconds = time.monotonic() - started
    return state


def _run_rounds(runner: _Runner, pending: List[int]) -> None:
    state, wait, fruitless = runner.state, 0.0, 0
    while pending and not (state.interrupted or state.aborted):
        before = len(state.results)
        end = runner.run_round(pending, wait)
        if end.broken and not state.interrupted:
            state.crashes += 1
            reported = {r.task for r in state.results}
            suspects = [t for t in end.suspects if t not in reported]
            runner.progress.note(f"[warm] a worker stopped ({end.broken}); retrying alone the "
                                 f"{len(suspects)} sample(s) the workers held")
            runner.run_alone(suspects)
        reported = {r.task for r in state.results}
        pending = [t for t in pending if t not in reported]
        if not end.broken and pending and pending == sorted(end.deferred, key=pending.index):
            if wait:  # the last round waited already: another process still holds them
                state.waiting_elsewhere = pending
                return
            wait = CLAIM_WAIT_SECONDS  # only samples another process holds: wait for it, then read them
        fruitless = fruitless + 1 if len(state.results) == before else 0
        if fruitless >= MAX_FRUITLESS_ROUNDS:
            state.aborted = f"{end.broken or 'no progress'} ({fruitless} rounds in a row without progress)"
            return


def _check_nothing_to_inherit(workers: int) -> None:
    """Workers fork from this process: a MediaPipe graph built here would break them."""
    if workers and fork_unsafe_builds():
        raise RuntimeError("this process built a MediaPipe graph before the warm-up forks its workers, "
                           "which that would break. Run the warm-up in a fresh process.")


def _shutdown(batches: Optional[object]) -> None:
    """Stop the workers now (rather than whenever the iterator is collected), before the cache is re-read.

    A worker gets a few seconds to commit the sample it holds, then is terminated; an uncommitted
    sample leaves nothing behind and is extracted on the next run. ``_shutdown_workers`` is torch's
    own clean-up of a multi-process iterator (tests/test_warm.py pins that it exists).
    """
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
