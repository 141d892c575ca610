"""Snapshot reports (随手拍) as the resident's mini-program sees them.

Jobs run in-process here: after POST /api/v1/reports has answered, routing has already run.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.extensions import db
from app.models import OutboxMessage, OutboxStatus
from app.models.reports import Report, ReportEvent, Ticket
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f
from tests.reports_fixtures import (
    HERE,
    build_place,
    count,
    filed,
    metres_north,
    notifications_of,
    report_body,
    resolve,
    staff_move,
    submit,
    ticket_for,
    upload_photo,
    written,
)
from tests.sql_fixtures import statements


@pytest.fixture
def place(app):
    return build_place()

def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def wechat_messages(user) -> list[dict]:
    return shared_mock_app().extensions["mock_wechat"].messages(touser=user.openid)


def get_report(client, user, report_id: int):
    return client.get(f"/api/v1/reports/{report_id}", headers=f.headers(user))


def post_action(client, user, report_id: int, action: str, json: dict | None = None):
    return client.post(f"/api/v1/reports/{report_id}/{action}", json=json or {},
                       headers=f.headers(user))


def org_ids_with_tickets(report_id: int) -> set[int]:
    return set(db.session.scalars(select(Ticket.org_id).where(Ticket.report_id == report_id)))


# ---- the category catalogue ---------------------------------------------------------------

def test_categories_list_codes_names_sla_and_flags(client, place):
    r = client.get("/api/v1/report-categories", headers=f.headers(place.resident))
    assert r.status_code == 200
    items = {c["code"]: c for c in r.get_json()["items"]}
    assert {"illegal_parking", "garbage", "broken_facility", "lighting", "elevator_fault",
            "water_leak", "noise", "greenery", "fire_lane_blocked", "neighbour_dispute",
            "other"} <= set(items)
    parking = items["illegal_parking"]
    assert parking["name"] == "车辆乱停放"
    assert parking["sla_hours"] == 4
    assert parking["photo_required"] is True and parking["is_private"] is False
    assert items["garbage"]["name"] == "垃圾乱堆放"
    assert items["neighbour_dispute"]["is_private"] is True
    assert items["other"]["photo_required"] is False


# ---- filing a report ----------------------------------------------------------------------

def test_report_is_routed_to_the_property_company_with_photos_and_timeline(client, place):
    photo = upload_photo(client, place.resident)
    r = submit(client, place, category="illegal_parking", photo_ids=[photo["id"]],
               description="一辆白色轿车停在消防栓前")
    assert r.status_code == 201
    body = r.get_json()
    assert body["status"] == "routed"
    assert body["category"] == "illegal_parking" and body["category_name"] == "车辆乱停放"
    assert body["description"] == "一辆白色轿车停在消防栓前"
    assert body["building_id"] == place.bld.id
    assert body["photos"] == [{"id": photo["id"], "kind": "report", "url": photo["url"],
                               "thumb_url": photo["thumb_url"]}]
    actions = [e["action"] for e in body["timeline"]]
    assert actions[0] == "submit" and "route" in actions
    assert [h["org"] for h in body["handlers"]] == ["绿城物业"]

    ticket = ticket_for(body["id"], place.property_company)
    assert ticket is not None and ticket.status == "new"
    assert ticket.expected_at - ticket.created_at == timedelta(hours=4)
    assert org_ids_with_tickets(body["id"]) == {place.property_company.id}


def test_submitting_tells_the_reporter_and_the_handling_org(client, place):
    body = filed(client, place, category="illegal_parking")

    messages = wechat_messages(place.resident)
    assert len(messages) == 1
    assert messages[0]["data"]["thing1"]["value"] == "车辆乱停放"
    assert messages[0]["data"]["phrase2"]["value"] == "已派单"
    assert str(body["id"]) in messages[0]["page"]
    [note] = notifications_of(place.resident)
    assert note.kind == "report_update" and note.wx_status == "sent"
    assert note.data["report_id"] == body["id"]

    staff_notes = notifications_of(place.property_staff)
    assert [n.kind for n in staff_notes] == ["ticket"]
    assert notifications_of(place.office_staff) == []

    outbox = list(db.session.scalars(select(OutboxMessage)))
    assert outbox and {m.status for m in outbox} == {OutboxStatus.DONE}


@pytest.mark.parametrize(("category", "org_types"), [
    ("illegal_parking", {"property_company"}),
    ("fire_lane_blocked", {"property_company", "community_office"}),
    ("neighbour_dispute", {"community_office"}),
    ("elevator_installation", {"owners_committee"}),
    ("other", {"community_office"}),  # no rule: the community office is the fallback
])
def test_each_category_reaches_its_orgs(client, place, category, org_types):
    body = filed(client, place, category=category)
    assert body["status"] == "routed"
    assert org_ids_with_tickets(body["id"]) == {place.orgs[t].id for t in org_types}
    assert {h["org"] for h in body["handlers"]} == {place.orgs[t].name for t in org_types}


def test_report_by_location_only_is_routed(client, place):
    body = filed(client, place, building_id=None, lat=HERE[0], lng=HERE[1])
    assert body["status"] == "routed"
    assert (body["lat"], body["lng"]) == HERE and body["building_id"] is None
    assert org_ids_with_tickets(body["id"]) == {place.property_company.id}


# ---- the answer to a submission is the report as GET shows it --------------------------------



@pytest.fixture
def worker_later(monkeypatch):
    """RQ as in production: jobs wait in Redis for a worker, which has not run yet."""
    from app.extensions import redis_store
    from app.services import outbox

    monkeypatch.setattr(redis_store.state, "jobs_async", True)
    monkeypatch.setattr(outbox, "_put_on_queue", lambda *messages: True)


def test_a_fresh_report_reads_back_exactly_as_it_was_answered(client, place):
    photo = upload_photo(client, place.resident)
    body = filed(client, place, category="illegal_parking", photo_ids=[photo["id"]])
    assert body["status"] == "routed"  # jobs in-process: routing ran before the answer
    assert get_report(client, place.resident, body["id"]).get_json() == body


@pytest.mark.parametrize("where", [{}, {"building_id": None, "lat": HERE[0], "lng": HERE[1]}])
def test_before_routing_the_answer_is_the_stored_report(client, place, worker_later, where):
    photos = [upload_photo(client, place.resident) for _ in range(2)]
    with statements() as seen:
        body = filed(client, place, category="illegal_parking",
                     photo_ids=[photos[1]["id"], photos[0]["id"]], **where)
    assert not [s for s in seen if s.startswith("SELECT") and "FROM reports" in s]  # no reload
    assert body["status"] == "submitted" and body["handlers"] == []
    assert [e["action"] for e in body["timeline"]] == ["submit"]
    assert [p["id"] for p in body["photos"]] == [photos[1]["id"], photos[0]["id"]]
    assert get_report(client, place.resident, body["id"]).get_json() == body
    [job] = db.session.scalars(select(OutboxMessage))
    assert job.job == "route_report" and job.status == OutboxStatus.PENDING


@pytest.mark.postgres  # SQLite hands back the new ids of several rows one INSERT at a time
def test_the_statements_of_a_submission_do_not_grow_with_its_photos(client, place,
                                                                      worker_later):
    photos = [upload_photo(client, place.resident)["id"] for _ in range(5)]
    filed(client, place, category="illegal_parking", photo_ids=photos[:1])  # caches warm
    with statements() as one:
        filed(client, place, category="illegal_parking", photo_ids=photos[1:2])
    with statements() as three:
        body = filed(client, place, category="illegal_parking", photo_ids=photos[2:])
    assert len(three) == len(one)
    assert [p["id"] for p in body["photos"]] == photos[2:]
    assert get_report(client, place.resident, body["id"]).get_json() == body


def test_a_category_changed_after_it_was_cached_is_read_afresh(client, place):
    from app.models.reports import ReportCategory

    assert filed(client, place, category="lighting")["category_name"] == "路灯/楼道灯不亮"
    lighting = db.session.scalar(select(ReportCategory).where(ReportCategory.code == "lighting"))
    lighting.name, lighting.photo_required = "照明", True
    db.session.commit()
    r = submit(client, place, category="lighting")
    assert r.status_code == 422 and error_code(r) == "photo_required"
    photo = upload_photo(client, place.resident)
    assert filed(client, place, category="lighting",
                 photo_ids=[photo["id"]])["category_name"] == "照明"
    lighting.is_active = False
    db.session.commit()
    assert error_code(submit(client, place, category="lighting")) == "unknown_category"



def test_a_building_moved_after_it_was_cached_is_read_afresh(client, place):
    other = f.community()
    filed(client, place, building_id=place.bld2.id)  # the building's community now cached
    place.bld2.community_id = other.id
    db.session.commit()
    before = written()
    r = submit(client, place, building_id=place.bld2.id)
    assert r.status_code == 422 and error_code(r) == "building_not_in_community"
    assert written() == before
    place.bld2.community_id = place.comm.id
    db.session.commit()
    assert filed(client, place, building_id=place.bld2.id)["building_id"] == place.bld2.id


def test_a_community_moved_after_it_was_cached_is_read_afresh(client, place):
    filed(client, place, lat=HERE[0], lng=HERE[1])  # the building's community now cached
    far = metres_north(HERE, 20_000)
    place.comm.center_lat, place.comm.center_lng = far
    db.session.commit()
    r = submit(client, place, lat=HERE[0], lng=HERE[1])
    assert r.status_code == 422 and error_code(r) == "location_outside_community"


def test_the_home_community_comes_from_the_token(client, place, worker_later):
    # An account's community, once set, never changes: the token's community_id claim stands
    # for it and a submission does not read the account.
    headers = f.headers(place.resident)
    with statements() as seen:
        r = client.post("/api/v1/reports", json=report_body(place), headers=headers)
    assert r.status_code == 201, r.get_json()
    assert not [s for s in seen if "FROM users" in s]
    # A token from before the household's approval says none: the account is read, so the
    # community it has now counts at once.
    homeless = f.resident(None)
    token_before = f.headers(homeless)
    homeless.community_id = f.community().id
    db.session.commit()
    before = written()
    for headers in (token_before, f.headers(homeless)):
        r = client.post("/api/v1/reports", json=report_body(place), headers=headers)
        assert r.status_code == 422 and error_code(r) == "building_not_in_community"
    assert written() == before


def test_a_building_of_the_callers_community_created_after_its_list_was_cached(client, place):
    filed(client, place)  # the community's buildings now cached
    newer = f.building(place.comm, number="9")
    db.session.commit()
    assert filed(client, place, building_id=newer.id)["building_id"] == newer.id
    before = written()
    r = submit(client, place, building_id=newer.id + 1000)
    assert r.status_code == 422 and error_code(r) == "building_not_found"
    assert written() == before

def test_a_phone_that_drops_mid_upload_gets_a_400_and_nothing_is_written(app_of_its_own, place):
    """The request queue reads the body before the request waits its turn; a connection that
    breaks meanwhile leaves the body short: 400 in the error shape, no report."""
    class Dropped(io.BytesIO):
        def read(self, *args):
            raise OSError("connection reset by peer")

    queued = app_of_its_own(WEB_ACTIVE_REQUESTS=1)
    environ = EnvironBuilder(path="/api/v1/reports", method="POST",
                             data=json.dumps(report_body(place)),
                             headers={**f.headers(place.resident),
                                      "Content-Type": "application/json"}).get_environ()
    environ["wsgi.input"] = Dropped()
    before = written()
    body, status, _headers = run_wsgi_app(queued.wsgi_app, environ, buffered=True)
    assert status.startswith("400")
    error = json.loads(b"".join(body))["error"]
    assert error["code"] and error["message"]
    assert written() == before


# ---- Idempotency-Key -----------------------------------------------------------------------

def test_same_idempotency_key_and_body_replays_the_first_report(client, place):
    key = {"Idempotency-Key": "report-1"}
    first = submit(client, place, headers=key)
    again = submit(client, place, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(Report) == 1 and count(Ticket) == 1


def test_same_idempotency_key_with_another_body_is_422(client, place):
    key = {"Idempotency-Key": "report-2"}
    assert submit(client, place, headers=key).status_code == 201
    before = written()
    r = submit(client, place, headers=key, description="另一件事：楼道灯不亮")
    assert r.status_code == 422 and error_code(r) == "idempotency_key_reused"
    assert written() == before and count(Report) == 1


# ---- rate limit ------------------------------------------------------------------------------

def test_eleventh_report_within_an_hour_is_429(client, place):
    for n in range(10):
        filed(client, place, description=f"第{n + 1}件事")
    before = written()
    r = submit(client, place, description="第11件事")
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    assert int(r.headers["Retry-After"]) > 0
    assert written() == before and count(Report) == 10
    # another resident is not affected
    assert submit(client, place, user=place.neighbour).status_code == 201


def test_the_report_limit_and_its_window_are_configurable(client, app, place, monkeypatch):
    monkeypatch.setitem(app.config, "REPORT_RATE_LIMIT", 2)
    monkeypatch.setitem(app.config, "REPORT_RATE_WINDOW_SECONDS", 600)
    filed(client, place, description="第1件事")
    filed(client, place, description="第2件事")
    before = written()
    r = submit(client, place, description="第3件事")
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 600
    assert written() == before


# ---- bad input: a clear error and nothing written -------------------------------------------

def assert_rejected(client, place, status: int, code: str | None, field: str | None = None,
                    user=None, **body):
    """Submit `body`; expect `status`/`code` (and a message on `field`) and no rows written."""
    before = written()
    r = submit(client, place, user=user, **body)
    assert r.status_code == status, r.get_json()
    error = r.get_json()["error"]
    if code is not None:
        assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in error["details"]["fields"]
    assert written() == before
    assert count(Report) == 0
    return error


def test_unknown_category(client, place):
    assert_rejected(client, place, 422, "unknown_category", "category", category="ufo_sighting")


def test_missing_required_photo(client, place):
    assert_rejected(client, place, 422, "photo_required", "photo_ids",
                    category="illegal_parking", photo_ids=[])


def test_missing_required_extra_field(client, place):
    assert_rejected(client, place, 422, "attribute_required", "extra.trapped",
                    category="elevator_fault", extra={})


def test_extra_fields_keep_only_the_categorys_own(client, place):
    r = client.post("/api/v1/reports", headers=f.headers(place.resident), json=report_body(
        place, category="elevator_fault", extra={"trapped": "否", "colour": "red"}))
    assert r.status_code == 201, r.get_json()
    assert db.session.get(Report, r.get_json()["id"]).extra == {"trapped": "否"}


def test_photo_of_another_user(client, place):
    theirs = upload_photo(client, place.neighbour)["id"]
    error = assert_rejected(client, place, 422, "photo_not_found", "photo_ids",
                            category="illegal_parking", photo_ids=[theirs])
    assert error["details"]["photo_ids"] == [theirs]


def test_photo_that_does_not_exist(client, place):
    assert_rejected(client, place, 422, "photo_not_found", "photo_ids", photo_ids=[987654])


def test_ten_photos(client, place):
    mine = [upload_photo(client, place.resident)["id"] for _ in range(10)]
    assert_rejected(client, place, 422, None, "photo_ids", category="illegal_parking",
                    photo_ids=mine)


@pytest.mark.parametrize(("lat", "lng", "field"), [
    (91.0, 121.445, "lat"), (-90.5, 121.445, "lat"), (31.19, 180.5, "lng"),
    (31.19, -181.0, "lng")])
def test_lat_lng_out_of_range(client, place, lat, lng, field):
    assert_rejected(client, place, 422, None, field, building_id=None, lat=lat, lng=lng)


def test_lat_without_lng(client, place):
    assert_rejected(client, place, 422, None, "lat", building_id=None, lat=HERE[0])


def test_location_far_outside_the_community(client, place):
    far = metres_north(HERE, 20_000)
    assert_rejected(client, place, 422, "location_outside_community", "lat",
                    building_id=None, lat=far[0], lng=far[1])
    # a building alone does not excuse a point far away
    assert_rejected(client, place, 422, "location_outside_community", "lat",
                    lat=far[0], lng=far[1])


def test_building_of_another_community(client, place):
    elsewhere = f.building(f.community())
    assert_rejected(client, place, 422, "building_not_in_community", "building_id",
                    building_id=elsewhere.id)


def test_building_that_does_not_exist(client, place):
    assert_rejected(client, place, 422, "building_not_found", "building_id", building_id=424242)


def test_neither_building_nor_position(client, place):
    assert_rejected(client, place, 422, "location_required", "location", building_id=None)


@pytest.mark.parametrize("description", ["", "   ", "很" * 2001])
def test_empty_or_too_long_description(client, place, description):
    assert_rejected(client, place, 422, None, "description", description=description)


def test_description_of_2000_characters_is_accepted(client, place):
    assert filed(client, place, description="很" * 2000)["description"] == "很" * 2000


def test_staff_cannot_file_a_report(client, place):
    before = written()
    r = client.post("/api/v1/reports", json=report_body(place),
                    headers=f.headers(place.property_staff))
    assert r.status_code == 403
    assert written() == before


def test_anonymous_cannot_file_a_report(client, place):
    r = client.post("/api/v1/reports", json=report_body(place))
    assert r.status_code == 401 and count(Report) == 0


# ---- my reports ----------------------------------------------------------------------------

def test_my_reports_are_keyset_paginated_newest_first(client, place):
    ids = [filed(client, place, description=f"第{n}件事")["id"] for n in range(5)]
    filed(client, place, user=place.neighbour)  # not mine
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = client.get("/api/v1/reports/mine", query_string=query,
                       headers=f.headers(place.resident))
        assert r.status_code == 200
        page = r.get_json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))
    assert page["items"][0]["status"] == "routed"


def test_my_reports_with_a_garbage_cursor_is_422(client, place):
    filed(client, place)
    r = client.get("/api/v1/reports/mine", query_string={"cursor": "not-a-cursor!!"},
                   headers=f.headers(place.resident))
    assert r.status_code == 422 and error_code(r) == "invalid_cursor"


def test_my_reports_is_empty_for_someone_who_filed_nothing(client, place):
    filed(client, place)
    r = client.get("/api/v1/reports/mine", headers=f.headers(place.neighbour))
    assert r.get_json() == {"items": [], "next_cursor": None}


# ---- one report: who may see it -------------------------------------------------------------

def test_another_resident_sees_a_report_only_after_following_it(client, place):
    report = filed(client, place)
    r = get_report(client, place.neighbour, report["id"])
    assert r.status_code == 404 and error_code(r) == "report_not_found"

    r = post_action(client, place.neighbour, report["id"], "follow")
    assert r.status_code == 200
    r = get_report(client, place.neighbour, report["id"])
    assert r.status_code == 200 and r.get_json()["id"] == report["id"]


def test_private_report_cannot_be_followed_or_seen_by_others(client, place):
    report = filed(client, place, category="neighbour_dispute", description="楼上装修噪音")
    r = post_action(client, place.neighbour, report["id"], "follow")
    assert r.status_code == 404
    assert get_report(client, place.neighbour, report["id"]).status_code == 404
    assert get_report(client, place.resident, report["id"]).status_code == 200


def test_a_resident_of_another_community_cannot_follow_or_see_a_report(client, place):
    # Found by the authorization matrix: following skipped the community check, and a follower
    # may read the report, so anyone anywhere could read any public report.
    from app.models.reports import ReportFollower

    report = filed(client, place)
    outsider = f.resident(f.community(), display_name="别处居民")
    r = post_action(client, outsider, report["id"], "follow")
    assert r.status_code == 404 and error_code(r) == "report_not_found"
    assert get_report(client, outsider, report["id"]).status_code == 404
    assert count(ReportFollower) == 0


def test_unknown_report_is_404(client, place):
    assert get_report(client, place.resident, 999999).status_code == 404


def test_public_timeline_leaves_out_internal_comments(client, place):
    report = filed(client, place)
    ticket = ticket_for(report["id"], place.property_company)
    for body, internal in (("内部：联系维修班组", True), ("维修师傅明天上午到场", False)):
        r = client.post(f"/api/v1/tickets/{ticket.id}/comments",
                        json={"body": body, "internal": internal},
                        headers=f.headers(place.property_staff))
        assert r.status_code == 201

    timeline = get_report(client, place.resident, report["id"]).get_json()["timeline"]
    notes = [e["note"] for e in timeline]
    assert "维修师傅明天上午到场" in notes
    assert not any("内部" in n for n in notes)
    staff_view = client.get(f"/api/v1/tickets/{ticket.id}",
                            headers=f.headers(place.property_staff)).get_json()
    assert "内部：联系维修班组" in [e["note"] for e in staff_view["timeline"]]


# ---- nearby: "someone already reported this" ------------------------------------------------

def nearby(client, user, **query):
    r = client.get("/api/v1/reports/nearby", query_string=query, headers=f.headers(user))
    assert r.status_code == 200, r.get_json()
    return [item["id"] for item in r.get_json()["items"]]


def test_nearby_finds_same_category_within_100_metres(client, place):
    close = filed(client, place, building_id=None, lat=HERE[0], lng=HERE[1])
    far_point = metres_north(HERE, 300)
    filed(client, place, building_id=None, lat=far_point[0], lng=far_point[1])
    filed(client, place, category="lighting", building_id=None, lat=HERE[0], lng=HERE[1])

    asking_from = metres_north(HERE, 40)
    found = nearby(client, place.neighbour, category="broken_facility",
                   lat=asking_from[0], lng=asking_from[1])
    assert found == [close["id"]]


def test_nearby_finds_same_building(client, place):
    same = filed(client, place, building_id=place.bld2.id)
    filed(client, place, building_id=place.bld.id)
    found = nearby(client, place.neighbour, category="broken_facility",
                   building_id=place.bld2.id)
    assert found == [same["id"]]


def test_nearby_never_shows_private_categories(client, place):
    filed(client, place, category="neighbour_dispute", building_id=place.bld.id,
          lat=HERE[0], lng=HERE[1])
    assert nearby(client, place.neighbour, category="neighbour_dispute",
                  lat=HERE[0], lng=HERE[1]) == []
    assert nearby(client, place.neighbour, category="neighbour_dispute",
                  building_id=place.bld.id) == []


def test_nearby_leaves_out_closed_reports(client, place):
    report = filed(client, place, building_id=place.bld2.id)
    resolve(client, place, report["id"])
    post_action(client, place.resident, report["id"], "feedback", {"fixed": True, "rating": 5})
    assert nearby(client, place.neighbour, category="broken_facility",
                  building_id=place.bld2.id) == []


# ---- urge (催办) ------------------------------------------------------------------------------

def test_urge_lands_on_the_timeline_and_notifies_the_property_staff(client, place):
    report = filed(client, place)
    before = len(notifications_of(place.property_staff))
    r = post_action(client, place.resident, report["id"], "urge")
    assert r.status_code == 201 and r.get_json()["action"] == "urge"

    staff_notes = notifications_of(place.property_staff)
    assert len(staff_notes) == before + 1
    assert "居民催办" in staff_notes[-1].title
    assert staff_notes[-1].data["report_id"] == report["id"]
    timeline = get_report(client, place.resident, report["id"]).get_json()["timeline"]
    assert timeline[-1]["action"] == "urge"
    ticket = ticket_for(report["id"], place.property_company)
    staff_view = client.get(f"/api/v1/tickets/{ticket.id}",
                            headers=f.headers(place.property_staff)).get_json()
    assert "urge" in [e["action"] for e in staff_view["timeline"]]


def test_second_urge_within_30_minutes_is_429(client, place):
    report = filed(client, place)
    assert post_action(client, place.resident, report["id"], "urge").status_code == 201
    events = count(ReportEvent)
    r = post_action(client, place.resident, report["id"], "urge")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert count(ReportEvent) == events


def test_urging_a_closed_report_is_409(client, place):
    report = filed(client, place)
    resolve(client, place, report["id"])
    post_action(client, place.resident, report["id"], "feedback", {"fixed": True})
    r = post_action(client, place.resident, report["id"], "urge")
    assert r.status_code == 409 and error_code(r) == "report_not_open"


def test_urging_someone_elses_report_is_404(client, place):
    report = filed(client, place)
    events = count(ReportEvent)
    r = post_action(client, place.neighbour, report["id"], "urge")
    assert r.status_code == 404
    assert count(ReportEvent) == events


# ---- feedback: "was it fixed?" --------------------------------------------------------------

def test_feedback_before_resolution_is_409(client, place):
    report = filed(client, place)
    r = post_action(client, place.resident, report["id"], "feedback", {"fixed": True})
    assert r.status_code == 409 and error_code(r) == "not_resolved"
    assert db.session.get(Report, report["id"]).feedback_at is None


def test_feedback_by_someone_else_is_refused(client, place):
    report = filed(client, place)
    follower = f.resident(place.comm, household=f.household_of(place.bld, room="201"))
    assert post_action(client, follower, report["id"], "follow").status_code == 200
    resolve(client, place, report["id"])
    r = post_action(client, place.neighbour, report["id"], "feedback", {"fixed": True})
    assert r.status_code == 404
    r = post_action(client, follower, report["id"], "feedback", {"fixed": True})
    assert r.status_code == 403 and error_code(r) == "not_reporter"
    db.session.expire_all()
    assert db.session.get(Report, report["id"]).status == "resolved"


def test_fixed_closes_the_report_and_its_ticket(client, place):
    report = filed(client, place)
    resolve(client, place, report["id"], note="已更换灯泡")
    resolved = get_report(client, place.resident, report["id"]).get_json()
    assert resolved["status"] == "resolved"
    assert "已更换灯泡" in [e["note"] for e in resolved["timeline"]]

    r = post_action(client, place.resident, report["id"], "feedback",
                    {"fixed": True, "rating": 5, "comment": "修得很快，谢谢"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "closed" and body["closed_at"]
    assert (body["fixed"], body["rating"], body["feedback_comment"]) == (True, 5, "修得很快，谢谢")
    assert ticket_for(report["id"], place.property_company).status == "closed"


def test_second_feedback_is_409(client, place):
    report = filed(client, place)
    resolve(client, place, report["id"])
    post_action(client, place.resident, report["id"], "feedback", {"fixed": True, "rating": 4})
    r = post_action(client, place.resident, report["id"], "feedback",
                    {"fixed": False, "rating": 1})
    assert r.status_code == 409 and error_code(r) == "feedback_exists"
    db.session.expire_all()
    stored = db.session.get(Report, report["id"])
    assert (stored.status, stored.rating) == ("closed", 4)


def test_not_fixed_reopens_the_report_and_sends_the_ticket_back(client, place):
    report = filed(client, place)
    resolve(client, place, report["id"])
    staff_notes = len(notifications_of(place.property_staff))
    r = post_action(client, place.resident, report["id"], "feedback",
                    {"fixed": False, "rating": 2, "comment": "灯还是不亮"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "reopened"
    assert ticket_for(report["id"], place.property_company).status == "reopened"
    reopen = [e for e in body["timeline"] if e["action"] == "reopen"]
    assert len(reopen) == 1 and reopen[0]["note"] == "灯还是不亮"
    assert len(notifications_of(place.property_staff)) > staff_notes


def test_after_a_reopen_the_next_resolution_can_be_confirmed(client, place):
    report = filed(client, place)
    resolve(client, place, report["id"])
    post_action(client, place.resident, report["id"], "feedback", {"fixed": False})
    ticket = ticket_for(report["id"], place.property_company)
    for action in ("start", "resolve"):
        assert staff_move(client, place.property_staff, ticket.id, action,
                          "换了整套灯具").status_code == 200
    r = post_action(client, place.resident, report["id"], "feedback",
                    {"fixed": True, "rating": 4})
    assert r.status_code == 200 and r.get_json()["status"] == "closed"


@pytest.mark.parametrize("rating", [0, 6])
def test_rating_out_of_range_is_422_and_changes_nothing(client, place, rating):
    report = filed(client, place)
    resolve(client, place, report["id"])
    before = written()
    r = post_action(client, place.resident, report["id"], "feedback",
                    {"fixed": True, "rating": rating})
    assert r.status_code == 422 and "rating" in r.get_json()["error"]["details"]["fields"]
    assert written() == before
    db.session.expire_all()
    stored = db.session.get(Report, report["id"])
    assert (stored.status, stored.rating, stored.feedback_at) == ("resolved", None, None)
    assert ticket_for(report["id"], place.property_company).status == "resolved"


def test_feedback_without_fixed_is_422(client, place):
    report = filed(client, place)
    resolve(client, place, report["id"])
    r = post_action(client, place.resident, report["id"], "feedback", {"rating": 5})
    assert r.status_code == 422 and "fixed" in r.get_json()["error"]["details"]["fields"]
