"""Fault-injection fixtures: real processes and real services, broken on purpose.

Builds on the end-to-end fixtures (the mock WeChat API on its own port, `python -m workers`
processes): an app whose jobs go to RQ with short retry intervals, workers whose pids (and their
work-horses') the test knows, a private redis-server to stop and start, a PostgreSQL connection
of the test's own to hold locks and terminate backends, and the mock's /_mock/faults switch.
Processes are only ever signalled by the pids these fixtures started (or their children).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis
from PIL import Image
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from app.extensions import db
from app.models import IdempotencyRecord, OutboxMessage, OutboxStatus
from app.models.reports import Report, ReportEvent, Ticket
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from tests import factories as f
from tests.e2e import conftest as e2e
from tests.e2e.conftest import (
    ROOT,
    children,
    free_port,
    kill_family,
    started_children,
    stop_worker,
    wait_until,
)

wechat_server = e2e.wechat_server  # the mock WeChat API on its own port, as a separate process

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
RETRY_INTERVALS = "1,2,3,5,8"  # seconds between RQ retries of an outbox job (production: 5,30,...)


@pytest.fixture
def redis_url(app) -> str:
    """The Redis of this test's app and workers (a module may override it)."""
    return app.config["REDIS_URL"]


@pytest.fixture
def app_overrides() -> dict:
    """Extra config for `faults_app` (a module or test may override it)."""
    return {}


@pytest.fixture
def faults_app(app_of_its_own, wechat_server, redis_url, app_overrides):
    """An app on the test database whose jobs go to RQ, retried after 1, 2, 3... seconds."""
    faulty = app_of_its_own(**{
        "REDIS_URL": redis_url, "RQ_ASYNC": True, "WX_API_BASE": wechat_server,
        "WX_TIMEOUT_SECONDS": 1.0,
        "OUTBOX_RETRY_INTERVALS": [int(v) for v in RETRY_INTERVALS.split(",")], **app_overrides})
    with faulty.app_context():
        yield faulty


@dataclass
class WorkerProcess:
    """A `python -m workers` process this test started."""

    proc: subprocess.Popen
    log_path: Path
    killed: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def horse_pid(self) -> int | None:
        """The work-horse running a job now: RQ forks it into a process group of its own."""
        return next((pid for pid in children(self.pid) if _pgid(pid) == pid), None)

    def kill_horse(self) -> int:
        """SIGKILL the work-horse (the OOM killer's favourite); returns its pid."""
        horse = wait_until(self.horse_pid, timeout=10)
        os.kill(horse, signal.SIGKILL)
        self.killed.append(horse)
        return horse

    def crash(self) -> None:
        """SIGKILL the worker, then its scheduler and work-horse: a machine dying mid-job."""
        family = started_children(self.pid)
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        kill_family(family)
        self.killed.extend(pid for pid, _ in family)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.fixture
def worker_env(app, wechat_server, redis_url) -> dict:
    """Environment of this test's worker processes (a test may add to it before starting)."""
    return dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                REDIS_URL=redis_url, WX_API_BASE=wechat_server,
                UPLOAD_DIR=app.config["UPLOAD_DIR"], LINLI_ENV="testing",
                OUTBOX_RETRY_INTERVALS=RETRY_INTERVALS, WX_TIMEOUT_SECONDS="1")


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """Start `python -m workers` processes; every one (and its children) is stopped at the end."""
    workers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "workers"], cwd=ROOT, env=worker_env,
                stdout=log, stderr=subprocess.STDOUT)
        workers.append(WorkerProcess(proc, log_path))
        return workers[-1]

    yield start
    for worker in workers:
        stop_worker(worker.proc)


class RedisServer:
    """A redis-server process of this test's own, on its own port, to stop and start."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        """Start (or restart) the server on the same port, empty, and wait until it answers."""
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - Debian's redis-server
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.answers, timeout=10, every=0.05)

    def stop(self) -> None:
        """Stop the server (by the pid this fixture started) and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server on a free port (stopped at the end, whatever the test did)."""
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg(app):
    """Connections of the test's own to the test database, outside the app's pool: to hold
    locks, watch pg_stat_activity and terminate backends."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    yield engine
    engine.dispose()


def waiting_on_lock(engine, statement_prefix: str) -> list[int]:
    """Pids of backends of this database blocked on a lock in a statement like this (an ILIKE
    prefix: `%` matches anything)."""
    with engine.connect() as conn:  # a fresh transaction: pg_stat_activity is not a snapshot
        return list(conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE :q AND pid <> pg_backend_pid()"),
            {"q": statement_prefix + "%"}).scalars())


class MockFaults:
    """The mock WeChat API's /_mock/faults switch and its records."""

    def __init__(self, base: str) -> None:
        self.base = base

    def set(self, **fault) -> None:
        httpx.post(f"{self.base}/_mock/faults", json=fault, timeout=5).raise_for_status()

    def clear(self) -> None:
        httpx.delete(f"{self.base}/_mock/faults", timeout=5).raise_for_status()

    def calls(self, path: str) -> int:
        return httpx.get(f"{self.base}/_mock/calls", timeout=5).json()["calls"].get(path, 0)

    def messages(self, touser: str) -> list[dict]:
        return httpx.get(f"{self.base}/_mock/messages", params={"touser": touser},
                         timeout=5).json()["items"]


@pytest.fixture
def wechat_faults(wechat_server) -> MockFaults:
    return MockFaults(wechat_server)


@pytest.fixture
def place(faults_app):
    """A community whose fire-lane reports go to the property company and the office."""
    comm = f.community()
    bld = f.building(comm)
    prop = f.org(comm, "property_company", code="faults-prop")
    office = f.org(comm, "community_office", code="faults-office")
    ensure_categories()
    ensure_routing_rules(comm)
    db.session.commit()
    return {"comm": comm, "bld": bld, "prop": prop, "office": office,
            "prop_staff": f.staff(prop, "manager"), "office_staff": f.staff(office, "staff")}


def jpeg() -> io.BytesIO:
    """A small photo to attach."""
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 60)).save(buf, "JPEG")
    buf.seek(0)
    return buf


def report_body(place, **extra) -> dict:
    return {"category": "lighting", "description": "3号楼楼道灯不亮",
            "building_id": place["bld"].id, **extra}


def fresh_view() -> None:
    """End the test's own transaction so that it sees what others committed since.

    When the test dropped every connection, its own session's goes too: rolling back then
    raises once, and the next query checks out a new connection (pool_pre_ping).
    """
    with contextlib.suppress(OperationalError):
        db.session.rollback()


def outbox_rows(job: str | None = None) -> list[OutboxMessage]:
    """Outbox rows as the database has them now (the workers' commits included)."""
    fresh_view()
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if job:
        query = query.where(OutboxMessage.job == job)
    return list(db.session.scalars(query))


def all_done(job: str | None = None) -> bool:
    rows = outbox_rows(job)
    return bool(rows) and all(row.status == OutboxStatus.DONE for row in rows)


def tickets_by_report() -> dict[int, list[int]]:
    """{report_id: sorted org ids of its tickets}."""
    fresh_view()
    found: dict[int, list[int]] = {}
    for report_id, org_id in db.session.execute(
            select(Ticket.report_id, Ticket.org_id).order_by(Ticket.org_id)):
        found.setdefault(report_id, []).append(org_id)
    return found


def count(model, *where) -> int:
    fresh_view()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def in_thread(call) -> dict:
    """Run `call` in a thread; the returned dict gets its "response" (or "error")."""
    outcome: dict = {}

    def run():
        try:
            outcome["response"] = call()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def assert_503(response, code: str) -> None:
    """A clean 503 in the error shape (`code`), with Retry-After and no driver text."""
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert b"Traceback" not in response.data and b"psycopg" not in response.data


@contextlib.contextmanager
def submission_behind_a_lock(app, place, pg, key: str) -> Iterator[SimpleNamespace]:
    """A resident's report submission (Idempotency-Key `key`) started in a thread while a
    connection of the test's own holds the outbox table's EXCLUSIVE lock (reads pass, the
    report's one INSERT statement waits); the lock ends with the block (or `locker.rollback()`)."""
    client = app.test_client()
    headers = {**f.headers(f.resident(place["comm"])), "Idempotency-Key": key}
    body = report_body(place)
    with pg.connect() as locker:
        locker.execute(text("LOCK TABLE outbox IN EXCLUSIVE MODE"))
        outcome = in_thread(lambda: client.post("/api/v1/reports", headers=headers, json=body))
        yield SimpleNamespace(locker=locker, outcome=outcome, client=client, headers=headers,
                              body=body)


def assert_503_then_the_retry_goes_through(submission: SimpleNamespace, code: str) -> None:
    """The submission got a clean 503 `code` and wrote nothing - its Idempotency-Key is free
    again -, and the same request then files the report once."""
    assert "error" not in submission.outcome, submission.outcome.get("error")
    assert_503(submission.outcome["response"], code)
    assert count(Report) == count(ReportEvent) == count(OutboxMessage) == 0
    assert count(IdempotencyRecord) == 0
    retry = submission.client.post("/api/v1/reports", headers=submission.headers,
                                   json=submission.body)
    assert retry.status_code == 201, retry.get_json()
    assert count(Report) == count(OutboxMessage) == 1
