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


# --- DistributedDataParallel: two ranks on CPU (gloo), all traffic on 127.0.0.1 -------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, options, history_json: str) -> None:
    """One rank, as torchrun starts it (its environment variables)."""
    import dataclasses
    import json
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), GLOO_SOCKET_IFNAME="lo")
    history = train(options)
    with open(f"{history_json}.{rank}", "w") as out:
        json.dump([dataclasses.asdict(h) for h in history], out)


def test_two_ranks_memorise_the_demo_score_every_dev_sample_once_and_resume_on_one(warmed_demo, tmp_path):
    import dataclasses
    import json

    import torch.multiprocessing as mp
    from ctc_training import CHECKPOINT, _build, _evaluate, _resume

    options = demo_options(warmed_demo, out_dir=tmp_path / "ddp", num_workers=0, settings=FAKE)
    mp.spawn(_rank_main, args=(2, _free_port(), options, str(tmp_path / "history")), nprocs=2)
    histories = [json.loads((tmp_path / f"history.{rank}").read_text()) for rank in (0, 1)]
    timing = ("samples_per_s", "wait_share", "seconds")  # each rank's own clock
    untimed = [[{k: v for k, v in h.items() if k not in timing} for h in each] for each in histories]
    assert untimed[0] == untimed[1]  # the same losses and WERs on both ranks (gathered, summed)
    history = histories[0]
    assert history[-1]["train_wer"] == 0 and len(history) < options.epochs, history[-1]
    assert {h["dev_words"] for h in history} == {11}  # the demo's 2 dev sentences, each scored once
    with open(tmp_path / "ddp" / LOG_CSV, newline="") as f:  # rank 0 wrote the log, once per epoch
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [h["epoch"] for h in history]
    # the logged dev WER is phoenix_data.evaluation's score of every dev hypothesis: decode in one process
    run = _build(options)
    assert _resume(tmp_path / "ddp" / CHECKPOINT, options, run) == len(history)
    dev, _ = _evaluate(run)
    last = history[-1]
    assert (dev.wer, dev.substitutions, dev.deletions, dev.insertions) == (
        last["dev_wer"], last["dev_sub"], last["dev_del"], last["dev_ins"])
    # a checkpoint of two ranks resumes on one
    more = train(dataclasses.replace(options, resume=True, epochs=len(history) + 1, stop_at_train_wer_zero=False))
    assert len(more) == len(history) + 1
    assert [dataclasses.asdict(h) for h in more[:len(history)]] == history
