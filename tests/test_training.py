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


@pytest.mark.slow
def test_demo_memorises_its_train_split(warmed_demo, tmp_path):
    options = demo_options(warmed_demo, out_dir=tmp_path / "run", num_workers=0, settings=FAKE)  # workers: below
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


@pytest.mark.slow
def test_two_ranks_learn_the_demo_score_every_dev_sample_once_and_resume_on_one(warmed_demo, tmp_path):
    """20 epochs on two ranks (memorising takes ~130 and is the one-process test's: the loop is the same)."""
    import dataclasses
    import json

    import torch.multiprocessing as mp
    from ctc_training import CHECKPOINT, _build, _evaluate, _resume, decode_split
    from torch.utils.data import DataLoader, Subset

    from phoenix_data import collate_ctc

    options = demo_options(warmed_demo, out_dir=tmp_path / "ddp", num_workers=0, settings=FAKE, epochs=20,
                           stop_at_train_wer_zero=False)
    mp.start_processes(_rank_main, args=(2, _free_port(), options, str(tmp_path / "history")), nprocs=2,
                       start_method=mp.get_start_method())  # the platform's: fork on Linux, spawn on macOS
    histories = [json.loads((tmp_path / f"history.{rank}").read_text()) for rank in (0, 1)]
    timing = ("samples_per_s", "wait_share", "seconds")  # each rank's own clock
    untimed = [[{k: v for k, v in h.items() if k not in timing} for h in each] for each in histories]
    assert untimed[0] == untimed[1]  # the same losses and WERs on both ranks (gathered, summed)
    history = histories[0]
    assert len(history) == options.epochs
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2.5, history  # one process: 7.2 -> 2.6
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
    with pytest.raises(RuntimeError, match=r"1 of 2 samples were decoded"):  # a lost share is not scored silently
        decode_split(run.module, DataLoader(Subset(run.dev_loader.dataset, [0]), collate_fn=collate_ctc),
                     run.vocab, run.device)
    # a checkpoint of two ranks resumes on one
    more = train(dataclasses.replace(options, resume=True, epochs=len(history) + 1))
    assert len(more) == len(history) + 1
    assert [dataclasses.asdict(h) for h in more[:len(history)]] == history


def test_shares_of_an_evaluation_set_cover_it_once_and_overlaps_are_refused():
    from ctc_distributed import merged, share

    for world in (1, 2, 3):
        for size in (0, 2, 7):
            assert sorted(i for rank in range(world) for i in share(size, rank, world)) == list(range(size))
    assert merged([{"a": 1}, {"b": 2}, {}]) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match=r"rank 2 sent 1 samples an earlier rank sent too \(a\)"):
        merged([{"a": 1}, {"b": 2}, {"a": 1, "c": 3}])  # merged silently, "a" would be scored once


def test_demo_under_torchrun_needs_one_demo_dir_for_every_rank(monkeypatch, capsys):
    from train_ctc import parse_args

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        parse_args(["--demo"])
    assert "--demo under torchrun needs --demo-dir DIR" in capsys.readouterr().err
    assert parse_args(["--demo", "--demo-dir", "/tmp/x"]).demo_dir == Path("/tmp/x")


@pytest.mark.slow
def test_torchrun_resumes_a_one_rank_checkpoint_on_two_ranks_from_a_read_only_copy_of_the_cache(warmed_demo, tmp_path):
    """The command itself under torchrun (its environment, rank 0 alone printing), each rank with a DataLoader
    worker reading a copy of the cache shipped as docs/distributed.md says: data.mdb alone, opened read-only."""
    import os
    import shutil
    import subprocess
    import sys

    from ctc_training import DEMO_RELEASE, TrainOptions
    from helpers import REPO_ROOT, RUN_TIMEOUT

    copy = tmp_path / "cache"
    copy.mkdir()
    shutil.copy(warmed_demo / "cache" / "data.mdb", copy / "data.mdb")
    root, out = warmed_demo / "phoenix2014-release", tmp_path / "run"
    first = train(TrainOptions(root=root, cache=copy, out_dir=out, release=DEMO_RELEASE, epochs=1, batch_size=3,
                               hidden=32, num_workers=0, threads=1, readonly=True, settings=FAKE))
    script = tmp_path / "train_fake.py"  # the command with the fake extractor (its test hook)
    script.write_text("import sys\nfrom train_ctc import main\nfrom phoenix_data.extract.fake import "
                      "FakeExtractorSettings\nsys.exit(main(spec=FakeExtractorSettings()))\n")
    paths = [str(REPO_ROOT / "examples"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", str(script), "--root", str(root), "--release", DEMO_RELEASE,
               "--cache", str(copy), "--out", str(out), "--epochs", "2", "--batch-size", "3", "--hidden", "32",
               "--num-workers", "1", "--threads", "1", "--readonly", "--resume"]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert len(printed) == 1 and printed[0].startswith("epoch   2 "), done.stdout  # rank 0 alone, epoch 2 alone
    assert "/ 11)" in printed[0]  # both dev sentences scored, each once
    with open(out / LOG_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert float(rows[0]["train_loss"]) == first[0].train_loss and int(rows[1]["dev_words"]) == 11
    assert not (copy / "lock.mdb").exists()  # read without LMDB's lock file, as on a read-only path
