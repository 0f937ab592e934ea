"""``--render``: one sample's landmarks drawn over its frames (its record read, or extracted in the helper)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..cache import CacheRecordError
from ..corpus import SPLITS, CorpusError, Release, Sample, read_release_split
from ..extract import ExtractorSpec
from ..frames import list_frames
from ..record import LandmarkRecord
from .scan import CheckError, open_cache

log = logging.getLogger(__name__)

EXAMPLE_IDS = 3  # valid ids listed per split when an id is unknown


# --- render -----------------------------------------------------------------------------------

def find_sample(release: Release, sample_id: str, splits: Sequence[str]) -> Sample:
    """The sample ``sample_id`` of any split of ``release``; CheckError listing valid ids if unknown."""
    examples = []
    for split in sorted(SPLITS, key=lambda s: s not in splits):  # the selected splits first
        try:
            samples = read_release_split(release, split)
        except CorpusError:
            continue
        match = next((s for s in samples if s.id == sample_id), None)
        if match is not None:
            return match
        examples += [f"{s.id} ({split})" for s in samples[:EXAMPLE_IDS]]
    raise CheckError(f"Unknown sample id {sample_id!r} in {release.name}; expected an id from its corpus "
                     f"CSVs, e.g. {', '.join(examples) or '(no readable split)'}.")


def record_for_render(sample: Sample, cache_path: Optional[Path],
                      settings: ExtractorSpec) -> Tuple[LandmarkRecord, str]:
    """The sample's record and where it came from: the cache, or a fresh extraction, never stored (a
    sanity check does not change what it checks)."""
    note = ""
    cache = open_cache(cache_path, settings) if cache_path is not None else None
    if cache is not None:
        with cache.session():
            try:
                record = cache.get(sample.key)
            except CacheRecordError as exc:
                record, note = None, f"cached record unusable ({exc}); "
        if record is not None:
            return record, "landmarks read from the cache"
    from ..cache.fill import extract_record  # noqa: PLC0415 - in the isolated helper process, not here

    record = extract_record(sample, settings)
    where = "no cache given" if cache_path is None else "not in the cache; phoenix-warm-cache stores it"
    return record, note + f"extracted ({where}; not stored)"


def render(sample: Sample, cache_path: Optional[Path], settings: ExtractorSpec, out: Path) -> List[str]:
    """Draw one sample's landmarks over its frames; the report lines saying what was written."""
    from ..render import render_sample  # noqa: PLC0415

    if out.suffix.lower() != ".png":
        raise CheckError(f"--out {str(out)!r} must end in .png; the GIF is written beside it with .gif.")
    paths = list_frames(sample.frames_dir)
    record, source = record_for_render(sample, cache_path, settings)
    done = render_sample(paths, record, out)
    lines = [f"Render {sample.id} ({sample.split}; {source})",
             f"  contact sheet  {done.sheet}  ({len(done.tiles)} of {done.frames} frames, {done.columns} columns)",
             f"  animation      {done.gif}  ({done.frames} frames)"]
    if record.num_frames != len(paths):
        lines.append(f"  note: the record has {record.num_frames} frames, {len(paths)} PNG frames on disk")
    return lines
