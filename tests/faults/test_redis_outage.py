"""Redis stopped while residents submit reports: the database is the source of truth.

A redis-server of the test's own is stopped (by its pid) while residents upload photos and
submit reports; every submission is still 201 and its outbox row stays pending. Once Redis is
back on the same port, the relay re-enqueues the jobs and every report is routed exactly once.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, OutboxStatus
from app.models.canteen import Order
from app.models.reports import Report, ReportEvent
from app.security import RESIDENT
from app.services.accounts import issue_tokens
from app.services.outbox import relay_pending
from tests import factories as f
from tests.canteen_fixtures import build_place as build_canteen
from tests.canteen_fixtures import (
    clock_fixture,  # noqa: F401 - the frozen canteen clock
    lines,
)
from tests.faults.conftest import (
    all_done,
    count,
    jpeg,
    outbox_rows,
    report_body,
    tickets_by_report,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

RESIDENTS, REPORTS_EACH = 2, 2
ORDERS = "/api/v1/canteen/orders"


@pytest.fixture
def redis_url(redis_server) -> str:
    """The app and its workers use the test's own redis-server, the one that is stopped."""
    return redis_server.url


def submit_fire_lane_report(client, headers: dict, place) -> tuple[int, float]:
    """Upload a photo and file a report with it; (report id, seconds the submission took)."""
    photo = client.post("/api/v1/uploads", headers=headers, content_type="multipart/form-data",
                        data={"file": (jpeg(), "lane.jpg")})
    assert photo.status_code == 201, photo.get_json()
    started = time.monotonic()
    r = client.post("/api/v1/reports", headers=headers, json=report_body(
        place, category="fire_lane_blocked", description="消防通道被电动车堵住了",
        photo_ids=[photo.get_json()["id"]]))
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"], time.monotonic() - started


def test_reports_filed_while_redis_is_stopped_are_routed_once_when_it_is_back(
        faults_app, place, redis_server, start_worker):
    client = faults_app.test_client()
    residents = [f.headers(f.resident(place["comm"])) for _ in range(RESIDENTS)]
    worker = start_worker()  # running through the outage, as in production
    wait_until(lambda: "Listening on" in worker.log(), timeout=15)

    redis_server.stop()
    filed = [submit_fire_lane_report(client, headers, place)
             for headers in residents for _ in range(REPORTS_EACH)]
    report_ids = [report_id for report_id, _ in filed]
    assert max(seconds for _, seconds in filed) < 1.0  # no waiting on the dead Redis
    routing = outbox_rows("route_report")
    assert len(routing) == len(report_ids)
    assert all(row.status == OutboxStatus.PENDING and row.enqueued_at is None
               for row in routing)
    assert tickets_by_report() == {}

    redis_server.start()  # same port, empty: every queued job was lost with it
    assert worker.proc.poll() is None  # it waited for Redis instead of exiting
    assert relay_pending(older_than_seconds=0) == len(report_ids)
    assert relay_pending(older_than_seconds=0) == 0  # queued now: never enqueued twice

    wait_until(lambda: all_done("route_report"), timeout=30)
    both_orgs = sorted([place["prop"].id, place["office"].id])
    assert tickets_by_report() == dict.fromkeys(report_ids, both_orgs)
    assert count(ReportEvent, ReportEvent.action == "route",
                 ReportEvent.ticket_id.is_not(None)) == 2 * len(report_ids)  # one per ticket
    assert {str(s) for s in db.session.scalars(select(Report.status))} == {"routed"}


def test_each_use_of_redis_degrades_as_decided_while_it_is_stopped(faults_app, place,
                                                                    redis_server):
    client = faults_app.test_client()
    resident = f.resident(place["comm"])
    tokens = issue_tokens(resident, RESIDENT)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    report_id = client.post("/api/v1/reports", headers=bearer,
                            json=report_body(place)).get_json()["id"]
    redis_server.stop()

    # Rate limits fail open: staff still sign in, residents still chase up their reports.
    r = client.post("/api/v1/auth/staff-login", json={
        "username": place["prop_staff"].username, "password": "correct-horse-1"})
    assert r.status_code == 200, r.get_json()
    assert client.post(f"/api/v1/reports/{report_id}/urge", headers=bearer).status_code == 201
    # Access tokens are accepted without the blocklist (they live 30 minutes) ...
    assert client.get(f"/api/v1/reports/{report_id}", headers=bearer).status_code == 200
    # ... but a 30-day refresh token is not, and a logout that cannot be recorded is refused.
    refresh = client.post("/api/v1/auth/refresh",
                          headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert_error(refresh, 503, "token_check_unavailable")
    logout = client.post("/api/v1/auth/logout", headers=bearer,
                         json={"refresh_token": tokens["refresh_token"]})
    assert_error(logout, 503, "logout_unavailable")

    redis_server.start()
    assert client.post("/api/v1/auth/logout", headers=bearer,
                       json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    assert_error(client.get(f"/api/v1/reports/{report_id}", headers=bearer), 401,
                 "token_revoked")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    if status == 503:
        assert int(response.headers["Retry-After"]) >= 1


@pytest.fixture
def canteen(faults_app, clock):
    """The canteen tests' community, kitchen, residents and today's lunch menu."""
    return build_canteen()


def test_meal_orders_placed_while_redis_is_stopped_succeed_and_their_notices_follow(
        faults_app, canteen, redis_server, start_worker, wechat_faults):
    client = faults_app.test_client()
    body = {"menu_id": canteen.menu.id, "items": lines(canteen, 红烧肉=1, 米饭=1),
            "fulfilment": "pickup"}
    elder = f.headers(canteen.elder) | {"Idempotency-Key": "lunch-0611"}
    cook, openid = f.headers(canteen.cook), canteen.elder.openid
    redis_server.stop()

    placed = client.post(ORDERS, headers=elder, json=body)
    assert placed.status_code == 201, placed.get_json()
    again = client.post(ORDERS, headers=elder, json=body)  # the tap repeated: replayed
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    order_id = placed.get_json()["id"]
    for action in ("accept", "start", "ready"):
        r = client.post(f"{ORDERS}/{order_id}/transitions", headers=cook, json={"action": action})
        assert r.status_code == 200, r.get_json()
    [notify] = outbox_rows("notify_canteen_order")
    assert notify.status == OutboxStatus.PENDING and notify.enqueued_at is None

    redis_server.start()
    start_worker()
    assert relay_pending(older_than_seconds=0) == 1
    wait_until(all_done, timeout=30)
    assert count(Order) == 1
    assert count(Notification, Notification.user_id == canteen.elder.id,
                 Notification.kind == "canteen_order") == 1
    [sent] = wechat_faults.messages(openid)
    assert sent["page"] == f"pages/canteen/order?id={order_id}"
