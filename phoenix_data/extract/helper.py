"""Extraction in a process of its own, started fresh (never forked from the caller).

A process that may later fork DataLoader workers must never run MediaPipe itself: a child forked
from a process that has run it corrupts its heap (even after ``close()``). So the main process of a
training script or notebook (``ds[0]`` before ``DataLoader(ds, num_workers=2)``), the warm-up with
``--workers 0`` and ``phoenix-dataset --render`` extract through one helper process, started with
``subprocess`` on the first miss and kept for later misses. A fresh interpreter (rather than
multiprocessing's spawn) also spares a user's script without an ``if __name__ == "__main__"`` guard
from being imported again. The warm-up uses the same helper to retry, alone, a sample whose
extraction killed its worker: the helper dying again identifies the sample.

Run as ``python -m phoenix_data.extract.helper FD``: serves requests on the socket FD until it closes.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from ..frames import FramesError
from ..record import LandmarkRecord
from . import ExtractorSpec, extract_frames_dir

# No answer for this long is a hang, not a slow sample (PHOENIX's longest, 299 frames, takes ~15 s).
HUNG_SECONDS = 600.0


class ExtractorCrashed(RuntimeError):
    """The extracting process died while it extracted one sample (a signal, or an exit)."""


def describe_exit(returncode: int) -> str:
    """'the extractor crashed: signal 6 (SIGABRT)' from a Popen return code."""
    if returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return f"the extractor crashed: signal {-returncode}{name}"
    return f"the extractor exited with status {returncode} while extracting"


class IsolatedExtractor:
    """Extracts samples in a helper process (one Holistic there, kept between samples)."""

    def __init__(self, settings: ExtractorSpec) -> None:
        self.settings = settings
        self._proc: Optional[subprocess.Popen] = None
        self._conn: Optional[Connection] = None
        self._owner = os.getpid()

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        # the helper imports this very copy of phoenix_data, installed or not
        package_parent = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "phoenix_data.extract.helper", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        self._conn = Connection(ours.detach())
        self._owner = os.getpid()

    def extract(self, frames_dir: Union[str, Path], key: str) -> LandmarkRecord:
        """The sample's record; FramesError/ValueError as in-process, ExtractorCrashed if the helper dies."""
        if self._proc is None or self._owner != os.getpid():
            self._start()
        assert self._conn is not None and self._proc is not None
        try:
            self._conn.send((str(frames_dir), key, self.settings))
            if not self._conn.poll(HUNG_SECONDS):
                self.close(timeout=0)
                raise ExtractorCrashed(f"the extractor hung: no result after {HUNG_SECONDS:.0f} s")
            reply = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.wait()
            self._forget()
            raise ExtractorCrashed(describe_exit(code)) from None
        except BaseException:  # Ctrl+C mid-request: a late reply must not answer the next request
            self.close()
            raise
        if reply[0] == "ok":
            return reply[1]
        _, kind, message = reply
        raise {"FramesError": FramesError, "ValueError": ValueError}.get(kind, RuntimeError)(message)

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self, timeout: float = 10.0) -> None:
        """Stop the helper (it leaves when its socket closes)."""
        proc = self._proc
        if proc is None or self._owner != os.getpid():
            self._proc = self._conn = None
            return
        self._forget()  # the helper leaves when its socket closes
        if timeout <= 0:
            proc.kill()
        try:
            proc.wait(timeout if timeout > 0 else None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# (pid, settings) -> this process's helper; one inherited across fork() is never used.
_HELPERS: Dict[Tuple[int, ExtractorSpec], IsolatedExtractor] = {}


def isolated_extractor(settings: ExtractorSpec) -> IsolatedExtractor:
    """This process's helper for ``settings``, started on first use."""
    key = (os.getpid(), settings)
    if key not in _HELPERS:
        _HELPERS[key] = IsolatedExtractor(settings)
    return _HELPERS[key]


def close_helpers() -> None:
    for key in [k for k in _HELPERS if k[0] == os.getpid()]:
        _HELPERS.pop(key).close()


def _drop_inherited() -> None:
    """In a forked child: close the inherited sockets (the parent's helper stays the parent's)."""
    for helper in _HELPERS.values():
        if helper._conn is not None:
            helper._conn.close()
            helper._conn = None
        helper._proc = None
    _HELPERS.clear()


atexit.register(close_helpers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited)


def _serve(fd: int) -> None:
    """The helper's loop: one request at a time, until the caller closes the socket."""
    # Ctrl+C reaches the whole process group; the caller decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    while True:
        try:
            frames_dir, key, settings = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple = ("ok", extract_frames_dir(frames_dir, settings, key))
        except Exception as exc:  # noqa: BLE001 - every error goes back to the caller, named
            reply = ("error", type(exc).__name__, str(exc))
        conn.send(reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
