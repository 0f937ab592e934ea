"""The CTC training example: decoding, normalisation, the demo memorised, resume = uninterrupted."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from ctc_model import greedy_decode
from ctc_training import LOG_CSV, demo_options, prepare_demo, train

from phoenix_data.extract.fake import FakeExtractorSettings

FAKE = FakeExtractorSettings()


@pytest.fixture(scope="session")
def warmed_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo tree with its 2014 multisigner cache warmed by the fake extractor, in DataLoader workers:
    the loop's logic does not depend on the estimator (the fake's landmarks differ frame by frame)."""
    demo_dir = tmp_path_factory.mktemp("train-demo")
    prepare_demo(demo_dir, workers=2, settings=FAKE)
    return demo_dir


def test_greedy_decoding_on_hand_made_logits():
    paths = [[1, 1, 0, 1, 2, 2, 0, 3], [0, 3, 3, 2, 1, 1, 1, 1]]  # sample 2 has 3 frames; the rest is padding
    log_probs = torch.full((8, 2, 4), -10.0)
    for b, path in enumerate(paths):
        for t, c in enumerate(path):
            log_probs[t, b, c] = 0.0
    assert greedy_decode(log_probs, torch.tensor([8, 3])) == [[1, 1, 2, 3], [3]]
    assert greedy_decode(log_probs, torch.tensor([0, 1])) == [[], []]


def test_demo_memorises_its_train_split(warmed_demo, tmp_path):
    options = demo_options(warmed_demo, out_dir=tmp_path / "run", num_workers=2, settings=FAKE)
    history = train(options)
    assert history[-1].train_wer == 0, f"train WER {history[-1].train_wer} after {len(history)} epochs"
    assert len(history) < options.epochs and history[0].train_wer > 0.5
    assert history[-1].train_loss < history[0].train_loss / 4
    assert history[-1].dev_words == 11  # the demo's 2 dev sentences, scored as the release scores them
    assert all(0 <= h.wait_share <= 1 and h.samples_per_s > 0 for h in history)
    rows = list(csv.DictReader(open(tmp_path / "run" / LOG_CSV)))
    assert len(rows) == len(history) and float(rows[-1]["train_wer"]) == 0


def test_resume_gives_the_uninterrupted_run(warmed_demo, tmp_path):
    def run(out: str, epochs: int, resume: bool = False):
        options = demo_options(warmed_demo, out_dir=tmp_path / out, epochs=epochs, resume=resume, num_workers=2,
                               settings=FAKE,
                               dropout=0.3, stop_at_train_wer_zero=False)  # dropout: RNG use is resumed too
        return train(options)

    whole = run("whole", 4)
    run("parts", 2)
    resumed = run("parts", 4, resume=True)
    key = lambda h: (h.epoch, h.train_loss, h.train_wer, h.dev_wer, h.dev_sub, h.dev_del, h.dev_ins)  # noqa: E731
    assert [key(h) for h in resumed] == [key(h) for h in whole]
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"other settings \(hidden, dropout differ\)"):
        train(demo_options(warmed_demo, out_dir=tmp_path / "parts", epochs=5, resume=True, hidden=32, settings=FAKE))
