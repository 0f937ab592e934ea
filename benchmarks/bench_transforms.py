#!/usr/bin/env python
"""Cached epochs with a typical transform pipeline against the same epochs without transforms.

    python benchmarks/bench_transforms.py            # 1,000 samples of ~140 frames (~3 min on 2 cores)
    python benchmarks/bench_transforms.py --quick    # smoke run

Data: bench_reads.py's synthetic records (T ~ 140 +- 45; face and pose every frame, each hand in ~70% of
frames) in a warm LMDB cache, read by PhoenixLandmarks. An epoch: DataLoader(batch_size=8, shuffle with a
fixed seed, collate_ctc), num_workers 0 and 2, timed from iter() to the last batch. Pipelines (seeded,
``set_epoch`` per epoch):

- ``none``: no transform (the item still carries its ``valid`` mask);
- ``select-first``: SelectPoints(pose upper body, hands, lips) -> Normalize(image_size=(210, 260)) ->
  Mirror(0.5) -> RandomAffine(image_size=(210, 260)) -> TimeWarp((0.8, 1.25)): the README's pipeline;
- ``normalize-first``: the issue's order, Normalize on all 543 points, then SelectPoints, Mirror, ...;
- ``all-points``: the same steps without SelectPoints: every step on 543 points, batches as large as
  ``none``'s (the worst case).

Each configuration runs in its own process; rounds run them in rotated order; figures are medians over every
epoch of every round, ratios (epoch time with / without transforms) medians of per-round ratios. The
in-process cost of one item (``__getitem__`` with and without the pipeline, median us) is printed too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_reads as R  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_WORK = Path(tempfile.gettempdir()) / "phoenix_bench_transforms"
KINDS = ("none", "select-first", "normalize-first", "all-points")
TARGET = 1.5
SEED = 0


def make_transform(kind: str):
    from phoenix_data.transforms import Compose, Mirror, Normalize, RandomAffine, SelectPoints, TimeWarp

    size = (210, 260)
    select = SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips")
    augment = [Mirror(p=0.5), RandomAffine(image_size=size), TimeWarp(speed=(0.8, 1.25))]
    steps = {"none": None,
             "select-first": [select, Normalize(image_size=size), *augment],
             "normalize-first": [Normalize(image_size=size), select, *augment],
             "all-points": [Normalize(image_size=size), *augment]}[kind]
    return None if steps is None else Compose(steps, seed=SEED)


def make_dataset(info: dict, kind: str):
    from phoenix_data.dataset import PhoenixLandmarks

    return PhoenixLandmarks(info["root"], C.SPLIT, cache=info["cache"], release=C.RELEASE, readonly=True,
                            settings=R.fake_settings(),
                            transform=make_transform(kind))


def child_epochs(info: dict, kind: str, workers: int, epochs: int) -> dict:
    import torch

    if workers == 0:  # as in a DataLoader worker; 2 intra-op threads on a busy 2-core machine cost 10x
        torch.set_num_threads(1)
    dataset = make_dataset(info, kind)
    loader = R.make_loader(dataset, workers)
    times = []
    for epoch in range(epochs):
        if dataset.transform is not None:
            dataset.transform.set_epoch(epoch)
        seconds, samples, frames = R.run_epoch(loader)
        times.append(seconds)
    return {"kind": kind, "workers": workers, "epoch_s": times, "samples": samples, "frames": frames}


def child_item_costs(info: dict, samples: int = 200) -> dict:
    """Median us of ``__getitem__`` per pipeline, in one process (num_workers=0, torch on 1 thread)."""
    import torch

    torch.set_num_threads(1)  # as in a DataLoader worker
    out = {}
    for kind in KINDS:
        dataset = make_dataset(info, kind)
        costs = []
        for index in range(min(samples, len(dataset))):
            start = time.perf_counter()
            dataset[index]
            costs.append((time.perf_counter() - start) * 1e6)
        out[kind] = statistics.median(costs)
    return out


def measure(info: dict, rounds: int, epochs: int) -> Dict[str, List[dict]]:
    runs: Dict[str, List[dict]] = {}
    configs = [(kind, workers) for workers in (0, 2) for kind in KINDS]
    for r in range(rounds):
        for kind, workers in configs[r % len(configs):] + configs[:r % len(configs)]:
            result = C.run_child(SCRIPT, ["epochs", json.dumps(info), kind, str(workers), str(epochs)])
            result["round"] = r
            runs.setdefault(f"{kind}/{workers}", []).append(result)
            rates = ", ".join(f"{result['samples'] / s:.0f}" for s in result["epoch_s"])
            print(f"  round {r + 1} {kind:<16} num_workers={workers}: {rates} samples/s (load before "
                  f"{result['outer']['load1_before']:.2f}, others used {result['outer']['others_cores']:.2f} "
                  "cores)", flush=True)
    return runs


def report(runs: Dict[str, List[dict]], rounds: int) -> Dict[str, dict]:
    rows, figures = [], {}
    for workers in (0, 2):
        base = runs[f"none/{workers}"]
        for kind in KINDS:
            mine = runs[f"{kind}/{workers}"]
            epoch_s = C.median(s for result in mine for s in result["epoch_s"])
            ratios = [C.median(m["epoch_s"]) / C.median(b["epoch_s"]) for m, b in zip(mine, base)]
            figures[f"{kind}/{workers}"] = {"epoch_s": epoch_s, "ratio": C.median(ratios), "ratios": ratios}
            rows.append([kind, workers, f"{epoch_s:.2f}", f"{mine[0]['samples'] / epoch_s:.0f}",
                         f"{C.median(ratios):.2f}", C.spread(ratios, "{:.2f}")])
    print("\n" + C.table(rows, ["pipeline", "workers", "epoch s", "samples/s", "vs none", "per round"]))
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--samples", type=int, help="samples (default 1000; --quick 64)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    parser.add_argument("--epochs", type=int, help="epochs per process and round (default 2; --quick 1)")
    parser.add_argument("--work-dir", type=Path, help=f"default {DEFAULT_WORK} (--quick: ...-quick)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)
    work = args.work_dir or (Path(f"{DEFAULT_WORK}-quick") if args.quick else DEFAULT_WORK)
    samples = args.samples or (64 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 2)
    print(C.machine_line())
    info = C.run_child(R.SCRIPT, ["populate", str(work), str(samples)])
    print(f"data: {info['samples']} samples, {info['frames']} frames at {work}; batch_size {R.BATCH_SIZE}")
    quiet = C.wait_for_quiet() if not (args.quick or args.no_wait) else {"load1": round(C.load1(), 2)}
    started = time.monotonic()
    costs = C.run_child(SCRIPT, ["items", json.dumps(info)])
    costs.pop("outer")
    print("one item, in process (median us): " + ", ".join(f"{k} {v:.0f}" for k, v in costs.items()))
    figures = report(measure(info, rounds, epochs), rounds)
    for workers in (0, 2):
        ratio = figures[f"select-first/{workers}"]["ratio"]
        print(f"typical pipeline / no transforms, num_workers={workers}: {ratio:.2f}x   target <= {TARGET}x: "
              f"{C.verdict(ratio <= TARGET)}")
    print(f"\nload at start {quiet['load1']:.2f}, at end {C.load1():.2f}; measured in "
          f"{time.monotonic() - started:.0f} s")
    (work / "results-transforms.json").write_text(json.dumps({"figures": figures, "item_us": costs}, indent=1))
    return 0


def child_main(argv: List[str]) -> int:
    if argv[0] == "epochs":
        C.emit(child_epochs(json.loads(argv[1]), argv[2], int(argv[3]), int(argv[4])))
    elif argv[0] == "items":
        C.emit(child_item_costs(json.loads(argv[1])))
    else:
        raise SystemExit(f"unknown child {argv[0]!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
