#!/usr/bin/env python
"""Cached epochs against the decode limit: does the DataLoader keep a GPU fed?

    python benchmarks/bench_loader.py            # 600 samples of ~140 frames, 2 rounds (3-10 min on 2 cores)
    python benchmarks/bench_loader.py --quick    # smoke run

Data: 600 synthetic LandmarkRecords (T ~ 140 +- 45, clipped to 16..299, as PHOENIX-2014 train; hands in ~70%
of frames) written with ``LandmarkCache.put`` under the fake extractor's settings, and a matching 2014-T
corpus CSV (no frames: every sample is cached). The Dataset is opened ``readonly=True`` with those settings.

- ``dtype=torch.float16`` rows: the same without transforms, landmarks left as the cache stores them.
- "no batch memory reused" rows: every batch written into new memory (the reuse of earlier batches'
  memory switched off, in the main process and in the workers): its gain, measured in the same run.
- decode limit: one process, torch on 1 thread, each record read (``LandmarkCache.get(key, float16=True)``)
  and its landmarks made a float32 tensor: samples/s of one core, after one pass not counted (the
  process's first touch of the records' pages, as the epochs' warm-up). The 2-core limit is twice that. Also
  measured, as context (not a goal's measure): the same decode with each sample then written to memory
  beyond the caches, as a batch's rows are (the decode limit's tensor is dropped while still in the
  cache; a batch's values must reach memory); and two decoding processes at once (started on one
  clock), the sum of their rates: what two cores of this machine really give.
- epochs: ``DataLoader(ds, batch_sampler=LengthBucketBatchSampler(ds.lengths(), B, seed=0),
  collate_fn=collate_ctc, num_workers=W)`` for W in 0, 2 and B in 8, 32, without transforms and with the
  typical pipeline (SelectPoints, Normalize, Mirror, RandomAffine, TimeWarp), timed from iter() to the last
  batch; workers persistent (``persistent_workers=True``) and the first five epochs, which start them and
  fill their batch memory, not counted: the steady state of a long training run. (A worker's pool of
  batch memory reaches its lasting mix of slot sizes over the first epochs: with 600 samples, batch 32,
  new slots of 33-67 MB were still taken in epochs 2 and 3, each page a fault on its first write.) The
  main process keeps torch's default threads, as a training script does. One more row:
  ``num_workers=2``, batch 32 with ``prefetch_factor=4`` (4 batches in flight per worker instead of 2:
  bucketed batches differ in cost, and with batches delivered in order a worker done with a cheap one
  otherwise waits for its slot).

Each configuration runs in its own process, rounds in rotated order; figures are medians over every epoch
of every round, printed with the ratios the goals name, and the CPU time a sample costs: the decoding
process's, and for epochs the main process's and the workers' together (read from ``/proc``; Linux). A
last context line: ``num_workers=2``, batch 32, over the counted epochs in which the workers touched no new
batch memory (their page faults, from ``/proc``): a worker's batch memory grows while longer batches than
it has held come along, and each new page costs a fault the first time it is written, so the counted
epochs still include some of that growth.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_reads as R  # noqa: E402  (synthetic records, lengths)

SCRIPT = Path(__file__).resolve()
DEFAULT_WORK = Path(tempfile.gettempdir()) / "phoenix_bench_loader"
SAMPLES = 600
CONFIGS = [(workers, batch, transform) for transform in ("none", "typical") for batch in (8, 32)
           for workers in (0, 2)] + [(2, 32, "prefetch4"), (0, 32, "float16"), (2, 32, "float16"),
                                     (0, 32, "fresh"), (0, 8, "fresh"), (2, 32, "fresh")]
WARMUP_EPOCHS = 5  # not counted: the workers start, the batch memory pools fill
SETTLED_FAULTS = 1000  # a worker's page faults in an epoch below this (4 MB of pages): no new batch memory touched


def child_populate(work: Path, samples: int) -> dict:
    lengths = R.sample_lengths(samples)
    spec = {"lengths": lengths, "version": 2}
    info = R.reused(work, spec)
    if info is not None:
        return info
    root = R.write_cached_split(work, lengths)
    return R.remember(work, spec, {"root": str(root), "cache": str(work / "cache"), "samples": samples,
                                   "frames": sum(lengths)})


def make_dataset(info: dict, transform: str):
    """``transform``: "none", "typical", "float16" (no transforms, ``dtype=torch.float16``) or "fresh" (no
    transforms, every batch in new memory: what the main process did before it reused batch memory)."""
    import torch

    from phoenix_data.dataset import PhoenixLandmarks
    from phoenix_data.transforms import Compose, Mirror, Normalize, RandomAffine, SelectPoints, TimeWarp

    size = (210, 260)
    pipeline = None if transform in ("none", "float16", "fresh", "prefetch4") else Compose([
        SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips"), Normalize(image_size=size),
        Mirror(p=0.5), RandomAffine(image_size=size), TimeWarp(speed=(0.8, 1.25))], seed=0)
    return PhoenixLandmarks(info["root"], C.SPLIT, cache=info["cache"], release=C.RELEASE, readonly=True,
                            settings=R.fake_settings(), transform=pipeline,
                            dtype=torch.float16 if transform == "float16" else torch.float32)


def child_decode(info: dict, passes: int, start_at: float = 0.0) -> dict:
    """``start_at``: wall-clock time to start decoding at (two processes started together, for the
    machine's real 2-core rate: two virtual cores share caches and memory bandwidth).

    Without ``start_at``, also measured in alternate passes: the same decode with each sample then
    written where a float32 batch would hold it (its landmarks, confidence and found mask, into a ring
    of rows in 512 MB of memory, far beyond the caches, touched before timing): what reading a sample
    costs once its values must reach memory, as every batch's do. The decode limit's tensor is dropped
    while still in the cache."""
    import torch

    from phoenix_data.cache import LandmarkCache
    from phoenix_data.corpus import read_corpus
    from phoenix_data.dataset import found_mask
    from phoenix_data.extract.fake import FakeExtractorSettings

    torch.set_num_threads(1)
    keys = [s.key for s in read_corpus(info["root"], C.SPLIT)]
    cache = LandmarkCache(info["cache"], FakeExtractorSettings(), readonly=True)
    kinds = ["decode"] if start_at else ["decode", "written"]
    if "written" in kinds:
        points, longest = FakeExtractorSettings().num_points, max(R.sample_lengths(info["samples"]))
        slots = max(2, (512 << 20) // (longest * points * 17))  # a frame: 12 + 4 + 1 bytes
        ring = [torch.zeros(slots, longest, points, 3), torch.zeros(slots, longest, points),
                torch.zeros(slots, longest, points, dtype=torch.bool)]
    rates: Dict[str, List[float]] = {kind: [] for kind in kinds}
    cpu_ms: Dict[str, List[float]] = {kind: [] for kind in kinds}
    with cache.session():
        for warm_up in (True, False):  # one pass not counted: the process's first touch of every record's pages
            if not warm_up:
                time.sleep(max(0.0, start_at - time.time()))
            for _ in range(1 if warm_up else passes):
                for kind in rates:
                    start, cpu = time.perf_counter(), time.process_time()
                    for i, key in enumerate(keys):
                        record = cache.get(key, float16=True)
                        landmarks = torch.from_numpy(record.landmarks)
                        if kind == "decode":
                            landmarks.float()
                            continue
                        t, row = record.num_frames, i % slots
                        ring[0][row, :t].copy_(landmarks)
                        ring[1][row, :t].copy_(torch.from_numpy(record.confidence))
                        ring[2][row, :t].copy_(found_mask(record))
                    if not warm_up:
                        rates[kind].append(len(keys) / (time.perf_counter() - start))
                        cpu_ms[kind].append(1e3 * (time.process_time() - cpu) / len(keys))
    return {"samples_per_s": rates["decode"], "cpu_ms_per_sample": cpu_ms["decode"],
            "written_samples_per_s": rates.get("written", []), "written_cpu_ms_per_sample": cpu_ms.get("written", [])}


def child_epochs(info: dict, workers: int, batch: int, transform: str, epochs: int) -> dict:
    from torch.utils.data import DataLoader

    from phoenix_data import LengthBucketBatchSampler, collate_ctc

    dataset = make_dataset(info, transform)
    if transform == "fresh":
        from phoenix_data import batch_memory

        # reuse nothing: neither here nor in the workers (forked with these settings)
        batch_memory.MAIN_MEMORY._ownership.use_count = None
        batch_memory.WORKER_POOL._ownership.use_count = None
    sampler = LengthBucketBatchSampler(dataset.lengths(), batch, seed=0)
    extra = {"prefetch_factor": 4} if transform == "prefetch4" else {}
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_ctc, num_workers=workers,
                        persistent_workers=workers > 0, **extra)
    rates, worker_ms, main_ms, worker_faults = [], [], [], []  # faults: the workers' first touches of pages
    for epoch in range(WARMUP_EPOCHS + epochs):
        sampler.set_epoch(epoch)
        if dataset.transform is not None:
            dataset.transform.set_epoch(epoch)
        start, main_cpu = time.perf_counter(), time.process_time()
        batches = iter(loader)
        pids = [worker.pid for worker in getattr(batches, "_workers", [])]
        before = [C.process_stat(pid) for pid in pids]
        samples = sum(len(b["id"]) for b in batches)
        rates.append(samples / (time.perf_counter() - start))
        main_ms.append(1e3 * (time.process_time() - main_cpu) / samples)
        known = [(a, b) for a, b in zip(before, [C.process_stat(pid) for pid in pids])
                 if a is not None and b is not None]
        worker_ms.append(1e3 * sum(b[0] - a[0] for a, b in known) / samples if known else None)
        worker_faults.append(sum(b[1] - a[1] for a, b in known) if known else None)
    return {"samples_per_s": rates[WARMUP_EPOCHS:], "warm_up_epochs": rates[:WARMUP_EPOCHS],
            "main_cpu_ms_per_sample": main_ms[WARMUP_EPOCHS:], "worker_cpu_ms_per_sample": worker_ms[WARMUP_EPOCHS:],
            "worker_page_faults": worker_faults[WARMUP_EPOCHS:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5,
                        help=f"epochs counted per round, after {WARMUP_EPOCHS} warm-up epochs")
    parser.add_argument("--samples", type=int, default=SAMPLES,
                        help=f"records in the cache, one epoch's samples (default {SAMPLES})")
    parser.add_argument("--quick", action="store_true", help="60 samples, 1 round, 1 epoch")
    args = parser.parse_args(argv)
    samples = 60 if args.quick else args.samples
    rounds, epochs = (1, 1) if args.quick else (args.rounds, args.epochs)
    print(C.machine_line())
    info = C.run_child(SCRIPT, ["populate", str(args.work_dir), str(samples)])
    print(f"data: {info['samples']} samples, {info['frames']} frames, cache {info['cache']}")
    decode: List[float] = []
    decode_cpu: List[float] = []
    written: List[float] = []  # the decode with each sample written to memory beyond the caches
    written_cpu: List[float] = []
    together: List[float] = []  # two decoding processes at once: the sum of their rates
    runs: Dict[str, List[float]] = {f"{w} {b} {t}": [] for w, b, t in CONFIGS}
    # CPU ms a sample: (the main process's, the workers' together), per counted epoch
    cpu: Dict[str, List[tuple]] = {f"{w} {b} {t}": [] for w, b, t in CONFIGS}
    faults: Dict[str, List[Optional[int]]] = {f"{w} {b} {t}": [] for w, b, t in CONFIGS}  # workers', per epoch
    for round_index in range(rounds):
        result = C.run_child(SCRIPT, ["decode", json.dumps(info), str(epochs)])
        decode += result["samples_per_s"]
        decode_cpu += result["cpu_ms_per_sample"]
        written += result["written_samples_per_s"]
        written_cpu += result["written_cpu_ms_per_sample"]
        together.append(decode_together(info, epochs))
        shift = round_index % len(CONFIGS)
        for workers, batch, transform in CONFIGS[shift:] + CONFIGS[:shift]:
            result = C.run_child(SCRIPT, ["epochs", json.dumps(info), str(workers), str(batch), transform,
                                          str(epochs)])
            runs[f"{workers} {batch} {transform}"] += result["samples_per_s"]
            cpu[f"{workers} {batch} {transform}"] += zip(result["main_cpu_ms_per_sample"],
                                                         result["worker_cpu_ms_per_sample"])
            faults[f"{workers} {batch} {transform}"] += result["worker_page_faults"]
    limit = C.median(decode)
    rows = [["decode limit, 1 core (1 torch thread)", f"{limit:,.0f}", "1.000 of 1 core",
             f"{C.median(decode_cpu):.3f}", C.spread(decode, "{:,.0f}")]]
    figures = {"decode_1core": limit, "decode_2_processes": C.median(together),
               "decode_cpu_ms_per_sample": C.median(decode_cpu)}
    figures["decode_written"] = C.median(written)
    rows.append(["decode, each sample then written to memory (as a batch's rows are)",
                 f"{figures['decode_written']:,.0f}",
                 f"{figures['decode_written'] / limit:.3f} of 1 core", f"{C.median(written_cpu):.3f}",
                 C.spread(written, "{:,.0f}")])
    rows.append(["decode, 2 processes at once (sum)", f"{figures['decode_2_processes']:,.0f}",
                 f"{figures['decode_2_processes'] / (2 * limit):.3f} of the 2-core limit", "",
                 C.spread(together, "{:,.0f}")])
    for workers, batch, transform in CONFIGS:
        rate = C.median(runs[f"{workers} {batch} {transform}"])
        main_ms = C.median(m for m, _ in cpu[f"{workers} {batch} {transform}"])
        worker_ms = C.median(w for _, w in cpu[f"{workers} {batch} {transform}"])
        cpu_text = f"{main_ms:.3f}" if workers == 0 else f"{main_ms:.3f} + {worker_ms:.3f} in workers"
        cores = 1 if workers == 0 else 2
        figures[f"w{workers}_b{batch}_{transform}"] = rate
        what = {"none": "no transforms", "typical": "typical transforms",
                "float16": "no transforms, dtype=torch.float16",
                "fresh": "no transforms, no batch memory reused",
                "prefetch4": "no transforms, prefetch_factor=4"}[transform]
        rows.append([f"num_workers={workers}, batch {batch}, {what}",
                     f"{rate:,.0f}", f"{rate / (cores * limit):.3f} of the {cores}-core limit", cpu_text,
                     C.spread(runs[f"{workers} {batch} {transform}"], "{:,.0f}")])
    print(C.table(rows, ["what", "samples/s", "ratio", "CPU ms a sample", "epochs"]))
    goals = [("num_workers=2, batch 32, no transforms >= 0.6 of the 2-core limit",
              figures["w2_b32_none"] / (2 * limit), 0.6, True),
             ("num_workers=0, batch 32, no transforms >= 0.6 of one core",
              figures["w0_b32_none"] / limit, 0.6, True),
             ("typical transforms with 2 workers, batch 32: epoch time <= 1.3x the plain one",
              figures["w2_b32_none"] / figures["w2_b32_typical"], 1.3, False)]
    for workers, batch in ((0, 32), (0, 8), (2, 32)):
        print(f"num_workers={workers}, batch {batch}: batch memory reused / new memory each batch: "
              f"{figures[f'w{workers}_b{batch}_none'] / figures[f'w{workers}_b{batch}_fresh']:.2f}x")
    print(f"num_workers=2, batch 32, no transforms: {figures['w2_b32_none'] / figures['decode_2_processes']:.3f} "
          "of what two decoding processes reach together on this machine (not a goal: the context of the first)")
    print(f"num_workers=0 / 2, batch 32, no transforms: {figures['w0_b32_none'] / figures['decode_written']:.3f} / "
          f"{figures['w2_b32_none'] / (2 * figures['decode_written']):.3f} of the decode with its sample written to "
          "memory, on 1 / 2 cores (not a goal: a batch's values must reach memory; the decode limit's never leave "
          "the cache)")
    settled = [rate for rate, count in zip(runs["2 32 none"], faults["2 32 none"])
               if count is not None and count < SETTLED_FAULTS]
    if settled:  # context, not a goal: what the first epochs' new batch memory costs
        print(f"num_workers=2, batch 32, no transforms, the counted epochs in which the workers touched no new "
              f"batch memory (< {SETTLED_FAULTS:,} page faults; {len(settled)} of {len(runs['2 32 none'])}): "
              f"{C.median(settled):,.0f}/s = {C.median(settled) / (2 * limit):.3f} of the 2-core limit")
    for text, value, target, at_least in goals:
        ok = value >= target if at_least else value <= target
        print(f"{text}: {value:.3f} -> {C.verdict(ok)}")
    (args.work_dir / "results.json").write_text(json.dumps({"figures": figures, "decode": decode, "runs": runs,
                                                            "cpu_ms_per_sample": cpu}, indent=2))
    return 0


def decode_together(info: dict, passes: int) -> float:
    """Two decode children started on the same clock: the sum of their median rates."""
    from concurrent.futures import ThreadPoolExecutor

    start_at = time.time() + 8  # both have imported torch and opened the cache by then
    args = ["decode", json.dumps(info), str(passes), str(start_at)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: C.run_child(SCRIPT, args), range(2)))
    return sum(C.median(r["samples_per_s"]) for r in results)


def child_main(argv: List[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "populate":
        result = child_populate(Path(rest[0]), int(rest[1]))
    elif kind == "decode":
        result = child_decode(json.loads(rest[0]), int(rest[1]), float(rest[2]) if len(rest) > 2 else 0.0)
    else:
        result = child_epochs(json.loads(rest[0]), int(rest[1]), int(rest[2]), rest[3], int(rest[4]))
    C.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[2:]) if sys.argv[1:2] == ["child"] else main())
