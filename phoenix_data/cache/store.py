"""The LMDB landmark cache: records, failures and metadata of one extraction setting (no pickle).

Environments are per process (``cache.lmdb_env``); records are encoded in ``phoenix_data.record``.

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
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

import lmdb
import numpy as np

from ..extract import ExtractorSpec
from ..record import (
    CacheError,
    CacheRecordError,
    LandmarkRecord,
    RecordHeader,
    check_into,
    decode_header,
    decode_record,
    encode_record,
)
from .identity import count_by_split, describe_discarded, raise_if_differs
from .lmdb_env import (
    TABLES,
    CacheSpaceError,
    close_process_handles,
    ensure_space,
    follow_growth,
    has_process_handle,
    inode,
    lmdb_reason,
    process_handle,
)

__all__ = ["CacheError", "CacheRecordError", "CacheSpaceError", "LandmarkCache", "db_key", "decode_header",
           "decode_record", "encode_record"]

log = logging.getLogger(__name__)

# Holds PHOENIX-2014 (~799k frames, ~2.6 GB) and 2014-T (~0.95M frames, ~3.1 GB) several times
# over. LMDB maps it lazily and the file grows only as records are written; a full map is
# still grown on demand (MapFullError), and other processes follow (MapResizedError).
DEFAULT_MAP_SIZE = 32 << 30
_META_KEY = b"identity"
# LMDB's key limit (py-lmdb's bundled LMDB: env.max_key_size() == 511). Longer sample keys are
# stored under a digest (``db_key``).
MAX_KEY_BYTES = 511


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


# --- the cache --------------------------------------------------------------------------------

class LandmarkCache:
    """Landmark records of one extraction setting, in one LMDB directory.

    Picklable: the environment is opened lazily in each process that uses it and is never part of
    the pickled state. Several processes may extract and write at once; each put is one commit.
    """

    def __init__(self, path: Union[str, Path], settings: ExtractorSpec, *,
                 readonly: bool = False, overwrite: bool = False, map_size: int = DEFAULT_MAP_SIZE) -> None:
        if settings is None:
            raise CacheError("LandmarkCache needs settings: the extractor spec its records are made with, e.g. "
                             "LandmarkCache(path, phoenix_data.HolisticSettings()).")
        self.path = Path(path).expanduser()
        self.settings = settings
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
        # no fingerprint: for the tasks backend it may build the model bundle (a download)
        return f"LandmarkCache({str(self.path)!r}, {mode}, settings={self.settings!r})"

    # environment handling
    def _env(self) -> lmdb.Environment:
        return process_handle(self.path, self.readonly, self.map_size).env

    def _db(self, name: bytes):
        return process_handle(self.path, self.readonly, self.map_size).db(name)

    @contextlib.contextmanager
    def _reading(self, name: bytes, buffers: bool = False) -> Iterator[lmdb.Transaction]:
        """A read transaction on table ``name``; buffers=True gives zero-copy memoryviews."""
        db, env = self._db(name), self._env()
        # py-lmdb's stub overloads begin() on buffers=Literal[False] / Literal[True] only, with no plain bool
        txn = follow_growth(env, lambda: env.begin(db=db, buffers=buffers))  # type: ignore[call-overload]
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
                raise CacheError(f"cannot write to the cache {self.path}: {lmdb_reason(exc)} "
                                 f"({what}).") from None
        raise CacheError(f"cache {self.path}: a write still did not fit after growing the map to "
                         f"{env.info()['map_size'] / 2**30:.1f} GiB.")

    def _check_still_there(self) -> None:
        """A cache deleted (or replaced) under a running job: stop, rather than write into the void."""
        handle = process_handle(self.path, self.readonly, self.map_size)
        if handle.inode is not None and inode(self.path / "data.mdb") != handle.inode:
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
        meta, *_ = [self._db(name) for name in TABLES[::-1]]  # create every table now, not in workers

        def check(txn):
            stored = txn.get(_META_KEY, db=meta)
            stored = None if stored is None else json.loads(bytes(stored))
            differs = stored is not None and stored.get("fingerprint") != identity["fingerprint"]
            if differs and overwrite:
                self.discarded = count_by_split(txn, self._db(b"samples"))
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
            raise_if_differs(self.path, stored, identity)

    def _check_readonly_identity(self) -> None:
        if not (self.path / "data.mdb").is_file():
            raise CacheError(f"no cache at {self.path} (no data.mdb); build it first "
                             "(phoenix-warm-cache --root ROOT --cache PATH) or open it with readonly=False.")
        identity = dict(self.settings.identity(), fingerprint=self.settings.fingerprint())
        stored = self.metadata()
        if stored is None:
            raise CacheError(f"{self.path} holds no phoenix_data metadata; is it a phoenix_data cache?")
        raise_if_differs(self.path, stored, identity)

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
        try:
            return self._get(key, float16)
        except CacheRecordError:
            if not process_handle(self.path, self.readonly, self.map_size).lock_free:
                raise
            # A reader without LMDB's lock can meet pages a writer was reusing: a fresh transaction
            # sees the committed record; a record still refused then is damaged.
            log.debug("cache %s: %r failed its checks in a lock-free read; reading it again", self.path, key)
            return self._get(key, float16)

    def _get(self, key: str, float16: bool) -> Optional[LandmarkRecord]:
        with self._reading(b"samples", buffers=True) as txn:
            data = txn.get(db_key(key))
            # decode_record copies the bytes out of the map before it checks them
            return None if data is None else decode_record(data, key, float16, self.settings.num_points)

    def read_batch(self, keys: List[str], fill: Callable[[List[int]], Callable[[int, RecordHeader, Dict], None]],
                   scratch: List[np.ndarray]) -> bool:
        """The records of ``keys`` in one read transaction, each copied into ``scratch`` and checked as
        ``get`` checks it, then handed to a filler: ``fill(frames of each record)`` returns
        ``put(i, header, arrays)``, called for each record in turn with views of ``scratch`` (valid
        during the call). False, having called nothing, when a key is not cached. Raises
        CacheRecordError naming the key of a damaged record (a lock-free reader: ``get`` reads again).
        """
        with self._reading(b"samples", buffers=True) as txn:
            found = [txn.get(db_key(key)) for key in keys]
            datas = [data for data in found if data is not None]
            if len(datas) < len(keys):
                return False
            headers = [decode_header(data, key, self.settings.num_points) for data, key in zip(datas, keys)]
            put = fill([header.frames for header in headers])
            for i, (data, key) in enumerate(zip(datas, keys)):
                header, arrays = check_into(data, key, scratch, self.settings.num_points)
                if header.frames != headers[i].frames:  # changed under a lock-free reader since the first look
                    raise CacheRecordError(f"cache record {key!r} changed while it was read")
                put(i, header, arrays)
            return True

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
        data = encode_record(record, key)
        self.put_encoded(key, data)
        return decode_record(data, key)

    def put_encoded(self, key: str, data: bytes) -> None:
        """Store one record already encoded by ``encode_record(record, key)`` (e.g. by a Ray actor on
        another node) in its own commit; clears a failure of ``key``. Checks the record's header
        (identity, points, frames, length) before writing, so a damaged transfer never lands."""
        self._require_writable()
        decode_header(data, key, self.settings.num_points)
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
