"""PhoenixLandmarks: a PHOENIX split as a Dataset of MediaPipe Holistic landmarks, cached in LMDB.

A cache hit reads no frame and runs no MediaPipe. A miss reads the sample's frames, extracts them,
writes the record and returns it: in a DataLoader worker with that worker's own Holistic (built on
its first miss), in any other process (a notebook's ``ds[0]``) through one isolated helper process,
so that the process never runs MediaPipe itself and may fork DataLoader workers later.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .batching import padded_batch
from .cache import LandmarkCache
from .cache.fill import fetch_or_extract
from .corpus import Sample, check_split, find_release, read_release_split
from .extract import ExtractorSpec
from .extract.mediapipe.settings import HolisticSettings
from .frames import FramesError, list_frames
from .record import (
    PARTS,
    CacheRecordError,
    LandmarkRecord,
    RecordHeader,
    fill_confidence,
    fill_found,
    part_slices,
    select_columns,
)
from .transforms import Compose, SelectPoints
from .transforms.base import apply_steps
from .transforms.batch import Batch, batchable
from .transforms.batch import prepare as prepare_steps
from .transforms.batch import run as run_steps
from .vocab import Vocabulary

log = logging.getLogger(__name__)


class SampleNotCached(LookupError):
    """A sample that is not in a cache that may not extract."""


class PhoenixLandmarks(Dataset):
    """One split of a PHOENIX release as landmark sequences.

    Args:
        root: the release folder, or a parent of it up to the archive root.
        split: "train", "dev" or "test".
        cache: the LMDB cache directory (created if missing, unless ``readonly``).
        release: picks the release where ``root`` holds several ("multisigner", "si5", "2014-T", ...).
        transform: called on each item dict (one that starts with ``SelectPoints`` gets a cached sample
            decoded at those points only: the same item as selecting from all of them).
        settings: MediaPipe settings; their fingerprint must match the cache's.
        vocab: gloss vocabulary; by default built from the release's train split.
        readonly: train from a finished cache (also on a read-only disk); a miss raises.
        overwrite: discard a cache built with other settings instead of raising.
        dtype: of ``landmarks`` in items: ``torch.float32``, or ``torch.float16`` (what the cache stores:
            half the bytes per batch and no conversion, for mixed-precision training; transforms still
            compute in float32 and their result is converted).

    ``ds[i]`` is a dict: ``landmarks`` (Tensor[T, 543, 3] float32), ``confidence`` (Tensor[T, 543]),
    ``valid`` (bool Tensor[T, 543]: the point's part was found in that frame),
    ``glosses`` (LongTensor[L] ids), ``gloss_text``, ``id``, ``signer``, ``num_frames``,
    ``translation`` (2014-T; None elsewhere).
    """

    def __init__(self, root: Union[str, Path], split: str = "train", cache: Union[str, Path, None] = None,
                 release: Optional[str] = None, transform: Optional[Callable[[Dict], Dict]] = None,
                 settings: Optional[ExtractorSpec] = None, vocab: Optional[Vocabulary] = None,
                 readonly: bool = False, overwrite: bool = False, dtype: torch.dtype = torch.float32) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype}; expected one of {', '.join(map(str, DTYPES))}.")
        if cache is None:
            raise ValueError("PhoenixLandmarks needs cache=PATH: the LMDB directory that holds (or will "
                             "hold) the extracted landmarks.")
        self.release = find_release(root, release)
        self.split = check_split(split)
        self.samples: List[Sample] = read_release_split(self.release, split)
        self.vocab = vocab if vocab is not None else Vocabulary.from_samples(
            read_release_split(self.release, "train"))
        self._encoded: Tuple[Optional[Vocabulary], Dict[str, np.ndarray]] = (None, {})  # _gloss_ids
        self.transform = transform
        self.dtype = dtype
        self.settings = settings if settings is not None else HolisticSettings()
        if not readonly:
            self.settings.check_ready()  # now, not as a failure of every sample in the workers
        self.cache = LandmarkCache(cache, self.settings, readonly=readonly, overwrite=overwrite)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict:
        sample = self.samples[index]
        with _one_thread():
            if self.transform is not None:
                return self._transformed([sample])[0]
            return self._to_item(sample, self._record(sample), self.dtype)

    def _transformed(self, samples: List[Sample]) -> List[Dict]:
        """Items through the transform. When it starts with ``SelectPoints`` (alone or first in a
        ``Compose``) and every sample is cached, only the selected points are decoded (one transaction,
        no item of all 543 points made): the same item as selecting from the full one."""
        assert self.transform is not None
        steps: List[Callable[[Any], Any]] = list(
            self.transform.transforms if isinstance(self.transform, Compose) else [self.transform])
        select = steps[0] if steps and isinstance(steps[0], SelectPoints) else None
        after = steps[1:] if select is not None else steps
        if batchable(after):
            try:
                done = self._read_batch_steps(samples, select, after)
            except CacheRecordError:
                done = None  # read again record by record: a lock-free reader's retry, or the error
            if done is not None:
                return done
        items = None
        if select is not None:
            try:
                items = self._read_selected(samples, select)
            except CacheRecordError:
                items = None  # read again record by record: a lock-free reader's retry, or the error
        if items is None:
            items, steps = [self._to_item(s, self._record(s), torch.float32) for s in samples], [self.transform]
        else:
            steps = steps[1:]
        for i, item in enumerate(items):
            item = apply_steps(steps, item)
            if item["landmarks"].dtype != self.dtype:
                item["landmarks"] = item["landmarks"].to(self.dtype)
            items[i] = item
        return items

    def _read_batch_steps(self, samples: List[Sample], select: Optional[SelectPoints],
                          steps: List[Callable[[Any], Any]]) -> Optional[List[Dict]]:
        """Cached samples through ``steps`` run over the whole batch at once (``transforms.batch``; only
        ``select``'s points decoded), the result written into one padded batch (in shared memory in a
        worker) whose rows are the items' tensors, as ``_read_batch`` gives them; None when one is not cached."""
        num_points = self.settings.num_points
        wanted = select.ids(num_points) if select is not None else None
        columns = wanted.numpy() if wanted is not None else np.arange(num_points)
        empty = (torch.empty(0, len(columns), 3), torch.empty(0, len(columns)),  # the items' tensors until
                 torch.empty(0, len(columns), dtype=torch.bool))  # they have their own (steps read their points)
        items: List[Any] = [self._item(sample, 0, *empty) for sample in samples]
        for item in items if wanted is not None else ():
            item.update(point_ids=wanted, layout_points=num_points)
        read: List[Batch] = []

        def fill(sizes: List[int]) -> Callable[[int, RecordHeader, Dict[str, np.ndarray]], None]:
            read.append(Batch(sizes, num_points, columns, items))
            prepare_steps(steps, read[0])
            return lambda b, header, arrays: read[0].put(b, arrays)

        if not self.cache.read_batch([sample.key for sample in samples], fill, _scratch()):
            return None
        batch = read[0]
        for item, size in zip(items, batch.sizes.tolist()):
            item["num_frames"] = size
        run_steps(steps, batch)
        sizes = batch.sizes.tolist()
        shape = tuple(batch.valid.shape)
        out = padded_batch([shape + (3,), shape, shape, shape], [self.dtype, torch.float32, torch.bool, torch.bool],
                           sizes)
        batch.finish(*out)
        for b, (item, size) in enumerate(zip(items, sizes)):
            item.update(zip(("landmarks", "confidence", "valid", "imputed"), (tensor[b, :size] for tensor in out)))
        return items

    def _read_selected(self, samples: List[Sample], select: SelectPoints) -> Optional[List[Dict]]:
        """Cached samples as ``select`` leaves them, only its points decoded; None when one is not cached."""
        num_points = self.settings.num_points
        wanted = select.ids(num_points)
        columns = wanted.numpy()
        items: List[Dict] = []

        def fill(sizes: List[int]) -> Callable[[int, RecordHeader, Dict[str, np.ndarray]], None]:
            def put(b: int, header: RecordHeader, arrays: Dict[str, np.ndarray]) -> None:
                landmarks, confidence, found = select_columns(arrays, columns)
                item = self._item(samples[b], header.frames, torch.from_numpy(landmarks).float(),
                                  torch.from_numpy(confidence), torch.from_numpy(found))
                item.update(imputed=torch.zeros(found.shape, dtype=torch.bool), point_ids=wanted,
                            layout_points=num_points)
                items.append(item)
            return put

        if not self.cache.read_batch([sample.key for sample in samples], fill, _scratch()):
            return None
        return items

    def __getitems__(self, indices: List[int]) -> List[Dict]:
        """The items of one batch (PyTorch's DataLoader calls this with a batch's indices).

        Without a transform the batch's records are decoded straight into one zero-padded batch (in shared
        memory in a worker) and each item's tensors are its rows: ``collate_ctc`` then passes that batch on
        without a copy, and any other collate gets ordinary items.
        """
        with _one_thread():
            if self.transform is not None:
                return self._transformed([self.samples[index] for index in indices])
            samples = [self.samples[index] for index in indices]
            try:
                items = self._read_batch(samples)
            except CacheRecordError:
                items = None  # read again record by record: a lock-free reader's retry, or the error
            if items is not None:
                return items
            records = [self._record(sample) for sample in samples]  # some to extract
            landmarks, confidence, valid = self._padded([record.num_frames for record in records])
            items = []
            for b, (sample, record) in enumerate(zip(samples, records)):
                size = record.num_frames
                landmarks[b, :size] = torch.from_numpy(record.landmarks)  # float16 -> dtype in one pass
                confidence[b, :size] = torch.from_numpy(record.confidence)
                valid[b, :size] = found_mask(record)
                items.append(self._item(sample, size, landmarks[b, :size], confidence[b, :size], valid[b, :size]))
            return items

    def _padded(self, sizes: List[int]) -> List[torch.Tensor]:
        shape = (len(sizes), max(sizes), self.settings.num_points)
        return padded_batch([shape + (3,), shape, shape], [self.dtype, torch.float32, torch.bool], sizes)

    def _read_batch(self, samples: List[Sample]) -> Optional[List[Dict]]:
        """A batch whose every sample is cached: its records read in one transaction and copied straight
        into the padded batch (no memory of their own); None when one is not cached."""
        items: List[Dict] = []

        def fill(sizes: List[int]) -> Callable[[int, RecordHeader, Dict[str, np.ndarray]], None]:
            landmarks, confidence, valid = self._padded(sizes)

            def put(b: int, header: RecordHeader, arrays: Dict[str, np.ndarray]) -> None:
                size = header.frames
                rows = landmarks[b, :size], confidence[b, :size], valid[b, :size]  # the item's tensors
                rows[0].copy_(torch.from_numpy(arrays["landmarks"]))  # float16 -> dtype in one pass
                fill_confidence(arrays, rows[1].numpy())
                fill_found(arrays, rows[2].numpy())
                items.append(self._item(samples[b], size, *rows))
            return put

        if not self.cache.read_batch([sample.key for sample in samples], fill, _scratch()):
            return None
        return items

    def __repr__(self) -> str:
        return (f"PhoenixLandmarks(release={self.release.name!r}, split={self.split!r}, samples={len(self)}, "
                f"cache={str(self.cache.path)!r})")

    def coverage(self) -> Tuple[int, int]:
        """(samples with a record in the cache, samples): reads the cache, unlike ``repr``."""
        with self.cache.session():
            return len(self.cache.cached(s.key for s in self.samples)), len(self)

    # extraction
    def _record(self, sample: Sample) -> LandmarkRecord:
        return self.cache.get(sample.key, float16=True) or self._extract(sample)

    def _extract(self, sample: Sample) -> LandmarkRecord:
        if self.cache.readonly:
            raise SampleNotCached(f"sample {sample.key!r} is not in the read-only cache {self.cache.path}; "
                                  "warm it first (phoenix-warm-cache) or open the dataset with readonly=False.")
        return fetch_or_extract(self.cache, sample, self.settings)

    # lengths, for the bucketed sampler
    def num_frames(self, index: int) -> int:
        """Frames of sample ``index``: from the cache header, else by counting its frame files.

        0 for an uncached sample whose frames cannot be listed (reading it will raise, naming why).
        """
        sample = self.samples[index]
        cached = self.cache.num_frames(sample.key)
        if cached is not None:
            return cached
        try:
            return len(list_frames(sample.frames_dir))
        except FramesError as exc:
            log.warning("sample %s: %s", sample.key, exc)
            return 0

    def lengths(self) -> List[int]:
        with self.cache.session():
            return [self.num_frames(i) for i in range(len(self))]

    def _to_item(self, sample: Sample, record: LandmarkRecord, dtype: torch.dtype) -> Dict:
        landmarks = torch.from_numpy(record.landmarks)  # stored as float16
        landmarks = landmarks if landmarks.dtype == dtype else landmarks.to(dtype)
        # valid: found by MediaPipe, per part and frame (transforms)
        return self._item(sample, record.num_frames, landmarks, torch.from_numpy(record.confidence),
                          found_mask(record))

    def _gloss_ids(self, sample: Sample) -> np.ndarray:
        """The sample's gloss ids under ``self.vocab``, encoded once per vocabulary (~15 us a sample)."""
        vocab, encoded = self._encoded
        if vocab is not self.vocab:
            encoded = {}
            self._encoded = (self.vocab, encoded)
        ids = encoded.get(sample.key)
        if ids is None:
            ids = encoded[sample.key] = np.array(self.vocab.encode(sample.glosses), dtype=np.int64)
        return ids

    def _item(self, sample: Sample, num_frames: int, landmarks: torch.Tensor, confidence: torch.Tensor,
              valid: torch.Tensor) -> Dict:
        return {
            "landmarks": landmarks,
            "confidence": confidence,
            "valid": valid,
            "glosses": torch.from_numpy(self._gloss_ids(sample).copy()),  # the item's own tensor
            "gloss_text": " ".join(sample.glosses),
            "id": sample.id,
            "signer": sample.signer,
            "num_frames": num_frames,
            "translation": sample.translation,
        }


DTYPES = (torch.float32, torch.float16)


def found_mask(record: LandmarkRecord) -> torch.Tensor:
    """bool Tensor[T, N]: each point's part found in that frame, from the record's stored per-part bits."""
    slices = part_slices(record.landmarks.shape[1])
    sizes = [slices[part].stop - slices[part].start for part in PARTS]
    return torch.from_numpy(np.repeat(record.presence(), sizes, axis=1))


_LOCAL = threading.local()


def _scratch() -> List[np.ndarray]:
    """This thread's buffer for one record's bytes while they are checked and copied into a batch."""
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _LOCAL.scratch = [np.empty(0, np.uint8)]
    return scratch


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread for one sample's work in the main process (DataLoader workers already run one):
    on a busy machine a multi-threaded op on one sample waits for every core (measured: 8 ms against 0.09)."""
    threads = torch.get_num_threads()
    if threads == 1 or get_worker_info() is not None:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
