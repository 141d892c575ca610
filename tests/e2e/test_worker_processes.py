"""Stopping a worker process takes down what it started (the fixtures' shared helper)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import _start_time, started_children, stop_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


def alive(family: list[tuple[int, str]]) -> list[int]:
    """The processes of `family` still running (the same process: pid and start time; a zombie
    waiting for init to reap it runs no more)."""
    return [pid for pid, started in family if _start_time(pid) == started and _state(pid) != "Z"]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_a_worker_that_hangs_is_killed_with_its_scheduler(start_worker):
    proc = start_worker()
    family = wait_until(lambda: started_children(proc.pid), timeout=30)  # RQ's scheduler
    os.kill(proc.pid, signal.SIGSTOP)  # deaf to SIGTERM: stop_worker must SIGKILL it
    stop_worker(proc, grace=1)
    assert proc.returncode == -signal.SIGKILL
    assert wait_until(lambda: not alive(family), timeout=5)  # its scheduler would outlive it


def test_a_worker_stopped_warmly_leaves_nothing_behind(start_worker):
    proc = start_worker()
    family = wait_until(lambda: started_children(proc.pid), timeout=30)
    stop_worker(proc)
    assert proc.returncode is not None and proc.returncode != -signal.SIGKILL
    assert wait_until(lambda: not alive(family), timeout=5)
