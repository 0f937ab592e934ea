"""The LMDB landmark cache: per-process open, record encoding (no pickle), metadata, failures.

One LMDB environment holds three named databases:

- ``samples``: sample key -> record (a fixed header, then numeric arrays; see phoenix_data/record.py);
- ``failures``: sample key -> JSON ``{"key": ..., "reason": ..., "time": ...}`` for samples that could not
  be extracted;
- ``meta``: the extraction settings, their fingerprint and versions the records were made with.

Keys longer than LMDB's limit are stored under a digest (``db_key``), in every table.

Storage: landmarks as float16 (relative error 2**-11: <0.06 px for in-frame points of a 210x260
frame, 0.25 px measured on off-screen pose points), pose visibility as uint8 (error <= 1/510), face
and hand presence as one byte per part and frame: 3,295 bytes per frame against 6,516 for the
float32 landmarks alone.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Set, Tuple, Union

import lmdb
from .extract import ExtractorSettings
from .holistic import ExtractionSettings
from .record import CacheError, CacheRecordError, LandmarkRecord, decode_header, decode_record, encode_record

__all__ = ["CacheError", "CacheRecordError", "LandmarkCache", "db_key", "decode_header", "decode_record",
           "encode_record"]

log = logging.getLogger(__name__)

# Holds PHOENIX-2014 (~799k frames, ~2.6 GB) and 2014-T (~0.95M frames, ~3.1 GB) several times
# over. LMDB maps it lazily and the file grows only as records are written; a full map is
# still grown on demand (MapFullError), and other processes follow (MapResizedError).
DEFAULT_MAP_SIZE = 32 << 30
_DBS = (b"samples", b"failures", b"meta")
_META_KEY = b"identity"
# LMDB's key limit (py-lmdb's bundled LMDB: env.max_key_size() == 511). Longer sample keys are
# stored under a digest (``db_key``).
MAX_KEY_BYTES = 511
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


def db_key(key: str) -> bytes:
    """The LMDB key of sample ``key`` in every table: its UTF-8, or past LMDB's key limit
    ``<release>/<split>/#<sha256 hex>`` (the record's own key digest still names the full key)."""
    encoded = key.encode("utf-8")
    if len(encoded) <= MAX_KEY_BYTES:
        return encoded
    parts = key.split("/", 2)
    release_split = f"{parts[0]}/{parts[1]}/" if len(parts) == 3 else ""
    if len(release_split.encode("utf-8")) > MAX_KEY_BYTES // 2:
        release_split = ""
    return f"{release_split}#{hashlib.sha256(encoded).hexdigest()}".encode("utf-8")


# --- per-process environments ---------------------------------------------------------------

def _open_env(path: Path, readonly: bool, map_size: int) -> lmdb.Environment:
    # OS readahead stays on (py-lmdb's default): a record is ~0.5 MB of consecutive pages, read
    # whole; without it a cold read faults in 4 KB at a time (measured 9x slower, benchmarks/).
    if not readonly:
        return lmdb.open(str(path), map_size=map_size, max_dbs=len(_DBS), max_readers=512)
    # A reader takes part in LMDB's locking (so a writer never reuses pages it reads) wherever the
    # writer's lock file is there to use; a finished cache shipped without one, or on a read-only
    # disk, is read without locks: no writer can be at work there.
    lock_file = path / "lock.mdb"
    locked = lock_file.is_file() and os.access(lock_file, os.W_OK)
    return lmdb.open(str(path), readonly=True, lock=locked, max_dbs=len(_DBS))


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
            raise CacheError(f"cannot open the cache {path}: {_lmdb_reason(exc)}.{hint}") from None
        self.dbs: Dict[bytes, object] = {}
        self.readonly = readonly
        self.inode = _inode(path / "data.mdb")

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


def _lmdb_reason(exc: lmdb.Error) -> str:
    """lmdb's message without the path it repeats (``/x/cache: No such file``)."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("/") and ": " in text else text


def _inode(path: Path) -> Optional[int]:
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
        os.posix_fallocate(fd, 0, max(os.fstat(fd).st_size, LOCK_FILE_BYTES))
    except OSError as exc:
        raise CacheSpaceError(f"no space left on {_mount_point(lock_file)} for the cache's lock file "
                              f"{lock_file} ({exc.strerror}). Free some space there, or pass another "
                              "--cache on a disk with room.") from None
    finally:
        os.close(fd)


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


def process_handle(path: Path, readonly: bool, map_size: int) -> _Handle:
    """This process's environment for ``path``, opened on first use."""
    key = os.path.realpath(path)
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
    held = _HANDLES.get(os.path.realpath(path))
    return held is not None and held.pid == os.getpid()


def close_process_handles(path: Path) -> None:
    """Close this process's environment for ``path``, so that a later fork inherits none."""
    key = os.path.realpath(path)
    held = _HANDLES.get(key)
    if held is not None and held.pid == os.getpid():
        del _HANDLES[key]
        held.env.close()


def _drop_inherited(handle: _Handle) -> None:
    """Let go of an environment a parent held open across a fork that skipped the at-fork hook
    below (only a raw fork from C does). Closing it lets py-lmdb open the files again here."""
    log.warning("pid %d: closing an LMDB environment inherited from pid %d", os.getpid(), handle.pid)
    handle.env.close()


def _close_before_fork() -> None:
    """Close this process's environments before it forks (DataLoader workers, multiprocessing).

    An environment must not cross fork(): a child that used or even closed it would clear the
    parent's reader slot, and a writer could then reuse pages the parent is reading. Handles
    reopen lazily on their next use, in the parent and in each child.
    """
    for key in [k for k, h in _HANDLES.items() if h.pid == os.getpid()]:
        _HANDLES.pop(key).env.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_before_fork)


# --- the cache --------------------------------------------------------------------------------

class LandmarkCache:
    """Landmark records of one extraction setting, in one LMDB directory.

    Picklable: the environment is opened lazily in each process that uses it and is never part of
    the pickled state. Several processes may extract and write at once; each put is one commit.
    """

    def __init__(self, path: Union[str, Path], settings: Optional[ExtractorSettings] = None, *,
                 readonly: bool = False, overwrite: bool = False, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.path = Path(path).expanduser()
        self.settings = settings if settings is not None else ExtractionSettings()
        self.readonly = readonly
        self.map_size = map_size
        # records per "release/split" that overwrite=True discarded when opening (other settings)
        self.discarded: Dict[str, int] = {}
        if readonly and overwrite:
            raise CacheError("readonly=True and overwrite=True contradict each other; pick one.")
        with self.session():
            self._check_identity(overwrite)

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "read-write"
        return f"LandmarkCache({str(self.path)!r}, {mode}, fingerprint={self.settings.fingerprint()})"

    # environment handling
    def _env(self) -> lmdb.Environment:
        return process_handle(self.path, self.readonly, self.map_size).env

    def _db(self, name: bytes):
        return process_handle(self.path, self.readonly, self.map_size).db(name)

    @contextlib.contextmanager
    def _reading(self, name: bytes, buffers: bool = False) -> Iterator[lmdb.Transaction]:
        """A read transaction on table ``name``; buffers=True gives zero-copy memoryviews."""
        db, env = self._db(name), self._env()
        txn = follow_growth(env, lambda: env.begin(db=db, buffers=buffers))
        try:
            yield txn
        finally:
            txn.abort()

    @contextlib.contextmanager
    def session(self) -> Iterator["LandmarkCache"]:
        """Use the cache and, unless this process already held it open, close it afterwards.

        For work in a main process that will later fork DataLoader workers: an LMDB
        environment open across fork() breaks the children.
        """
        held = has_process_handle(self.path)
        try:
            yield self
        finally:
            if not held:
                self.close()

    def _with_map_retry(self, write, size: int = 0, what: str = "a write"):
        """Run ``write(txn)`` in one commit, growing the map when full and following other growth.

        ``size``: bytes the write adds, checked against the disk's free space before each try.
        """
        env = self._env()
        for _ in range(32):
            self._check_still_there()
            ensure_space(self.path, 2 * size, what)  # copy-on-write: new pages before old ones are freed
            try:
                with env.begin(write=True) as txn:
                    return write(txn)
            except lmdb.MapFullError:
                new_size = env.info()["map_size"] * 2
                log.info("cache %s full; growing its map to %.1f GiB", self.path, new_size / 2**30)
                env.set_mapsize(new_size)
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # another process grew it: adopt its size
            except lmdb.Error as exc:
                ensure_space(self.path, 2 * size, what)  # a full disk shows as an I/O error: say so
                raise CacheError(f"cannot write to the cache {self.path}: {_lmdb_reason(exc)} "
                                 f"({what}).") from None
        raise CacheError(f"cache {self.path}: a write still did not fit after growing the map to "
                         f"{env.info()['map_size'] / 2**30:.1f} GiB.")

    def _check_still_there(self) -> None:
        """A cache deleted (or replaced) under a running job: stop, rather than write into the void."""
        handle = process_handle(self.path, self.readonly, self.map_size)
        if handle.inode is not None and _inode(self.path / "data.mdb") != handle.inode:
            raise CacheError(f"the cache {self.path} was deleted or replaced while this process was "
                             "writing to it; rerun to extract into the cache that is there now.")

    def _check_identity(self, overwrite: bool) -> None:
        if self.readonly:
            self._check_readonly_identity()
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the cache folder {self.path}: {exc.strerror}.") from None
        identity = dict(self.settings.identity(), fingerprint=self.settings.fingerprint())
        meta, *_ = [self._db(name) for name in _DBS[::-1]]  # create every table now, not in workers

        def check(txn):
            stored = txn.get(_META_KEY, db=meta)
            stored = None if stored is None else json.loads(bytes(stored))
            differs = stored is not None and stored.get("fingerprint") != identity["fingerprint"]
            if differs and overwrite:
                self.discarded = _count_by_split(txn, self._db(b"samples"))
                log.warning("cache %s: discarding %s, made with other extraction settings",
                            self.path, describe_discarded(self.discarded))
                for name in (b"samples", b"failures"):
                    txn.drop(self._db(name), delete=False)
            if stored is None or (differs and overwrite):
                txn.put(_META_KEY, json.dumps(identity, sort_keys=True).encode(), db=meta)
                return None
            return stored

        stored = self._with_map_retry(check)
        if stored is not None:
            _raise_if_differs(self.path, stored, identity)

    def _check_readonly_identity(self) -> None:
        if not (self.path / "data.mdb").is_file():
            raise CacheError(f"no cache at {self.path} (no data.mdb); build it first "
                             "(phoenix-warm-cache --root ROOT --cache PATH) or open it with readonly=False.")
        identity = dict(self.settings.identity(), fingerprint=self.settings.fingerprint())
        stored = self.metadata()
        if stored is None:
            raise CacheError(f"{self.path} holds no phoenix_data metadata; is it a phoenix_data cache?")
        _raise_if_differs(self.path, stored, identity)

    # reading
    def metadata(self) -> Optional[dict]:
        """The stored settings, versions and fingerprint, or None for a fresh environment."""
        try:
            self._db(b"meta")
        except CacheError:
            return None
        with self._reading(b"meta") as txn:
            stored = txn.get(_META_KEY)
        return None if stored is None else json.loads(bytes(stored))

    def get(self, key: str, float16: bool = False) -> Optional[LandmarkRecord]:
        """The record of ``key``, or None when it is not cached. Raises CacheRecordError if damaged.

        ``float16``: landmarks as stored (see ``decode_record``).
        """
        with self._reading(b"samples", buffers=True) as txn:
            data = txn.get(db_key(key))
            return None if data is None else decode_record(data, key, float16, self.settings.num_points)

    def num_frames(self, key: str) -> Optional[int]:
        """Frames of a cached record from its header alone, or None when it is not cached."""
        with self._reading(b"samples", buffers=True) as txn:
            data = txn.get(db_key(key))
            return None if data is None else decode_header(data, key, self.settings.num_points).frames

    def extracted_by(self, key: str) -> Optional[int]:
        """The pid that extracted the cached record of ``key`` (from its header), or None when not cached."""
        with self._reading(b"samples", buffers=True) as txn:
            data = txn.get(db_key(key))
            return None if data is None else decode_header(data, key, self.settings.num_points).pid

    def __contains__(self, key: str) -> bool:
        with self._reading(b"samples", buffers=True) as txn:
            return txn.get(db_key(key)) is not None

    def keys(self) -> Iterator[str]:
        """The stored keys: sample keys, and ``db_key``'s digest form of those past LMDB's key limit."""
        with self._reading(b"samples") as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                yield bytes(key).decode()

    def cached(self, keys: Iterable[str]) -> Set[str]:
        """Which of ``keys`` have a record."""
        with self._reading(b"samples", buffers=True) as txn:
            return {k for k in keys if txn.get(db_key(k)) is not None}

    def check_records(self, keys: Iterable[str], full: bool = False) -> Tuple[Set[str], Dict[str, str]]:
        """(keys whose record reads back, {key: why not} of damaged ones); missing keys are in neither.

        Checks each record's header (identity, points, frames, length); ``full`` decodes it too
        (checksum and values included).
        """
        good, damaged = set(), {}
        check = decode_record if full else decode_header
        with self._reading(b"samples", buffers=True) as txn:
            for key in keys:
                data = txn.get(db_key(key))
                if data is None:
                    continue
                try:
                    check(data, key, num_points=self.settings.num_points)
                    good.add(key)
                except CacheRecordError as exc:
                    damaged[key] = str(exc)
        return good, damaged

    def failures(self) -> Dict[str, dict]:
        """key -> {"reason", "time"} for samples whose extraction failed (and has not since succeeded)."""
        with self._reading(b"failures") as txn:
            found = [(bytes(k).decode(), json.loads(bytes(v))) for k, v in txn.cursor()]
        # the key inside the value: the LMDB key of a long sample key is only its digest
        return {value.get("key", key): value for key, value in found}

    def failure(self, key: str) -> Optional[dict]:
        """{"reason", "time"} of ``key``'s failed extraction, or None."""
        with self._reading(b"failures") as txn:
            value = txn.get(db_key(key))
        return None if value is None else json.loads(bytes(value))

    # writing
    def _require_writable(self) -> None:
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only; open it with readonly=False to write.")

    def put(self, key: str, record: LandmarkRecord) -> LandmarkRecord:
        """Store one record in its own commit (the checkpoint); clears a failure of ``key``.

        Returns the record as stored (float16-rounded), the same values every later read gives.
        """
        self._require_writable()
        data = encode_record(record, key)
        samples, failures, meta = self._db(b"samples"), self._db(b"failures"), self._db(b"meta")
        fingerprint = self.settings.fingerprint()

        def write(txn):
            # Checked in the same commit: another process may have overwritten the cache for
            # other settings since this one was opened.
            stored = json.loads(bytes(txn.get(_META_KEY, b"{}", db=meta)))
            if stored.get("fingerprint") != fingerprint:
                raise CacheError(f"cache {self.path} now holds records of other extraction settings "
                                 f"(fingerprint {stored.get('fingerprint')}, this process {fingerprint}): "
                                 "another process overwrote it. Use a cache path of your own.")
            txn.put(db_key(key), data, db=samples)
            txn.delete(db_key(key), db=failures)

        self._with_map_retry(write, len(data), f"the record of {key!r}")
        return decode_record(data, key)

    def discard(self, keys: Iterable[str]) -> int:
        """Delete the records of ``keys`` in one commit, so that they are extracted again; returns how
        many there were."""
        self._require_writable()
        encoded, samples = [db_key(k) for k in keys], self._db(b"samples")
        return self._with_map_retry(lambda txn: sum(txn.delete(k, db=samples) for k in encoded))

    def put_failure(self, key: str, reason: str) -> None:
        self._require_writable()
        value = json.dumps({"key": key, "reason": reason, "time": time.time()}).encode()
        failures = self._db(b"failures")
        self._with_map_retry(lambda txn: txn.put(db_key(key), value, db=failures), len(value),
                             f"the failure of {key!r}")

    def close(self) -> None:
        """Close this process's environment (before forking workers, for instance)."""
        close_process_handles(self.path)


def _count_by_split(txn: lmdb.Transaction, db) -> Dict[str, int]:
    """Records per ``release/split`` (the first two parts of their keys)."""
    counts: Dict[str, int] = {}
    for key in txn.cursor(db=db).iternext(keys=True, values=False):
        group = "/".join(bytes(key).decode(errors="replace").split("/")[:2])
        counts[group] = counts.get(group, 0) + 1
    return counts


def describe_discarded(counts: Dict[str, int]) -> str:
    """'12 records (phoenix-2014-multisigner/train 10, PHOENIX-2014-T/dev 2)'."""
    total = sum(counts.values())
    parts = ", ".join(f"{group} {n}" for group, n in sorted(counts.items()))
    return f"{total} record{'' if total == 1 else 's'}" + (f" ({parts})" if parts else "")


def _raise_if_differs(path: Path, stored: dict, identity: dict) -> None:
    if stored.get("fingerprint") == identity["fingerprint"]:
        return
    diffs = []
    for name in ("mediapipe", "schema"):
        if stored.get(name) != identity[name]:
            diffs.append(f"{name}: cache {stored.get(name)!r}, now {identity[name]!r}")
    old, new = stored.get("settings", {}), identity["settings"]
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            diffs.append(f"{name}: cache {old.get(name)!r}, now {new.get(name)!r}")
    raise CacheError(f"cache {path} was built with other extraction settings ({'; '.join(diffs)}). "
                     "Use another cache path for these settings, or pass overwrite=True "
                     "(--overwrite) to discard its records and extract again.")
