"""The Python scoring against the real NIST sclite, on the real PHOENIX-2014 dev/test ground truth."""
from __future__ import annotations

import itertools
import random
from typing import Dict, List, Sequence, Tuple

import pytest
from helpers import ci_is_set

from phoenix_data.evaluation import find_sclite, references_from_stm, score, score_with_sclite
from phoenix_data.evaluation.sclite import INSTALL_HINT

STM_DIR = "phoenix2014-release/phoenix-2014-multisigner/evaluation"
# Glosses the clean-up rewrites or drops, so that hypotheses carry them (as raw model output may).
REWRITTEN = ("loc-NORD", "cl-KOMMEN", "qu-WAS", "poss-EUCH", "lh-IX", "NORDRAUM", "SUEDWESTRAUM",
             "REGEN-PLUSPLUS", "S0NNE", "HABEN2", "ZEIGEN", "__EMOTION__", "__PU__", "__LEFTHAND__",
             "__EPENTHESIS__", "loc-", "-PLUSPLUS", "regen", "Sonne")


@pytest.fixture(scope="module")
def sclite() -> List[str]:
    command = find_sclite()
    if command is None:
        reason = f"sclite not found: {INSTALL_HINT}"
        if ci_is_set():
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return command


def _hypothesis(rng: random.Random, reference: Sequence[str], pool: Sequence[str]) -> List[str]:
    """A noisy copy of ``reference``: substitutions, deletions, insertions, repeats, or something else."""
    kind = rng.random()
    if kind < 0.06:
        return []
    if kind < 0.12:
        return rng.choices(pool, k=rng.randint(1, 2 * len(reference) + 2))
    if kind < 0.18:
        return list(reference)
    out: List[str] = []
    for gloss in reference:
        edit = rng.random()
        if edit < 0.15:
            out.append(rng.choice(pool))  # substitution
        elif edit < 0.27:
            pass  # deletion
        elif edit < 0.35:
            out += [gloss, gloss]  # a repeat
        else:
            out.append(gloss)
        if rng.random() < 0.12:
            out.append(rng.choice(pool))  # insertion
    if kind > 0.9:
        rng.shuffle(out)  # many equal-cost alignments: tie-breaking decides
    return out


def _hypotheses(seed: int, references: Dict[str, Tuple[str, ...]]) -> Dict[str, List[str]]:
    rng = random.Random(seed)
    pool = sorted({g for glosses in references.values() for g in glosses}) + list(REWRITTEN) * 3
    return {sid: _hypothesis(rng, ref, pool) for sid, ref in references.items()}


@pytest.mark.slow
@pytest.mark.parametrize("split", ["dev", "test"])
def test_python_scoring_equals_sclite_sentence_by_sentence(split, phoenix_real_dir, sclite, tmp_path):
    references = references_from_stm(phoenix_real_dir / STM_DIR / f"phoenix2014-groundtruth-{split}.stm")
    assert len(references) == {"dev": 540, "test": 629}[split]
    compared = 0
    for seed in (1, 2):  # 2 x (540 + 629) = 2,338 hypotheses over both splits
        hypotheses = _hypotheses(seed, references)
        ours = score(references, hypotheses)
        theirs = score_with_sclite(references, hypotheses, command=sclite, workdir=str(tmp_path))
        mismatched = [(a.alignment(), b.alignment()) for a, b in zip(ours.sentences, theirs.sentences)
                      if (a.id, a.counts, a.reference_words) != (b.id, b.counts, b.reference_words)]
        assert not mismatched, f"{len(mismatched)} sentences differ from sclite, e.g.\n" + "\n".join(mismatched[0])
        assert (ours.errors, ours.reference_words) == (theirs.errors, theirs.reference_words)
        assert 0.15 < ours.wer < 0.9  # the generated noise is real: not all correct, not all wrong
        compared += len(ours.sentences)
    assert compared == 2 * len(references)


def test_every_short_pair_aligns_exactly_as_sclite(sclite, tmp_path):
    """All reference/hypothesis pairs of up to 3 and 4 words over 3 glosses: the same path, step by step.

    Equal-cost paths are common here (3 substitutions cost as much as 2 insertions + 2 deletions), so
    sclite's tie-breaking decides the counts and the positions; both must match.
    """
    words = ("A", "B", "C")
    sequences = [()] + [tuple(s) for n in range(1, 5) for s in itertools.product(words, repeat=n)]
    references: Dict[str, Tuple[str, ...]] = {}
    hypotheses: Dict[str, Tuple[str, ...]] = {}
    for i, ref in enumerate(s for s in sequences if 1 <= len(s) <= 3):
        for j, hyp in enumerate(sequences):
            references[f"r{i:02d}h{j:03d}"] = ref
            hypotheses[f"r{i:02d}h{j:03d}"] = hyp if hyp else ("Z",)  # sclite is given a word, never none
    ours = score(references, hypotheses, rules=None)
    theirs = score_with_sclite(references, hypotheses, rules=None, command=sclite, workdir=str(tmp_path))
    folded = [tuple((op, r and r.lower(), h and h.lower()) for op, r, h in s.steps) for s in ours.sentences]
    differ = [(a.alignment(), b.alignment()) for a, f, b in zip(ours.sentences, folded, theirs.sentences)
              if f != b.steps]
    assert len(references) == 39 * 121
    assert not differ, (f"{len(differ)} of {len(references)} alignments differ from sclite, e.g.\n"
                        + "\n".join(differ[0]))
