"""The PHOENIX gloss clean-up of the releases' own ``evaluation/`` scripts, rule for rule.

Source: the scoring scripts shipped in the releases' ``evaluation/`` folders, as public CSLR code
reproduces them (read for this module in 2026):
- PHOENIX-2014 (multisigner and SI5), ``evaluatePhoenix2014.sh`` / ``preprocess.sh``: e.g.
  ustc-slr/DilatedSLR ``evaluation_relaxation/phoenix_eval.sh`` (commit 5561c2b7) and VAC_CSLR-style
  ``evaluation/slr_eval/preprocess.sh``, identical in every copy found. It cleans the hypothesis CTM
  only; the ground-truth STM is scored as released (its dev/test glosses are already clean).
- PHOENIX-2014-T, ``evaluatePHOENIX-2014-T-signrecognition.sh`` (e.g. ycfang-lab/SA-GNN
  ``evaluation/slr_eval/preprocess_14t.sh``, commit 5098ddef, and copies of the full script): one
  set of rules for the hypothesis CTM, a longer one for the reference STM lines.

The scripts run sed/perl over text *lines*: CTM lines (``<id> 1 <start> <dur> <gloss>``, one gloss a
line) and STM lines (``<id> 1 <speaker> 0.0 1.79769e+308 <glosses>``). The same regexes are applied
here to lines built the same way, so that a rule behaves exactly as it does there: on a CTM line the
rules that span two glosses (letter joining, ``WIE AUSSEHEN``, repeat collapsing) never fire, and on
an STM line a rule anchored at ``^`` never fires while the first gloss is preceded by a space.
"""
from __future__ import annotations

import re
from typing import List, Sequence, Tuple

PHOENIX_2014 = "phoenix-2014"
PHOENIX_2014_T = "phoenix-2014-T"
RULE_SETS: Tuple[str, ...] = (PHOENIX_2014, PHOENIX_2014_T)
EMPTY = "[EMPTY]"  # what the scripts put in for a hypothesis left empty, so that sclite aligns it

# A line head that no rule can match (digits and dots only), standing in for the CTM/STM fields.
_LINE_HEAD = "0 1 0.000 0.030 "

def _sed(pattern: str, replacement: str, count_all: bool = True) -> Tuple["re.Pattern[str]", str, int]:
    return re.compile(pattern), replacement, 0 if count_all else 1


def _perl(pattern: str, replacement: str) -> Tuple["re.Pattern[str]", str, int]:
    return re.compile(pattern, re.ASCII), replacement, 0  # perl's \w without `use utf8` is ASCII


# Joining spelled letters (``A B C`` -> ``A+B+C``) and the ``SCH``/``NN`` spellings; shared by the
# 2014 hypothesis rules and the 2014-T reference rules, in the scripts' order (the [ +]X Y[ +] rule
# is run three times, as three sed calls in the pipe).
_LETTER_JOINING = [
    _sed(r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"),
    _sed(r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),
    _sed(r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    _sed(r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    _sed(r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    _sed(r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),
    _sed(r"([ +]NN) ([A-Z][ +])", r"\1+\2"),
    _sed(r"([ +][A-Z]) (NN[ +])", r"\1+\2"),
    _sed(r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),
]
# Immediate repeats of a plain gloss collapse (``REGEN REGEN`` -> ``REGEN``); the scripts run it 4x.
_COLLAPSE_REPEATS = [_perl(r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])", r"\1")] * 4

# PHOENIX-2014 ``preprocess``: hypothesis lines.
_RULES_2014 = [
    *(_sed(re.escape(prefix), "") for prefix in ("loc-", "cl-", "qu-", "poss-", "lh-")),
    _sed("S0NNE", "SONNE"),
    _sed("HABEN2", "HABEN"),
    *(_sed(tag, "") for tag in ("__EMOTION__", "__PU__", "__LEFTHAND__")),
    _sed("WIE AUSSEHEN", "WIE-AUSSEHEN"),
    _sed("ZEIGEN ", "ZEIGEN-BILDSCHIRM "),
    _sed("ZEIGEN$", "ZEIGEN-BILDSCHIRM", count_all=False),
    *_LETTER_JOINING,
    _sed(r"([A-Z][A-Z])RAUM", r"\1"),
    _sed("-PLUSPLUS", ""),
    *_COLLAPSE_REPEATS,
]
_DROP_2014 = ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__")  # grep -v: lines holding these go

# PHOENIX-2014-T sign recognition: hypothesis lines (after dropping the lines below).
_HYP_RULES_2014T = [
    _sed(r" loc-([^ ]*)$", r" \1"),
    _sed(r"-PLUSPLUS$", ""),
    _sed(r" cl-([^ ]*)$", r" \1"),
    _sed(r"\b([A-Z][A-Z]*)RAUM$", r"\1"),
]
_DROP_2014T = ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__")
_DROP_TAG_LINE_2014T = re.compile(r" __[^_ ]*__$")  # grep -v: a gloss that is a whole __TAG__

# PHOENIX-2014-T sign recognition: reference (STM) lines.
_REF_RULES_2014T = [
    *(_sed(re.escape(text), "") for text in ("__LEFTHAND__ ", " __LEFTHAND__", " __EPENTHESIS__",
                                             "__EPENTHESIS__ ", " __EMOTION__", "__EMOTION__ ")),
    _sed(r"\b__[^_ ]*__\b", ""),
    _sed(r"\bloc-([^ ]*)\b", r"\1"),
    _sed(r"\bcl-([^ ]*)\b", r"\1"),
    _sed(r"\b([^ ]*)-PLUSPLUS\b", r"\1"),
    _sed(r"\b([A-Z][A-Z]*)RAUM\b", r"\1"),
    _sed("WIE AUSSEHEN", "WIE-AUSSEHEN"),
    *_LETTER_JOINING,
    *_COLLAPSE_REPEATS,
]


def check_rules(rules: str) -> str:
    """``rules`` if it names a rule set, else a ValueError listing them."""
    if rules not in RULE_SETS:
        raise ValueError(f"Unknown clean-up rules {rules!r}; expected one of {', '.join(map(repr, RULE_SETS))} "
                         "(phoenix_data.evaluation.rules_for_release(release) picks the one of a release).")
    return rules


def rules_for_release(release: str) -> str:
    """The rule set the release's evaluation uses: 2014-T for PHOENIX-2014-T, else PHOENIX-2014."""
    return PHOENIX_2014_T if release.lower().replace("phoenix-", "").replace("_", "-") in ("2014-t", "2014t") \
        else PHOENIX_2014


def _apply(line: str, rules: Sequence[Tuple["re.Pattern[str]", str, int]]) -> str:
    for pattern, replacement, count in rules:
        line = pattern.sub(replacement, line, count=count)
    return line


def _fields_after_head(line: str) -> List[str]:
    if not line.startswith(_LINE_HEAD.rstrip()):
        raise RuntimeError(f"clean-up rule changed the line head: {line!r}")  # a bug here, not user input
    return line.split()[len(_LINE_HEAD.split()):]


def clean_sentence(glosses: Sequence[str], rules: str = PHOENIX_2014) -> Tuple[str, ...]:
    """Glosses of one sentence cleaned as the release's scripts clean a whole STM line.

    With ``rules="phoenix-2014-T"`` this is exactly what the 2014-T evaluation does to a reference.
    With ``"phoenix-2014"`` the 2014 ``preprocess`` rules run on the sentence (the release itself only
    runs them on CTM lines, one gloss each): prefixes ``loc-``/``cl-``/``qu-``/``poss-``/``lh-``, the
    single-gloss rewrites (``S0NNE``, ``HABEN2``, ``ZEIGEN``, ``WIE AUSSEHEN``), ``__EMOTION__``/
    ``__PU__``/``__LEFTHAND__`` removal, letter joining, ``RAUM``/``-PLUSPLUS`` strips, repeat
    collapsing; a gloss holding ``__EPENTHESIS__`` is dropped (the script drops its CTM line).
    """
    line = _LINE_HEAD + " ".join(glosses)
    if check_rules(rules) == PHOENIX_2014_T:
        return tuple(_fields_after_head(_apply(line, _REF_RULES_2014T)))
    tokens = _fields_after_head(_apply(line, _RULES_2014))
    return tuple(t for t in tokens if not any(tag in t for tag in _DROP_2014))


def _clean_ctm_gloss(gloss: str, rules: str) -> str:
    """One hypothesis gloss as its CTM line leaves the script's sed/grep stage ('' when dropped)."""
    line = _LINE_HEAD + gloss
    if rules == PHOENIX_2014:
        line = _apply(line, _RULES_2014)
        drop: Tuple[str, ...] = _DROP_2014
    else:
        if any(tag in line for tag in _DROP_2014T) or _DROP_TAG_LINE_2014T.search(line):
            return ""
        line = _apply(line, _HYP_RULES_2014T)
        drop = ()
    if any(tag in line for tag in drop):
        return ""
    fields = _fields_after_head(line.rstrip())
    return fields[0] if fields else ""


def clean_hypothesis(glosses: Sequence[str], rules: str = PHOENIX_2014) -> Tuple[str, ...]:
    """A hypothesis cleaned as the release's script cleans its CTM (before sclite sees it).

    Each gloss is cleaned on its own line (see the module docstring); glosses left empty are dropped;
    2014-T also collapses immediate repeats. An empty result is returned empty: the scorer puts in
    the script's ``[EMPTY]`` word (see :func:`for_sclite`).
    """
    check_rules(rules)
    cleaned = [g for g in (_clean_ctm_gloss(gloss, rules) for gloss in glosses) if g]
    if rules == PHOENIX_2014_T:
        cleaned = [g for i, g in enumerate(cleaned) if i == 0 or g != cleaned[i - 1]]
    return tuple(cleaned)


def clean_reference(glosses: Sequence[str], rules: str = PHOENIX_2014) -> Tuple[str, ...]:
    """A reference as the release's script scores it: 2014 as released, 2014-T cleaned per line."""
    return tuple(glosses) if check_rules(rules) == PHOENIX_2014 else clean_sentence(glosses, rules)


def for_sclite(hypothesis: Sequence[str]) -> Tuple[str, ...]:
    """The words sclite is given for a (cleaned) hypothesis: ``[EMPTY]`` for an empty one, as the scripts do."""
    return tuple(hypothesis) if hypothesis else (EMPTY,)

