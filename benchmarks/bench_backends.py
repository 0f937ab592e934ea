#!/usr/bin/env python
"""The two extraction backends side by side: ``legacy`` (mp.solutions.holistic) against ``tasks``
(HolisticLandmarker on the bundle built offline), in tracking and in static mode, on the same frames.

    python benchmarks/bench_backends.py            # 427 frames with hands, 3 rounds (~10 min on 2 cores)
    python benchmarks/bench_backends.py --quick    # smoke run (~2 min)

Frames: the demo's videos of real signing (``demo.load_clips`` + ``demo.sample_frames``: a signer with
both hands; every 7th video a person whose right hand comes and goes; 210x260), plus the two clips of
``--real`` (default ../shared/hands-real: signer_both_hands_9, person_hand_gaps_58). Every child decodes
them to RGB arrays in memory before it starts timing, so only extraction is measured.

Configurations, each in a child process of its own (MediaPipe state never crosses between them):
``HolisticSettings(backend=B, static_image_mode=S).build()``, the library's extractor, then
``extract(frames)`` per video, as a warm-up worker calls it (legacy: reset() between videos; tasks:
restart() between videos in tracking mode, before every frame in static mode). A further child times
``model_bundle.build_bundle`` to a temporary path (the one-off cost of the first use of ``tasks``).

Rounds run every configuration once, in a rotated order, so slow spells of the shared machine fall on
both backends alike; figures are medians over rounds, a ratio is the median of the per-round ratios.

frames/s: frames / wall time of the extract loop (the landmarker built and its first frame done before).
CPU ms/frame: getrusage(RUSAGE_SELF) over the same loop: the process's CPU, all MediaPipe threads included.
One-off costs: importing mediapipe; creating a landmarker alone (Holistic(...) / create_from_options, then
closed); the first extract() of one frame, which is the library's first use (it creates the landmarker,
legacy resets it, the graph allocates its arenas); a fresh timeline (legacy reset(), tasks restart()).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_WORK = Path(tempfile.gettempdir()) / "phoenix_bench_backends"
DEFAULT_REAL = C.REPO.parent / "shared" / "hands-real"
REAL_CLIPS = ("signer_both_hands_9", "person_hand_gaps_58")
DEFAULT_MODELS = Path(tempfile.gettempdir()) / "bench-models"  # PHOENIX_DATA_MODELS of the children
BACKENDS = ("legacy", "tasks")
MODES = ("tracking", "static")
FRESH_REPEATS = 5  # fresh timelines timed after the loop


# --- children ----------------------------------------------------------------------------------------

def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _clock() -> Tuple[float, float]:
    return time.perf_counter(), _cpu_self()


def _since(start: Tuple[float, float]) -> Tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def load_videos(videos: int, length: int, real: str) -> List[Tuple[str, list]]:
    """[(name, [RGB uint8 [260, 210, 3], ...]), ...]: the demo's videos, then the real clips."""
    import cv2

    from phoenix_data import demo
    from phoenix_data.frames import list_frames, read_frames_rgb

    clips = demo.load_clips()
    out = [(f"demo-{k}", [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in demo.sample_frames(clips, k, length)])
           for k in range(videos)]
    if real:
        out += [(clip, list(read_frames_rgb(list_frames(Path(real) / clip)))) for clip in REAL_CLIPS]
    return out


def _create_alone(extractor, backend: str) -> Tuple[float, float]:
    """Create a landmarker as the extractor does on its first video (timed: wall, CPU s), then close it."""
    t = _clock()
    engine = extractor._create() if backend == "tasks" else extractor._build()
    took = _since(t)
    engine.close()
    return took


def _fresh_timeline(extractor, backend: str) -> None:
    """What the extractor does between videos: legacy reset() (+ malloc_trim), tasks restart()."""
    if backend == "tasks":
        extractor._fresh()
    else:
        from phoenix_data.extract.mediapipe.runtime import release_freed_memory

        extractor._holistic.reset()
        release_freed_memory()


def child_extract(backend: str, mode: str, videos: int, length: int, real: str) -> dict:
    """One backend in one mode: one-off costs, then the timed loop over every video."""
    from phoenix_data.extract.mediapipe.settings import HolisticSettings

    data = load_videos(videos, length, real)
    settings = HolisticSettings(backend=backend, static_image_mode=mode == "static")
    t = _clock()
    extractor = settings.build()  # tasks: loads the bundle and checks its SHA-256
    settings_s = _since(t)
    t = _clock()
    import mediapipe  # noqa: F401
    if backend == "tasks":
        from mediapipe.tasks.python import vision  # noqa: F401
    import_s = _since(t)
    create_s = _create_alone(extractor, backend)
    t = _clock()
    # the library's first use: creates the landmarker (again), legacy reset(), the graph allocates its arenas
    extractor.extract(data[0][1][:1])
    first_s = _since(t)
    t = _clock()
    records = [extractor.extract(frames) for _, frames in data]
    loop_wall, loop_cpu = _since(t)
    t = _clock()
    for _ in range(FRESH_REPEATS):
        _fresh_timeline(extractor, backend)
    fresh_wall, fresh_cpu = _since(t)
    extractor.close()
    frames = sum(r.num_frames for r in records)
    found = [sum(int(r.found[:, p].sum()) for r in records) / frames for p in range(records[0].found.shape[1])]
    return {"backend": backend, "mode": mode, "frames": frames, "videos": len(records),
            "loop_wall_s": loop_wall, "loop_cpu_s": loop_cpu,
            "settings_s": settings_s[0], "import_s": import_s[0], "create_s": create_s[0],
            "create_cpu_s": create_s[1], "first_frame_s": first_s[0], "first_frame_cpu_s": first_s[1],
            "fresh_wall_s": fresh_wall / FRESH_REPEATS, "fresh_cpu_s": fresh_cpu / FRESH_REPEATS,
            "found": found, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_bundle(out_dir: str) -> dict:
    """build_bundle to a temporary path, then the load_bundle that follows on first use (digest check)."""
    from phoenix_data.extract.mediapipe import bundle as model_bundle

    out = Path(out_dir) / model_bundle.BUNDLE_NAME
    t = _clock()
    info = model_bundle.build_bundle(out)
    build_wall, build_cpu = _since(t)
    t = _clock()
    model_bundle.load_bundle(out)
    load_wall, load_cpu = _since(t)
    return {"build_wall_s": build_wall, "build_cpu_s": build_cpu, "load_wall_s": load_wall,
            "load_cpu_s": load_cpu, "size": out.stat().st_size, "sha256": info.sha256, "source": info.source}


RSS_VIDEOS = {"tracking": 12, "static": 8}
RSS_LENGTH = 30


def child_rss(mode: str) -> dict:
    """VmRSS after each video of the tasks extractor, as the library runs it (malloc_trim after every restart)."""
    from phoenix_data.extract.mediapipe.settings import HolisticSettings

    frames = [f for _, video in load_videos(2, 60, "") for f in video][:RSS_LENGTH]
    extractor = HolisticSettings(backend="tasks", static_image_mode=mode == "static").build()
    rss = []
    for _ in range(RSS_VIDEOS[mode]):
        extractor.extract(frames)
        rss.append(C.vm_rss_mb())
    return {"mode": mode, "rss_mb": rss}


def print_rss(env: Dict[str, str]) -> None:
    """The tasks extractor's RSS over videos."""
    print(f"\ntasks extractor, VmRSS MB after each video of {RSS_LENGTH} demo frames (one process each):")
    for mode in MODES:
        r = C.run_child(SCRIPT, ["rss", mode], env)
        print(f"  {mode:<8} {' '.join(f'{x:.0f}' for x in r['rss_mb'])}", flush=True)


# --- measuring ---------------------------------------------------------------------------------------

CONFIGS = [f"{b}/{m}" for m in MODES for b in BACKENDS] + ["bundle"]


def run_config(config: str, args: argparse.Namespace, env: Dict[str, str]) -> dict:
    if config == "bundle":
        with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
            return C.run_child(SCRIPT, ["bundle", tmp], env)
    backend, mode = config.split("/")
    r = C.run_child(SCRIPT, ["extract", backend, mode, str(args.videos), str(args.length), args.real], env)
    r["fps"] = r["frames"] / r["loop_wall_s"]
    r["cpu_per_frame"] = r["loop_cpu_s"] / r["frames"]
    return r


def measure(args: argparse.Namespace, env: Dict[str, str]) -> Dict[str, List[dict]]:
    runs: Dict[str, List[dict]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        shift = r % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            result = run_config(config, args, env)
            runs[config].append(result)
            outer = result["outer"]
            what = (f"build {result['build_wall_s']:.2f} s wall, {result['build_cpu_s']:.2f} s CPU"
                    if config == "bundle" else
                    f"{result['fps']:6.2f} frames/s, {result['cpu_per_frame'] * 1000:6.1f} ms CPU/frame")
            print(f"  round {r + 1}/{args.rounds} {config:<16} {what} | load before {outer['load1_before']:.2f}, "
                  f"other processes used {outer['others_cores']:.2f} cores meanwhile", flush=True)
    return runs


# --- report ------------------------------------------------------------------------------------------

def _ratio(runs: Dict[str, List[dict]], mode: str, key: str) -> Tuple[float, List[float]]:
    """Median over rounds of tasks/legacy for ``key`` in ``mode``, and the per-round ratios."""
    legacy, tasks = runs[f"legacy/{mode}"], runs[f"tasks/{mode}"]
    per_round = [new[key] / old[key] for old, new in zip(legacy, tasks)]
    return C.median(per_round), per_round


def report(runs: Dict[str, List[dict]]) -> dict:
    figures: Dict[str, dict] = {}
    rows = []
    for config in CONFIGS[:-1]:
        results = runs[config]
        fps, cpu = [r["fps"] for r in results], [r["cpu_per_frame"] * 1000 for r in results]
        figures[config] = {k: C.median(r[k] for r in results) for k in
                           ("fps", "cpu_per_frame", "import_s", "create_s", "first_frame_s", "fresh_wall_s",
                            "max_rss_mb")}
        rows.append([config, results[0]["frames"], f"{C.median(fps):.2f} {C.spread(fps, '{:.2f}')}",
                     f"{C.median(cpu):.1f} {C.spread(cpu)}",
                     f"{C.median(r['loop_cpu_s'] / r['loop_wall_s'] for r in results):.2f}",
                     f"{figures[config]['max_rss_mb']:.0f}",
                     f"{C.median(r['outer']['others_cores'] for r in results):.2f}"])
    print()
    print(C.table(rows, ["backend/mode", "frames", "frames/s [rounds]", "CPU ms/frame [rounds]", "cores busy",
                         "peak RSS MB", "others' cores"]))
    print()
    for mode in MODES:
        fps, fps_rounds = _ratio(runs, mode, "fps")
        cpu, cpu_rounds = _ratio(runs, mode, "cpu_per_frame")
        figures[f"ratio/{mode}"] = {"fps": fps, "cpu_per_frame": cpu}
        print(f"tasks/legacy, {mode:<8}: frames/s {fps:.3f} {C.spread(fps_rounds, '{:.3f}')}   "
              f"CPU per frame {cpu:.3f} {C.spread(cpu_rounds, '{:.3f}')}")
    print_one_off(runs, figures)
    print_static_cost(runs)
    print_found(runs)
    return figures


def print_one_off(runs: Dict[str, List[dict]], figures: Dict[str, dict]) -> None:
    print("\none-off costs, median wall ms [rounds]:")
    rows = []
    for config in CONFIGS[:-1]:
        results = runs[config]
        rows.append([config] + [f"{C.median(r[k] for r in results) * 1000:.0f} "
                                f"{C.spread([r[k] * 1000 for r in results], '{:.0f}')}"
                                for k in ("settings_s", "import_s", "create_s", "first_frame_s", "fresh_wall_s")])
    print(C.table(rows, ["backend/mode", "settings.build()", "import mediapipe", "create landmarker",
                         "first extract() of 1 frame", "fresh timeline"]))
    bundle = runs["bundle"]
    build_wall = [r["build_wall_s"] for r in bundle]
    figures["bundle"] = {"build_wall_s": C.median(build_wall),
                         "build_cpu_s": C.median(r["build_cpu_s"] for r in bundle),
                         "load_wall_s": C.median(r["load_wall_s"] for r in bundle), "size": bundle[0]["size"]}
    b = figures["bundle"]
    print(f"build_bundle ({bundle[0]['source']}, {b['size'] / 1e6:.1f} MB): {b['build_wall_s']:.2f} s wall "
          f"{C.spread(build_wall, '{:.2f}')}, {b['build_cpu_s']:.2f} s CPU; load_bundle of it (SHA-256 check) "
          f"{b['load_wall_s'] * 1000:.0f} ms; same bytes every round: "
          f"{'yes' if len({r['sha256'] for r in bundle}) == 1 else 'NO'}")
    print("settings.build(): the extractor object (tasks: load_bundle + digest check); create landmarker: one "
          "built alone and closed; first extract(): the library's first use (create, legacy reset(), first "
          "frame); fresh timeline: legacy reset() + malloc_trim, tasks restart(), once per video in tracking "
          "mode (tasks static: before every frame, inside the loop)")


def print_static_cost(runs: Dict[str, List[dict]]) -> None:
    """Where the modes' per-frame costs differ: fresh timelines (per video; tasks static: per frame)."""
    def cpu_ms(config: str, key: str) -> float:
        return C.median(r[key] for r in runs[config]) * 1000

    first = runs["legacy/tracking"][0]
    per_video = {b: cpu_ms(f"{b}/tracking", "fresh_cpu_s") for b in BACKENDS}
    share = {b: per_video[b] * first["videos"] / first["frames"] for b in BACKENDS}
    print(f"\nfresh timeline per video in tracking mode, CPU: legacy reset() {per_video['legacy']:.1f} ms, tasks "
          f"restart() {per_video['tasks']:.1f} ms; over these {first['videos']} videos of "
          f"{first['frames'] / first['videos']:.0f} frames on average {share['legacy']:.1f} / "
          f"{share['tasks']:.1f} ms per frame (of the tracking figures above)")
    for backend, why in (("legacy", "the detectors run on every frame"),
                         ("tasks", f"a restart() before every frame, {per_video['tasks']:.1f} ms CPU each, "
                                   "and the detectors on every frame")):
        tracking, static = cpu_ms(f"{backend}/tracking", "cpu_per_frame"), cpu_ms(f"{backend}/static", "cpu_per_frame")
        print(f"static, CPU ms per frame: {backend:<6} {static:6.1f} = tracking {tracking:5.1f} + "
              f"{static - tracking:5.1f} ({why})")


def print_found(runs: Dict[str, List[dict]]) -> None:
    """Share of frames where each part was found: the same models ran on both sides (hands included)."""
    from phoenix_data.record import PARTS

    print("\nshare of frames with " + ", ".join(PARTS) + " found (first round):")
    for config in CONFIGS[:-1]:
        print(f"  {config:<16} " + "  ".join(f"{share:.3f}" for share in runs[config][0]["found"]))


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--videos", type=int, help="demo videos (default 6; --quick 2)")
    parser.add_argument("--length", type=int, help="frames per demo video (default 60; --quick 20)")
    parser.add_argument("--rounds", type=int, help="rounds of every configuration (default 3; --quick 1)")
    parser.add_argument("--real", default=str(DEFAULT_REAL),
                        help=f"folder holding {' and '.join(REAL_CLIPS)} (default {DEFAULT_REAL}; '' for none)")
    parser.add_argument("--work-dir", type=Path, help=f"results.json goes here; default {DEFAULT_WORK} "
                                                        "(--quick: ...-quick)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--rss-only", action="store_true",
                        help="only the tasks extractor's RSS after each video, tracking and static (~2 min)")
    parser.add_argument("--report-only", action="store_true",
                        help="print the report of the last run again (WORK_DIR/results.json), measuring nothing")
    args = parser.parse_args(argv)
    args.videos = args.videos or (2 if args.quick else 6)
    args.length = args.length or (20 if args.quick else 60)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.work_dir is None:  # a smoke run keeps the full run's results
        args.work_dir = Path(f"{DEFAULT_WORK}-quick") if args.quick else DEFAULT_WORK
    if args.report_only:
        report(json.loads((args.work_dir / "results.json").read_text())["runs"])
        return 0
    if args.real and not all((Path(args.real) / clip).is_dir() for clip in REAL_CLIPS):
        parser.error(f"--real {args.real}: expected the folders {', '.join(REAL_CLIPS)} in it; pass --real '' "
                     "to measure on the demo frames only.")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    # the tasks backend builds its bundle on first need: in a folder of ours, before any timing
    env = {"PHOENIX_DATA_MODELS": os.environ.get("PHOENIX_DATA_MODELS", str(DEFAULT_MODELS))}
    print(C.machine_line())
    if args.rss_only:
        print_rss(env)
        return 0
    print(f"uptime before: {_uptime()}")
    prepare = C.run_command([sys.executable, "-c", "from phoenix_data.extract.mediapipe.bundle import load_bundle; "
                             "print(load_bundle().path)"], env)
    print(f"bundle of the tasks backend: {prepare['stdout'].strip()} (PHOENIX_DATA_MODELS)")
    print(f"data: {args.videos} demo videos x {args.length} frames"
          + (f" + {', '.join(REAL_CLIPS)} from {args.real}" if args.real else "") + ", 210x260 RGB in memory")
    quiet = C.wait_for_quiet() if not (args.quick or args.no_wait) else {"load1": round(C.load1(), 2)}
    print(f"configurations: {', '.join(CONFIGS)}; {args.rounds} round(s)", flush=True)
    started = time.monotonic()
    runs = measure(args, env)
    results = {"runs": runs, "load_at_start": quiet["load1"], "args": {k: str(v) for k, v in vars(args).items()}}
    (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))  # before the report can fail
    results["figures"] = report(runs)
    print(f"\nload at start {quiet['load1']:.2f}, at end {C.load1():.2f}; uptime after: {_uptime()}; "
          f"measured in {time.monotonic() - started:.0f} s")
    (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))
    return 0


def _uptime() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def child_main(argv: List[str]) -> int:
    kind = argv[0]
    if kind == "extract":
        C.emit(child_extract(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5]))
    elif kind == "rss":
        C.emit(child_rss(argv[1]))
    elif kind == "bundle":
        C.emit(child_bundle(argv[1]))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
