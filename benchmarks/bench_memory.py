#!/usr/bin/env python
"""Memory: RSS of each extraction worker of the warm-up job, and the training main process over epochs.

    python benchmarks/bench_memory.py            # ~1,000 frames per warm-up, 1,000 cached samples (~7 min)
    python benchmarks/bench_memory.py --quick    # smoke run

1. Extraction workers: ``python -m phoenix_data.warm`` with W = 1 .. cores+1 workers on a synthetic 2014-T tree of
   demo frames (real signing, with hands). Each worker is sampled from outside every 0.2 s (/proc/PID/status VmRSS,
   RssAnon, RssFile and /proc/PID/smaps_rollup Pss, Private): peaks per worker, medians over workers and rounds;
   beside them the job's own summary.json peak_rss_mb_per_worker (the worker's ru_maxrss). RSS counts pages a
   forked worker shares with its parent (torch, numpy, ...) in full; Pss splits them; Private is what the worker
   adds.
2. Main process over epochs: PhoenixLandmarks over a warm cache (the synthetic one of bench_reads.py, 1,000
   samples of ~140 frames), DataLoader(num_workers=2, batch_size=8, shuffle, collate_ctc). VmRSS from
   /proc/self/status (psutil is not installed) before the first epoch, after each batch (the peak of an
   epoch) and at each epoch's end; "flat" = the end of the last epoch within 10 MB of the end of the first.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_reads  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_WORK = Path(tempfile.gettempdir()) / "phoenix_bench_memory"
WORKER_TARGET_MB = 400.0
FLAT_MB = 10.0
POLL_S = 0.2


# --- 1. extraction workers -----------------------------------------------------------------------------

def children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def sample_worker(pid: int) -> Dict[str, float]:
    try:
        status = C.proc_status_mb(str(pid))
        rollup = C.smaps_rollup_mb(str(pid))
    except (OSError, KeyError, ValueError):
        return {}
    return {"rss": status.get("VmRSS", 0.0), "anon": status.get("RssAnon", 0.0),
            "file": status.get("RssFile", 0.0), "pss": rollup.get("Pss", 0.0),
            "private": rollup.get("Private_Clean", 0.0) + rollup.get("Private_Dirty", 0.0)}


def warm_with_sampling(root: Path, work: Path, workers: int, tag: str) -> dict:
    """Run the warm-up job, sampling its workers' memory from outside; peaks per worker pid."""
    import shutil

    cache, reports = work / f"cache-{tag}", work / f"reports-{tag}"
    for path in (cache, reports):
        shutil.rmtree(path, ignore_errors=True)
    cmd = [sys.executable, "-m", "phoenix_data.warm", "--root", str(root), "--cache", str(cache), "--split", C.SPLIT,
           "--release", C.RELEASE, "--workers", str(workers), "--report-dir", str(reports), "--heartbeat", "600"]
    load = C.load1()
    log = work / f"warm-{tag}.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=str(C.REPO))
        peaks, main_peak = _sample_until_done(proc)
    summary = json.loads((reports / "summary.json").read_text())
    if proc.returncode != 0 or summary["counts"]["remaining"] or summary["counts"]["failed"]:
        sys.stderr.write(log.read_text()[-3000:])
        raise RuntimeError(f"warm-up with {workers} workers did not finish cleanly: {summary['counts']}")
    shutil.rmtree(cache, ignore_errors=True)
    reported = summary["peak_rss_mb_per_worker"]
    # a worker that extracted nothing is not in the summary; keep the workers that did
    peaks = {pid: p for pid, p in peaks.items() if str(pid) in reported}
    return {"workers": workers, "peaks": peaks, "summary_peak": reported,
            "main_peak_rss": main_peak, "load1": load, "frames": summary["frames_extracted"],
            "fps": summary["frames_extracted"] / summary["wall_seconds"]}


def _sample_until_done(proc: subprocess.Popen) -> tuple:
    """Peak memory of each child of ``proc`` and of ``proc`` itself, polled until it exits."""
    peaks: Dict[int, Dict[str, float]] = {}
    main_peak = 0.0
    while proc.poll() is None:
        main_peak = max(main_peak, sample_worker(proc.pid).get("rss", 0.0))
        for pid in children(proc.pid):
            now = sample_worker(pid)
            if now:
                peak = peaks.setdefault(pid, {})
                for name, value in now.items():
                    peak[name] = max(peak.get(name, 0.0), value)
        time.sleep(POLL_S)
    return peaks, main_peak


def measure_workers(root: Path, work: Path, worker_counts: List[int], rounds: int) -> Dict[str, List[dict]]:
    """Every worker count as the job runs today (the library trims malloc after each video); rotated rounds."""
    runs: Dict[str, List[dict]] = {_label(w): [] for w in worker_counts}
    for r in range(rounds):
        for workers in worker_counts[r % len(worker_counts):] + worker_counts[:r % len(worker_counts)]:
            run = warm_with_sampling(root, work, workers, f"w{workers}-r{r}")
            runs[_label(workers)].append(run)
            peaks = ", ".join(f"{p['rss']:.0f}" for p in run["peaks"].values())
            print(f"  round {r + 1} {_label(workers):<40}: peak RSS per worker [{peaks}] MB, "
                  f"{run['fps']:.1f} frames/s, load before {run['load1']:.2f}", flush=True)
    return runs


def _label(workers: int, default: int = 0) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}" + (" (default)" if workers == default else "")


def report_workers(runs: Dict[str, List[dict]], default: int) -> dict:
    rows, figures = [], {}
    for label, results in runs.items():
        workers = results[0]["workers"]
        peaks = [p for r in results for p in r["peaks"].values()]
        summary = [v for r in results for v in r["summary_peak"].values()]
        fig = {k: C.median(p[k] for p in peaks) for k in ("rss", "pss", "private", "anon", "file")}
        fig["max_rss"] = max(p["rss"] for p in peaks)
        fig["summary_ru_maxrss"] = C.median(summary)
        fig["fps"] = C.median(r["fps"] for r in results)
        figures[label] = fig
        rows.append([_label(workers, default), len(peaks),
                     f"{fig['rss']:.0f}", f"{fig['max_rss']:.0f}", f"{fig['summary_ru_maxrss']:.0f}",
                     f"{fig['anon']:.0f}", f"{fig['file']:.0f}", f"{fig['pss']:.0f}", f"{fig['private']:.0f}",
                     f"{C.median(r['main_peak_rss'] for r in results):.0f}", f"{fig['fps']:.1f}"])
    print()
    print(C.table(rows, ["warm-up job", "worker runs", "peak RSS MB (median)", "max", "summary ru_maxrss",
                         "RssAnon", "RssFile", "Pss", "Private", "main proc RSS", "frames/s"]))
    worst = max(f["max_rss"] for label, f in figures.items() if "exp." not in label)
    print(f"largest peak RSS of any extraction worker: {worst:.0f} MB   target <= {WORKER_TARGET_MB:.0f} MB: "
          f"{C.verdict(worst <= WORKER_TARGET_MB)}")
    return figures


def child_breakdown(root: Path, with_torch: bool, trim: bool, frames_per_video: int = 40) -> dict:
    """RSS step by step in one process: what a worker holds, by where it came from (the memory profile)."""
    steps = [("python", C.proc_status_mb())]
    if with_torch:
        import torch  # noqa: F401 - what the warm-up's main process imports before its workers fork

        import phoenix_data.warm  # noqa: F401
        steps.append(("import torch + phoenix_data.warm", C.proc_status_mb()))
    import cv2
    import mediapipe as mp

    steps.append(("import cv2, mediapipe", C.proc_status_mb()))
    holistic = mp.solutions.holistic.Holistic(model_complexity=1)
    steps.append(("Holistic built", C.proc_status_mb()))
    split_dir = root / "features" / "fullFrame-210x260px" / C.SPLIT
    videos = [sorted(str(p) for p in d.glob("*.png"))[:frames_per_video] for d in sorted(split_dir.iterdir())]
    holistic.process(cv2.cvtColor(cv2.imread(videos[0][0]), cv2.COLOR_BGR2RGB))
    steps.append(("first frame", C.proc_status_mb()))
    trim_fn = _malloc_trim() if trim else None
    for number, paths in enumerate(videos * 2, start=1):
        holistic.reset()  # as HolisticExtractor.extract does before each video
        if trim_fn is not None:
            trim_fn(0)
        for path in paths:
            holistic.process(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))
        if number in (1, 4, 2 * len(videos)):
            steps.append((f"{number} videos (reset between)", C.proc_status_mb()))
    return {"steps": steps, "mappings": largest_mappings(6)}


def _malloc_trim():
    """glibc's malloc_trim: hand the free memory of every malloc arena back to the kernel."""
    import ctypes

    return ctypes.CDLL("libc.so.6").malloc_trim


def largest_mappings(count: int) -> List[tuple]:
    """This process's resident memory grouped by mapping name ([anon], [heap], each .so)."""
    totals: Dict[str, float] = {}
    name = "[anon]"
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if fields and not fields[0].endswith(":"):  # a mapping's header line
                name = fields[5] if len(fields) > 5 else "[anon]"
            elif fields and fields[0] == "Rss:":
                totals[name] = totals.get(name, 0.0) + int(fields[1]) / 1024
    return sorted(totals.items(), key=lambda kv: -kv[1])[:count]


def print_breakdown(root: Path) -> None:
    print("\nwhere a worker's memory comes from: one process, step by step, VmRSS MB (RssAnon in brackets);")
    print("videos of 40 frames of the same tree, each twice, Holistic.reset() before each as the library does")
    variants = [(True, False, "torch imported first (as a warm-up worker)"), (False, False, "bare mediapipe"),
                (True, True, "torch first + malloc_trim(0) after reset"),
                (False, True, "bare + malloc_trim(0) after reset")]
    rows, header = [], None
    for with_torch, trim, name in variants:
        r = C.run_child(SCRIPT, ["breakdown", str(root), "1" if with_torch else "0", "1" if trim else "0"])
        steps = [(label, st) for label, st in r["steps"] if not label.startswith("import torch")]
        header = header or [label for label, _ in steps]
        rows.append([name] + [f"{st['VmRSS']:.0f} ({st['RssAnon']:.0f})" for _, st in steps])
        if not trim:
            mappings = ", ".join(f"{label.rsplit('/', 1)[-1]} {mb:.0f}" for label, mb in r["mappings"])
            print(f"  {name}: largest resident mappings at the end (MB): {mappings}")
    print(C.table(rows, ["process"] + header))


# --- 2. the main process over epochs ---------------------------------------------------------------------

def child_epochs(info: dict, epochs: int, workers: int) -> dict:
    status = C.proc_status_mb
    start_rss = status()["VmRSS"]
    loader = bench_reads.make_loader(bench_reads.make_dataset("lmdb", info), workers)
    before = status()["VmRSS"]
    ends, peaks, worker_peaks, seconds = [], [], [], []
    for _ in range(epochs):
        peak, worker_peak = 0.0, {"rss": 0.0}
        started = time.perf_counter()
        for batch in loader:
            batch["landmarks"].sum()  # touch it, as a training step would
            del batch
            peak = max(peak, status()["VmRSS"])
            for pid in children(_self_pid()):
                now = sample_worker(pid)
                if now.get("rss", 0.0) > worker_peak["rss"]:
                    worker_peak = now
        seconds.append(time.perf_counter() - started)
        ends.append(status()["VmRSS"])
        peaks.append(peak)
        worker_peaks.append(worker_peak)
    return {"after_imports": start_rss, "before_epochs": before, "ends": ends, "peaks": peaks,
            "worker_peaks": worker_peaks, "epoch_s": seconds}


def _self_pid() -> int:
    import os

    return os.getpid()


def measure_main(info: dict, epochs: int, rounds: int) -> List[dict]:
    runs = []
    for r in range(rounds):
        result = C.run_child(SCRIPT, ["epochs", json.dumps(info), str(epochs), "2"])
        runs.append(result)
        print(f"  round {r + 1}: main-process RSS at epoch ends "
              f"{C.spread(result['ends'], '{:.1f}')} MB (load before {result['outer']['load1_before']:.2f})",
              flush=True)
    return runs


def report_main(runs: List[dict], epochs: int) -> dict:
    rows = [["before epoch 1", f"{C.median(r['before_epochs'] for r in runs):.1f}", "", "", "", ""]]
    first = C.median(r["ends"][0] for r in runs)
    for e in range(epochs):
        end = C.median(r["ends"][e] for r in runs)
        rows.append([f"epoch {e + 1}", f"{end:.1f}", f"{C.median(r['peaks'][e] for r in runs):.1f}",
                     f"{end - first:+.1f}", _worker_cell([r["worker_peaks"][e] for r in runs]),
                     f"{C.median(r['epoch_s'][e] for r in runs):.2f}"])
    print()
    print(C.table(rows, ["main process", "RSS at end MB", "peak in epoch MB", "vs epoch 1 end",
                         "reader worker peak RSS MB (anon / file)", "epoch s"]))
    growth = C.median(r["ends"][-1] - r["ends"][0] for r in runs)
    per_round = ", ".join(f"{r['ends'][-1] - r['ends'][0]:+.1f}" for r in runs)
    print(f"growth from the end of epoch 1 to the end of epoch {epochs}: {growth:+.1f} MB (rounds: {per_round})"
          f"   target flat (within {FLAT_MB:.0f} MB): {C.verdict(abs(growth) <= FLAT_MB)}")
    return {"growth_mb": growth, "ends": [C.median(r["ends"][e] for r in runs) for e in range(epochs)]}


def _worker_cell(peaks: List[dict]) -> str:
    """A reader worker's peak RSS; its file part is mostly the LMDB map's pages it touched (page cache)."""
    return (f"{C.median(p['rss'] for p in peaks):.0f} ({C.median(p.get('anon', 0) for p in peaks):.0f} / "
            f"{C.median(p.get('file', 0) for p in peaks):.0f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--frames", type=int, help="frames per warm-up (default 1000; --quick 90)")
    parser.add_argument("--samples", type=int, help="cached samples read per epoch (default 1000; --quick 64)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, help="repeats of each measurement (default 2; --quick 1)")
    parser.add_argument("--work-dir", type=Path, help=f"default {DEFAULT_WORK} (--quick: ...-quick)")
    parser.add_argument("--reads-work-dir", type=Path,
                        help="where bench_reads.py keeps (or this writes) the synthetic cache "
                             f"(default {bench_reads.DEFAULT_WORK}; --quick: ...-quick)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)
    if args.work_dir is None:  # a smoke run keeps the full-size data
        args.work_dir = Path(f"{DEFAULT_WORK}-quick") if args.quick else DEFAULT_WORK
    quick = args.quick
    args.frames = args.frames or (90 if quick else 1000)
    args.samples = args.samples or (64 if quick else 1000)
    args.rounds = args.rounds or (1 if quick else 2)
    if args.reads_work_dir is None:
        args.reads_work_dir = Path(f"{bench_reads.DEFAULT_WORK}-quick") if quick else bench_reads.DEFAULT_WORK

    from phoenix_data.warm import available_cores, default_workers

    cores, default = available_cores(), default_workers()
    print(C.machine_line())
    lengths = C.lengths_for(args.frames, 30 if quick else 140)
    root = C.build_frame_tree(args.work_dir / "tree", lengths)
    info = bench_reads.populate(args.reads_work_dir, args.samples)
    print(f"data: warm-up tree of {len(lengths)} videos, {sum(lengths)} frames; cache of {info['samples']} "
          f"samples, {info['frames']} frames")
    quiet = C.wait_for_quiet() if not (quick or args.no_wait) else {"load1": round(C.load1(), 2)}
    started = time.monotonic()
    print("\n1. extraction workers (warm-up job)", flush=True)
    worker_figures = report_workers(measure_workers(root, args.work_dir, list(range(1, cores + 2)), args.rounds),
                                    default)
    if max(f["max_rss"] for f in worker_figures.values()) > WORKER_TARGET_MB:  # show where it goes
        print_breakdown(root)
    print(f"\n2. main process, {args.epochs} epochs over the warm cache, num_workers=2", flush=True)
    main_figures = report_main(measure_main(info, args.epochs, args.rounds), args.epochs)
    print(f"\nload at start {quiet['load1']:.2f}, at end {C.load1():.2f}; measured in "
          f"{time.monotonic() - started:.0f} s")
    (args.work_dir / "results.json").write_text(json.dumps({"workers": worker_figures, "main": main_figures},
                                                           indent=1))
    return 0


def child_main(argv: List[str]) -> int:
    if argv[0] == "breakdown":
        C.emit(child_breakdown(Path(argv[1]), argv[2] == "1", argv[3] == "1"))
        return 0
    if argv[0] == "epochs":
        C.emit(child_epochs(json.loads(argv[1]), int(argv[2]), int(argv[3])))
        return 0
    raise SystemExit(f"unknown child {argv[0]!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
