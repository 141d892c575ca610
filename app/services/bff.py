"""The BFF: one small response per mini-program screen, at a fixed number of SQL statements.

Home costs 5 statements on a warm cache (me + households + unread count, my open reports with
their latest step, my next bookings, my signups, my active order) and 3 more when the shared parts
(upcoming activities, today's menu, notices) must be rebuilt; those come from a short-lived Redis
cache keyed on table generations, so any committed write to them is seen at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import aliased

from app.errors import Unauthorized
from app.extensions import db
from app.models import (
    Building,
    Community,
    Household,
    HouseholdMember,
    Notice,
    Notification,
    User,
)
from app.models.activities import Activity, ActivityStatus, Signup, SignupStatus, audience_bit
from app.models.booking import Booking, BookingStatus, Service
from app.models.canteen import Dish, Menu, MenuItem, Order, OrderStatus
from app.models.reports import Report, ReportCategory, ReportEvent, ReportStatus
from app.prepared import written
from app.services import cache
from app.services.labels import EVENT_LABELS, REPORT_STATUS_LABELS

SHARED_TTL = 30
REPORTS_SHOWN, BOOKINGS_SHOWN, ACTIVITIES_SHOWN, NOTICES_SHOWN = 3, 3, 5, 5
OPEN_REPORT_STATES = (ReportStatus.SUBMITTED, ReportStatus.ROUTED, ReportStatus.ACCEPTED,
                      ReportStatus.IN_PROGRESS, ReportStatus.REOPENED, ReportStatus.RESOLVED)
UPCOMING_BOOKING_STATES = (BookingStatus.PENDING, BookingStatus.CONFIRMED)
DONE_ORDER_STATES = (OrderStatus.DELIVERED, OrderStatus.PICKED_UP, OrderStatus.CANCELLED,
                     OrderStatus.DELIVERY_FAILED)
ORDER_STATUS_LABELS = {"placed": "已下单", "accepted": "已接单", "preparing": "制作中",
                       "ready": "待取餐", "picked_up": "已取餐", "out_for_delivery": "配送中",
                       "delivered": "已送达", "delivery_failed": "配送失败", "cancelled": "已取消"}
BOOKING_STATUS_LABELS = {"pending": "待确认", "confirmed": "已确认", "checked_in": "已签到",
                         "completed": "已完成", "cancelled": "已取消", "no_show": "未到",
                         "rejected": "已拒绝"}
SIGNUP_STATUS_LABELS = {"confirmed": "已报名", "waitlisted": "候补中", "cancelled": "已取消",
                        "checked_in": "已签到"}


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def home(user_id: int) -> dict:
    """Everything the home screen shows, for one user."""
    me = _me(user_id)
    community_id = me["community_id"]
    at = now()
    unread = me.pop("unread")
    if me["community_id"] is None:
        me.pop("timezone")
    body = {"user": me, "unread_notifications": unread,
            "reports": _open_reports(user_id), "bookings": _next_bookings(user_id, at),
            "activities": [], "canteen": None, "notices": []}
    if community_id is None:
        return body
    today = at.astimezone(ZoneInfo(me.pop("timezone"))).date()
    activities, menus, notices = _shared(community_id, at, today)
    body["activities"] = _activities_for(user_id, me, activities, at)
    body["canteen"] = {"menus": menus, "my_order": _active_order(user_id, today)}
    body["notices"] = [n for n in notices if n["expires_at"] is None
                       or datetime.fromisoformat(n["expires_at"]) > at][:NOTICES_SHOWN]
    return body


def _rows(statement, params: dict | None = None):
    """The rows of a column-only statement, run by SQLAlchemy Core on the session's connection
    (same transaction): no ORM setup per execution - 13% of the home screen's CPU."""
    return db.session.connection().execute(statement, params)


# The statements are built once, with bind parameters: building a select() with its joins and
# conditions cost more CPU per request than running it (profiled with `make bench`).
ME = (select(User.id, User.display_name, User.birth_year, User.community_id,
             select(func.count(Notification.id))
             .where(Notification.user_id == User.id, Notification.read_at.is_(None))
             .scalar_subquery(),
             HouseholdMember.household_id, HouseholdMember.status, HouseholdMember.relation,
             Household.unit, Household.room, Building.number, Community.timezone)
      .outerjoin(Community, Community.id == User.community_id)
      .outerjoin(HouseholdMember, HouseholdMember.user_id == User.id)
      .outerjoin(Household, Household.id == HouseholdMember.household_id)
      .outerjoin(Building, Building.id == Household.building_id)
      .where(User.id == bindparam("user_id")))


def _me(user_id: int) -> dict:
    """The user, their households and the unread count, in one statement."""
    rows = _rows(ME, {"user_id": user_id}).all()
    if not rows:
        raise Unauthorized("账号不存在或已停用", code="account_inactive")
    first = rows[0]
    households = [{"household_id": r.household_id, "status": str(r.status),
                   "relation": str(r.relation),
                   "label": f"{r.number}号楼{r.unit}单元{r.room}"}
                  for r in rows if r.household_id is not None]
    return {"id": first.id, "display_name": first.display_name,
            "birth_year": first.birth_year, "community_id": first.community_id,
            "households": households, "unread": first[4],
            "timezone": first.timezone or "Asia/Shanghai"}


# My open reports, newest first, each with its latest public step.
_STEP = aliased(ReportEvent)
OPEN_REPORTS = (
    select(Report.id, Report.status, Report.created_at, ReportCategory.name,
           _STEP.action, _STEP.note, _STEP.created_at)
    .join(ReportCategory, ReportCategory.id == Report.category_id)
    .outerjoin(_STEP, _STEP.id == select(func.max(ReportEvent.id))
               .where(ReportEvent.report_id == Report.id, ReportEvent.public.is_(True))
               .correlate(Report).scalar_subquery())
    .where(Report.reporter_id == bindparam("user_id"),
           Report.status.in_(written(OPEN_REPORT_STATES)))
    .order_by(Report.created_at.desc(), Report.id.desc()).limit(written(REPORTS_SHOWN)))


def _open_reports(user_id: int) -> list[dict]:
    """My open reports, newest first, each with its latest public step (one statement)."""
    rows = _rows(OPEN_REPORTS, {"user_id": user_id}).all()
    return [{"id": r[0], "status": str(r[1]), "status_label": REPORT_STATUS_LABELS[str(r[1])],
             "created_at": r[2].isoformat(), "category_name": r[3],
             "latest_step": None if r[4] is None else {
                 "action": r[4], "label": EVENT_LABELS.get(r[4], r[4]), "note": r[5],
                 "at": r[6].isoformat()}}
            for r in rows]


NEXT_BOOKINGS = (
    select(Booking.id, Booking.status, Booking.starts_at, Booking.ends_at, Service.name,
           Booking.for_user_id)
    .join(Service, Service.id == Booking.service_id)
    .where((Booking.user_id == bindparam("user_id"))
           | (Booking.for_user_id == bindparam("user_id")),
           Booking.status.in_(UPCOMING_BOOKING_STATES), Booking.ends_at >= bindparam("at"))
    .order_by(Booking.starts_at, Booking.id).limit(written(BOOKINGS_SHOWN)))


def _next_bookings(user_id: int, at: datetime) -> list[dict]:
    """My (or for me) upcoming bookings, soonest first."""
    rows = _rows(NEXT_BOOKINGS, {"user_id": user_id, "at": at}).all()
    return [{"id": r[0], "status": str(r[1]), "status_label": BOOKING_STATUS_LABELS[str(r[1])],
             "start": r[2].isoformat(), "end": r[3].isoformat(), "service": r[4],
             "for_user_id": r[5]} for r in rows]


def _audience_bits(me: dict, at: datetime) -> int:
    """Which activities suit the user: everyone's, plus elderly ones for 60+."""
    bits = audience_bit("all") | audience_bit("family")
    if me["birth_year"] and at.year - me["birth_year"] >= 60:
        bits |= audience_bit("elderly")
    if me["households"]:
        bits |= audience_bit("children")
    return bits


def _shared(community_id: int, at: datetime, today: date) -> list[list[dict]]:
    """The parts every resident of the community sees: upcoming activities, today's menus and
    the current notices - from the generation-keyed Redis cache, in two round trips."""
    return cache.cached_many([
        (f"activities:{community_id}", SHARED_TTL,
         lambda: _upcoming_activities(community_id, at), ("activities",)),
        (f"menus:{community_id}:{today.isoformat()}", SHARED_TTL,
         lambda: _menus_today(community_id, today), ("menus",)),
        (f"notices:{community_id}", SHARED_TTL, lambda: _notices(community_id, at),
         ("notices",)),
    ])


def _upcoming_activities(community_id: int, at: datetime) -> list[dict]:
    """The community's next activities (shared; cached)."""
    rows = _rows(
        select(Activity.id, Activity.title, Activity.place, Activity.starts_at,
               Activity.capacity, Activity.seats_taken, Activity.audience_mask,
               Activity.signup_closes_at)
        .where(Activity.community_id == community_id, Activity.starts_at > at,
               Activity.status != ActivityStatus.CANCELLED)
        .order_by(Activity.starts_at, Activity.id).limit(30)).all()
    return [{"id": r[0], "title": r[1], "place": r[2], "starts_at": r[3].isoformat(),
             "seats_left": max(r[4] - r[5], 0), "audience_mask": r[6],
             "signup_closes_at": r[7].isoformat()} for r in rows]


MY_SIGNUPS = select(Signup.activity_id, Signup.status).where(
    Signup.user_id == bindparam("user_id"),
    Signup.activity_id.in_(bindparam("activity_ids", expanding=True)),
    Signup.status != SignupStatus.CANCELLED)


def _activities_for(user_id: int, me: dict, shared: list[dict], at: datetime) -> list[dict]:
    """The next activities for my audience, with my signup state."""
    bits = _audience_bits(me, at)
    mine = [dict(a) for a in shared
            if a["audience_mask"] & bits and datetime.fromisoformat(a["starts_at"]) > at]
    mine = mine[:ACTIVITIES_SHOWN]
    states = dict(_rows(MY_SIGNUPS, {
        "user_id": user_id, "activity_ids": [a["id"] for a in mine]}).all()) if mine else {}
    for item in mine:
        item.pop("audience_mask")
        state = states.get(item["id"])
        item["my_signup"] = None if state is None else {
            "status": str(state), "status_label": SIGNUP_STATUS_LABELS[str(state)]}
    return mine


def _menus_today(community_id: int, today: date) -> list[dict]:
    """Today's menus with dishes and portions left (shared; cached, any order refreshes it)."""
    rows = _rows(
        select(Menu.id, Menu.meal, Menu.cutoff_at, Dish.id, Dish.name, Dish.price_fen,
               Dish.tags, MenuItem.portions_left)
        .join(MenuItem, MenuItem.menu_id == Menu.id).join(Dish, Dish.id == MenuItem.dish_id)
        .where(Menu.community_id == community_id, Menu.date == today)
        .order_by(Menu.cutoff_at, Menu.id, Dish.id)).all()
    menus: dict[int, dict] = {}
    for r in rows:
        menu = menus.setdefault(r[0], {"id": r[0], "meal": str(r[1]),
                                       "cutoff_at": r[2].isoformat(), "items": []})
        menu["items"].append({"dish_id": r[3], "name": r[4], "price": r[5],
                              "tags": r[6], "portions_left": r[7]})
    return list(menus.values())


ACTIVE_ORDER = (
    select(Order.id, Order.status, Order.meal, Order.fulfilment, Order.pickup_code,
           Order.total_fen)
    .where((Order.placed_by_id == bindparam("user_id")) | (Order.diner_id == bindparam("user_id")),
           Order.menu_date >= bindparam("today"), Order.status.not_in(DONE_ORDER_STATES))
    .order_by(Order.created_at.desc(), Order.id.desc()).limit(1))


def _active_order(user_id: int, today: date) -> dict | None:
    """My (or for me) latest order still on its way."""
    row = _rows(ACTIVE_ORDER, {"user_id": user_id, "today": today}).first()
    if row is None:
        return None
    return {"id": row[0], "status": str(row[1]), "status_label": ORDER_STATUS_LABELS[str(row[1])],
            "meal": str(row[2]), "fulfilment": str(row[3]), "pickup_code": row[4],
            "total": row[5]}


def _notices(community_id: int, at: datetime) -> list[dict]:
    """Current notices, pinned first (shared; cached; expired ones are dropped when read)."""
    rows = _rows(
        select(Notice.id, Notice.title, Notice.pinned, Notice.published_at, Notice.expires_at)
        .where(Notice.community_id == community_id, Notice.withdrawn_at.is_(None),
               Notice.published_at <= at)
        .order_by(Notice.pinned.desc(), Notice.published_at.desc(), Notice.id.desc())
        .limit(20)).all()
    return [{"id": r[0], "title": r[1], "pinned": r[2], "published_at": r[3].isoformat(),
             "expires_at": r[4].isoformat() if r[4] else None} for r in rows]


# Writes to these tables make the cached shared parts stale (see cache.install_session_hooks).
cache.watch(Activity, "activities")
cache.watch(Menu, "menus")
cache.watch(MenuItem, "menus")
cache.watch(Dish, "menus")
cache.watch(Notice, "notices")
