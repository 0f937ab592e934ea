"""Score with the real NIST sclite, as the releases' scripts do, into the same result structure.

Debian/Ubuntu: ``apt-get install sctk`` installs it as ``sctk sclite``; a source build of SCTK
(https://github.com/usnistgov/SCTK) installs ``sclite``. Both are found on PATH.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from .cleanup import clean_hypothesis, clean_reference, for_sclite
from .files import StmSegment, write_ctm, write_stm
from .wer import CORRECT, DELETION, INSERTION, SUBSTITUTION, SentenceScore, Step, WerResult, _fold

INSTALL_HINT = ("install NIST SCTK: 'apt-get install sctk' (Debian/Ubuntu; then 'sctk sclite'), or build "
                "https://github.com/usnistgov/SCTK and put 'sclite' on PATH")
_PATH = re.compile(r'<PATH id="[^"]*" word_cnt="\d+" file="([^"]*)"[^>]*>\n(.*?)\n?</PATH>', re.S)
_STEP = re.compile(r'(?:^|:)([CSDI]),(?:"([^"]*)")?,(?:"([^"]*)")?(?:,[^:]*)?')
_OPS = {"C": CORRECT, "S": SUBSTITUTION, "D": DELETION, "I": INSERTION}


class ScliteNotFound(FileNotFoundError):
    """No sclite on this machine."""


def find_sclite() -> Optional[List[str]]:
    """The command that runs sclite here (``["sclite"]`` or ``["sctk", "sclite"]``), or None."""
    if shutil.which("sclite"):
        return ["sclite"]
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    return None


def score_with_sclite(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, Sequence[str]],
                      rules: Optional[str] = "phoenix-2014", command: Optional[Sequence[str]] = None,
                      workdir: Optional[str] = None) -> WerResult:
    """Like :func:`phoenix_data.evaluation.score`, but the alignment is done by sclite itself.

    The glosses are cleaned in Python (the same clean-up as :func:`score`), written as the STM and
    CTM the release's script hands to sclite (sorted by id, ``[EMPTY]`` for an empty hypothesis),
    and scored with ``sclite -h hyp.ctm ctm -r ref.stm stm -f 0 -o sgml``; the per-sentence
    alignments are read back from its SGML report. Raises ScliteNotFound when sclite is missing.
    """
    command = list(command) if command is not None else find_sclite()
    if not command:
        raise ScliteNotFound(f"sclite is not installed: {INSTALL_HINT}.")
    unknown = sorted(set(hypotheses) - set(references))
    if unknown:
        raise ValueError(f"{len(unknown)} hypothesis ids have no reference, e.g. {unknown[:3]}.")
    refs = {k: tuple(clean_reference(v, rules) if rules else v) for k, v in references.items()}
    hyps = {k: for_sclite(clean_hypothesis(hypotheses.get(k, ()), rules) if rules else hypotheses.get(k, ()))
            for k in references}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        stm = write_stm(Path(tmp) / "ref.stm", [StmSegment(k, "signer", v) for k, v in refs.items()])
        ctm = write_ctm(Path(tmp) / "hyp.ctm", hyps)
        run = subprocess.run([*command, "-h", str(ctm), "ctm", "-r", str(stm), "stm", "-f", "0",
                              "-o", "sgml", "-O", tmp], capture_output=True, text=True)
        sgml = Path(tmp) / "hyp.ctm.sgml"
        if run.returncode != 0 or not sgml.is_file():
            raise RuntimeError(f"{' '.join(command)} failed (exit {run.returncode}): {run.stderr.strip()[-2000:]}")
        by_folded_id = _parse_sgml(sgml.read_text(encoding="utf-8", errors="replace"))
    by_id = {k: by_folded_id[_fold(k)] for k in references if _fold(k) in by_folded_id}  # sclite folds ids too
    missing = sorted(set(references) - set(by_id))
    if missing:
        raise RuntimeError(f"sclite reported no alignment for {len(missing)} sentences, e.g. {missing[:3]}.")
    return WerResult(tuple(SentenceScore(k, by_id[k]) for k in references))


def _parse_sgml(text: str) -> dict:
    """``{sentence id: steps}`` from sclite's SGML report (words as sclite prints them: case-folded)."""
    result = {}
    for file_id, body in _PATH.findall(text):
        steps: List[Step] = [(_OPS[op], ref if op != "I" else None, hyp if op != "D" else None)
                             for op, ref, hyp in _STEP.findall(body.strip())]
        result[file_id] = tuple(steps)
    return result
