"""PostgreSQL connections dropped mid-request: a clean 503, nothing half-written, the pool recovers.

The test's own connection holds a lock the report submission needs half-way through its
transaction (the outbox table), waits until the request's backend is blocked on it, then
terminates every other backend of the database, as a failover or a restart would.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.models.reports import Report
from tests import factories as f
from tests.faults.conftest import (
    assert_503,
    assert_503_then_the_retry_goes_through,
    count,
    free_port,
    fresh_view,
    report_body,
    submission_behind_a_lock,
    wait_until,
    waiting_on_lock,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

TERMINATE_OTHERS = text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_connection_dropped_mid_submission_is_503_with_nothing_written(faults_app, place, pg):
    with submission_behind_a_lock(faults_app, place, pg, "lamp-3-1") as submission:
        # the report's rows are written by one statement (insert_chain), its routing job last
        wait_until(lambda: waiting_on_lock(pg, "WITH r0 AS%INSERT INTO outbox"), timeout=10)
        assert count(Report) == 0  # the report row is written, uncommitted, in that transaction
        assert submission.locker.execute(TERMINATE_OTHERS).scalar() >= 1
        submission.locker.rollback()
    submission.outcome["thread"].join(timeout=10)

    assert_503_then_the_retry_goes_through(submission, "database_unavailable")


def test_pool_recovers_when_every_connection_is_dropped_between_requests(faults_app, place, pg):
    client = faults_app.test_client()
    resident, body = f.headers(f.resident(place["comm"])), report_body(place)
    assert client.get("/api/v1/reports/mine", headers=resident).status_code == 200
    with pg.connect() as killer:
        assert killer.execute(TERMINATE_OTHERS).scalar() >= 1  # the app's pooled ones too
    fresh_view()  # the test's own session lost its connection as well

    r = client.post("/api/v1/reports", headers=resident, json=body)
    assert r.status_code == 201, r.get_json()  # pool_pre_ping replaced the dead connections
    assert client.get("/api/v1/reports/mine", headers=resident).status_code == 200


def test_unreachable_database_is_503_not_500(app, wechat_server):
    from app import create_app
    from app.extensions import db

    down = create_app({"SQLALCHEMY_DATABASE_URI":
                       f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                       "REDIS_URL": app.config["REDIS_URL"], "WX_API_BASE": wechat_server})
    with down.app_context():
        r = down.test_client().post("/api/v1/auth/wx-login", json={"code": "db-down"})
        db.engine.dispose()
    assert_503(r, "database_unavailable")
