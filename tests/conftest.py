"""Fixtures: one app per test session on a schema built by the migrations; rows wiped per test.

The same suite runs on the embedded defaults (SQLite file + fakeredis, jobs in-process) and,
with DATABASE_URL / REDIS_URL set, on PostgreSQL + Redis. With LINLI_REQUIRE_SERVICES=1 (CI's
second run) an unreachable PostgreSQL or Redis ends the run as a failure, never a skip.
"""

from __future__ import annotations

import os
import signal

import pytest
from rq import Queue, SimpleWorker
from rq.timeouts import TimerDeathPenalty
from sqlalchemy import text

from app import create_app
from app.extensions import QUEUE_NAMES, db, redis_store
from app.services import cache
from miniprogram_mock.wechat_server import shared_mock_app

REQUIRE_SERVICES = os.environ.get("LINLI_REQUIRE_SERVICES") == "1"


def _database_url(tmp_path_factory) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    if REQUIRE_SERVICES:
        pytest.exit("LINLI_REQUIRE_SERVICES=1 but DATABASE_URL is unset", returncode=3)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'linli-test.db'}"


def _reset_schema(app) -> None:
    """Drop everything, then build the schema by running the migrations."""
    from flask_migrate import upgrade

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade(revision="heads")


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """The application under test, with its schema built by `flask db upgrade`."""
    os.environ["LINLI_ENV"] = "testing"
    upload_dir = tmp_path_factory.mktemp("uploads")
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": _database_url(tmp_path_factory),
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "RQ_ASYNC": False,
        "UPLOAD_DIR": str(upload_dir),
        # race tests send their threads' requests at once: no request queue in front of them
        # (tests/test_admission.py tests the queue on apps of its own)
        "WEB_ACTIVE_REQUESTS": 0,
    })
    _check_services(app)
    _reset_schema(app)
    yield app
    with app.app_context():
        db.engine.dispose()
        redis_store.client.close()


def _check_services(app) -> None:
    """Under LINLI_REQUIRE_SERVICES=1 both real services must answer, or the run fails."""
    if not REQUIRE_SERVICES:
        return
    problems = []
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            problems.append("DATABASE_URL is not PostgreSQL")
        try:
            db.session.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"PostgreSQL unreachable: {exc}")
        if redis_store.is_fake:
            problems.append("REDIS_URL is unset")
        else:
            try:
                redis_store.client.ping()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"Redis unreachable: {exc}")
    if problems:
        pytest.exit("; ".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _clean(app):
    """Each test starts with empty tables and an empty Redis."""
    with app.app_context():
        yield
        db.session.remove()
        wipe_database()
        redis_store.client.flushdb()
        cache.forget_local()  # the process's copies of what Redis held
        shared_mock_app().extensions["mock_wechat"].reset()


def wipe_database() -> None:
    """Delete every row of every table (children first)."""
    tables = [t for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def app_of_its_own(app):
    """create_app on the test database, Redis and upload directory with settings of its own
    (`make(**settings)`); its pools and Redis client closed after the test."""
    made = []

    def make(**settings):
        made.append(create_app({**{k: app.config[k] for k in (
            "SQLALCHEMY_DATABASE_URI", "REDIS_URL", "RQ_ASYNC", "UPLOAD_DIR")}, **settings}))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
            redis_store.client.close()


@pytest.fixture
def client(app):
    """A test client for the API."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner for the Flask CLI commands."""
    return app.test_cli_runner()


@pytest.fixture
def session(app):
    """The SQLAlchemy session the app uses."""
    return db.session


def pytest_collection_modifyitems(config, items):
    """Skip tests that need the real services on the embedded defaults (never under CI's run)."""
    on_postgres = (os.environ.get("DATABASE_URL") or "").startswith("postgresql")
    on_redis = bool(os.environ.get("REDIS_URL"))
    for item in items:
        if "postgres" in item.keywords and not on_postgres and not REQUIRE_SERVICES:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL)"))
        if "redis" in item.keywords and not on_redis and not REQUIRE_SERVICES:
            item.add_marker(pytest.mark.skip(reason="needs Redis (REDIS_URL)"))
        with_worker = os.environ.get("LINLI_E2E_WORKER") == "1" or REQUIRE_SERVICES
        if "worker" in item.keywords and not with_worker:
            item.add_marker(pytest.mark.skip(reason="needs a real RQ worker (LINLI_E2E_WORKER=1)"))


# --- RQ in the test process ---------------------------------------------------------------------


@pytest.fixture
def async_queues(app, monkeypatch):
    """The app's jobs enqueued for real workers (not run at commit), on its Redis connection."""
    state = app.extensions["linli_redis"]
    queues = {name: Queue(name, connection=redis_store.client) for name in QUEUE_NAMES}
    monkeypatch.setattr(state, "queues", queues)
    monkeypatch.setattr(state, "jobs_async", True)
    return queues


class InProcessWorker(SimpleWorker):
    """An RQ worker in the test process; a timer, not SIGALRM, enforces job timeouts."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args, worked: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.worked = worked if worked is not None else []

    def perform_job(self, job, queue) -> bool:
        self.worked.append(job.description)
        return super().perform_job(job, queue)


def work_in_process(queues: dict[str, Queue], *, worked: list[str] | None = None) -> None:
    """Drain the queues (highest priority first) with an in-process RQ worker, leaving
    pytest's signal handlers alone; `worked` gets each job's description in the order run."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        InProcessWorker(list(queues.values()), connection=redis_store.client,
                        worked=worked).work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def queue_routing_backlog(count: int) -> None:
    """`count` report-routing jobs queued (for reports long gone: each run is quick), as a
    burst of submissions leaves them."""
    from app.services import outbox

    for n in range(count):
        outbox.add_job("route_report", queue="high", report_id=10_000_000 + n)
    outbox.commit()
