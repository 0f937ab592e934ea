"""The warm-up on a real Ray cluster (no mocks): a head and a second node on this machine, one CPU each.

The cluster starts once for the module (a Ray node takes seconds to start). Most runs use the fast
fake extractor (``phoenix_data.extract.fake``): the point there is Ray's part (actors, faults, Ctrl+C,
resume); one test runs real MediaPipe and compares with a local warm-up of the same samples.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import MULTI, RUN_TIMEOUT, ci_is_set, metrics_rows, read_json, run_warm

from phoenix_data.cache import LandmarkCache
from phoenix_data.cache.claims import claim
from phoenix_data.cli import warm_main
from phoenix_data.corpus import RELEASES, find_release, read_release_split
from phoenix_data.exit_codes import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from phoenix_data.extract.fake import CRASH_COLOUR, VERSION_ENV, FakeExtractorSettings, fault_frame
from phoenix_data.extract.mediapipe.settings import HolisticSettings
from phoenix_data.frames import list_frames
from phoenix_data.warm import WarmOptions, warm

pytestmark = pytest.mark.slow  # a Ray cluster and its actors: the fast loop leaves this module out

# Ray binds this machine's interface address even when told 127.0.0.1 ("localhost" is resolved to a
# reachable address) unless its single-machine mode is on: then nodes, driver and actors all use the
# loopback address. Set before Ray is imported (it reads it once); subprocesses inherit it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

# Ray itself is imported by the cluster fixture: every test process collects this module, and only the
# one that runs it needs Ray (~0.4 s of CPU an import).
if importlib.util.find_spec("ray") is None:  # the test extra installs it; with CI set, a missing Ray fails
    NO_RAY = "Ray is not installed: pip install -e '.[ray]'"
    if ci_is_set():
        raise ImportError(NO_RAY)
    pytest.skip(NO_RAY, allow_module_level=True)

from phoenix_data.warm.ray import RayWarmError, warm_on_ray  # noqa: E402

# Ray's smallest object store; the records pass through it a few at a time.
OBJECT_STORE_BYTES = 80 << 20
# A fake that takes ~20 ms a frame: a run of the demo tree (231 frames, 2 actors) lasts a few
# seconds, long enough to kill an actor or interrupt the driver in the middle of it.
SLOW_FAKE = FakeExtractorSettings(delay=0.02)
# Every node of the test cluster, and so all its traffic, on this machine's loopback interface.
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node, one CPU each, and this process connected as the driver."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE_BYTES,
                                                            "node_ip_address": LOOPBACK, "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES, node_ip_address=LOOPBACK)
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False, configure_logging=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_cluster_keeps_to_the_loopback_address(cluster):
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    assert len(nodes) == 2
    assert {node["NodeManagerAddress"] for node in nodes} == {LOOPBACK}
    assert cluster.address.split(":")[0] == LOOPBACK


def demo_keys(root: Path) -> list:
    return [s.key for name in RELEASES for split in ("train", "dev", "test")
            for s in read_release_split(find_release(root, name), split)]


def decoded(cache: Path, settings, keys) -> dict:
    """key -> record, every record decoded (checksum included): a damaged one fails here."""
    store = LandmarkCache(cache, settings, readonly=True)
    with store.session():
        records = {key: store.get(key) for key in keys}
    missing = [key for key, record in records.items() if record is None]
    assert not missing, f"not cached: {missing}"
    return records


def test_two_nodes_warm_the_demo_tree_completely(cluster, demo_dir, tmp_path):
    outcome = warm_on_ray(WarmOptions(root=demo_dir, cache=tmp_path / "cache", settings=FakeExtractorSettings()),
                          actors=2)
    assert outcome.exit_status == EXIT_OK, outcome.summary
    keys = demo_keys(demo_dir)
    assert outcome.summary.to_json()["counts"] == {"total": len(keys), "extracted": len(keys), "cached": 0, "failed": 0,
                                         "remaining": 0}
    nodes = outcome.summary.to_json()["ray"]["nodes"]
    assert len(nodes) == 2, f"samples ran on {list(nodes)}, not on both nodes"
    assert sum(n["samples"] for n in nodes.values()) == len(keys)
    assert all(n["frames_per_s"] > 0 and n["peak_rss_mb_per_actor"] for n in nodes.values())
    assert sorted(outcome.summary.to_json()["ray"]["sample_nodes"]) == sorted(keys)
    assert read_json(outcome.summary_path)["ray"]["nodes"] == nodes
    assert len(metrics_rows(outcome.metrics_path.parent)) == len(keys)
    decoded(tmp_path / "cache", FakeExtractorSettings(), keys)


@pytest.mark.mediapipe
def test_mediapipe_on_two_nodes_equals_a_local_warm_up(cluster, demo_dir, tmp_path):
    """Real MediaPipe in the actors; the same samples warmed locally (a subprocess, one worker)."""
    scope = ("--release", "multisigner", "--split", "dev")
    local = run_warm("--root", demo_dir, "--cache", tmp_path / "local", "--workers", 1, *scope, real=True)
    assert local.returncode == 0, local.stderr
    args = ["--root", str(demo_dir), "--cache", str(tmp_path / "ray"), *scope, "--workers", "2", "--ray",
            cluster.address]
    assert warm_main(args) == EXIT_OK
    summary = read_json(tmp_path / "ray" / "summary.json")
    keys = [s.key for s in read_release_split(find_release(demo_dir, MULTI), "dev")]
    assert summary["counts"]["extracted"] == len(keys) and len(summary["ray"]["nodes"]) == 2
    ours, theirs = (decoded(tmp_path / name, HolisticSettings(), keys) for name in ("ray", "local"))
    for key in keys:
        np.testing.assert_array_equal(ours[key].presence(), theirs[key].presence(), err_msg=key)
        # float16 storage: one step is 2**-10 relative (2**-11 absolute below 1)
        np.testing.assert_allclose(ours[key].landmarks, theirs[key].landmarks, rtol=2**-10, atol=2**-11,
                                   err_msg=key)


def test_an_actor_killed_mid_run_leaves_every_sample_done(cluster, demo_dir, tmp_path):
    cache = tmp_path / "cache"
    killed = []

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(metrics_rows(cache)) < 3:
            time.sleep(0.02)
        rows = metrics_rows(cache)
        if rows:
            os.kill(int(rows[0]["worker_pid"]), signal.SIGKILL)
            killed.append(int(rows[0]["worker_pid"]))

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    outcome = warm_on_ray(WarmOptions(root=demo_dir, cache=cache, settings=SLOW_FAKE), actors=2)
    killer.join()
    assert killed, "no sample finished: the actor was never killed"
    keys = demo_keys(demo_dir)
    assert outcome.exit_status == EXIT_OK, outcome.summary
    assert outcome.summary.to_json()["ray"]["actor_deaths"] == 1
    assert outcome.summary.to_json()["counts"]["extracted"] == len(keys)
    assert len({row["worker_pid"] for row in metrics_rows(cache)} - {str(p) for p in killed}) == 1
    for key, record in decoded(cache, SLOW_FAKE, keys).items():
        assert record.num_frames > 0, key


def test_no_actor_left_exits_3_saying_rerun(cluster, demo_dir, tmp_path):
    """The only actor killed: the run stops with exit 3 and "rerun"; what finished stays cached."""
    cache = tmp_path / "cache"

    def kill_the_actor() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not metrics_rows(cache):
            time.sleep(0.02)
        rows = metrics_rows(cache)
        if rows:
            os.kill(int(rows[0]["worker_pid"]), signal.SIGKILL)

    killer = threading.Thread(target=kill_the_actor)
    killer.start()
    outcome = warm_on_ray(WarmOptions(root=demo_dir, cache=cache, settings=SLOW_FAKE), actors=1)
    killer.join()
    assert outcome.exit_status == EXIT_ABORTED, outcome.summary
    assert "rerun" in outcome.summary.to_json()["aborted"] and outcome.summary.to_json()["counts"]["remaining"] > 0
    done = [k for k in demo_keys(demo_dir) if k in {f"{r['release']}/{r['split']}/{r['id']}" for r in
                                                    metrics_rows(cache)}]
    decoded(cache, SLOW_FAKE, done)


def test_a_sample_two_actors_died_on_fails_and_is_not_retried(cluster, demo_dir, tmp_path):
    """A frame that aborts whichever process extracts it: both actors die on it, it is recorded as failed."""
    root = tmp_path / "tree"
    subprocess.run(["cp", "-r", str(demo_dir), str(root)], check=True)
    crashing = read_release_split(find_release(root, MULTI), "dev")[0]
    cv2.imwrite(str(list_frames(crashing.frames_dir)[0]), fault_frame(CRASH_COLOUR)[..., ::-1])  # BGR on disk
    cache, settings = tmp_path / "cache", FakeExtractorSettings()
    options = WarmOptions(root=root, cache=cache, settings=settings, release=MULTI, split="dev")
    first = warm_on_ray(options, actors=2).summary.to_json()
    assert first["ray"]["actor_deaths"] == 2, first
    store = LandmarkCache(cache, settings, readonly=True)
    failure = store.failure(crashing.key) or {}
    assert "2 Ray actors died running this sample" in failure.get("reason", ""), failure
    assert store.get(crashing.key) is None
    rerun = warm_on_ray(options, actors=2)  # fresh actors; the failed sample is not retried
    assert rerun.summary.to_json()["ray"]["actor_deaths"] == 0
    keys = [s.key for s in read_release_split(find_release(root, MULTI), "dev")]
    decoded(cache, settings, [k for k in keys if k != crashing.key])


def test_a_node_with_another_extractor_identity_stops_the_run_before_any_write(cluster, demo_dir, tmp_path):
    """A third node whose extractor computes another identity (as another mediapipe release or bundle
    would): the run stops naming it, before any sample is extracted or written."""
    os.environ[VERSION_ENV] = "another-release"  # inherited by the node's raylet and its workers only
    try:
        odd = cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES, node_ip_address=LOOPBACK)
    finally:
        del os.environ[VERSION_ENV]
    try:
        cluster.wait_for_nodes()
        with pytest.raises(RayWarmError) as error:  # three actors of 1 CPU: one on each node
            warm_on_ray(WarmOptions(root=demo_dir, cache=tmp_path / "cache", settings=FakeExtractorSettings()),
                        actors=3)
    finally:
        cluster.remove_node(odd)
    message = str(error.value)
    assert "Ray node" in message and "node id" in message, message
    assert "version: driver None, node 'another-release'" in message, message
    assert not metrics_rows(tmp_path / "cache")
    store = LandmarkCache(tmp_path / "cache", FakeExtractorSettings(), readonly=True)
    assert all(store.get(key) is None for key in demo_keys(demo_dir))


CLAIM_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from phoenix_data.cache import LandmarkCache
    from phoenix_data.cache.claims import claim
    from phoenix_data.extract import extract_frames_dir
    from phoenix_data.extract.fake import FakeExtractorSettings

    cache, key, frames = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    with claim(cache, key) as held:
        assert held
        print("claimed", flush=True)
        time.sleep(float(sys.argv[4]))  # a local job extracting the sample meanwhile
        store = LandmarkCache(cache, FakeExtractorSettings())
        store.put(key, extract_frames_dir(frames, FakeExtractorSettings(), key))
        store.close()
""")


def test_a_sample_another_process_is_extracting_is_left_to_it(cluster, demo_dir, tmp_path):
    """The driver takes the same per-sample claims as local extractors: a sample claimed by another
    process (a local warm-up or a training run on the same cache) is not extracted by the Ray run."""
    cache, settings = tmp_path / "cache", FakeExtractorSettings()
    LandmarkCache(cache, settings).close()
    sample = read_release_split(find_release(demo_dir, MULTI), "train")[0]
    holder = subprocess.Popen([sys.executable, "-c", CLAIM_HOLDER, str(cache), sample.key, str(sample.frames_dir), "3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        outcome = warm_on_ray(WarmOptions(root=demo_dir, cache=cache, settings=settings), actors=2)
    finally:
        assert holder.wait(timeout=RUN_TIMEOUT) == 0
    counts, keys = outcome.summary.to_json()["counts"], demo_keys(demo_dir)
    assert outcome.exit_status == EXIT_OK, counts
    assert counts["extracted"] == len(keys) - 1 and counts["total"] == len(keys), counts
    assert sample.key not in outcome.summary.to_json()["ray"]["sample_nodes"]
    store = LandmarkCache(cache, settings, readonly=True)
    assert store.extracted_by(sample.key) == holder.pid
    with claim(cache, sample.key) as held:  # the driver gave back every claim it took
        assert held
    decoded(cache, settings, keys)


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from phoenix_data.cli.common import guarded as _guarded, set_up_logging as _set_up_logging
    from phoenix_data.extract.fake import FakeExtractorSettings
    from phoenix_data.warm import WarmOptions

    def run():
        from phoenix_data.warm.ray import warm_on_ray
        options = WarmOptions(root=Path(sys.argv[1]), cache=Path(sys.argv[2]),
                              settings=FakeExtractorSettings(delay=0.02), heartbeat=0)
        return warm_on_ray(options, address=sys.argv[3], actors=2).exit_status

    _set_up_logging(False, 20)
    sys.exit(_guarded("warm", run))
""")


def test_ctrl_c_exits_130_and_a_rerun_completes(cluster, demo_dir, tmp_path):
    cache = tmp_path / "cache"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(demo_dir), str(cache), cluster.address],
                                stderr=err, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while len(metrics_rows(cache)) < 2:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "no sample finished in 90 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=RUN_TIMEOUT) == EXIT_INTERRUPTED, (tmp_path / "stderr.txt").read_text()
    summary = read_json(cache / "summary.json")
    keys = demo_keys(demo_dir)
    assert summary["interrupted"] and 0 < summary["counts"]["extracted"] < len(keys), summary["counts"]
    done = summary["counts"]["extracted"]
    rerun = warm_on_ray(WarmOptions(root=demo_dir, cache=cache, settings=SLOW_FAKE), actors=2)
    assert rerun.exit_status == EXIT_OK
    assert rerun.summary.to_json()["counts"]["cached"] == done
    assert rerun.summary.to_json()["counts"]["extracted"] == len(keys) - done
    decoded(cache, SLOW_FAKE, keys)


def test_resume_after_a_partial_local_warm_up_extracts_only_what_is_missing(cluster, demo_dir, tmp_path):
    cache, settings = tmp_path / "cache", FakeExtractorSettings()
    local = warm(WarmOptions(root=demo_dir, cache=cache, release="multisigner", workers=0, settings=settings))
    assert local.exit_status == EXIT_OK
    first = {row["id"] for row in metrics_rows(cache)}
    assert first
    outcome = warm_on_ray(WarmOptions(root=demo_dir, cache=cache, settings=settings), actors=2)
    keys = demo_keys(demo_dir)
    assert outcome.exit_status == EXIT_OK
    assert outcome.summary.to_json()["counts"]["cached"] == local.summary.to_json()["counts"]["extracted"]
    assert outcome.summary.to_json()["sent_to_workers"] == len(keys) - local.summary.to_json()["counts"]["extracted"]
    sent = set(outcome.summary.to_json()["ray"]["sample_nodes"])
    assert not sent & {k for k in keys if k.startswith(MULTI + "/")}, "cached samples were extracted again"
    decoded(cache, settings, keys)


def test_a_node_that_cannot_see_the_frames_is_named(cluster, demo_dir, tmp_path, capsys):
    """Frames moved away after the plan: every node misses them; the error names a node and the path."""
    root = tmp_path / "tree"
    subprocess.run(["cp", "-r", str(demo_dir), str(root)], check=True)
    release = find_release(root, "2014-T")
    frames = read_release_split(release, "dev")[0].frames_dir
    hidden = frames.parent.with_name("moved-away")
    frames.parent.rename(hidden)
    with pytest.raises(SystemExit) as exit_info:
        warm_main(["--root", str(root), "--release", "2014-T", "--split", "dev", "--cache", str(tmp_path / "c"),
                   "--ray", cluster.address])
    assert exit_info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Ray node" in err and "node id" in err and "cannot see" in err and str(frames.parent) in err, err


def test_without_ray_installed_the_error_gives_the_install_command(demo_dir, tmp_path):
    """Ray hidden from a fresh interpreter: --ray fails with exit 2 and the pip command, no traceback."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "from phoenix_data.cli import warm_main\n"
            f"sys.exit(warm_main(['--root', {str(demo_dir)!r}, '--cache', {str(tmp_path / 'c')!r}, '--ray']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "pip install -e '.[ray]'" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
