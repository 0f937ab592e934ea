"""Memory for padded batches, reused once nothing holds it any more.

Writing a batch into new memory costs more than decoding it: every page is faulted in fresh, and in a
DataLoader worker the memory is shared memory, which costs twice that again to fault in and to free
(benchmarks/bench_loader.py; docs/performance.md). So each process keeps the memory of its last few
batches and writes a new batch into one of them, but only when nothing can read it any more:

- ``BatchMemory`` (the main process, ``num_workers=0``): a storage is reused when the pool's own
  reference is its only one (no tensor, view, row, ``.numpy()`` array, DLPack capsule or storage object
  of that batch alive in the process), and never once it has been moved to shared memory (sent).
- ``WorkerBatchPool`` (a DataLoader worker): the batch goes to the main process, which maps the same
  memory (``batch_sending``); a slot is written again only once the receiver has handed it back.

Each tensor of a batch sits on a storage of its own over its region of the block (``Block``), as users
expect of a batch's tensors: ``torch.save`` writes that tensor's bytes, and sending one on (a
multiprocessing queue, ``share_memory_``) moves a copy of its region to new shared memory, never sharing
the block.

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
RETIRED = -1  # a slot's flag: the receiver can never hand its memory back


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


def named_shared(nbytes: int) -> torch.UntypedStorage:
    """New shared memory that a receiving process maps by its name, whatever torch's sharing strategy
    (``file_system``'s kind, as on macOS): sent with ``reduce_shared``, a batch reaches the main process
    without a file descriptor. With file descriptors (Linux's default strategy) every batch costs a
    connection to the worker's resource-sharer thread, which waits for the worker's GIL while it decodes
    the next batch (``benchmarks/bench_loader.py``: ~1.1x the samples/s with two workers). torch's
    manager process (``torch_shm_manager``) removes what a killed job leaves in ``/dev/shm``."""
    make = getattr(torch.UntypedStorage, "_new_using_filename_cpu", None)
    if make is not None:
        _no_fd_for_the_manager()
        try:
            return make(nbytes)
        except RuntimeError:  # no torch_shm_manager here: as the strategy shares
            pass
    return torch.UntypedStorage._new_shared(nbytes)


def _no_fd_for_the_manager() -> None:
    """Once per process, before torch starts its shared-memory manager (``torch_shm_manager``, a child of
    the first process that makes named shared memory): no file descriptor of this process is inherited by
    it. A child started by ``spawn`` or ``forkserver`` holds inheritable descriptors: the write end of the
    pipe its parent waits on for its exit among them. The manager, which lives as long as anything maps its
    memory, would keep that pipe open: the parent's ``join`` of a DataLoader worker then waited out its 5 s
    timeout for every worker at the end of every epoch (measured: an epoch of 6 batches with 2 spawned
    workers took 13.5 s instead of 3.5 s; macOS, whose default strategy makes named memory, had it too)."""
    global _FDS_CLOSED_ON_EXEC
    if _FDS_CLOSED_ON_EXEC == os.getpid():
        return
    _FDS_CLOSED_ON_EXEC = os.getpid()
    try:
        names = os.listdir("/dev/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # (the listing's own descriptor, closed by now)
                pass


_FDS_CLOSED_ON_EXEC: Optional[int] = None  # the pid that did it


def reduce_shared(storage: torch.UntypedStorage) -> Tuple[Any, Tuple]:
    """torch's reduction of a shared storage for a multiprocessing pickler: by its name when it is named
    shared memory (as torch's ``file_system`` strategy sends it, whatever the strategy set), else as the
    strategy sends it."""
    key = _cache_key(storage)
    if not isinstance(key, bytes):
        return _reductions.reduce_storage(storage)
    metadata = storage._share_filename_cpu_()  # named already: no copy
    storage._shared_incref()  # for the message in flight; the receiver's rebuild takes it back
    _reductions.shared_cache[key] = _reductions.StorageWeakRef(storage)
    return _reductions.rebuild_storage_filename, (type(storage),) + tuple(metadata)


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

    ``flags[i]``, in shared memory, holds the ticket of the batch slot ``i``'s memory went out with, 0
    once it may be written again, or ``RETIRED`` once the receiver knows it never can be (sent on from
    there, inherited by a forked child): the slot then lets go of that memory and takes new memory.
    The worker writes a ticket when it takes a slot; the receiving process writes 0 or ``RETIRED``
    (``ReturnedBatches``) after its last reference to that memory is gone, and only if the ticket is
    still the one it received. A slot is taken again only when (a) nothing in the worker holds its
    storage, (b) torch has not sent the storage since this pool last recorded it (it would have been sent
    outside a ``SentBatch``: never handed back), and (c) its flag is 0, or its batch was never sent.
    """

    SLOTS = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: Optional[int] = None
        self._ownership = _Ownership()

    def _start(self) -> None:
        self._pid = os.getpid()
        flags = named_shared(self.SLOTS * 8)
        self.flags = torch.empty((0,), dtype=torch.int64).set_(flags, 0, (self.SLOTS,), (1,)).zero_()
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
        for i in np.flatnonzero(self._flag_values == RETIRED):
            self._slots[i], self._flag_values[i] = None, 0  # its memory lives on where it is read, unwritten
        reusable = [i for i, slot in enumerate(self._slots) if slot is not None and self._reusable(i)]
        fitting = sorted((i for i in reusable if fits(self._slot(i).storage, nbytes)),
                         key=lambda i: self._slot(i).storage.nbytes())
        if fitting:
            index = fitting[0]
        else:
            storage = named_shared(rounded(nbytes))
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
        if slot.key is None or not (slot.sent is False or self._flag_values[index] == 0):
            return False
        kept = [slot.storage]
        if not self._ownership.only_pool_holds(kept, 0, pool_refs=1):  # (and the slot's)
            return False
        # Nothing here holds it, so nothing here can send it from now on; asked in this order, a send
        # by another thread between the two questions is seen by the second.
        return _cache_entry(slot.key) is slot.entry  # else torch sent it: its receiver never hands it back

    def send(self, pointers: Dict[str, int]) -> Optional[Tuple[Any, Any, int, int, int, List[str]]]:
        """For pickling a ``SentBatch`` whose tensors' storages start at ``pointers`` (by key): (the slot's
        storage and the flags' storage reduced (``reduce_shared``), the slot, its ticket, its address, the
        keys of the tensors in it), or None when none is in a slot's memory, or that memory was sent before
        (then the tensors are sent as torch sends any tensor, a copy, and the slot is retired)."""
        with self._lock:
            if self._pid != os.getpid():
                return None
            found = []
            for index, slot in enumerate(self._slots):
                start = slot.storage.data_ptr() if slot is not None else 0
                inside = [key for key, p in pointers.items()
                          if slot is not None and start <= p < start + slot.storage.nbytes()]
                if inside:
                    found.append((index, start, inside))
            if not found:
                return None
            index, start, inside = found[0]
            slot = self._slot(index)
            if len(found) > 1 or slot.sent or _cache_entry(slot.key) is not slot.entry:
                # two batches' memory in one message, a batch sent twice (the first copy's return must not
                # free it for the second), or memory torch sent before (its receiver never hands it back)
                for index, _, _ in found:
                    self._slots[index] = None
                return None
            reduced = reduce_shared(slot.storage)
            slot.sent, slot.entry = True, _cache_entry(slot.key)
            return reduced, reduce_shared(self.flags.untyped_storage()), index, slot.ticket, start, inside


class Block:
    """Storages of their own over regions of one storage, each holding the whole of it alive (through a
    NumPy view of it). A tensor on its own storage is what users expect of a batch's tensors:
    ``torch.save`` writes that tensor's bytes only (it refuses views of one storage as different
    dtypes), and sending it on (``share_memory_``, a multiprocessing queue) moves a copy of that region
    to new shared memory, leaving the batch's memory unshared."""

    def __init__(self, storage: torch.UntypedStorage) -> None:
        self.array = torch.empty((0,), dtype=torch.uint8).set_(storage).numpy()

    def region(self, start: int, nbytes: int) -> torch.UntypedStorage:
        if nbytes == 0:
            return torch.UntypedStorage(0)
        return torch.frombuffer(self.array, dtype=torch.uint8, count=nbytes, offset=start).untyped_storage()


WORKER_POOL = WorkerBatchPool()
MAIN_MEMORY = BatchMemory()


def batch_tensors(specs: Sequence[Tuple[Tuple[int, ...], torch.dtype]], in_worker: bool) -> List[torch.Tensor]:
    """Uninitialised contiguous tensors of the given (shape, dtype)s, each on a storage of its own over a
    region of one memory block (each at a 64-byte boundary): shared memory from the worker's pool in a
    DataLoader worker, else the main process's."""
    regions, nbytes = [], 0
    for shape, dtype in specs:
        size = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        regions.append((nbytes, size))
        nbytes += -(-size // ALIGN) * ALIGN
    pool = WORKER_POOL if in_worker else MAIN_MEMORY
    with pool.locked():
        memory = Block(pool.storage(max(nbytes, 1)))
        tensors = []
        for (shape, dtype), (start, size) in zip(specs, regions):
            strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
            tensors.append(torch.empty((0,), dtype=dtype).set_(memory.region(start, size), 0, shape, strides))
        return tensors
