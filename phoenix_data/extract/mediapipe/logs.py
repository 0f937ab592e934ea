"""Keep MediaPipe's own C++ log lines out of a user's terminal; let its errors through.

Each Holistic graph start (every video: ``reset()`` restarts it) prints absl WARNING lines
(``W0000 ... inference_feedback_manager.cc:114] Feedback manager requires ...``,
``landmark_projection_calculator.cc``), TFLite prints ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.``, absl prints ``WARNING: All log messages before absl::InitializeLog() ...``
(mediapipe 1.x: ``WARNING: Logging before InitGoogle() is written to STDERR``),
and on machines with OpenGL ``I0000 ... gl_context`` lines. A warm-up prints hundreds of them
around its progress bar.

No setting reaches them. mediapipe 0.10.21 links absl and TFLite statically and exports no logging
symbol; absl's C++ log level is a command-line flag that nothing parses, and it prints everything
to stderr before ``absl::InitializeLog()``. Measured with each set before ``import mediapipe``,
the lines were unchanged: GLOG_minloglevel=1/2/3, GLOG_logtostderr=0, GLOG_stderrthreshold=3,
TF_CPP_MIN_LOG_LEVEL=3, ABSL_MIN_LOG_LEVEL=2, and ``absl.logging.set_verbosity(ERROR)``.

So :func:`quiet_mediapipe` filters file descriptor 2 itself: it points fd 2 at a pipe read by a
small filter *process* that drops absl/glog INFO and WARNING lines, TFLite's own ``INFO:`` lines
and absl's start-up notice, and forwards every other byte unchanged (ERROR and FATAL lines,
Python tracebacks, this package's log lines) to the original stderr.

Why a process and not a thread of the extracting process: a native crash (an OpenCV assertion on
a 2x70000 frame aborts the process) kills a reader thread together with the message it had not
yet forwarded (tried: a thread filter lost ``terminate called after throwing an instance of
'cv::Exception'`` in most runs). A separate process drains the pipe until every writer is gone,
so the last words of a dying worker still arrive. It ignores SIGINT (Ctrl+C reaches the whole
process group, and the workers finish their sample after it), and being no thread it adds nothing
unsafe to a later ``fork()``: forked children share the same pipe and filter.

Call it only in a process whose stderr this package may own, before its first Holistic: a
DataLoader worker, a warm-up worker, a helper process, a command line's own process. Never in the
main process of a user's notebook or script (its stderr is theirs). POSIX only; elsewhere it does
nothing. ``verbose=True`` (or ``PHOENIX_DATA_MEDIAPIPE_LOGS=1`` in the environment, which child
processes inherit) leaves every line visible.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from typing import Optional

log = logging.getLogger(__name__)

# Set to 1 to see MediaPipe's log lines (inherited by worker processes, forked or spawned).
VERBOSE_ENV = "PHOENIX_DATA_MEDIAPIPE_LOGS"
# "dev:inode" of the pipe this process (or a parent) put on fd 2, so that no second filter stacks.
_MARK_ENV = "PHOENIX_DATA_STDERR_FILTER"
STDERR_FD = 2
RESTORE_WAIT_SECONDS = 2.0

# Lines the filter drops; anything else passes unchanged (absl E/F lines, tracebacks, our logs).
NOISE_PATTERNS = (
    rb"[IW]\d{4}(?:\d{4})? \d\d:\d\d:\d+\.\d+ +\d+ [^\s\]]+:\d+\] ",  # absl / glog INFO and WARNING records
    rb"INFO: .*(TensorFlow Lite|TfLite|XNNPACK)",  # TFLite's own logger, straight to stderr
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"WARNING: Logging before InitGoogle\(\) is written to STDERR",  # mediapipe 1.x's start-up notice
)
NOISE = re.compile(b"|".join(b"(?:" + p + b")" for p in NOISE_PATTERNS))

# The filter process: stdin is the pipe, stdout the original stderr. Stdlib only, started with -I -S
# (no site, no package import) so that it starts fast and stays small. Lines are matched one by one:
# the continuation lines of a dropped multi-line record would pass (none is known). A partial line is
# forwarded after 0.2 s of silence (a prompt, a progress bar) rather than held until its newline.
_FILTER_SOURCE = r"""
import os, re, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(sys.argv[1].encode("latin-1"))
out_ok = True
def forward(data):
    global out_ok
    while data and out_ok:
        try:
            data = data[os.write(1, data):]
        except OSError:
            out_ok = False  # stderr is gone: keep draining so that writers never block
pending = b""
while True:
    if pending and not select.select([0], [], [], 0.2)[0]:
        forward(pending)
        pending = b""
        continue
    chunk = os.read(0, 65536)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    forward(b"".join(line + b"\n" for line in lines if not noise.match(line)))
forward(pending)
"""

_FILTER: Optional[subprocess.Popen] = None
_ORIGINAL_STDERR: Optional[int] = None  # a dup of fd 2 as it was before this process filtered it


def quiet_mediapipe(verbose: Optional[bool] = None) -> bool:
    """Filter MediaPipe's INFO/WARNING lines out of this process's stderr (fd 2); errors pass.

    Call before the process builds its first Holistic; calling again (here or in a forked or
    spawned child that inherited the filtered stderr) does nothing. ``verbose`` None: read
    ``PHOENIX_DATA_MEDIAPIPE_LOGS`` (``1`` = verbose). ``verbose=True`` removes a filter this
    process installed. Returns whether stderr is filtered now.
    """
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if verbose:
        _restore()
        return False
    if _is_filtered():
        return True
    if os.name != "posix" or not sys.executable:
        log.debug("not filtering MediaPipe's log lines: needs POSIX and a Python executable")
        return False
    try:
        _install()
    except OSError as exc:  # no process left to start, say: noise is no reason to fail an extraction
        log.warning("cannot filter MediaPipe's log lines (%s); they will show on stderr", exc)
        return False
    return True


def _pipe_identity(fd: int) -> Optional[str]:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return f"{info.st_dev}:{info.st_ino}"


def _is_filtered() -> bool:
    mark = os.environ.get(_MARK_ENV)
    return mark is not None and mark == _pipe_identity(STDERR_FD)


def _install() -> None:
    global _FILTER, _ORIGINAL_STDERR
    for stream in (sys.stderr, sys.__stderr__):
        if stream is not None:
            stream.flush()  # what was written before goes out before anything filtered
    read_end, write_end = os.pipe()
    try:
        _FILTER = subprocess.Popen(  # close_fds (default): the filter holds no write end itself
            [sys.executable, "-I", "-S", "-c", _FILTER_SOURCE, NOISE.pattern.decode("latin-1")],
            stdin=read_end, stdout=STDERR_FD, stderr=STDERR_FD)  # its own failure shows
        _ORIGINAL_STDERR = os.dup(STDERR_FD)
        os.set_inheritable(_ORIGINAL_STDERR, False)
        os.dup2(write_end, STDERR_FD)
    finally:
        os.close(read_end)
        os.close(write_end)
    os.environ[_MARK_ENV] = _pipe_identity(STDERR_FD) or ""
    log.debug("pid %d: MediaPipe's log lines filtered by pid %d", os.getpid(), _FILTER.pid)


def _restore() -> None:
    """Put back the stderr this process had before it installed a filter (which then drains and exits)."""
    global _FILTER, _ORIGINAL_STDERR
    if _ORIGINAL_STDERR is None:
        return
    for stream in (sys.stderr, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os.dup2(_ORIGINAL_STDERR, STDERR_FD)
    os.close(_ORIGINAL_STDERR)
    _ORIGINAL_STDERR = None
    os.environ.pop(_MARK_ENV, None)
    if _FILTER is not None:
        try:  # it sees end-of-file now, and has forwarded everything, unless a forked child still writes
            _FILTER.wait(timeout=RESTORE_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        _FILTER = None
