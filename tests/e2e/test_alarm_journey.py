"""A smoke alarm's whole life through a real RQ worker and the mock WeChat API on its own port:
the signed event is stored, the worker raises the alarm and messages the daughter, staff
acknowledge and resolve it with a cause, and the daughter hears how it ended."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Alarm, OutboxMessage, OutboxStatus
from tests import factories as f
from tests.alarms_fixtures import build_place, event, make_elder, make_kit, signed_headers
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


@pytest.fixture
def place(e2e_app):
    return build_place(other=False, at=datetime.now(UTC))


def messages(base: str, openid: str) -> list[dict]:
    return httpx.get(f"{base}/_mock/messages", params={"touser": openid}).json()["items"]


def alarms_of(kind: str) -> list[Alarm]:
    db.session.rollback()  # see the worker's commits
    return list(db.session.scalars(select(Alarm).where(Alarm.kind == kind).order_by(Alarm.id)))


def test_smoke_raised_by_the_worker_family_told_acknowledged_resolved(
        e2e_app, place, start_worker, wechat_server):
    client = e2e_app.test_client()
    start_worker()
    smoke = event("smoke_alarm", "smoke", at=datetime.now(UTC))
    body = json.dumps({"events": [smoke]}).encode()
    r = client.post("/api/v1/iot/events", data=body, headers=signed_headers(
        body, timestamp=int(datetime.now(UTC).timestamp())))
    assert r.status_code == 202 and r.get_json()["accepted"] == 1
    assert alarms_of("smoke") == []  # stored; the worker evaluates it

    [alarm] = wait_until(lambda: alarms_of("smoke"), timeout=15)
    assert str(alarm.severity) == "critical" and str(alarm.status) == "raised"
    openid = place.daughter.openid
    [raised] = wait_until(lambda: messages(wechat_server, openid), timeout=15)
    assert raised["data"]["thing1"]["value"] == "王秀英家烟雾报警"
    assert raised["data"]["phrase2"]["value"] == "已报警"

    staff = f.headers(place.on_duty)
    url = f"/api/v1/staff/alarms/{alarm.id}/transitions"
    r = client.post(url, headers=staff, json={"action": "acknowledge", "note": "已致电老人"})
    assert r.status_code == 200 and r.get_json()["status"] == "acknowledged"
    r = client.post(url, headers=staff, json={"action": "resolve", "cause": "cooking",
                                              "note": "炒菜没开油烟机，已开窗通风"})
    assert r.status_code == 200 and r.get_json()["cause"] == "cooking"

    sent = wait_until(lambda: len(messages(wechat_server, openid)) >= 2 and
                      messages(wechat_server, openid), timeout=15)
    assert [m["data"]["phrase2"]["value"] for m in sent] == ["已报警", "已处置"]
    assert sent[1]["data"]["thing4"]["value"] == "原因：烹饪油烟"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.status != OutboxStatus.DONE)) == 0


def test_the_workers_periodic_watch_raises_welfare_alarms(e2e_app, place, start_worker):
    now = datetime.now(UTC)
    home = f.household_of(place.bld, "2", "201")
    elder = make_elder(place.comm, home, "老周", at=now)
    [door] = make_kit(elder, {"door_sensor": "DOOR-ZHOU"}, at=now).values()
    door.last_opened_at = now - timedelta(hours=25)
    db.session.commit()
    start_worker()  # books alarm_watch at once, then every 30 seconds
    [alarm] = wait_until(lambda: alarms_of("door_not_opened"), timeout=20)
    assert alarm.device_id == door.id and str(alarm.severity) == "welfare"
