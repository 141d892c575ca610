"""The outbox: jobs written in the business transaction, enqueued after commit, relayed if lost.

    outbox.add_job("ping", value="hello")   # in the same transaction as the business rows
    outbox.commit()                          # instead of db.session.commit()
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq import Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from app.errors import InvalidTransition, NotFound
from app.extensions import QUEUE_NAMES, db, redis_store
from app.inserts import NewId, insert_chain, insert_new
from app.models import OutboxMessage, OutboxStatus, utcnow
from workers.jobs import get_job

log = logging.getLogger(__name__)

RUNNER = "workers.outbox.run_outbox_message"
SESSION_KEY = "linli_outbox_added"
HELD_KEY = "linli_commit_held"
HELD_FLUSHED = "linli_commit_held_flushed"  # commit() flushed work while the commit was held
HELD_LOST = "linli_commit_held_lost"  # ... and that work was rolled back before the commit
DEFAULT_RETRY_INTERVALS = (5, 30, 120, 600, 1800)
LIVE_STATUSES = frozenset(
    {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
)


def add_job(job: str, *, queue: str = "default", **args) -> OutboxMessage:
    """Write an outbox row running registered job `job` with `args`, in the caller's
    transaction; `commit()` enqueues it.

    A plain INSERT (app.inserts), not an object of the session: the row is noted with the
    transaction (or savepoint) it was written in, and forgotten if that one rolls back.
    """
    message = new_job(job, queue=queue, **args)
    insert_new(message)
    track(message)
    return message


def new_job(job: str, *, queue: str = "default", **args) -> OutboxMessage:
    """An outbox row for the caller to write with others (app.inserts.insert_chain; an argument
    may be a NewId of a row written before it), then `track`."""
    _check_job(job, queue, args)
    return OutboxMessage(job=job, queue=queue, args=args, status=OutboxStatus.PENDING,
                         attempts=0)


def write(*objs) -> None:
    """Write new rows by one app.inserts.insert_chain - business rows and outbox rows
    (`new_job`) that may refer to them - and track the outbox rows."""
    insert_chain(*objs)
    for obj in objs:
        if isinstance(obj, OutboxMessage):
            track(obj)


def track(message: OutboxMessage) -> None:
    """Note a written outbox row with the transaction (or savepoint) it was written in:
    `commit()` enqueues it, a rollback of that transaction forgets it."""
    session = db.session()
    written_in = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(SESSION_KEY, []).append((message, written_in))


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    """Drop the rows written in a transaction or savepoint that rolled back (or inside it).

    A rolled-back subtransaction (a failed flush) undoes its savepoint or the whole transaction
    in the database, so the rows are dropped up to that boundary. When the whole transaction
    rolls back while the commit is held, work that `commit()` only flushed is gone: noted, and
    refused by the holder's `commit()`.
    """
    while rolled_back.parent is not None and not rolled_back.nested:
        rolled_back = rolled_back.parent
    if rolled_back.parent is None and session.info.get(HELD_KEY) and \
            session.info.get(HELD_FLUSHED):
        session.info[HELD_LOST] = True
    added = session.info.get(SESSION_KEY)
    if added:
        session.info[SESSION_KEY] = [(message, tx) for message, tx in added
                                     if not _inside(tx, rolled_back)]


@event.listens_for(Session, "after_commit")
def _held_work_committed(session: Session) -> None:
    """Whatever commit() flushed while held is committed now (by whoever committed)."""
    session.info.pop(HELD_FLUSHED, None)


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    """Whether `transaction` is `outer` or a savepoint within it."""
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _check_job(job: str, queue: str, args: dict) -> None:
    """Refuse unknown jobs, unknown queues and arguments JSON cannot carry."""
    get_job(job)
    if queue not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {queue!r}; use one of {', '.join(QUEUE_NAMES)}")
    try:  # a NewId may stand for a whole argument (insert_chain puts the id there), no deeper
        json.dumps({k: 0 if isinstance(v, NewId) else v for k, v in args.items()},
                   allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"arguments of job {job!r} must be plain JSON: {exc}") from exc


def commit(*, keep: Iterable[object] = ()) -> None:
    """Commit the session, then enqueue the outbox rows added since the last commit.

    Inside `commit_held()` it only flushes: whoever holds the commit commits once, for all.
    `keep`: objects of the session left as they are instead of expired by the commit - a
    service answering with what it just wrote dumps them without reading them back; every
    other object expires as usual.
    """
    db.session.flush()
    info = db.session.info
    if info.get(HELD_KEY):
        info[HELD_FLUSHED] = True
        return
    if info.pop(HELD_LOST, False):
        db.session.rollback()
        raise HeldWorkLost("work committed through outbox.commit() while the commit was held "
                           "was rolled back before the holder committed")
    added = info.pop(SESSION_KEY, [])
    fresh = [(message.id, message.queue, message.job) for message, _ in added]
    session, kept = db.session(), {id(obj) for obj in keep}
    expiring, session.expire_on_commit = session.expire_on_commit, not kept
    try:
        session.commit()
    finally:
        session.expire_on_commit = expiring
    if kept and expiring:
        for obj in list(session.identity_map.values()):
            if id(obj) not in kept:
                session.expire(obj)
    if fresh:
        _put_on_queue(*fresh)


class HeldWorkLost(RuntimeError):
    """A rollback discarded work a service had committed while the commit was held."""


@contextmanager
def commit_held() -> Iterator[None]:
    """Within, `commit()` flushes without committing; the caller then commits with `commit()`.

    An idempotent request runs its view in this, then stores its answer and commits once: the
    work, its outbox rows and the answer in one transaction.
    """
    info = db.session().info
    held, info[HELD_KEY] = info.get(HELD_KEY, False), True
    if not held:
        info.pop(HELD_FLUSHED, None)
        info.pop(HELD_LOST, None)
    try:
        yield
    finally:
        info[HELD_KEY] = held


def dispatch(message_id: int) -> bool:
    """Enqueue the RQ job of a pending row and commit its enqueued_at; False if not enqueued."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.status != OutboxStatus.PENDING:
        return False
    return _enqueue(message_id, message.queue, message.job)


def _put_on_queue(*messages: tuple[int, str, str]) -> bool:
    """Put pending rows' RQ jobs on their queues - (id, queue, job) each - in one Redis round
    trip (MULTI/EXEC); False (logged) when Redis is unavailable: then none is queued and the
    relay enqueues them later (in-process, each job runs in turn and only the ones Redis failed
    for are left). (A lost EXEC reply that redis-py retries may queue them twice:
    harmless, a row's job runs once.)

    Right after the business commit nothing more is written: the rows stay pending until their
    jobs mark them done, and the relay only looks at rows older than its interval - a row whose
    job is still queued or running is left alone (a transaction less per request).
    """
    if not redis_store.jobs_async:  # in-process: each job runs right here, on this session
        return all([_put_on_queue_now(message) for message in messages])
    try:
        with redis_store.client.pipeline() as pipe:  # RQ writes each job into it (MULTI/EXEC)
            for message in messages:
                _enqueue_call(*message, pipeline=pipe)
            pipe.execute()
    except RedisError as exc:
        _left_pending(messages, exc)
        return False
    return True


def _put_on_queue_now(message: tuple[int, str, str]) -> bool:
    """In-process: run one row's job now; False (logged) when RQ's bookkeeping in Redis fails,
    then that row - and only it - stays pending for the relay."""
    try:
        _enqueue_call(*message, pipeline=None)
    except RedisError as exc:
        _left_pending((message,), exc)
        return False
    return True


def _left_pending(messages, exc: RedisError) -> None:
    log.warning("outbox messages %s: enqueue failed (%s); left pending for the relay",
                ", ".join(str(message[0]) for message in messages), exc)


def _enqueue_call(message_id: int, queue: str, job: str, *, pipeline) -> None:
    """RQ's job of one outbox row, into `pipeline` (None: enqueued - or run, in-process - now)."""
    redis_store.queue(queue).enqueue_call(
        RUNNER, args=(message_id,), job_id=job_id(message_id), retry=retry_policy(),
        description=f"outbox {message_id}: {job}", pipeline=pipeline,
    )


def _enqueue(message_id: int, queue: str, job: str) -> bool:
    """Enqueue a row again (relay, requeue) and commit its enqueued_at: when it was last
    handed to RQ by the relay, which then leaves it alone for an interval."""
    enqueued_at = utcnow()
    if not _put_on_queue((message_id, queue, job)):
        return False
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(enqueued_at=enqueued_at)
    )
    db.session.commit()
    return True


def job_id(message_id: int) -> str:
    """The RQ job id of an outbox row."""
    return f"outbox-{message_id}"


def retry_policy() -> Retry | None:
    """RQ's retry policy for outbox jobs; none in-process, where RQ never retries."""
    if not redis_store.jobs_async:
        return None
    intervals = list(current_app.config.get("OUTBOX_RETRY_INTERVALS", DEFAULT_RETRY_INTERVALS))
    return Retry(max=current_app.config.get("OUTBOX_RETRY_MAX", len(intervals)),
                 interval=intervals)


def relay_pending(older_than_seconds: float = 30, limit: int = 500) -> int:
    """Re-enqueue pending rows whose RQ job is gone from Redis; return how many were enqueued."""
    message_ids = _stale_pending_ids(older_than_seconds, limit)
    try:
        lost = _lost_ids(message_ids)
    except RedisError as exc:
        log.warning("outbox relay: Redis unavailable (%s); will try again", exc)
        return 0
    return sum(dispatch(message_id) for message_id in lost if not _give_up(message_id))


def _give_up(message_id: int) -> bool:
    """Mark a row failed once it has used far more attempts than its retry budget.

    A job that kills its worker every time never reaches RQ's failed registry; without this the
    relay would start it again every 30 seconds for ever.
    """
    message = db.session.get(OutboxMessage, message_id)
    budget = len(current_app.config.get("OUTBOX_RETRY_INTERVALS", DEFAULT_RETRY_INTERVALS)) + 1
    if message is None or message.attempts < budget * 2:
        return False
    message.status = OutboxStatus.FAILED
    message.last_error = (f"gave up after {message.attempts} attempts; "
                          f"last error: {message.last_error or 'none recorded'}")[:2000]
    db.session.commit()
    log.error("outbox message %s (%s) gave up after %s attempts", message_id, message.job,
              message.attempts)
    return True


def _stale_pending_ids(older_than_seconds: float, limit: int) -> list[int]:
    """Pending rows neither created nor enqueued in the last `older_than_seconds`, oldest first."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    last_touched = func.coalesce(OutboxMessage.enqueued_at, OutboxMessage.created_at)
    query = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.PENDING, last_touched <= cutoff)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return list(db.session.scalars(query))


def _lost_ids(message_ids: Sequence[int]) -> list[int]:
    """The rows whose RQ job is no longer queued, running, scheduled or deferred."""
    if not message_ids:
        return []
    jobs = Job.fetch_many([job_id(i) for i in message_ids], connection=redis_store.client)
    return [
        message_id for message_id, rq_job in zip(message_ids, jobs, strict=True)
        if rq_job is None or rq_job.get_status(refresh=False) not in LIVE_STATUSES
    ]


def requeue_failed(message_id: int) -> OutboxMessage:
    """Put a failed row back to pending and enqueue it afresh, with a full retry budget."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFound("找不到该后台任务")
    if message.status != OutboxStatus.FAILED:
        raise InvalidTransition(details={"status": str(message.status)})
    message.status = OutboxStatus.PENDING
    db.session.commit()
    _forget_failed_job(message.queue, message_id)
    dispatch(message_id)
    return message


def _forget_failed_job(queue: str, message_id: int) -> None:
    """Take the row's RQ job out of the failed registry; dispatch enqueues it again."""
    try:
        FailedJobRegistry(queue, connection=redis_store.client).remove(job_id(message_id))
    except RedisError as exc:
        log.warning("outbox message %s: could not clear its failed RQ job (%s)", message_id, exc)


def list_failed(*, cursor: str | None, limit: int) -> tuple[list[OutboxMessage], str | None]:
    """Failed rows, newest first, each marked with whether RQ's failed registry holds its job."""
    from app.pagination import keyset_page

    stmt = select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.FAILED)
    items, next_cursor = keyset_page(stmt, columns=[OutboxMessage.created_at, OutboxMessage.id],
                                     cursor=cursor, limit=limit)
    try:
        in_registry = {
            queue: set(FailedJobRegistry(queue, connection=redis_store.client).get_job_ids())
            for queue in {m.queue for m in items}
        }
    except RedisError:
        in_registry = {}
    for message in items:
        message.in_failed_registry = job_id(message.id) in in_registry.get(message.queue, set())
    return items, next_cursor
