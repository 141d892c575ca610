"""Booking jobs: notifications, reminders on RQ's scheduler, and urgent-visit routing.

A reminder is planned by the outbox job `sync_booking_reminder`, which runs after every change
of a booking: it removes the reminders the booking no longer wants and books the one it does
with `queue.enqueue_at` (job id `booking-reminder-<id>-v<version>`). The scheduled function
`send_booking_reminder` carries the booking's version and start and checks them again when it
runs, so a reminder of a cancelled or moved booking is never sent, even if it was already
queued when the booking changed.
"""

from __future__ import annotations

import contextlib
import logging

from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import ScheduledJobRegistry

from app.errors import NotFound
from app.extensions import db, redis_store
from app.models import Booking, BookingEvent, BookingKind
from app.services import booking as booking_service
from app.services import notifications
from workers.jobs import app_context, job

log = logging.getLogger("app.workers.booking")

REMINDER_QUEUE = "default"
REMINDER_RESULT_TTL = 24 * 3600
TIME_FORMAT = "%Y-%m-%d %H:%M"


def reminder_job_id(booking_id: int, version: int) -> str:
    """The RQ job id of a booking's reminder for one version of its time."""
    return f"booking-reminder-{booking_id}-v{version}"


@job("sync_booking_reminder")
def sync_booking_reminder(booking_id: int) -> str | None:
    """Make RQ's schedule hold exactly the reminder the booking wants now; returns its job id."""
    version, plan = booking_service.reminder_plan(booking_id)
    queue = redis_store.queue(REMINDER_QUEUE)
    keep = reminder_job_id(booking_id, plan.version) if plan else None
    _drop_reminders(queue, booking_id, version, keep)
    if plan is None:
        return None
    args = (booking_id, plan.version, plan.starts_at.isoformat())
    options = {"job_id": keep, "result_ttl": REMINDER_RESULT_TTL,
               "description": f"reminder of booking {booking_id} (v{plan.version})"}
    if plan.overdue:  # due while the scheduler was out of reach: send it now
        queue.enqueue(send_booking_reminder, *args, **options)
    else:
        queue.enqueue_at(plan.remind_at, send_booking_reminder, *args, **options)
    return keep


def _drop_reminders(queue: Queue, booking_id: int, version: int, keep: str | None) -> None:
    """Unschedule and delete every reminder job of the booking except `keep`."""
    registry = ScheduledJobRegistry(queue=queue)
    for old in range(1, version + 1):
        job_id = reminder_job_id(booking_id, old)
        if job_id == keep:
            continue
        registry.remove(job_id)
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(job_id, connection=queue.connection).delete()


def send_booking_reminder(booking_id: int, version: int, starts_at: str) -> int:
    """The scheduled reminder: sent only if the booking is still confirmed at that time."""
    with app_context():
        booking = booking_service.reminder_due(booking_id, version, starts_at)
        if booking is None:
            log.info("reminder of booking %s v%s dropped: cancelled or moved",
                     booking_id, version)
            return 0
        service = booking.service
        when = booking.start.strftime(TIME_FORMAT)
        return _notify_people(
            booking, kind="booking_reminder", dedupe=f"booking-reminder:{booking_id}:v{version}",
            title=f"预约提醒：{service.name} {when}",
            body=f"您预约的{service.name}将于 {when} 开始，地点：{_where(booking)}。",
            phrase="即将开始")


def _where(booking: Booking) -> str:
    """Where the service takes place, as the resident reads it."""
    return booking.address or booking.service.place or booking.service.provider.name


def _people(booking: Booking) -> list[int]:
    """Who hears about a booking: whoever booked it and the person served."""
    return list(dict.fromkeys([booking.user_id, booking.for_user_id]))


def _notify_people(booking: Booking, *, kind: str, dedupe: str, title: str, body: str,
                   phrase: str) -> int:
    """An in-app notification and a subscribe message to each person of the booking."""
    sent = 0
    for user_id in _people(booking):
        sent += bool(notifications.notify_user(
            user_id=user_id, kind=kind, title=title, body=body, dedupe_key=f"{dedupe}:u{user_id}",
            data={"booking_id": booking.id, "status": str(booking.status)},
            wx_data={"thing1": booking.service.name, "time2": booking.start.strftime(TIME_FORMAT),
                     "phrase3": phrase, "thing4": _where(booking)},
            page=f"pages/booking/detail?id={booking.id}"))
    return sent


def _resident_message(booking: Booking, event: BookingEvent) -> tuple[str, str, str] | None:
    """(kind, title, phrase) of the resident's notice of a step, or None for silent steps."""
    name = booking.service.name
    if event.action == "book":
        if event.to_status == "pending":
            provider = booking.service.provider.name
            return "booking_pending", f"预约已提交，等待{provider}确认", "待确认"
        return "booking_confirmed", f"预约成功：{name}", "预约成功"
    if event.action == "confirm" and booking.kind == BookingKind.URGENT:
        who = booking.confirmed_by.display_name if booking.confirmed_by else "工作人员"
        return "booking_urgent", f"{who}已接单，将尽快上门", "已接单"
    return {
        "confirm": ("booking_confirmed", f"预约已确认：{name}", "已确认"),
        "reject": ("booking_rejected", f"预约未通过：{name}", "未通过"),
        "cancel": ("booking_cancelled", f"预约已取消：{name}", "已取消"),
        "reschedule": ("booking_rescheduled", f"预约已改到 {booking.start:%m-%d %H:%M}", "已改约"),
        "request_urgent": ("booking_urgent", "上门请求已发出，工作人员会尽快联系您", "已发出"),
    }.get(event.action)


# Steps taken by residents that the provider's staff should hear about (in the app).
STAFF_NOTICES = {"book": "新预约", "cancel": "居民取消了预约", "reschedule": "居民改约"}


@job("notify_booking_event")
def notify_booking_event(booking_id: int, event_id: int) -> int:
    """Tell the resident (and, for their own steps, the provider's staff) about a step."""
    try:
        booking = booking_service.load_booking(booking_id, with_events=False)
    except NotFound:
        return 0
    event = db.session.get(BookingEvent, event_id)
    if event is None:
        return 0
    sent = 0
    message = _resident_message(booking, event)
    if message is not None:
        kind, title, phrase = message
        sent += _notify_people(booking, kind=kind, dedupe=f"booking-event:{event.id}",
                               title=title, body=event.note or _summary(booking), phrase=phrase)
    if event.action in STAFF_NOTICES and event.actor_id in _people(booking):
        sent += _notify_provider(booking, event)
    return sent


def _summary(booking: Booking) -> str:
    return f"{booking.service.name}，{booking.start:%Y-%m-%d %H:%M}，{_where(booking)}"


def _notify_provider(booking: Booking, event: BookingEvent) -> int:
    """An in-app notice to every staff member of the providing org."""
    title = f"{STAFF_NOTICES[event.action]}：{booking.service.name} {booking.start:%m-%d %H:%M}"
    return notifications.notify_org(
        org_id=booking.service.provider_org_id, kind="booking_staff", title=title,
        body=f"{booking.for_user.display_name}，{_where(booking)}。{booking.note}".strip(),
        data={"booking_id": booking.id, "event_id": event.id},
        dedupe_key=f"booking-staff:{event.id}")


@job("route_urgent_visit")
def route_urgent_visit(booking_id: int) -> int:
    """Send a one-tap home-visit request to the provider's staff and the grid worker."""
    routing = booking_service.route_urgent_visit(booking_id)
    if routing is None:
        return 0
    booking = booking_service.load_booking(booking_id, with_events=False)
    title = f"【一键上门】{booking.for_user.display_name}，{booking.address}"
    body = booking.note or "居民请求上门，请尽快联系"
    data = {"booking_id": booking.id, "urgent": True}
    sent = notifications.notify_org(org_id=routing.provider_org_id, kind="urgent_visit",
                                    title=title, body=body, data=data,
                                    dedupe_key=f"urgent-visit:{booking.id}")
    if routing.grid_worker_id:
        sent += bool(notifications.notify_user(
            user_id=routing.grid_worker_id, kind="urgent_visit", title=title, body=body,
            data=data, dedupe_key=f"urgent-visit:{booking.id}:grid{routing.grid_worker_id}"))
    return sent
