"""PHOENIX-faithful scoring: the releases' gloss clean-up, sclite-equivalent WER, CTM/STM files.

    from phoenix_data.evaluation import score, references_from_stm
    result = score(references_from_stm("phoenix2014-groundtruth-dev.stm"), hypotheses)
    print(result.summary())          # WER 25.00% (S 3, D 1, I 1; ...)

No torch here. ``score_with_sclite`` runs NIST sclite itself when it is installed.
"""
from .cleanup import (
                      EMPTY,
                      PHOENIX_2014,
                      PHOENIX_2014_T,
                      RULE_SETS,
                      clean_hypothesis,
                      clean_reference,
                      clean_sentence,
                      rules_for_release,
)
from .files import (
                      EvaluationFileError,
                      StmSegment,
                      read_ctm,
                      read_stm,
                      references_from_stm,
                      stm_from_samples,
                      write_ctm,
                      write_stm,
)
from .sclite import ScliteNotFound, find_sclite, score_with_sclite
from .wer import SentenceScore, WerResult, align, score

__all__ = ["EMPTY", "PHOENIX_2014", "PHOENIX_2014_T", "RULE_SETS", "clean_hypothesis", "clean_reference",
           "clean_sentence", "rules_for_release", "EvaluationFileError", "StmSegment", "read_ctm", "read_stm",
           "references_from_stm", "stm_from_samples", "write_ctm", "write_stm", "ScliteNotFound", "find_sclite",
           "score_with_sclite", "SentenceScore", "WerResult", "align", "score"]
