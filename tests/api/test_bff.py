"""The home screen in one request: shapes, a fixed number of SQL statements, cache, ETag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.blueprints.bff.schemas import HomeSchema
from app.extensions import db
from app.models import ClaimStatus, Community, HouseholdMember, Org, User
from app.models.canteen import Order
from app.models.reports import Report
from app.services import notifications
from app.services.demo import seed_demo
from tests import factories as f
from tests.sql_fixtures import statements

HOME = "/api/v1/bff/home"





@pytest.fixture
def demo(app):
    seed_demo()
    resident = db.session.scalar(
        select(User).join(HouseholdMember, HouseholdMember.user_id == User.id)
        .where(HouseholdMember.status == ClaimStatus.APPROVED, User.openid.is_not(None))
        .order_by(User.id).limit(1))
    return {"resident": resident, "headers": f.headers(resident)}


def book_something(client, headers) -> dict:
    """Book the first open slot of the e-government station (no eligibility rule)."""
    services = client.get("/api/v1/services", headers=headers).get_json()["items"]
    service = next(s for s in services if "政务" in s["name"])
    start = datetime.now(UTC).date()
    slots = client.get(f"/api/v1/services/{service['id']}/slots", headers=headers,
                       query_string={"from": start.isoformat(),
                                     "to": (start + timedelta(days=10)).isoformat()}).get_json()
    slot = next(s for s in slots["items"] if s["remaining"] > 0)
    r = client.post("/api/v1/bookings", headers=headers,
                    json={"service_id": service["id"], "start": slot["start"], "note": ""})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def sign_up(client, headers) -> dict:
    """Sign up for the first activity the home screen offers that takes me."""
    items = client.get(HOME, headers=headers).get_json()["activities"]
    for activity in items:
        r = client.post(f"/api/v1/activities/{activity['id']}/signups", headers=headers,
                        json={"party_size": 1, "role": "participant"})
        if r.status_code == 201:
            return r.get_json()
    pytest.fail("no demo activity accepted a signup")


def order_lunch(client, headers) -> dict:
    """Order from the first menu still open (today, else tomorrow)."""
    for days in (0, 1):
        day = (datetime.now(UTC) + timedelta(hours=8, days=days)).date().isoformat()
        menus = client.get("/api/v1/canteen/menus", headers=headers,
                           query_string={"date": day}).get_json()["items"]
        for menu in menus:
            if datetime.fromisoformat(menu["cutoff_at"]) > datetime.now(UTC):
                dish = next(i for i in menu["items"] if i["portions_left"] > 0)
                r = client.post("/api/v1/canteen/orders", headers={
                    **headers, "Idempotency-Key": f"bff-{menu['id']}"}, json={
                    "menu_id": menu["id"], "items": [{"dish_id": dish["dish_id"], "qty": 1}],
                    "fulfilment": "pickup"})
                assert r.status_code == 201, r.get_json()
                return r.get_json()
    pytest.fail("no open menu in the demo")


def report_garbage(client, headers) -> dict:
    buildings = client.get("/api/v1/community/buildings", headers=headers).get_json()["items"]
    r = client.post("/api/v1/reports", headers=headers, json={
        "category": "broken_facility", "description": "单元门门禁坏了",
        "building_id": buildings[0]["id"]})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_home_shows_everything_in_one_response(client, demo):
    headers = demo["headers"]
    report = report_garbage(client, headers)
    booking = book_something(client, headers)
    signup = sign_up(client, headers)
    order = order_lunch(client, headers)

    r = client.get(HOME, headers=headers)
    assert r.status_code == 200
    home = r.get_json()
    assert home["user"]["id"] == demo["resident"].id
    assert home["user"]["households"][0]["status"] == "approved"
    assert home["unread_notifications"] >= 1  # the routing notice
    assert home["reports"][0]["id"] == report["id"]
    assert home["reports"][0]["latest_step"]["label"]
    assert [b["id"] for b in home["bookings"]] == [booking["id"]]
    mine = [a for a in home["activities"] if a["my_signup"]]
    assert [a["id"] for a in mine] == [signup["activity_id"]]
    assert mine[0]["my_signup"]["status"] == signup["status"]
    assert all(a["seats_left"] >= 0 for a in home["activities"])
    assert home["canteen"]["my_order"]["id"] == order["id"]
    assert home["canteen"]["menus"] is not None
    assert [n["title"] for n in home["notices"]][0] == "端午节龙舟手工课开始报名"  # pinned
    # served without a schema pass: the body is exactly what HomeSchema documents
    assert HomeSchema().dump(home) == home
    assert all(home[part] for part in ("reports", "bookings", "activities", "notices"))


def test_home_runs_a_fixed_small_number_of_statements(client, demo):
    headers = demo["headers"]
    for _ in range(3):
        report_garbage(client, headers)
    with statements() as cold:
        assert client.get(HOME, headers=headers).status_code == 200
    with statements() as warm:
        assert client.get(HOME, headers=headers).status_code == 200
    assert len(cold) <= 4, cold
    assert len(warm) == 1, warm  # the resident's own rows of every kind in one statement
    for _ in range(5):
        report_garbage(client, headers)
    book_something(client, headers)
    with statements() as more:
        assert client.get(HOME, headers=headers).status_code == 200
    assert len(more) == len(warm)


def test_home_lists_the_newest_open_reports_and_the_soonest_bookings(client, demo):
    headers = demo["headers"]
    filed = [report_garbage(client, headers)["id"] for _ in range(4)]
    booked = [book_something(client, headers) for _ in range(2)]
    home = client.get(HOME, headers=headers).get_json()
    assert [r["id"] for r in home["reports"]] == filed[::-1][:3]  # newest first, three shown
    assert [b["id"] for b in home["bookings"]] == [
        b["id"] for b in sorted(booked, key=lambda b: (b["start"], b["id"]))]
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo for r in home["reports"])


def test_home_follows_a_report_until_it_is_closed_rejected_or_a_duplicate(client, demo):
    headers = demo["headers"]
    filed = [report_garbage(client, headers)["id"] for _ in range(5)]
    moved = {filed[1]: "closed", filed[2]: "rejected", filed[3]: "duplicate",
             filed[4]: "resolved"}  # resolved: waiting for the resident to confirm the fix
    for report_id, status in moved.items():
        db.session.execute(update(Report).where(Report.id == report_id).values(status=status))
    db.session.commit()
    home = client.get(HOME, headers=headers).get_json()
    assert [r["id"] for r in home["reports"]] == [filed[4], filed[0]]  # newest first
    assert home["reports"][0]["status"] == "resolved"


def test_home_shows_the_order_still_coming_and_not_yesterdays(client, demo):
    headers = demo["headers"]
    order = order_lunch(client, headers)
    shown = client.get(HOME, headers=headers).get_json()["canteen"]["my_order"]
    assert shown["id"] == order["id"] and shown["status_label"]
    stale = db.session.get(Order, order["id"])
    stale.menu_date -= timedelta(days=2)  # a meal of two days ago the kitchen never closed
    db.session.commit()
    assert client.get(HOME, headers=headers).get_json()["canteen"]["my_order"] is None


def test_home_marks_only_my_signups(client, demo):
    headers = demo["headers"]
    signup = sign_up(client, headers)
    other = f.resident(db.session.get(Community, demo["resident"].community_id))
    db.session.commit()
    mine = client.get(HOME, headers=headers).get_json()["activities"]
    theirs = client.get(HOME, headers=f.headers(other)).get_json()["activities"]
    assert {a["id"] for a in mine if a["my_signup"]} == {signup["activity_id"]}
    assert not any(a["my_signup"] for a in theirs)


def test_a_write_to_shared_data_is_seen_at_once_despite_the_cache(client, demo, runner):
    headers = demo["headers"]
    before = client.get(HOME, headers=headers).get_json()
    office = f.staff(db.session.scalar(select(Org).where(Org.code == "zpq-office")), "staff")
    r = client.post("/api/v1/staff/notices", headers=f.headers(office),
                    json={"title": "今晚停电检修", "pinned": True})
    assert r.status_code == 201
    after = client.get(HOME, headers=headers).get_json()
    assert "今晚停电检修" in [n["title"] for n in after["notices"]]
    assert before["notices"] != after["notices"]


def test_etag_gives_304_until_something_changes(client, demo):
    headers = demo["headers"]
    first = client.get(HOME, headers=headers)
    etag = first.headers["ETag"]
    again = client.get(HOME, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    notifications.notify_user(user_id=demo["resident"].id, kind="report_update", title="新消息",
                              body="", dedupe_key="bff-etag")
    stale = client.get(HOME, headers={**headers, "If-None-Match": etag})
    assert stale.status_code == 200 and stale.headers["ETag"] != etag
    assert stale.get_json()["unread_notifications"] == \
        first.get_json()["unread_notifications"] + 1


def test_home_for_someone_without_a_household(client, app):
    newcomer = f.resident()
    home = client.get(HOME, headers=f.headers(newcomer)).get_json()
    assert home["user"]["households"] == [] and home["canteen"] is None
    assert home["reports"] == [] and home["bookings"] == []


def test_staff_cannot_open_the_home_screen(client, app):
    clerk = f.staff(f.org(f.community()))
    assert client.get(HOME, headers=f.headers(clerk)).status_code == 403


def test_report_and_order_screens(client, demo):
    headers = demo["headers"]
    report = report_garbage(client, headers)
    order = order_lunch(client, headers)
    r = client.get(f"/api/v1/bff/reports/{report['id']}", headers=headers)
    assert r.status_code == 200 and r.get_json()["timeline"][0]["label"] == "提交了反映"
    r = client.get(f"/api/v1/bff/orders/{order['id']}", headers=headers)
    assert r.status_code == 200 and r.get_json()["id"] == order["id"]
    other = f.resident(f.community())
    assert client.get(f"/api/v1/bff/reports/{report['id']}",
                      headers=f.headers(other)).status_code == 404
    assert client.get(f"/api/v1/bff/orders/{order['id']}",
                      headers=f.headers(other)).status_code == 404
