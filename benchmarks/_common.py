"""Shared helpers of the benchmark scripts: quiet-machine check, child processes, medians, synthetic trees.

Every measured configuration runs in a child process of its own (``run_child``): the parent never builds
a MediaPipe Holistic nor opens an LMDB environment, so nothing it holds can cross a DataLoader fork.
A child prints one JSON object on its last stdout line; ``run_child`` adds the child's CPU time as seen
by ``getrusage(RUSAGE_CHILDREN)`` (the child and every descendant it waited for: DataLoader workers too).
"""
from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
QUIET_LOAD = 0.7
QUIET_WAIT_SECONDS = 600.0
# 2014-T's layout: frames directly under <name>/, CSV with a translation column.
RELEASE = "PHOENIX-2014-T"
GLOSSES = ("__ON__", "MORGEN", "SONNE", "SUED", "WARM", "NORD", "WOLKE", "REGEN", "IX", "NACHT", "KALT",
           "SCHNEE", "WIND", "STARK", "KUESTE", "GEWITTER", "__OFF__")
SPLIT = "train"
SIGNERS = ("Signer01", "Signer02", "Signer04", "Signer05", "Signer07", "Signer08")


# --- the machine -----------------------------------------------------------------------------------

def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(limit: float = QUIET_LOAD, timeout: float = QUIET_WAIT_SECONDS, poll: float = 15.0) -> dict:
    """Poll the 1-minute load until it is below ``limit`` (at most ``timeout`` s); says what it saw."""
    start = time.monotonic()
    seen = load1()
    while seen >= limit and time.monotonic() - start < timeout:
        print(f"[quiet] load {seen:.2f} >= {limit}; waiting ({time.monotonic() - start:.0f}/{timeout:.0f} s)",
              flush=True)
        time.sleep(poll)
        seen = load1()
    quiet = seen < limit
    print(f"[quiet] 1-min load {seen:.2f} after {time.monotonic() - start:.0f} s: "
          f"{'quiet' if quiet else 'STILL BUSY, measuring anyway (figures are noisier)'}", flush=True)
    return {"load1": round(seen, 2), "waited_s": round(time.monotonic() - start), "quiet": quiet}


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_stat(pid: int) -> Optional[Tuple[float, int]]:
    """(user + system CPU seconds, minor page faults: first touches of memory pages) of process ``pid`` so
    far, from /proc/PID/stat; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0))
    return (f"machine: {cores} cores (affinity), load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
            f"python {sys.version.split()[0]}")


# --- child processes -------------------------------------------------------------------------------

def run_command(cmd: Sequence[str], env: Optional[Dict[str, str]] = None, timeout: float = 3600) -> dict:
    """Run ``cmd``; return its stdout, wall time and CPU time (getrusage(RUSAGE_CHILDREN) before and after)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load, busy = load1(), busy_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=str(REPO))
    wall = time.perf_counter() - start
    busy = busy_cpu_seconds() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # what the rest of the machine used meanwhile (other engineers' tests): the noise of this figure
    others = max(0.0, busy - cpu) / wall
    return {"stdout": proc.stdout, "wall_s": wall, "cpu_s": cpu, "load1_before": load, "others_cores": others}


def run_child(script: Path, args: Sequence[str], env: Optional[Dict[str, str]] = None,
              timeout: float = 3600) -> dict:
    """Run ``python script child ARGS``; its JSON result, with ``outer`` = run_command's wall, CPU and load."""
    outer = run_command([sys.executable, str(script), "child", *args], env, timeout)
    lines = [line for line in outer.pop("stdout").splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"child {script.name} {' '.join(args)} printed no JSON result")
    result = json.loads(lines[-1])
    result["outer"] = outer
    return result


def emit(result: dict) -> None:
    """A child's result: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


# --- numbers ---------------------------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    return "[" + ", ".join(fmt.format(v) for v in values) + "]"


def table(rows: List[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# --- synthetic release trees ---------------------------------------------------------------------------

def release_dir(base: Path) -> Path:
    from phoenix_data.corpus import RELEASES  # the library's layout table, as the demo tree uses it

    return base / RELEASES[RELEASE].archive / RELEASE


def sample_id(index: int) -> str:
    return f"{index + 1:02d}January_2011_Saturday_tagesschau-{index}"


def gloss_line(index: int) -> str:
    n = 4 + index % 6
    return " ".join(GLOSSES[(index * 7 + k * 3) % len(GLOSSES)] for k in range(n))


def write_corpus(base: Path, split_ids: Dict[str, List[str]]) -> Path:
    """Write 2014-T corpus CSVs (CRLF, as real copies) for the given ids; returns the release folder.

    Where the files go and their header come from ``phoenix_data.corpus.RELEASES``, as for the demo tree."""
    from phoenix_data.corpus import RELEASES

    layout, root = RELEASES[RELEASE], release_dir(base)
    for split, ids in split_ids.items():
        rows = ["|".join(layout.header)] + [f"{sid}|{sid}/1/*.png|-1|-1|{SIGNERS[i % len(SIGNERS)]}|{gloss_line(i)}|"
                                            f"synthetic sample {i}" for i, sid in enumerate(ids)]
        path = root / layout.csv_pattern.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes("\r\n".join(rows + [""]).encode())
    return root


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def du_bytes(path: Path) -> int:
    """Bytes allocated on disk (what ``du`` counts), not the apparent size."""
    return os.stat(path).st_blocks * 512


def evict_from_page_cache(paths: Iterable[Path]) -> None:
    """Drop our own files' clean pages from the page cache (posix_fadvise DONTNEED; no root, nothing else touched)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def vm_rss_mb(pid: str = "self") -> float:
    """Resident set size from /proc/PID/status (psutil is not installed)."""
    return proc_status_mb(pid)["VmRSS"]


def proc_status_mb(pid: str = "self") -> Dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) / 1024
    return out


def smaps_rollup_mb(pid: str) -> Dict[str, float]:
    """Rss, Pss and private memory of a process (shared pages counted once across processes in Pss)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
                out[name] = int(rest.split()[0]) / 1024
    return out


def lengths_for(total_frames: int, mean: int) -> List[int]:
    """Video lengths spread over mean +- 30% (PHOENIX-2014 train: mean 141) until they sum to >= total."""
    half = max(1, int(mean * 0.3))
    lengths: List[int] = []
    while sum(lengths) < total_frames:
        lengths.append(mean - half + (37 * len(lengths)) % (2 * half + 1))
    return lengths


def build_frame_tree(base: Path, lengths: List[int], split: str = SPLIT) -> Path:
    """A 2014-T release tree with len(lengths) videos of demo frames (210x260 PNG); reused when it matches.

    Frames come from phoenix_data.demo (its clips of real signing, played forth and back, mirrored
    every other video), so Holistic finds pose, face and hands as on signing video: video k is cut
    like the demo's k-th sample (a signer with both hands, or every 7 videos two of a person whose
    right hand comes and goes). Only OpenCV runs here: no Holistic.
    """
    import cv2

    from phoenix_data import demo

    spec = {"lengths": lengths, "split": split, "version": 2}
    spec_file = base / "tree-spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec:
        return release_dir(base)
    fresh_dir(base)
    ids = [sample_id(i) for i in range(len(lengths))]
    root = write_corpus(base, {split: ids})
    clips = demo.load_clips()
    split_dir = root / "features" / "fullFrame-210x260px" / split
    for number, (sid, count) in enumerate(zip(ids, lengths)):
        folder = split_dir / sid
        folder.mkdir(parents=True)
        for t, image in enumerate(demo.sample_frames(clips, number, count)):
            ok, png = cv2.imencode(".png", image, demo.PNG_PARAMS)
            if not ok:
                raise RuntimeError("OpenCV could not encode a demo frame")
            (folder / f"images{t + 1:04d}.png").write_bytes(png.tobytes())
    spec_file.write_text(json.dumps(spec))
    return root
