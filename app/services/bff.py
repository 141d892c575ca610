"""The BFF: one small response per mini-program screen, at a fixed number of SQL statements.

Home costs 1 statement on a warm cache (MINE: me + households + unread count, my followed reports
with their latest step, my next bookings, my active orders, my signups) and 3 more when the shared
parts (upcoming activities, today's menu, notices) must be rebuilt; those come from a short-lived
Redis cache keyed on table generations, so any committed write to them is seen at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    Integer,
    Select,
    String,
    bindparam,
    cast,
    func,
    null,
    select,
    type_coerce,
    union_all,
)
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
from app.models.base import UTCDateTime
from app.models.booking import Booking, BookingStatus, Service
from app.models.canteen import Dish, Menu, MenuItem, Order, OrderStatus
from app.models.reports import (
    FOLLOWED_REPORT_STATES,
    Report,
    ReportCategory,
    ReportEvent,
)
from app.prepared import written
from app.services import cache
from app.services.labels import EVENT_LABELS, REPORT_STATUS_LABELS

SHARED_TTL = 30
REPORTS_SHOWN, BOOKINGS_SHOWN, ACTIVITIES_SHOWN, NOTICES_SHOWN = 3, 3, 5, 5
# Active orders read (from yesterday in UTC; today's local date is applied after the read, once
# the community's time zone is known) and signups to coming activities read (the shown
# activities are among the community's next 30).
ORDERS_LOOKED_AT, SIGNUPS_LOOKED_AT = 5, 100
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
    at = now()
    mine = _mine(user_id, at)
    me = _me(mine["me"])
    community_id = me["community_id"]
    unread = me.pop("unread")
    if me["community_id"] is None:
        me.pop("timezone")
    body = {"user": me, "unread_notifications": unread,
            "reports": _open_reports(mine["report"]), "bookings": _next_bookings(mine["booking"]),
            "activities": [], "canteen": None, "notices": []}
    if community_id is None:
        return body
    today = at.astimezone(ZoneInfo(me.pop("timezone"))).date()
    activities, menus, notices = _shared(community_id, at, today)
    body["activities"] = _activities_for(mine["signup"], me, activities, at)
    body["canteen"] = {"menus": menus, "my_order": _active_order(mine["order"], today)}
    body["notices"] = [n for n in notices if n["expires_at"] is None
                       or datetime.fromisoformat(n["expires_at"]) > at][:NOTICES_SHOWN]
    return body


def _rows(statement, params: dict | None = None):
    """The rows of a column-only statement, run by SQLAlchemy Core on the session's connection
    (same transaction): no ORM setup per execution - 13% of the home screen's CPU."""
    return db.session.connection().execute(statement, params)


# The resident's own rows - me with my households and unread count, my followed reports with their
# latest public step, my next bookings, my active orders and my signups - come in ONE statement:
# a UNION ALL of five prebuilt selects into shared typed columns (n* integers, s* strings,
# t* timestamps, d0 a date), told apart by `kind`. Five statements cost five times SQLAlchemy's
# per-execution work and five round trips - half of the home screen's CPU (py-spy, `make bench`).
_SLOTS = (("n", Integer, 5), ("s", String, 7), ("t", UTCDateTime, 2), ("d", Date, 1))


def _part(kind: str, **given) -> list:
    """The shared columns for one kind of row: `given` fills slots (n=[...], s=[...], ...)."""
    columns = [written(kind).label("kind")]
    for prefix, type_, size in _SLOTS:
        values = given.get(prefix, ())
        # type_coerce: the values keep their SQL type (enums are plain strings in the database)
        # while every row is read back as the slot's type; a NULL slot is cast, for PostgreSQL
        columns += [(type_coerce(values[i], type_()) if i < len(values)
                     else cast(null(), type_())).label(f"{prefix}{i}") for i in range(size)]
    return columns


def _limited(query: Select) -> Select:
    """A member with its own ORDER BY / LIMIT, as a subquery (SQLite needs it in a UNION)."""
    sub = query.subquery()
    return select(*sub.c)


_STEP = aliased(ReportEvent)
# My newest followed reports (FOLLOWED_REPORT_STATES; three entries of ix_reports_reporter_open)
# first, then their category and latest public step - for those few only (a resident with 40 open
# reports had the step looked up 40 times: 0.66 of the statement's 0.84 ms in EXPLAIN ANALYZE).
_NEWEST = (select(Report.id, Report.status, Report.category_id, Report.created_at)
           .where(Report.reporter_id == bindparam("user_id"),
                  Report.status.in_(written(FOLLOWED_REPORT_STATES)))
           .order_by(Report.created_at.desc(), Report.id.desc()).limit(written(REPORTS_SHOWN))
           .subquery("newest"))
MINE = union_all(
    select(*_part(
        "me", n=[User.id, User.birth_year, User.community_id,
                 select(func.count(Notification.id)).where(
                     Notification.user_id == User.id, Notification.read_at.is_(None))
                 .scalar_subquery(), HouseholdMember.household_id],
        s=[User.display_name, HouseholdMember.status, HouseholdMember.relation, Household.unit,
           Household.room, Building.number, Community.timezone]))
    .outerjoin(Community, Community.id == User.community_id)
    .outerjoin(HouseholdMember, HouseholdMember.user_id == User.id)
    .outerjoin(Household, Household.id == HouseholdMember.household_id)
    .outerjoin(Building, Building.id == Household.building_id)
    .where(User.id == bindparam("user_id")),
    _limited(select(*_part(  # my followed reports (newest first: sorted in _open_reports), each
        "report", n=[_NEWEST.c.id],  # with its latest public step
        s=[_NEWEST.c.status, ReportCategory.name, _STEP.action, _STEP.note],
        t=[_NEWEST.c.created_at, _STEP.created_at]))
        .select_from(_NEWEST)
        .join(ReportCategory, ReportCategory.id == _NEWEST.c.category_id)
        .outerjoin(_STEP, _STEP.id == select(func.max(ReportEvent.id))
                   .where(ReportEvent.report_id == _NEWEST.c.id, ReportEvent.public.is_(True))
                   .correlate(_NEWEST).scalar_subquery())),
    _limited(select(*_part(  # my (or for me) upcoming bookings, soonest first
        "booking", n=[Booking.id, Booking.for_user_id], s=[Booking.status, Service.name],
        t=[Booking.starts_at, Booking.ends_at]))
        .join(Service, Service.id == Booking.service_id)
        .where((Booking.user_id == bindparam("user_id"))
               | (Booking.for_user_id == bindparam("user_id")),
               Booking.status.in_(written(UPCOMING_BOOKING_STATES)),
               Booking.ends_at >= bindparam("at"))
        .order_by(Booking.starts_at, Booking.id).limit(written(BOOKINGS_SHOWN))),
    _limited(select(*_part(  # my (or for me) latest orders still on their way, from yesterday on
        "order", n=[Order.id, Order.total_fen],
        s=[Order.status, Order.meal, Order.fulfilment, Order.pickup_code],
        t=[Order.created_at], d=[Order.menu_date]))
        .where((Order.placed_by_id == bindparam("user_id"))
               | (Order.diner_id == bindparam("user_id")),
               Order.menu_date >= bindparam("since"),
               Order.status.not_in(written(DONE_ORDER_STATES)))
        .order_by(Order.created_at.desc(), Order.id.desc()).limit(written(ORDERS_LOOKED_AT))),
    _limited(select(*_part(  # my signups to activities still ahead
        "signup", n=[Signup.activity_id], s=[Signup.status]))
        .join(Activity, Activity.id == Signup.activity_id)
        .where(Signup.user_id == bindparam("user_id"),
               Signup.status != written(str(SignupStatus.CANCELLED)),
               Activity.starts_at > bindparam("at"))
        .order_by(Activity.starts_at, Activity.id).limit(written(SIGNUPS_LOOKED_AT))),
)


def _mine(user_id: int, at: datetime) -> dict:
    """My rows of every kind, from the one statement MINE; 401 when the account is gone."""
    rows = _rows(MINE, {"user_id": user_id, "at": at,
                        "since": at.date() - timedelta(days=1)}).all()
    by_kind: dict[str, list] = {"me": [], "report": [], "booking": [], "order": [], "signup": []}
    for row in rows:
        by_kind[row.kind].append(row)
    if not by_kind["me"]:
        raise Unauthorized("账号不存在或已停用", code="account_inactive")
    return by_kind


def _me(rows: list) -> dict:
    """The user, their households and the unread count."""
    first = rows[0]
    households = [{"household_id": r.n4, "status": r.s1, "relation": r.s2,
                   "label": f"{r.s5}号楼{r.s3}单元{r.s4}"}
                  for r in rows if r.n4 is not None]
    return {"id": first.n0, "display_name": first.s0, "birth_year": first.n1,
            "community_id": first.n2, "households": households, "unread": first.n3,
            "timezone": first.s6 or "Asia/Shanghai"}


def _open_reports(rows: list) -> list[dict]:
    """My followed reports, newest first, each with its latest public step."""
    rows = sorted(rows, key=lambda r: (r.t0, r.n0), reverse=True)
    return [{"id": r.n0, "status": r.s0, "status_label": REPORT_STATUS_LABELS[r.s0],
             "created_at": r.t0.isoformat(), "category_name": r.s1,
             "latest_step": None if r.s2 is None else {
                 "action": r.s2, "label": EVENT_LABELS.get(r.s2, r.s2), "note": r.s3,
                 "at": r.t1.isoformat()}}
            for r in rows]


def _next_bookings(rows: list) -> list[dict]:
    """My (or for me) upcoming bookings, soonest first."""
    rows = sorted(rows, key=lambda r: (r.t0, r.n0))
    return [{"id": r.n0, "status": r.s0, "status_label": BOOKING_STATUS_LABELS[r.s0],
             "start": r.t0.isoformat(), "end": r.t1.isoformat(), "service": r.s1,
             "for_user_id": r.n1} for r in rows]


def _active_order(rows: list, today: date) -> dict | None:
    """My (or for me) latest order still on its way, for today or later (in local time)."""
    rows = sorted((r for r in rows if r.d0 >= today), key=lambda r: (r.t0, r.n0), reverse=True)
    if not rows:
        return None
    r = rows[0]
    return {"id": r.n0, "status": r.s0, "status_label": ORDER_STATUS_LABELS[r.s0],
            "meal": r.s1, "fulfilment": r.s2, "pickup_code": r.s3, "total": r.n1}


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


def _activities_for(signups: list, me: dict, shared: list[dict], at: datetime) -> list[dict]:
    """The next activities for my audience, with my signup state."""
    bits = _audience_bits(me, at)
    mine = [dict(a) for a in shared
            if a["audience_mask"] & bits and datetime.fromisoformat(a["starts_at"]) > at]
    mine = mine[:ACTIVITIES_SHOWN]
    states = {r.n0: r.s0 for r in signups}
    for item in mine:
        item.pop("audience_mask")
        state = states.get(item["id"])
        item["my_signup"] = None if state is None else {
            "status": state, "status_label": SIGNUP_STATUS_LABELS[state]}
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
