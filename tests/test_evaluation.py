"""The evaluation module without sclite: clean-up rules, alignment, files (tests/test_evaluation_sclite.py
compares with the real sclite)."""
from __future__ import annotations

import pytest

from phoenix_data import read_corpus
from phoenix_data.evaluation import (
    EMPTY,
    EvaluationFileError,
    ScliteNotFound,
    align,
    clean_hypothesis,
    clean_reference,
    clean_sentence,
    read_ctm,
    read_stm,
    references_from_stm,
    rules_for_release,
    score,
    score_with_sclite,
    stm_from_samples,
    write_ctm,
    write_stm,
)

STM_DIR = "phoenix2014-release/phoenix-2014-multisigner/evaluation"


def test_2014_rules_on_a_sentence():
    glosses = ("__ON__ loc-NORD cl-KOMMEN S0NNE HABEN2 __EMOTION__ WIE AUSSEHEN ZEIGEN A B C NORDRAUM "
               "REGEN-PLUSPLUS REGEN REGEN __PU__ __LEFTHAND__ __EPENTHESIS__ __OFF__").split()
    assert clean_sentence(glosses) == ("__ON__", "NORD", "KOMMEN", "SONNE", "HABEN", "WIE-AUSSEHEN",
                                       "ZEIGEN-BILDSCHIRM", "A+B+C", "NORD", "REGEN", "__OFF__")


def test_2014_hypotheses_are_cleaned_gloss_by_gloss_as_on_ctm_lines():
    # On CTM lines, rules spanning two glosses never fire: no letter joining, no WIE-AUSSEHEN, no collapse.
    hyp = "loc-NORD WIE AUSSEHEN A B REGEN REGEN __EMOTION__ NORDWESTRAUM ZEIGEN".split()
    assert clean_hypothesis(hyp) == ("NORD", "WIE", "AUSSEHEN", "A", "B", "REGEN", "REGEN", "NORDWEST",
                                     "ZEIGEN-BILDSCHIRM")
    assert clean_hypothesis(["__EMOTION__", "loc-"]) == ()
    assert clean_reference(["loc-NORD", "__ON__"]) == ("loc-NORD", "__ON__")  # 2014 STM: scored as released


def test_2014t_rules_differ_where_the_release_differs():
    rules = rules_for_release("PHOENIX-2014-T")
    hyp = "__ON__ loc-NORD poss-EUCH HABEN2 REGEN REGEN __PU__ REGEN SUEDRAUM IX-PLUSPLUS __LEFTHAND__".split()
    assert clean_hypothesis(hyp, rules) == ("NORD", "poss-EUCH", "HABEN2", "REGEN", "SUED", "IX")
    ref = "__ON__ WIE AUSSEHEN __HOLD__ A B loc-NORD NORD cl-KOMMEN __EMOTION__ __OFF__".split()
    assert clean_reference(ref, rules) == ("WIE-AUSSEHEN", "A+B", "NORD", "KOMMEN")
    with pytest.raises(ValueError, match="Unknown clean-up rules 'phoenix'"):
        clean_sentence(["A"], "phoenix")


def test_alignment_weights_and_counts():
    steps = align("A B C D".split(), "a X D E".split())
    # case-insensitive, and of the equal-cost paths the one sclite takes (D before S here)
    assert [op for op, _, _ in steps] == ["C", "D", "S", "C", "I"]
    result = score({"s1": "A B C D".split(), "s2": "A B".split()}, {"s1": "A X D E".split()})
    s1, s2 = result.sentences
    assert (s1.counts, s2.counts) == ((1, 1, 1), (1, 1, 0))  # s2 had no hypothesis: [EMPTY]
    assert s2.steps[-1] == ("S", "B", EMPTY)
    assert (result.errors, result.reference_words) == (5, 6) and result.wer == pytest.approx(5 / 6)
    assert result.summary() == "WER 83.33% (S 2, D 2, I 1; 6 reference words, 2 sentences)"
    assert "REF:  A B C D *\nHYP:  A * X D E\nEval:   D S   I" in s1.alignment()
    with pytest.raises(ValueError, match="1 hypothesis ids have no reference"):
        score({"s1": ["A"]}, {"nope": ["A"]})


def test_real_stm_reads_and_writes_back(phoenix_real_dir, real_corpus_tree, tmp_path):
    stm = phoenix_real_dir / STM_DIR / "phoenix2014-groundtruth-dev.stm"
    segments = read_stm(stm)
    assert len(segments) == 540 and segments[0].id == "29July_2010_Thursday_heute_default-7"
    assert segments[0].glosses[:3] == ("__ON__", "TEMPERATUR", "WIE-AUSSEHEN")
    samples = read_corpus(real_corpus_tree / "phoenix2014-release", "dev", release="multisigner")
    written = write_stm(tmp_path / "dev.stm", stm_from_samples(samples))
    ours = written.read_text().splitlines()
    assert sorted(line.lower() for line in stm.read_text().splitlines()) == [line.lower() for line in ours]
    assert references_from_stm(written) == {s.id: s.glosses for s in segments}


def test_ctm_round_trip_and_errors(tmp_path):
    hyps = {"b": ["REGEN", "SONNE"], "a": [], "c": ["X"] * 12}
    path = write_ctm(tmp_path / "h.ctm", hyps)
    assert path.read_text().splitlines()[0] == "b 1 0.000 0.010 REGEN"
    assert read_ctm(path) == {"b": ("REGEN", "SONNE"), "c": ("X",) * 12}
    (tmp_path / "bad.ctm").write_text("a 1 zero 0.01 X\n")
    with pytest.raises(EvaluationFileError, match="bad.ctm, line 1"):
        read_ctm(tmp_path / "bad.ctm")


def test_score_with_sclite_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr("phoenix_data.evaluation.sclite.find_sclite", lambda: None)
    with pytest.raises(ScliteNotFound, match="apt-get install sctk"):
        score_with_sclite({"a": ["A"]}, {"a": ["A"]})
