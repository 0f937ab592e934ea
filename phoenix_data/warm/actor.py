"""The Ray side of a warm-up on a cluster: one actor per extractor, and what it sends back per sample.

An actor builds its extractor once (``get_extractor`` with the run's settings) and keeps it for every
sample it is given. It reads the frames on its own node, extracts, and returns the encoded record
(``encode_record(record, key)``: what the cache stores, no pickle) with small metadata. It never
opens the cache: the driver is the one writer.

Nothing it imports imports torch (the package ``phoenix_data.warm`` imports it only when a local job
runs: its workers are DataLoader workers): an actor never needs torch, and without it starts ~2 s
sooner and keeps ~190 MB less resident (37 MB against 224 MB measured after the imports alone).
"""
from __future__ import annotations

import os
import resource
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from ..extract import ExtractorSpec, extract_frames_dir
from ..frames import FramesError
from ..record import encode_record


@dataclass
class ActorResult:
    """One sample's outcome from an actor: the record's bytes (~3.3 KB a frame), or why it failed."""

    task: int  # index into plan.samples
    key: str
    data: Optional[bytes]  # the encoded record; None when the sample failed
    reason: str = ""  # why it failed
    frames: int = 0
    seconds: float = 0.0  # extraction time (frames read and extracted)
    cpu_seconds: float = 0.0  # the actor process's CPU time on this sample (MediaPipe's threads too)
    max_rss_mb: float = 0.0  # the actor's peak resident memory so far
    pid: int = 0
    node: str = ""  # the host name of the actor's node
    node_id: str = ""
    detection: Dict[str, float] = field(default_factory=dict)


class WarmActor:
    """One extractor on one Ray node (wrapped by ``ray.remote`` in ``phoenix_data.warm.ray``)."""

    def __init__(self, settings: ExtractorSpec) -> None:
        import ray  # noqa: PLC0415 - only where Ray runs this class

        self.settings = settings
        self.node = socket.gethostname()
        self.node_id = ray.get_runtime_context().get_node_id()

    def where(self) -> Dict[str, object]:
        """This actor's node and process, for the reports."""
        return {"node": self.node, "node_id": self.node_id, "pid": os.getpid()}

    def identity(self) -> Dict[str, object]:
        """The settings' identity as this node computes it (its mediapipe release, its bundle's digest)."""
        return dict(self.settings.identity(), fingerprint=self.settings.fingerprint())

    def missing(self, paths: list) -> Optional[str]:
        """The first of ``paths`` (folders the run reads) this node cannot see, or None."""
        for path in paths:
            if not Path(path).is_dir():
                return str(path)
        return None

    def extract(self, task: int, key: str, frames_dir: str) -> ActorResult:
        """Extract one sample; a bad sample comes back as a failure with its reason, never raises."""
        cpu, start = time.process_time(), time.perf_counter()
        result = ActorResult(task, key, None, pid=os.getpid(), node=self.node, node_id=self.node_id)
        try:
            record = extract_frames_dir(frames_dir, self.settings, key)
            result.data = encode_record(record, key)
        except (FramesError, ValueError, RuntimeError, OSError) as exc:
            result.reason = f"{type(exc).__name__}: {exc}"
        else:
            result.frames, result.detection = record.num_frames, record.detection_rates()
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.process_time() - cpu
        result.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        return result
