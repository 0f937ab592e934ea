#!/usr/bin/env python
"""Train the example CTC recogniser on cached landmarks; dev WER (the release's scoring) every epoch.

    python examples/train_ctc.py --root /data/phoenix2014-release --release multisigner \\
        --cache /data/cache/landmarks --out runs/ctc --epochs 30
    python examples/train_ctc.py --demo            # builds and warms the demo tree, memorises its train split
    torchrun --nproc_per_node=2 examples/train_ctc.py ...    # DistributedDataParallel (docs/distributed.md)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import ctc_distributed as distributed
from ctc_training import EpochStats, TrainOptions, demo_options, prepare_demo, resolve_device, train

from phoenix_data.extract import ExtractorSpec


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, help="release folder or a parent of it")
    p.add_argument("--cache", type=Path, help="the LMDB landmark cache (warm it first: phoenix-warm-cache)")
    p.add_argument("--out", type=Path, help="where checkpoint.pt and train_log.csv go")
    p.add_argument("--release", help="multisigner, si5 or 2014-T when --root holds several")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-cleanup", action="store_true", help="train on the raw glosses")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--readonly", action="store_true",
                   help="open a finished cache read-only (a copy without lock.mdb, a read-only path)")
    p.add_argument("--demo", action="store_true", help="build + warm the demo tree and memorise its train split")
    p.add_argument("--demo-dir", type=Path, help="where --demo builds (default: a new temporary folder)")
    args = p.parse_args(argv)
    if not args.demo and not (args.root and args.cache and args.out):
        p.error("--root, --cache and --out are needed (or --demo)")
    if args.demo and args.demo_dir is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        p.error("--demo under torchrun needs --demo-dir DIR: one folder every rank sees")
    return args


def options_from(args: argparse.Namespace, spec: Optional[ExtractorSpec] = None) -> TrainOptions:
    if args.demo:
        demo_dir = args.demo_dir or Path(tempfile.mkdtemp(prefix="phoenix-demo-"))
        if distributed.is_main():  # one rank builds and warms; the others wait for it
            print(f"demo tree: {demo_dir} (building and warming its cache)", flush=True)
            prepare_demo(demo_dir, workers=max(args.num_workers, 1), settings=spec)
        distributed.barrier()
        return demo_options(demo_dir, out_dir=args.out, num_workers=args.num_workers, seed=args.seed,
                            resume=args.resume, device=args.device, readonly=args.readonly, settings=spec)
    return TrainOptions(root=args.root, cache=args.cache, out_dir=args.out, release=args.release,
                        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
                        dropout=args.dropout, num_workers=args.num_workers, threads=args.threads,
                        seed=args.seed, device=args.device, cleanup=not args.no_cleanup, resume=args.resume,
                        readonly=args.readonly, settings=spec)


def print_epoch(stats: EpochStats) -> None:
    train_wer = "" if stats.train_wer is None else f" | train WER {100 * stats.train_wer:5.1f}%"
    print(f"epoch {stats.epoch:3d} | loss {stats.train_loss:7.3f}{train_wer} | dev WER {100 * stats.dev_wer:5.1f}% "
          f"(S {stats.dev_sub}, D {stats.dev_del}, I {stats.dev_ins} / {stats.dev_words}) | "
          f"{stats.samples_per_s:6.1f} samples/s | waiting for data {100 * stats.wait_share:4.1f}%", flush=True)


def main(argv: Optional[Sequence[str]] = None, spec: Optional[ExtractorSpec] = None) -> int:
    """The command; ``spec``: another extractor than MediaPipe Holistic (tests: the fake), as the
    package's commands take it."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _, joined = distributed.start(resolve_device(args.device))  # under torchrun: join before the demo is built
    try:
        main_rank = distributed.is_main()
        options = options_from(args, spec)
        history = train(options, on_epoch=print_epoch)
    finally:
        distributed.stop(joined)
    if not main_rank:
        return 0
    print(f"log: {Path(options.out_dir) / 'train_log.csv'}  checkpoint: {Path(options.out_dir) / 'checkpoint.pt'}")
    if args.demo and not (history and history[-1].train_wer == 0):
        print(f"demo: train WER did not reach 0 within {options.epochs} epochs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
