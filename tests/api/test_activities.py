"""The activity API as residents, the community office and scanners use it."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import IdempotencyRecord
from app.models.activities import Activity, ActivityEvent, CheckinScan, Signup
from app.services import activities
from tests import factories as f
from tests.activities_fixtures import (
    build_place,
    count,
    fresh,
    messages_to,
    publish,
    residents,
    seated,
)
from tests.sql_fixtures import statements

STAFF = "/api/v1/staff/activities"
ACTIVITIES = "/api/v1/activities"


@pytest.fixture
def place(app):
    return build_place()


def iso(moment: datetime) -> str:
    return moment.isoformat()


def new_activity_body(**fields) -> dict:
    starts = datetime.now(UTC) + timedelta(days=3)
    return {"title": "端午香囊手工课", "description": "缝香囊、包粽子", "place": "邻里中心二楼",
            "starts_at": iso(starts), "ends_at": iso(starts + timedelta(hours=2)),
            "capacity": 20, "max_party_size": 2, "audience": ["elderly", "family"],
            "volunteer_roles": [{"code": "helper", "name": "手工助教", "capacity": 3,
                                 "hours": 2}]} | fields


def post(client, user, url, body=None, **headers):
    return client.post(url, json=body if body is not None else {},
                       headers=f.headers(user) | headers)


def get(client, user, url, **params):
    return client.get(url, query_string=params, headers=f.headers(user))


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def signup(client, user, activity_id: int, **body):
    return post(client, user, f"{ACTIVITIES}/{activity_id}/signups", body)


def qr_token(client, user, signup_id: int) -> str:
    r = get(client, user, f"{ACTIVITIES}/signups/{signup_id}/qr")
    assert r.status_code == 200, r.get_json()
    return r.get_json()["token"]


def checkin(client, staff, activity_id: int, token: str, nonce: str = "scan-0001", **body):
    return post(client, staff, f"{STAFF}/{activity_id}/checkins",
                {"token": token, "nonce": nonce} | body)




# ---- staff publish, edit, cancel -----------------------------------------------------------

def test_the_office_publishes_an_activity(client, place):
    r = post(client, place.clerk, STAFF, new_activity_body())
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert (body["title"], body["capacity"], body["seats_left"], body["seats_taken"]) == (
        "端午香囊手工课", 20, 20, 0)
    assert body["audience"] == ["elderly", "family"] and body["status"] == "published"
    assert body["volunteer_roles"] == [{"code": "helper", "name": "手工助教", "capacity": 3,
                                        "seats_left": 3, "hours": 2.0,
                                        "credit_mode": "measured"}]
    assert body["starts_at"].endswith("+00:00") and body["signup_state"] == "open"


def test_who_may_publish(client, place):
    assert post(client, place.care_manager, STAFF, new_activity_body()).status_code == 201
    for user, status in ((place.prop_staff, 403), (place.li, 403)):
        r = post(client, user, STAFF, new_activity_body())
        assert r.status_code == status and error_code(r) == "forbidden_role"
    assert count(Activity) == 1


@pytest.mark.parametrize(("fields", "field"), [
    ({"title": ""}, "title"),
    ({"capacity": -1}, "capacity"),
    ({"audience": ["teenagers"]}, "audience"),
    ({"volunteer_roles": [{"code": "participant", "name": "x", "capacity": 1, "hours": 1}]},
     "volunteer_roles"),
    ({"ends_at": iso(datetime.now(UTC) + timedelta(days=1))}, "ends_at"),
])
def test_bad_activity_input_is_422_with_the_field_and_nothing_is_written(client, place, fields,
                                                                         field):
    r = post(client, place.clerk, STAFF, new_activity_body(**fields))
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["error"]["details"]["fields"]
    assert count(Activity) == 0


def test_publishing_twice_with_one_idempotency_key_creates_one_activity(client, place):
    body = new_activity_body()
    first = post(client, place.clerk, STAFF, body, **{"Idempotency-Key": "a-1"})
    again = post(client, place.clerk, STAFF, body, **{"Idempotency-Key": "a-1"})
    assert first.status_code == again.status_code == 201
    assert first.get_json()["id"] == again.get_json()["id"] and count(Activity) == 1


def test_staff_edit_and_more_seats_promote_the_waiting_list(client, place):
    activity = publish(place, capacity=1)
    signup(client, place.li, activity.id)
    waiting = signup(client, place.grandma, activity.id).get_json()
    r = client.patch(f"{STAFF}/{activity.id}", json={"capacity": 2, "place": "三楼大厅"},
                     headers=f.headers(place.clerk))
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["capacity"], r.get_json()["place"], r.get_json()["seats_left"]) == (
        2, "三楼大厅", 0)
    assert str(fresh(Signup, waiting["id"]).status) == "confirmed"
    assert messages_to(place.grandma)[0]["data"]["phrase2"]["value"] == "候补成功"
    r = client.patch(f"{STAFF}/{activity.id}", json={"capacity": 1},
                     headers=f.headers(place.clerk))
    assert (r.status_code, error_code(r)) == (409, "capacity_below_taken")
    r = client.patch(f"{STAFF}/{activity.id}", json={"capacity": 5},
                     headers=f.headers(place.other_clerk))
    assert r.status_code == 404 and fresh(Activity, activity.id).capacity == 2


def test_cancelling_an_activity_tells_everyone_signed_up(client, place):
    activity = publish(place, capacity=1)
    signup(client, place.li, activity.id)
    signup(client, place.grandma, activity.id)
    r = post(client, place.clerk, f"{STAFF}/{activity.id}/cancel", {"reason": "暴雨预警"})
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert r.get_json()["cancel_reason"] == "暴雨预警"
    for person in (place.li, place.grandma):
        (message,) = messages_to(person)
        assert message["data"]["thing4"]["value"] == "暴雨预警"
    mine = get(client, place.li, f"{ACTIVITIES}/signups/mine").get_json()["items"]
    assert [s["status"] for s in mine] == ["cancelled"]
    r = post(client, place.clerk, f"{STAFF}/{activity.id}/cancel", {"reason": "again"})
    assert (r.status_code, error_code(r)) == (409, "invalid_transition")
    r = post(client, place.clerk, f"{STAFF}/{activity.id}/cancel", {"reason": ""})
    assert r.status_code == 422


def test_staff_list_their_orgs_activities_and_the_roster(client, place):
    mine = publish(place, title="居委会活动")
    publish(place, by=place.care_manager, title="助老中心活动")
    signup(client, place.li, mine.id)
    titles = [a["title"] for a in get(client, place.clerk, STAFF).get_json()["items"]]
    assert sorted(titles) == ["助老中心活动", "居委会活动"]  # the office sees its community
    titles = [a["title"] for a in get(client, place.care_manager, STAFF).get_json()["items"]]
    assert titles == ["助老中心活动"]
    roster = get(client, place.clerk, f"{STAFF}/{mine.id}/signups").get_json()["items"]
    assert [(s["resident"]["display_name"], s["status"]) for s in roster] == [
        ("李建国", "confirmed")]
    assert get(client, place.other_clerk, f"{STAFF}/{mine.id}/signups").status_code == 404


# ---- residents browse ----------------------------------------------------------------------

def test_residents_see_upcoming_activities_of_their_community_with_their_own_state(client,
                                                                                   place):
    soon = publish(place, title="端午香囊手工课", capacity=2, starts_in=timedelta(days=1),
                   audience=["elderly"])
    later_one = publish(place, title="亲子绘本共读", audience=["children", "family"],
                        starts_in=timedelta(days=5))
    publish(place, title="长者太极拳", audience=["elderly"], starts_in=timedelta(days=6))
    f.org(place.other_comm, "community_office")
    signup(client, place.li, soon.id, party_size=2)
    items = get(client, place.grandma, ACTIVITIES).get_json()["items"]
    assert [a["title"] for a in items] == ["端午香囊手工课", "亲子绘本共读", "长者太极拳"]
    assert (items[0]["seats_left"], items[0]["my_signup"]) == (0, None)
    mine = get(client, place.li, ACTIVITIES).get_json()["items"][0]["my_signup"]
    assert (mine["status"], mine["party_size"], mine["role"]) == ("confirmed", 2, "participant")
    children = get(client, place.li, ACTIVITIES, audience="children").get_json()["items"]
    assert [a["id"] for a in children] == [later_one.id]
    start = (datetime.now(UTC) + timedelta(days=4)).date().isoformat()
    assert [a["title"] for a in get(client, place.li, ACTIVITIES, **{"from": start})
            .get_json()["items"]] == ["亲子绘本共读", "长者太极拳"]
    assert get(client, place.other_resident, ACTIVITIES).get_json()["items"] == []
    assert get(client, place.other_resident, f"{ACTIVITIES}/{soon.id}").status_code == 404
    assert get(client, place.li, ACTIVITIES, audience="teens").status_code == 422


def test_the_list_pages_by_cursor_with_constant_sql(client, place):
    for day in range(1, 6):
        activity = publish(place, title=f"活动{day}", starts_in=timedelta(days=day))
        signup(client, place.li, activity.id)
    first = get(client, place.li, ACTIVITIES, limit=2).get_json()
    second = get(client, place.li, ACTIVITIES, limit=2, cursor=first["next_cursor"]).get_json()
    assert [a["title"] for a in first["items"] + second["items"]] == ["活动1", "活动2", "活动3",
                                                                     "活动4"]
    with statements() as small:
        get(client, place.li, ACTIVITIES, limit=1)
    with statements() as large:
        get(client, place.li, ACTIVITIES, limit=5)
    assert len(small) == len(large)


# ---- signing up ----------------------------------------------------------------------------

def test_signing_up_confirms_then_waitlists_with_a_position(client, place):
    activity = publish(place, capacity=2)
    r = signup(client, place.grandma, activity.id, party_size=2, member_ids=[place.grandson.id])
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert {k: body[k] for k in ("status", "waitlist_position", "party_size", "role")} == {
        "status": "confirmed", "waitlist_position": None, "party_size": 2, "role": "participant"}
    r = signup(client, place.li, activity.id)
    assert (r.get_json()["status"], r.get_json()["waitlist_position"]) == ("waitlisted", 1)
    detail = get(client, place.li, f"{ACTIVITIES}/{activity.id}").get_json()
    assert (detail["seats_left"], detail["waitlist_count"]) == (0, 1)
    assert detail["my_signup"]["waitlist_position"] == 1


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"party_size": 0}, 422, "validation_error"),
    ({"party_size": 4}, 422, "party_too_large"),
    ({"party_size": 2, "member_ids": [999]}, 422, "member_not_in_household"),
    ({"role": "chef"}, 422, "unknown_role"),
])
def test_bad_signups_are_refused_and_nothing_is_written(client, place, body, status, code):
    activity = publish(place)
    r = signup(client, place.li, activity.id, **body)
    assert (r.status_code, error_code(r)) == (status, code)
    assert count(Signup) == 0 and fresh(Activity, activity.id).seats_taken == 0


def test_an_under_age_member_is_refused(client, place):
    activity = publish(place, min_age=12)
    r = signup(client, place.grandma, activity.id, party_size=2, member_ids=[place.grandson.id])
    assert (r.status_code, error_code(r)) == (422, "age_not_allowed")
    assert "王小明" in r.get_json()["error"]["message"]
    assert count(Signup) == 0


def test_a_second_signup_is_409(client, place):
    activity = publish(place)
    first = signup(client, place.li, activity.id)
    again = signup(client, place.li, activity.id, party_size=2)
    assert (again.status_code, error_code(again)) == (409, "already_signed_up")
    assert again.get_json()["error"]["details"]["signup_id"] == first.get_json()["id"]
    assert count(Signup) == 1


def test_a_retried_signup_with_its_idempotency_key_replays_the_first_answer(client, place):
    activity = publish(place)
    key = {"Idempotency-Key": "signup-li-1"}
    first = post(client, place.li, f"{ACTIVITIES}/{activity.id}/signups", {}, **key)
    again = post(client, place.li, f"{ACTIVITIES}/{activity.id}/signups", {}, **key)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json() and count(Signup) == 1


def test_signup_before_it_opens_and_after_it_closes_is_409(client, place, monkeypatch):
    activity = publish(place, signup_opens_at=datetime.now(UTC) + timedelta(days=1),
                       starts_in=timedelta(days=3))
    r = signup(client, place.li, activity.id)
    assert (r.status_code, error_code(r)) == (409, "signup_not_open")
    monkeypatch.setattr(activities, "now", lambda: activity.signup_closes_at)
    r = signup(client, place.li, activity.id)
    assert (r.status_code, error_code(r)) == (409, "signup_closed")
    assert count(Signup) == 0 and count(IdempotencyRecord) == 0


def test_cancelling_frees_the_seat_for_the_next_in_line_who_hears_it_on_wechat(client, place):
    activity = publish(place, capacity=1)
    seat = signup(client, place.li, activity.id).get_json()
    waiting = signup(client, place.grandma, activity.id).get_json()
    r = post(client, place.li, f"{ACTIVITIES}/{activity.id}/signups/{seat['id']}/cancel")
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    mine = get(client, place.grandma, f"{ACTIVITIES}/signups/mine").get_json()["items"]
    assert [(s["id"], s["status"], s["waitlist_position"]) for s in mine] == [
        (waiting["id"], "confirmed", None)]
    (message,) = messages_to(place.grandma)
    assert message["template_id"] == "tmpl-activity-promoted"
    assert message["data"]["thing1"]["value"] == "端午香囊手工课"
    assert message["page"] == f"pages/activities/detail?id={activity.id}"


def test_cancelling_someone_elses_signup_is_404(client, place):
    activity = publish(place)
    seat = signup(client, place.li, activity.id).get_json()
    r = post(client, place.grandma, f"{ACTIVITIES}/{activity.id}/signups/{seat['id']}/cancel")
    assert (r.status_code, error_code(r)) == (404, "signup_not_found")
    assert str(fresh(Signup, seat["id"]).status) == "confirmed"


# ---- check-in codes and scanning -----------------------------------------------------------

def soon(place, **fields) -> Activity:
    return publish(place, starts_in=timedelta(hours=1), hours=3, **fields)


def test_the_qr_endpoint_gives_the_token_and_a_png(client, place):
    activity = soon(place)
    seat = signup(client, place.li, activity.id).get_json()
    r = get(client, place.li, f"{ACTIVITIES}/signups/{seat['id']}/qr")
    body = r.get_json()
    assert body["signup_id"] == seat["id"] and len(body["token"]) > 40
    assert base64.b64decode(body["png"].removeprefix("data:image/png;base64,"))[:4] == \
        b"\x89PNG"
    image = get(client, place.li, f"{ACTIVITIES}/signups/{seat['id']}/qr", format="png")
    assert image.mimetype == "image/png" and image.data[:4] == b"\x89PNG"
    assert get(client, place.grandma, f"{ACTIVITIES}/signups/{seat['id']}/qr").status_code == 404
    documented = client.get("/openapi.json").get_json()["paths"][
        "/api/v1/activities/signups/{signup_id}/qr"]["get"]["responses"]["200"]["content"]
    assert set(documented) == {"application/json", "image/png"}  # found by the fuzzer


def test_scanning_is_idempotent_by_nonce_and_a_second_scan_is_already_checked_in(client,
                                                                                 place):
    activity = soon(place)
    seat = signup(client, place.li, activity.id).get_json()
    token = qr_token(client, place.li, seat["id"])
    first = checkin(client, place.clerk, activity.id, token)
    assert first.status_code == 200, first.get_json()
    again = checkin(client, place.clerk, activity.id, token)
    other = checkin(client, place.clerk, activity.id, token, nonce="scan-0002")
    assert first.get_json()["result"] == "checked_in"
    assert first.get_json()["signup"]["resident"]["display_name"] == "李建国"
    assert {k: v for k, v in again.get_json().items() if k != "replayed"} == {
        k: v for k, v in first.get_json().items() if k != "replayed"}
    assert (other.status_code, other.get_json()["result"]) == (200, "already_checked_in")
    assert get(client, place.li, f"{ACTIVITIES}/signups/mine").get_json()["items"][0][
        "status"] == "checked_in"
    assert count(CheckinScan) == 2
    assert count(ActivityEvent, ActivityEvent.action == "check_in") == 1


def test_an_offline_scanner_uploads_later_with_the_time_of_the_scan(client, place):
    activity = soon(place)
    seat = signup(client, place.li, activity.id).get_json()
    at = datetime.now(UTC) - timedelta(minutes=20)
    r = checkin(client, place.clerk, activity.id, qr_token(client, place.li, seat["id"]),
                scanned_at=iso(at))
    assert datetime.fromisoformat(r.get_json()["scanned_at"]) == at
    assert datetime.fromisoformat(r.get_json()["signup"]["checked_in_at"]) == at


def test_forged_foreign_and_expired_tokens_are_refused(client, place, monkeypatch):
    activity, other = soon(place), soon(place, title="另一个活动")
    seat = signup(client, place.li, activity.id).get_json()
    token = qr_token(client, place.li, seat["id"])
    foreign = qr_token(client, place.grandma, signup(client, place.grandma, other.id)
                       .get_json()["id"])
    forged = token.rsplit(".", 1)[0] + ".x" + token.rsplit(".", 1)[1][2:]
    for bad, code in ((forged, "checkin_token_invalid"),
                      (foreign, "checkin_token_wrong_activity")):
        r = checkin(client, place.clerk, activity.id, bad)
        assert (r.status_code, error_code(r)) == (422, code)
        assert "token" in r.get_json()["error"]["details"]["fields"]
    monkeypatch.setattr(activities, "now", lambda: activity.ends_at + timedelta(hours=2, seconds=1))
    r = checkin(client, place.clerk, activity.id, token)
    assert (r.status_code, error_code(r)) == (422, "checkin_token_expired")
    assert count(CheckinScan) == 0


def test_check_in_for_a_cancelled_activity_is_409(client, place):
    activity = soon(place)
    seat = signup(client, place.li, activity.id).get_json()
    token = qr_token(client, place.li, seat["id"])
    post(client, place.clerk, f"{STAFF}/{activity.id}/cancel", {"reason": "取消"})
    r = checkin(client, place.clerk, activity.id, token)
    assert (r.status_code, error_code(r)) == (409, "activity_cancelled")
    assert count(CheckinScan) == 0


def test_only_the_activitys_staff_may_scan(client, place):
    activity = soon(place)
    seat = signup(client, place.li, activity.id).get_json()
    token = qr_token(client, place.li, seat["id"])
    assert checkin(client, place.other_clerk, activity.id, token).status_code == 404
    assert checkin(client, place.li, activity.id, token).status_code == 403
    assert count(CheckinScan) == 0


def test_a_volunteer_checks_out_and_the_hours_reach_the_time_bank(client, place, monkeypatch):
    activity = soon(place, volunteer_roles=[{"code": "helper", "name": "手工助教",
                                             "capacity": 2, "hours": 2}])
    seat = signup(client, place.li, activity.id, role="helper").get_json()
    token = qr_token(client, place.li, seat["id"])
    monkeypatch.setattr(activities, "now", lambda: activity.starts_at + timedelta(hours=3))
    checkin(client, place.clerk, activity.id, token, scanned_at=iso(activity.starts_at))
    r = post(client, place.clerk, f"{STAFF}/{activity.id}/checkouts",
             {"token": token, "nonce": "scan-out-1",
              "scanned_at": iso(activity.starts_at + timedelta(minutes=90))})
    assert r.status_code == 200 and r.get_json()["result"] == "checked_out"
    assert r.get_json()["signup"]["credited_hours"] == 1.5
    account = get(client, place.li, "/api/v1/timebank/me").get_json()
    assert (account["balance"], account["hours_total"]) == (15, 1.5)
    assert [(e["kind"], e["points"], e["hours"]) for e in account["entries"]] == [
        ("credit", 15, 1.5)]


def test_staff_mark_attendance_by_hand(client, place):
    activity = soon(place)
    seat = signup(client, place.grandma, activity.id).get_json()
    r = post(client, place.clerk, f"{STAFF}/{activity.id}/signups/{seat['id']}/attendance",
             {"action": "check_in", "note": "老人没有手机"})
    assert r.status_code == 200 and r.get_json()["result"] == "checked_in"
    r = post(client, place.clerk, f"{STAFF}/{activity.id}/signups/{seat['id']}/attendance",
             {"action": "check_in"})
    assert r.get_json()["result"] == "already_checked_in"


# ---- the capacity guarantee (PostgreSQL) ---------------------------------------------------

# The 200-signup proof runs through the service (tests/services/test_activities.py): one process
# with 200 request threads would exhaust redis-py's pool of 100 connections (the JWT blocklist
# check) before it ever reached the database. Here 90 concurrent HTTP requests show the same
# guarantee end to end: every answer a 201, exactly the seats there are.
@pytest.mark.postgres
@pytest.mark.concurrency
def test_concurrent_http_signups_fill_exactly_the_seats_and_never_answer_5xx(app, place):
    activity_id = publish(place, capacity=30, max_party_size=3).id
    people = residents(place.comm, 90)
    sizes = [(1, 2, 3, 1)[i % 4] for i in range(90)]
    auth = [f.headers(person) for person in people]
    barrier = threading.Barrier(90)
    answers: list = [None] * 90

    def attempt(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        r = client.post(f"{ACTIVITIES}/{activity_id}/signups",
                        json={"party_size": sizes[i]}, headers=auth[i])
        answers[i] = (r.status_code, r.get_json())

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(90)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [status for status, _ in answers] == [201] * 90
    bodies = [body for _, body in answers]
    confirmed = [b for b in bodies if b["status"] == "confirmed"]
    waiting = sorted((b for b in bodies if b["status"] == "waitlisted"),
                     key=lambda b: b["waitlist_position"])
    assert sum(b["party_size"] for b in confirmed) == 30
    assert fresh(Activity, activity_id).seats_taken == 30 == seated(activity_id)
    assert [b["waitlist_position"] for b in waiting] == list(range(1, len(waiting) + 1))
    queue = dict(db.session.execute(select(Signup.id, Signup.queue_no).where(
        Signup.activity_id == activity_id)).all())
    assert [queue[b["id"]] for b in waiting] == sorted(queue[b["id"]] for b in waiting)
