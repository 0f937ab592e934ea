"""The warm-up on Ray against the local warm-up, on the same tree in one run; the driver's memory on a large split.

Configurations (each in its own child process, real MediaPipe, the synthetic 2014-T tree of ``_common``):
- local: ``phoenix-warm-cache`` with its default workers;
- ray: ``phoenix-warm-cache --ray`` (no address: a local cluster started by the run), default actors;
- ray-1node / ray-2nodes: a ``ray.cluster_utils.Cluster`` of one node with 1 CPU (1 actor), and of
  two nodes with 1 CPU each (2 actors): how throughput scales with nodes. On this one 2-core
  machine both "nodes" share its cores, so 2x is the ceiling this simulation can show; on real
  machines the same two commands on 1 and N machines (``ray start`` on each) measure N x.

The driver's memory: ``warm_on_ray`` with the fake extractor over a synthetic split of many samples
(default 5,672, PHOENIX-2014 train's size; all sample folders link one real folder of frames),
the driver's VmRSS sampled every 0.5 s: flat means the bounded in-flight queue holds.

    python benchmarks/bench_ray.py            # ~6 min here
    python benchmarks/bench_ray.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DEFAULT_WORK = Path("/tmp/phoenix_bench_ray")
# Every node on the loopback address: Ray's single-machine mode, set before Ray is imported (see
# tests/test_warm_ray.py); the child processes inherit it.
LOOPBACK = "127.0.0.1"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
OBJECT_STORE_BYTES = 80 << 20


def child_warm(root: Path, work: Path, mode: str) -> dict:
    """One warm-up of the tree: ``local``, ``ray`` (default local cluster), ``ray-1node``, ``ray-2nodes``."""
    import logging

    from phoenix_data import HolisticSettings
    from phoenix_data.warm import WarmOptions, warm

    logging.basicConfig(level=logging.WARNING)
    cache = work / f"cache-{mode}"
    shutil.rmtree(cache, ignore_errors=True)
    options = WarmOptions(root=root, cache=cache, settings=HolisticSettings(), split=C.SPLIT, heartbeat=600)
    if mode == "local":
        outcome = warm(options)
        return _result(mode, outcome.summary.to_json())
    import ray

    from phoenix_data.warm.ray import warm_on_ray

    if mode == "ray":
        outcome = warm_on_ray(options)
        return _result(mode, outcome.summary.to_json())
    from ray.cluster_utils import Cluster

    nodes = 2 if mode == "ray-2nodes" else 1
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE_BYTES,
                                                            "node_ip_address": LOOPBACK})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES, node_ip_address=LOOPBACK)
    try:
        outcome = warm_on_ray(options, address=cluster.address, actors=nodes)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return _result(mode, outcome.summary)


def _result(mode: str, summary: dict) -> dict:
    counts = summary["counts"]
    if summary["exit_status"] != 0 or counts["remaining"] or counts["failed"]:
        raise RuntimeError(f"{mode}: did not finish cleanly: {counts}, {summary.get('aborted')}")
    ray = summary.get("ray", {})
    start = ray.get("actors_start_seconds", 0.0)
    wall, frames = summary["wall_seconds"], summary["frames_extracted"]
    return {"mode": mode, "workers": summary["workers"], "frames": frames, "wall_s": wall,
            "fps": frames / wall, "fps_after_start": frames / (wall - start) if wall > start else None,
            "start_s": start, "nodes": len(ray.get("nodes", {})) or 1}


def child_driver_rss(work: Path, samples: int, frames: int) -> dict:
    """The driver's VmRSS over a fake-extractor run of ``samples`` samples (every folder links one)."""
    import logging

    from phoenix_data.extract.fake import FakeExtractorSettings
    from phoenix_data.warm import WarmOptions
    from phoenix_data.warm.ray import warm_on_ray

    logging.basicConfig(level=logging.WARNING)
    base = C.fresh_dir(work / "large")
    C.build_frame_tree(work / "one", [frames])
    source = C.release_dir(work / "one") / "features" / "fullFrame-210x260px" / C.SPLIT / C.sample_id(0)
    ids = [C.sample_id(i) for i in range(samples)]
    root = C.write_corpus(base, {C.SPLIT: ids})
    split_dir = root / "features" / "fullFrame-210x260px" / C.SPLIT
    split_dir.mkdir(parents=True)
    for sid in ids:
        (split_dir / sid).symlink_to(source, target_is_directory=True)
    trace: List[tuple] = []
    done = threading.Event()
    start = time.monotonic()

    def sample_rss() -> None:
        while not done.wait(0.5):
            trace.append((time.monotonic() - start, C.vm_rss_mb()))

    threading.Thread(target=sample_rss, daemon=True).start()
    options = WarmOptions(root=root, cache=work / "cache-large", split=C.SPLIT, heartbeat=600,
                          settings=FakeExtractorSettings())
    outcome = warm_on_ray(options)
    done.set()
    counts = outcome.summary.to_json()["counts"]
    shutil.rmtree(work / "cache-large", ignore_errors=True)
    rss = [r for _, r in trace]
    quarter = [rss[min(len(rss) - 1, int(len(rss) * q))] for q in (0.25, 0.5, 0.75)] + [rss[-1]]
    return {"samples": samples, "frames_per_sample": frames, "extracted": counts["extracted"],
            "wall_s": outcome.summary.wall_seconds, "rss_quartiles_mb": [round(x, 1) for x in quarter],
            "peak_rss_mb": round(max(rss), 1), "vmhwm_mb": round(C.proc_status_mb()["VmHWM"], 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--frames", type=int, help="frames in the tree (default 600; --quick 120)")
    parser.add_argument("--rss-samples", type=int, help="samples of the memory run (default 5672; --quick 300)")
    parser.add_argument("--work-dir", type=Path, help=f"default {DEFAULT_WORK}")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)
    frames = args.frames or (120 if args.quick else 600)
    rss_samples = args.rss_samples or (300 if args.quick else 5672)
    work = args.work_dir or (Path(f"{DEFAULT_WORK}-quick") if args.quick else DEFAULT_WORK)
    work.mkdir(parents=True, exist_ok=True)
    print(C.machine_line(), flush=True)
    quiet = {"quiet": False} if args.no_wait else C.wait_for_quiet()
    root = C.build_frame_tree(work / "tree", C.lengths_for(frames, 60))
    runs = {}
    for mode in ("local", "ray", "ray-1node", "ray-2nodes"):
        runs[mode] = C.run_child(Path(__file__), ["warm", str(root), str(work), mode])
        r = runs[mode]
        print(f"{mode:11s} workers {r['workers']}  {r['frames']} frames in {r['wall_s']:.1f} s: "
              f"{r['fps']:.1f} frames/s ({r['fps_after_start'] or 0:.1f} after {r['start_s']:.1f} s of actor "
              f"start) | load before {r['outer']['load1_before']:.2f}, others' cores "
              f"{r['outer']['others_cores']:.2f}", flush=True)
    rss = C.run_child(Path(__file__), ["rss", str(work), str(rss_samples), "16"])
    print(f"driver RSS over {rss['samples']} samples ({rss['extracted']} extracted, {rss['wall_s']:.0f} s): "
          f"at 25/50/75/100% of the run {rss['rss_quartiles_mb']} MB, peak {rss['peak_rss_mb']} MB", flush=True)
    ratios = {"ray_vs_local": runs["ray"]["fps"] / runs["local"]["fps"],
              "ray_after_start_vs_local": (runs["ray"]["fps_after_start"] or 0) / runs["local"]["fps"],
              "two_nodes_vs_one": runs["ray-2nodes"]["fps"] / runs["ray-1node"]["fps"],
              "two_nodes_vs_one_after_start": ((runs["ray-2nodes"]["fps_after_start"] or 0)
                                               / (runs["ray-1node"]["fps_after_start"] or 1))}
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    (work / "results.json").write_text(json.dumps({"quiet": quiet, "runs": runs, "rss": rss, "ratios": ratios},
                                                  indent=2))
    return 0


def child_main(argv: List[str]) -> int:
    if argv[0] == "warm":
        C.emit(child_warm(Path(argv[1]), Path(argv[2]), argv[3]))
    else:
        C.emit(child_driver_rss(Path(argv[1]), int(argv[2]), int(argv[3])))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
