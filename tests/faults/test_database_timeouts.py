"""Waits on PostgreSQL are bounded: a request stuck behind a lock or on a runaway statement is
answered 503 `database_busy` once DB_LOCK_TIMEOUT_MS / DB_STATEMENT_TIMEOUT_MS pass - it does not
hold its thread, its connection and its turn for as long as the lock is held - and writes
nothing; the retry goes through once the lock is gone."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import IdempotencyRecord, OutboxMessage
from app.models.reports import Report, ReportEvent
from tests import factories as f
from tests.faults.conftest import count, report_body, wait_until, waiting_on_lock
from tests.faults.test_database_disconnect import in_thread

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

# the statement's bound well above the lock's and the test's patience: the lock's bound answers
LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS = 400, 20_000


@pytest.fixture
def app_overrides() -> dict:
    return {"DB_LOCK_TIMEOUT_MS": LOCK_TIMEOUT_MS, "DB_STATEMENT_TIMEOUT_MS": STATEMENT_TIMEOUT_MS}


def assert_busy(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "database_busy" and error["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert b"Traceback" not in response.data and b"psycopg" not in response.data


def test_the_bounds_are_set_on_every_connection_of_the_app(faults_app):
    assert db.session.execute(text("SHOW lock_timeout")).scalar() == f"{LOCK_TIMEOUT_MS}ms"
    assert db.session.execute(text("SHOW statement_timeout")).scalar() == "20s"


def test_a_submission_stuck_behind_a_lock_is_answered_busy_while_the_lock_is_held(
        faults_app, place, pg):
    client = faults_app.test_client()
    resident = f.headers(f.resident(place["comm"]))
    resident["Idempotency-Key"] = "lamp-7-1"
    body = report_body(place)
    with pg.connect() as locker:
        locker.execute(text("LOCK TABLE outbox IN EXCLUSIVE MODE"))  # reads pass, inserts wait
        outcome = in_thread(lambda: client.post("/api/v1/reports", headers=resident, json=body))
        outcome["thread"].join(timeout=8)
        # answered with the lock still held: without the bound it would wait for ever
        assert not outcome["thread"].is_alive(), "the request is still waiting on the lock"
        assert not waiting_on_lock(pg, "WITH r0 AS%INSERT INTO outbox")
        locker.rollback()

    assert "error" not in outcome, outcome.get("error")
    assert_busy(outcome["response"])
    assert count(Report) == count(ReportEvent) == count(OutboxMessage) == 0
    assert count(IdempotencyRecord) == 0  # the key is free again for the retry

    retry = client.post("/api/v1/reports", headers=resident, json=body)
    assert retry.status_code == 201, retry.get_json()
    assert count(Report) == count(OutboxMessage) == 1


def test_a_runaway_statement_is_cancelled_and_answered_busy(app_of_its_own):
    slow = app_of_its_own(DB_STATEMENT_TIMEOUT_MS=1500)
    slow.add_url_rule("/_test/slow", "slow", lambda: str(
        db.session.execute(text("SELECT pg_sleep(30)")).scalar()))
    outcome = in_thread(lambda: slow.test_client().get("/_test/slow"))
    response = wait_until(lambda: outcome.get("response"), timeout=10)
    assert_busy(response)
    with slow.app_context():  # the pool recovers: the connection serves the next request
        assert db.session.execute(text("SELECT 1")).scalar() == 1
