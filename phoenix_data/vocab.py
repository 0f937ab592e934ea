"""The gloss vocabulary: built from the train split, ``<blank>`` at 0 for CTC, ``<unk>`` for unseen glosses."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

from .corpus import Sample
from .evaluation.cleanup import PHOENIX_2014, check_rules, clean_sentence, rules_for_release

BLANK = "<blank>"
UNK = "<unk>"
BLANK_INDEX = 0
UNK_INDEX = 1



def cleanup_glosses(glosses: Sequence[str], rules: str = PHOENIX_2014) -> Tuple[str, ...]:
    """Glosses cleaned by the release's evaluation rules, applied to the whole sentence.

    The one implementation is :func:`phoenix_data.evaluation.clean_sentence` (its docstring lists
    the rules and their source): prefix strips, single-gloss rewrites, ``__EMOTION__``/``__PU__``/
    ``__LEFTHAND__`` removal, letter joining, ``RAUM``/``-PLUSPLUS`` strips, repeat collapsing.
    """
    return clean_sentence(glosses, rules)


class Vocabulary:
    """Gloss <-> index. Index 0 is ``<blank>`` (CTC), 1 is ``<unk>``, then train glosses sorted."""

    def __init__(self, glosses: Iterable[str], cleanup: bool = False, rules: str = PHOENIX_2014) -> None:
        self.cleanup = cleanup
        self.rules = check_rules(rules)  # which release's clean-up rules, when ``cleanup``
        specials = {BLANK, UNK}
        self.tokens: List[str] = [BLANK, UNK] + sorted(set(glosses) - specials)
        self._index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def from_samples(cls, samples: Iterable[Sample], cleanup: bool = False) -> "Vocabulary":
        """From the train split's samples; ``cleanup`` applies the official evaluation rules.

        The rules are those of the samples' release: PHOENIX-2014-T's for 2014-T, else PHOENIX-2014's.
        """
        samples = list(samples)
        rules = rules_for_release(samples[0].release) if samples else PHOENIX_2014
        glosses = (g for s in samples for g in (cleanup_glosses(s.glosses, rules) if cleanup else s.glosses))
        return cls(glosses, cleanup=cleanup, rules=rules)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, gloss: str) -> bool:
        return gloss in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.tokens, self.cleanup, self.rules) == (
            other.tokens, other.cleanup, other.rules)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, cleanup={self.cleanup}, rules={self.rules!r})"

    def prepare(self, glosses: Sequence[str]) -> Tuple[str, ...]:
        """The glosses this vocabulary encodes: cleaned when built with ``cleanup=True``."""
        return cleanup_glosses(glosses, self.rules) if self.cleanup else tuple(glosses)

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
        data = {"format": "phoenix_data.vocabulary/1", "cleanup": self.cleanup, "rules": self.rules,
                "tokens": self.tokens}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Vocabulary":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not tokens or tokens[:2] != [BLANK, UNK]:
            raise ValueError(f"{path} is not a phoenix_data vocabulary: expected a JSON object whose "
                             f"'tokens' list starts with {BLANK!r}, {UNK!r}.")
        vocab = cls((), cleanup=bool(data.get("cleanup", False)), rules=data.get("rules", PHOENIX_2014))
        vocab.tokens = list(tokens)
        vocab._index = {token: i for i, token in enumerate(vocab.tokens)}
        return vocab
