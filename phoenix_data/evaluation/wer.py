"""sclite-equivalent word alignment and WER over PHOENIX glosses.

The alignment is NIST sclite's default (``sclite -h hyp.ctm ctm -r ref.stm stm``, SCTK
``src/sclite/net_dp.c`` and ``word.c``): a dynamic programme with costs correct 0, substitution 4,
insertion 3, deletion 3, words compared case-insensitively (sclite without ``-s``). Ties are broken as
sclite breaks them: a cell takes the substitution/correct step when it is no dearer than both others,
else the deletion when strictly cheaper than the insertion, else the insertion; the back-trace starts
at the last cell. Errors are counted on that one path, so S/D/I match sclite sentence by sentence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .cleanup import clean_hypothesis, clean_reference, for_sclite

SUBSTITUTION_COST = 4
INSERTION_COST = 3
DELETION_COST = 3
CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

Step = Tuple[str, Optional[str], Optional[str]]  # (C|S|D|I, reference word or None, hypothesis word or None)


def _fold(word: str) -> str:
    return word.translate(_ASCII_LOWER)  # sclite's case folding is ASCII only in its default encoding


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> List[Step]:
    """sclite's alignment of two word sequences: a list of ``(op, ref_word, hyp_word)`` steps."""
    ref = [_fold(w) for w in reference]
    hyp = [_fold(w) for w in hypothesis]
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[""] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        cost[0][j], back[0][j] = cost[0][j - 1] + INSERTION_COST, INSERTION
    for i in range(1, n + 1):
        cost[i][0], back[i][0] = cost[i - 1][0] + DELETION_COST, DELETION
        for j in range(1, m + 1):
            sub = cost[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else SUBSTITUTION_COST)
            dele = cost[i - 1][j] + DELETION_COST
            ins = cost[i][j - 1] + INSERTION_COST
            if sub <= dele and sub <= ins:
                cost[i][j], back[i][j] = sub, SUBSTITUTION
            elif dele < ins:
                cost[i][j], back[i][j] = dele, DELETION
            else:
                cost[i][j], back[i][j] = ins, INSERTION
    return _trace(back, reference, hypothesis)


def _trace(back: List[List[str]], reference: Sequence[str], hypothesis: Sequence[str]) -> List[Step]:
    steps: List[Step] = []
    i, j = len(reference), len(hypothesis)
    while i > 0 or j > 0:
        move = back[i][j]
        if move == SUBSTITUTION:
            same = _fold(reference[i - 1]) == _fold(hypothesis[j - 1])
            steps.append((CORRECT if same else SUBSTITUTION, reference[i - 1], hypothesis[j - 1]))
            i, j = i - 1, j - 1
        elif move == DELETION:
            steps.append((DELETION, reference[i - 1], None))
            i -= 1
        else:
            steps.append((INSERTION, None, hypothesis[j - 1]))
            j -= 1
    return steps[::-1]


@dataclass(frozen=True)
class SentenceScore:
    """One sentence: its aligned words and error counts (as sclite's ``pra`` report gives them)."""

    id: str
    steps: Tuple[Step, ...]

    def _count(self, op: str) -> int:
        return sum(1 for step in self.steps if step[0] == op)

    @property
    def correct(self) -> int:
        return self._count(CORRECT)

    @property
    def substitutions(self) -> int:
        return self._count(SUBSTITUTION)

    @property
    def deletions(self) -> int:
        return self._count(DELETION)

    @property
    def insertions(self) -> int:
        return self._count(INSERTION)

    @property
    def reference_words(self) -> int:
        return sum(1 for step in self.steps if step[1] is not None)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def counts(self) -> Tuple[int, int, int]:
        """``(substitutions, deletions, insertions)``."""
        return self.substitutions, self.deletions, self.insertions

    def alignment(self) -> str:
        """Three aligned lines, REF / HYP / Eval, with ``*`` for a missing word (as sclite prints them)."""
        refs = [r if r is not None else "*" for _, r, _ in self.steps]
        hyps = [h if h is not None else "*" for _, _, h in self.steps]
        ops = [op if op != CORRECT else "" for op, _, _ in self.steps]
        widths = [max(len(r), len(h), 1) for r, h in zip(refs, hyps)]
        line = lambda words: " ".join(w.ljust(width) for w, width in zip(words, widths)).rstrip()  # noqa: E731
        return f"id: {self.id}\nREF:  {line(refs)}\nHYP:  {line(hyps)}\nEval: {line(ops)}"


@dataclass(frozen=True)
class WerResult:
    """Per-sentence scores in reference order, and their totals."""

    sentences: Tuple[SentenceScore, ...]

    def _total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.sentences)

    @property
    def substitutions(self) -> int:
        return self._total("substitutions")

    @property
    def deletions(self) -> int:
        return self._total("deletions")

    @property
    def insertions(self) -> int:
        return self._total("insertions")

    @property
    def reference_words(self) -> int:
        return self._total("reference_words")

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """(S + D + I) / reference words, as a fraction (0.25 = 25 %); 0 for no reference words."""
        return self.errors / self.reference_words if self.reference_words else 0.0

    def by_id(self) -> Dict[str, SentenceScore]:
        return {s.id: s for s in self.sentences}

    def summary(self) -> str:
        """``WER 25.00% (S 3, D 1, I 1; 20 reference words, 4 sentences)``."""
        return (f"WER {100 * self.wer:.2f}% (S {self.substitutions}, D {self.deletions}, I {self.insertions}; "
                f"{self.reference_words} reference words, {len(self.sentences)} sentences)")

    def alignments(self) -> str:
        return "\n\n".join(s.alignment() for s in self.sentences)


def score(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, Sequence[str]],
          rules: Optional[str] = "phoenix-2014") -> WerResult:
    """Score hypotheses against references as the release's evaluation does.

    ``references`` and ``hypotheses`` map sentence ids to glosses. With ``rules`` (``"phoenix-2014"``
    for 2014 and SI5, ``"phoenix-2014-T"``) both are cleaned as the release's script cleans them, and
    an empty hypothesis is scored as the script's single word ``[EMPTY]``; a sentence with no
    hypothesis counts as empty. ``rules=None`` scores the glosses exactly as given.
    Raises ValueError for hypothesis ids that no reference has.
    """
    unknown = sorted(set(hypotheses) - set(references))
    if unknown:
        raise ValueError(f"{len(unknown)} hypothesis ids have no reference, e.g. {unknown[:3]}; "
                         "score against the references of the same split.")
    sentences = []
    for sentence_id, reference in references.items():
        hypothesis = hypotheses.get(sentence_id, ())
        if rules is not None:
            reference = clean_reference(reference, rules)
            hypothesis = for_sclite(clean_hypothesis(hypothesis, rules))
        sentences.append(SentenceScore(sentence_id, tuple(align(reference, hypothesis))))
    return WerResult(tuple(sentences))
