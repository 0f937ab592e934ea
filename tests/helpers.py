"""Builders and helpers shared by the tests (fixtures live in conftest.py)."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import lmdb
import numpy as np
import pytest

from phoenix_data.cache import decode_record
from phoenix_data.corpus import SPLITS, find_release, read_release_split
from phoenix_data.frames import list_frames

REPO_ROOT = Path(__file__).resolve().parent.parent
MULTI = "phoenix-2014-multisigner"
RUN_TIMEOUT = 240


def ci_is_set() -> bool:
    """Whether CI is set: there a missing input fails its test instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# Tests that read mediapipe 0.10.21 itself (its version, mp.solutions' source files, the legacy
# backend's defaults). Python 3.13+ has mediapipe 1.x, which has neither: tests/test_py313.py runs there.
def legacy_mediapipe_only(test):
    """A test of the legacy backend that reads mediapipe 0.10.21 itself: marked ``legacy`` (skipped where
    mediapipe has only the Tasks API) and ``mediapipe``."""
    return pytest.mark.mediapipe(pytest.mark.legacy(test))


# --- release layouts -------------------------------------------------------------------------------
#
# The release layout is spelled out here on purpose instead of being taken from
# phoenix_data.corpus.RELEASES: a wrong file name in the reader's tables must fail the tests.

CORPUS_FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "corpus"

# release folder -> (archive folder it ships in, CSV file name under annotations/manual/, header)
CORPUS_LAYOUT = {
    "phoenix-2014-multisigner": (
        "phoenix2014-release", "{split}.corpus.csv", "id|folder|signer|annotation"),
    "phoenix-2014-signerindependent-SI5": (
        "phoenix2014-release", "{split}.SI5.corpus.csv", "id|folder|signer|annotation"),
    "PHOENIX-2014-T": (
        "PHOENIX-2014-T-release-v3", "PHOENIX-2014-T.{split}.corpus.csv",
        "name|video|start|end|speaker|orth|translation"),
}


def corpus_release_dir(base: Path, release: str) -> Path:
    """``base/<archive>/<release>``, e.g. ``base/phoenix2014-release/phoenix-2014-multisigner``."""
    archive = CORPUS_LAYOUT[release][0]
    return base / archive / release


def corpus_csv_path(base: Path, release: str, split: str) -> Path:
    """Where the release keeps the CSV of ``split``, with ``base`` the folder above the archive."""
    name = CORPUS_LAYOUT[release][1].format(split=split)
    return corpus_release_dir(base, release) / "annotations" / "manual" / name


def write_corpus_csv(base: Path, release: str, split: str, rows: Sequence[str], header: Optional[str] = None,
                     newline: str = "\n") -> Path:
    """The one writer of fake release trees in the tests: one corpus CSV where ``release`` keeps ``split``
    under ``base`` (no frames). ``rows``: the lines after the header, ``|``-joined already; ``header``
    None: the release's real one. Returns the CSV's path."""
    path = corpus_csv_path(base, release, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [CORPUS_LAYOUT[release][2] if header is None else header, *rows]
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path



# --- records --------------------------------------------------------------------------------------

def fake_record(frames: int, seed: int = 0, hands: bool = True):
    """A LandmarkRecord of plausible random values, for cache tests that need no MediaPipe."""
    import numpy as np

    from phoenix_data.record import NUM_POINTS, LandmarkRecord, part_slices

    rng = np.random.default_rng(seed)
    landmarks = rng.uniform(-0.2, 1.2, (frames, NUM_POINTS, 3)).astype(np.float32)
    confidence = np.ones((frames, NUM_POINTS), np.float32)
    slices = part_slices(NUM_POINTS)
    confidence[:, slices["pose"]] = rng.uniform(0, 1, (frames, 33))
    if not hands:
        for part in ("left_hand", "right_hand"):
            landmarks[:, slices[part]] = 0
            confidence[:, slices[part]] = 0
    return LandmarkRecord(landmarks, confidence, width=210, height=260, pid=4242, seconds=1.5)


def cached_train_split(base: Path, records, release: str = "PHOENIX-2014-T"):
    """(release root, cache): a train split whose sample i is ``records[i]`` in a real cache written with the
    fake extractor's settings (samples s0, s1, ...; no frames: every sample is cached)."""
    from phoenix_data.cache import LandmarkCache
    from phoenix_data.extract.fake import FakeExtractorSettings

    records = list(records)
    rows = [f"s{i}|s{i}/1/*.png|-1|-1|Signer01|MORGEN SONNE|satz {i}" for i in range(len(records))]
    root = write_corpus_csv(base, release, "train", rows).parents[2]
    cache = LandmarkCache(base / "cache", FakeExtractorSettings())
    for i, record in enumerate(records):
        cache.put(f"{release}/train/s{i}", record)
    cache.close()
    return root, base / "cache"


def open_cached(cached, **kwargs):
    """``PhoenixLandmarks`` over ``cached_train_split``'s split, read-only."""
    from phoenix_data import PhoenixLandmarks
    from phoenix_data.extract.fake import FakeExtractorSettings

    root, cache = cached
    return PhoenixLandmarks(root, "train", cache=cache, settings=FakeExtractorSettings(), readonly=True, **kwargs)


def assert_items_close(a: dict, b: dict) -> None:
    """Two items alike: every key and value the same, except the landmarks, which may differ by the rounding
    of float32 maps composed in another order, but are exactly zero at the same points. The rounding:
    1e-5 of the item's largest value (~80 units in float32's last place: Normalize divides by the shoulder
    width, which scales the rounding of coordinates in image units along with the values; 9.7e-7 seen),
    two units of float16's where the items are float16."""
    import torch

    assert a.keys() == b.keys()
    for key, value in a.items():
        if key == "landmarks":
            other = b[key]
            assert value.dtype == other.dtype and value.shape == other.shape
            missing = ~(a["valid"] | a["imputed"]) if "valid" in a else torch.zeros(value.shape[:2], dtype=torch.bool)
            assert not value[missing].any() and not other[missing].any(), "a point without a value is not zero"
            if value.numel():
                eps = max(1e-5, 2 * torch.finfo(value.dtype).eps)
                limit = eps * float(other.float().abs().max())
                assert float((value.float() - other.float()).abs().max()) <= limit, "landmarks differ"
        elif isinstance(value, torch.Tensor):
            assert value.dtype == b[key].dtype and torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


# --- running the warm-up as a user does ----------------------------------------------------------

# The fake extractor's delay per frame in commands the tests run: none where a run goes to its end
# (``run_warm``), ~20 ms (a real frame takes ~90 ms) where a test stops the job in the middle of its
# run (``start_warm``: kill -9, Ctrl+C, a cache deleted under it, two jobs sharing the work). Part of
# the fake's fingerprint: a rerun on the cache of a stopped job passes ``delay=INTERRUPT_DELAY``.
FAKE_DELAY_ENV = "PHOENIX_TEST_FAKE_DELAY"
FAKE_DELAY = 0.0
INTERRUPT_DELAY = 0.02
# ``phoenix-warm-cache`` driven with the fake extractor as its spec: the same arguments, reports, exit
# statuses and signals as the console script, no MediaPipe.
FAKE_WARM = [sys.executable, "-c",
             "import os, sys; from phoenix_data.cli.warm import main; "
             "from phoenix_data.extract.fake import FakeExtractorSettings; "
             f"sys.exit(main(sys.argv[1:], spec=FakeExtractorSettings(float(os.environ.get({FAKE_DELAY_ENV!r}, "
             f"{FAKE_DELAY!r})))))"]


def warm_cmd(*args: object, real: bool = False) -> List[str]:
    """The warm-up command: with the fake extractor, or (``real``) the command itself with MediaPipe."""
    command = [sys.executable, "-m", "phoenix_data.cli", "warm-cache"] if real else FAKE_WARM
    return [*command, *map(str, args)]


def run_warm(*args: object, real: bool = False, env: Optional[Dict[str, str]] = None,
             delay: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run the job to the end; stderr is not a terminal, so the job logs heartbeat lines, not a bar.

    With the fake extractor (``delay`` seconds a frame, ``FAKE_DELAY`` unless given) the command runs in
    this process (``warm_here``: a Python start and a torch import less per run); with MediaPipe, another
    environment, or after this process built a MediaPipe graph (the job's workers fork from it), as a
    subprocess.
    """
    from phoenix_data.extract import fork_unsafe_builds

    if real or env is not None or fork_unsafe_builds():
        if delay is not None:
            env = {**(os.environ if env is None else env), FAKE_DELAY_ENV: str(delay)}
        return subprocess.run(warm_cmd(*args, real=real), capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              env=env)
    return warm_here(*args, delay=delay)


def warm_here(*args: object, delay: Optional[float] = None) -> subprocess.CompletedProcess:
    """``phoenix-warm-cache`` with the fake extractor, run by its ``main`` in this process: the same
    parsing, job, reports, stdout, log lines and exit status as the subprocess. Its LMDB environments are
    closed after it, as a process exit closes them. A run past ``RUN_TIMEOUT`` ends this process with
    every thread's traceback rather than hanging the suite."""
    import faulthandler
    import io
    import logging

    from phoenix_data.cache.lmdb_env import close_every_process_handle
    from phoenix_data.cli.warm import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)  # the command's log lines; basicConfig skips a root with handlers
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("phoenix_data")
    level = logger.level
    logger.addHandler(handler)
    faulthandler.dump_traceback_later(RUN_TIMEOUT, exit=True)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv, spec=fake_warm_spec(delay))
            except SystemExit as exc:  # argparse's errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        faulthandler.cancel_dump_traceback_later()
        logger.removeHandler(handler)
        logger.setLevel(level)
        close_every_process_handle()
    return subprocess.CompletedProcess(["phoenix-warm-cache", *argv], code, out.getvalue(), err.getvalue())


def fake_warm_spec(delay: Optional[float] = None):
    """The fake extractor's settings the warm-up commands of the tests use (``FAKE_DELAY`` a frame unless
    ``delay`` is given)."""
    from phoenix_data.extract.fake import FakeExtractorSettings

    return FakeExtractorSettings(FAKE_DELAY if delay is None else delay)


def start_warm(log_dir: Path, *args: object, env: Optional[Dict[str, str]] = None,
               delay: Optional[float] = None):
    """Start the job (with the fake extractor, ``INTERRUPT_DELAY`` a frame unless ``delay`` is given) in
    its own process group, as a shell job is; its stdout and stderr to ``log_dir``'s stdout.txt and
    stderr.txt. Returns a ``subprocess.Popen`` or a
    ``ForkedCommand`` (the same ``pid``, ``poll``, ``wait``, ``returncode``).

    The job runs in a child forked from this process (``start_forked``: a Python start and a torch import
    less, ~2 s of CPU a run), else, with another environment or after this process built a MediaPipe
    graph, as a subprocess."""
    from phoenix_data.cli.warm import main
    from phoenix_data.extract import fork_unsafe_builds

    argv = [str(a) for a in args]
    delay = INTERRUPT_DELAY if delay is None else delay
    if env is None and not fork_unsafe_builds():
        return start_forked(main, argv, fake_warm_spec(delay), log_dir, prog="phoenix-warm-cache")
    env = {**(os.environ if env is None else env), FAKE_DELAY_ENV: str(delay)}
    out = (log_dir / "stdout.txt").open("w")
    err = (log_dir / "stderr.txt").open("w")
    return subprocess.Popen(warm_cmd(*argv), stdout=out, stderr=err, start_new_session=True, env=env)


class HungCommand(subprocess.TimeoutExpired):
    """A forked command past its time: its message holds where each of its threads was and its output."""

    def __init__(self, args: List[str], timeout: float, report: str) -> None:
        super().__init__(args, timeout)
        self.report = report

    def __str__(self) -> str:
        return f"{super().__str__()}; where its threads were, and its output:\n{self.report}"


class ForkedCommand:
    """A command run by ``start_forked``, waited for as a ``subprocess.Popen`` is (``returncode``: the
    exit status, or minus the signal that ended it). A wait past its timeout aborts the command and the
    processes it started (SIGABRT to its process group), whose faulthandlers then write every thread's
    stack to its stderr, and raises ``HungCommand``."""

    def __init__(self, pid: int, args: List[str], log_dir: Path) -> None:
        self.pid, self.args, self.returncode, self.log_dir = pid, args, None, log_dir

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):  # its processes (PYTHONFAULTHANDLER: theirs too)
                    os.killpg(self.pid, signal.SIGABRT)
                end = time.monotonic() + 10
                while self.poll() is None and time.monotonic() < end:
                    time.sleep(0.05)
                raise HungCommand(self.args, timeout, "\n".join(
                    f"--- {name} (end) ---\n{(self.log_dir / name).read_text()[-30000:]}"
                    for name in ("stdout.txt", "stderr.txt")))
            time.sleep(0.01)
        return self.returncode


def run_forked(main, argv: Sequence[object], spec, prog: str) -> subprocess.CompletedProcess:
    """``start_forked`` run to its end (within ``RUN_TIMEOUT``), its output read back: as
    ``subprocess.run(..., capture_output=True, text=True)`` gives it."""
    import tempfile

    args = [str(a) for a in argv]
    with tempfile.TemporaryDirectory(prefix="forked-") as folder:
        command = start_forked(main, args, spec, Path(folder), prog)
        try:
            code = command.wait(timeout=RUN_TIMEOUT)
        finally:
            stop_forked([command])
        out, err = ((Path(folder) / name).read_text() for name in ("stdout.txt", "stderr.txt"))
    return subprocess.CompletedProcess([prog, *args], code, out, err)


_FORKED: List[ForkedCommand] = []  # this process's forked commands, stopped by stop_forked()


def stop_forked(commands: Optional[List[ForkedCommand]] = None) -> None:
    """Kill the process group of each of ``commands`` (default: every forked command of this process)
    still running, and reap it (conftest: after each test, so that no job outlives its test)."""
    for command in list(_FORKED if commands is None else commands):
        _FORKED.remove(command)
        if command.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command.pid, signal.SIGKILL)
            command.wait()


def _exit_code(code: object) -> int:
    """An exit status as ``sys.exit(code)`` makes it."""
    return code if isinstance(code, int) else (0 if code is None else 1)


def start_forked(main, argv: List[str], spec, log_dir: Path, prog: str) -> ForkedCommand:
    """Run ``main(argv, spec=spec)`` in a child forked from this process, as a shell starts a command: a
    session of its own (a terminal's Ctrl+C is ``os.killpg(pid, SIGINT)``), stdout and stderr to
    ``log_dir``'s stdout.txt and stderr.txt (stdout block-buffered, stderr by line, as Python writes to
    files), Ctrl+C raising KeyboardInterrupt, Python's own hooks for uncaught exceptions (in threads
    too), warnings and fatal errors (pytest's would keep them from stderr), logging as a fresh process
    has it, and the exit status of ``sys.exit(main(...))``. At its exit its helper processes are closed
    (as ``atexit`` does); everything else is left as a killed process leaves it. The child never
    returns into pytest: SIGINT and SIGTERM stay blocked until it has its own handlers.

    The child never collects what this process left for its garbage collector: a DataLoader iterator
    dropped in a reference cycle (an exception's traceback holds one) would otherwise be finalised in the
    child, which would then shut down this process's workers (setting their shared "done" event, putting
    into their queues) and could wait for ever for a queue's lock that a thread of this process held at
    the fork (docs/testing.md: a check that once hung in CI's spawn leg was forked, in a re-run, while
    two queue feeder threads of the test process were alive)."""
    import faulthandler
    import gc
    import logging
    import threading
    import traceback
    import warnings

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        command = ForkedCommand(pid, [prog, *argv], log_dir)
        _FORKED.append(command)
        return command
    code: object = 1
    try:
        gc.freeze()  # what this process left for its collector is its own: the child never collects it
        os.setsid()
        for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):
            target = os.open(log_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)
        sys.argv = [prog, *argv]
        sys.excepthook, sys.unraisablehook = sys.__excepthook__, sys.__unraisablehook__
        threading.excepthook = threading.__excepthook__
        faulthandler.enable(sys.stderr)
        os.environ["PYTHONFAULTHANDLER"] = "1"  # and in the processes it spawns: a hang's report shows theirs
        warnings.resetwarnings()
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        root = logging.getLogger()
        for handler in list(root.handlers):  # pytest's capture: basicConfig would skip a root with handlers
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        logging.disable(logging.NOTSET)
        for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "phoenix_data"]:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        interrupted = False
        try:
            code = main(argv, spec=spec)
        except SystemExit as exc:
            code = exc.code
        except KeyboardInterrupt:  # as Python ends on one: the traceback, exit handlers, killed by SIGINT
            traceback.print_exc()
            interrupted = True
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        from phoenix_data.extract.helper import close_helpers

        close_helpers()
        if interrupted:
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 - the child never returns into pytest
        traceback.print_exc()
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(_exit_code(code))


def expected_frames(root: Path, release: str, splits: Sequence[str] = SPLITS) -> Dict[str, int]:
    """key -> number of PNG frames on disk, for every sample of ``splits`` of ``release``."""
    rel = find_release(root, release)
    return {s.key: len(list_frames(s.frames_dir)) for split in splits for s in read_release_split(rel, split)}


# Raw LMDB access to a cache (no phoenix_data code in between): to read records as stored and to
# damage them on purpose. The one place the tests open a cache's LMDB environment themselves.
@contextlib.contextmanager
def raw_lmdb(cache: Path, write: bool = False, **options) -> Iterator[lmdb.Environment]:
    """``options``: more of ``lmdb.open``'s (a writer's ``map_size``, ``sync``)."""
    options = {"max_dbs": 4, **options} if write else {"readonly": True, "lock": False, "max_dbs": 4, **options}
    env = lmdb.open(str(cache), **options)
    try:
        yield env
    finally:
        env.close()


def raw_records(cache: Path) -> Dict[str, bytes]:
    """Every record's bytes as stored (no decoding)."""
    with raw_lmdb(cache) as env, env.begin() as txn:
        db = env.open_db(b"samples", txn=txn, create=False)
        return {bytes(k).decode(): bytes(v) for k, v in txn.cursor(db=db)}


def raw_get(cache: Path, key: str) -> bytes:
    """One record's bytes as stored."""
    with raw_lmdb(cache) as env, env.begin() as txn:
        return bytes(txn.get(key.encode(), db=env.open_db(b"samples", txn=txn, create=False)))


def raw_put(cache: Path, values: Dict[str, bytes]) -> None:
    """Write bytes as records, unchecked, in one commit (to damage a cache on purpose)."""
    with raw_lmdb(cache, write=True) as env, env.begin(write=True) as txn:
        db = env.open_db(b"samples", txn=txn)
        for key, value in values.items():
            txn.put(key.encode(), value, db=db)


def commits(cache: Path) -> int:
    """LMDB's last transaction id: how many write commits the cache has seen."""
    with raw_lmdb(cache) as env:
        return env.info()["last_txnid"]


def check_records(cache: Path, expected: Dict[str, int]) -> Dict[str, int]:
    """Decode each cached record of ``expected`` (checksums included); returns key -> extracting pid."""
    pids, stored = {}, raw_records(cache)
    for key, frames in expected.items():
        assert key in stored, f"{key} not cached"
        record = decode_record(stored[key], key)  # every check a read makes, whatever the extractor
        assert record.num_frames == frames, f"{key}: {record.num_frames} frames cached, {frames} on disk"
        assert np.isfinite(record.landmarks).all()
        pids[key] = record.pid
    return pids


def metrics_rows(report_dir: Path) -> List[Dict[str, str]]:
    path = report_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return [row for row in csv.DictReader(file) if row.get("right_hand")]  # complete rows only


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def wait_for_rows(proc: subprocess.Popen, report_dir: Path, rows: int, timeout: float = 120) -> None:
    """Wait until the running job reported ``rows`` extracted samples (each committed before reported)."""
    deadline = time.monotonic() + timeout
    while len(metrics_rows(report_dir)) < rows:
        assert proc.poll() is None, f"the job ended (status {proc.returncode}) before {rows} samples were done"
        assert time.monotonic() < deadline, f"fewer than {rows} samples done after {timeout} s"
        time.sleep(0.05)


def processes() -> Dict[int, List[str]]:
    """pid -> [state, ppid, pgrp, ...] from /proc/<pid>/stat, for every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
    return found


def live_in_group(pgid: int) -> List[int]:
    """Processes of a process group that still run (zombies excluded)."""
    return [pid for pid, fields in processes().items() if int(fields[2]) == pgid and fields[0] != "Z"]


def worker_pids(main_pid: int) -> List[int]:
    """The job's DataLoader workers: its children forked from it (its command line) or started by spawn."""
    cmdline = Path(f"/proc/{main_pid}/cmdline").read_bytes()
    children = [pid for pid, fields in processes().items() if int(fields[1]) == main_pid]
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children}
    return [pid for pid, command in commands.items() if command == cmdline or b"multiprocessing.spawn" in command]


def wait_group_gone(pgid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while live_in_group(pgid):
        assert time.monotonic() < deadline, f"processes {live_in_group(pgid)} of the job still run"
        time.sleep(0.1)
