"""A report's whole life through a real RQ worker and the mock WeChat API on its own port."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.extensions import db
from app.models import Household, OutboxMessage, OutboxStatus, Ticket
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from tests import factories as f
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


@pytest.fixture
def place(e2e_app):
    comm = f.community()
    bld = f.building(comm)
    prop = f.org(comm, "property_company", code="e2e-prop")
    f.org(comm, "community_office", code="e2e-office")
    ensure_categories()
    ensure_routing_rules(comm)
    db.session.commit()
    return {"comm": comm, "bld": bld, "prop": prop,
            "clerk": f.staff(prop, "manager", username="e2e-clerk")}


def jpeg() -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 90, 60)).save(buf, "JPEG")
    buf.seek(0)
    return buf


def tickets_of(report_id: int) -> list[Ticket]:
    db.session.rollback()  # see the worker's commits
    return list(db.session.scalars(select(Ticket).where(Ticket.report_id == report_id)))


def messages(base: str, openid: str) -> list[dict]:
    return httpx.get(f"{base}/_mock/messages", params={"touser": openid}).json()["items"]


def test_submit_route_accept_resolve_feedback_closed(e2e_app, place, start_worker,
                                                      wechat_server):
    client = e2e_app.test_client()
    login = client.post("/api/v1/auth/wx-login", json={"code": "e2e-alice"}).get_json()
    resident = {"Authorization": f"Bearer {login['access_token']}"}
    household = db.session.scalar(select(Household).where(
        Household.building_id == place["bld"].id).limit(1))
    client.post("/api/v1/me/households", headers=resident, json={
        "building_id": place["bld"].id, "unit": household.unit, "room": household.room,
        "relation": "owner"})
    start_worker()

    photo = client.post("/api/v1/uploads", headers=resident, content_type="multipart/form-data",
                        data={"file": (jpeg(), "garbage.jpg")}).get_json()
    r = client.post("/api/v1/reports", headers=resident, json={
        "category": "garbage", "description": "楼道堆满了装修垃圾",
        "building_id": place["bld"].id, "photo_ids": [photo["id"]]})
    assert r.status_code == 201 and r.get_json()["status"] == "submitted"
    report_id = r.get_json()["id"]

    [ticket] = wait_until(lambda: tickets_of(report_id), timeout=10)
    assert ticket.org_id == place["prop"].id
    wait_until(lambda: client.get(f"/api/v1/reports/{report_id}", headers=resident)
               .get_json()["status"] == "routed")

    staff = f.headers(place["clerk"])
    for step in ({"action": "accept"}, {"action": "start"},
                 {"action": "resolve", "note": "垃圾已清运"}):
        r = client.post(f"/api/v1/tickets/{ticket.id}/transitions", json=step, headers=staff)
        assert r.status_code == 200, r.get_json()

    r = client.post(f"/api/v1/reports/{report_id}/feedback", headers=resident,
                    json={"fixed": True, "rating": 5, "comment": "很快"})
    assert r.status_code == 200 and r.get_json()["status"] == "closed"

    openid = "mock-openid-e2e-alice"
    sent = wait_until(lambda: len(messages(wechat_server, openid)) >= 5 and
                      messages(wechat_server, openid), timeout=15)
    phrases = [m["data"]["phrase2"]["value"] for m in sent]
    assert {"已派单", "已处理", "已办结"} <= set(phrases)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.status != OutboxStatus.DONE)) == 0


def test_report_submitted_while_redis_is_down_is_routed_once_it_is_back(
        e2e_app, place, start_worker, monkeypatch):
    from redis.exceptions import ConnectionError as RedisDown

    from app.extensions import redis_store

    client = e2e_app.test_client()
    resident = f.resident(place["comm"])
    for queue in redis_store.queues.values():
        monkeypatch.setattr(queue, "enqueue_call",
                            lambda *a, **k: (_ for _ in ()).throw(RedisDown("down")))
    r = client.post("/api/v1/reports", headers=f.headers(resident), json={
        "category": "lighting", "description": "3号楼楼道灯不亮",
        "building_id": place["bld"].id})
    assert r.status_code == 201
    report_id = r.get_json()["id"]
    monkeypatch.undo()  # Redis is back
    assert tickets_of(report_id) == []

    start_worker()  # its relay re-enqueues the lost job (rows older than 30 s, or at start)
    from app.services.outbox import relay_pending

    relay_pending(older_than_seconds=0)
    [ticket] = wait_until(lambda: tickets_of(report_id), timeout=15)
    assert ticket.org_id == place["prop"].id


def pending_jobs() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.status == OutboxStatus.PENDING))


def test_routing_twice_through_two_workers_leaves_one_ticket(e2e_app, place, start_worker):
    from app.services import outbox

    resident = f.resident(place["comm"])
    r = e2e_app.test_client().post("/api/v1/reports", headers=f.headers(resident), json={
        "category": "water_leak", "description": "楼顶漏水", "building_id": place["bld"].id})
    report_id = r.get_json()["id"]
    outbox.add_job("route_report", queue="high", report_id=report_id)  # a duplicate run
    outbox.commit()
    start_worker()
    start_worker()  # two workers race for the two routing jobs
    wait_until(lambda: pending_jobs() == 0, timeout=20)
    tickets = tickets_of(report_id)
    assert [t.org_id for t in tickets] == [place["prop"].id]
