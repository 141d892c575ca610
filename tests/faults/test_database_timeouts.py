"""Waits on PostgreSQL are bounded: a request stuck behind a lock or on a runaway statement is
answered 503 `database_busy` once DB_LOCK_TIMEOUT_MS / DB_STATEMENT_TIMEOUT_MS pass - it does not
hold its thread, its connection and its turn for as long as the lock is held - and writes
nothing; the retry goes through once the lock is gone."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.faults.conftest import (
    assert_503,
    assert_503_then_the_retry_goes_through,
    in_thread,
    submission_behind_a_lock,
    wait_until,
    waiting_on_lock,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

# the statement's bound well above the lock's and the test's patience: the lock's bound answers
LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS = 400, 20_000


@pytest.fixture
def app_overrides() -> dict:
    return {"DB_LOCK_TIMEOUT_MS": LOCK_TIMEOUT_MS, "DB_STATEMENT_TIMEOUT_MS": STATEMENT_TIMEOUT_MS}


def test_the_bounds_are_set_on_the_apps_connections(faults_app):
    assert db.session.execute(text("SHOW lock_timeout")).scalar() == f"{LOCK_TIMEOUT_MS}ms"
    assert db.session.execute(text("SHOW statement_timeout")).scalar() == "20s"


def test_a_submission_stuck_behind_a_lock_is_answered_busy_while_the_lock_is_held(
        faults_app, place, pg):
    with submission_behind_a_lock(faults_app, place, pg, "lamp-7-1") as submission:
        submission.outcome["thread"].join(timeout=8)
        # answered with the lock still held: without the bound it would wait for ever
        assert not submission.outcome["thread"].is_alive(), "still waiting on the lock"
        assert not waiting_on_lock(pg, "WITH r0 AS%INSERT INTO outbox")

    assert_503_then_the_retry_goes_through(submission, "database_busy")


def test_a_runaway_statement_is_cancelled_and_answered_busy(app_of_its_own):
    slow = app_of_its_own(DB_STATEMENT_TIMEOUT_MS=1500)
    slow.add_url_rule("/_test/slow", "slow", lambda: str(
        db.session.execute(text("SELECT pg_sleep(30)")).scalar()))
    outcome = in_thread(lambda: slow.test_client().get("/_test/slow"))
    response = wait_until(lambda: outcome.get("response"), timeout=10)
    assert_503(response, "database_busy")
    with slow.app_context():  # the pool recovers: the connection serves the next request
        assert db.session.execute(text("SELECT 1")).scalar() == 1
