"""Shared pytest fixtures. Each block below belongs to one test module; keep them sectioned."""
from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

# The suite runs in two processes on two cores (pyproject: -n 2). torch's default, a thread per core
# for every op, then makes each op wait for a core the other process holds (measured: a 0.01 s
# transform test took 10 s). One thread each; subprocesses (the commands under test) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# ---------------------------------------------------------------------------------------------------
# Corpus fixtures (tests/test_corpus.py)
#
# The release layout is spelled out here on purpose instead of being taken from
# phoenix_data.corpus.RELEASES: a wrong file name in the reader's tables must fail the tests.
# ---------------------------------------------------------------------------------------------------
import helpers
from helpers import CORPUS_FIXTURES_DIR, CORPUS_LAYOUT, REPO_ROOT, ci_is_set, corpus_csv_path  # noqa: F401


@pytest.fixture
def write_corpus_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write one corpus CSV into a release tree under ``tmp_path``; returns the CSV's path.

    ``rows`` are the lines after the header, written as given (``|``-joined already).
    ``header=None`` writes the release's real header. The tree is
    ``tmp_path/<archive>/<release>/annotations/manual/<csv>``, with no frames.
    """

    def write(release: str, split: str, rows: Iterable[str], header: Optional[str] = None,
              newline: str = "\n") -> Path:
        return helpers.write_corpus_csv(tmp_path, release, split, list(rows), header, newline)

    return write


@pytest.fixture
def copy_corpus_csv(tmp_path: Path) -> Callable[[str, str, Path], Path]:
    """Copy a CSV byte for byte to where ``release`` keeps ``split`` under ``tmp_path``."""

    def copy(release: str, split: str, source: Path) -> Path:
        path = corpus_csv_path(tmp_path, release, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        return path

    return copy


@pytest.fixture
def corpus_fixtures() -> Path:
    """tests/fixtures/corpus: real CSV excerpts laid out as the releases are (see its README)."""
    return CORPUS_FIXTURES_DIR


@pytest.fixture(scope="session")
def phoenix_real_dir() -> Path:
    """The folder of real PHOENIX files (shared/phoenix-real).

    ``$PHOENIX_REAL_DIR`` if set, else ``<repo root>/../shared/phoenix-real``. Missing: the test
    fails when ``$CI`` is set (a skip there would hide that the acceptance test never ran), and is
    skipped otherwise.
    """
    configured = os.environ.get("PHOENIX_REAL_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "phoenix-real"
    if not (path / "MANIFEST.txt").is_file():
        how = "$PHOENIX_REAL_DIR" if configured else "<repo root>/../shared/phoenix-real"
        reason = (f"real PHOENIX files not found at {path} ({how}; expected MANIFEST.txt there); "
                  "set PHOENIX_REAL_DIR to the shared/phoenix-real folder")
        if ci_is_set():
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


# (release, split) -> the real file for it, relative to shared/phoenix-real (MANIFEST.txt there).
# 2014-T train/dev: the copies with "/1" put back into the video column; 2014-T test: the CRLF copy.
REAL_CORPUS_SOURCES = {
    ("phoenix-2014-multisigner", "train"):
        "phoenix2014-release/phoenix-2014-multisigner/annotations/manual/train.corpus.csv",
    ("phoenix-2014-multisigner", "dev"):
        "phoenix2014-release/phoenix-2014-multisigner/annotations/manual/dev.corpus.csv",
    ("phoenix-2014-multisigner", "test"):
        "phoenix2014-release/phoenix-2014-multisigner/annotations/manual/test.corpus.csv",
    ("phoenix-2014-signerindependent-SI5", "train"):
        "phoenix2014-release/phoenix-2014-signerindependent-SI5/annotations/manual/train.SI5.corpus.csv",
    ("phoenix-2014-signerindependent-SI5", "test"):
        "phoenix2014-release/phoenix-2014-signerindependent-SI5/annotations/manual/test.SI5.corpus.csv",
    ("PHOENIX-2014-T", "train"):
        "variants/reconstructed_from_vuducmanh1407_with_1_reinserted/PHOENIX-2014-T/annotations/manual/"
        "PHOENIX-2014-T.train.corpus.csv",
    ("PHOENIX-2014-T", "dev"):
        "variants/reconstructed_from_vuducmanh1407_with_1_reinserted/PHOENIX-2014-T/annotations/manual/"
        "PHOENIX-2014-T.dev.corpus.csv",
    ("PHOENIX-2014-T", "test"):
        "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/annotations/manual/PHOENIX-2014-T.test.corpus.csv",
}


@pytest.fixture(scope="session")
def real_corpus_tree(tmp_path_factory: pytest.TempPathFactory, phoenix_real_dir: Path) -> Path:
    """The real CSVs copied byte for byte into release trees (no frames) under a tmp folder.

    Returns the folder holding ``phoenix2014-release/`` and ``PHOENIX-2014-T-release-v3/``.
    """
    base = tmp_path_factory.mktemp("phoenix-real-tree")
    for (release, split), relative in REAL_CORPUS_SOURCES.items():
        source = phoenix_real_dir / relative
        if not source.is_file():
            pytest.fail(f"real corpus file missing: {source} (see {phoenix_real_dir / 'MANIFEST.txt'})",
                        pytrace=False)
        path = corpus_csv_path(base, release, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
    return base


# ----------------------------------------- end of corpus fixtures ----------------------------------


# ---------------------------------------------------------------------------------------------------
# Landmark fixtures (test_extract, test_cache, test_dataset, test_batching)
# ---------------------------------------------------------------------------------------------------

REAL_FRAMES_DIR = Path(__file__).resolve().parent / "fixtures" / "frames" / "25October_2010_Monday_tagesschau-17"


@pytest.fixture(scope="session")
def real_frames_dir() -> Path:
    """Two real 2014-T frames (see fixtures/frames/README.md): pose and face visible, no hands."""
    return REAL_FRAMES_DIR


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in demo tree, built once per session, for tests that only read it: its folder.

    A test that changes frames or CSVs copies it (or builds its own) under tmp_path first.
    """
    from phoenix_data.demo import build_demo

    out = tmp_path_factory.mktemp("demo")
    build_demo(out)
    return out


@pytest.fixture(scope="session")
def demo_tree(demo_dir: Path):
    """The same demo tree as {release name: release folder}."""
    from phoenix_data.corpus import RELEASES, find_release

    return {name: find_release(demo_dir, name).root for name in RELEASES}


@pytest.fixture(autouse=True)
def _no_forked_command_outlives_its_test():
    """A command a test ran forked from this process (``helpers.start_forked``) and left running (the
    test failed before it ended) is killed with its process group after the test."""
    yield
    helpers.stop_forked()


@pytest.fixture(autouse=True)
def _no_holistic_in_the_test_process(request):
    """Guard: a Holistic built in the pytest process breaks DataLoader workers forked later.

    Tests that run MediaPipe in their own process carry ``@pytest.mark.in_child``: their body runs
    in a forked child, which is thrown away (see ``pytest_pyfunc_call`` below). The library itself
    never builds one in the pytest process: its misses go to the isolated helper process.
    """
    yield
    from phoenix_data.extract.mediapipe.runtime import holistic_builds

    if holistic_builds():
        pytest.fail(f"{request.node.nodeid} built a MediaPipe Holistic in the pytest process; "
                    "mark it @pytest.mark.in_child and build it inside the test body", pytrace=False)


# The marker follows the fixture: a test that takes one of these runs real MediaPipe and is marked
# ``mediapipe`` for it; any other test that does is marked by hand. An unmarked test runs with MediaPipe
# made unimportable (``_no_mediapipe_unless_marked``): if it reaches MediaPipe, it fails.
MEDIAPIPE_FIXTURES = {"holistic_settings", "real_demo_cache", "real_warm_run", "docs_data"}
NO_MEDIAPIPE_DIR = Path(__file__).resolve().parent / "no_mediapipe"


# PHOENIX_TEST_START_METHOD=spawn runs the whole suite with another default start method: spawn is
# macOS's default, so this is how macOS's process start is exercised on Linux.
START_METHOD_ENV = "PHOENIX_TEST_START_METHOD"


def pytest_configure(config):
    _keep_hypothesis_as_installed(config)
    method = os.environ.get(START_METHOD_ENV)
    if method:
        import multiprocessing

        multiprocessing.set_start_method(method, force=True)


def _keep_hypothesis_as_installed(config) -> None:
    """pytest rewrites the asserts of every package that ships a pytest plugin, so each test process
    parsed and rewrote the ~70 modules of Hypothesis that test_transforms imports (~0.6 s of CPU a
    process; without cached bytecode, every run). Our tests' asserts are rewritten as before; the
    library's own run as installed. pytest has no public way to unmark a package: without that
    private set (another pytest), everything stays as pytest does it."""
    hook = getattr(config.pluginmanager, "rewrite_hook", None)
    marked = getattr(hook, "_must_rewrite", None)
    if isinstance(marked, set) and "hypothesis" in marked and "hypothesis" not in sys.modules:
        marked.discard("hypothesis")
        getattr(hook, "_marked_for_rewrite_cache", {}).clear()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The session is over: collect what it left, then freeze the rest, so that the interpreter's exit does
    not walk the whole heap again (~0.45 s less per test process; the controller waits for each to exit)."""
    gc.collect()
    gc.freeze()


# Modules whose tests make the test process a Ray driver. On Python 3.13 a DataLoader worker forked
# from a process that has been one dies of a segmentation fault (seen with ray.shutdown() done), so
# they run last: pytest-xdist hands tests out in this order, and nothing that forks runs after them.
RAY_DRIVER_MODULES = {"test_warm_ray.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist's default distribution, the Ray driver modules run whole in one process that runs
    nothing else (tests/scheduling.py); other distributions as asked."""
    if config.getvalue("dist") != "load":
        return None
    from scheduling import RayApartScheduling

    return RayApartScheduling(config, log, RAY_DRIVER_MODULES)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name in RAY_DRIVER_MODULES)  # stable: the rest keep their order
    for item in items:
        if MEDIAPIPE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("in_child"):
            item.add_marker(pytest.mark.mediapipe)
        if item.get_closest_marker("legacy") and not _legacy_backend_here():
            item.add_marker(pytest.mark.skip(reason="a test of the legacy backend (mp.solutions, mediapipe 0.10.21); "
                                                    "this mediapipe has only the Tasks API"))


def _legacy_backend_here() -> bool:
    from phoenix_data.extract.mediapipe import default_backend

    return default_backend() == "legacy"


@pytest.fixture
def holistic_settings():
    """MediaPipe Holistic's default settings, the backend the installed mediapipe runs (marks the test)."""
    from phoenix_data import HolisticSettings

    return HolisticSettings()


@pytest.fixture
def fake_settings():
    """The fast fake extractor's settings (no MediaPipe)."""
    from phoenix_data.extract.fake import FakeExtractorSettings

    return FakeExtractorSettings()


@pytest.fixture(autouse=True)
def _no_mediapipe_unless_marked(request, monkeypatch):
    """In a test not marked ``mediapipe``, ``import mediapipe`` fails: here, in forked workers (sys.modules)
    and in spawned or subprocesses (PYTHONPATH)."""
    if request.node.get_closest_marker("mediapipe"):
        yield
        return
    import sys

    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "mediapipe"}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.syspath_prepend(str(NO_MEDIAPIPE_DIR))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(NO_MEDIAPIPE_DIR) + (os.pathsep + path if path else ""))
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run the body of a ``@pytest.mark.in_child`` test in a forked child; fixtures stay in pytest.

    The child reports a failure's traceback through a pipe; the parent fails the test with it. If
    the parent is stopped meanwhile (pytest-timeout, Ctrl+C), the child is killed, not orphaned.
    """
    if pyfuncitem.get_closest_marker("in_child") is None:
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the test, report, leave without running pytest's teardown
        gc.freeze()  # the parent's uncollected garbage is the parent's (helpers.start_forked says why)
        os.close(read_end)
        _run_in_child(pyfuncitem, args, write_end)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # a timeout or Ctrl+C in the parent: no orphan keeps MediaPipe
        os.waitpid(pid, 0)
        raise
    code = os.waitstatus_to_exitcode(status)
    if code == 2:
        pytest.skip(message)
    if code != 0:
        pytest.fail(f"in the forked child (exit {code}):\n{message}", pytrace=False)
    return True


def _run_in_child(pyfuncitem, args, write_end: int) -> None:
    import traceback

    code, message = 0, b""
    try:
        pyfuncitem.obj(**args)
    except BaseException as exc:  # noqa: BLE001 - every outcome is reported to the parent
        code = 2 if isinstance(exc, pytest.skip.Exception) else 1
        message = (str(exc) if code == 2 else traceback.format_exc()).encode()
    os.write(write_end, message)
    os.close(write_end)
    os._exit(code)
