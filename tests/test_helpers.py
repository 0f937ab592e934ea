"""The suite's own harness, where a failure of it would hide what a test is for."""
from __future__ import annotations

import gc
import threading
import time

import pytest
import torch
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


class _Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> int:
        return index


def _collects(argv, spec=None):
    gc.collect()
    return 0


def test_a_forked_command_leaves_this_processs_garbage_alone(tmp_path):
    """A DataLoader iterator this process dropped in a reference cycle, not yet collected: a forked command
    that collected it would run its ``__del__``, shutting down this process's workers from the child."""
    from torch.utils.data import DataLoader

    enabled, workers = gc.isenabled(), []
    gc.disable()  # the cycle stays uncollected here until the child has run
    try:
        batches = iter(DataLoader(_Numbers(), num_workers=2, multiprocessing_context="fork"))
        next(batches)
        done, workers = batches._workers_done_event, list(batches._workers)
        cycle: list = [batches]
        cycle.append(cycle)
        del batches, cycle
        command = start_forked(_collects, [], None, tmp_path, prog="collects")
        try:
            assert command.wait(timeout=60) == 0, (tmp_path / "stderr.txt").read_text()
        finally:
            stop_forked([command])
        assert not done.is_set(), (tmp_path / "stderr.txt").read_text()  # the workers were left alone
        assert "Exception ignored" not in (tmp_path / "stderr.txt").read_text()
    finally:
        for worker in workers:  # (its shutdown would wait 5 s for each)
            worker.terminate()
        gc.collect()  # the iterator, here
        if enabled:
            gc.enable()
