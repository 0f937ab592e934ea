"""The gloss vocabulary: built from the train split, ``<blank>`` at 0 for CTC, ``<unk>`` for unseen glosses."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

from .corpus import Sample

BLANK = "<blank>"
UNK = "<unk>"
BLANK_INDEX = 0
UNK_INDEX = 1

# The official PHOENIX evaluation cleans glosses before scoring (see README, "Gloss cleanup").
_DROPPED = frozenset({"__EMOTION__", "__PU__", "__LEFTHAND__"})
_PREFIXES = re.compile(r"^(?:loc|cl|qu|poss|lh)-")


def cleanup_glosses(glosses: Sequence[str]) -> Tuple[str, ...]:
    """Glosses as the official evaluation scores them.

    Strips the ``loc-``, ``cl-``, ``qu-``, ``poss-``, ``lh-`` prefixes; drops ``__EMOTION__``,
    ``__PU__``, ``__LEFTHAND__``; joins runs of single letters (``A B C`` -> ``A+B+C``);
    collapses immediate repeats.
    """
    tokens = [_PREFIXES.sub("", g) for g in glosses if g not in _DROPPED]
    tokens = [t for t in tokens if t]
    joined: List[str] = []
    for token in tokens:
        if len(token) == 1 and token.isalpha() and joined and _is_spelled(joined[-1]):
            joined[-1] += "+" + token
        else:
            joined.append(token)
    return tuple(t for i, t in enumerate(joined) if i == 0 or t != joined[i - 1])


def _is_spelled(token: str) -> bool:
    return all(len(part) == 1 and part.isalpha() for part in token.split("+"))


class Vocabulary:
    """Gloss <-> index. Index 0 is ``<blank>`` (CTC), 1 is ``<unk>``, then train glosses sorted."""

    def __init__(self, glosses: Iterable[str], cleanup: bool = False) -> None:
        self.cleanup = cleanup
        specials = {BLANK, UNK}
        self.tokens: List[str] = [BLANK, UNK] + sorted(set(glosses) - specials)
        self._index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def from_samples(cls, samples: Iterable[Sample], cleanup: bool = False) -> "Vocabulary":
        """From the train split's samples; ``cleanup`` applies the official evaluation rules."""
        glosses = (g for s in samples for g in (cleanup_glosses(s.glosses) if cleanup else s.glosses))
        return cls(glosses, cleanup=cleanup)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, gloss: str) -> bool:
        return gloss in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.tokens, self.cleanup) == (other.tokens, other.cleanup)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, cleanup={self.cleanup})"

    def prepare(self, glosses: Sequence[str]) -> Tuple[str, ...]:
        """The glosses this vocabulary encodes: cleaned when built with ``cleanup=True``."""
        return cleanup_glosses(glosses) if self.cleanup else tuple(glosses)

    def encode(self, glosses: Sequence[str]) -> List[int]:
        """Indices of ``glosses`` (cleaned first if the vocabulary cleans); unseen ones -> ``<unk>``."""
        return [self._index.get(g, UNK_INDEX) for g in self.prepare(glosses)]

    def decode(self, indices: Iterable[int], strip_blank: bool = True) -> List[str]:
        return [self.tokens[int(i)] for i in indices if not (strip_blank and int(i) == BLANK_INDEX)]

    def oov_rate(self, samples: Iterable[Sample]) -> float:
        """Share of gloss tokens of ``samples`` that this vocabulary does not hold."""
        tokens = [g for s in samples for g in self.prepare(s.glosses)]
        return sum(g not in self._index for g in tokens) / len(tokens) if tokens else 0.0

    def save(self, path: Union[str, Path]) -> None:
        data = {"format": "phoenix_data.vocabulary/1", "cleanup": self.cleanup, "tokens": self.tokens}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Vocabulary":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not tokens or tokens[:2] != [BLANK, UNK]:
            raise ValueError(f"{path} is not a phoenix_data vocabulary: expected a JSON object whose "
                             f"'tokens' list starts with {BLANK!r}, {UNK!r}.")
        vocab = cls((), cleanup=bool(data.get("cleanup", False)))
        vocab.tokens = list(tokens)
        vocab._index = {token: i for i, token in enumerate(vocab.tokens)}
        return vocab
