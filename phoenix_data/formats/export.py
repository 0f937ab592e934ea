"""Export a cache's records as pose-format ``.pose`` files: ``DIR/<release>/<split>/<sample id>.pose``.

Resumable: each file is written atomically, and a file already there is kept, so a rerun after Ctrl+C
writes only what is missing. A sample the cache does not hold is listed, not fatal. The cache is opened
read-only with the settings given (a cache of other settings is refused with the usual error).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional

from tqdm import tqdm

from ..cache import LandmarkCache
from ..corpus import SPLITS, Release, Sample, find_release, read_release_split
from ..extract import ExtractorSpec
from .poses import FPS, import_pose_format, write_pose


@dataclass
class ExportResult:
    out_dir: Path
    written: int = 0
    existing: int = 0  # files already there (an earlier, interrupted export): kept
    missing: List[str] = field(default_factory=list)  # keys of samples the cache does not hold


def pose_path(out_dir: Path, sample: Sample) -> Path:
    return Path(out_dir) / sample.release / sample.split / f"{sample.id}.pose"


def export_poses(root: Path, cache: Path, settings: ExtractorSpec, out_dir: Path, release: Optional[str] = None,
                 split: Optional[str] = None, fps: float = FPS, progress: Optional[bool] = None) -> ExportResult:
    """Write every cached sample of ``split`` (default: every split with a CSV) as a .pose file."""
    import_pose_format()  # before anything is read: the install hint, not a failure per sample
    found = find_release(root, release)
    samples = list(_samples(found, [split] if split else list(SPLITS)))
    result = ExportResult(Path(out_dir))
    store = LandmarkCache(cache, settings, readonly=True)
    with store.session():
        bar = None if progress is None else not progress  # None: a bar on a terminal only (tqdm's disable=None)
        for sample in tqdm(samples, desc="export .pose", unit="sample", disable=bar):
            path = pose_path(out_dir, sample)
            if path.is_file():
                result.existing += 1
                continue
            record = store.get(sample.key)
            if record is None:
                result.missing.append(sample.key)
                continue
            write_pose(path, record, fps)
            result.written += 1
    return result


def _samples(found: Release, splits: List[str]) -> Iterable[Sample]:
    for split in splits:
        if found.csv_path(split).is_file():  # a copy without a split's CSV (SI5 has no dev): nothing to export
            yield from read_release_split(found, split)
