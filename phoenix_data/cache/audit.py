"""A cached record against its sample's frames: what ``phoenix-dataset --verify`` reports and
``phoenix-warm-cache --repair`` extracts again. One set of checks for both, so that a repair fixes
every record the check lists.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

from ..corpus import Sample
from ..frames import FramesError, list_frames
from ..record import LandmarkRecord
from .store import CacheRecordError, LandmarkCache

log = logging.getLogger(__name__)

NO_FRAMES = "no frames on disk"


def record_problems(record: LandmarkRecord, num_points: int, frames_on_disk: Optional[int],
                    first_frame: Optional[Path], why_no_frames: str = NO_FRAMES) -> List[str]:
    """What is wrong with a decoded record, checked against its sample's frames (empty: nothing).

    ``frames_on_disk``: the sample's PNG frames (None when they cannot be listed, ``why_no_frames``
    says why); ``first_frame``: its first PNG, whose size the record's width and height must match.
    """
    lm, conf = record.landmarks, record.confidence
    reasons = []
    if frames_on_disk is None:
        reasons.append(f"cannot compare with the corpus: {why_no_frames}")
    elif record.num_frames != frames_on_disk:
        reasons.append(f"record has {record.num_frames} frames, {frames_on_disk} PNG frames on disk; re-extract it")
    if lm.ndim != 3 or lm.shape[1:] != (num_points, 3):
        reasons.append(f"landmarks shape {tuple(lm.shape)}; expected [T, {num_points}, 3]")
    if conf.shape != lm.shape[:2]:
        reasons.append(f"confidence shape {tuple(conf.shape)}; expected [T, N] = {tuple(lm.shape[:2])}")
    if not (np.isfinite(lm).all() and np.isfinite(conf).all()):
        reasons.append("non-finite values (NaN or inf) in landmarks or confidence")
    elif conf.size and (conf.min() < 0 or conf.max() > 1):
        reasons.append(f"confidence in [{conf.min():.3g}, {conf.max():.3g}]; expected within [0, 1]")
    size = frame_size(first_frame)
    if size is not None and size != (record.width, record.height):
        reasons.append(f"record made from {record.width}x{record.height} frames, "
                       f"frames on disk are {size[0]}x{size[1]}")
    return reasons


def frame_size(path: Optional[Path]) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG's header, without decoding it; None when unreadable."""
    if path is None:
        return None
    from PIL import Image  # noqa: PLC0415

    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return None


def sample_problems(record: LandmarkRecord, sample: Sample, num_points: int) -> Tuple[List[str], bool]:
    """(what is wrong with ``sample``'s record, whether its frames could be listed to compare)."""
    try:
        paths = list_frames(sample.frames_dir)
    except (FramesError, OSError) as exc:
        return record_problems(record, num_points, None, None, str(exc)), False
    return record_problems(record, num_points, len(paths), paths[0]), True


def records_to_repair(cache: LandmarkCache, samples: Iterable[Sample]) -> Tuple[Set[str], Dict[str, str]]:
    """(keys whose record is sound, {key: why not} of records to extract again); missing keys in neither.

    Every record is decoded (checksum, identity, values) and compared with its frames. A record
    whose frames are gone is kept (and logged): nothing could replace it.
    """
    good, bad = set(), {}
    for sample in samples:
        try:
            record = cache.get(sample.key)
        except CacheRecordError as exc:
            bad[sample.key] = str(exc)
            continue
        if record is None:
            continue
        reasons, comparable = sample_problems(record, sample, cache.settings.num_points)
        if reasons and comparable:
            bad[sample.key] = f"cache record of {sample.key!r} does not match its frames: {'; '.join(reasons)}"
        else:
            good.add(sample.key)
            if reasons:
                log.warning("keeping the record of %s: %s", sample.key, "; ".join(reasons))
    return good, bad
