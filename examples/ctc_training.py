"""A CTC training loop over the landmark cache, scored with the release's WER after every epoch.

Uses only the public API: ``PhoenixLandmarks`` (+ ``ds.vocab``), ``LengthBucketBatchSampler``,
``collate_ctc``, and :mod:`phoenix_data.evaluation`. ``examples/train_ctc.py`` is its command line.
Each epoch is seeded from ``seed`` and its number, so a run resumed from a checkpoint gives the
same losses and WERs as one that was never interrupted.

Under ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel (``ctc_distributed``): each rank
reads its share of each epoch's batches (``LengthBucketBatchSampler`` takes the ranks from
``torch.distributed``) with its own DataLoader workers; each rank decodes a share of dev, the hypotheses are
gathered and every dev sample is scored once; rank 0 alone writes the log and the checkpoint (the
unwrapped model's weights: a checkpoint of N ranks resumes on any number). The loss and samples/s are
summed over the ranks; the DataLoader wait share is rank 0's.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import ctc_distributed as distributed
import torch
from ctc_model import CtcRecognizer, greedy_decode
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from phoenix_data import (
    HolisticSettings,
    LengthBucketBatchSampler,
    PhoenixLandmarks,
    Vocabulary,
    collate_ctc,
    read_corpus,
)
from phoenix_data.evaluation import WerResult, rules_for_release, score
from phoenix_data.extract import ExtractorSpec
from phoenix_data.transforms import Normalize

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "train_log.csv"
DEMO_RELEASE = "phoenix-2014-multisigner"
CHECKPOINT_FORMAT = "phoenix_data.train_ctc/1"


@dataclass
class TrainOptions:
    """One training run. ``out_dir`` receives ``checkpoint.pt`` and ``train_log.csv``."""

    root: Path
    cache: Path
    out_dir: Path
    release: Optional[str] = None
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    hidden: int = 256
    dropout: float = 0.2
    frame_repeat: int = 1
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when there is one
    threads: Optional[int] = None  # torch intra-op threads; None: torch's default
    cleanup: bool = True  # train on glosses cleaned by the release's evaluation rules
    resume: bool = False
    readonly: bool = False  # a finished cache (a copy without lock.mdb, a read-only path): a miss raises
    eval_train: bool = False  # also score the train split (eval mode) after each epoch
    stop_at_train_wer_zero: bool = False  # the demo's memorisation check
    settings: Optional[ExtractorSpec] = None  # what the cache holds; None: MediaPipe Holistic's defaults


@dataclass
class EpochStats:
    """What one epoch measured. WERs are fractions; ``wait_share`` is the share of the training
    loop's wall time spent waiting for the DataLoader."""

    epoch: int
    train_loss: float
    dev_wer: float
    dev_sub: int
    dev_del: int
    dev_ins: int
    dev_words: int
    train_wer: Optional[float]
    samples_per_s: float
    wait_share: float
    seconds: float


@dataclass
class _Run:
    model: torch.nn.Module  # the module trained: DistributedDataParallel(module) with several ranks
    module: CtcRecognizer
    optimizer: torch.optim.Optimizer
    vocab: Vocabulary
    rules: str
    train_loader: DataLoader
    train_eval_loader: Optional[DataLoader]
    dev_loader: DataLoader
    sampler: LengthBucketBatchSampler
    device: torch.device
    joined: bool = False  # this run joined the process group (and leaves it at the end)
    history: List[EpochStats] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def demo_options(demo_dir: Path, out_dir: Optional[Path] = None, **overrides) -> TrainOptions:
    """Options that memorise the demo's three train videos (8-14 frames, up to 11 glosses: each frame
    is repeated twice, as CTC needs a frame per gloss)."""
    demo_dir = Path(demo_dir)
    options = TrainOptions(root=demo_dir / "phoenix2014-release", cache=demo_dir / "cache", release=DEMO_RELEASE,
                           out_dir=Path(out_dir) if out_dir else demo_dir / "train_ctc", epochs=300, batch_size=3,
                           lr=1e-2, hidden=64, dropout=0.0, frame_repeat=2, eval_train=True, threads=1,
                           stop_at_train_wer_zero=True)
    return dataclasses.replace(options, **overrides)


def prepare_demo(demo_dir: Path, workers: int = 2, settings: Optional[ExtractorSpec] = None) -> None:
    """Build the demo tree under ``demo_dir`` and warm its 2014 multisigner cache (``demo_dir/cache``)."""
    from phoenix_data.demo import build_demo  # noqa: PLC0415 - only for --demo
    from phoenix_data.warm import WarmOptions, warm  # noqa: PLC0415

    roots = build_demo(demo_dir)
    outcome = warm(WarmOptions(root=roots[DEMO_RELEASE], cache=Path(demo_dir) / "cache", settings=_spec(settings),
                               workers=workers, progress_bar=False, heartbeat=0))
    if outcome.failed:
        raise RuntimeError(f"warming the demo cache failed for {len(outcome.failed)} samples: {outcome.failed[:2]}")


def _spec(settings: Optional[ExtractorSpec]) -> ExtractorSpec:
    return settings if settings is not None else HolisticSettings()


def _loaders(options: TrainOptions, vocab: Vocabulary) -> Tuple[PhoenixLandmarks, DataLoader, Optional[DataLoader],
                                                                  DataLoader, LengthBucketBatchSampler]:
    """The train set, and the loaders over it (batches by length; in order, to evaluate) and over dev."""
    def dataset(split: str) -> PhoenixLandmarks:
        return PhoenixLandmarks(options.root, split, cache=options.cache, release=options.release, vocab=vocab,
                                settings=_spec(options.settings), transform=Normalize(mode="frame"),
                                readonly=options.readonly)

    # Own generators: a loader draws its workers' base seed when its iterator is made, which on a
    # resumed run happens at another epoch; from the global RNG that would shift every dropout mask.
    common = dict(collate_fn=collate_ctc, num_workers=options.num_workers,
                  persistent_workers=options.num_workers > 0, pin_memory=torch.cuda.is_available(),
                  generator=torch.Generator().manual_seed(options.seed))
    train_ds = dataset("train")
    sampler = LengthBucketBatchSampler(train_ds.lengths(), options.batch_size, seed=options.seed)
    train = DataLoader(train_ds, batch_sampler=sampler, **common)
    # evaluation: each rank decodes its own share, every sample on one rank
    train_eval = DataLoader(distributed.shard(train_ds), batch_size=options.batch_size, **common) \
        if options.eval_train else None
    dev = DataLoader(distributed.shard(dataset("dev")), batch_size=options.batch_size, **common)
    return train_ds, train, train_eval, dev, sampler


def _build(options: TrainOptions) -> _Run:
    train_samples = read_corpus(options.root, "train", release=options.release)
    vocab = Vocabulary.from_samples(train_samples, cleanup=options.cleanup)
    device, joined = distributed.start(resolve_device(options.device))  # before the sampler: it reads the ranks
    train_ds, train, train_eval, dev, sampler = _loaders(options, vocab)
    torch.manual_seed(options.seed)  # the initial weights: the same on every rank
    num_points = train_ds.settings.num_points  # not ds[0]: a miss would run MediaPipe in this process
    module = CtcRecognizer(num_points, len(vocab), options.hidden, options.dropout, options.frame_repeat).to(device)
    model: torch.nn.Module = module
    if distributed.rank_and_world()[1] > 1:
        model = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    rules = rules_for_release(train_ds.release.name)
    return _Run(model, module, optimizer, vocab, rules, train, train_eval, dev, sampler, device, joined)


def _config(options: TrainOptions, run: _Run) -> Dict:
    keys = ("release", "batch_size", "lr", "hidden", "dropout", "frame_repeat", "seed", "cleanup")
    return {**{k: getattr(options, k) for k in keys}, "vocab": run.vocab.tokens}


def save_checkpoint(path: Path, options: TrainOptions, run: _Run, epoch: int) -> None:
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "config": _config(options, run),
             "model": run.module.state_dict(), "optimizer": run.optimizer.state_dict(),
             "history": [dataclasses.asdict(h) for h in run.history]}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint intact


def _resume(path: Path, options: TrainOptions, run: _Run) -> int:
    state = torch.load(path, map_location=run.device, weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a phoenix_data CTC checkpoint (format {state.get('format')!r}).")
    saved, now = state["config"], _config(options, run)
    differ = [k for k in now if saved.get(k) != now[k]]
    if differ:
        raise ValueError(f"{path} was trained with other settings ({', '.join(differ)} differ); resume with "
                         "the same options, or pick another --out directory.")
    run.module.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.history = [EpochStats(**h) for h in state["history"]]
    return int(state["epoch"])


def _train_epoch(run: _Run, epoch: int) -> Tuple[float, float, float, int]:
    """One pass over train: (mean loss per sample, seconds waiting for batches, seconds, samples)."""
    run.model.train()
    run.sampler.set_epoch(epoch)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    loss_sum = waited = 0.0
    samples = 0
    start = time.perf_counter()
    batches = iter(run.train_loader)
    while True:
        before = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - before
        if batch is None:
            break
        log_probs, lengths = run.model(batch["landmarks"].to(run.device),
                                       batch["lengths"].to(run.device))
        loss = ctc(log_probs, batch["targets"].to(run.device), lengths, batch["target_lengths"].to(run.device))
        run.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 5.0)
        run.optimizer.step()
        loss_sum += loss.item() * len(batch["id"])
        samples += len(batch["id"])
    loss_sum, total = distributed.summed(loss_sum, samples)  # over the ranks
    return loss_sum / max(total, 1), waited, time.perf_counter() - start, int(total)


@torch.no_grad()
def decode_split(model: CtcRecognizer, loader: DataLoader, vocab: Vocabulary,
                 device: torch.device) -> Tuple[Dict[str, List[str]], Dict[str, Tuple[str, ...]]]:
    """Greedy hypotheses and the corpus glosses of every sample: ``({id: glosses}, {id: glosses})``,
    gathered from every rank's share; each sample exactly once (checked)."""
    model.eval()
    hypotheses, references = {}, {}
    for batch in loader:
        log_probs, lengths = model(batch["landmarks"].to(device),
                                   batch["lengths"].to(device))
        for sample_id, ids, text in zip(batch["id"], greedy_decode(log_probs, lengths), batch["gloss_text"]):
            hypotheses[sample_id] = vocab.decode(ids)
            references[sample_id] = tuple(text.split())
    hypotheses, references = distributed.gathered(hypotheses), distributed.gathered(references)
    expected = len(distributed.whole(loader.dataset))  # type: ignore[arg-type]
    if len(hypotheses) != expected:  # scored as it is, the WER would silently leave samples out
        raise RuntimeError(f"{len(hypotheses)} of {expected} samples were decoded; expected every sample on "
                           "one rank (shares cut by ctc_distributed.shard).")
    return hypotheses, references


def _evaluate(run: _Run) -> Tuple[WerResult, Optional[float]]:
    hyps, refs = decode_split(run.module, run.dev_loader, run.vocab, run.device)
    dev = score(refs, hyps, rules=run.rules)  # as the release's evaluation scores dev
    train_wer = None
    if run.train_eval_loader is not None:  # against the training targets themselves
        hyps, refs = decode_split(run.module, run.train_eval_loader, run.vocab, run.device)
        train_wer = score({k: run.vocab.prepare(v) for k, v in refs.items()}, hyps, rules=None).wer
    return dev, train_wer


def write_log(path: Path, history: Iterable[EpochStats]) -> None:
    rows = [dataclasses.asdict(h) for h in history]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in dataclasses.fields(EpochStats)])
        writer.writeheader()
        writer.writerows(rows)


def train(options: TrainOptions, on_epoch: Optional[Callable[[EpochStats], None]] = None) -> List[EpochStats]:
    """Train (or resume) and return every epoch's stats; ``on_epoch`` is called after each epoch."""
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)  # on a busy machine, fewer threads than cores is faster
    run = _build(options)
    try:
        return _epochs(options, run, out, on_epoch)
    finally:
        distributed.stop(run.joined)


def _epochs(options: TrainOptions, run: _Run, out: Path, on_epoch: Optional[Callable[[EpochStats], None]]
            ) -> List[EpochStats]:
    checkpoint = out / CHECKPOINT
    first = 1
    if options.resume and checkpoint.is_file():
        first = _resume(checkpoint, options, run) + 1
        log.info("resumed from %s at epoch %d", checkpoint, first)
    for epoch in range(first, options.epochs + 1):
        if options.stop_at_train_wer_zero and run.history and run.history[-1].train_wer == 0:
            break
        torch.manual_seed(options.seed * 100_003 + epoch)  # dropout etc.: independent of what ran before
        loss, waited, seconds, samples = _train_epoch(run, epoch)
        dev, train_wer = _evaluate(run)
        stats = EpochStats(epoch, loss, dev.wer, dev.substitutions, dev.deletions, dev.insertions,
                           dev.reference_words, train_wer, samples / seconds if seconds else 0.0,
                           waited / seconds if seconds else 0.0, seconds)
        run.history.append(stats)
        if distributed.is_main():
            save_checkpoint(checkpoint, options, run, epoch)
            write_log(out / LOG_CSV, run.history)
            if on_epoch is not None:
                on_epoch(stats)
    distributed.barrier()  # the last checkpoint is written before any rank returns
    return run.history
