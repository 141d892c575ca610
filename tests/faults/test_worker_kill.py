"""A worker killed with SIGKILL in the middle of a job: the job is retried, its effect happens once.

Jobs are made to stop mid-way without any test hook in the app: a routing job waits on a row
lock the test holds on the report; a notification job waits on the mock WeChat API, told to
hang on the next subscribe message. The work-horse of a `--fork` worker, or the whole worker
(the default runs jobs in its own process), is then killed by pid.
"""

from __future__ import annotations

import time

import pytest
from rq.registry import StartedJobRegistry
from sqlalchemy import select, text

from app.extensions import db, redis_store
from app.models import Notification, OutboxStatus
from app.models.reports import ReportEvent
from tests import factories as f
from tests.faults.conftest import (
    all_done,
    count,
    outbox_rows,
    report_body,
    tickets_by_report,
    wait_until,
    waiting_on_lock,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

SEND = "/cgi-bin/message/subscribe/send"


def file_report(faults_app, place, **extra) -> int:
    """A resident's report (its routing job is queued at once)."""
    resident = f.resident(place["comm"], **extra)
    r = faults_app.test_client().post("/api/v1/reports", headers=f.headers(resident),
                                      json=report_body(place))
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def routing_blocked_on(pg, report_id: int):
    """Hold the report's row lock: its routing job stops at its first statement, mid-job."""
    locker = pg.connect()
    locker.execute(text("SELECT id FROM reports WHERE id = :id FOR UPDATE"), {"id": report_id})
    return locker


def test_horse_killed_mid_routing_is_retried_and_opens_one_ticket(faults_app, place, pg,
                                                                  start_worker, worker_env):
    worker_env["WORKER_FORK"] = "1"  # python -m workers --fork: one work horse per job
    report_id = file_report(faults_app, place)
    locker = routing_blocked_on(pg, report_id)
    worker = start_worker()
    wait_until(lambda: waiting_on_lock(pg, "SELECT reports."), timeout=20)
    worker.kill_horse()
    locker.rollback()
    locker.close()

    wait_until(lambda: all_done("route_report"), timeout=20)
    [routing] = outbox_rows("route_report")
    assert routing.attempts == 2  # the killed run counted, then RQ's retry did the work
    assert "Work-horse terminated unexpectedly" in worker.log()
    assert tickets_by_report() == {report_id: [place["prop"].id]}
    assert count(ReportEvent, ReportEvent.action == "route",
                 ReportEvent.ticket_id.is_not(None)) == 1


def test_horse_killed_while_wechat_hangs_sends_the_message_once(faults_app, place,
                                                                 wechat_faults, start_worker,
                                                                 worker_env):
    worker_env["WX_TIMEOUT_SECONDS"] = "30"  # the send hangs until the kill, not a timeout
    worker_env["WORKER_FORK"] = "1"
    wechat_faults.set(delay=30, status=500, paths=[SEND], times=1)
    openid = "faults-kill-resident"
    report_id = file_report(faults_app, place, openid=openid)
    worker = start_worker()
    wait_until(lambda: wechat_faults.calls(SEND) == 1, timeout=20)  # the send hangs now
    worker.kill_horse()

    wait_until(lambda: all_done(), timeout=30)
    [notify] = outbox_rows("notify_report_update")
    assert notify.attempts == 2 and notify.status == OutboxStatus.DONE
    [sent] = wechat_faults.messages(openid)
    assert sent["data"]["phrase2"]["value"] == "已派单"
    db.session.rollback()
    [note] = db.session.scalars(select(Notification).where(Notification.kind == "report_update"))
    assert note.data["report_id"] == report_id and note.wx_status == "sent"
    assert wechat_faults.calls(SEND) == 2  # the hung one, then the retry


# Retried without a pause: the dead worker's scheduler lock (61 s) keeps the new worker from
# running RQ's scheduler, hence scheduled retries, for about a minute.
@pytest.mark.parametrize("app_overrides", [{"OUTBOX_RETRY_INTERVALS": [0, 0, 0]}])
def test_worker_killed_outright_mid_job_is_recovered_by_the_next_worker(
        faults_app, place, pg, start_worker):
    report_id = file_report(faults_app, place)
    locker = routing_blocked_on(pg, report_id)
    first = start_worker()
    wait_until(lambda: waiting_on_lock(pg, "SELECT reports."), timeout=20)
    first.crash()  # worker, scheduler and work-horse: SIGKILL by pid, no goodbye
    locker.rollback()
    locker.close()
    start_worker()

    # RQ cannot tell a dead worker from a slow one until the job's place in the started
    # registry expires (the job timeout, 180 s, + 60 s); the new worker's maintenance (every
    # 60 s) then requeues the job. Stand in for that wait:
    time.sleep(1)
    assert tickets_by_report() == {}
    registry = StartedJobRegistry("high", connection=redis_store.client)
    assert registry.get_job_ids() == [f"outbox-{outbox_rows('route_report')[0].id}"]
    registry.cleanup(timestamp=time.time() + 300)

    wait_until(lambda: all_done("route_report"), timeout=20)
    assert outbox_rows("route_report")[0].attempts == 2
    assert tickets_by_report() == {report_id: [place["prop"].id]}
