"""Service booking (预约服务): catalogue, slots, bookings, reschedule, urgent visits, reminders.

Capacity lives in one `booking_slots` row per slot. A seat is taken only by the conditional
`UPDATE booking_slots SET booked = booked + 1 WHERE id = :id AND booked < capacity AND NOT
blocked` and given back by the matching decrement, in the same transaction as the booking row
and its timeline row; a CHECK (0 <= booked <= capacity) is the backstop. Python never reads a
count and then writes it. Locks are always taken in one order (booking row or resident row
first, then slot rows by ascending id) so concurrent reschedules cannot deadlock.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, literal, or_, select, tuple_, update
from sqlalchemy.orm import selectinload

from app.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from app.extensions import URGENT_QUEUE, db
from app.inserts import insert_or_skip
from app.models import (
    Booking,
    BookingEvent,
    BookingKind,
    BookingStatus,
    Building,
    ClaimStatus,
    Household,
    HouseholdMember,
    MicroGrid,
    Service,
    ServiceException,
    ServiceLocation,
    Slot,
    User,
)
from app.pagination import encode_cursor
from app.services import outbox, slots
from app.services.community import resolve_community_id

BS = BookingStatus
BOOKING_ALLOWED: dict[BookingStatus, dict[str, BookingStatus]] = {
    BS.PENDING: {"confirm": BS.CONFIRMED, "reject": BS.REJECTED, "cancel": BS.CANCELLED,
                 "reschedule": BS.PENDING},
    BS.CONFIRMED: {"check_in": BS.CHECKED_IN, "no_show": BS.NO_SHOW, "reject": BS.REJECTED,
                   "cancel": BS.CANCELLED, "reschedule": BS.CONFIRMED},
    BS.CHECKED_IN: {"complete": BS.COMPLETED},
    BS.COMPLETED: {},
    BS.CANCELLED: {},
    BS.NO_SHOW: {},
    BS.REJECTED: {},
}
STAFF_ACTIONS = ("confirm", "reject", "check_in", "complete", "no_show")
OPEN_STATUSES = (BS.PENDING, BS.CONFIRMED, BS.CHECKED_IN)
FREES_SEAT = (BS.CANCELLED, BS.REJECTED)
STATUS_LABELS = {
    "pending": "待确认", "confirmed": "已预约", "checked_in": "已签到", "completed": "已完成",
    "cancelled": "已取消", "no_show": "未到", "rejected": "未通过",
}
EVENT_LABELS = {
    "book": "提交了预约", "confirm": "已确认", "reject": "未通过", "cancel": "已取消",
    "reschedule": "已改约", "check_in": "已签到", "complete": "已完成", "no_show": "未到",
    "request_urgent": "发出一键上门请求", "route": "已通知服务人员和网格员",
}
DEFAULT_SLOT_DAYS = 7


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def field_error(field_name: str, code: str, message: str, **details) -> ValidationFailed:
    """A 422 with a stable code, the message also under details.fields[field]."""
    return ValidationFailed(message, code=code,
                            details={"fields": {field_name: [message]}, **details})


def booking_not_found() -> NotFound:
    """404 `booking_not_found`: the same for missing and for someone else's."""
    return NotFound("找不到该预约", code="booking_not_found")


# --- catalogue and slots ----------------------------------------------------------------------


def service_query():
    """SELECT services with what their schemas show (community, provider, hours)."""
    return select(Service).options(selectinload(Service.community),
                                   selectinload(Service.provider), selectinload(Service.hours))


def list_services(*, user_id: int, community_id: int | None = None) -> list[Service]:
    """The active services of the caller's community, in display order."""
    cid = resolve_community_id(user_id=user_id, requested=community_id)
    return list(db.session.scalars(service_query().where(
        Service.community_id == cid, Service.is_active.is_(True))
        .order_by(Service.sort_order, Service.id)))


def visible_service(*, user_id: int, service_id: int) -> Service:
    """An active service of the caller's community, or 404 `service_not_found`."""
    service = db.session.scalar(service_query().where(Service.id == service_id))
    if service is None or not service.is_active or service.community_id != resolve_community_id(
            user_id=user_id, requested=None):
        raise NotFound("没有这项服务", code="service_not_found")
    return service


def get_service(*, user_id: int, service_id: int) -> Service:
    """A service with its weekly hours and its exceptions from today on."""
    service = visible_service(user_id=user_id, service_id=service_id)
    service.upcoming_exceptions = exceptions_between(service.id, service_today(service), None)
    return service


def service_today(service: Service) -> date:
    """Today's date in the service's community."""
    return now().astimezone(service.tz).date()


def exceptions_between(service_id: int, first: date, last: date | None) -> list[ServiceException]:
    """The service's exception rows between two local days (inclusive; open-ended if None)."""
    stmt = select(ServiceException).where(ServiceException.service_id == service_id,
                                          ServiceException.day >= first)
    if last is not None:
        stmt = stmt.where(ServiceException.day <= last)
    return list(db.session.scalars(stmt.order_by(ServiceException.day, ServiceException.id)))


def rules_between(service: Service, first: date, last: date) -> slots.SlotRules:
    """The slot rules of a service, with the exceptions of [first, last] loaded."""
    return slots.rules_for(service, service.hours, exceptions_between(service.id, first, last))


@dataclass(frozen=True)
class SlotView:
    """One slot as residents and staff see it (start and end in the community's time)."""

    start: datetime
    end: datetime
    capacity: int
    booked: int
    remaining: int
    blocked: bool


def list_slots(*, user_id: int, service_id: int, first: date | None = None,
               last: date | None = None) -> tuple[Service, list[SlotView]]:
    """Bookable slots of a service between two local days, with the places left."""
    service = visible_service(user_id=user_id, service_id=service_id)
    first = first or service_today(service)
    last = last or first + timedelta(days=DEFAULT_SLOT_DAYS - 1)
    slots.check_range(first, last)
    starts = slots.available_starts(rules_between(service, first, last), first, last, now())
    rows = _slot_rows(service.id, starts)
    views = [slot_view(service, start, rows.get(start)) for start in starts]
    return service, [v for v in views if not v.blocked]


def _slot_rows(service_id: int, starts: list[datetime]) -> dict[datetime, Slot]:
    """The capacity rows that exist for these starts, by start."""
    if not starts:
        return {}
    rows = db.session.scalars(select(Slot).where(
        Slot.service_id == service_id, Slot.starts_at >= starts[0], Slot.starts_at <= starts[-1]))
    return {row.starts_at: row for row in rows}


def slot_view(service: Service, start: datetime, row: Slot | None) -> SlotView:
    """A slot's figures: its capacity row if it exists, else the service's defaults."""
    capacity = row.capacity if row else service.capacity
    booked = row.booked if row else 0
    blocked = bool(row and row.blocked)
    return SlotView(start=start.astimezone(service.tz),
                    end=(start + timedelta(minutes=service.duration_minutes)).astimezone(
                        service.tz),
                    capacity=capacity, booked=booked,
                    remaining=0 if blocked else max(0, capacity - booked), blocked=blocked)


# --- capacity ---------------------------------------------------------------------------------


def ensure_slot(service: Service, start: datetime) -> int:
    """The id of the slot's capacity row, inserting it if missing (never raises on a race)."""
    db.session.execute(insert_or_skip(Slot, index_elements=["service_id", "starts_at"]).values(
        service_id=service.id, starts_at=start, capacity=service.capacity, booked=0,
        blocked=False, updated_at=now()))
    return db.session.scalar(select(Slot.id).where(Slot.service_id == service.id,
                                                   Slot.starts_at == start))


def take_seat(slot_id: int) -> None:
    """Take one place with a conditional UPDATE; 409 `slot_full` (or `slot_blocked`) if none."""
    taken = db.session.execute(
        update(Slot).where(Slot.id == slot_id, Slot.blocked.is_(False),
                           Slot.booked < Slot.capacity)
        .values(booked=Slot.booked + 1, updated_at=now())
        .execution_options(synchronize_session=False)).rowcount
    if taken != 1:
        raise _unavailable(slot_id)


def _unavailable(slot_id: int) -> Conflict:
    """Why the place could not be taken: blocked, or full."""
    blocked = db.session.scalar(select(Slot.blocked).where(Slot.id == slot_id))
    if blocked:
        return Conflict("该时段暂停预约", code="slot_blocked")
    return Conflict("该时段已约满", code="slot_full", details={"remaining": 0})


def release_seat(slot_id: int) -> None:
    """Give one place back (the CHECK keeps `booked` from going below zero)."""
    db.session.execute(
        update(Slot).where(Slot.id == slot_id, Slot.booked > 0)
        .values(booked=Slot.booked - 1, updated_at=now())
        .execution_options(synchronize_session=False))


def move_seat(old_slot_id: int, new_slot_id: int) -> None:
    """Free the old place and take the new one, touching the rows in ascending id order."""
    for slot_id in sorted((old_slot_id, new_slot_id)):
        if slot_id == new_slot_id:
            take_seat(slot_id)
        else:
            release_seat(slot_id)


# --- who is served ----------------------------------------------------------------------------


def _approved_households(user_id: int) -> list[int]:
    """Ids of the households the user is an approved member of."""
    return list(db.session.scalars(select(HouseholdMember.household_id).where(
        HouseholdMember.user_id == user_id, HouseholdMember.status == ClaimStatus.APPROVED)
        .order_by(HouseholdMember.id)))


def served_person(user: User, for_member_id: int | None) -> tuple[User, int | None]:
    """The person served (the caller, or an approved member of one of the caller's approved
    households) and the household that links them; 422 `member_not_in_household` otherwise."""
    households = _approved_households(user.id)
    if for_member_id is None or for_member_id == user.id:
        return user, (households[0] if households else None)
    row = db.session.execute(
        select(User, HouseholdMember.household_id)
        .join(HouseholdMember, HouseholdMember.user_id == User.id)
        .where(User.id == for_member_id, HouseholdMember.status == ClaimStatus.APPROVED,
               HouseholdMember.household_id.in_(households))
        .order_by(HouseholdMember.id).limit(1)).first()
    if row is None:
        raise field_error("for_member_id", "member_not_in_household",
                          "只能为本户已认证的家庭成员预约")
    return row[0], row[1]


def household_people(*, user_id: int) -> list[dict]:
    """The people the caller may book for: themself, then their households' approved members."""
    households = _approved_households(user_id)
    rows = db.session.execute(
        select(User, HouseholdMember).join(HouseholdMember, HouseholdMember.user_id == User.id)
        .where(HouseholdMember.household_id.in_(households),
               HouseholdMember.status == ClaimStatus.APPROVED)
        .options(selectinload(HouseholdMember.household).selectinload(Household.building))
        .order_by(HouseholdMember.household_id, HouseholdMember.id)).all()
    people = {user_id: {"user": db.session.get(User, user_id), "relation": "self",
                        "household": None}}
    for user, claim in rows:
        entry = people.setdefault(user.id, {"user": user, "relation": str(claim.relation),
                                            "household": claim.household})
        entry["household"] = entry["household"] or claim.household
    return list(people.values())


def check_eligible(service: Service, person: User) -> None:
    """422 `not_eligible` unless the person's age (by birth year) fits the service."""
    if service.min_age is None and service.max_age is None:
        return
    if person.birth_year is None:
        raise field_error("for_member_id", "not_eligible", "请先填写被服务人的出生年份",
                   reason="birth_year_unknown")
    age = service_today(service).year - person.birth_year
    too_young = service.min_age is not None and age < service.min_age
    too_old = service.max_age is not None and age > service.max_age
    if too_young or too_old:
        raise field_error("for_member_id", "not_eligible", _eligibility_text(service),
                   reason="age", age=age, min_age=service.min_age, max_age=service.max_age)


def _eligibility_text(service: Service) -> str:
    """Who the service is for, as residents read it."""
    if service.max_age is None:
        return f"该服务面向 {service.min_age} 岁及以上的居民"
    if service.min_age is None:
        return f"该服务面向 {service.max_age + 1} 岁以下的儿童"
    return f"该服务面向 {service.min_age}–{service.max_age} 岁的居民"


def _address(service: Service, household_id: int | None, given: str | None) -> str:
    """Where the service happens: the resident's home for home services, else the centre."""
    if service.location != ServiceLocation.HOME:
        return (given or "").strip()
    if household_id is None:
        raise field_error("for_member_id", "household_required", "上门服务需要先认证房屋")
    if given and given.strip():
        return given.strip()
    household = db.session.scalar(select(Household).where(Household.id == household_id)
                                  .options(selectinload(Household.building)))
    return household.label


# --- bookings: the resident's side ------------------------------------------------------------


def _resident(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("账号不存在", code="user_not_found")
    return user


def as_aware(start: datetime, service: Service) -> datetime:
    """A start given without an offset is the community's local time."""
    return start.replace(tzinfo=service.tz) if start.tzinfo is None else start.astimezone(UTC)


def check_bookable_start(service: Service, start: datetime) -> None:
    """422 with a precise code unless `start` is a bookable slot of the service right now."""
    day = start.astimezone(service.tz).date()
    slots.check_start(rules_between(service, day, day), start, now())


def create_booking(*, user_id: int, service_id: int, start: datetime,
                   for_member_id: int | None = None, note: str = "",
                   address: str | None = None) -> Booking:
    """Book a slot: checks, then the seat is taken by the database, all in one transaction."""
    user = _resident(user_id)
    service = visible_service(user_id=user_id, service_id=service_id)
    person, household_id = served_person(user, for_member_id)
    check_eligible(service, person)
    place = _address(service, household_id, address)
    start = as_aware(start, service)
    check_bookable_start(service, start)
    slot_id = ensure_slot(service, start)
    for locked_id in sorted({user.id, person.id}):  # the booker's limit, the person's place
        _lock_user(locked_id)
    _check_not_booked(slot_id, person.id)
    _check_limit(service, user.id)
    take_seat(slot_id)
    status = BS.PENDING if service.requires_confirmation else BS.CONFIRMED
    stamp = now()
    booking = Booking(
        community_id=service.community_id, service_id=service.id, slot_id=slot_id,
        kind=BookingKind.SLOT, status=status, user_id=user.id, for_user_id=person.id,
        household_id=household_id, starts_at=start,
        ends_at=start + timedelta(minutes=service.duration_minutes), note=note.strip(),
        address=place, confirmed_at=stamp if status == BS.CONFIRMED else None,
        created_at=stamp, updated_at=stamp)
    db.session.add(booking)
    db.session.flush()
    event = record_event(booking, "book", actor_id=user.id, to_status=status)
    queue_side_effects(booking, event)
    outbox.commit()
    return load_booking(booking.id)


def _lock_user(user_id: int) -> None:
    """Serialise one resident's bookings (row lock on PostgreSQL) so the limit holds.

    FOR NO KEY UPDATE: it queues the resident's bookings all the same, but not behind the KEY
    SHARE lock every row referencing the user takes - such as this request's own Idempotency-Key
    claim, which a concurrent booking of the same person holds until it commits (FOR UPDATE
    deadlocked 29 of 30 simultaneous bookings for one person).
    """
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def _check_not_booked(slot_id: int, person_id: int) -> None:
    """409 `already_booked` when the served person already holds a place in the slot."""
    held = db.session.scalar(select(Booking.id).where(
        Booking.slot_id == slot_id, Booking.for_user_id == person_id,
        Booking.status.in_(OPEN_STATUSES)).limit(1))
    if held is not None:
        raise Conflict("该时段已为此人预约", code="already_booked", details={"booking_id": held})


def _check_limit(service: Service, user_id: int) -> None:
    """422 `booking_limit_reached` when the resident has the maximum of open bookings."""
    open_count = db.session.scalar(select(func.count()).select_from(Booking).where(
        Booking.user_id == user_id, Booking.service_id == service.id,
        Booking.kind == BookingKind.SLOT, Booking.status.in_(OPEN_STATUSES),
        Booking.ends_at > now()))
    if open_count >= service.max_open_per_resident:
        limit = service.max_open_per_resident
        raise field_error("service_id", "booking_limit_reached",
                   f"每人最多同时预约 {limit} 个该服务的时段", limit=limit)


def record_event(booking: Booking, action: str, *, actor_id: int | None,
                 from_status: str | None = None, to_status: str | None = None,
                 note: str = "", data: dict | None = None) -> BookingEvent:
    """Append one row to the booking's timeline (in the caller's transaction)."""
    event = BookingEvent(booking_id=booking.id, actor_id=actor_id, action=action,
                         from_status=str(from_status) if from_status else None,
                         to_status=str(to_status) if to_status else None, note=note or "",
                         data=data or {}, created_at=now())
    db.session.add(event)
    db.session.flush()
    return event


def move_booking(booking: Booking, action: str, *, actor_id: int | None, note: str = "",
                 data: dict | None = None) -> BookingEvent:
    """Apply `action` if BOOKING_ALLOWED permits it; frees the seat when leaving for good."""
    target = allowed_target(booking, action)
    before, booking.status = booking.status, target
    stamp = now()
    booking.updated_at = stamp
    if target == BS.CONFIRMED and before != BS.CONFIRMED:
        booking.confirmed_at = stamp
    booking.checked_in_at = stamp if target == BS.CHECKED_IN else booking.checked_in_at
    booking.completed_at = stamp if target == BS.COMPLETED else booking.completed_at
    if target in FREES_SEAT:
        booking.cancelled_at = stamp
        if booking.slot_id is not None:
            release_seat(booking.slot_id)
    return record_event(booking, action, actor_id=actor_id, from_status=before,
                        to_status=target, note=note, data=data)


def allowed_target(booking: Booking, action: str) -> BookingStatus:
    """The state `action` leads to, or 409 `invalid_transition`."""
    target = BOOKING_ALLOWED[booking.status].get(action)
    if target is None:
        raise InvalidTransition(details={"status": str(booking.status), "action": action,
                                         "allowed": sorted(BOOKING_ALLOWED[booking.status])})
    return target


def queue_side_effects(booking: Booking, event: BookingEvent) -> None:
    """Notifications for the step, and the reminder re-planned (both after commit)."""
    outbox.add_job("notify_booking_event", booking_id=booking.id, event_id=event.id)
    if booking.kind == BookingKind.SLOT:
        outbox.add_job("sync_booking_reminder", booking_id=booking.id)


def lock_booking(booking_id: int) -> Booking:
    """The booking row, locked (on PostgreSQL) and fresh; 404 if it does not exist."""
    booking = db.session.scalar(select(Booking).where(Booking.id == booking_id)
                                .with_for_update(of=Booking)
                                .execution_options(populate_existing=True))
    if booking is None:
        raise booking_not_found()
    return booking


def _own_booking(booking_id: int, user_id: int) -> tuple[Booking, Service]:
    """The caller's booking (they booked it or are served by it), locked; 404 otherwise."""
    booking = lock_booking(booking_id)
    if user_id not in (booking.user_id, booking.for_user_id):
        raise booking_not_found()
    service = db.session.scalar(select(Service).where(Service.id == booking.service_id)
                                .options(selectinload(Service.community),
                                         selectinload(Service.hours)))
    return booking, service


def cancel_deadline(booking: Booking, service: Service) -> datetime | None:
    """The last moment the resident may cancel or move the booking (none for urgent visits)."""
    if booking.kind == BookingKind.URGENT:
        return None
    return booking.starts_at - timedelta(minutes=service.cancel_deadline_minutes)


def _check_deadline(booking: Booking, service: Service) -> None:
    """409 `cancellation_deadline_passed`, with the deadline, once it has passed."""
    deadline = cancel_deadline(booking, service)
    if deadline is not None and now() > deadline:
        raise Conflict("已过取消截止时间，如需变更请联系服务方",
                       code="cancellation_deadline_passed",
                       details={"deadline": deadline.astimezone(service.tz).isoformat()})


def cancel_booking(*, booking_id: int, user_id: int, reason: str = "") -> Booking:
    """Cancel until the deadline; the place is free again in the same transaction."""
    booking, service = _own_booking(booking_id, user_id)
    allowed_target(booking, "cancel")
    _check_deadline(booking, service)
    booking.cancel_reason = reason.strip() or None
    event = move_booking(booking, "cancel", actor_id=user_id, note=reason.strip())
    queue_side_effects(booking, event)
    outbox.commit()
    return load_booking(booking.id)


def reschedule_booking(*, booking_id: int, user_id: int, start: datetime) -> Booking:
    """Move to another slot: the new place is taken and the old freed together, or nothing."""
    booking, service = _own_booking(booking_id, user_id)
    allowed_target(booking, "reschedule")
    if booking.kind == BookingKind.URGENT:
        raise InvalidTransition("一键上门请求不能改约", details={"kind": "urgent"})
    _check_deadline(booking, service)
    start = as_aware(start, service)
    if start == booking.starts_at:
        raise field_error("start", "same_slot", "新时段与原时段相同")
    check_bookable_start(service, start)
    new_slot_id = ensure_slot(service, start)
    _lock_user(booking.for_user_id)  # as create_booking: one place per person and slot
    _check_not_booked(new_slot_id, booking.for_user_id)
    move_seat(booking.slot_id, new_slot_id)
    before = booking.starts_at
    booking.slot_id, booking.starts_at = new_slot_id, start
    booking.ends_at = start + timedelta(minutes=service.duration_minutes)
    booking.version += 1
    booking.updated_at = now()
    event = record_event(booking, "reschedule", actor_id=user_id, from_status=booking.status,
                         to_status=booking.status,
                         data={"from": before.astimezone(service.tz).isoformat(),
                               "to": start.astimezone(service.tz).isoformat()})
    queue_side_effects(booking, event)
    outbox.commit()
    return load_booking(booking.id)


def booking_options() -> tuple:
    """Eager loads for everything a booking's schema shows (constant SQL per page)."""
    return (
        selectinload(Booking.service).selectinload(Service.community),
        selectinload(Booking.service).selectinload(Service.provider),
        selectinload(Booking.user), selectinload(Booking.for_user),
        selectinload(Booking.confirmed_by),
        selectinload(Booking.household).selectinload(Household.building),
    )


def load_booking(booking_id: int, *, with_events: bool = True) -> Booking:
    """A booking with its service, people and (optionally) timeline loaded."""
    options = booking_options() + ((selectinload(Booking.events),) if with_events else ())
    booking = db.session.scalar(select(Booking).where(Booking.id == booking_id)
                                .options(*options).execution_options(populate_existing=True))
    if booking is None:
        raise booking_not_found()
    return booking


def get_booking(*, booking_id: int, user_id: int) -> Booking:
    """The caller's booking with its timeline; 404 for anyone else's."""
    booking = load_booking(booking_id)
    if user_id not in (booking.user_id, booking.for_user_id):
        raise booking_not_found()
    return booking


def my_bookings(*, user_id: int, cursor: str | None = None,
                limit: int = 20) -> tuple[list[Booking], str | None]:
    """Bookings by or for the caller: upcoming ones first (soonest first), then past ones
    (latest first); keyset-paginated across both parts with at most two page queries."""
    part, after = _decode_mine_cursor(cursor)
    stamp = now()
    mine = select(Booking).options(*booking_options()).where(
        or_(Booking.user_id == user_id, Booking.for_user_id == user_id))
    key = tuple_(Booking.starts_at, Booking.id)
    if after is not None:
        after = (literal(after[0], Booking.starts_at.type), literal(after[1], Booking.id.type))
    items: list[Booking] = []
    if part == "upcoming":
        stmt = mine.where(Booking.ends_at >= stamp)
        if after is not None:
            stmt = stmt.where(key > tuple_(*after))
        rows = list(db.session.scalars(stmt.order_by(Booking.starts_at, Booking.id)
                                       .limit(limit + 1)))
        if len(rows) > limit:
            return rows[:limit], _mine_cursor("upcoming", rows[limit - 1])
        items, after = rows, None
    past = mine.where(Booking.ends_at < stamp)
    if after is not None:
        past = past.where(key < tuple_(*after))
    room = limit - len(items)
    rows = list(db.session.scalars(past.order_by(Booking.starts_at.desc(), Booking.id.desc())
                                   .limit(room + 1)))
    items += rows[:room]
    if len(rows) > room:
        return items, (_mine_cursor("past", items[-1]) if room else encode_cursor(("past",)))
    return items, None


def _mine_cursor(part: str, last: Booking) -> str:
    """The cursor after `last` in the given part of the list."""
    return encode_cursor((part, last.starts_at, last.id))


def _decode_mine_cursor(cursor: str | None) -> tuple[str, tuple | None]:
    """("upcoming" | "past", (starts_at, id) or None); 422 `invalid_cursor` if not ours."""
    if not cursor:
        return "upcoming", None
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if raw == ["past"]:
            return "past", None
        part, stamp, booking_id = raw
        if part not in ("upcoming", "past") or not isinstance(booking_id, int):
            raise ValueError("bad cursor")
        return part, (datetime.fromisoformat(stamp), booking_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise field_error("cursor", "invalid_cursor", "分页参数无效") from exc


# --- urgent home visits (一键上门) -------------------------------------------------------------


def urgent_service(community_id: int) -> Service:
    """The community's service taking one-tap home-visit requests; 404 if there is none."""
    service = db.session.scalar(select(Service).where(
        Service.community_id == community_id, Service.urgent_visits.is_(True),
        Service.is_active.is_(True)).order_by(Service.id).limit(1))
    if service is None:
        raise NotFound("本社区暂未开通一键上门服务", code="urgent_service_unavailable")
    return service


def request_urgent_visit(*, user_id: int, note: str = "",
                         for_member_id: int | None = None) -> Booking:
    """One tap: someone comes to the door. No slot; a worker routes it at once."""
    user = _resident(user_id)
    service = urgent_service(resolve_community_id(user_id=user_id, requested=None))
    person, household_id = served_person(user, for_member_id)
    if household_id is None:
        raise field_error("for_member_id", "household_required", "上门服务需要先认证房屋")
    _lock_user(person.id)  # two family members tapping for one elder: one request
    _check_no_open_urgent(person.id)
    stamp = now()
    booking = Booking(
        community_id=service.community_id, service_id=service.id, slot_id=None,
        kind=BookingKind.URGENT, status=BS.PENDING, user_id=user.id, for_user_id=person.id,
        household_id=household_id, starts_at=stamp,
        ends_at=stamp + timedelta(minutes=service.duration_minutes), note=note.strip(),
        address=_address(service, household_id, None), created_at=stamp, updated_at=stamp)
    db.session.add(booking)
    db.session.flush()
    event = record_event(booking, "request_urgent", actor_id=user.id, to_status=BS.PENDING,
                         note=note.strip())
    outbox.add_job("route_urgent_visit", queue=URGENT_QUEUE, booking_id=booking.id)
    outbox.add_job("notify_booking_event", booking_id=booking.id, event_id=event.id)
    outbox.commit()
    return load_booking(booking.id)


def _check_no_open_urgent(person_id: int) -> None:
    """409 `urgent_visit_open` while an earlier request for the same person is still open."""
    open_id = db.session.scalar(select(Booking.id).where(
        Booking.for_user_id == person_id, Booking.kind == BookingKind.URGENT,
        Booking.status.in_(OPEN_STATUSES)).limit(1))
    if open_id is not None:
        raise Conflict("已发出上门请求，工作人员正在处理", code="urgent_visit_open",
                       details={"booking_id": open_id})


@dataclass(frozen=True)
class UrgentRouting:
    """Who an urgent visit went to."""

    booking_id: int
    provider_org_id: int
    grid_worker_id: int | None
    event_id: int


def route_urgent_visit(booking_id: int) -> UrgentRouting | None:
    """Attach the household's grid worker and record the routing step once (idempotent)."""
    booking = lock_booking(booking_id)
    if booking.kind != BookingKind.URGENT:
        return None
    service = db.session.get(Service, booking.service_id)
    if booking.routed_at is None:
        booking.grid_worker_id = _grid_worker_of(booking.household_id)
        booking.routed_at = now()
        record_event(booking, "route", actor_id=None,
                     data={"org_id": service.provider_org_id,
                           "grid_worker_id": booking.grid_worker_id})
    event_id = db.session.scalar(select(BookingEvent.id).where(
        BookingEvent.booking_id == booking.id, BookingEvent.action == "route"))
    db.session.commit()
    return UrgentRouting(booking_id=booking.id, provider_org_id=service.provider_org_id,
                         grid_worker_id=booking.grid_worker_id, event_id=event_id)


def _grid_worker_of(household_id: int | None) -> int | None:
    """The grid worker of the household's micro-grid, if it has one."""
    if household_id is None:
        return None
    return db.session.scalar(
        select(MicroGrid.grid_worker_id)
        .join(Building, Building.micro_grid_id == MicroGrid.id)
        .join(Household, Household.building_id == Building.id)
        .where(Household.id == household_id))


# --- reminders --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderPlan:
    """When a booking's reminder should go out, and what the reminder job must re-check."""

    booking_id: int
    version: int
    starts_at: datetime
    remind_at: datetime
    overdue: bool


def reminder_plan(booking_id: int) -> tuple[int, ReminderPlan | None]:
    """(the booking's version, the reminder it needs now or None).

    None when it is not confirmed, has no reminder, or became confirmed/moved inside the
    reminder window (the confirmation message already gave the time). `overdue` means the
    reminder was due while the scheduler could not be reached: send it at once.
    """
    booking = db.session.get(Booking, booking_id)
    if booking is None:
        return 0, None
    service = db.session.get(Service, booking.service_id)
    stamp = now()
    if (booking.kind != BookingKind.SLOT or booking.status != BS.CONFIRMED
            or service.reminder_minutes_before is None or booking.starts_at <= stamp):
        return booking.version, None
    remind_at = booking.starts_at - timedelta(minutes=service.reminder_minutes_before)
    overdue = remind_at <= stamp
    if overdue and booking.updated_at >= remind_at:
        return booking.version, None
    return booking.version, ReminderPlan(booking_id=booking.id, version=booking.version,
                                         starts_at=booking.starts_at, remind_at=remind_at,
                                         overdue=overdue)


def reminder_due(booking_id: int, version: int, starts_at: str) -> Booking | None:
    """The booking if its reminder is still wanted: confirmed, not moved, not yet started."""
    booking = db.session.scalar(select(Booking).where(Booking.id == booking_id)
                                .options(*booking_options())
                                .execution_options(populate_existing=True))
    if booking is None or booking.status != BS.CONFIRMED or booking.version != version:
        return None
    if booking.starts_at != datetime.fromisoformat(starts_at) or booking.starts_at <= now():
        return None
    return booking
