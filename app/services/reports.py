"""Snapshot reports (随手拍), the resident's side: submit, find nearby, follow, urge, feedback.

A report's status is what the resident sees; it follows its tickets (the least advanced open
ticket decides) through REPORT_ALLOWED, and every move lands on the timeline in the same
transaction.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload, make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app import ratelimit
from app.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from app.extensions import db, redis_store
from app.inserts import NewId
from app.models import Building, Community, User
from app.models.reports import (
    FINAL_REPORT_STATES,
    Report,
    ReportCategory,
    ReportEvent,
    ReportFollower,
    ReportPhoto,
    ReportStatus,
    Ticket,
    TicketStatus,
)
from app.pagination import keyset_page
from app.services import cache, outbox

RS, TS = ReportStatus, TicketStatus
REPORT_ALLOWED: dict[ReportStatus, dict[str, ReportStatus]] = {
    RS.SUBMITTED: {"route": RS.ROUTED, "reject": RS.REJECTED, "mark_duplicate": RS.DUPLICATE},
    RS.ROUTED: {"accept": RS.ACCEPTED, "start": RS.IN_PROGRESS, "resolve": RS.RESOLVED,
                "reject": RS.REJECTED, "mark_duplicate": RS.DUPLICATE},
    RS.ACCEPTED: {"start": RS.IN_PROGRESS, "resolve": RS.RESOLVED, "route": RS.ROUTED,
                  "reject": RS.REJECTED, "mark_duplicate": RS.DUPLICATE},
    RS.IN_PROGRESS: {"resolve": RS.RESOLVED, "route": RS.ROUTED, "reject": RS.REJECTED,
                     "mark_duplicate": RS.DUPLICATE},
    RS.RESOLVED: {"close": RS.CLOSED, "reopen": RS.REOPENED},
    RS.REOPENED: {"accept": RS.ACCEPTED, "start": RS.IN_PROGRESS, "resolve": RS.RESOLVED,
                  "route": RS.ROUTED, "reject": RS.REJECTED, "mark_duplicate": RS.DUPLICATE},
    RS.CLOSED: {},
    RS.REJECTED: {},
    RS.DUPLICATE: {},
}
OPEN_STATUSES = (RS.SUBMITTED, RS.ROUTED, RS.ACCEPTED, RS.IN_PROGRESS, RS.REOPENED)
# Ticket states that still count for the report, least advanced first, and what they show.
TICKET_PROGRESS = {TS.NEW: RS.ROUTED, TS.REOPENED: RS.REOPENED, TS.ACCEPTED: RS.ACCEPTED,
                   TS.IN_PROGRESS: RS.IN_PROGRESS, TS.RESOLVED: RS.RESOLVED,
                   TS.CLOSED: RS.CLOSED}
NEARBY_METRES = 100
URGE_INTERVAL = timedelta(minutes=30)
FEEDBACK_WINDOW = timedelta(days=7)
MAX_PHOTOS = 9
MAX_DESCRIPTION = 2000


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def list_categories() -> list[ReportCategory]:
    """The active categories in display order."""
    return list(db.session.scalars(
        select(ReportCategory).where(ReportCategory.is_active.is_(True))
        .order_by(ReportCategory.sort_order, ReportCategory.id)))


CATEGORY_COLUMNS = ("id", "code", "name", "name_en", "description", "sla_hours", "photo_required",
                    "is_private", "extra_fields", "sort_order", "is_active")
cache.watch(ReportCategory, "report_categories")


def active_categories() -> dict[str, dict]:
    """The active categories' columns by code, cached in Redis until a category changes."""
    # v1: the shape of the cached dicts (bump it when CATEGORY_COLUMNS changes); 60 s bounds how
    # long a category changed outside the ORM (SQL, a migration, a lost bump) can be stale.
    return cache.cached("report_categories:active:v1", 60, lambda: {
        c.code: {name: getattr(c, name) for name in CATEGORY_COLUMNS}
        for c in list_categories()}, depends_on=("report_categories",))


def category_by_code(code: str) -> ReportCategory:
    """An active category, or 422 `unknown_category`."""
    columns = active_categories().get(code)
    if columns is None:
        raise ValidationFailed("没有这个问题类别", code="unknown_category",
                               details={"fields": {"category": ["未知的类别"]}})
    return _in_session(columns)


def category_by_id(category_id: int) -> ReportCategory:
    """A report's category: an active one from the cached catalogue, else read."""
    columns = next((c for c in active_categories().values() if c["id"] == category_id), None)
    if columns is None:  # retired since the report was filed
        return db.session.get(ReportCategory, category_id)
    return _in_session(columns)


def _in_session(columns: dict) -> ReportCategory:
    """The category of the cached columns in the session: the one it holds, or the columns
    joined to it as if just loaded (SQLAlchemy's recipe for cached objects) - no SELECT, and
    nothing to write back."""
    loaded = db.session.identity_map.get(db.session.identity_key(ReportCategory, columns["id"]))
    if loaded is not None:
        return loaded
    category = ReportCategory(**columns)
    make_transient_to_detached(category)
    db.session.add(category)
    return category


def record_event(report: Report, action: str, **step) -> ReportEvent:
    """Append one row to the report's timeline (in the caller's transaction), flushed so it
    has its id; `step` as for new_event."""
    event = new_event(report, action, **step)
    db.session.add(event)
    db.session.flush()
    return event


def new_event(report: Report, action: str, *, actor_id: int | None = None,
              ticket: Ticket | None = None, org_id: int | None = None,
              from_status: str | None = None, to_status: str | None = None,
              note: str = "", public: bool = True, data: dict | None = None) -> ReportEvent:
    """A timeline row of the report, not yet written."""
    return ReportEvent(report_id=report.id, ticket_id=ticket.id if ticket else None,
                       actor_id=actor_id, org_id=org_id or (ticket.org_id if ticket else None),
                       action=action, from_status=from_status, to_status=to_status,
                       note=note or "", public=public, data=data or {}, created_at=now())


def move_report(report: Report, to: ReportStatus, *, actor_id: int | None, note: str = "",
                data: dict | None = None, public: bool = True) -> ReportEvent | None:
    """Move the report to `to` if REPORT_ALLOWED permits it, with a timeline row and the
    reporter's notice (report_move_rows, written by one statement); the timeline row, which is
    not an object of the session."""
    return _write_move(report_move_rows(report, to, actor_id=actor_id, note=note, data=data,
                                        public=public))


def report_move_rows(report: Report, to: ReportStatus, *, actor_id: int | None,
                     note: str = "", data: dict | None = None,
                     public: bool = True) -> list | None:
    """The move to `to` in memory, if REPORT_ALLOWED permits it (None: the report is there
    already): the report's status and stamps set, and the rows to write with it
    (outbox.write) - its timeline row, then the reporter's notice job.

    Moves that follow a ticket's move are recorded with public=False: the resident's timeline
    shows the ticket's step (with the org's name) once, and is still notified of the change.
    """
    if report.status == to:
        return None
    action = next((a for a, target in REPORT_ALLOWED[report.status].items() if target == to),
                  None)
    if action is None:
        raise InvalidTransition(details={"from": str(report.status), "to": str(to)})
    before, report.status = report.status, to
    stamp = now()
    if to == RS.RESOLVED:
        report.resolved_at = stamp
    if to in FINAL_REPORT_STATES:
        report.closed_at = stamp
    event = new_event(report, action, actor_id=actor_id, from_status=str(before),
                      to_status=str(to), note=note, data=data, public=public)
    return [event, outbox.new_job("notify_report_update", report_id=report.id,
                                  event_id=NewId(event))]


def sync_report_status(report: Report, tickets: list[Ticket], *, actor_id: int | None,
                       note: str = "") -> ReportEvent | None:
    """Set the report's status from its tickets: the least advanced one that still counts
    (as move_report)."""
    return _write_move(synced_move_rows(report, tickets, actor_id=actor_id, note=note))


def synced_move_rows(report: Report, tickets: list[Ticket], *, actor_id: int | None,
                     note: str = "") -> list | None:
    """The move its tickets call for, as report_move_rows (in memory, the rows to write), or
    None."""
    counting = [t for t in tickets if t.status in TICKET_PROGRESS]
    if counting:
        order = list(TICKET_PROGRESS)
        least = min(counting, key=lambda t: order.index(t.status))
        return report_move_rows(report, TICKET_PROGRESS[least.status], actor_id=actor_id,
                                note=note, public=False)
    if tickets and all(t.status == TS.REJECTED for t in tickets):
        report.rejected_reason = note or report.rejected_reason
        return report_move_rows(report, RS.REJECTED, actor_id=actor_id, note=note, public=False)
    return None


def _write_move(rows: list | None) -> ReportEvent | None:
    """Write a move's rows (report_move_rows); its timeline row."""
    if rows is None:
        return None
    outbox.write(*rows)
    return rows[0]


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    dlat, dlng = rlat2 - rlat1, math.radians(lng2 - lng1)
    a = math.sin(dlat / 2) ** 2 + math.cos(rlat1) * math.cos(rlat2) * math.sin(dlng / 2) ** 2
    return 6_371_000 * 2 * math.asin(math.sqrt(a))


def _bad(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}})


class Place(NamedTuple):
    """A building's community: its id, centre and radius (what resolve_location checks)."""

    id: int
    center_lat: float | None
    center_lng: float | None
    radius_m: int


# Prebuilt, with bind parameters; read as plain rows.
BUILDING_PLACE = (
    select(Community.id, Community.center_lat, Community.center_lng, Community.radius_m)
    .join_from(Building, Community, Community.id == Building.community_id)
    .where(Building.id == bindparam("building_id")))
COMMUNITY_PLACE = select(Community.id, Community.center_lat, Community.center_lng,
                         Community.radius_m).where(Community.id == bindparam("community_id"))
COMMUNITY_BUILDINGS = select(Building.id).where(Building.community_id == bindparam("community_id"))
cache.watch(Building, "places")
cache.watch(Community, "places")


def building_place(building_id: int, home_id: int | None) -> Place | None:
    """The community of a building (None: no such building). A building of the caller's own
    community (`home_id`) is found in that community's cached list of buildings (the shared
    cache, until a building or a community is written); any other is read."""
    if home_id is not None:
        home = cache.cached(f"places:community:{home_id}:v1", 300,
                            lambda: _community_places(home_id), depends_on=("places",))
        if home["place"] is not None and building_id in home["buildings"]:
            return Place(*home["place"])
    row = db.session.connection().execute(BUILDING_PLACE, {"building_id": building_id}).first()
    return None if row is None else Place(*row)


def _community_places(community_id: int) -> dict:
    """A community's place and the ids of its buildings, as the cache keeps them (v1)."""
    connection, ids = db.session.connection(), {"community_id": community_id}
    place = connection.execute(COMMUNITY_PLACE, ids).first()
    return {"place": None if place is None else list(place),
            "buildings": list(connection.execute(COMMUNITY_BUILDINGS, ids).scalars())}


def resolve_location(*, user_id: int, building_id: int | None, lat: float | None,
                     lng: float | None, home_id: int | None = None) -> int:
    """The id of the community a report is about; 422 when outside the caller's reach.

    `home_id`: the user's community when the caller knows it (their token's, which is final
    once set: app.security.token_community_id); otherwise the account is read.
    """
    if building_id is None and (lat is None or lng is None):
        raise _bad("location", "location_required", "请选择楼栋或提供位置")
    if home_id is None:
        home_id = db.session.scalar(select(User.community_id).where(User.id == user_id))
    if building_id is not None:
        community = building_place(building_id, home_id)
        if community is None:
            raise _bad("building_id", "building_not_found", "楼栋不存在")
    else:
        community = (db.session.get(Community, home_id) if home_id is not None
                     else _nearest_community(lat, lng))
    if home_id is not None and community.id != home_id:
        raise _bad("building_id", "building_not_in_community", "该楼栋不属于您所在的社区")
    check_in_community(community, lat, lng)
    return community.id


def check_in_community(community: Community | Place, lat: float | None, lng: float | None) -> None:
    """422 `location_outside_community` when the point is far outside the community."""
    if lat is not None and lng is not None and _outside(community, lat, lng):
        raise _bad("lat", "location_outside_community", "位置不在社区范围内")


def _nearest_community(lat: float, lng: float) -> Community:
    communities = db.session.scalars(select(Community).where(Community.center_lat.is_not(None)))
    best = min(communities, default=None,
               key=lambda c: distance_m(lat, lng, c.center_lat, c.center_lng))
    if best is None or _outside(best, lat, lng):
        raise _bad("lat", "location_outside_community", "位置不在社区范围内")
    return best


def _outside(community, lat: float, lng: float) -> bool:
    """Whether the point is beyond the radius of `community` (a Community, or a row of its id,
    centre and radius)."""
    if community.center_lat is None or community.center_lng is None:
        return False
    return distance_m(lat, lng, community.center_lat, community.center_lng) > community.radius_m


def submit_report(*, reporter_id: int, category: str, description: str,
                  photo_ids: list[int], building_id: int | None = None,
                  lat: float | None = None, lng: float | None = None,
                  location_text: str = "", extra: dict | None = None,
                  home_id: int | None = None) -> Report:
    """File a report and queue its routing, in one transaction (`home_id`: as for
    resolve_location)."""
    from app.services import uploads

    cat = category_by_code(category)
    description = clean_description(description)
    extra = clean_extra(cat, extra or {})
    if len(photo_ids) > MAX_PHOTOS:
        raise _bad("photo_ids", "too_many_photos", f"最多上传 {MAX_PHOTOS} 张照片")
    photos = uploads.attachable(reporter_id, photo_ids)
    if cat.photo_required and not photos:
        raise _bad("photo_ids", "photo_required", "该类问题需要上传照片")
    community_id = resolve_location(user_id=reporter_id, building_id=building_id,
                                    lat=lat, lng=lng, home_id=home_id)
    config = current_app.config  # REPORT_RATE_LIMIT / _WINDOW_SECONDS: defaults in app/config.py
    ratelimit.take(f"reports:{reporter_id}", config["REPORT_RATE_LIMIT"],
                   config["REPORT_RATE_WINDOW_SECONDS"], "提交太频繁，请稍后再试")
    report = Report(community_id=community_id, reporter_id=reporter_id, category=cat,
                    description=description, building_id=building_id,
                    lat=lat, lng=lng, location_text=location_text or "", extra=extra,
                    created_at=now())
    report.photos = [ReportPhoto(upload=p, position=i) for i, p in enumerate(photos)]
    if not redis_store.jobs_async:  # routing runs in-process at the commit: show its outcome
        return file_report(report, actor_id=reporter_id)
    return file_report_as_written(report, actor_id=reporter_id)


def file_report_as_written(report: Report, *, actor_id: int | None) -> Report:
    """file_report without reading the report back: its routing has not run yet, so what
    load_report would find is what was just written - no tickets, one timeline entry, and the
    category and uploads the caller set on it."""
    event = add_new_report(report, actor_id=actor_id)
    outbox.commit(keep=[report.category, *(photo.upload for photo in report.photos)])
    set_committed_value(report, "tickets", [])
    set_committed_value(report, "events", [event])
    set_committed_value(event, "org", None)
    return report


def clean_extra(category: ReportCategory, values: dict, *,
                field_name=lambda key: f"extra.{key}") -> dict:
    """Only the category's own extra fields, trimmed; 422 when a required one is missing."""
    cleaned: dict = {}
    for field in category.extra_fields or []:
        value = str(values.get(field["key"]) or "").strip()[:200]
        if field.get("required") and not value:
            raise _bad(field_name(field["key"]), "attribute_required",
                       f"缺少必填项 {field.get('label') or field['key']}")
        if value:
            cleaned[field["key"]] = value
    return cleaned


def clean_description(description: str | None) -> str:
    """The stripped description; 422 when empty or longer than MAX_DESCRIPTION."""
    description = (description or "").strip()
    if not description:
        raise _bad("description", "description_required", "请描述问题")
    if len(description) > MAX_DESCRIPTION:
        raise _bad("description", "description_too_long", f"描述最多 {MAX_DESCRIPTION} 字")
    return description


def add_new_report(report: Report, *, actor_id: int | None) -> ReportEvent:
    """Write a new report, its photos and its `submit` step, and add its routing job (not
    committed). Written by plain INSERTs (app.inserts.insert_chain: one statement for them all
    on PostgreSQL): the objects stay out of the session."""
    for photo in report.photos:
        photo.report_id = NewId(report)
    event = new_event(report, "submit", actor_id=actor_id, to_status=str(RS.SUBMITTED))
    event.report_id = NewId(report)
    route = outbox.new_job("route_report", queue="high", report_id=NewId(report))
    outbox.write(report, *report.photos, event, route)
    return event


def file_report(report: Report, *, actor_id: int | None) -> Report:
    """Save a new report with its `submit` step and queue its routing, in one transaction."""
    add_new_report(report, actor_id=actor_id)
    report_id = report.id  # read before the commit expires it (no reload just for the id)
    outbox.commit()
    return load_report(report_id)


def load_report(report_id: int) -> Report:
    """A report with everything its detail screen shows."""
    from app.models.reports import ReportEvent as Ev

    report = db.session.scalar(
        select(Report).where(Report.id == report_id).options(
            joinedload(Report.category), joinedload(Report.building),
            selectinload(Report.photos).selectinload(ReportPhoto.upload),
            selectinload(Report.tickets).selectinload(Ticket.org),
            selectinload(Report.events).selectinload(Ev.org),
        ))
    if report is None:
        raise NotFound("找不到该报告", code="report_not_found")
    return report


def can_view(report: Report, user_id: int) -> bool:
    """The reporter, or a follower of a public report."""
    if report.reporter_id == user_id:
        return True
    if report.category.is_private:
        return False
    return db.session.scalar(select(ReportFollower.id).where(
        ReportFollower.report_id == report.id, ReportFollower.user_id == user_id)) is not None


def report_for_resident(*, report_id: int, user_id: int) -> Report:
    """The report if the caller may see it; 404 otherwise (never leak existence)."""
    report = load_report(report_id)
    if not can_view(report, user_id):
        raise NotFound("找不到该报告", code="report_not_found")
    return report


def my_reports(*, user_id: int, cursor: str | None, limit: int) -> tuple[list[Report], str | None]:
    """The caller's reports, newest first."""
    stmt = select(Report).where(Report.reporter_id == user_id).options(
        selectinload(Report.category),
        selectinload(Report.photos).selectinload(ReportPhoto.upload))
    return keyset_page(stmt, columns=[Report.created_at, Report.id], cursor=cursor, limit=limit)


def nearby_reports(*, user_id: int, category: str, lat: float | None, lng: float | None,
                   building_id: int | None, home_id: int | None = None) -> list[Report]:
    """Open public reports of the category within ~100 m or in the same building (`home_id`:
    as for resolve_location)."""
    cat = category_by_code(category)
    if cat.is_private:
        return []
    community_id = resolve_location(user_id=user_id, building_id=building_id, lat=lat, lng=lng,
                                    home_id=home_id)
    stmt = select(Report).where(Report.community_id == community_id,
                                Report.category_id == cat.id,
                                Report.status.in_(OPEN_STATUSES))
    if lat is not None and lng is not None:
        dlat, dlng = NEARBY_METRES / 111_000, NEARBY_METRES / (111_000 * math.cos(
            math.radians(lat)))
        near_point = (Report.lat.between(lat - dlat, lat + dlat)
                      & Report.lng.between(lng - dlng, lng + dlng))
        stmt = stmt.where(near_point | (Report.building_id == building_id)
                          if building_id else near_point)
    else:
        stmt = stmt.where(Report.building_id == building_id)
    rows = db.session.scalars(stmt.options(
        selectinload(Report.category),
        selectinload(Report.photos).selectinload(ReportPhoto.upload))
        .order_by(Report.created_at.desc()).limit(50))
    return [r for r in rows if _is_near(r, lat, lng, building_id)][:10]


def _is_near(report: Report, lat, lng, building_id) -> bool:
    if building_id is not None and report.building_id == building_id:
        return True
    if lat is None or report.lat is None:
        return False
    return distance_m(lat, lng, report.lat, report.lng) <= NEARBY_METRES


def follow(*, report_id: int, user_id: int) -> Report:
    """Subscribe to an open public report of one's own community instead of filing a duplicate."""
    report = load_report(report_id)
    if report.reporter_id != user_id and (
            report.category.is_private
            or report.community_id != db.session.get(User, user_id).community_id):
        raise NotFound("找不到该报告", code="report_not_found")
    if report.status not in OPEN_STATUSES and report.reporter_id != user_id:
        raise Conflict("该报告已结束", code="report_closed")
    if report.reporter_id != user_id and ensure_follower(report.id, user_id):
        record_event(report, "follow", actor_id=user_id, public=False)
        db.session.commit()
    return report


def ensure_follower(report_id: int, user_id: int) -> bool:
    """Make the user a follower of the report; False when they already were."""
    exists = db.session.scalar(select(ReportFollower.id).where(
        ReportFollower.report_id == report_id, ReportFollower.user_id == user_id))
    if exists is None:
        db.session.add(ReportFollower(report_id=report_id, user_id=user_id))
    return exists is None


def urge(*, report_id: int, user_id: int) -> ReportEvent:
    """A chase-up (催办): at most one per report every 30 minutes; notifies the handlers."""
    report = load_report(report_id)
    if report.reporter_id != user_id:
        raise NotFound("找不到该报告", code="report_not_found")
    if report.status not in OPEN_STATUSES:
        raise Conflict("该报告已处理完毕，无需催办", code="report_not_open")
    if not ratelimit.once(f"urge:{report.id}", int(URGE_INTERVAL.total_seconds())):
        raise ratelimit.RateLimited("30 分钟内只能催办一次", retry_after=ratelimit.retry_after(
            f"urge:{report.id}"))
    report.last_urged_at = now()
    event = None
    for ticket in _active_tickets(report):
        event = record_event(report, "urge", actor_id=user_id, ticket=ticket, note="居民催办")
        outbox.add_job("notify_ticket_org", ticket_id=ticket.id, event_id=event.id)
    event = event or record_event(report, "urge", actor_id=user_id, note="居民催办")
    outbox.commit()
    return event


def _active_tickets(report: Report) -> list[Ticket]:
    return [t for t in report.tickets if t.status in TICKET_PROGRESS and t.status != TS.CLOSED]


def feedback(*, report_id: int, user_id: int, fixed: bool, rating: int | None,
             comment: str | None) -> Report:
    """The reporter confirms the fix (closes) or says it is not fixed (reopens)."""
    report = load_report(report_id)
    if report.reporter_id != user_id:
        if can_view(report, user_id):
            raise Forbidden("只有报告人可以评价", code="not_reporter")
        raise NotFound("找不到该报告", code="report_not_found")
    if report.feedback_at is not None and (report.resolved_at is None
                                           or report.feedback_at >= report.resolved_at):
        raise Conflict("已经评价过了", code="feedback_exists")  # this resolution has its answer
    if report.status != RS.RESOLVED:
        raise Conflict("问题尚未处理完毕，暂不能评价", code="not_resolved")
    report.fixed, report.rating = fixed, rating
    report.feedback_comment, report.feedback_at = comment, now()
    record_event(report, "feedback", actor_id=user_id, note=comment or "",
                 data={"fixed": fixed, "rating": rating})
    close_or_reopen(report, fixed=fixed, actor_id=user_id, note=comment or "")
    outbox.commit()
    return load_report(report.id)


def close_or_reopen(report: Report, *, fixed: bool, actor_id: int | None, note: str) -> None:
    """Close the report and its resolved tickets, or send those tickets back to the handler."""
    from app.services.tickets import move_ticket

    for ticket in report.tickets:
        if ticket.status == TS.RESOLVED:
            event = move_ticket(ticket, "close" if fixed else "reopen", actor_id=actor_id,
                                note=note, public=True)
            if not fixed:
                outbox.add_job("notify_ticket_org", ticket_id=ticket.id, event_id=event.id)
    sync_report_status(report, list(report.tickets), actor_id=actor_id, note=note)


def auto_close_resolved(*, older_than: timedelta = FEEDBACK_WINDOW, limit: int = 500) -> int:
    """Close reports resolved over 7 days ago without feedback; returns how many."""
    cutoff = now() - older_than
    ids = list(db.session.scalars(select(Report.id).where(
        Report.status == RS.RESOLVED, Report.resolved_at < cutoff).limit(limit)))
    for report_id in ids:
        report = load_report(report_id)
        if report.status == RS.RESOLVED:
            close_or_reopen(report, fixed=True, actor_id=None, note="7 天未评价，系统自动结案")
            outbox.commit()
    return len(ids)
