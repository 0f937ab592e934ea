"""PhoenixLandmarks: a PHOENIX split as a Dataset of MediaPipe Holistic landmarks, cached in LMDB.

A cache hit reads no frame and runs no MediaPipe. A miss reads the sample's frames, extracts them,
writes the record and returns it: in a DataLoader worker with that worker's own Holistic (built on
its first miss), in any other process (a notebook's ``ds[0]``) through one isolated helper process,
so that the process never runs MediaPipe itself and may fork DataLoader workers later.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch.utils.data import Dataset

from .cache import LandmarkCache
from .cache.fill import fetch_or_extract
from .corpus import Sample, check_split, find_release, read_release_split
from .extract import ExtractorSpec
from .extract.mediapipe.settings import HolisticSettings
from .frames import FramesError, list_frames
from .record import LandmarkRecord
from .transforms.base import validity
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
        transform: called on each item dict.
        settings: MediaPipe settings; their fingerprint must match the cache's.
        vocab: gloss vocabulary; by default built from the release's train split.
        readonly: train from a finished cache (also on a read-only disk); a miss raises.
        overwrite: discard a cache built with other settings instead of raising.

    ``ds[i]`` is a dict: ``landmarks`` (Tensor[T, 543, 3] float32), ``confidence`` (Tensor[T, 543]),
    ``valid`` (bool Tensor[T, 543]: the point's part was found in that frame),
    ``glosses`` (LongTensor[L] ids), ``gloss_text``, ``id``, ``signer``, ``num_frames``,
    ``translation`` (2014-T; None elsewhere).
    """

    def __init__(self, root: Union[str, Path], split: str = "train", cache: Union[str, Path, None] = None,
                 release: Optional[str] = None, transform: Optional[Callable[[Dict], Dict]] = None,
                 settings: Optional[ExtractorSpec] = None, vocab: Optional[Vocabulary] = None,
                 readonly: bool = False, overwrite: bool = False) -> None:
        if cache is None:
            raise ValueError("PhoenixLandmarks needs cache=PATH: the LMDB directory that holds (or will "
                             "hold) the extracted landmarks.")
        self.release = find_release(root, release)
        self.split = check_split(split)
        self.samples: List[Sample] = read_release_split(self.release, split)
        self.vocab = vocab if vocab is not None else Vocabulary.from_samples(
            read_release_split(self.release, "train"))
        self.transform = transform
        self.settings = settings if settings is not None else HolisticSettings()
        if not readonly:
            self.settings.check_ready()  # now, not as a failure of every sample in the workers
        self.cache = LandmarkCache(cache, self.settings, readonly=readonly, overwrite=overwrite)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict:
        sample = self.samples[index]
        record = self.cache.get(sample.key, float16=True) or self._extract_and_store(sample)
        item = self._to_item(sample, record)
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        return (f"PhoenixLandmarks(release={self.release.name!r}, split={self.split!r}, samples={len(self)}, "
                f"cache={str(self.cache.path)!r})")

    def coverage(self) -> Tuple[int, int]:
        """(samples with a record in the cache, samples): reads the cache, unlike ``repr``."""
        with self.cache.session():
            return len(self.cache.cached(s.key for s in self.samples)), len(self)

    # extraction
    def _extract_and_store(self, sample: Sample) -> LandmarkRecord:
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

    def _to_item(self, sample: Sample, record: LandmarkRecord) -> Dict:
        landmarks = torch.from_numpy(record.landmarks).float()  # stored as float16
        confidence = torch.from_numpy(record.confidence)
        return {
            "landmarks": landmarks,
            "confidence": confidence,
            "valid": validity(landmarks, confidence),  # found by MediaPipe, per part and frame (transforms)
            "glosses": torch.tensor(self.vocab.encode(sample.glosses), dtype=torch.long),
            "gloss_text": " ".join(sample.glosses),
            "id": sample.id,
            "signer": sample.signer,
            "num_frames": record.num_frames,
            "translation": sample.translation,
        }

