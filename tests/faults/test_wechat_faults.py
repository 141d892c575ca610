"""The mock WeChat API slow or failing: logins fail clearly, notifications are retried with
backoff and sent once WeChat recovers, and nothing else waits on WeChat.

The mock runs on its own port; POST /_mock/faults makes its next calls slow (delay), failing
(HTTP status) or refused with a WeChat errcode (45011 rate limit, -1 system busy).
"""

from __future__ import annotations

import time

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from app.extensions import db, redis_store
from app.models import Notification, OutboxMessage, OutboxStatus, User
from app.services.outbox import job_id
from tests import factories as f
from tests.faults.conftest import all_done, count, outbox_rows, report_body, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

LOGIN = "/sns/jscode2session"
SEND = "/cgi-bin/message/subscribe/send"


FAULTS = [  # (what WeChat does, the answer the mini-program gets)
    ({"delay": 3}, 502, "wechat_unavailable"),        # slower than WX_TIMEOUT_SECONDS (1 s)
    ({"status": 500}, 502, "wechat_unavailable"),
    ({"errcode": -1}, 502, "wechat_unavailable"),     # "system busy"
    ({"errcode": 45011}, 429, "wx_rate_limited"),
]


def test_login_fails_clearly_and_quickly_then_works_once_wechat_recovers(faults_app,
                                                                         wechat_faults):
    client = faults_app.test_client()
    for fault, status, code in FAULTS:
        wechat_faults.set(paths=[LOGIN], **fault)
        started = time.monotonic()
        r = client.post("/api/v1/auth/wx-login", json={"code": "faulty-day"})
        assert time.monotonic() - started < 2.5, fault  # the client's timeout, not the delay
        assert r.status_code == status, (fault, r.get_json())
        assert r.get_json()["error"]["code"] == code and r.get_json()["error"]["message"]
        if status == 429:
            assert int(r.headers["Retry-After"]) >= 1
        assert count(User) == 0

    wechat_faults.clear()
    r = client.post("/api/v1/auth/wx-login", json={"code": "faulty-day"})
    assert r.status_code == 200, r.get_json()  # a refused call did not use the code up


def row_of(message_id: int) -> OutboxMessage:
    """An outbox row as the database has it now."""
    [row] = [row for row in outbox_rows() if row.id == message_id]
    return row


def attempts_of(message_id: int) -> int:
    return row_of(message_id).attempts


def failed_attempts(message_id: int) -> int:
    """How many attempts of the row have failed, once RQ has scheduled its retry (else 0)."""
    scheduled = ScheduledJobRegistry("default", connection=redis_store.client).get_job_ids()
    return attempts_of(message_id) if job_id(message_id) in scheduled else 0


@pytest.mark.worker
def test_notifications_are_retried_with_backoff_and_sent_once_when_wechat_recovers(
        faults_app, place, wechat_faults, start_worker, worker_env):
    # Waits of 2, 3, 4 s between attempts (production: 5, 30, 120...): long enough for the
    # test to change what WeChat does between two attempts.
    worker_env["OUTBOX_RETRY_INTERVALS"] = "2,3,4,4,4"
    client = faults_app.test_client()
    residents = [f.resident(place["comm"], openid=f"faults-wx-{n}") for n in range(2)]
    # Every send times out (WX_TIMEOUT_SECONDS=1) and is not delivered (the mock then gives up
    # with a 504). A send WeChat delivers after our timeout would be sent again: at least once.
    wechat_faults.set(delay=3, status=504, paths=[SEND])
    first = client.post("/api/v1/reports", headers=f.headers(residents[0]),
                        json=report_body(place))
    assert first.status_code == 201
    worker = start_worker()
    wait_until(lambda: wechat_faults.calls(SEND) >= 1, timeout=30)  # the worker waits on WeChat

    # Nothing else waits: the next resident's report and a login answer at once.
    started = time.monotonic()
    second = client.post("/api/v1/reports", headers=f.headers(residents[1]),
                         json=report_body(place, description="2号楼门口路灯坏了"))
    login = client.post("/api/v1/auth/wx-login", json={"code": "meanwhile"})
    assert time.monotonic() - started < 1.0
    assert second.status_code == 201 and login.status_code == 200

    [notify, *_] = wait_until(lambda: outbox_rows("notify_report_update"), timeout=20)
    failed_at = {1: wait_until(lambda: failed_attempts(notify.id) >= 1 and time.monotonic())}
    row = row_of(notify.id)
    assert row.status == OutboxStatus.PENDING and row.attempts == 1
    assert row.last_error.startswith("SubscribeSendDeferred")
    assert "wechat_unavailable" in row.last_error
    [note] = notes_of(residents[0])  # the in-app notice is there at once
    assert note.wx_status == "retrying"

    for attempt, fault in ((2, {"status": 500}), (3, {"errcode": 45011})):
        wechat_faults.set(paths=[SEND], **fault)
        failed_at[attempt] = wait_until(lambda n=attempt: failed_attempts(notify.id) >= n
                                        and time.monotonic(), timeout=20)
    assert "wx_rate_limited" in row_of(notify.id).last_error
    wechat_faults.clear()

    wait_until(all_done, timeout=40)
    assert attempts_of(notify.id) == 4
    # RQ waited 2 s, then 3 s before the next attempts (less the test's polling), never at once.
    assert failed_at[2] - failed_at[1] >= 1.5 and failed_at[3] - failed_at[2] >= 2.5
    for resident in residents:
        assert len(wechat_faults.messages(resident.openid)) == 1, resident.openid
        [note] = notes_of(resident)
        assert note.wx_status == "sent"
    assert worker.proc.poll() is None


def notes_of(user: User) -> list[Notification]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification).where(
        Notification.user_id == user.id, Notification.kind == "report_update")))
