"""The warm-up on a Ray cluster: actors extract, the driver is the one writer of the LMDB cache.

``warm_on_ray(options, address=...)`` runs the same plan as ``warm()`` (``make_plan`` decides what is
left, so a rerun, local or Ray, resumes the same cache) with ``WarmActor``s (``warm.actor``) instead of
local workers. Each actor keeps one extractor and runs one sample at a time (``QUEUED_PER_ACTOR``), so
the driver holds a few encoded records at a time whatever the split's size, and a death is the sample's
the actor was running. The driver checks
each record's bytes and writes it in one commit (``LandmarkCache.put_encoded``).

Before any sample, each actor reports the settings identity its node computes (mediapipe release,
model bundle digest); one that differs from the driver's, the cache's, stops the run naming the node.
The driver takes the same per-sample claims as local extractors (``cache.claims``) for the samples in
flight, so a local job or a second Ray job on the same cache never extracts a sample twice.

Faults: a sample whose frames or extraction fail is recorded as failed, as locally. An actor that
dies (its process killed, its node lost) is dropped; the sample it was running goes to the others
(one sample at a time per actor: ``QUEUED_PER_ACTOR``); a sample that two actors died on is recorded
as failed. No actor left: the run stops (exit 3, rerun to finish). Ctrl+C: no new samples, finished
ones kept, actors released.

Actor count: the local rule (``default_workers``: one per core, at most one per GiB of memory)
applied to the cluster's CPU and memory resources. Each actor asks for 1 CPU: a Holistic keeps
~1.2-1.4 cores busy, but Ray takes CPU requests above 1 only as whole numbers, and 2 would leave a
core idle on each small node (locally, a second worker on 2 cores still gains: benchmarks/README.md).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from datetime import datetime
from typing import Any, Deque, Dict, List, Optional, Tuple

from ..cache import CacheError, CacheRecordError
from ..cache.claims import release, try_claim
from ..cache.fill import Outcome, SampleStatus, cached_frames
from ..cache.identity import identity_differences
from ..record import decode_record
from .actor import ActorResult, WarmActor
from .plan import WarmOptions, WarmPlan, default_workers, make_plan
from .progress import make_progress
from .report import METRICS_FILE, MetricsWriter, WarmOutcome, finish
from .results import RunState, TaskResult, take_result

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[ray]'"
ACTOR_CPUS = 1
# Samples sent to an actor and not yet returned. One: an actor that dies was running that very sample
# (with a second one queued, a death right after the first finished could not be told from a death on
# the second: the first's result dies with the actor). The actor waits for the driver's round trip
# between samples: milliseconds against the seconds a sample takes.
QUEUED_PER_ACTOR = 1
ACTOR_START_SECONDS = 180.0  # actors not started by then (no free CPU for them) are dropped
WAIT_SECONDS = 1.0  # how often the driver wakes while waiting for a result (Ctrl+C, progress)
MAX_DEATHS_PER_SAMPLE = 2  # actors that died running one sample: then it is recorded as failed


class RayWarmError(RuntimeError):
    """The Ray run cannot start: Ray missing, no actor could start, a node cannot see the frames."""


def import_ray():
    """The ``ray`` module, imported only when asked for; a clear error with the install command otherwise."""
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:
        raise RayWarmError(f"--ray needs Ray, which is not installed ({exc}); install it with: "
                           f"{INSTALL_HINT}") from None
    return ray


def connect(address: Optional[str]) -> bool:
    """Join the cluster at ``address`` (None: RAY_ADDRESS, a running head, else a new local one);
    True when this call connected (and so the run disconnects at its end)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    return True


def default_actors() -> int:
    """``default_workers``'s rule over the whole cluster: its CPUs, and its memory at one GiB an actor."""
    resources = import_ray().cluster_resources()
    memory = resources.get("memory")
    return default_workers(cores=int(resources.get("CPU", 1)), memory=None if memory is None else int(memory))


def warm_on_ray(options: WarmOptions, plan: Optional[WarmPlan] = None, address: Optional[str] = None,
                actors: Optional[int] = None) -> WarmOutcome:
    """One warm-up on Ray; ``actors`` None: ``default_actors()``. Raises RayWarmError when it cannot start."""
    ray = import_ray()
    connected = connect(address)
    try:
        options = dataclasses.replace(options, workers=actors if actors else default_actors())
        plan = plan if plan is not None else make_plan(options)
        reports = options.reports
        reports.mkdir(parents=True, exist_ok=True)
        log.info("[warm] %d samples (%s): %d cached, %d failed before, %d to do | Ray: %d actors on %s | "
                 "cache %s", len(plan.samples), plan.scope(), plan.cached, len(plan.failed_before),
                 len(plan.todo), options.workers, ray.get_runtime_context().gcs_address, plan.cache.path)
        runner = _RayRunner(plan, options)
        metrics = MetricsWriter(reports / METRICS_FILE, datetime.now().astimezone().isoformat(timespec="seconds"))
        try:
            state = runner.run(metrics)
        finally:
            metrics.close()
        return finish(options, plan, state, reports, extra={"ray": runner.report(state)})
    finally:
        if connected:
            ray.shutdown()


class _RayRunner:
    """One run: actors, samples in flight, results written as they arrive."""

    def __init__(self, plan: WarmPlan, options: WarmOptions) -> None:
        self.ray, self.plan, self.options = import_ray(), plan, options
        self.state = RunState()
        self.actors: Dict[int, Any] = {}  # live actors by index (Ray actor handles: typed as Any by Ray)
        self.where: Dict[int, dict] = {}  # actor index -> node, node_id, pid
        self.in_flight: Dict[object, Tuple[int, int, int]] = {}  # ref -> (actor, task, order sent)
        self.deaths: Dict[int, int] = collections.Counter()  # task -> actors that died running it
        self.nodes: Dict[int, str] = {}  # task -> node id that extracted it
        self.order = itertools.count()
        self.start_seconds = 0.0  # from the run's start until every actor was up and had checked the frames
        self.claimed: Dict[int, str] = {}  # task -> key: the claims this driver holds (samples in flight)

    def start_actors(self) -> None:
        """Start the actors and check that each node sees the frames; raises RayWarmError."""
        remote = self.ray.remote(num_cpus=ACTOR_CPUS, max_restarts=0)(WarmActor)
        spread = remote.options(scheduling_strategy="SPREAD")
        handles = [spread.remote(self.options.settings) for _ in range(self.options.workers)]
        refs = {h.where.remote(): i for i, h in enumerate(handles)}
        ready, late = self.ray.wait(list(refs), num_returns=len(refs), timeout=ACTOR_START_SECONDS)
        for ref in late:
            self.ray.kill(handles[refs[ref]])
        for ref in ready:
            try:
                self.where[refs[ref]] = self.ray.get(ref)
                self.actors[refs[ref]] = handles[refs[ref]]
            except self.ray.exceptions.RayError as exc:
                log.warning("[warm] an actor could not start: %s", exc)
        if late:
            log.warning("[warm] %d of %d actors did not start within %.0f s (cluster CPUs: %s); going on with %d",
                        len(late), len(handles), ACTOR_START_SECONDS,
                        self.ray.cluster_resources().get("CPU"), len(self.actors))
        if not self.actors:
            raise RayWarmError("no Ray actor could start; check `ray status` for free CPUs and that "
                               "phoenix_data is installed on every node.")
        self._check_frames_visible()
        self._check_identities()

    def _check_identities(self) -> None:
        """Every node extracts what the cache holds: the same settings identity as the driver's."""
        settings = self.options.settings
        expected = dict(settings.identity(), fingerprint=settings.fingerprint())
        refs = {index: actor.identity.remote() for index, actor in self.actors.items()}
        for index, ref in refs.items():
            node = self.where[index]
            where = f"Ray node {node['node']} (node id {node['node_id']})"
            try:
                identity = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                raise RayWarmError(f"{where} cannot set up the extractor: {exc}") from None
            if identity.get("fingerprint") != expected["fingerprint"]:
                differs = "; ".join(identity_differences(expected, identity, ("driver", "node")))
                raise RayWarmError(f"{where} would extract with another identity than this run's cache ({differs}): "
                                   "every node needs the same phoenix_data, mediapipe release and model bundle "
                                   "as the driver. Nothing was written.")

    def _check_frames_visible(self) -> None:
        groups: Dict[Tuple[str, str], List[str]] = collections.defaultdict(list)
        for task in self.plan.todo:
            sample = self.plan.samples[task]
            groups[(sample.release, sample.split)].append(str(sample.frames_dir))
        paths = [os.path.commonpath(dirs) for dirs in groups.values()]  # each split's frames folder
        missing = self.ray.get([a.missing.remote(paths) for a in self.actors.values()])
        for index, path in zip(self.actors, missing):
            if path is not None:
                node = self.where[index]
                raise RayWarmError(f"Ray node {node['node']} (node id {node['node_id']}) cannot see {path}: "
                                   "every node must see the release at the same path as the driver "
                                   "(mount or copy it there; see docs/ray.md).")

    def run(self, metrics) -> RunState:
        if not self.plan.todo:
            return self.state
        self.metrics = metrics
        self.progress = make_progress(len(self.plan.todo), self.options.heartbeat, self.options.progress_bar)
        started = time.monotonic()
        try:
            self.start_actors()
            self.start_seconds = time.monotonic() - started
            self._loop(collections.deque(self.plan.todo))
        except KeyboardInterrupt:
            self.state.interrupted = True
            log.warning("[warm] Ctrl+C: taking no new samples; keeping what finished, releasing the actors")
            self._drain_finished()
        finally:
            self.progress.close()
            for actor in self.actors.values():
                self.ray.kill(actor)
            for task in list(self.claimed):
                self._release(task)
            self.state.wall_seconds = time.monotonic() - started
            if self.state.aborted:
                log.error("[warm] run aborted: %s", self.state.aborted)
        return self.state

    def _loop(self, pending: Deque[int]) -> None:
        while (pending or self.in_flight) and not self.state.aborted:
            self._submit(pending)
            if not self.actors:
                self.state.aborted = (f"no Ray actor is left ({self.state.crashes} died); rerun to finish "
                                      "(what finished is kept)")
                return
            if not self.in_flight:  # every sample left is claimed by another process: come back to them
                time.sleep(WAIT_SECONDS)
                continue
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_SECONDS)
            for ref in ready:
                self._collect(ref, pending)

    def _submit(self, pending: Deque[int]) -> None:
        load = collections.Counter(actor for actor, _, _ in self.in_flight.values())
        deferred: List[int] = []  # claimed by another process (a local job on this cache): later
        try:
            while pending and self.actors:
                index = min(self.actors, key=lambda i: load[i])  # the least loaded: samples spread over actors
                if load[index] >= QUEUED_PER_ACTOR:
                    return
                actor, task = self.actors[index], pending.popleft()
                sample = self.plan.samples[task]
                if not try_claim(self.plan.cache.path, sample.key):
                    deferred.append(task)
                    continue
                self.claimed[task] = sample.key
                frames = cached_frames(self.plan.cache, sample.key)
                if frames is not None:  # written meanwhile (another job on this cache)
                    self._release(task)
                    self._record(TaskResult(task, SampleStatus(sample.key, Outcome.CACHED, frames=frames, pid=0),
                                            0.0, 0.0))
                    continue
                ref = actor.extract.remote(task, sample.key, str(sample.frames_dir))
                self.in_flight[ref] = (index, task, next(self.order))
                load[index] += 1
        finally:
            pending.extend(deferred)

    def _release(self, task: int) -> None:
        key = self.claimed.pop(task, None)
        if key is not None:
            release(self.plan.cache.path, key)

    def _collect(self, ref, pending: Deque[int]) -> None:
        index, task, order = self.in_flight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.in_flight[ref] = (index, task, order)  # an actor runs its samples in the order sent
            self._actor_died(index, exc, pending)
            return
        except self.ray.exceptions.RayTaskError as exc:  # not a FramesError/ValueError: still the sample's
            result = ActorResult(task, self.plan.samples[task].key, None, reason=f"the actor raised: {exc}")
        except self.ray.exceptions.RayError as exc:  # the result is lost (its worker or node): as a death
            self.in_flight[ref] = (index, task, order)
            self._actor_died(index, exc, pending)
            return
        self._store(result)

    def _actor_died(self, index: int, exc: Exception, pending: Deque[int]) -> None:
        """Give the dead actor's samples to the others; the oldest (the one it was running) counts a death."""
        self.state.crashes += 1
        actor = self.actors.pop(index, None)
        if actor is not None:  # dead, or unreachable: either way it gets no more samples, nor resources
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        held = sorted((order, ref, task) for ref, (actor, task, order) in self.in_flight.items() if actor == index)
        for _, ref, _ in held:
            del self.in_flight[ref]
        held = [(order, ref, task) for order, ref, task in held if not self._finished_before_death(ref)]
        node = self.where.get(index, {}).get("node", "?")
        self.progress.note(f"[warm] a Ray actor on {node} died ({type(exc).__name__}); giving its "
                           f"{len(held)} sample(s) to the {len(self.actors)} left")
        for position, (_, _, task) in enumerate(reversed(held)):
            running = position == len(held) - 1
            self.deaths[task] += running
            if self.deaths[task] >= MAX_DEATHS_PER_SAMPLE:  # recorded as failed (its claim released after)
                key = self.plan.samples[task].key
                self._store(ActorResult(task, key, None, reason=f"the extractor crashed: {MAX_DEATHS_PER_SAMPLE} "
                                        f"Ray actors died running this sample (last on {node})"))
            else:
                self._release(task)  # back in the queue: claimed again when it is sent
                pending.appendleft(task)

    def _finished_before_death(self, ref) -> bool:
        """Whether the dead actor had finished this sample (its result ready, not collected yet): then
        the result is stored, and the death is not blamed on it nor the sample sent again."""
        ready, _ = self.ray.wait([ref], num_returns=1, timeout=0)
        if not ready:
            return False
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError:  # died with the actor (or raised: handled as before, sent again)
            return False
        self._store(result)
        return True

    def _store(self, result: ActorResult) -> None:
        """Write one actor result to the cache (one commit) and record it; a cache error stops the run."""
        cache, key = self.plan.cache, result.key
        try:
            if result.data is not None:
                try:
                    decode_record(result.data, key, num_points=self.options.settings.num_points)
                except CacheRecordError as exc:  # damaged on its way: never written
                    result.data, result.reason = None, f"the record came back damaged: {exc}"
            if result.data is not None:
                cache.put_encoded(key, result.data)
            else:
                cache.put_failure(key, result.reason)
        except CacheError as exc:
            self.state.aborted, self.state.fatal = str(exc), True
            return
        finally:
            self._release(result.task)
        outcome = Outcome.EXTRACTED if result.data is not None else Outcome.FAILED
        status = SampleStatus(key, outcome, frames=result.frames, seconds=result.seconds, pid=result.pid,
                              detection=result.detection, reason=result.reason)
        self.nodes[result.task] = result.node_id
        self.state.job_pids.add(result.pid)
        self._record(TaskResult(result.task, status, result.cpu_seconds, result.max_rss_mb))

    def _record(self, result: TaskResult) -> None:
        take_result(self.plan, self.state, self.metrics, self.progress, result)

    def _drain_finished(self) -> None:
        """After Ctrl+C: write the results that have already arrived; drop the rest."""
        if not self.in_flight:
            return
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
        for ref in ready:
            index, task, _ = self.in_flight.pop(ref)
            try:
                self._store(self.ray.get(ref, timeout=0))
            except self.ray.exceptions.RayError:
                continue

    def report(self, state: RunState) -> dict:
        """The Ray part of summary.json: the node of each sample; per node samples, frames/s, peak RSS."""
        wall = state.wall_seconds
        nodes: Dict[str, Dict[str, Any]] = {}
        hosts = {w["node_id"]: w["node"] for w in self.where.values()}
        for result in state.results:
            node_id = self.nodes.get(result.task)
            if node_id is None or result.status.outcome != Outcome.EXTRACTED:
                continue
            entry = nodes.setdefault(node_id, {"host": hosts.get(node_id, "?"), "samples": 0, "frames": 0,
                                               "peak_rss_mb_per_actor": {}})
            entry["samples"] += 1
            entry["frames"] += result.status.frames
            peaks, pid = entry["peak_rss_mb_per_actor"], str(result.status.pid)
            peaks[pid] = round(max(peaks.get(pid, 0.0), result.max_rss_mb), 1)
        for entry in nodes.values():
            entry["frames_per_s"] = round(entry["frames"] / wall, 3) if wall > 0 else None
        return {"address": self.ray.get_runtime_context().gcs_address, "actors_started": len(self.where),
                "actor_num_cpus": ACTOR_CPUS, "actors_start_seconds": round(self.start_seconds, 3),
                "actor_deaths": state.crashes, "nodes": nodes,
                "sample_nodes": {self.plan.samples[t].key: n for t, n in sorted(self.nodes.items())}}
