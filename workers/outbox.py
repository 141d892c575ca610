"""RQ jobs of the outbox: run one outbox message, and the periodic relay tick."""

from __future__ import annotations

import logging

from rq import get_current_job
from sqlalchemy import Row, update
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import OutboxMessage, OutboxStatus, utcnow
from app.services.notifications import retry_job_on_deferred_sends
from app.services.outbox import relay_pending
from workers.jobs import app_context, get_job, job

log = logging.getLogger("app.workers.outbox")

ERROR_LIMIT = 2000
RELAY_INTERVAL_SECONDS = 30


def run_outbox_message(message_id: int) -> None:
    """Run one outbox row's job: done rows are skipped; failures are recorded, then re-raised."""
    with app_context():
        started = _start_attempt(message_id)
        if started is None:
            return
        name, args = started
        try:
            with retry_job_on_deferred_sends():
                get_job(name)(**args)
        except Exception as exc:
            db.session.rollback()
            _record_failure(message_id, exc)
            raise
        _mark_done(message_id)


def _start_attempt(message_id: int) -> tuple[str, dict] | None:
    """Count an attempt on the row (committed, so a crash still counts) and return its job and
    arguments; None if there is nothing to run (done, or no such row)."""
    found = _committed_alone(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status != OutboxStatus.DONE)
        .values(attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage.job, OutboxMessage.args))
    if found is None:
        if db.session.get(OutboxMessage, message_id) is None:
            log.warning("outbox message %s does not exist; nothing to run", message_id)
        return None
    return found.job, dict(found.args or {})


def _mark_done(message_id: int) -> None:
    """Mark the row done (after the job's own commits: done never comes before the effect)."""
    _committed_alone(update(OutboxMessage).where(OutboxMessage.id == message_id)
                     .values(status=OutboxStatus.DONE, done_at=utcnow()))


def _committed_alone(statement) -> Row | None:
    """Execute one statement and commit it (its first row, if it returns rows).

    With no transaction open - always so in the worker - it runs in autocommit: one round
    trip, where BEGIN, the statement and COMMIT were three (a job has two such bookkeeping
    statements). Otherwise - in-process a job can start inside a transaction (the relay's), or
    a job may end with work it did not commit (adding an object begins the session's
    transaction too) - it is committed with that work, as before.
    """
    alone = {} if db.session().in_transaction() else {"isolation_level": "AUTOCOMMIT"}
    result = db.session.connection(execution_options=alone).execute(statement)
    row = result.first() if result.returns_rows else None
    db.session.commit()
    return row


def _record_failure(message_id: int, exc: Exception) -> None:
    """Store the error on the row, and mark it failed when RQ will not retry."""
    try:
        message = db.session.get(OutboxMessage, message_id)
        message.last_error = f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]
        if _is_last_attempt():
            message.status = OutboxStatus.FAILED
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("outbox message %s: could not record its failure", message_id)


def _is_last_attempt() -> bool:
    """True unless this runs as an RQ job with retries left."""
    current = get_current_job()
    return current is None or not current.retries_left


@job("outbox_relay")
def outbox_relay(older_than_seconds: float = RELAY_INTERVAL_SECONDS) -> int:
    """Re-enqueue outbox rows whose RQ job was lost."""
    return relay_pending(older_than_seconds=older_than_seconds)


def relay_tick(interval: int = RELAY_INTERVAL_SECONDS) -> int:
    """One tick of the relay schedule (see workers.schedule)."""
    from workers.schedule import periodic_tick

    return periodic_tick("outbox_relay", interval)
