"""Per-sample claims, so that processes extracting into one cache share the work.

Two warm-ups on one cache, or a warm-up and a training run extracting lazily, would otherwise
extract the same samples twice. Before extracting a sample, a process takes an exclusive POSIX
record lock on one byte of ``<cache>/claims.lock`` (the byte's offset is a hash of the sample key);
another process finding it taken either moves on (the warm-up: it comes back to the sample later)
or waits for it and then reads the record the first one wrote. The kernel releases a lock when its
process exits or dies, so a killed process never blocks anyone: no stale claims, no clean-up.

POSIX locks belong to a process (not to a file descriptor or thread) and are not inherited across
fork(): each process opens the lock file itself, once, and never closes it while holding claims.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
from pathlib import Path
from typing import Dict, Iterator, Tuple

CLAIMS_FILE = "claims.lock"
_POLL_SECONDS = 0.1

# (pid, real path of the lock file) -> its descriptor in that process
_FILES: Dict[Tuple[int, str], int] = {}


def _offset(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "big")  # < 2**56, no overflow


def _fd(path: Path) -> int:
    key = (os.getpid(), os.path.realpath(path))
    if key not in _FILES:
        _FILES[key] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    return _FILES[key]


def _try_lock(fd: int, offset: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        return True
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise


@contextlib.contextmanager
def claim(cache_dir: Path, key: str, wait: float = 0.0) -> Iterator[bool]:
    """Hold the claim on ``key`` for the block; yields False if another process holds it.

    ``wait``: seconds to wait for another process's claim before giving up (0: don't wait).
    """
    deadline = time.monotonic() + wait
    held = try_claim(cache_dir, key)
    while not held and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        held = try_claim(cache_dir, key)
    try:
        yield held
    finally:
        if held:
            release(cache_dir, key)


def try_claim(cache_dir: Path, key: str) -> bool:
    """Take the claim on ``key`` now if no other process holds it; ``release`` gives it back.

    For a process that holds claims across calls (the Ray driver, one per sample in flight); a claim
    this process already holds is granted again (POSIX locks belong to the process).
    """
    return _try_lock(_fd(Path(cache_dir) / CLAIMS_FILE), _offset(key))


def release(cache_dir: Path, key: str) -> None:
    """Give back this process's claim on ``key`` (nothing happens if it holds none)."""
    fcntl.lockf(_fd(Path(cache_dir) / CLAIMS_FILE), fcntl.LOCK_UN, 1, _offset(key))
