#!/usr/bin/env python
"""Reads from a warm cache: PhoenixLandmarks over LMDB against one float32 .npy file per sample.

    python benchmarks/bench_reads.py            # 1,000 samples of ~140 frames (~3 min on 2 cores)
    python benchmarks/bench_reads.py --quick    # smoke run

Data: synthetic LandmarkRecords (T ~ 140 +- 45, clipped to 16..299, as PHOENIX-2014 train) written through
``LandmarkCache.put`` under keys ``PHOENIX-2014-T/train/<id>``, with a matching 2014-T corpus CSV (no frame
folders: every sample is cached). The baseline holds the same arrays as ``put`` returns them (the values
every cached read gives) as one ``np.save`` file per sample: float32 [T, 543, 4] = landmarks x, y, z and
confidence (the old script's format). Its Dataset is minimal: np.load, torch.from_numpy, the same item dict.

An epoch: DataLoader(batch_size=8, shuffle with a fixed seed, collate_ctc), num_workers 0 and 2, timed from
iter() to the last batch (worker start-up included). Each configuration runs in its own process; rounds
run them in rotated order; figures are medians over every epoch of every round, ratios medians of per-round
ratios. "warm page cache": the files were just read; "cold": our files' pages dropped first
(posix_fadvise DONTNEED, no root needed, nothing else evicted), one epoch per process.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_WORK = Path(tempfile.gettempdir()) / "phoenix_bench_reads"
BATCH_SIZE = 8
SEED = 0


def fake_settings():
    """What the synthetic records are cached under: the fake extractor's settings (imported in children only)."""
    from phoenix_data.extract.fake import FakeExtractorSettings

    return FakeExtractorSettings()


# --- data (written in a child: the parent never opens the LMDB env) ---------------------------------------

def sample_lengths(samples: int, seed: int = SEED) -> List[int]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [int(n) for n in np.clip(np.rint(rng.normal(140, 45, samples)), 16, 299)]


def synthetic_record(rng, frames: int):
    """A plausible record: face and pose every frame, each hand in ~70% of frames, pose visibility in [0, 1]."""
    import numpy as np

    from phoenix_data.record import NUM_POINTS, LandmarkRecord, part_slices

    s = part_slices(NUM_POINTS)
    centre = rng.uniform(0.3, 0.7, (1, NUM_POINTS, 2)).astype(np.float32)
    walk = np.cumsum(rng.normal(0, 0.004, (frames, NUM_POINTS, 2)), axis=0).astype(np.float32)
    landmarks = np.concatenate([centre + walk, rng.normal(0, 0.05, (frames, NUM_POINTS, 1))], axis=2)
    landmarks = landmarks.astype(np.float32)
    confidence = np.ones((frames, NUM_POINTS), np.float32)
    confidence[:, s["pose"]] = rng.uniform(0, 1, (frames, s["pose"].stop - s["pose"].start))
    for hand in ("left_hand", "right_hand"):
        missing = rng.uniform(0, 1, frames) > 0.7
        landmarks[missing, s[hand]] = 0
        confidence[missing, s[hand]] = 0
    return LandmarkRecord(landmarks, confidence, width=210, height=260)


def reused(work: Path, spec: dict) -> Optional[dict]:
    """The info of data written earlier for the same ``spec`` under ``work``; else None, ``work`` emptied."""
    spec_file = work / "data-spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec:
        return json.loads((work / "data-info.json").read_text())
    C.fresh_dir(work)
    return None


def remember(work: Path, spec: dict, info: dict) -> dict:
    (work / "data-info.json").write_text(json.dumps(info))
    (work / "data-spec.json").write_text(json.dumps(spec))
    return info


def write_cached_split(work: Path, lengths: List[int], on_record: Optional[Callable] = None) -> Path:
    """A 2014-T split CSV and a cache (the fake extractor's settings) holding a synthetic record per sample;
    ``on_record(sample_id, stored_record)`` after each put. Returns the release folder."""
    import numpy as np

    from phoenix_data.cache import LandmarkCache

    ids = [C.sample_id(i) for i in range(len(lengths))]
    root = C.write_corpus(work / "tree", {C.SPLIT: ids})
    cache = LandmarkCache(work / "cache", fake_settings())
    rng = np.random.default_rng(SEED)
    for sid, frames in zip(ids, lengths):
        stored = cache.put(f"{C.RELEASE}/{C.SPLIT}/{sid}", synthetic_record(rng, frames))
        if on_record is not None:
            on_record(sid, stored)
    cache.close()
    return root


def child_populate(work: Path, samples: int) -> dict:
    """Write the corpus CSV, the LMDB cache (LandmarkCache.put) and the .npy files; reused when they match."""
    import numpy as np

    lengths = sample_lengths(samples)
    spec = {"lengths": lengths, "version": 2, "npy": True}
    info = reused(work, spec)
    if info is not None:
        return info
    (work / "npy").mkdir()
    start = time.perf_counter()

    def save_npy(sid: str, stored) -> None:
        np.save(work / "npy" / f"{sid}.npy", np.concatenate([stored.landmarks, stored.confidence[..., None]], axis=2))

    root = write_cached_split(work, lengths, save_npy)
    return remember(work, spec, {"root": str(root), "cache": str(work / "cache"), "npy": str(work / "npy"),
                                 "samples": samples, "frames": sum(lengths), "write_s": time.perf_counter() - start})


def populate(work: Path, samples: int) -> dict:
    return C.run_child(SCRIPT, ["populate", str(work), str(samples)])


# --- the datasets --------------------------------------------------------------------------------------

class NpyLandmarks:
    """The baseline: one float32 [T, 543, 4] .npy per sample; items shaped as PhoenixLandmarks' items."""

    def __init__(self, root: str, npy_dir: str) -> None:
        from phoenix_data.corpus import read_corpus
        from phoenix_data.vocab import Vocabulary

        self.samples = read_corpus(root, C.SPLIT)
        self.vocab = Vocabulary.from_samples(self.samples)
        self.npy_dir = Path(npy_dir)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict:
        import numpy as np
        import torch

        sample = self.samples[index]
        array = np.load(self.npy_dir / f"{sample.id}.npy")
        return {"landmarks": torch.from_numpy(array[..., :3]), "confidence": torch.from_numpy(array[..., 3]),
                "glosses": torch.tensor(self.vocab.encode(sample.glosses), dtype=torch.long),
                "gloss_text": " ".join(sample.glosses), "id": sample.id, "signer": sample.signer,
                "num_frames": int(array.shape[0]), "translation": sample.translation}


def make_dataset(kind: str, info: dict):
    if kind == "npy":
        return NpyLandmarks(info["root"], info["npy"])
    from phoenix_data.dataset import PhoenixLandmarks

    return PhoenixLandmarks(info["root"], C.SPLIT, cache=info["cache"], release=C.RELEASE, readonly=True,
                            settings=fake_settings())


def make_loader(dataset, workers: int):
    import torch
    from torch.utils.data import DataLoader

    from phoenix_data.batching import collate_ctc

    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(SEED),
                      collate_fn=collate_ctc, num_workers=workers)


def run_epoch(loader) -> tuple:
    start = time.perf_counter()
    samples = frames = 0
    for batch in loader:
        samples += len(batch["id"])
        frames += int(batch["lengths"].sum())
    return time.perf_counter() - start, samples, frames


def child_epochs(info: dict, kind: str, workers: int, epochs: int) -> dict:
    loader = make_loader(make_dataset(kind, info), workers)
    times = []
    for _ in range(epochs):
        seconds, samples, frames = run_epoch(loader)
        times.append(seconds)
    return {"kind": kind, "workers": workers, "epoch_s": times, "samples": samples, "frames": frames}


def child_profile(info: dict, kind: str) -> dict:
    """One num_workers=0 epoch under cProfile, and the cost of each step of one item, per sample."""
    loader = make_loader(make_dataset(kind, info), 0)
    profiler = cProfile.Profile()
    profiler.enable()
    seconds, samples, _ = run_epoch(loader)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return {"kind": kind, "epoch_s": seconds, "samples": samples, "top": out.getvalue(),
            "steps": step_costs(info, kind), "worker_batch": worker_batch_costs(info, kind)}


def child_cpu_split(info: dict, kind: str) -> dict:
    """A num_workers=2 epoch (after one to warm up): CPU of the main process and of the workers, per sample.

    Runs before anything in this process opens the cache: the workers fork from a clean parent.
    """
    import resource

    loader = make_loader(make_dataset(kind, info), 2)
    run_epoch(loader)

    def cpu(who):
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    main0, workers0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    seconds, samples, _ = run_epoch(loader)
    return {"epoch_s": seconds, "samples": samples, "main_cpu_s": cpu(resource.RUSAGE_SELF) - main0,
            "workers_cpu_s": cpu(resource.RUSAGE_CHILDREN) - workers0}


def worker_batch_costs(info: dict, kind: str, batches: int = 20) -> Dict[str, float]:
    """Median ms per batch of 8 of what a DataLoader worker does: the items, collate_ctc, and pickling the
    batch for the main process (ForkingPickler moves its tensors into shared memory: a copy of ~14 MB)."""
    from multiprocessing.reduction import ForkingPickler

    import numpy as np
    import torch

    from phoenix_data.batching import collate_ctc

    torch.set_num_threads(1)  # as in a DataLoader worker
    dataset = make_dataset(kind, info)
    rng = np.random.default_rng(SEED)
    indices = [[int(i) for i in rng.integers(0, len(dataset), BATCH_SIZE)] for _ in range(batches)]
    items = [[dataset[i] for i in batch] for batch in indices]

    def per_batch(fn, inputs):
        times = []
        for arg in inputs:
            start = time.perf_counter()
            fn(arg)
            times.append(time.perf_counter() - start)
        return 1e3 * C.median(times)

    return {"8 items (__getitem__)": per_batch(lambda batch: [dataset[i] for i in batch], indices),
            "collate_ctc": per_batch(collate_ctc, items),
            "collate_ctc + pickling to shared memory": per_batch(lambda b: ForkingPickler.dumps(collate_ctc(b)),
                                                                 items)}


def step_costs(info: dict, kind: str, samples: int = 50) -> Dict[str, float]:
    """Median microseconds per sample of each step of reading one item (first ``samples`` samples)."""
    import zlib

    import numpy as np
    import torch

    from phoenix_data.batching import collate_ctc

    dataset = make_dataset(kind, info)
    keys = [s.key for s in dataset.samples[:samples]]
    costs: Dict[str, float] = {}

    def per_sample(name, fn):
        costs[name] = 1e6 * C.median(min(timeit.repeat(lambda k=k: fn(k), number=1, repeat=3)) for k in keys)

    items = [dataset[i] for i in range(BATCH_SIZE)]
    costs["collate_ctc per sample (batch of 8)"] = 1e6 * min(timeit.repeat(lambda: collate_ctc(items), number=1,
                                                                          repeat=5)) / BATCH_SIZE
    if kind == "npy":
        paths = {k: dataset.npy_dir / f"{k.rsplit('/', 1)[1]}.npy" for k in keys}
        per_sample("np.load", lambda k: np.load(paths[k]))
        per_sample("item (__getitem__)", lambda k: dataset[keys.index(k)])
        return costs
    from phoenix_data.cache import db_key, decode_record
    from phoenix_data.record import _check_values  # noqa: PLC2701 - one step of decode_record, alone

    cache = dataset.cache
    env, db = cache._env(), cache._db(b"samples")  # noqa: SLF001 - the steps of LandmarkCache.get, apart
    with env.begin(db=db) as txn:
        raw = {k: txn.get(db_key(k)) for k in keys}
    with env.begin(db=db, buffers=True) as txn:
        per_sample("lmdb txn.get (buffers, no copy)", lambda k: txn.get(db_key(k)))
    parts = {k: _record_parts(raw[k], k) for k in keys}
    per_sample("zlib.crc32 of the payload", lambda k: zlib.crc32(parts[k]["payload"]))
    per_sample("float16 -> float32 landmarks (numpy astype)",
               lambda k: np.frombuffer(parts[k]["landmarks"], "<f2").astype(np.float32))
    per_sample("float16 -> float32 landmarks (torch, as the dataset does)",
               lambda k: torch.from_numpy(np.frombuffer(parts[k]["landmarks"], "<f2").copy()).float())
    per_sample("confidence [T, 543] rebuilt", lambda k: _confidence(parts[k]))
    per_sample("value checks (finite landmarks, presence flags)", lambda k: _check_values(parts[k]["arrays"], k))
    per_sample("decode_record (all of it, float32)", lambda k: decode_record(raw[k], k))
    per_sample("cache.get (txn + decode, float16 as the dataset asks)", lambda k: cache.get(k, float16=True))
    per_sample("item (__getitem__)", lambda k: dataset[keys.index(k)])
    return costs


def _record_parts(data: bytes, key: str) -> dict:
    from phoenix_data.record import _split_payload, decode_header  # noqa: PLC2701 - the record's own layout

    header = decode_header(data, key)
    payload = memoryview(data)[header.size:]
    arrays = _split_payload(payload, header)
    return {"t": header.frames, "n": header.points, "payload": payload, "arrays": arrays,
            **{name: memoryview(array).cast("B") for name, array in arrays.items()}}


def _confidence(parts: dict):
    """What decode_record does for the confidence, alone."""
    import numpy as np

    from phoenix_data.record import PARTS, POSE_POINTS, part_slices

    t, n = parts["t"], parts["n"]
    slices = part_slices(n)
    visibility = np.frombuffer(parts["visibility"], np.uint8).reshape(t, POSE_POINTS)
    presence = np.frombuffer(parts["presence"], np.uint8).reshape(t, len(PARTS))
    confidence = np.empty((t, n), np.float32)
    for index, part in enumerate(PARTS):
        confidence[:, slices[part]] = presence[:, index:index + 1]
    confidence[:, slices["pose"]] = visibility / np.float32(255)
    return confidence


# --- measuring (parent) -----------------------------------------------------------------------------------

CONFIGS = (("lmdb", 0), ("npy", 0), ("lmdb", 2), ("npy", 2))
NAMES = {"lmdb": "cache (PhoenixLandmarks, LMDB)", "npy": "float32 .npy per sample"}


def data_files(info: dict, kind: str) -> List[Path]:
    if kind.startswith("lmdb"):
        return [Path(info["cache"]) / "data.mdb"]
    return sorted(Path(info["npy"]).glob("*.npy"))


def read_through(paths: List[Path]) -> None:
    """Bring our files into the page cache by reading their bytes (plain reads; no LMDB env is opened)."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def measure(info: dict, rounds: int, epochs: int, cold_rounds: int) -> Dict[str, List[dict]]:
    runs: Dict[str, List[dict]] = {}
    for kind in ("lmdb", "npy"):
        read_through(data_files(info, kind))
    plan = [("warm", r, epochs) for r in range(rounds)] + [("cold", r, 1) for r in range(cold_rounds)]
    for page_cache, r, n_epochs in plan:
        order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]
        for kind, workers in order:
            if page_cache == "cold":
                C.evict_from_page_cache(data_files(info, kind))
            result = C.run_child(SCRIPT, ["epochs", json.dumps(info), kind, str(workers), str(n_epochs)])
            result["round"] = r
            runs.setdefault(f"{kind}/{workers}/{page_cache}", []).append(result)
            rates = ", ".join(f"{result['samples'] / s:.0f}" for s in result["epoch_s"])
            print(f"  {page_cache:4} round {r + 1} {NAMES[kind]:<31} num_workers={workers}: {rates} samples/s "
                  f"(load before {result['outer']['load1_before']:.2f}, others used "
                  f"{result['outer']['others_cores']:.2f} cores)", flush=True)
    return runs


def disk_sizes(info: dict) -> dict:
    from phoenix_data.record import NUM_POINTS

    frames = info["frames"]
    mdb = Path(info["cache"]) / "data.mdb"
    npys = data_files(info, "npy")
    return {"frames": frames,
            "cache_du": C.du_bytes(mdb), "cache_apparent": mdb.stat().st_size,
            "npy_du": sum(C.du_bytes(p) for p in npys), "npy_apparent": sum(p.stat().st_size for p in npys),
            "landmarks_f32": frames * NUM_POINTS * 3 * 4, "records_payload": frames * 3294 + 28 * info["samples"]}


# --- report ----------------------------------------------------------------------------------------------

def report(info: dict, runs: Dict[str, List[dict]]) -> dict:
    rows, figures = [], {}
    for key, results in runs.items():
        kind, workers, page_cache = key.split("/")
        rates = [res["samples"] / s for res in results for s in res["epoch_s"]]
        figures[key] = {"samples_per_s": C.median(rates), "epoch_s": C.median(s for res in results
                                                                              for s in res["epoch_s"])}
        other = runs.get(f"npy/{workers}/{page_cache}") if kind != "npy" else None
        ratio = ""
        if other:
            per_round = [_round_rate(res) / _round_rate(o) for res in results for o in other
                         if o["round"] == res["round"]]
            figures[key]["vs_npy"] = C.median(per_round)
            ratio = f"{figures[key]['vs_npy']:.2f}"
        rows.append([NAMES[kind], page_cache, workers, f"{figures[key]['epoch_s']:.2f}",
                     f"{figures[key]['samples_per_s']:.0f} {C.spread(rates, '{:.0f}')}",
                     f"{figures[key]['samples_per_s'] * info['frames'] / info['samples']:.0f}", ratio])
    print()
    print(C.table(rows, ["format", "page cache", "num_workers", "epoch s", "samples/s [epochs]", "frames/s",
                         "cache / npy"]))
    return figures


def _round_rate(result: dict) -> float:
    return C.median(result["samples"] / s for s in result["epoch_s"])


def report_sizes(sizes: dict) -> dict:
    f = sizes["frames"]
    print(f"\nbytes on disk per frame ({f} frames):")
    rows = [["LMDB data.mdb (du)", f"{sizes['cache_du'] / f:.0f}", f"{sizes['cache_du'] / 2**20:.1f}"],
            ["  records' own bytes (3,295/frame + 28/sample)", f"{sizes['records_payload'] / f:.0f}",
             f"{sizes['records_payload'] / 2**20:.1f}"],
            [".npy float32 landmarks + confidence (sum of sizes)", f"{sizes['npy_apparent'] / f:.0f}",
             f"{sizes['npy_apparent'] / 2**20:.1f}"],
            [".npy (du)", f"{sizes['npy_du'] / f:.0f}", f"{sizes['npy_du'] / 2**20:.1f}"],
            ["float32 landmarks only [T, 543, 3]", f"{sizes['landmarks_f32'] / f:.0f}",
             f"{sizes['landmarks_f32'] / 2**20:.1f}"]]
    print(C.table(rows, ["", "bytes/frame", "MiB"]))
    ratios = {"vs_npy": sizes["cache_du"] / sizes["npy_apparent"],
              "vs_landmarks_only": sizes["cache_du"] / sizes["landmarks_f32"]}
    print(f"cache / .npy (landmarks + confidence) = {ratios['vs_npy']:.3f}   target <= 0.55: "
          f"{C.verdict(ratios['vs_npy'] <= 0.55)}")
    print(f"cache / float32 landmarks only        = {ratios['vs_landmarks_only']:.3f}   (<= 0.55: "
          f"{C.verdict(ratios['vs_landmarks_only'] <= 0.55)})")
    return ratios


def print_profiles(info: dict) -> None:
    results = {kind: C.run_child(SCRIPT, ["profile", json.dumps(info), kind]) for kind in ("lmdb", "npy")}
    print("\nwhere an item's time goes (median us per sample over 50 samples, in-process):")
    for kind, r in results.items():
        print(f"  {NAMES[kind]}:")
        for name, us in r["steps"].items():
            print(f"    {name:<46} {us:8.0f} us")
    print("\nwhat a DataLoader worker does per batch of 8 (median ms, torch 1 thread as in a worker):")
    for kind, r in results.items():
        print(f"  {NAMES[kind]}: " + ", ".join(f"{name} {ms:.1f}" for name, ms in r["worker_batch"].items()))
    print("a num_workers=2 epoch, CPU per sample (main process / workers):")
    for kind in ("lmdb", "npy"):
        r = C.run_child(SCRIPT, ["cpusplit", json.dumps(info), kind])
        print(f"  {NAMES[kind]}: {1e3 * r['main_cpu_s'] / r['samples']:.2f} / "
              f"{1e3 * r['workers_cpu_s'] / r['samples']:.2f} ms ({r['samples'] / r['epoch_s']:.0f} samples/s, "
              f"workers busy {r['workers_cpu_s'] / r['epoch_s']:.2f} of 2 cores)")
    for kind, r in results.items():
        print(f"\ncProfile, one num_workers=0 epoch of {NAMES[kind]} ({r['samples']} samples, "
              f"{r['epoch_s']:.2f} s):")
        print(r["top"].strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--samples", type=int, help="samples (default 1000; --quick 64)")
    parser.add_argument("--rounds", type=int, help="rounds, warm page cache (default 3; --quick 1)")
    parser.add_argument("--epochs", type=int, help="epochs per process and round (default 2; --quick 1)")
    parser.add_argument("--cold-rounds", type=int, help="rounds with our files evicted (default 2; --quick 1)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile printed on a missed target")
    parser.add_argument("--profile-only", action="store_true", help="print only the profile (data must exist)")
    parser.add_argument("--work-dir", type=Path, help=f"default {DEFAULT_WORK} (--quick: ...-quick)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)
    if args.work_dir is None:  # a smoke run keeps the full-size data
        args.work_dir = Path(f"{DEFAULT_WORK}-quick") if args.quick else DEFAULT_WORK
    quick = args.quick
    args.samples = args.samples or (64 if quick else 1000)
    args.rounds = args.rounds or (1 if quick else 3)
    args.epochs = args.epochs or (1 if quick else 2)
    args.cold_rounds = args.cold_rounds if args.cold_rounds is not None else (1 if quick else 2)
    print(C.machine_line())
    info = populate(args.work_dir, args.samples)
    print(f"data: {info['samples']} samples, {info['frames']} frames ({info['frames'] / info['samples']:.0f} "
          f"per sample) at {args.work_dir}; batch_size {BATCH_SIZE}, collate_ctc")
    if args.profile_only:
        print_profiles(info)
        return 0
    quiet = C.wait_for_quiet() if not (quick or args.no_wait) else {"load1": round(C.load1(), 2)}
    started = time.monotonic()
    runs = measure(info, args.rounds, args.epochs, args.cold_rounds)
    figures = report(info, runs)
    met = True
    for workers in (0, 2):
        ratio = figures[f"lmdb/{workers}/warm"]["vs_npy"]
        met &= ratio >= 3
        print(f"cached reads / .npy, num_workers={workers}, warm page cache: {ratio:.2f}x   target >= 3x: "
              f"{C.verdict(ratio >= 3)}")
    sizes = report_sizes(disk_sizes(info))
    if not met and not args.no_profile:
        print_profiles(info)
    print(f"\nload at start {quiet['load1']:.2f}, at end {C.load1():.2f}; measured in "
          f"{time.monotonic() - started:.0f} s")
    (args.work_dir / "results.json").write_text(json.dumps({"runs": runs, "figures": figures, "sizes": sizes},
                                                           indent=1))
    return 0


def child_main(argv: List[str]) -> int:
    kind = argv[0]
    if kind == "populate":
        C.emit(child_populate(Path(argv[1]), int(argv[2])))
    elif kind == "epochs":
        C.emit(child_epochs(json.loads(argv[1]), argv[2], int(argv[3]), int(argv[4])))
    elif kind == "profile":
        C.emit(child_profile(json.loads(argv[1]), argv[2]))
    elif kind == "cpusplit":
        C.emit(child_cpu_split(json.loads(argv[1]), argv[2]))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
