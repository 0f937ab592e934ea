"""Sending a batch from a DataLoader worker to the main process, and handing its memory back.

``collate_ctc`` returns a ``SentBatch`` in a worker. Sent by multiprocessing (``ForkingPickler``, as the
worker's result queue sends), its padded tensors go as regions of one storage of the worker's pool
(``batch_memory.WorkerBatchPool``), with the slot's hand-back flag and ticket. In the receiving process
the batch is a plain dict, and ``ReturnedBatches`` watches that storage: once it is gone there (every
tensor, view and array of it dropped), the slot's flag is set free, and only then may the worker write
into that memory again. A child forked meanwhile inherits the memory, and nobody knows when it lets go:
the slots of every batch mapped at a fork are retired instead (the worker takes new memory for them).
"""
from __future__ import annotations

import os
import threading
from multiprocessing.reduction import ForkingPickler
from typing import Any, Dict, List, Tuple

import torch
from torch.multiprocessing import reductions as _reductions

from . import batch_memory
from .batch_memory import RETIRED, Block, _cache_entry, _cache_key


class _Returned:
    __slots__ = ("weak", "flags", "slot", "ticket", "key", "entry", "start", "end")

    def __init__(self, storage: torch.UntypedStorage, flags: torch.Tensor, slot: int, ticket: int) -> None:
        self.weak = _reductions.StorageWeakRef(storage)
        self.start, self.end = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
        self.flags, self.slot, self.ticket = flags, slot, ticket
        self.key = _cache_key(storage)
        self.entry = _cache_entry(self.key)  # torch's, from receiving it: a new one if it is sent on

    def answer(self, flag: int) -> None:
        """Free (0) or retired (``RETIRED``), if the slot still holds this batch's ticket."""
        values = self.flags.numpy()
        if values[self.slot] == self.ticket:
            values[self.slot] = flag


class ReturnedBatches:
    """In a process that received ``SentBatch`` es: sets a slot's flag free once its storage is gone here.

    Checked each time a batch arrives (the batch the caller still uses, and the one before it, which a
    ``for`` loop drops only after the next arrives, are freed on later arrivals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._watched: List[_Returned] = []
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._forget)

    def _forget(self) -> None:
        """Before this process forks: the child inherits every batch mapped here and nobody knows when it
        lets go, so none of them is handed back: their slots are retired."""
        with self._lock:
            if self._pid == os.getpid():
                self._check()
                for returned in self._watched:
                    returned.answer(RETIRED)
            self._watched = []

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
                returned.answer(0)
            else:  # sent on from here (or torch dropped its record): another process may read it
                returned.answer(RETIRED)
        self._watched = still

    def key_of(self, tensor: torch.Tensor) -> Any:
        """Which shared memory a tensor of a received batch is in: torch's key of it (the same key when a
        worker wrote into that memory again), or None."""
        pointer = tensor.untyped_storage().data_ptr()
        with self._lock:
            return next((r.key for r in self._watched if not r.weak.expired() and r.start <= pointer < r.end), None)

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


SMALL = 1 << 16  # elements: tensors up to this size are sent as bytes, not as shared memory of their own


class SentBatch(dict):
    """A batch made in a DataLoader worker (``collate_ctc``): a dict. Sent to another process by
    multiprocessing (``ForkingPickler``, as a DataLoader worker sends), its padded tensors go as views of
    one storage from the worker's pool, with what the receiver needs to hand that memory back.

    Unpickled it is a plain dict. Sent a second time, or when its tensors are not one pool batch's, it
    goes as a plain dict of tensors (torch's own sharing), and its memory is never reused. ``copy``,
    ``deepcopy``, ``pickle`` and ``torch.save`` treat it as any dict subclass."""


def _reduce_sent_batch(batch: SentBatch) -> Tuple[Any, Tuple]:
    sent = batch_memory.WORKER_POOL.send({key: value.untyped_storage().data_ptr() for key, value in batch.items()
                             if isinstance(value, torch.Tensor) and value.device.type == "cpu"})
    if sent is None:
        return dict, (dict(batch),)
    reduced, flags, slot, ticket, start, inside = sent
    fields: Dict[str, Any] = {}
    for key, value in batch.items():
        if key in inside:
            storage = value.untyped_storage()
            fields[key] = ("region", storage.data_ptr() - start, storage.nbytes(), value.dtype,
                           value.storage_offset(), tuple(value.shape), value.stride())
        elif (type(value) is torch.Tensor and value.device.type == "cpu" and not value.requires_grad
              and value.numel() <= SMALL and value.dtype in _NUMPY_DTYPES):
            fields[key] = ("array", value.numpy().copy())
        else:
            fields[key] = ("value", value)
    return _rebuild_sent_batch, (_Reduced(reduced), _Reduced(flags), slot, ticket, fields)


ForkingPickler.register(SentBatch, _reduce_sent_batch)  # multiprocessing's pickler only


_NUMPY_DTYPES = (torch.int64, torch.int32, torch.bool, torch.float32, torch.float16, torch.float64, torch.uint8)


def _rebuild_sent_batch(storage: torch.UntypedStorage, flags_storage: torch.UntypedStorage, slot: int, ticket: int,
                        fields: Dict[str, Tuple]) -> Dict[str, Any]:
    flags = torch.empty((0,), dtype=torch.int64).set_(flags_storage)
    memory = Block(storage)
    batch: Dict[str, Any] = {}
    for key, field in fields.items():
        if field[0] == "region":
            _, start, nbytes, dtype, offset, shape, stride = field
            batch[key] = torch.empty((0,), dtype=dtype).set_(memory.region(start, nbytes), offset, shape, stride)
        elif field[0] == "array":
            batch[key] = torch.from_numpy(field[1])
        else:
            batch[key] = field[1]
    del memory
    RETURNED.watch(storage, flags, slot, ticket)
    return batch
