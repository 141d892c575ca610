"""Service booking, the providers' side: their day, transitions, exceptions, slot capacity.

Staff see the bookings of the services their orgs provide; a grid worker also sees the urgent
home visits routed to them. Anything outside that scope is 404 (never leak other providers').
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import selectinload

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import (
    Booking,
    BookingKind,
    BookingStatus,
    Community,
    ExceptionKind,
    Service,
    ServiceException,
    Slot,
    User,
)
from app.pagination import keyset_page
from app.services import booking as bookings  # its now(), frozen with it in tests
from app.services import outbox, slots
from app.services.booking import (
    OPEN_STATUSES,
    SlotView,
    allowed_target,
    as_aware,
    booking_not_found,
    booking_options,
    ensure_slot,
    exceptions_between,
    field_error,
    load_booking,
    lock_booking,
    move_booking,
    queue_side_effects,
    rules_between,
    service_query,
    service_today,
    slot_view,
)

STAFF_ROLES = ("staff", "manager", "admin")


class StaffScope:
    """What a staff member works: their orgs' services; grid workers, urgent visits sent them."""

    def __init__(self, *, user_id: int, orgs: list[dict]) -> None:
        self.user_id = user_id
        self.org_ids = {m["id"] for m in orgs if m["role"] in STAFF_ROLES}

    def booking_clause(self):
        """A WHERE clause selecting the bookings in scope."""
        provided = Booking.service_id.in_(
            select(Service.id).where(Service.provider_org_id.in_(self.org_ids)))
        return or_(provided, Booking.grid_worker_id == self.user_id)

    def covers(self, booking: Booking, service: Service) -> bool:
        """Whether the booking is in scope."""
        return service.provider_org_id in self.org_ids or booking.grid_worker_id == self.user_id

    def service(self, service_id: int) -> Service:
        """A service the caller's org provides; 404 otherwise."""
        service = db.session.scalar(service_query().where(Service.id == service_id))
        if service is None or service.provider_org_id not in self.org_ids:
            raise NotFound("没有这项服务", code="service_not_found")
        return service


def staff_services(*, scope: StaffScope) -> list[Service]:
    """The services the caller's orgs provide."""
    return list(db.session.scalars(service_query().where(
        Service.provider_org_id.in_(scope.org_ids)).order_by(Service.sort_order, Service.id)))


def staff_day(*, scope: StaffScope, day: date | None = None, service_id: int | None = None,
              status: str | None = None, kind: str | None = None, cursor: str | None = None,
              limit: int = 50) -> tuple[list[Booking], str | None]:
    """The day's bookings in time order; open urgent visits from earlier days come first."""
    tz = _staff_tz(scope.user_id)
    day = day or bookings.now().astimezone(tz).date()
    start = slots.wall_clock_midnight(day, tz)
    end = slots.wall_clock_midnight(day + timedelta(days=1), tz)
    on_day = and_(Booking.starts_at >= start, Booking.starts_at < end)
    open_urgent = and_(Booking.kind == BookingKind.URGENT, Booking.status.in_(OPEN_STATUSES),
                       Booking.starts_at < end)
    stmt = select(Booking).options(*booking_options()).where(
        scope.booking_clause(), or_(on_day, open_urgent))
    if service_id is not None:
        stmt = stmt.where(Booking.service_id == service_id)
    if status:
        stmt = stmt.where(Booking.status == BookingStatus(status))
    if kind:
        stmt = stmt.where(Booking.kind == BookingKind(kind))
    return keyset_page(stmt, columns=[Booking.starts_at, Booking.id], cursor=cursor,
                       limit=limit, descending=False)


def _staff_tz(user_id: int) -> ZoneInfo:
    """The time zone of the staff member's community (the deployment default otherwise)."""
    name = db.session.scalar(select(Community.timezone)
                             .join(User, User.community_id == Community.id)
                             .where(User.id == user_id))
    return ZoneInfo(name or current_app.config["DEFAULT_TIMEZONE"])


def staff_booking(*, scope: StaffScope, booking_id: int) -> Booking:
    """A booking in scope with its timeline; 404 otherwise."""
    booking = load_booking(booking_id)
    if not scope.covers(booking, booking.service):
        raise booking_not_found()
    return booking


def staff_transition(*, scope: StaffScope, booking_id: int, action: str,
                     note: str = "") -> Booking:
    """confirm, reject, check_in, complete or no_show, with a timeline row; the resident hears."""
    booking = lock_booking(booking_id)
    service = db.session.scalar(select(Service).where(Service.id == booking.service_id)
                                .options(selectinload(Service.community)))
    if not scope.covers(booking, service):
        raise booking_not_found()
    allowed_target(booking, action)
    note = (note or "").strip()
    if action == "reject" and not note:
        raise field_error("note", "note_required", "请填写不能提供服务的原因")
    _check_timing(booking, service, action)
    event = move_booking(booking, action, actor_id=scope.user_id, note=note)
    if action == "confirm":
        booking.confirmed_by_id = scope.user_id
    queue_side_effects(booking, event)
    outbox.commit()
    return staff_booking(scope=scope, booking_id=booking.id)


def _check_timing(booking: Booking, service: Service, action: str) -> None:
    """409 `too_early`: no check-in before the booking's day, no no-show before its start."""
    stamp = bookings.now()
    if action == "no_show" and stamp < booking.starts_at:
        raise Conflict("预约时间未到，不能标记未到", code="too_early")
    if action == "check_in" and stamp.astimezone(service.tz).date() < \
            booking.starts_at.astimezone(service.tz).date():
        raise Conflict("未到预约当天，不能签到", code="too_early")


def add_exception(*, scope: StaffScope, service_id: int, day: date, kind: str,
                  opens: str | None = None, closes: str | None = None,
                  note: str = "") -> ServiceException:
    """A dated exception: closed (all day or a range) or extra opening hours."""
    service = scope.service(service_id)
    if day < service_today(service):
        raise field_error("day", "date_in_past", "不能修改过去的日期")
    opens_minute, closes_minute = _minutes(opens, closes, required=kind == "open")
    row = ServiceException(service_id=service.id, day=day, kind=ExceptionKind(kind),
                           opens_minute=opens_minute, closes_minute=closes_minute,
                           note=(note or "").strip(), created_by_id=scope.user_id,
                           created_at=bookings.now())
    db.session.add(row)
    affected = _open_bookings_on(service, day) if kind == "closed" else 0
    db.session.commit()
    row.affected_bookings = affected
    return row


def _minutes(opens: str | None, closes: str | None, *, required: bool) -> tuple:
    """(opens, closes) in minutes, both or neither; 422 `invalid_hours` otherwise."""
    if opens is None and closes is None and not required:
        return None, None
    try:
        first, last = slots.parse_minute(opens or ""), slots.parse_minute(closes or "")
    except ValueError:
        first = last = None
    if first is None or last is None or first >= last:
        raise field_error("opens", "invalid_hours", "请填写正确的起止时间（如 08:30–11:30）")
    return first, last


def _open_bookings_on(service: Service, day: date) -> int:
    """Open bookings of the service on a local day (staff must contact those residents)."""
    start = slots.wall_clock_midnight(day, service.tz)
    end = slots.wall_clock_midnight(day + timedelta(days=1), service.tz)
    return db.session.scalar(select(func.count()).select_from(Booking).where(
        Booking.service_id == service.id, Booking.status.in_(OPEN_STATUSES),
        Booking.starts_at >= start, Booking.starts_at < end))


def list_exceptions(*, scope: StaffScope, service_id: int) -> list[ServiceException]:
    """The service's exceptions from today on."""
    service = scope.service(service_id)
    return exceptions_between(service.id, service_today(service), None)


def delete_exception(*, scope: StaffScope, service_id: int, exception_id: int) -> None:
    """Remove an exception of one of the caller's services; 404 otherwise."""
    service = scope.service(service_id)
    row = db.session.get(ServiceException, exception_id)
    if row is None or row.service_id != service.id:
        raise NotFound("找不到该例外安排", code="exception_not_found")
    db.session.delete(row)
    db.session.commit()


def adjust_slot(*, scope: StaffScope, service_id: int, start: datetime,
                blocked: bool | None = None, capacity: int | None = None) -> SlotView:
    """Block/unblock one slot or set its capacity (never below the places already booked)."""
    service = scope.service(service_id)
    start = as_aware(start, service)
    day = start.astimezone(service.tz).date()
    if start not in slots.day_starts(rules_between(service, day, day), day):
        raise field_error("start", "not_on_grid", "该时间不是服务时段")
    slot_id = ensure_slot(service, start)
    if capacity is not None:
        _set_capacity(slot_id, capacity)
    if blocked is not None:
        db.session.execute(update(Slot).where(Slot.id == slot_id)
                           .values(blocked=blocked, updated_at=bookings.now())
                           .execution_options(synchronize_session=False))
    view_of = slot_view(service, start, None)  # times and defaults, read before the commit
    db.session.commit()
    row = db.session.get(Slot, slot_id, populate_existing=True)
    return SlotView(start=view_of.start, end=view_of.end, capacity=row.capacity,
                    booked=row.booked, remaining=row.remaining, blocked=row.blocked)


def _set_capacity(slot_id: int, capacity: int) -> None:
    """Conditional UPDATE: 409 `capacity_below_booked` if more places are already taken."""
    changed = db.session.execute(
        update(Slot).where(Slot.id == slot_id, Slot.booked <= capacity)
        .values(capacity=capacity, updated_at=bookings.now())
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        booked = db.session.scalar(select(Slot.booked).where(Slot.id == slot_id))
        raise Conflict("容量不能少于已预约人数", code="capacity_below_booked",
                       details={"booked": booked})
