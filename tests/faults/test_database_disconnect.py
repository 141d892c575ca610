"""PostgreSQL connections dropped mid-request: a clean 503, nothing half-written, the pool recovers.

The test's own connection holds a lock the report submission needs half-way through its
transaction (the outbox table), waits until the request's backend is blocked on it, then
terminates every other backend of the database, as a failover or a restart would.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from app.models import IdempotencyRecord, OutboxMessage
from app.models.reports import Report, ReportEvent
from tests import factories as f
from tests.faults.conftest import (
    count,
    free_port,
    fresh_view,
    report_body,
    wait_until,
    waiting_on_lock,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

TERMINATE_OTHERS = text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def assert_database_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "database_unavailable" and error["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert b"Traceback" not in response.data and b"psycopg" not in response.data


def in_thread(call) -> dict:
    """Run `call` in a thread; the returned dict gets its "response" (or "error")."""
    outcome: dict = {}

    def run():
        try:
            outcome["response"] = call()
        except Exception as exc:  # noqa: BLE001 - reported to the test below
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def test_connection_dropped_mid_submission_is_503_with_nothing_written(faults_app, place, pg):
    client = faults_app.test_client()
    resident = f.headers(f.resident(place["comm"]))
    resident["Idempotency-Key"] = "lamp-3-1"
    body = report_body(place)
    with pg.connect() as locker:
        locker.execute(text("LOCK TABLE outbox IN EXCLUSIVE MODE"))  # reads pass, inserts wait
        outcome = in_thread(lambda: client.post("/api/v1/reports", headers=resident, json=body))
        # the report's rows are written by one statement (insert_chain), its routing job last
        wait_until(lambda: waiting_on_lock(pg, "WITH r0 AS%INSERT INTO outbox"), timeout=10)
        assert count(Report) == 0  # the report row is written, uncommitted, in that transaction
        assert locker.execute(TERMINATE_OTHERS).scalar() >= 1
        locker.rollback()
    outcome["thread"].join(timeout=10)

    assert "error" not in outcome, outcome.get("error")
    assert_database_unavailable(outcome["response"])
    assert count(Report) == count(ReportEvent) == count(OutboxMessage) == 0
    assert count(IdempotencyRecord) == 0  # the key is free again for the retry

    retry = client.post("/api/v1/reports", headers=resident, json=body)
    assert retry.status_code == 201, retry.get_json()
    assert count(Report) == count(OutboxMessage) == 1


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
    assert_database_unavailable(r)
