"""End-to-end fixtures: the mock WeChat API on a port, a real `python -m workers` process, and
an app whose jobs go to RQ (not in-process). Only on PostgreSQL + Redis (marks postgres, redis,
worker)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], *, timeout: float = 15, every: float = 0.1):
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def wechat_server():
    """The mock WeChat API served on its own port, as a separate process."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "miniprogram_mock.wechat_server", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base), timeout=15)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/_mock/messages", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def e2e_app(app_of_its_own, wechat_server):
    """An app on the same database and Redis whose jobs go to RQ for the worker process."""
    e2e = app_of_its_own(RQ_ASYNC=True, WX_API_BASE=wechat_server)
    with e2e.app_context():
        yield e2e


def service_env(app, **extra: str) -> dict:
    """Environment for a process of this test run: its database, Redis and upload directory."""
    return dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                REDIS_URL=app.config["REDIS_URL"], UPLOAD_DIR=app.config["UPLOAD_DIR"],
                LINLI_ENV="testing", **extra)


@pytest.fixture
def worker_env(app, wechat_server, tmp_path):
    """Environment for worker processes of this test run."""
    return service_env(app, WX_API_BASE=wechat_server)


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """Start `python -m workers` processes; all are stopped when the test ends."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(procs)}.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "workers"], cwd=ROOT, env=worker_env,
            stdout=log, stderr=subprocess.STDOUT)
        proc.log_file = log
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_worker(proc)
        proc.log_file.close()


def stop_worker(proc: subprocess.Popen, *, grace: float = 15) -> None:
    """SIGTERM a `python -m workers` process (RQ takes its scheduler and work-horse down with
    it), SIGKILL it if it hangs; then SIGKILL what it started that is still there - a horse
    blocked on a lock outlives a warm shutdown, a SIGKILLed worker leaves its scheduler."""
    # Only while Popen has not reaped it is the pid still this process's (a test may have).
    family = started_children(proc.pid) if proc.returncode is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    kill_family(family)


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def started_children(pid: int) -> list[tuple[int, str]]:
    """The children of `pid` with their start times, to tell them from a later reuse of the pid."""
    return [(child, _start_time(child)) for child in children(pid)]


def _start_time(pid: int) -> str:
    return _stat_field(pid, 19)


def _stat_field(pid: int, index: int) -> str:
    """A field of /proc/<pid>/stat after the command's name ("" when the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[index]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def running(family: list[tuple[int, str]]) -> list[int]:
    """The processes of `family` (started_children) still running: the same pid and start
    time, and not a zombie waiting to be reaped."""
    return [pid for pid, started in family
            if _start_time(pid) == started and _stat_field(pid, 0) != "Z"]


def kill_family(family: list[tuple[int, str]]) -> None:
    """SIGKILL the processes of `family` (started_children) that are still the same processes."""
    for pid, started in family:
        if started and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def gunicorn(env: dict, *, workers: int = 1, threads: int = 8, log=subprocess.DEVNULL):
    """gunicorn serving wsgi:app the way production does (gthread workers for SSE).

    Yields the base URL once /healthz answers; `log` takes gunicorn's and the app's output.
    """
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread",
         "--threads", str(threads), "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(base), timeout=20)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def live_server(worker_env):
    """gunicorn (one worker) serving the app for one end-to-end test."""
    with gunicorn(worker_env) as base:
        yield base


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
