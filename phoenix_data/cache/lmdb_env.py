"""LMDB environments, one per process and cache: opened lazily, never across fork(); disk space; map growth.

An environment must not cross fork(): a child that used or even closed it would clear the
parent's reader slot, and a writer could then reuse pages the parent is reading. So each process
opens its own on first use (``process_handle``), and an at-fork hook closes the parent's before any
fork. Writers check free disk space first: LMDB reports a full disk only as an I/O error at commit,
and a process touching a memory-mapped page a full disk cannot back dies of SIGBUS.
"""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Dict, Optional

import lmdb

from ..record import CacheError

log = logging.getLogger(__name__)

TABLES = (b"samples", b"failures", b"meta")
_MAX_GROWTHS = 32  # doublings of the map a table creation may need (from a few KiB)


class CacheSpaceError(CacheError):
    """The cache's disk has not enough free space left for the next write."""


# Free space a write leaves untouched: LMDB's copy-on-write pages, the lock file, the reports.
SPACE_MARGIN_BYTES = 1 << 20


def _mount_point(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def ensure_space(path: Path, needed: int, what: str) -> None:
    """Raise CacheSpaceError unless ``needed`` bytes (plus a margin) are free on ``path``'s disk.

    Checked before every write: LMDB reports a full disk only as an I/O error at commit, and a
    process touching a memory-mapped page the full disk cannot back dies of SIGBUS, with no message.
    """
    probe = path if path.exists() else _mount_point(path)
    free = shutil.disk_usage(probe).free
    if free < needed + SPACE_MARGIN_BYTES:
        raise CacheSpaceError(
            f"no space left on {_mount_point(path)}: {_human(free)} free, the cache {path} needs "
            f"{_human(needed + SPACE_MARGIN_BYTES)} for {what}. Free some space there, or pass another "
            "--cache on a disk with room; rerun to resume (what was written is kept).")



_OPEN_TRIES = 8
# A reader's first map (py-lmdb's default); LMDB maps at least the data's size whatever is asked.
READER_MAP_SIZE = 10 << 20


def _open_env(path: Path, readonly: bool, map_size: int) -> lmdb.Environment:
    """Open the environment; again, with room to spare, when another process's commit raced the opening.

    ``lmdb.open`` maps the file at the larger of ``map_size`` and the size its data had then, and begins
    a read transaction before it returns: a commit by another process in between that grows the data
    past that size makes that transaction, and so the open, fail with MapResizedError. A reader
    (py-lmdb's default map, 10 MB) of a cache a warm-up is writing meets it; so did four writers on a
    new cache with a 1 MB map (2 rounds in 60 here: the likely cause of the rare failure of
    tests/test_cache.py::test_two_processes_write_at_once[spawn], whose message was lost). The next
    try maps twice the data file's size, which the writers do not outgrow in the moment it takes.
    """
    size = READER_MAP_SIZE if readonly else map_size
    for _ in range(_OPEN_TRIES - 1):
        try:
            return _open_env_once(path, readonly, size)
        except lmdb.MapResizedError:
            size = max(size, 2 * _file_size(path / "data.mdb"))
    return _open_env_once(path, readonly, size)


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _open_env_once(path: Path, readonly: bool, map_size: int) -> lmdb.Environment:
    # OS readahead stays on (py-lmdb's default): a record is ~0.5 MB of consecutive pages, read
    # whole; without it a cold read faults in 4 KB at a time (measured 9x slower, benchmarks/).
    if not readonly:
        return lmdb.open(str(path), map_size=map_size, max_dbs=len(TABLES), max_readers=512)
    # A reader takes part in LMDB's locking (so a writer never reuses pages it reads) wherever the
    # writer's lock file is there to use; a finished cache shipped without one, or on a read-only
    # disk, is read without locks: no writer can be at work there.
    return lmdb.open(str(path), readonly=True, lock=_can_lock(path), max_dbs=len(TABLES), map_size=map_size)


def _can_lock(path: Path) -> bool:
    """Whether a reader of ``path`` can take part in LMDB's locking (its lock file is there, writable)."""
    lock_file = path / "lock.mdb"
    return lock_file.is_file() and os.access(lock_file, os.W_OK)


class _Handle:
    """One process's open environment and its named databases."""

    def __init__(self, path: Path, readonly: bool, map_size: int) -> None:
        self.pid = os.getpid()
        if not readonly:
            ensure_space(path, 0, "opening it for writing")
            _preallocate(path / "lock.mdb")  # before LMDB opens it: see there
        try:
            self.env = _open_env(path, readonly, map_size)
        except lmdb.Error as exc:
            hint = ("" if readonly else " If it is a finished cache on a read-only disk, open it with "
                    "readonly=True.")
            raise CacheError(f"cannot open the cache {path}: {lmdb_reason(exc)}.{hint}") from None
        self.dbs: Dict[bytes, object] = {}
        self.readonly = readonly
        # No lock: a writer that arrives later (a copy without lock.mdb on a writable disk) may reuse
        # the pages this reader is reading. Reads copy, check, and retry once (LandmarkCache.get).
        self.lock_free = readonly and not self.env.flags().get("lock", True)
        self.inode = inode(path / "data.mdb")

    def db(self, name: bytes):
        if name not in self.dbs:
            try:
                self.dbs[name] = follow_growth(self.env, lambda: self._open_db(name))
            except lmdb.NotFoundError:
                raise CacheError(f"cache {self.env.path()} has no {name.decode()!r} table; "
                                 "is it a phoenix_data cache?") from None
        return self.dbs[name]

    def _open_db(self, name: bytes):
        """Open (or create) a table; creating one in a map too small for it grows the map, as a put does."""
        for _ in range(_MAX_GROWTHS):
            try:
                return self.env.open_db(name, create=not self.readonly)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)  # no transaction of ours is open
        return self.env.open_db(name, create=not self.readonly)


def lmdb_reason(exc: lmdb.Error) -> str:
    """lmdb's message without the path it repeats (``/x/cache: No such file``)."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("/") and ": " in text else text


def inode(path: Path) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


# LMDB's lock file holds a reader table of 64-byte slots (512 readers: ~33 KB); a larger file only
# gives it more slots.
LOCK_FILE_BYTES = 64 << 10


def _preallocate(lock_file: Path) -> None:
    """Give the memory-mapped lock file real blocks: on a full disk, LMDB's first touch of a sparse
    page of it (a new reader slot) would kill the process with SIGBUS.

    Only before this process opens the environment: LMDB holds POSIX record locks on this file, and
    closing any descriptor of it would drop them all (then another process would think itself
    alone and reset the lock table under its writers).
    """
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        allocate(fd, max(os.fstat(fd).st_size, LOCK_FILE_BYTES))
    except OSError as exc:
        raise CacheSpaceError(f"no space left on {_mount_point(lock_file)} for the cache's lock file "
                              f"{lock_file} ({exc.strerror}). Free some space there, or pass another "
                              "--cache on a disk with room.") from None
    finally:
        os.close(fd)


def allocate(fd: int, size: int) -> None:
    """Give the file ``fd`` real blocks up to ``size`` bytes without changing a byte it holds; OSError
    (ENOSPC) when the disk cannot. posix_fallocate where there is one (Linux); macOS has none:
    fcntl's F_PREALLOCATE there, then the size set; elsewhere zeros written past the end."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    current = os.fstat(fd).st_size
    if hasattr(fcntl, "F_PREALLOCATE"):  # macOS: struct fstore_t {flags, posmode, offset, length, bytesalloc}
        store = struct.pack("IiqqQ", _F_ALLOCATEALL, _F_PEOFPOSMODE, 0, size, 0)
        fcntl.fcntl(fd, fcntl.F_PREALLOCATE, store)
        if current < size:
            os.ftruncate(fd, size)
        return
    zeros = bytes(65536)
    for offset in range(current, size, len(zeros)):  # past the end only: a live lock table is left alone
        os.pwrite(fd, zeros[:size - offset], offset)


# macOS <sys/fcntl.h>: allocate all or nothing, from the end of the file
_F_ALLOCATEALL = 0x4
_F_PEOFPOSMODE = 3


def follow_growth(env: lmdb.Environment, start):
    """``start()``, adopting the map size another process grew the file to (MapResizedError)."""
    for _ in range(8):
        try:
            return start()
        except lmdb.MapResizedError:
            env.set_mapsize(0)  # no transaction of ours is open here
    return start()


# real path -> handle. A handle is used only by the process that opened it. py-lmdb refuses to
# open one environment twice in a process, so read-only and read-write users share a handle.
_HANDLES: Dict[str, _Handle] = {}


@functools.lru_cache(maxsize=64)
def _real(path: Path) -> str:
    """``os.path.realpath``, once per path (it stats every component; a cached read needs ~30 us less)."""
    return os.path.realpath(path)


def process_handle(path: Path, readonly: bool, map_size: int) -> _Handle:
    """This process's environment for ``path``, opened on first use."""
    key = _real(path)
    held = _HANDLES.get(key)
    if held is not None and held.pid != os.getpid():
        _drop_inherited(held)
        held = None
    if held is not None and held.readonly and not readonly:
        held.env.close()  # a writer needs a read-write environment
        held = None
    if held is None:
        held = _HANDLES[key] = _Handle(path, readonly, map_size)
    return held


def has_process_handle(path: Path) -> bool:
    held = _HANDLES.get(_real(path))
    return held is not None and held.pid == os.getpid()


def close_process_handles(path: Path) -> None:
    """Close this process's environment for ``path``, so that a later fork inherits none."""
    key = _real(path)
    held = _HANDLES.get(key)
    if held is not None and held.pid == os.getpid():
        del _HANDLES[key]
        held.env.close()


def _drop_inherited(handle: _Handle) -> None:
    """Let go of an environment a parent held open across a fork that skipped the at-fork hook
    below (only a raw fork from C does). Closing it lets py-lmdb open the files again here."""
    log.warning("pid %d: closing an LMDB environment inherited from pid %d", os.getpid(), handle.pid)
    handle.env.close()


def close_every_process_handle() -> None:
    """Close this process's environments; they reopen lazily on their next use.

    Before this process forks (DataLoader workers, multiprocessing): an environment must not cross
    fork(), since a child that used or even closed it would clear the parent's reader slot, and a
    writer could then reuse pages the parent is reading. Also when a job run in-process ends.
    """
    for key in [k for k, h in _HANDLES.items() if h.pid == os.getpid()]:
        _HANDLES.pop(key).env.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=close_every_process_handle)
