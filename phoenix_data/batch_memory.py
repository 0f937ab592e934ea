"""Memory for padded batches, reused once nothing holds it any more.

Writing a batch into new memory costs more than decoding it: every page is faulted in fresh, and in a
DataLoader worker the memory is shared memory, which costs twice that again to fault in and to free
(benchmarks/bench_loader.py; docs/performance.md). So each process keeps the memory of its last few
batches and writes a new batch into one of them, but only when nothing can read it any more:

- ``BatchMemory`` (the main process, ``num_workers=0``): a storage is reused when the pool's own
  reference is its only one (no tensor, view, row, ``.numpy()`` array, DLPack capsule or storage object
  of that batch alive in the process), and never once it has been moved to shared memory (sent).
- ``WorkerBatchPool`` (a DataLoader worker): the batch goes to the main process, which maps the same
  memory. ``collate_ctc`` returns a ``SentBatch``; pickled, it sends its padded tensors as views of one
  storage, with the pool's hand-back flags. In the receiving process the batch is a plain dict, and
  ``ReturnedBatches`` watches its storage: once that storage is gone there (every tensor, view and
  array of it dropped), the flag of its slot is set back to free, and only then may the worker write
  into that memory again. Memory shared any other way (sent again from the main process, or sent by
  the worker outside a ``SentBatch``) is never handed back, so never reused.

Whatever cannot be decided (an unknown torch internal, a record torch dropped) keeps the memory out of
reuse: the price of doubt is a fresh allocation, never a batch written over one still read.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.multiprocessing import reductions as _reductions

STEP = 1 << 20  # sizes rounded up to this, plus an eighth, so batches of similar length share memory
ALIGN = 64  # byte alignment of each tensor in a batch's storage


def rounded(nbytes: int) -> int:
    return -(-(nbytes + nbytes // 8) // STEP) * STEP


def fits(storage: torch.UntypedStorage, nbytes: int) -> bool:
    return nbytes <= storage.nbytes() <= 4 * nbytes + STEP


class _Ownership:
    """Whether this process holds a storage anywhere but in a pool: its C++ use count (tensors, views,
    arrays and capsules hold the storage) and the Python references to the storage object
    (``tensor.untyped_storage()`` returns that very object)."""

    def __init__(self) -> None:
        self.use_count = getattr(torch._C, "_storage_Use_Count", None)  # None: reuse nothing
        self._own_refs = self._python_refs([torch.UntypedStorage(0)], 0)  # this code's own, measured

    @staticmethod
    def _python_refs(kept: List[torch.UntypedStorage], index: int) -> int:
        storage = kept[index]
        return sys.getrefcount(storage)

    def only_pool_holds(self, kept: List[torch.UntypedStorage], index: int, pool_refs: int = 0) -> bool:
        """``kept[index]`` is held by nothing but ``kept`` and ``pool_refs`` more references of the pool's."""
        if self.use_count is None or self._python_refs(kept, index) != self._own_refs + pool_refs:
            return False  # (counted before this function holds a reference of its own)
        return self.use_count(kept[index]._cdata) == 1


class BatchMemory:
    """The main process's pool (``num_workers=0``): at most ``SLOTS`` storages of earlier batches."""

    SLOTS = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._kept: List[torch.UntypedStorage] = []
        self._ownership = _Ownership()

    def storage(self, nbytes: int) -> torch.UntypedStorage:
        """A storage of at least ``nbytes`` nothing else holds. The caller must make a tensor hold it before
        it lets go of the lock (``locked()``)."""
        if self._pid != os.getpid():  # a forked child: the storages it inherited are not its batches'
            self._pid, self._kept = os.getpid(), []
        self._kept = [s for s in self._kept if not s.is_shared()]  # sent: another process may read it
        free = sorted((self._kept[i] for i in range(len(self._kept))
                       if self._ownership.only_pool_holds(self._kept, i)), key=lambda s: s.nbytes())
        for storage in free:
            if fits(storage, nbytes):
                return storage
        storage = torch.UntypedStorage(rounded(nbytes))
        if self._ownership.use_count is not None:
            if len(self._kept) >= self.SLOTS and free:  # make room: drop the smallest unused one
                self._kept = [s for s in self._kept if s is not free[0]]
            if len(self._kept) < self.SLOTS:
                self._kept.append(storage)
        return storage

    def locked(self) -> threading.Lock:
        return self._lock


def _cache_key(storage: torch.UntypedStorage) -> Any:
    """The key of a shared storage in torch's record of shared storages (``shared_cache``): its file
    descriptor's identity, or its file name (the ``file_system`` strategy's, macOS's); None if unknown.
    Asked of the storage as it is, whatever the current strategy (asking the other kind would copy it)."""
    try:
        if not storage.is_shared():
            return None
        try:
            return _reductions.fd_id(storage._get_shared_fd())  # type: ignore[attr-defined]
        except RuntimeError:  # not a file descriptor's: a file name's, which this returns without a copy
            return storage._share_filename_cpu_()[1]
    except Exception:  # noqa: BLE001 - unknown: the storage is treated as shared elsewhere
        return None


def _cache_entry(key: Any) -> Any:
    """torch's entry for ``key``: a new one each time torch sends (or receives) that storage."""
    return None if key is None else _reductions.shared_cache.get(key)


class _Slot:
    __slots__ = ("storage", "ticket", "sent", "key", "entry")

    def __init__(self, storage: torch.UntypedStorage) -> None:
        self.storage = storage
        self.ticket = 0
        self.sent = False
        self.key = _cache_key(storage)
        self.entry: Any = None


class WorkerBatchPool:
    """A DataLoader worker's shared-memory storages, reused once the receiving process has let go of them.

    ``flags[i]``, in shared memory, holds the ticket of the batch slot ``i``'s memory went out with, or 0
    once it may be written again. The worker writes a ticket when it takes a slot; the receiving process
    writes 0 (``ReturnedBatches``) after its last reference to that memory is gone, and only if the
    ticket is still the one it received. A slot is taken again only when (a) nothing in the worker
    holds its storage, (b) torch has not sent the storage since this pool last recorded it (it would
    have been sent outside a ``SentBatch``: never handed back), and (c) its flag is 0, or its batch was
    never sent at all.
    """

    SLOTS = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: Optional[int] = None
        self._ownership = _Ownership()

    def _start(self) -> None:
        self._pid = os.getpid()
        self.flags = torch.zeros(self.SLOTS, dtype=torch.int64).share_memory_()
        self._flag_values = self.flags.numpy()
        self._slots: List[Optional[_Slot]] = [None] * self.SLOTS
        self._tickets = 0

    def locked(self) -> threading.Lock:
        return self._lock

    def storage(self, nbytes: int) -> torch.UntypedStorage:
        """A shared storage of at least ``nbytes`` nothing can read any more, taken for one batch. Under the
        lock (``locked()``) until a tensor holds it."""
        if self._pid != os.getpid():
            self._start()
        reusable = [i for i, slot in enumerate(self._slots) if slot is not None and self._reusable(i)]
        fitting = sorted((i for i in reusable if fits(self._slot(i).storage, nbytes)),
                         key=lambda i: self._slot(i).storage.nbytes())
        if fitting:
            index = fitting[0]
        else:
            storage = torch.UntypedStorage._new_shared(rounded(nbytes))
            empty = [i for i, slot in enumerate(self._slots) if slot is None and self._flag_values[i] == 0]
            if empty:
                index = empty[0]
            elif reusable:  # make room: drop the smallest reusable one
                index = min(reusable, key=lambda i: self._slot(i).storage.nbytes())
            else:
                return storage  # every slot out: this batch's memory is not kept
            self._slots[index] = _Slot(storage)
        slot = self._slot(index)
        self._tickets += 1
        slot.ticket, slot.sent, slot.entry = self._tickets, False, _cache_entry(slot.key)
        self._flag_values[index] = slot.ticket
        return slot.storage

    def _slot(self, index: int) -> _Slot:
        slot = self._slots[index]
        assert slot is not None
        return slot

    def _reusable(self, index: int) -> bool:
        slot = self._slot(index)
        if slot.key is None or _cache_entry(slot.key) is not slot.entry:
            return False  # torch sent it since: someone may hold it that never hands it back
        if not (slot.sent is False or self._flag_values[index] == 0):
            return False
        kept = [slot.storage]
        del slot
        return self._ownership.only_pool_holds(kept, 0, pool_refs=1)  # and the slot's

    def send(self, storage: torch.UntypedStorage) -> Optional[Tuple[Any, torch.Tensor, int, int]]:
        """For pickling a ``SentBatch`` whose tensors view ``storage``: (the storage reduced by torch, the
        flags, the slot, its ticket), or None when the storage is not a slot's batch that was never sent
        (then it is sent as torch sends any tensor, and its slot is retired: never reused)."""
        with self._lock:
            if self._pid != os.getpid():
                return None
            for index, slot in enumerate(self._slots):
                if slot is not None and slot.storage.data_ptr() == storage.data_ptr():
                    if slot.sent:  # sent twice: the first copy's return must not free it for the second
                        self._slots[index] = None
                        return None
                    reduced = _reductions.reduce_storage(storage)
                    slot.sent, slot.entry = True, _cache_entry(slot.key)
                    return reduced, self.flags, index, slot.ticket
            return None


class _Returned:
    __slots__ = ("weak", "flags", "slot", "ticket", "key", "entry")

    def __init__(self, storage: torch.UntypedStorage, flags: torch.Tensor, slot: int, ticket: int) -> None:
        self.weak = _reductions.StorageWeakRef(storage)
        self.flags, self.slot, self.ticket = flags, slot, ticket
        self.key = _cache_key(storage)
        self.entry = _cache_entry(self.key)  # torch's, from receiving it: a new one if it is sent on


class ReturnedBatches:
    """In a process that received ``SentBatch`` es: sets a slot's flag free once its storage is gone here.

    Checked each time a batch arrives (the batch the caller still uses, and the one before it, which a
    ``for`` loop drops only after the next arrives, are freed on later arrivals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._watched: List[_Returned] = []

    def watch(self, storage: torch.UntypedStorage, flags: torch.Tensor, slot: int, ticket: int) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._watched = os.getpid(), []
            self._check()
            returned = _Returned(storage, flags, slot, ticket)
            if returned.entry is not None:
                self._watched.append(returned)

    def _check(self) -> None:
        still = []
        for returned in self._watched:
            if not returned.weak.expired():
                still.append(returned)
            elif _cache_entry(returned.key) is returned.entry:  # not sent on from here
                # the last reference is gone: its memory is unmapped here (a system call) before this
                # store; the worker reads the flag before it writes
                values = returned.flags.numpy()
                if values[returned.slot] == returned.ticket:
                    values[returned.slot] = 0
        self._watched = still

    def check(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._check()


RETURNED = ReturnedBatches()


class _Reduced:
    """Pickles as the given reduction (torch's, of a storage)."""

    def __init__(self, reduced: Tuple[Any, Tuple]) -> None:
        self.reduced = reduced

    def __reduce__(self) -> Tuple[Any, Tuple]:
        return self.reduced


_View = Tuple[str, torch.dtype, int, Tuple[int, ...], Tuple[int, ...]]  # ("view", dtype, offset, shape, stride)
SMALL = 1 << 16  # elements: tensors up to this size are sent as bytes, not as shared memory of their own


class SentBatch(dict):
    """A batch made in a DataLoader worker (``collate_ctc``): a dict, which pickles its padded tensors as
    views of one storage from the worker's pool, with what the receiver needs to hand that memory back.

    Unpickled it is a plain dict. Pickled a second time, or when its tensors are not one pool batch's,
    it pickles as a plain dict of tensors (torch's own sharing), and its memory is never reused."""

    def __reduce__(self) -> Tuple[Any, Tuple]:
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage() for t in self.values()
                    if isinstance(t, torch.Tensor) and t.untyped_storage().is_shared()}
        sent = WORKER_POOL.send(next(iter(storages.values()))) if len(storages) == 1 else None
        if sent is None:
            return dict, (dict(self),)
        reduced, flags, slot, ticket = sent
        pointer = next(iter(storages))
        fields: Dict[str, Any] = {}
        for key, value in self.items():
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() == pointer:
                fields[key] = ("view", value.dtype, value.storage_offset(), tuple(value.shape), value.stride())
            elif (isinstance(value, torch.Tensor) and value.device.type == "cpu" and not value.requires_grad
                  and value.numel() <= SMALL and value.dtype in _NUMPY_DTYPES):
                fields[key] = ("array", value.numpy().copy())
            else:
                fields[key] = ("value", value)
        return _rebuild_sent_batch, (_Reduced(reduced), flags, slot, ticket, fields)


_NUMPY_DTYPES = (torch.int64, torch.int32, torch.bool, torch.float32, torch.float16, torch.float64, torch.uint8)


def _rebuild_sent_batch(storage: torch.UntypedStorage, flags: torch.Tensor, slot: int, ticket: int,
                        fields: Dict[str, Tuple]) -> Dict[str, Any]:
    batch: Dict[str, Any] = {}
    for key, field in fields.items():
        if field[0] == "view":
            _, dtype, offset, shape, stride = field
            batch[key] = torch.empty((0,), dtype=dtype).set_(storage, offset, shape, stride)
        elif field[0] == "array":
            batch[key] = torch.from_numpy(field[1])
        else:
            batch[key] = field[1]
    RETURNED.watch(storage, flags, slot, ticket)
    return batch


WORKER_POOL = WorkerBatchPool()
MAIN_MEMORY = BatchMemory()


def batch_tensors(specs: Sequence[Tuple[Tuple[int, ...], torch.dtype]], in_worker: bool) -> List[torch.Tensor]:
    """Uninitialised contiguous tensors of the given (shape, dtype)s on one storage (each at a 64-byte
    boundary): shared memory from the worker's pool in a DataLoader worker, else the main process's."""
    offsets, nbytes = [], 0
    for shape, dtype in specs:
        offsets.append(nbytes)
        size = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        nbytes += -(-size // ALIGN) * ALIGN
    pool = WORKER_POOL if in_worker else MAIN_MEMORY
    with pool.locked():
        storage = pool.storage(max(nbytes, 1))
        tensors = []
        for (shape, dtype), offset in zip(specs, offsets):
            element = torch.empty((), dtype=dtype).element_size()
            strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
            tensors.append(torch.empty((0,), dtype=dtype).set_(storage, offset // element, shape, strides))
        return tensors
