"""The booking API as residents (mini-program) and providers' staff use it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq.job import Job

from app.extensions import redis_store
from app.models import Booking, BookingEvent, IdempotencyRecord, OutboxMessage, Slot
from tests import factories as f
from tests.booking_fixtures import (
    MASKED_PHONE,
    Clock,
    build_place,
    count,
    events_of,
    fresh,
    iso,
    local,
    messages_to,
    notifications_for,
    run_reminder,
    scheduled_reminders,
    slot_row,
)
from tests.sql_fixtures import statements
from workers.booking import reminder_job_id

API = "/api/v1"


@pytest.fixture
def place(app):
    return build_place()


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def get(client, user, url, **params):
    return client.get(url, query_string=params, headers=f.headers(user))


def post(client, user, url, body=None, **headers):
    return client.post(url, json=body or {}, headers=f.headers(user) | headers)


def create(client, user, service, start, **body):
    return post(client, user, f"{API}/bookings",
                {"service_id": service.id, "start": iso(start), **body})


def error(response) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["code"]


def rows() -> tuple[int, int, int, int]:
    """Everything a refused booking could have written."""
    return count(Booking), count(BookingEvent), count(OutboxMessage), count(IdempotencyRecord)


def slot_items(client, user, service, **params) -> list[dict]:
    r = get(client, user, f"{API}/services/{service.id}/slots", **params)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def one_day(day_offset: int = 1) -> dict:
    day = (local(day_offset)).date().isoformat()
    return {"from": day, "to": day}




# ---- catalogue -------------------------------------------------------------------------------

def test_the_catalogue_lists_my_communitys_services_with_the_names_the_app_uses(client, place):
    r = get(client, place.resident, f"{API}/services")
    assert r.status_code == 200
    items = {s["code"]: s for s in r.get_json()["items"]}
    assert set(items) == {"home_care", "study_room", "childcare", "rival"}
    home = items["home_care"]
    assert {"id", "name", "capacity", "duration_minutes"} <= set(home)
    assert home["name"] == "上门助老服务" and home["capacity"] == 2
    assert home["location"] == "home" and home["min_age"] == 60 and home["urgent_visits"]
    assert home["provider"] == {"id": place.care.id, "code": "care", "name": "助老服务中心"}
    assert home["opening_hours"][0] == {"weekday": 0, "opens": "08:00", "closes": "20:00"}
    assert r.get_json()["next_cursor"] is None


def test_a_service_shows_its_rules_and_coming_exceptions(client, place):
    post(client, place.office_clerk, f"{API}/staff/services/{place.study.id}/exceptions",
         {"date": local(3).date().isoformat(), "kind": "closed", "note": "消防检查"})
    r = get(client, place.resident, f"{API}/services/{place.study.id}")
    assert r.status_code == 200
    body = r.get_json()
    assert body["min_notice_minutes"] == 120 and body["horizon_days"] == 14
    assert body["cancel_deadline_minutes"] == 120 and body["max_open_per_resident"] == 2
    assert body["timezone"] == "Asia/Shanghai"
    assert body["exceptions"] == [{"id": body["exceptions"][0]["id"], "kind": "closed",
                                   "date": local(3).date().isoformat(), "opens": None,
                                   "closes": None, "note": "消防检查"}]


def test_an_unknown_or_other_communitys_service_is_404(client, place):
    for service_id in (999_999, place.far_service.id):
        r = get(client, place.resident, f"{API}/services/{service_id}")
        assert error(r) == (404, "service_not_found")
        r = get(client, place.resident, f"{API}/services/{service_id}/slots")
        assert error(r) == (404, "service_not_found")
    r = create(client, place.resident, place.far_service, local(1, 10))
    assert error(r) == (404, "service_not_found") and rows()[:3] == (0, 0, 0)


# ---- slots -----------------------------------------------------------------------------------

def test_slots_have_start_end_and_remaining_in_the_communitys_time(client, place):
    items = slot_items(client, place.resident, place.study, **one_day(2))
    assert [i["start"][11:16] for i in items] == ["08:00", "10:00", "12:00", "14:00", "16:00",
                                                  "18:00"]
    first = items[0]
    assert first == {"start": iso(local(2, 8)), "end": iso(local(2, 10)), "capacity": 3,
                     "remaining": 3}
    assert first["start"].endswith("+08:00")


def test_remaining_falls_with_each_booking_and_a_full_slot_shows_zero(client, place):
    for user in (place.resident, place.elder, place.neighbour):
        assert create(client, user, place.study, local(2, 10)).status_code == 201
    items = {i["start"]: i for i in slot_items(client, place.resident, place.study,
                                               **one_day(2))}
    assert items[iso(local(2, 10))]["remaining"] == 0
    assert items[iso(local(2, 8))]["remaining"] == 3


def test_slots_default_to_a_week_from_today_and_respect_notice_and_horizon(client, place,
                                                                           clock):
    clock.set(local(0, 9, 30))
    items = slot_items(client, place.resident, place.home_care)
    days = sorted({i["start"][:10] for i in items})
    assert days[0] == local(0).date().isoformat() and len(days) == 7
    assert items[0]["start"] == iso(local(0, 12))  # 10:00 and 11:00 are inside the 2 h notice
    far = slot_items(client, place.resident, place.home_care,
                     **{"from": local(10).date().isoformat(),
                        "to": local(20).date().isoformat()})
    assert far[-1]["start"][:10] == local(13).date().isoformat()  # 14 days including today


@pytest.mark.parametrize(("params", "code"), [
    ({"from": "2027-01-01", "to": "2027-02-01"}, "range_too_long"),
    ({"from": "2027-01-05", "to": "2027-01-04"}, "invalid_range"),
])
def test_a_slot_range_over_31_days_or_backwards_is_422(client, place, params, code):
    r = get(client, place.resident, f"{API}/services/{place.study.id}/slots", **params)
    assert error(r) == (422, code)
    assert r.get_json()["error"]["details"]["fields"]["to"]


def test_a_slot_range_that_is_not_a_date_is_422(client, place):
    r = get(client, place.resident, f"{API}/services/{place.study.id}/slots",
            **{"from": "tomorrow"})
    assert r.status_code == 422 and "from" in r.get_json()["error"]["details"]["fields"]


def test_closed_days_and_blocked_slots_never_appear(client, place):
    r = post(client, place.office_clerk, f"{API}/staff/services/{place.study.id}/exceptions",
             {"date": local(2).date().isoformat(), "kind": "closed"})
    assert r.status_code == 201
    assert slot_items(client, place.resident, place.study, **one_day(2)) == []
    r = post(client, place.office_clerk, f"{API}/staff/services/{place.study.id}/slots",
             {"start": iso(local(3, 10)), "blocked": True})
    assert r.status_code == 200 and r.get_json()["blocked"] is True
    starts = [i["start"] for i in slot_items(client, place.resident, place.study, **one_day(3))]
    assert iso(local(3, 10)) not in starts and iso(local(3, 8)) in starts


# ---- booking ---------------------------------------------------------------------------------

def test_a_booking_is_201_confirmed_with_the_names_the_app_uses(client, place):
    r = create(client, place.resident, place.study, local(2, 10), note="带笔记本电脑")
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["status"] == "confirmed" and body["status_label"] == "已预约"
    assert body["start"] == iso(local(2, 10)) and body["end"] == iso(local(2, 12))
    assert body["service"]["id"] == place.study.id and body["service"]["name"] == "共享书屋"
    assert body["for_member"] == {"id": place.resident.id, "display_name": "王女士"}
    assert body["note"] == "带笔记本电脑"
    assert body["cancel_deadline"] == iso(local(2, 8))
    assert [e["action"] for e in body["timeline"]] == ["book"]


def test_a_service_needing_confirmation_answers_pending(client, place):
    r = create(client, place.resident, place.childcare, local(2, 9),
               for_member_id=place.toddler.id)
    assert r.status_code == 201 and r.get_json()["status"] == "pending"


def test_a_home_visit_goes_to_the_members_address(client, place):
    r = create(client, place.resident, place.home_care, local(2, 9),
               for_member_id=place.elder.id, note="需要助浴")
    assert r.status_code == 201
    assert r.get_json()["address"] == "3号楼1单元101"
    assert r.get_json()["for_member"]["display_name"] == "王阿婆"


def test_the_same_idempotency_key_replays_the_booking(client, place):
    headers = {"Idempotency-Key": "book-1"}
    first = post(client, place.resident, f"{API}/bookings",
                 {"service_id": place.study.id, "start": iso(local(2, 10))}, **headers)
    again = post(client, place.resident, f"{API}/bookings",
                 {"service_id": place.study.id, "start": iso(local(2, 10))}, **headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count(Booking) == 1 and slot_row(place.study, local(2, 10)).booked == 1


def test_slot_full_is_409_and_writes_nothing(client, place):
    for user in (place.resident, place.elder, place.neighbour):
        create(client, user, place.study, local(2, 10))
    before = rows()
    late = f.resident(place.comm, household=f.household_of(place.bld, "2", "201"))
    r = post(client, late, f"{API}/bookings",
             {"service_id": place.study.id, "start": iso(local(2, 10))},
             **{"Idempotency-Key": "late-1"})
    assert error(r) == (409, "slot_full")
    assert r.get_json()["error"]["message"] == "该时段已约满"
    assert rows() == before
    assert slot_row(place.study, local(2, 10)).booked == 3


def test_booking_a_slot_the_person_already_holds_is_409_and_writes_nothing(client, place):
    first = create(client, place.resident, place.study, local(2, 10)).get_json()
    before = rows()
    r = create(client, place.resident, place.study, local(2, 10))
    assert error(r) == (409, "already_booked")
    assert r.get_json()["error"]["details"]["booking_id"] == first["id"]
    assert rows() == before and slot_row(place.study, local(2, 10)).booked == 1
    r = create(client, place.elder, place.study, local(2, 10), for_member_id=place.resident.id)
    assert error(r) == (409, "already_booked")  # booked by her family, still one place
    r = create(client, place.resident, place.study, local(2, 10), for_member_id=place.elder.id)
    assert r.status_code == 201  # another person of the household may come too
    assert slot_row(place.study, local(2, 10)).booked == 2


@pytest.mark.parametrize(("case", "code"), [
    ("outside_hours", "outside_opening_hours"),
    ("off_grid", "not_on_grid"),
    ("inside_notice", "inside_minimum_notice"),
    ("beyond_horizon", "beyond_horizon"),
    ("past", "slot_in_past"),
    ("not_eligible", "not_eligible"),
    ("not_my_household", "member_not_in_household"),
])
def test_each_broken_rule_is_422_with_its_code_and_nothing_is_written(client, place, clock,
                                                                     case, code):
    clock.set(local(1, 9, 30))
    service, start, extra = place.study, local(2, 10), {}
    if case == "outside_hours":
        start = local(2, 20)
    elif case == "off_grid":
        start = local(2, 11)  # 2-hour blocks from 08:00
    elif case == "inside_notice":
        start = local(1, 10)
    elif case == "beyond_horizon":
        start = local(15, 10)
    elif case == "past":
        start = local(1, 8)
    elif case == "not_eligible":
        service, start = place.home_care, local(2, 9)
    elif case == "not_my_household":
        service, start, extra = place.home_care, local(2, 9), {"for_member_id":
                                                               place.neighbour.id}
    r = create(client, place.resident, service, start, **extra)
    assert error(r) == (422, code), r.get_json()
    assert r.get_json()["error"]["details"]["fields"]
    assert rows()[:3] == (0, 0, 0) and count(Slot) == 0


def test_the_per_resident_limit_is_422(client, place):
    for hour in (8, 10):
        assert create(client, place.resident, place.study, local(2, hour)).status_code == 201
    before = rows()
    r = create(client, place.resident, place.study, local(2, 12))
    assert error(r) == (422, "booking_limit_reached")
    assert r.get_json()["error"]["details"]["limit"] == 2
    assert rows() == before


def test_a_bad_body_is_422_with_field_messages(client, place):
    r = post(client, place.resident, f"{API}/bookings", {"service_id": "x", "start": "soon"})
    assert r.status_code == 422
    assert {"service_id", "start"} <= set(r.get_json()["error"]["details"]["fields"])
    assert count(Booking) == 0


def test_staff_cannot_book_as_a_resident(client, place):
    r = create(client, place.carer, place.study, local(2, 10))
    assert error(r) == (403, "forbidden_role")


# ---- my bookings -----------------------------------------------------------------------------

def test_mine_lists_upcoming_first_then_past_across_pages(client, place, clock):
    clock.set(local(-5, 6))
    past = [create(client, place.resident, place.study, local(days, 10)).get_json()["id"]
            for days in (-4, -3)]
    clock.set(local(0, 6))
    upcoming = [create(client, place.resident, place.study, local(d, h)).get_json()["id"]
                for d, h in ((3, 10), (1, 14))]
    mine = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        r = get(client, place.resident, f"{API}/bookings/mine", **params)
        assert r.status_code == 200
        mine += [b["id"] for b in r.get_json()["items"]]
        cursor = r.get_json()["next_cursor"]
        pages += 1
        if not cursor:
            break
    assert mine == [upcoming[1], upcoming[0], past[1], past[0]]
    assert pages == 4


def test_mine_includes_bookings_made_for_me_and_runs_constant_sql(client, place):
    for hour in (8, 10):
        create(client, place.resident, place.home_care, local(2, hour),
               for_member_id=place.elder.id)
    create(client, place.elder, place.home_care, local(2, 12))
    r = get(client, place.elder, f"{API}/bookings/mine")
    assert len(r.get_json()["items"]) == 3
    url, headers = f"{API}/bookings/mine", f.headers(place.elder)
    with statements() as few:  # a page of 3: upcoming query, then the past one
        client.get(url, query_string={"limit": 3}, headers=headers)
    with statements() as many:
        client.get(url, query_string={"limit": 50}, headers=headers)
    assert len(many) == len(few)


def test_a_bad_cursor_is_422(client, place):
    r = get(client, place.resident, f"{API}/bookings/mine", cursor="nonsense!")
    assert error(r) == (422, "invalid_cursor")


def test_someone_elses_booking_is_404(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    assert get(client, place.resident, f"{API}/bookings/{booking_id}").status_code == 200
    r = get(client, place.neighbour, f"{API}/bookings/{booking_id}")
    assert error(r) == (404, "booking_not_found")


def test_the_people_i_can_book_for(client, place):
    r = get(client, place.resident, f"{API}/bookings/people")
    people = r.get_json()["items"]
    assert [(p["display_name"], p["relation"]) for p in people] == [
        ("王女士", "self"), ("王阿婆", "parent"), ("小宝", "child")]
    assert people[1]["household"]["label"] == "3号楼1单元101"


# ---- cancel ----------------------------------------------------------------------------------

def test_cancel_frees_the_place_at_once(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    r = post(client, place.resident, f"{API}/bookings/{booking_id}/cancel", {"reason": "有事"})
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert r.get_json()["cancel_reason"] == "有事"
    items = {i["start"]: i for i in slot_items(client, place.resident, place.study,
                                               **one_day(2))}
    assert items[iso(local(2, 10))]["remaining"] == 3


def test_cancelling_someone_elses_booking_is_404_and_changes_nothing(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    r = post(client, place.neighbour, f"{API}/bookings/{booking_id}/cancel", {})
    assert error(r) == (404, "booking_not_found")
    assert fresh(booking_id).status == "confirmed" and len(events_of(booking_id)) == 1


def test_cancelling_after_the_deadline_is_409_with_the_deadline(client, place, clock):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    clock.set(local(2, 8, 1))
    r = post(client, place.resident, f"{API}/bookings/{booking_id}/cancel", {})
    assert error(r) == (409, "cancellation_deadline_passed")
    assert r.get_json()["error"]["details"] == {"deadline": iso(local(2, 8))}
    assert fresh(booking_id).status == "confirmed"
    assert slot_row(place.study, local(2, 10)).booked == 1


def test_a_cancelled_bookings_reminder_is_never_sent(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    job_id = reminder_job_id(booking_id, 1)
    assert scheduled_reminders() == {job_id: local(2, 8)}
    escaped = Job.fetch(job_id, connection=redis_store.client)  # as if already enqueued
    post(client, place.resident, f"{API}/bookings/{booking_id}/cancel", {})
    assert scheduled_reminders() == {}
    assert escaped.func(*escaped.args) == 0
    assert notifications_for(place.resident, "booking_reminder") == []
    assert [m["template_id"] for m in messages_to(place.resident)] == [
        "tmpl-booking-confirmed", "tmpl-booking-cancelled"]


def test_a_confirmed_bookings_reminder_is_sent_when_due(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    assert run_reminder(reminder_job_id(booking_id, 1)) == 1
    reminder = messages_to(place.resident)[-1]
    assert reminder["template_id"] == "tmpl-booking-reminder"
    assert reminder["data"]["time2"]["value"] == f"{local(2, 10):%Y-%m-%d %H:%M}"
    assert reminder["page"] == f"pages/booking/detail?id={booking_id}"


# ---- reschedule ------------------------------------------------------------------------------

def test_reschedule_moves_the_booking_and_its_reminder(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    r = post(client, place.resident, f"{API}/bookings/{booking_id}/reschedule",
             {"start": iso(local(3, 14))})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["start"] == iso(local(3, 14))
    assert [e["action"] for e in r.get_json()["timeline"]] == ["book", "reschedule"]
    assert slot_row(place.study, local(2, 10)).booked == 0
    assert slot_row(place.study, local(3, 14)).booked == 1
    assert scheduled_reminders() == {reminder_job_id(booking_id, 2): local(3, 12)}


def test_rescheduling_into_a_full_slot_is_409_and_nothing_changes(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    for user in (place.elder, place.neighbour, place.toddler):
        create(client, user, place.study, local(3, 14))
    r = post(client, place.resident, f"{API}/bookings/{booking_id}/reschedule",
             {"start": iso(local(3, 14))})
    assert error(r) == (409, "slot_full")
    assert fresh(booking_id).starts_at == local(2, 10)
    assert slot_row(place.study, local(2, 10)).booked == 1
    assert slot_row(place.study, local(3, 14)).booked == 3
    assert reminder_job_id(booking_id, 1) in scheduled_reminders()
    assert reminder_job_id(booking_id, 2) not in scheduled_reminders()


def test_rescheduling_into_a_slot_the_person_already_holds_is_409_and_nothing_changes(
        client, place):
    moving = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    held = create(client, place.elder, place.study, local(3, 14),
                  for_member_id=place.resident.id).get_json()["id"]  # booked for her by family
    r = post(client, place.resident, f"{API}/bookings/{moving}/reschedule",
             {"start": iso(local(3, 14))})
    assert error(r) == (409, "already_booked")
    assert r.get_json()["error"]["details"]["booking_id"] == held
    assert fresh(moving).starts_at == local(2, 10)
    assert slot_row(place.study, local(2, 10)).booked == 1
    assert slot_row(place.study, local(3, 14)).booked == 1


def test_rescheduling_a_completed_booking_is_409(client, place, clock):
    booking_id = create(client, place.resident, place.study, local(1, 10)).get_json()["id"]
    clock.set(local(1, 10, 5))
    for action in ("check_in", "complete"):
        r = post(client, place.office_clerk, f"{API}/staff/bookings/{booking_id}/transitions",
                 {"action": action})
        assert r.status_code == 200, r.get_json()
    clock.set(local(0, 9))
    r = post(client, place.resident, f"{API}/bookings/{booking_id}/reschedule",
             {"start": iso(local(3, 14))})
    assert error(r) == (409, "invalid_transition")
    assert r.get_json()["error"]["details"]["status"] == "completed"


# ---- staff -----------------------------------------------------------------------------------

def test_the_providers_day_in_time_order_with_name_masked_phone_address_and_notes(client,
                                                                                 place):
    later = create(client, place.resident, place.home_care, local(2, 15),
                   for_member_id=place.elder.id, note="需要助浴").get_json()["id"]
    earlier = create(client, place.resident, place.home_care, local(2, 9),
                     for_member_id=place.elder.id).get_json()["id"]
    create(client, place.resident, place.home_care, local(3, 9), for_member_id=place.elder.id)
    create(client, place.resident, place.study, local(2, 10))
    r = get(client, place.carer, f"{API}/staff/bookings", date=local(2).date().isoformat())
    assert r.status_code == 200
    items = r.get_json()["items"]
    assert [i["id"] for i in items] == [earlier, later]
    item = items[1]
    assert item["booked_by"] == {"id": place.resident.id, "display_name": "王女士",
                                 "phone": MASKED_PHONE, "birth_year": place.resident.birth_year}
    assert item["for_member"]["display_name"] == "王阿婆"
    assert item["address"] == "3号楼1单元101" and item["note"] == "需要助浴"
    assert item["household"] == "3号楼1单元101" and item["urgent"] is False


def test_staff_filters_by_service_and_status(client, place):
    create(client, place.resident, place.study, local(2, 10))
    pending = create(client, place.resident, place.childcare, local(2, 9),
                     for_member_id=place.toddler.id).get_json()["id"]
    day = local(2).date().isoformat()
    r = get(client, place.office_clerk, f"{API}/staff/bookings", date=day, status="pending")
    assert [i["id"] for i in r.get_json()["items"]] == [pending]
    r = get(client, place.office_clerk, f"{API}/staff/bookings", date=day,
            service_id=place.study.id)
    assert [i["service"]["code"] for i in r.get_json()["items"]] == ["study_room"]


def test_the_staff_list_runs_constant_sql(client, place):
    for user in (place.resident, place.elder, place.neighbour):
        create(client, user, place.study, local(2, 10))
    url, headers = f"{API}/staff/bookings", f.headers(place.office_clerk)
    day = local(2).date().isoformat()
    with statements() as few:
        client.get(url, query_string={"date": day, "limit": 1}, headers=headers)
    with statements() as many:
        r = client.get(url, query_string={"date": day, "limit": 100}, headers=headers)
    assert len(r.get_json()["items"]) == 3 and len(many) == len(few)


def test_staff_transitions_confirm_and_the_resident_hears(client, place):
    booking_id = create(client, place.resident, place.childcare, local(2, 9),
                        for_member_id=place.toddler.id).get_json()["id"]
    r = post(client, place.office_clerk, f"{API}/staff/bookings/{booking_id}/transitions",
             {"action": "confirm", "note": "请带疫苗本"})
    assert r.status_code == 200 and r.get_json()["status"] == "confirmed"
    assert [(e["action"], e["from_status"], e["to_status"]) for e in r.get_json()["timeline"]] \
        == [("book", None, "pending"), ("confirm", "pending", "confirmed")]
    titles = [n.title for n in notifications_for(place.resident, "booking_confirmed")]
    assert titles == ["预约已确认：托育中心"]


def test_an_illegal_staff_move_is_409(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    r = post(client, place.office_clerk, f"{API}/staff/bookings/{booking_id}/transitions",
             {"action": "complete"})
    assert error(r) == (409, "invalid_transition")
    assert len(events_of(booking_id)) == 1


def test_an_unknown_action_is_422(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    r = post(client, place.office_clerk, f"{API}/staff/bookings/{booking_id}/transitions",
             {"action": "cancel"})
    assert r.status_code == 422 and "action" in r.get_json()["error"]["details"]["fields"]


def test_a_resident_calling_a_staff_endpoint_is_403(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    r = post(client, place.resident, f"{API}/staff/bookings/{booking_id}/transitions",
             {"action": "confirm"})
    assert error(r) == (403, "forbidden_role")
    assert error(get(client, place.resident, f"{API}/staff/bookings")) == (403, "forbidden_role")
    r = post(client, place.resident, f"{API}/staff/services/{place.study.id}/exceptions",
             {"date": local(2).date().isoformat(), "kind": "closed"})
    assert error(r) == (403, "forbidden_role")
    assert client.get(f"{API}/staff/bookings").status_code == 401


def test_staff_of_another_provider_get_404(client, place):
    booking_id = create(client, place.resident, place.study, local(2, 10)).get_json()["id"]
    day = local(2).date().isoformat()
    assert get(client, place.rival_staff, f"{API}/staff/bookings",
               date=day).get_json()["items"] == []
    r = get(client, place.rival_staff, f"{API}/staff/bookings/{booking_id}")
    assert error(r) == (404, "booking_not_found")
    r = post(client, place.rival_staff, f"{API}/staff/bookings/{booking_id}/transitions",
             {"action": "no_show"})
    assert error(r) == (404, "booking_not_found")
    r = post(client, place.rival_staff, f"{API}/staff/services/{place.study.id}/exceptions",
             {"date": day, "kind": "closed"})
    assert error(r) == (404, "service_not_found")
    r = post(client, place.rival_staff, f"{API}/staff/services/{place.study.id}/slots",
             {"start": iso(local(2, 10)), "capacity": 10})
    assert error(r) == (404, "service_not_found")
    assert fresh(booking_id).status == "confirmed" and count(Booking) == 1


# ---- staff: exceptions and slot capacity -----------------------------------------------------

def test_extra_hours_add_slots_and_a_closure_reports_the_bookings_affected(client, place):
    create(client, place.resident, place.study, local(2, 10))
    url = f"{API}/staff/services/{place.study.id}/exceptions"
    r = post(client, place.office_clerk, url, {"date": local(3).date().isoformat(),
                                               "kind": "open", "opens": "20:00",
                                               "closes": "22:00"})
    assert r.status_code == 201 and r.get_json()["opens"] == "20:00"
    assert slot_items(client, place.resident, place.study, **one_day(3))[-1]["start"] == \
        iso(local(3, 20))
    r = post(client, place.office_clerk, url, {"date": local(2).date().isoformat(),
                                               "kind": "closed", "note": "停电"})
    assert r.status_code == 201 and r.get_json()["affected_bookings"] == 1
    listed = get(client, place.office_clerk, url).get_json()["items"]
    assert [e["kind"] for e in listed] == ["closed", "open"]
    r = client.delete(f"{url}/{listed[0]['id']}", headers=f.headers(place.office_clerk))
    assert r.status_code == 204
    assert slot_items(client, place.resident, place.study, **one_day(2))


@pytest.mark.parametrize("body", [
    {"kind": "open"},
    {"kind": "open", "opens": "20:00", "closes": "19:00"},
    {"kind": "closed", "opens": "25:00", "closes": "26:00"},
    {"kind": "closed", "opens": "10:00"},
])
def test_bad_exception_hours_are_422(client, place, body):
    r = post(client, place.office_clerk, f"{API}/staff/services/{place.study.id}/exceptions",
             {"date": local(2).date().isoformat()} | body)
    assert r.status_code == 422, r.get_json()


def test_an_exception_in_the_past_is_422(client, place):
    r = post(client, place.office_clerk, f"{API}/staff/services/{place.study.id}/exceptions",
             {"date": (local(0) - timedelta(days=1)).date().isoformat(), "kind": "closed"})
    assert error(r) == (422, "date_in_past")


def test_staff_add_capacity_to_one_slot_but_never_below_the_booked(client, place):
    for user in (place.resident, place.elder, place.neighbour):
        create(client, user, place.study, local(2, 10))
    url = f"{API}/staff/services/{place.study.id}/slots"
    r = post(client, place.office_clerk, url, {"start": iso(local(2, 10)), "capacity": 5})
    assert r.status_code == 200
    assert r.get_json() == {"start": iso(local(2, 10)), "end": iso(local(2, 12)),
                            "capacity": 5, "booked": 3, "remaining": 2, "blocked": False}
    late = f.resident(place.comm, household=f.household_of(place.bld, "2", "201"))
    assert create(client, late, place.study, local(2, 10)).status_code == 201
    r = post(client, place.office_clerk, url, {"start": iso(local(2, 10)), "capacity": 3})
    assert error(r) == (409, "capacity_below_booked")
    assert r.get_json()["error"]["details"] == {"booked": 4}
    r = post(client, place.office_clerk, url, {"start": iso(local(2, 11))})
    assert r.status_code == 422
    r = post(client, place.office_clerk, url, {"start": iso(local(2, 11)), "blocked": True})
    assert error(r) == (422, "not_on_grid")


# ---- one-tap urgent visit --------------------------------------------------------------------

def test_one_tap_reaches_the_carers_and_the_grid_worker_who_accept_it(client, place):
    r = post(client, place.elder, f"{API}/bookings/urgent-visit", {"note": "身体不舒服"},
             **{"Idempotency-Key": "sos-1"})
    assert r.status_code == 201, r.get_json()
    visit = r.get_json()
    assert visit["urgent"] is True and visit["status"] == "pending"
    assert visit["address"] == "3号楼1单元101" and visit["accepted_by"] is None
    listed = get(client, place.grid_worker, f"{API}/staff/bookings").get_json()["items"]
    assert [(i["id"], i["urgent"]) for i in listed] == [(visit["id"], True)]
    carer_list = get(client, place.carer, f"{API}/staff/bookings", kind="urgent")
    assert [i["id"] for i in carer_list.get_json()["items"]] == [visit["id"]]
    r = post(client, place.carer, f"{API}/staff/bookings/{visit['id']}/transitions",
             {"action": "confirm"})
    assert r.status_code == 200
    mine = get(client, place.elder, f"{API}/bookings/{visit['id']}").get_json()
    assert mine["status"] == "confirmed"
    assert mine["accepted_by"]["id"] == place.carer.id
    assert [e["action"] for e in mine["timeline"]] == ["request_urgent", "route", "confirm"]
    r = post(client, place.grid_worker, f"{API}/staff/bookings/{visit['id']}/transitions",
             {"action": "confirm"})
    assert error(r) == (409, "invalid_transition")


def test_a_second_tap_while_one_is_open_is_409(client, place):
    first = post(client, place.elder, f"{API}/bookings/urgent-visit", {}).get_json()["id"]
    r = post(client, place.elder, f"{API}/bookings/urgent-visit", {})
    assert error(r) == (409, "urgent_visit_open")
    assert r.get_json()["error"]["details"] == {"booking_id": first}
    assert count(Booking) == 1


def test_an_urgent_visit_stays_in_the_staff_list_until_handled(client, place, clock):
    visit = post(client, place.elder, f"{API}/bookings/urgent-visit", {}).get_json()["id"]
    clock.set(local(1, 9))
    items = get(client, place.carer, f"{API}/staff/bookings").get_json()["items"]
    assert [i["id"] for i in items] == [visit]


def test_an_urgent_visit_cannot_be_rescheduled(client, place):
    visit = post(client, place.elder, f"{API}/bookings/urgent-visit", {}).get_json()["id"]
    r = post(client, place.elder, f"{API}/bookings/{visit}/reschedule",
             {"start": iso(local(2, 9))})
    assert error(r) == (409, "invalid_transition")
    r = post(client, place.elder, f"{API}/bookings/{visit}/cancel", {})
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"


def test_one_tap_for_someone_outside_my_household_is_422(client, place):
    r = post(client, place.resident, f"{API}/bookings/urgent-visit",
             {"for_member_id": place.neighbour.id})
    assert error(r) == (422, "member_not_in_household")
    assert count(Booking) == 0
