#!/usr/bin/env python
"""Extraction throughput: a bare MediaPipe loop against the warm-up job with 1 .. cores+1 workers.

    python benchmarks/bench_extraction.py            # ~2,000 frames, 2 rounds (~7 min on 2 cores)
    python benchmarks/bench_extraction.py --quick    # smoke run (~1 min)

Configurations, on the same synthetic 2014-T tree (the demo's frames of real signing, with hands; 210x260 PNG),
each in its own process:

  (a) bare loop: cv2.imread + cvtColor, one mp.solutions.holistic.Holistic(model_complexity=1), reset()
      between videos, nothing else, one process;
  (b) ``python -m phoenix_data.warm --workers 1``;
  (c) the same with W = 1 .. cores+1 workers ((b) is W=1).

Rounds run every configuration once, in a rotated order, so slow spells of the shared machine spread over
all of them; figures are medians over rounds, ratios are medians of per-round ratios.

frames/s: (a) over its whole loop window, mediapipe import and Holistic build included (as the job's
wall time includes its workers' fork, import and build); the job's own summary.json wall_seconds.
CPU s/frame: (a) getrusage(RUSAGE_SELF) over the loop alone (all MediaPipe threads); the job's
summary worker_cpu_seconds (per-sample process time in the workers); "whole" is getrusage(RUSAGE_CHILDREN)
around the subprocess (startup, torch import, main process, workers).
limit = cores / (CPU s per frame of (a), loop only): the frames/s the cores could give if every core
ran extraction at the bare loop's cost.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
SPLIT = C.SPLIT
DEFAULT_WORK = Path(tempfile.gettempdir()) / "phoenix_bench_extraction"


# --- children ----------------------------------------------------------------------------------------

def child_bare(root: Path) -> dict:
    """(a): frames -> Holistic, nothing else. Times import+build and the loop separately."""
    import cv2

    split_dir = root / "features" / "fullFrame-210x260px" / SPLIT
    videos = [[str(p) for p in sorted(d.glob("*.png"))] for d in sorted(split_dir.iterdir())]
    t0, r0 = time.perf_counter(), _cpu_self()
    import mediapipe as mp

    holistic = mp.solutions.holistic.Holistic(model_complexity=1)
    t1, r1 = time.perf_counter(), _cpu_self()
    frames = 0
    for paths in videos:
        holistic.reset()
        for path in paths:
            holistic.process(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))
            frames += 1
    t2, r2 = time.perf_counter(), _cpu_self()
    holistic.close()
    return {"frames": frames, "build_wall_s": t1 - t0, "build_cpu_s": r1 - r0,
            "loop_wall_s": t2 - t1, "loop_cpu_s": r2 - r1, "max_rss_mb": _max_rss_mb()}


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_profile(root: Path, cache: Path, samples: int) -> dict:
    """The library's per-sample path (read, extract, encode, put) under cProfile, in this process.

    What a warm-up worker runs for each sample (fill.py), minus the claim: extract_frames_dir + cache.put.
    """
    from phoenix_data.cache import LandmarkCache
    from phoenix_data.corpus import find_release, read_release_split
    from phoenix_data.extract import extract_frames_dir
    from phoenix_data.extract.mediapipe.settings import HolisticSettings

    settings = HolisticSettings()
    store = LandmarkCache(cache, settings)
    todo = read_release_split(find_release(root, C.RELEASE), SPLIT)

    def one(index: int) -> int:
        sample = todo[index]
        return store.put(sample.key, extract_frames_dir(sample.frames_dir, settings, sample.key)).num_frames

    one(0)  # build the Holistic outside the profile
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    frames = sum(one(i) for i in range(1, 1 + samples))
    profiler.disable()
    wall = time.perf_counter() - start
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(14)
    by_name = {f"{func[0].split('/')[-1]}:{func[2]}": (tt, ct) for func, (cc, nc, tt, ct, _) in
               stats.stats.items()}
    return {"frames": frames, "wall_s": wall, "top": out.getvalue(),
            "named": {k: by_name[k] for k in by_name if any(s in k for s in _PROFILE_NAMES)}}


_PROFILE_NAMES = ("solution_base.py:process", "holistic.py:_fill", "holistic.py:_extract_frame",
                  "frames.py:read_frame_rgb", "cache.py:put", "record.py:encode_record", "record.py:decode_record",
                  "extract.py:extract_frames_dir", "record.py:detection_rates")


# --- measuring ---------------------------------------------------------------------------------------

def run_bare(root: Path) -> dict:
    r = C.run_child(SCRIPT, ["bare", str(root)])
    window = r["build_wall_s"] + r["loop_wall_s"]
    return {"name": "(a) bare loop", "frames": r["frames"], "wall_s": window,
            "fps": r["frames"] / window, "loop_fps": r["frames"] / r["loop_wall_s"],
            "cpu_per_frame": r["loop_cpu_s"] / r["frames"], "whole_cpu_per_frame": r["outer"]["cpu_s"] / r["frames"],
            "cores_busy": r["loop_cpu_s"] / r["loop_wall_s"], "build_s": r["build_wall_s"],
            "load1": r["outer"]["load1_before"], "others": r["outer"]["others_cores"],
            "rss_mb": r["max_rss_mb"]}


def run_warm(root: Path, work: Path, workers: int, tag: str) -> dict:
    cache, reports = work / f"cache-{tag}", work / f"reports-{tag}"
    for path in (cache, reports):
        shutil.rmtree(path, ignore_errors=True)
    cmd = [sys.executable, "-m", "phoenix_data.cli", "warm-cache", "--root", str(root), "--cache", str(cache),
           "--split", SPLIT, "--release", C.RELEASE, "--workers", str(workers), "--report-dir", str(reports),
           "--heartbeat", "600"]
    outer = C.run_command(cmd)
    summary = json.loads((reports / "summary.json").read_text())
    counts = summary["counts"]
    if summary["exit_status"] != 0 or counts["failed"] or counts["remaining"]:
        raise RuntimeError(f"warm-up with {workers} workers did not finish cleanly: {counts}, "
                           f"exit {summary['exit_status']}, {summary.get('aborted')}")
    shutil.rmtree(cache, ignore_errors=True)
    frames, wall = summary["frames_extracted"], summary["wall_seconds"]
    return {"name": f"warm-up, {workers} worker{'s' if workers > 1 else ''}", "workers": workers,
            "frames": frames, "wall_s": wall, "fps": frames / wall,
            "cpu_per_frame": summary["worker_cpu_seconds"] / frames,
            "whole_cpu_per_frame": outer["cpu_s"] / frames,
            "cores_busy": summary["worker_cpu_seconds"] / wall,
            "load1": outer["load1_before"], "others": outer["others_cores"],
            "rss_mb": max(summary["peak_rss_mb_per_worker"].values()),
            "detection": summary["detection_rates"], "outer_wall_s": outer["wall_s"]}


def measure(root: Path, work: Path, worker_counts: List[int], rounds: int) -> Dict[str, List[dict]]:
    configs = ["bare"] + [f"w{w}" for w in worker_counts]
    runs: Dict[str, List[dict]] = {c: [] for c in configs}
    for r in range(rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for config in order:
            if config == "bare":
                result = run_bare(root)
            else:
                result = run_warm(root, work, int(config[1:]), f"{config}-r{r}")
            runs[config].append(result)
            print(f"  round {r + 1}/{rounds} {result['name']:<22} {result['fps']:6.2f} frames/s, "
                  f"{result['cpu_per_frame'] * 1000:5.1f} ms CPU/frame | load before {result['load1']:.2f}, "
                  f"other processes used {result['others']:.2f} cores meanwhile",
                  flush=True)
    return runs


# --- report ------------------------------------------------------------------------------------------

def report(runs: Dict[str, List[dict]], cores: int, default: int) -> dict:
    bare = runs["bare"]
    cpu_a = C.median(r["cpu_per_frame"] for r in bare)
    limit = cores / cpu_a
    rounds = len(bare)
    rows, figures = [], {"limit_fps": limit, "cores": cores, "default_workers": default}
    for config, results in runs.items():
        fps = [r["fps"] for r in results]
        vs_a = C.median(results[i]["fps"] / bare[i]["fps"] for i in range(rounds))
        share = C.median(fps) / limit
        figures[config] = {"fps": C.median(fps), "share_of_limit": share, "vs_bare": vs_a,
                           "cpu_per_frame": C.median(r["cpu_per_frame"] for r in results),
                           "rss_mb": C.median(r["rss_mb"] for r in results)}
        rows.append([results[0]["name"] + (" (default)" if config == f"w{default}" else ""),
                     results[0]["frames"], f"{C.median(r['wall_s'] for r in results):.1f}",
                     f"{C.median(fps):.2f} {C.spread(fps, '{:.2f}')}",
                     f"{figures[config]['cpu_per_frame'] * 1000:.1f}",
                     f"{C.median(r['whole_cpu_per_frame'] for r in results) * 1000:.1f}",
                     f"{C.median(r['cores_busy'] for r in results):.2f}",
                     f"{share:.3f}", f"{vs_a:.3f}",
                     f"{C.median(r.get('others', float('nan')) for r in results):.2f}"])
    print()
    print(C.table(rows, ["configuration", "frames", "wall s", "frames/s [rounds]", "CPU ms/frame",
                         "whole ms/frame", "cores busy (window)", "share of limit", "vs (a)",
                         "others' cores"]))
    print(f"\n(a) loop only (no import/build): {C.median(r['loop_fps'] for r in bare):.2f} frames/s; "
          f"mediapipe import + Holistic build {C.median(r['build_s'] for r in bare):.2f} s")
    print(f"limit = {cores} cores / {cpu_a * 1000:.1f} ms CPU per frame of (a) = {limit:.2f} frames/s")
    detection = runs["w1"][0].get("detection")
    if detection:  # what Holistic found, hence which models ran (hand models only where a hand is found)
        print("share of frames with " + ", ".join(f"{part} {share:.2f}" for part, share in detection.items())
              + " (warm-up summary)")
    b = figures["w1"]
    figures["b_over_a"] = b["vs_bare"]
    d = figures[f"w{default}"]
    best = max((k for k in runs if k != "bare"), key=lambda k: figures[k]["fps"])
    print(f"(b)/(a) = {b['vs_bare']:.3f}  (median of per-round ratios)        target >= 0.95: "
          f"{C.verdict(b['vs_bare'] >= 0.95)}")
    print(f"default workers here: phoenix_data.warm.default_workers() = {default} ({_default_rule()}) -> "
          f"{d['fps']:.2f} frames/s = {d['share_of_limit']:.3f} of the limit   target >= 0.9: "
          f"{C.verdict(d['share_of_limit'] >= 0.9)}")
    print(f"best worker count measured: {best[1:]} -> {figures[best]['fps']:.2f} frames/s = "
          f"{figures[best]['share_of_limit']:.3f} of the limit")
    figures["best"] = best
    return figures


def _default_rule() -> str:
    """The first line of default_workers' docstring: the rule as the library states it today."""
    from phoenix_data.warm import default_workers

    return (default_workers.__doc__ or "").strip().splitlines()[0].rstrip(".")


def print_profile(root: Path, work: Path, samples: int) -> None:
    cache = work / "cache-profile"
    shutil.rmtree(cache, ignore_errors=True)
    r = C.run_child(SCRIPT, ["profile", str(root), str(cache), str(samples)])
    shutil.rmtree(cache, ignore_errors=True)
    print(f"\ncProfile of the library's per-sample path (extract_frames_dir + put, in-process, {r['frames']} frames, "
          f"{r['wall_s']:.1f} s):")
    total = r["wall_s"]
    for name, (tottime, cumtime) in sorted(r["named"].items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<34} cum {cumtime:7.2f} s ({100 * cumtime / total:5.1f}%)  own {tottime:6.2f} s  "
              f"= {1000 * cumtime / r['frames']:.2f} ms/frame")
    print(r["top"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--frames", type=int, help="frames in the tree (default 2000; --quick 120)")
    parser.add_argument("--mean-length", type=int, help="mean frames per video (default 140; --quick 30)")
    parser.add_argument("--rounds", type=int, help="rounds of every configuration (default 2; --quick 1)")
    parser.add_argument("--max-workers", type=int, help="largest worker count (default cores + 1)")
    parser.add_argument("--profile-samples", type=int, help="samples in the cProfile run (default 3; 0: none)")
    parser.add_argument("--work-dir", type=Path, help=f"default {DEFAULT_WORK} (--quick: ...-quick)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--report-only", action="store_true",
                        help="print the report of the last run again (WORK_DIR/results.json), measuring nothing")
    args = parser.parse_args(argv)
    if args.work_dir is None:  # a smoke run keeps the full-size data
        args.work_dir = Path(f"{DEFAULT_WORK}-quick") if args.quick else DEFAULT_WORK
    if args.frames is None:
        args.frames = 120 if args.quick else 2000
    if args.mean_length is None:
        args.mean_length = 30 if args.quick else 140
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.profile_samples is None:
        args.profile_samples = 1 if args.quick else 3

    from phoenix_data.warm import available_cores, default_workers

    cores, default = available_cores(), default_workers()
    if args.report_only:
        saved = json.loads((args.work_dir / "results.json").read_text())
        report(saved["runs"], saved["cores"], saved["default_workers"])
        return 0
    worker_counts = list(range(1, (args.max_workers or cores + 1) + 1))
    print(C.machine_line())
    lengths = C.lengths_for(args.frames, args.mean_length)
    root = C.build_frame_tree(args.work_dir / "tree", lengths, SPLIT)
    print(f"data: {len(lengths)} videos, {sum(lengths)} frames (lengths {min(lengths)}..{max(lengths)}, "
          f"mean {sum(lengths) / len(lengths):.0f}) of demo frames 210x260 at {root}")
    quiet = C.wait_for_quiet() if not (args.quick or args.no_wait) else {"load1": round(C.load1(), 2)}
    print(f"configurations: bare loop, warm-up with workers {worker_counts}; {args.rounds} round(s)", flush=True)
    started = time.monotonic()
    runs = measure(root, args.work_dir, worker_counts, args.rounds)
    results = {"runs": runs, "cores": cores, "default_workers": default, "load_at_start": quiet["load1"]}
    (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))  # before the report can fail
    results["figures"] = report(runs, cores, default)
    if args.profile_samples:
        print_profile(root, args.work_dir, args.profile_samples)
    print(f"\nload at start {quiet['load1']:.2f}, at end {C.load1():.2f}; measured in "
          f"{time.monotonic() - started:.0f} s")
    (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))
    return 0


def child_main(argv: List[str]) -> int:
    kind = argv[0]
    if kind == "bare":
        C.emit(child_bare(Path(argv[1])))
    elif kind == "profile":
        C.emit(child_profile(Path(argv[1]), Path(argv[2]), int(argv[3])))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
