"""The outbox: jobs written with the business rows, run after commit, not lost to Redis outages."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import event, func, inspect, select
from sqlalchemy.exc import IntegrityError

from app.errors import InvalidTransition, NotFound
from app.extensions import QUEUE_NAMES, db, redis_store
from app.models import Community, OutboxMessage, OutboxStatus, utcnow
from app.services import outbox
from tests.conftest import work_in_process
from workers.jobs import PING_KEY, UnknownJob, job
from workers.outbox import relay_tick, run_outbox_message

ROOT = Path(__file__).resolve().parents[2]
CALLS: list[tuple] = []
FLAKY = {"failures_left": 0}


@job("tests.record")
def record(**kwargs) -> None:
    """Remember the call and the status of the outbox rows at that moment."""
    statuses = [str(s) for s in db.session.scalars(select(OutboxMessage.status))]
    CALLS.append((kwargs, statuses))


@job("tests.explode")
def explode(reason: str = "boom") -> None:
    """Always fail."""
    raise RuntimeError(reason)


@job("tests.flaky")
def flaky() -> None:
    """Fail while FLAKY has failures left, then succeed (recording the call)."""
    record()
    if FLAKY["failures_left"] > 0:
        FLAKY["failures_left"] -= 1
        raise ConnectionResetError("upstream hung up")


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()
    FLAKY["failures_left"] = 0
    yield
    CALLS.clear()


def add_community(code: str = "c1") -> Community:
    """A business row written in the same transaction as the job."""
    community = Community(code=code, name="测试社区", timezone="Asia/Shanghai")
    db.session.add(community)
    return community


def only_message() -> OutboxMessage:
    """The single outbox row, fresh from the database."""
    db.session.expire_all()
    return db.session.execute(select(OutboxMessage)).scalar_one()


def dead_redis() -> redis.Redis:
    """A client of a Redis that refuses connections, failing at once rather than after retries."""
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                       retry=RedisRetry(NoBackoff(), 0))


@pytest.fixture
def redis_down(app, monkeypatch):
    """Redis is unreachable until the test calls the returned function to bring it back."""
    client = dead_redis()
    state = app.extensions["linli_redis"]
    monkeypatch.setattr(state, "client", client)
    queues = {name: Queue(name, connection=client, is_async=redis_store.jobs_async)
              for name in QUEUE_NAMES}
    monkeypatch.setattr(state, "queues", queues)
    yield monkeypatch.undo
    client.close()


# --- in-process: commit, rollback, failure, idempotency ------------------------------------------


def test_committed_job_runs_after_the_commit_and_its_row_is_done(app, session):
    add_community()
    message = outbox.add_job("tests.record", community_code="c1")
    assert CALLS == []

    outbox.commit()

    assert CALLS == [({"community_code": "c1"}, ["pending"])]
    row = only_message()
    assert (row.id, row.status, row.attempts) == (message.id, OutboxStatus.DONE, 1)
    assert row.done_at is not None
    assert session.scalar(select(func.count()).select_from(Community)) == 1


def test_builtin_ping_job_writes_to_redis(app, session):
    outbox.add_job("ping", value="hello")
    outbox.commit()

    assert redis_store.client.lrange(PING_KEY, 0, -1) == [b"hello"]
    assert only_message().status == OutboxStatus.DONE


def test_rolled_back_transaction_runs_nothing(app, session):
    add_community()
    outbox.add_job("tests.record", n=1)
    session.rollback()

    add_community("c2")
    outbox.commit()

    assert CALLS == []
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert outbox.relay_pending(older_than_seconds=0) == 0


def test_a_rolled_back_savepoint_drops_only_its_own_rows(app, session, async_queues):
    kept = [outbox.add_job("tests.record", n="before")]
    with pytest.raises(RuntimeError), session.begin_nested():
        outbox.add_job("tests.record", n="in the savepoint")
        raise RuntimeError("undo the savepoint")
    with session.begin_nested():
        kept.append(outbox.add_job("tests.record", n="kept savepoint"))

    outbox.commit()

    # Only the kept rows' jobs are queued (a dropped row's id may be reused on SQLite).
    assert async_queues["default"].job_ids == [f"outbox-{m.id}" for m in kept]
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2


def test_a_failed_flush_in_a_savepoint_drops_the_savepoints_rows(app, session, async_queues):
    kept = outbox.add_job("tests.record", n="before")
    with pytest.raises(IntegrityError), session.begin_nested():
        outbox.add_job("tests.record", n="in the savepoint")
        session.add(Community(code=None, name="no code"))  # NOT NULL: the flush fails
        session.flush()

    outbox.commit()

    assert async_queues["default"].job_ids == [f"outbox-{kept.id}"]


def test_a_rolled_back_transaction_queues_nothing(app, session, async_queues):
    outbox.add_job("tests.record", n=1)
    session.rollback()
    kept = outbox.add_job("tests.record", n=2)

    outbox.commit()

    assert async_queues["default"].job_ids == [f"outbox-{kept.id}"]


def test_the_jobs_of_a_commit_are_queued_in_one_redis_round_trip(app, session, async_queues,
                                                                monkeypatch):
    client, trips = redis_store.client, []
    for queue in async_queues.values():  # asked once per queue object, as a process starts
        queue.get_redis_server_version()
    pipeline = client.pipeline

    def counted_pipeline(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute
        monkeypatch.setattr(pipe, "execute", lambda *a, **k: trips.append("pipeline") or
                            execute(*a, **k))
        return pipe

    monkeypatch.setattr(client, "pipeline", counted_pipeline)
    monkeypatch.setattr(client, "execute_command",
                        lambda *a, _run=client.execute_command, **k: trips.append(a[0]) or
                        _run(*a, **k))
    messages = [outbox.add_job("tests.record", n=1), outbox.add_job("tests.record", n=2),
                outbox.add_job("tests.record", queue="high", n=3)]

    outbox.commit()

    assert trips == ["pipeline"]
    assert async_queues["default"].job_ids == [f"outbox-{m.id}" for m in messages[:2]]
    assert async_queues["high"].job_ids == [f"outbox-{messages[2].id}"]
    work_in_process(async_queues)
    assert sorted(kwargs["n"] for kwargs, _statuses in CALLS) == [1, 2, 3]
    session.expire_all()
    assert {session.get(OutboxMessage, m.id).status for m in messages} == {OutboxStatus.DONE}


def test_redis_failing_at_the_pipeline_leaves_every_job_of_the_commit_to_the_relay(
        app, session, async_queues, monkeypatch, caplog):
    monkeypatch.setattr(logging.getLogger("app"), "propagate", True)
    client, pipeline = redis_store.client, redis_store.client.pipeline

    def failing_pipeline(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        monkeypatch.setattr(pipe, "execute", lambda *a, **k: (_ for _ in ()).throw(
            redis.ConnectionError("connection lost")))
        return pipe

    monkeypatch.setattr(client, "pipeline", failing_pipeline)
    messages = [outbox.add_job("tests.record", n=1), outbox.add_job("tests.record", n=2),
                outbox.add_job("tests.record", queue="high", n=3)]

    outbox.commit()  # the caller gets no error

    assert async_queues["default"].job_ids == [] and async_queues["high"].job_ids == []
    session.expire_all()
    assert {session.get(OutboxMessage, m.id).status for m in messages} == {OutboxStatus.PENDING}
    assert all(f"{m.id}" in caplog.text for m in messages) and "left pending" in caplog.text
    monkeypatch.setattr(client, "pipeline", pipeline)  # Redis is back: the relay queues them
    assert outbox.relay_pending(older_than_seconds=0) == 3


def test_in_process_a_redis_failure_leaves_only_its_own_job_to_the_relay(app, session,
                                                                          monkeypatch, caplog):
    # In-process each job runs as it is enqueued: when RQ's bookkeeping fails for the second
    # of three, the first has run, the third still runs, and the log names only the second.
    monkeypatch.setattr(logging.getLogger("app"), "propagate", True)
    enqueue_call = outbox._enqueue_call

    def failing_for_n2(message_id, queue, job, *, pipeline):
        if message_id == ids[1]:
            raise redis.ConnectionError("connection lost")
        return enqueue_call(message_id, queue, job, pipeline=pipeline)

    monkeypatch.setattr(outbox, "_enqueue_call", failing_for_n2)
    CALLS.clear()
    messages = [outbox.add_job("tests.record", n=n) for n in (1, 2, 3)]
    ids = [m.id for m in messages]

    outbox.commit()  # the caller gets no error

    assert sorted(kwargs["n"] for kwargs, _statuses in CALLS) == [1, 3]
    session.expire_all()
    assert [session.get(OutboxMessage, i).status for i in ids] == [
        OutboxStatus.DONE, OutboxStatus.PENDING, OutboxStatus.DONE]
    [warning] = {r.getMessage() for r in caplog.records if "left pending" in r.getMessage()}
    assert f"outbox messages {ids[1]}:" in warning
    monkeypatch.setattr(outbox, "_enqueue_call", enqueue_call)  # Redis is back
    assert outbox.relay_pending(older_than_seconds=0) == 1
    assert sorted(kwargs["n"] for kwargs, _statuses in CALLS) == [1, 2, 3]


def test_commit_keeps_the_objects_asked_for_and_expires_the_rest(app, session):
    kept, other = add_community("c1"), add_community("c2")
    session.commit()
    kept.name, other.name = "留下", "过期"

    outbox.commit(keep=[kept])

    assert "name" not in inspect(kept).expired_attributes and kept.name == "留下"
    assert "name" in inspect(other).expired_attributes  # read again when next used
    outbox.commit()
    assert "name" in inspect(kept).expired_attributes  # a plain commit expires everything


def test_a_held_commit_writes_and_runs_nothing_until_the_holder_commits(app, session):
    with outbox.commit_held():
        add_community()
        outbox.add_job("tests.record", n=1)
        outbox.commit()  # e.g. a service called by an idempotent request: only flushed
        assert CALLS == []
        with db.engine.connect() as other:  # another connection sees nothing committed
            assert other.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    outbox.commit()

    assert CALLS == [({"n": 1}, ["pending"])]
    assert only_message().status == OutboxStatus.DONE


def test_failing_job_leaves_the_row_failed_with_its_error(app, session):
    add_community()
    outbox.add_job("tests.explode", reason="printer on fire")

    outbox.commit()  # no exception reaches the caller

    row = only_message()
    assert row.status == OutboxStatus.FAILED
    assert row.attempts == 1
    assert row.last_error == "RuntimeError: printer on fire"
    assert row.done_at is None
    assert session.scalar(select(func.count()).select_from(Community)) == 1


def test_long_errors_are_truncated(app, session):
    outbox.add_job("tests.explode", reason="x" * 10_000)
    outbox.commit()

    assert len(only_message().last_error) == 2000


def test_running_the_wrapper_twice_runs_the_job_once(app, session):
    message = outbox.add_job("tests.record", n=1)
    outbox.commit()

    run_outbox_message(message.id)

    assert len(CALLS) == 1
    assert only_message().attempts == 1


def _isolation_of_each_statement(message_id: int) -> list[tuple[str, str | None]]:
    """Run the row's job; each statement it ran (the outbox's UPDATEs by name) with the
    isolation level it ran at."""
    seen: list[tuple[str, str | None]] = []

    def note(conn, _cursor, statement, *_args):
        what = statement.split()[0].upper()
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            what = "outbox attempt" if "attempts" in statement else "outbox done"
        seen.append((what, conn.get_execution_options().get("isolation_level")))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        run_outbox_message(message_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    return seen


def pending_row(job_name: str = "tests.record", **args) -> int:
    """The id of a pending row committed without running its job (no transaction left open)."""
    message = OutboxMessage(job=job_name, args=args, queue="default")
    db.session.add(message)
    db.session.flush()
    message_id = message.id
    db.session.commit()
    return message_id


@job("tests.write_community")
def write_community(code: str, flush: bool) -> None:
    """Add a community and, unless `flush`, leave it pending (no commit either way)."""
    db.session.add(Community(code=code, name="测试社区", timezone="Asia/Shanghai"))
    if flush:
        db.session.flush()


def communities_seen_by_another_connection() -> list[str]:
    with db.engine.connect() as other:
        return list(other.scalars(select(Community.code)))


def test_a_jobs_attempt_and_done_are_each_one_statement_committed_alone(app, session):
    message_id = pending_row("tests.record", n=1)

    seen = _isolation_of_each_statement(message_id)

    # autocommit: one round trip each, where BEGIN, the UPDATE and COMMIT were three; the job's
    # own statements in an ordinary transaction
    assert seen[0] == ("outbox attempt", "AUTOCOMMIT")
    assert ("SELECT", None) in seen[1:-1]  # tests.record reads the outbox
    assert [level for _what, level in seen[1:]] == [None] * (len(seen) - 1)
    assert seen[-1][0] == "outbox done"  # the read left a transaction open: done commits it
    row = only_message()
    assert (row.status, row.attempts) == (OutboxStatus.DONE, 1) and row.done_at is not None


def test_a_job_that_leaves_no_transaction_has_its_done_mark_committed_alone(app, session):
    message_id = pending_row("ping", value="alone")

    assert _isolation_of_each_statement(message_id) == [("outbox attempt", "AUTOCOMMIT"),
                                                         ("outbox done", "AUTOCOMMIT")]
    assert redis_store.client.lrange(PING_KEY, 0, -1) == [b"alone"]
    assert only_message().status == OutboxStatus.DONE


@pytest.mark.parametrize("flush", [True, False])
def test_a_jobs_unfinished_writes_are_committed_together_with_its_done_mark(app, session,
                                                                            flush):
    # a job that added a row and did not commit (flushed or not): its done mark is written in
    # the same transaction as that row, never in autocommit beside it
    message_id = pending_row("tests.write_community", code="late", flush=flush)

    seen = _isolation_of_each_statement(message_id)

    assert seen[0] == ("outbox attempt", "AUTOCOMMIT")
    assert [level for _what, level in seen[1:]] == [None] * (len(seen) - 1)
    assert sorted(what for what, _level in seen[1:]) == ["INSERT", "outbox done"]
    assert communities_seen_by_another_connection() == ["late"]
    assert only_message().status == OutboxStatus.DONE


def test_a_failing_job_still_counts_its_attempt_committed_alone(app, session):
    message_id = pending_row("tests.explode")

    with pytest.raises(RuntimeError, match="boom"):
        _isolation_of_each_statement(message_id)

    db.session.rollback()
    row = only_message()
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 1)
    with db.engine.connect() as other:  # committed, not just visible to this session
        assert other.scalar(select(OutboxMessage.attempts)) == 1


def test_inside_an_open_transaction_the_bookkeeping_commits_with_it(app, session):
    message_id = pending_row(n=1)
    add_community()  # the caller's own work, not committed yet (the relay's, in-process)
    session.flush()

    seen = _isolation_of_each_statement(message_id)

    assert [level for _what, level in seen] == [None] * len(seen)  # in the caller's transaction
    assert len(CALLS) == 1 and only_message().status == OutboxStatus.DONE
    assert communities_seen_by_another_connection() == ["c1"]  # committed with the bookkeeping


def test_wrapper_ignores_a_missing_row(app, session):
    run_outbox_message(12345)

    assert CALLS == []


def test_job_added_by_a_job_runs_too(app, session):
    @job("tests.chain")
    def chain() -> None:
        outbox.add_job("tests.record", step=2)
        outbox.commit()

    outbox.add_job("tests.chain")
    outbox.commit()

    assert [call[0] for call in CALLS] == [{"step": 2}]
    statuses = session.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)).all()
    assert statuses == [OutboxStatus.DONE, OutboxStatus.DONE]


@pytest.mark.parametrize(("name", "kwargs", "error"), [
    ("tests.nope", {}, UnknownJob),
    ("tests.record", {"queue": "asap"}, ValueError),
    ("tests.record", {"when": utcnow()}, ValueError),
    ("tests.record", {"ratio": float("nan")}, ValueError),
])
def test_bad_jobs_are_refused_and_nothing_is_added(app, session, name, kwargs, error):
    with pytest.raises(error):
        outbox.add_job(name, **kwargs)

    outbox.commit()
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


# --- Redis unavailable at commit; the relay ------------------------------------------------------


def test_job_survives_redis_being_down_at_commit(app, session, redis_down, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("app"), "propagate", True)
    add_community()
    outbox.add_job("tests.record", community_code="c1")

    outbox.commit()  # the caller gets no error

    assert "left pending for the relay" in caplog.text
    assert session.scalar(select(func.count()).select_from(Community)) == 1
    row = only_message()
    assert (row.status, row.enqueued_at, row.attempts) == (OutboxStatus.PENDING, None, 0)
    assert outbox.relay_pending(older_than_seconds=0) == 0  # still down: nothing, no error
    assert CALLS == []

    redis_down()  # Redis comes back

    assert outbox.relay_pending(older_than_seconds=0) == 1
    assert len(CALLS) == 1
    assert only_message().status == OutboxStatus.DONE
    assert outbox.relay_pending(older_than_seconds=0) == 0


def test_relay_leaves_recent_rows_alone(app, session, redis_down):
    outbox.add_job("tests.record")
    outbox.commit()
    redis_down()

    assert outbox.relay_pending() == 0  # created just now: commit() may still be enqueueing it
    assert CALLS == []


def test_relay_skips_rows_whose_job_is_still_queued(app, session, async_queues):
    message = outbox.add_job("tests.record")
    outbox.commit()
    # The enqueue after the commit writes nothing more: the row is pending, its job queued.
    assert (only_message().status, only_message().enqueued_at) == (OutboxStatus.PENDING, None)

    assert outbox.relay_pending(older_than_seconds=0) == 0
    assert async_queues["default"].job_ids == [f"outbox-{message.id}"]


def test_relay_re_enqueues_rows_whose_job_vanished(app, session, async_queues):
    message = outbox.add_job("tests.record")
    outbox.commit()
    redis_store.client.flushdb()  # e.g. Redis restarted without persistence

    assert outbox.relay_pending(older_than_seconds=0) == 1
    assert async_queues["default"].job_ids == [f"outbox-{message.id}"]


def test_relay_respects_its_limit_oldest_first(app, session, redis_down):
    for n in range(3):
        outbox.add_job("tests.record", n=n)
    outbox.commit()
    redis_down()

    assert outbox.relay_pending(older_than_seconds=0, limit=2) == 2
    assert [call[0] for call in CALLS] == [{"n": 0}, {"n": 1}]


def test_outbox_relay_command_prints_its_count(app, session, runner, redis_down):
    outbox.add_job("tests.record")
    outbox.commit()
    redis_down()

    result = runner.invoke(args=["outbox-relay", "--once", "--older-than", "0"])

    assert result.exit_code == 0, result.output
    assert "re-enqueued 1 outbox message(s)" in result.output
    assert only_message().status == OutboxStatus.DONE


# --- RQ retries, the failed registry, requeue ----------------------------------------------------


def test_rq_retries_keep_the_row_pending_until_the_last_one(app, session, async_queues,
                                                             monkeypatch):
    monkeypatch.setitem(app.config, "OUTBOX_RETRY_INTERVALS", [0])
    monkeypatch.setitem(app.config, "OUTBOX_RETRY_MAX", 2)
    FLAKY["failures_left"] = 5
    message = outbox.add_job("tests.flaky")
    outbox.commit()

    work_in_process(async_queues)

    assert [statuses for _, statuses in CALLS] == [["pending"]] * 3
    row = only_message()
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 3)
    assert row.last_error == "ConnectionResetError: upstream hung up"
    registry = FailedJobRegistry("default", connection=redis_store.client)
    assert registry.get_job_ids() == [f"outbox-{message.id}"]


def test_rq_retry_that_succeeds_marks_the_row_done(app, session, async_queues, monkeypatch):
    monkeypatch.setitem(app.config, "OUTBOX_RETRY_INTERVALS", [0])
    FLAKY["failures_left"] = 1
    outbox.add_job("tests.flaky")
    outbox.commit()

    work_in_process(async_queues)

    row = only_message()
    assert (row.status, row.attempts) == (OutboxStatus.DONE, 2)
    assert row.last_error == "ConnectionResetError: upstream hung up"


def test_dispatch_uses_the_configured_retry_policy(app, session, async_queues):
    message = outbox.add_job("tests.record", queue="high")
    outbox.commit()

    rq_job = async_queues["high"].fetch_job(f"outbox-{message.id}")
    assert rq_job.retries_left == 5
    assert rq_job.retry_intervals == [5, 30, 120, 600, 1800]


def test_requeue_failed_runs_the_job_again(app, session):
    FLAKY["failures_left"] = 1
    message = outbox.add_job("tests.flaky")
    outbox.commit()
    assert only_message().status == OutboxStatus.FAILED
    registry = FailedJobRegistry("default", connection=redis_store.client)
    assert registry.get_job_ids() == [f"outbox-{message.id}"]

    outbox.requeue_failed(message.id)

    row = only_message()
    assert (row.status, row.attempts) == (OutboxStatus.DONE, 2)
    assert registry.get_job_ids() == []


def test_requeue_failed_refuses_rows_that_have_not_failed(app, session):
    message = outbox.add_job("tests.record")
    outbox.commit()

    with pytest.raises(InvalidTransition):
        outbox.requeue_failed(message.id)
    with pytest.raises(NotFound):
        outbox.requeue_failed(message.id + 1)
    assert len(CALLS) == 1


# --- the periodic relay tick ---------------------------------------------------------------------


def lost_row(redis_down) -> OutboxMessage:
    """A pending row committed 5 minutes ago whose job never reached Redis (now down)."""
    outbox.add_job("tests.record")
    outbox.commit()
    redis_down()
    row = only_message()
    row.created_at = utcnow() - timedelta(minutes=5)
    return row


def test_relay_tick_relays_lost_rows_and_books_the_next_tick(app, session, redis_down):
    lost_row(redis_down)
    session.commit()

    assert relay_tick(interval=30) == 1

    assert only_message().status == OutboxStatus.DONE
    queue = Queue("low", connection=redis_store.client)  # periodic ticks run on "low"
    assert len(ScheduledJobRegistry(queue=queue).get_job_ids()) == 1


# --- a real worker process -----------------------------------------------------------------------


def run_worker(app) -> subprocess.CompletedProcess:
    """Run `python -m workers --burst` against this test run's database and Redis."""
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               REDIS_URL=app.config["REDIS_URL"])
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "workers", "--burst"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.redis
@pytest.mark.worker
def test_worker_process_runs_an_enqueued_job(app, session, async_queues):
    outbox.add_job("ping", value="from-the-worker")
    outbox.commit()
    assert only_message().status == OutboxStatus.PENDING
    session.close()

    result = run_worker(app)

    assert result.returncode == 0, result.stderr
    row = only_message()
    assert (row.status, row.attempts) == (OutboxStatus.DONE, 1)
    assert redis_store.client.lrange(PING_KEY, 0, -1) == [b"from-the-worker"]


@pytest.mark.redis
@pytest.mark.worker
def test_worker_process_relays_a_row_lost_while_redis_was_down(app, session, redis_down):
    outbox.add_job("ping", value="relayed")
    outbox.commit()
    redis_down()
    row = only_message()
    row.created_at = utcnow() - timedelta(minutes=5)
    session.commit()
    session.close()

    result = run_worker(app)

    assert result.returncode == 0, result.stderr
    assert only_message().status == OutboxStatus.DONE
    assert redis_store.client.lrange(PING_KEY, 0, -1) == [b"relayed"]


def test_relay_gives_up_on_a_row_that_keeps_dying(app, session, redis_down):
    row = lost_row(redis_down)
    row.status, row.attempts, row.last_error = OutboxStatus.PENDING, 40, "work-horse killed"
    session.commit()
    assert outbox.relay_pending(older_than_seconds=0) == 0
    row = only_message()
    assert row.status == OutboxStatus.FAILED and "gave up after 40 attempts" in row.last_error
