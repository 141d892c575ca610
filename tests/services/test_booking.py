"""The booking service: capacity in the database, rules, reschedule, reminders, staff moves.

The concurrency proofs at the end run only on PostgreSQL (marks postgres + concurrency): many
threads, each with its own app context and session, hit the real service layer at once.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from rq.job import Job
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.errors import APIError, Conflict, InvalidTransition, NotFound, ValidationFailed
from app.extensions import db, redis_store
from app.models import Booking, BookingEvent, BookingStatus, Slot, User
from app.services import booking as booking_service
from app.services import booking_staff
from tests import factories as f
from tests.booking_fixtures import (
    Clock,
    book,
    build_place,
    count,
    events_of,
    fresh,
    local,
    make_service,
    messages_to,
    notifications_for,
    outbox_rows,
    run_reminder,
    scheduled_reminders,
    slot_row,
    this_year,
)
from tests.conftest import queue_routing_backlog, work_in_process
from workers.booking import (
    reminder_job_id,
    route_urgent_visit,
    send_booking_reminder,
    sync_booking_reminder,
)


@pytest.fixture
def place(app):
    return build_place()


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def staff_scope(user, org, role="staff"):
    return booking_staff.StaffScope(user_id=user.id, orgs=[{"id": org.id, "role": role}])


# ---- taking and giving back places -----------------------------------------------------------

def test_a_booking_takes_one_place_with_its_timeline_and_jobs_in_one_commit(place):
    booking = book(place)
    assert booking.status == BookingStatus.CONFIRMED and booking.kind == "slot"
    assert slot_row(place.study, local(1, 10)).booked == 1
    assert [(e.action, e.to_status) for e in events_of(booking.id)] == [("book", "confirmed")]
    assert [m.status for m in outbox_rows("notify_booking_event")] == ["done"]
    assert [m.status for m in outbox_rows("sync_booking_reminder")] == ["done"]


def test_the_capacity_check_constraint_is_a_backstop_below_python(place):
    book(place)
    slot = slot_row(place.study, local(1, 10))
    with pytest.raises(IntegrityError):
        db.session.execute(update(Slot).where(Slot.id == slot.id).values(booked=slot.capacity + 1))
        db.session.flush()
    db.session.rollback()
    with pytest.raises(IntegrityError):
        db.session.execute(update(Slot).where(Slot.id == slot.id).values(booked=-1))
        db.session.flush()
    db.session.rollback()


def test_the_last_place_goes_once_then_slot_full_and_nothing_is_written(place):
    for user in (place.resident, place.elder, place.neighbour):
        book(place, user=user)
    before = (count(Booking), count(BookingEvent))
    late = f.resident(place.comm, household=f.household_of(place.bld, "2", "201"))
    with pytest.raises(Conflict) as excinfo:
        book(place, user=late)
    assert excinfo.value.code == "slot_full" and excinfo.value.status == 409
    db.session.rollback()
    assert (count(Booking), count(BookingEvent)) == before
    assert slot_row(place.study, local(1, 10)).booked == 3


def test_a_blocked_slot_takes_no_booking(place):
    scope = staff_scope(place.office_clerk, place.office)
    booking_staff.adjust_slot(scope=scope, service_id=place.study.id, start=local(1, 10),
                                blocked=True)
    with pytest.raises(Conflict) as excinfo:
        book(place)
    assert excinfo.value.code == "slot_blocked"
    db.session.rollback()
    assert count(Booking) == 0


def test_a_service_that_needs_confirmation_books_as_pending_and_holds_the_place(place):
    booking = book(place, place.childcare, local(1, 9), for_member_id=place.toddler.id)
    assert booking.status == BookingStatus.PENDING and booking.for_user_id == place.toddler.id
    assert slot_row(place.childcare, local(1, 9)).booked == 1
    assert scheduled_reminders() == {}  # no reminder until the provider confirms


# ---- who may be served -----------------------------------------------------------------------

def test_elderly_services_go_by_the_age_of_the_person_served(place):
    booking = book(place, place.home_care, local(1, 9), for_member_id=place.elder.id)
    assert booking.for_user_id == place.elder.id and booking.address == "3号楼1单元101"
    with pytest.raises(ValidationFailed) as excinfo:
        book(place, place.home_care, local(1, 10))  # the 41-year-old herself
    assert excinfo.value.code == "not_eligible" and excinfo.value.details["min_age"] == 60
    assert excinfo.value.message == "该服务面向 60 岁及以上的居民"


def test_childcare_is_for_children_under_three(place):
    assert book(place, place.childcare, local(1, 9), for_member_id=place.toddler.id)
    with pytest.raises(ValidationFailed) as excinfo:
        book(place, place.childcare, local(1, 10), for_member_id=place.elder.id)
    assert excinfo.value.code == "not_eligible"
    assert excinfo.value.message == "该服务面向 3 岁以下的儿童"


def test_a_person_without_a_birth_year_is_asked_for_it(place):
    db.session.get(User, place.elder.id).birth_year = None
    db.session.commit()
    with pytest.raises(ValidationFailed) as excinfo:
        book(place, place.home_care, local(1, 9), for_member_id=place.elder.id)
    assert excinfo.value.details["reason"] == "birth_year_unknown"


@pytest.mark.parametrize("who", ["unclaimed", "neighbour", "outsider", "nobody"])
def test_only_approved_members_of_my_households_can_be_served(place, who):
    member_id = 999_999 if who == "nobody" else getattr(place, who).id
    with pytest.raises(ValidationFailed) as excinfo:
        book(place, place.home_care, local(1, 9), for_member_id=member_id)
    assert excinfo.value.code == "member_not_in_household"
    db.session.rollback()
    assert count(Booking) == 0 and count(Slot) == 0


def test_home_services_need_an_approved_household(place):
    loner = f.resident(place.comm, birth_year=this_year() - 70)
    with pytest.raises(ValidationFailed) as excinfo:
        book(place, place.home_care, local(1, 9), user=loner)
    assert excinfo.value.code == "household_required"


def test_the_people_i_can_book_for_are_me_and_my_households_approved_members(place):
    people = booking_service.household_people(user_id=place.resident.id)
    assert [(p["user"].id, p["relation"]) for p in people] == [
        (place.resident.id, "self"), (place.elder.id, "parent"), (place.toddler.id, "child")]


# ---- the per-resident limit ------------------------------------------------------------------

def test_at_most_n_open_bookings_per_service_and_resident(place):
    book(place, start=local(1, 8))
    book(place, start=local(1, 10))
    with pytest.raises(ValidationFailed) as excinfo:
        book(place, start=local(1, 12))
    assert excinfo.value.code == "booking_limit_reached" and excinfo.value.details["limit"] == 2
    db.session.rollback()
    assert count(Booking) == 2
    assert book(place, place.home_care, local(1, 9), for_member_id=place.elder.id)


def test_a_cancelled_booking_no_longer_counts_towards_the_limit(place):
    first = book(place, start=local(1, 8))
    book(place, start=local(1, 10))
    booking_service.cancel_booking(booking_id=first.id, user_id=place.resident.id)
    assert book(place, start=local(1, 12)).status == BookingStatus.CONFIRMED


# ---- cancel and reschedule -------------------------------------------------------------------

def test_cancel_frees_the_place_at_once(place):
    booking = book(place)
    done = booking_service.cancel_booking(booking_id=booking.id, user_id=place.resident.id,
                                          reason="临时有事")
    assert done.status == BookingStatus.CANCELLED and done.cancel_reason == "临时有事"
    assert slot_row(place.study, local(1, 10)).booked == 0
    assert [e.action for e in events_of(booking.id)] == ["book", "cancel"]


def test_cancel_after_the_deadline_is_409_with_the_deadline(place, clock):
    booking = book(place, start=local(1, 10))
    clock.set(local(1, 8, 30))
    with pytest.raises(Conflict) as excinfo:
        booking_service.cancel_booking(booking_id=booking.id, user_id=place.resident.id)
    assert excinfo.value.code == "cancellation_deadline_passed"
    assert excinfo.value.details["deadline"] == local(1, 8).isoformat()
    db.session.rollback()
    assert fresh(booking.id).status == BookingStatus.CONFIRMED
    assert slot_row(place.study, local(1, 10)).booked == 1


def test_someone_elses_booking_cannot_be_cancelled(place):
    booking = book(place)
    with pytest.raises(NotFound):
        booking_service.cancel_booking(booking_id=booking.id, user_id=place.neighbour.id)


def test_the_person_served_may_cancel_a_booking_made_for_them(place):
    booking = book(place, place.home_care, local(1, 9), for_member_id=place.elder.id)
    done = booking_service.cancel_booking(booking_id=booking.id, user_id=place.elder.id)
    assert done.status == BookingStatus.CANCELLED


def test_reschedule_moves_the_place_and_bumps_the_version(place):
    booking = book(place, start=local(1, 10))
    moved = booking_service.reschedule_booking(booking_id=booking.id,
                                               user_id=place.resident.id, start=local(2, 14))
    assert moved.start == local(2, 14) and moved.version == 2
    assert moved.status == BookingStatus.CONFIRMED
    assert slot_row(place.study, local(1, 10)).booked == 0
    assert slot_row(place.study, local(2, 14)).booked == 1
    event = events_of(booking.id)[-1]
    assert event.action == "reschedule"
    assert event.data == {"from": local(1, 10).isoformat(), "to": local(2, 14).isoformat()}


def test_reschedule_into_a_full_slot_changes_nothing(place):
    booking = book(place, start=local(1, 10))
    for user in (place.elder, place.neighbour, place.toddler):
        book(place, start=local(1, 14), user=user)
    with pytest.raises(Conflict) as excinfo:
        booking_service.reschedule_booking(booking_id=booking.id, user_id=place.resident.id,
                                           start=local(1, 14))
    assert excinfo.value.code == "slot_full"
    db.session.rollback()
    assert fresh(booking.id).start == local(1, 10) and fresh(booking.id).version == 1
    assert slot_row(place.study, local(1, 10)).booked == 1
    assert slot_row(place.study, local(1, 14)).booked == 3
    assert len(events_of(booking.id)) == 1


def test_reschedule_to_the_same_slot_or_off_the_grid_is_422(place):
    booking = book(place, start=local(1, 10))
    for start, code in ((local(1, 10), "same_slot"), (local(1, 10, 30), "not_on_grid"),
                        (local(30, 10), "beyond_horizon")):
        with pytest.raises(ValidationFailed) as excinfo:
            booking_service.reschedule_booking(booking_id=booking.id,
                                               user_id=place.resident.id, start=start)
        assert excinfo.value.code == code
        db.session.rollback()
    assert slot_row(place.study, local(1, 10)).booked == 1


def test_a_completed_booking_cannot_be_rescheduled_or_cancelled(place, clock):
    booking = book(place, start=local(1, 10))
    scope = staff_scope(place.office_clerk, place.office)
    clock.set(local(1, 10, 5))
    booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="check_in")
    booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="complete")
    clock.set(local(0, 9))
    with pytest.raises(InvalidTransition):
        booking_service.reschedule_booking(booking_id=booking.id, user_id=place.resident.id,
                                           start=local(2, 10))
    with pytest.raises(InvalidTransition):
        booking_service.cancel_booking(booking_id=booking.id, user_id=place.resident.id)


# ---- reminders -------------------------------------------------------------------------------

def test_a_confirmed_booking_has_a_reminder_on_rqs_scheduler_two_hours_before(place):
    booking = book(place, start=local(2, 10))
    job_id = reminder_job_id(booking.id, 1)
    assert scheduled_reminders() == {job_id: local(2, 8)}
    assert run_reminder(job_id) == 1  # the scheduler runs it when due
    assert [n.title for n in notifications_for(place.resident, "booking_reminder")] == [
        f"预约提醒：共享书屋 {local(2, 10):%Y-%m-%d %H:%M}"]
    sent = [m for m in messages_to(place.resident) if m["template_id"] == "tmpl-booking-reminder"]
    assert len(sent) == 1 and sent[0]["data"]["thing1"]["value"] == "共享书屋"
    assert run_reminder(job_id) == 0  # a retry never sends twice


def test_a_cancelled_bookings_reminder_is_not_sent_even_if_already_queued(place):
    booking = book(place, start=local(2, 10))
    job_id = reminder_job_id(booking.id, 1)
    queued = Job.fetch(job_id, connection=redis_store.client)
    args = queued.args
    booking_service.cancel_booking(booking_id=booking.id, user_id=place.resident.id)
    assert scheduled_reminders() == {}  # unscheduled...
    assert queued.func(*args) == 0      # ...and a copy that escaped still sends nothing
    assert notifications_for(place.resident, "booking_reminder") == []
    assert not [m for m in messages_to(place.resident)
                if m["template_id"] == "tmpl-booking-reminder"]


def test_a_reminder_moves_with_a_reschedule(place):
    booking = book(place, start=local(2, 10))
    old = reminder_job_id(booking.id, 1)
    old_args = Job.fetch(old, connection=redis_store.client).args
    booking_service.reschedule_booking(booking_id=booking.id, user_id=place.resident.id,
                                       start=local(3, 16))
    new = reminder_job_id(booking.id, 2)
    assert list(scheduled_reminders()) == [new]
    assert scheduled_reminders()[new] == local(3, 14)
    assert send_booking_reminder(*old_args) == 0  # the old time is never reminded
    assert run_reminder(new) == 1
    assert [n.title for n in notifications_for(place.resident, "booking_reminder")] == [
        f"预约提醒：共享书屋 {local(3, 16):%Y-%m-%d %H:%M}"]


def test_a_pending_booking_gets_its_reminder_when_the_provider_confirms(place):
    booking = book(place, place.childcare, local(2, 9), for_member_id=place.toddler.id)
    assert scheduled_reminders() == {}
    booking_staff.staff_transition(scope=staff_scope(place.office_clerk, place.office),
                                     booking_id=booking.id, action="confirm")
    assert list(scheduled_reminders()) == [reminder_job_id(booking.id, 1)]


def test_a_reminder_missed_while_the_scheduler_was_away_is_sent_at_once(place, clock):
    booking = book(place, start=local(2, 10))
    db.session.execute(update(Booking).where(Booking.id == booking.id)
                       .values(updated_at=local(0, 0)))
    db.session.commit()
    clock.set(local(2, 9))  # past the 08:00 reminder, before the start
    sync_booking_reminder(booking.id)
    assert len(notifications_for(place.resident, "booking_reminder")) == 1


def test_no_reminder_when_booked_inside_the_reminder_window(place, clock):
    quick = make_service(place.comm, place.office, code="quick", min_notice_minutes=30)
    clock.set(local(1, 7, 30))
    early = book(place, quick, local(1, 10))  # the reminder is due at 08:00: scheduled
    assert list(scheduled_reminders()) == [reminder_job_id(early.id, 1)]
    clock.set(local(1, 8, 30))
    late = book(place, quick, local(1, 10), user=place.elder)  # 08:00 has passed
    assert reminder_job_id(late.id, 1) not in scheduled_reminders()
    assert notifications_for(place.elder, "booking_reminder") == []
    assert [n.kind for n in notifications_for(place.elder)] == ["booking_confirmed"]


# ---- notifications ---------------------------------------------------------------------------

def test_confirmation_and_cancellation_reach_the_resident_and_the_person_served(place):
    booking = book(place, place.home_care, local(1, 9), for_member_id=place.elder.id)
    booking_service.cancel_booking(booking_id=booking.id, user_id=place.resident.id)
    for person in (place.resident, place.elder):
        assert [n.kind for n in notifications_for(person)] == ["booking_confirmed",
                                                              "booking_cancelled"]
        assert [m["data"]["phrase3"]["value"] for m in messages_to(person)] == ["预约成功",
                                                                               "已取消"]
    staff = {n.title.split("：")[0] for n in notifications_for(place.carer)}
    assert staff == {"新预约", "居民取消了预约"}


# ---- staff transitions -----------------------------------------------------------------------

ACTIONS_ALLOWED = {
    "pending": {"confirm", "reject"},
    "confirmed": {"check_in", "no_show", "reject"},
    "checked_in": {"complete"},
    "completed": set(), "cancelled": set(), "no_show": set(), "rejected": set(),
}


def test_the_transition_table_is_the_one_the_staff_side_follows():
    table = {str(k): {a for a in v if a in booking_service.STAFF_ACTIONS}
             for k, v in booking_service.BOOKING_ALLOWED.items()}
    assert table == ACTIONS_ALLOWED


def test_staff_moves_follow_the_table_with_timeline_rows(place, clock):
    booking = book(place, place.childcare, local(1, 9), for_member_id=place.toddler.id)
    scope = staff_scope(place.office_clerk, place.office)
    with pytest.raises(InvalidTransition):
        booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="complete")
    db.session.rollback()
    booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="confirm")
    with pytest.raises(Conflict) as excinfo:
        booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="no_show")
    assert excinfo.value.code == "too_early"
    db.session.rollback()
    clock.set(local(1, 9, 5))
    booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="check_in")
    done = booking_staff.staff_transition(scope=scope, booking_id=booking.id,
                                            action="complete", note="一切顺利")
    assert done.status == BookingStatus.COMPLETED and done.completed_at is not None
    assert [(e.action, e.from_status, e.to_status, e.actor_id) for e in events_of(booking.id)] == [
        ("book", None, "pending", place.resident.id),
        ("confirm", "pending", "confirmed", place.office_clerk.id),
        ("check_in", "confirmed", "checked_in", place.office_clerk.id),
        ("complete", "checked_in", "completed", place.office_clerk.id),
    ]


def test_reject_needs_a_reason_and_frees_the_place(place):
    booking = book(place, place.childcare, local(1, 9), for_member_id=place.toddler.id)
    scope = staff_scope(place.office_clerk, place.office)
    with pytest.raises(ValidationFailed) as excinfo:
        booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="reject")
    assert excinfo.value.code == "note_required"
    db.session.rollback()
    booking_staff.staff_transition(scope=scope, booking_id=booking.id, action="reject",
                                     note="名额已满，请改约")
    assert fresh(booking.id).status == BookingStatus.REJECTED
    assert slot_row(place.childcare, local(1, 9)).booked == 0
    assert notifications_for(place.resident, "booking_rejected")[0].body == "名额已满，请改约"


def test_staff_of_another_provider_get_404(place):
    booking = book(place)
    with pytest.raises(NotFound):
        booking_staff.staff_transition(scope=staff_scope(place.rival_staff, place.rival),
                                         booking_id=booking.id, action="no_show")
    with pytest.raises(NotFound):
        booking_staff.staff_booking(scope=staff_scope(place.carer, place.care),
                                      booking_id=booking.id)


# ---- urgent home visits ----------------------------------------------------------------------

def test_an_urgent_visit_is_routed_at_once_to_the_provider_and_the_grid_worker(place):
    visit = booking_service.request_urgent_visit(user_id=place.resident.id, note="老人摔倒了",
                                                 for_member_id=place.elder.id)
    visit = fresh(visit.id)
    assert visit.kind == "urgent" and visit.status == BookingStatus.PENDING
    assert visit.slot_id is None and visit.grid_worker_id == place.grid_worker.id
    assert [e.action for e in events_of(visit.id)] == ["request_urgent", "route"]
    for person in (place.carer, place.care_manager, place.grid_worker):
        titles = [n.title for n in notifications_for(person, "urgent_visit")]
        assert titles == ["【一键上门】王阿婆，3号楼1单元101"], person.username
    assert notifications_for(place.office_clerk, "urgent_visit") == []


def test_an_urgent_visit_is_routed_ahead_of_a_backlog_of_report_routing(place, async_queues):
    queue_routing_backlog(30)
    visit = booking_service.request_urgent_visit(user_id=place.resident.id, note="老人摔倒了")

    worked: list[str] = []
    work_in_process(async_queues, worked=worked)

    assert worked[0].endswith("route_urgent_visit"), worked[:3]
    assert sum(d.endswith("route_report") for d in worked) == 30
    assert fresh(visit.id).grid_worker_id == place.grid_worker.id  # routed


def test_routing_twice_changes_nothing(place):
    visit = booking_service.request_urgent_visit(user_id=place.resident.id)
    assert route_urgent_visit(visit.id) == 0
    assert [e.action for e in events_of(visit.id)] == ["request_urgent", "route"]


def test_the_first_to_accept_an_urgent_visit_is_shown_to_the_resident(place):
    visit = booking_service.request_urgent_visit(user_id=place.resident.id)
    grid_scope = booking_staff.StaffScope(
        user_id=place.grid_worker.id, orgs=[{"id": place.office.id, "role": "grid_worker"}])
    accepted = booking_staff.staff_transition(scope=grid_scope, booking_id=visit.id,
                                                action="confirm")
    assert accepted.confirmed_by.id == place.grid_worker.id
    with pytest.raises(InvalidTransition):
        booking_staff.staff_transition(scope=staff_scope(place.carer, place.care),
                                         booking_id=visit.id, action="confirm")
    notes = notifications_for(place.resident, "booking_urgent")
    assert [n.title for n in notes][-1].endswith("已接单，将尽快上门")


def test_one_open_urgent_visit_per_person(place):
    first = booking_service.request_urgent_visit(user_id=place.resident.id)
    with pytest.raises(Conflict) as excinfo:
        booking_service.request_urgent_visit(user_id=place.resident.id)
    assert excinfo.value.code == "urgent_visit_open"
    assert excinfo.value.details == {"booking_id": first.id}


# ---- PostgreSQL: the capacity holds under real concurrency -----------------------------------

def run_together(app, calls) -> tuple[Counter, list[BaseException]]:
    """Run the calls in threads released together; count outcomes by code."""
    barrier = threading.Barrier(len(calls))
    outcomes: Counter = Counter()
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def worker(call):
        with app.app_context():
            barrier.wait()
            try:
                call()
                result = "ok"
            except APIError as exc:
                result = exc.code
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                with lock:
                    unexpected.append(exc)
                result = "crash"
            finally:
                db.session.remove()
            with lock:
                outcomes[result] += 1

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes, unexpected


def many_residents(place, n: int) -> list[int]:
    """n residents (ids) of the community, added in one commit."""
    users = [User(wx_appid="wx-dev-appid", openid=f"crowd-{i}", display_name=f"居民{i}",
                  community_id=place.comm.id) for i in range(n)]
    db.session.add_all(users)
    db.session.commit()
    return [u.id for u in users]


HOLDING = ("pending", "confirmed", "checked_in", "completed", "no_show")


def holding(service, start) -> int:
    """Bookings that hold a place of the slot, according to the bookings table."""
    return count(Booking, Booking.service_id == service.id, Booking.starts_at == start,
                 Booking.kind == "slot", Booking.status.in_(HOLDING))


@pytest.mark.postgres
@pytest.mark.concurrency
def test_200_concurrent_bookings_for_two_places_give_two_and_198_slot_full(app, place):
    tight = f_service(place, capacity=2)
    start, tight_id = local(1, 10), tight.id  # threads get plain values, never our ORM rows
    ids = many_residents(place, 200)
    calls = [lambda uid=uid: booking_service.create_booking(
        user_id=uid, service_id=tight_id, start=start) for uid in ids]
    outcomes, unexpected = run_together(app, calls)
    assert unexpected == []
    assert outcomes == Counter({"slot_full": 198, "ok": 2})
    assert slot_row(tight, start).booked == 2 == holding(tight, start)
    assert count(Booking, Booking.service_id == tight_id) == 2


@pytest.mark.postgres
@pytest.mark.concurrency
def test_concurrent_reschedules_into_one_slot_never_overbook(app, place):
    tight = f_service(place, capacity=2, max_open_per_resident=5)
    ids = many_residents(place, 60)
    bookings = [booking_service.create_booking(user_id=uid, service_id=tight.id,
                                               start=local(1, 8 + i % 10))
                for i, uid in enumerate(ids[:20])]
    target, moves = local(2, 15), [(b.id, b.user_id) for b in bookings]
    calls = [lambda booking_id=booking_id, user_id=user_id: booking_service.reschedule_booking(
        booking_id=booking_id, user_id=user_id, start=target) for booking_id, user_id in moves]
    outcomes, unexpected = run_together(app, calls)
    assert unexpected == []
    assert outcomes == Counter({"slot_full": 18, "ok": 2})
    assert slot_row(tight, target).booked == 2 == holding(tight, target)
    for hour in range(8, 18):
        assert slot_row(tight, local(1, hour)).booked == holding(tight, local(1, hour))


@pytest.mark.postgres
@pytest.mark.concurrency
def test_cancel_then_book_races_keep_the_count_true(app, place):
    tight = f_service(place, capacity=1)
    start = local(1, 10)
    ids = many_residents(place, 51)
    tight_id = tight.id
    holder_id = booking_service.create_booking(user_id=ids[0], service_id=tight_id,
                                               start=start).id
    calls = [lambda: booking_service.cancel_booking(booking_id=holder_id, user_id=ids[0])]
    calls += [lambda uid=uid: booking_service.create_booking(
        user_id=uid, service_id=tight_id, start=start) for uid in ids[1:]]
    outcomes, unexpected = run_together(app, calls)
    assert unexpected == []
    assert outcomes["ok"] in (1, 2) and outcomes["slot_full"] == 51 - outcomes["ok"]
    assert set(outcomes) <= {"ok", "slot_full"}
    assert slot_row(tight, start).booked == holding(tight, start) <= 1


@pytest.mark.postgres
@pytest.mark.concurrency
def test_one_residents_concurrent_bookings_stop_at_the_limit(app, place):
    roomy_id = f_service(place, capacity=50, max_open_per_resident=2).id
    resident_id = place.resident.id  # plain ids: ORM rows belong to this thread's session
    calls = [lambda hour=hour: booking_service.create_booking(
        user_id=resident_id, service_id=roomy_id, start=local(1, hour))
        for hour in range(8, 20)]
    outcomes, unexpected = run_together(app, calls)
    assert unexpected == []
    assert outcomes == Counter({"booking_limit_reached": 10, "ok": 2})
    assert count(Booking, Booking.user_id == resident_id) == 2


@pytest.mark.postgres
@pytest.mark.concurrency
def test_two_family_members_tapping_for_one_elder_make_one_urgent_visit(app, place):
    elder_id, family = place.elder.id, (place.resident.id, place.elder.id)
    calls = [lambda uid=uid: booking_service.request_urgent_visit(
        user_id=uid, for_member_id=elder_id) for uid in family * 10]
    outcomes, unexpected = run_together(app, calls)
    assert unexpected == []
    assert outcomes == Counter({"urgent_visit_open": 19, "ok": 1})


def f_service(place, **kw):
    return make_service(place.comm, place.office, code="tight", name="紧俏服务", **kw)


def test_the_places_taken_always_match_the_bookings_holding_them(place, clock):
    book(place, start=local(1, 10))
    other = book(place, start=local(1, 12))
    moved = book(place, start=local(1, 14), user=place.elder)
    booking_service.cancel_booking(booking_id=other.id, user_id=place.resident.id)
    booking_service.reschedule_booking(booking_id=moved.id, user_id=place.elder.id,
                                       start=local(1, 10))
    for hour in (10, 12, 14):
        assert slot_row(place.study, local(1, hour)).booked == holding(place.study,
                                                                       local(1, hour))
    assert slot_row(place.study, local(1, 10)).booked == 2


def test_an_unknown_booking_is_404(place):
    with pytest.raises(NotFound):
        booking_service.get_booking(booking_id=12345, user_id=place.resident.id)
    assert db.session.scalar(select(Booking.id)) is None
