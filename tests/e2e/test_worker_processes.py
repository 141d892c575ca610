"""Stopping a worker process takes down what it started (the fixtures' shared helper)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.conftest import running, started_children, stop_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


def test_a_worker_that_hangs_is_killed_with_its_scheduler(start_worker):
    proc = start_worker()
    family = wait_until(lambda: started_children(proc.pid), timeout=30)  # RQ's scheduler
    os.kill(proc.pid, signal.SIGSTOP)  # deaf to SIGTERM: stop_worker must SIGKILL it
    stop_worker(proc, grace=1)
    assert proc.returncode == -signal.SIGKILL
    assert wait_until(lambda: not running(family), timeout=5)  # its scheduler would outlive it


def test_a_worker_stopped_by_sigterm_takes_its_scheduler_down_itself(start_worker):
    # What stop_worker asks first: a warm shutdown, after which nothing is left to kill.
    proc = start_worker()
    family = wait_until(lambda: started_children(proc.pid), timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert wait_until(lambda: not running(family), timeout=5)
