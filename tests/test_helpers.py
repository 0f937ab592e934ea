"""The suite's own harness, where a failure of it would hide what a test is for."""
from __future__ import annotations

import threading
import time

import pytest
from helpers import HungCommand, start_forked, stop_forked


def _hangs(argv, spec=None):
    print("started", flush=True)
    threading.Thread(target=time.sleep, args=(60,), name="sleeper", daemon=True).start()
    time.sleep(60)


def test_a_forked_command_past_its_time_reports_where_each_thread_was(tmp_path):
    command = start_forked(_hangs, ["--x"], None, tmp_path, prog="hangs")
    try:
        with pytest.raises(HungCommand) as hung:
            command.wait(timeout=2)
    finally:
        stop_forked([command])
    report = str(hung.value)
    assert "timed out after 2 seconds" in report and "started" in report  # its output
    assert report.count("(most recent call first)") == 2  # both threads' stacks
    assert "in _hangs" in report  # the main thread, where it waited
