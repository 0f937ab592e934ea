"""CTM hypotheses and STM references in the PHOENIX releases' format.

STM (``evaluation/phoenix2014-groundtruth-{dev,test}.stm``): one sentence a line,
``<id> 1 <speaker> 0.0 1.79769e+308 <gloss> <gloss> ...`` (channel 1, a segment covering all time).
CTM: one gloss a line, ``<id> 1 <start> <duration> <gloss>``, glosses of a sentence in time order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, Union

from ..corpus import Sample

STM_CHANNEL = "1"
STM_START = "0.0"
STM_END = "1.79769e+308"  # the releases' "until the end of the video"
CTM_STEP = 0.01  # seconds between glosses of a written CTM: only their order matters to sclite

PathLike = Union[str, Path]


class EvaluationFileError(ValueError):
    """A CTM or STM line that cannot be read."""


@dataclass(frozen=True)
class StmSegment:
    """One STM line: a sentence id (the video), its speaker and reference glosses."""

    id: str
    speaker: str
    glosses: Tuple[str, ...]


def stm_from_samples(samples: Iterable[Sample]) -> List[StmSegment]:
    """STM segments of corpus samples, speaker as the corpus names it (e.g. ``Signer05``)."""
    return [StmSegment(s.id, s.signer, tuple(s.glosses)) for s in samples]


def write_stm(path: PathLike, segments: Iterable[StmSegment]) -> Path:
    """Write ``segments`` as the release's STM, sorted by id (as the scripts sort it for sclite)."""
    lines = [" ".join((seg.id, STM_CHANNEL, seg.speaker, STM_START, STM_END, *seg.glosses))
             for seg in sorted(segments, key=lambda seg: seg.id)]
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_stm(path: PathLike) -> List[StmSegment]:
    """The segments of an STM file in file order; ``;;`` comment lines are skipped."""
    segments = []
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) < 5:
            raise EvaluationFileError(f"{path}, line {number}: {line!r} has {len(fields)} fields; an STM line "
                                      "is '<id> <channel> <speaker> <start> <end> [glosses...]'.")
        segments.append(StmSegment(fields[0], fields[2], tuple(fields[5:])))
    return segments


def references_from_stm(path: PathLike) -> Dict[str, Tuple[str, ...]]:
    """``{id: glosses}`` of an STM file, for :func:`phoenix_data.evaluation.score`."""
    return {seg.id: seg.glosses for seg in read_stm(path)}


def write_ctm(path: PathLike, hypotheses: Mapping[str, Sequence[str]]) -> Path:
    """Write hypotheses as CTM, sentences sorted by id; an empty hypothesis writes no line.

    The release's script and :func:`score_with_sclite` give a sentence with no line the word
    ``[EMPTY]``, so nothing is lost.
    """
    lines = []
    for sentence_id in sorted(hypotheses):
        for position, gloss in enumerate(hypotheses[sentence_id]):
            lines.append(f"{sentence_id} {STM_CHANNEL} {position * CTM_STEP:.3f} {CTM_STEP:.3f} {gloss}")
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_ctm(path: PathLike) -> Dict[str, Tuple[str, ...]]:
    """``{id: glosses}`` of a CTM file, each sentence's glosses ordered by start time."""
    timed: Dict[str, List[Tuple[float, int, str]]] = {}
    for number, line in _lines(path):
        fields = line.split()
        try:
            if len(fields) < 5:
                raise ValueError
            start = float(fields[2])
        except ValueError:
            raise EvaluationFileError(f"{path}, line {number}: {line!r} is not a CTM line "
                                      "'<id> <channel> <start> <duration> <gloss> [confidence]'.") from None
        timed.setdefault(fields[0], []).append((start, number, fields[4]))
    return {sentence_id: tuple(g for _, _, g in sorted(words)) for sentence_id, words in timed.items()}


def _lines(path: PathLike) -> Iterable[Tuple[int, str]]:
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.startswith(";;"):
            yield number, line
