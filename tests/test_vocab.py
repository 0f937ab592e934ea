"""The gloss vocabulary."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix_data.corpus import Sample
from phoenix_data.vocab import BLANK, UNK, Vocabulary, cleanup_glosses


def sample(glosses: str) -> Sample:
    return Sample("id", "Signer01", tuple(glosses.split()), Path("."), None, "train", "r")


TRAIN = [sample("__ON__ REGEN loc-NORD SONNE"), sample("SONNE WOLKE __EMOTION__ A B C")]


def test_blank_first_unk_second_then_train_glosses():
    vocab = Vocabulary.from_samples(TRAIN)
    assert vocab.tokens[:2] == [BLANK, UNK] and len(vocab) == 2 + 9
    ids = vocab.encode(["REGEN", "NEBEL", "SONNE"])
    assert ids[1] == 1 and 0 not in ids
    assert vocab.decode(ids) == ["REGEN", UNK, "SONNE"]
    assert vocab.decode([0, ids[0], 0]) == ["REGEN"]
    assert vocab.decode([0], strip_blank=False) == [BLANK]


def test_save_and_load(tmp_path):
    vocab = Vocabulary.from_samples(TRAIN, cleanup=True)
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
    (tmp_path / "bad.json").write_text(json.dumps({"tokens": ["A"]}))
    with pytest.raises(ValueError, match="not a phoenix_data vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


def test_cleanup_follows_the_evaluation_rules():
    assert cleanup_glosses("loc-NORD cl-KOMMEN qu-WAS poss-SEIN lh-IX REGEN".split()) == (
        "NORD", "KOMMEN", "WAS", "SEIN", "IX", "REGEN")
    assert cleanup_glosses("__EMOTION__ REGEN __PU__ __LEFTHAND__ SONNE".split()) == ("REGEN", "SONNE")
    assert cleanup_glosses("A B C REGEN D".split()) == ("A+B+C", "REGEN", "D")
    assert cleanup_glosses("REGEN REGEN loc-REGEN SONNE".split()) == ("REGEN", "SONNE")


def test_cleanup_is_off_by_default_and_applies_to_encode():
    raw, clean = Vocabulary.from_samples(TRAIN), Vocabulary.from_samples(TRAIN, cleanup=True)
    assert "loc-NORD" in raw and "loc-NORD" not in clean and "NORD" in clean
    assert clean.decode(clean.encode(["loc-NORD", "__EMOTION__"])) == ["NORD"]


def test_oov_rate():
    vocab = Vocabulary.from_samples(TRAIN)
    assert vocab.oov_rate([sample("REGEN NEBEL"), sample("SONNE HAGEL")]) == 0.5


def test_cleanup_is_the_full_release_rule_set_chosen_by_release():
    # rules the former subset lacked: single-gloss rewrites, RAUM and -PLUSPLUS strips, WIE AUSSEHEN
    assert cleanup_glosses("S0NNE HABEN2 NORDRAUM REGEN-PLUSPLUS WIE AUSSEHEN ZEIGEN".split()) == (
        "SONNE", "HABEN", "NORD", "REGEN", "WIE-AUSSEHEN", "ZEIGEN-BILDSCHIRM")
    t_samples = [Sample("id", "Signer01", ("__ON__", "poss-EUCH", "REGEN"), Path("."), None, "train",
                        "PHOENIX-2014-T")]
    vocab = Vocabulary.from_samples(t_samples, cleanup=True)
    assert vocab.rules == "phoenix-2014-T" and vocab.tokens[2:] == ["REGEN", "poss-EUCH"]
    assert Vocabulary.from_samples(TRAIN, cleanup=True).rules == "phoenix-2014"
