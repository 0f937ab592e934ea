"""quiet_mediapipe: MediaPipe's INFO/WARNING lines leave stderr, its errors and crashes do not.

Every test runs its process in a subprocess: the filter owns the process's fd 2, which must not be
pytest's, and MediaPipe must not run in the pytest process.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Union

import pytest
from helpers import legacy_mediapipe_only

from phoenix_data.extract.mediapipe.logs import _MARK_ENV, NOISE, VERBOSE_ENV

REPO = Path(__file__).resolve().parents[1]
SIGABRT_STATUS = -6
# Lines mediapipe 0.10.21 prints for a Holistic on CPU, as captured from a real run.
FEEDBACK = ("W0000 00:00:1795926003.479593   11321 inference_feedback_manager.cc:114] Feedback manager "
            "requires a model with a single signature inference. Disabling support for feedback tensors.")
NOISE_LINES = [
    FEEDBACK,
    "W0000 00:00:1795926363.610309   15481 landmark_projection_calculator.cc:186] Using NORM_RECT without "
    "IMAGE_DIMENSIONS is only supported for the square ROI. Provide IMAGE_DIMENSIONS or use PROJECTION_MATRIX.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "WARNING: Logging before InitGoogle() is written to STDERR",  # mediapipe 1.2.3, once per process
    "I0000 00:00:1712345678.123456   4242 gl_context.cc:357] GL version: 3.2 (OpenGL ES 3.2 Mesa 23.2.1)",
    "I20240102 10:11:12.123456 4242 gl_context_egl.cc:85] Successfully initialized EGL.",
]
KEPT_LINES = [
    "E0000 00:00:1795926354.103711   15318 calculator_graph.cc:928] INTERNAL: CalculatorGraph::Run() failed: ",
    "F0000 00:00:1795926354.103711   15318 image_frame.cc:12] Check failed: width > 0",
    "terminate called after throwing an instance of 'cv::Exception'",
    "Traceback (most recent call last):",
    "RuntimeError: CalculatorGraph::Run() failed: ",
    "[warm] failed: train/x: frame 3 cannot be decoded",
    "INFO:phoenix_data.dataset:extracted 3 frames",
    "WARNING: Attempting to use a delegate that only supports static-sized tensors",
    "W0000 is not a log line",
]


def run_python(program: Union[str, Path], *args: str, verbose_env: bool = False) -> subprocess.CompletedProcess:
    """Run ``program`` (code, or a script file) in a fresh interpreter that imports this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in (VERBOSE_ENV, _MARK_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if verbose_env:
        env[VERBOSE_ENV] = "1"
    command = [str(program)] if isinstance(program, Path) else ["-c", textwrap.dedent(program)]
    return subprocess.run([sys.executable, *command, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def noise_in(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if NOISE.match(line.encode())]


@pytest.mark.parametrize("line", NOISE_LINES)
def test_noise_pattern_matches_mediapipe_info_and_warning_lines(line):
    assert NOISE.match(line.encode())


@pytest.mark.parametrize("line", KEPT_LINES)
def test_noise_pattern_keeps_errors_and_everything_else(line):
    assert not NOISE.match(line.encode())


FILTER_PROBE = """
    import os, sys
    from phoenix_data.extract.mediapipe import logs as mediapipe_logs
    from phoenix_data.extract.mediapipe.logs import quiet_mediapipe
    print(quiet_mediapipe(), file=sys.stderr)
    first = mediapipe_logs._FILTER.pid
    print(quiet_mediapipe(), mediapipe_logs._FILTER.pid == first, file=sys.stderr)  # idempotent
    os.write(2, ("\\n".join(sys.argv[1:]) + "\\n").encode())  # C code writes to fd 2 like this
    pid = os.fork()
    if pid == 0:  # a forked child shares the filtered stderr and needs no filter of its own
        os.write(2, b"child: %s\\n" % str(quiet_mediapipe() and mediapipe_logs._FILTER.pid == first).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    sys.stderr.write("no newline at the end")
"""


def test_filter_drops_noise_and_forwards_the_rest_in_order():
    lines = [line for pair in zip(NOISE_LINES, KEPT_LINES) for line in pair]
    result = run_python(FILTER_PROBE, *lines)
    assert result.returncode == 0, result.stderr
    expected = ["True", "True True", *KEPT_LINES[:len(NOISE_LINES)], "child: True", "no newline at the end"]
    assert result.stderr.splitlines() == expected


def test_verbose_from_the_environment_forwards_everything():
    code = """
        import os, sys
        from phoenix_data.extract.mediapipe.logs import quiet_mediapipe
        print(quiet_mediapipe(), file=sys.stderr)
        os.write(2, sys.argv[1].encode() + b"\\n")
    """
    result = run_python(code, FEEDBACK, verbose_env=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["False", FEEDBACK]


def test_verbose_after_quiet_puts_the_original_stderr_back():
    code = """
        import os, sys
        from phoenix_data.extract.mediapipe.logs import quiet_mediapipe
        print(quiet_mediapipe(), file=sys.stderr)
        os.write(2, sys.argv[1].encode() + b"\\n")  # dropped
        print(quiet_mediapipe(verbose=True), file=sys.stderr)
        os.write(2, sys.argv[1].encode() + b"\\n")
    """
    result = run_python(code, FEEDBACK)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["True", "False", FEEDBACK]


SPAWN_PROBE = """
    import multiprocessing, sys
    from phoenix_data.extract.mediapipe import logs as mediapipe_logs

    def child():
        print("filtered", mediapipe_logs.quiet_mediapipe(), "own filter", mediapipe_logs._FILTER is not None,
              file=sys.stderr)

    if __name__ == "__main__":
        mediapipe_logs.quiet_mediapipe()
        process = multiprocessing.get_context("spawn").Process(target=child)
        process.start()
        process.join()
        print(sys.argv[1], file=sys.stderr)
"""


def test_a_spawned_child_reuses_the_filter_it_inherited(tmp_path):
    script = tmp_path / "spawn_probe.py"  # spawn re-imports the main module: it must be a file
    script.write_text(textwrap.dedent(SPAWN_PROBE))
    result = run_python(script, FEEDBACK)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["filtered True own filter False"]


EXTRACT_PROBE = """
    import sys
    from pathlib import Path
    from phoenix_data.extract import get_extractor
    from phoenix_data.extract.mediapipe.settings import HolisticSettings
    from phoenix_data.frames import list_frames, read_frames_rgb

    extractor = get_extractor(HolisticSettings())  # the extractor quiets MediaPipe itself
    for video in range(2):  # each video restarts the graph, which logs again
        record = extractor.extract(read_frames_rgb(list_frames(Path(sys.argv[1]))))
        print(record.num_frames, record.detection_rates()["pose"])
"""


@pytest.mark.mediapipe
def test_real_holistic_noise_is_gone_unless_verbose(real_frames_dir):
    quiet = run_python(EXTRACT_PROBE, str(real_frames_dir))
    verbose = run_python(EXTRACT_PROBE, str(real_frames_dir), verbose_env=True)  # as --verbose sets it
    for result in (quiet, verbose):
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["2", "1.0", "2", "1.0"]  # the landmarks are not affected
    seen = noise_in(verbose.stderr)
    assert any("inference_feedback_manager" in line for line in seen), verbose.stderr
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in seen
    assert noise_in(quiet.stderr) == []
    assert quiet.stderr == ""


ERROR_PROBE = """
    import sys, traceback
    import numpy as np
    from phoenix_data.extract.mediapipe.logs import quiet_mediapipe

    quiet_mediapipe()
    import mediapipe as mp
    try:  # a frame MediaPipe's graph rejects: an ERROR log line and a RuntimeError
        mp.solutions.holistic.Holistic().process(np.zeros((0, 5, 3), np.uint8))
    except RuntimeError:
        traceback.print_exc()
    # a frame OpenCV cannot warp: an uncaught C++ exception aborts the process
    mp.solutions.holistic.Holistic().process(np.zeros((2, 70000, 3), np.uint8))
"""


@legacy_mediapipe_only  # the probe drives mp.solutions
def test_mediapipe_errors_and_native_crashes_still_reach_stderr():
    result = run_python(ERROR_PROBE)
    assert result.returncode == SIGABRT_STATUS, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("E") and "calculator_graph.cc" in line for line in lines), result.stderr
    assert "RuntimeError: CalculatorGraph::Run() failed: " in lines
    # the last words of a process killed by native code: a reader thread would have died with them
    assert "terminate called after throwing an instance of 'cv::Exception'" in lines
    assert any("Assertion failed" in line for line in lines), result.stderr
    assert noise_in(result.stderr) == []
