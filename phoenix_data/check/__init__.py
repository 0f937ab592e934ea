"""The sanity check a researcher runs before training: corpus, cache, detection, a DataLoader batch, pictures.

Library side of ``phoenix-dataset`` (command line in ``phoenix_data.cli``): ``run(CheckOptions(...), emit)``.

Exit status: 0 when nothing is wrong, 1 when problems were found (samples without frames, failed
extractions, bad cache records, a failing DataLoader), 2 when the check cannot run (no release,
a cache built with other settings, an unknown sample id).

Fork safety: main-process cache reads happen inside ``LandmarkCache.session()`` (closed afterwards),
and ``--render`` of an uncached sample extracts it in the isolated helper process, never here.

The parts: ``scan`` (corpus and cache on disk), ``smoke`` (a DataLoader batch), ``picture``
(``--render``), ``report`` (the text).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..corpus import SPLITS, find_release
from ..exit_codes import EXIT_FAILURES, EXIT_OK
from ..extract import ExtractorSpec
from .picture import find_sample, render
from .report import format_cache, format_corpus, format_smoke, problem_summary
from .scan import CheckError, check_cache, check_corpus
from .smoke import DEFAULT_BATCH_SIZE, smoke_test

__all__ = ["CheckError", "CheckOptions", "run"]


# --- the check --------------------------------------------------------------------------------------

@dataclass
class CheckOptions:
    """What ``phoenix-dataset`` checks: a release (``split`` None: all three), optionally its cache."""

    root: Path
    settings: ExtractorSpec  # what the cache's records were made with (the command's flags)
    release: Optional[str] = None
    split: Optional[str] = None
    cache: Optional[Path] = None
    verify: bool = False  # decode every cached record and check it against the corpus
    render: Optional[str] = None  # a sample id to draw, to ``out`` (.png; the GIF beside it)
    out: Optional[Path] = None
    batch_size: int = DEFAULT_BATCH_SIZE


def run(args: CheckOptions, emit: Callable[[str], None]) -> int:
    """The whole check; ``emit`` prints one report line. Raises CheckError when it cannot go on."""
    settings = args.settings
    release = find_release(args.root, args.release)
    splits = [args.split] if args.split else list(SPLITS)
    cache_path = args.cache.expanduser() if args.cache is not None else None
    out = args.out.expanduser() if args.out is not None else None
    if args.render and out is None:
        raise CheckError(f"render={args.render!r} needs out: the path of its contact sheet (.png).")
    target = find_sample(release, args.render, splits) if args.render else None  # fail before the long scan
    emit(f"Release  {release.name}")
    emit(f"Folder   {release.root}")
    corpus = check_corpus(release, splits)
    _emit(emit, [""] + format_corpus(corpus))
    cache = None
    if cache_path is not None:
        cache = check_cache(cache_path, settings, corpus.scans, args.verify)
        _emit(emit, [""] + format_cache(cache))
    smoke = smoke_test(release, cache, args.batch_size)  # before --render may build a Holistic here
    _emit(emit, [""] + format_smoke(smoke))
    if target is not None and out is not None:  # out is checked above: a target comes with one
        _emit(emit, [""] + render(target, cache_path, settings, out))
    problems = problem_summary(corpus, cache, smoke)
    emit("")
    emit(f"Result: problems found: {'; '.join(problems)}." if problems else "Result: OK, no problems found.")
    return EXIT_FAILURES if problems else EXIT_OK


def _emit(emit: Callable[[str], None], lines: Sequence[str]) -> None:
    for line in lines:
        emit(line)
