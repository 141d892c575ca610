"""The neighbourhood centre's big screen (数据大屏): what is happening, without personal data.

Every module contributes a section through `@screen_section(name)`: a function of
(community, now) returning JSON-able data. Private report categories, names and phone numbers
never reach the screen.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from app.errors import NotFound, Unauthorized
from app.extensions import db
from app.models import Building, Community, Org
from app.models.reports import Report, ReportCategory, ReportStatus, Ticket, TicketStatus
from app.services.labels import REPORT_STATUS_LABELS

Section = Callable[[Community, datetime], object]
SECTIONS: dict[str, Section] = {}
RECENT_REPORTS = 20


def screen_section(name: str) -> Callable[[Section], Section]:
    """Register a function that fills one part of the screen."""

    def register(fn: Section) -> Section:
        SECTIONS[name] = fn
        return fn

    return register


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def hash_token(token: str) -> str:
    """The stored form of a screen token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(community_code: str) -> str:
    """A new screen token for the community (the old one stops working); shown once."""
    community = db.session.scalar(select(Community).where(Community.code == community_code))
    if community is None:
        raise NotFound(f"没有编码为 {community_code} 的社区", code="community_not_found")
    token = secrets.token_urlsafe(24)
    community.screen_token_hash = hash_token(token)
    db.session.commit()
    return token


def community_for_token(token: str | None) -> Community:
    """The community a screen token belongs to; 401 without a valid one."""
    if not token:
        raise Unauthorized("缺少大屏令牌", code="screen_token_missing")
    digest = hash_token(token)
    community = db.session.scalar(select(Community).where(Community.screen_token_hash == digest))
    if community is None or not hmac.compare_digest(community.screen_token_hash, digest):
        raise Unauthorized("大屏令牌无效", code="screen_token_invalid")
    return community


def summary(community: Community) -> dict:
    """Everything the screen shows at first paint."""
    at = now()
    body = {"community": community.name, "generated_at": at.isoformat()}
    for name, section in SECTIONS.items():
        body[name] = section(community, at)
    return body


def local_day_start(community: Community, at: datetime) -> datetime:
    """Midnight of `at`'s day in the community's time zone, as UTC."""
    local = at.astimezone(ZoneInfo(community.timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def _public_reports(community: Community):
    return (select(Report).join(ReportCategory, ReportCategory.id == Report.category_id)
            .where(Report.community_id == community.id, ReportCategory.is_private.is_(False)))


def report_item(report: Report, category: ReportCategory, building: str | None) -> dict:
    """One line of the scrolling list: category, building, time, status; nothing personal."""
    return {"id": report.id, "category": category.name, "building": building or "",
            "created_at": report.created_at.isoformat(), "status": str(report.status),
            "status_label": REPORT_STATUS_LABELS[str(report.status)]}


def recent_reports(community: Community, *, after_id: int = 0,
                   limit: int = RECENT_REPORTS) -> list[dict]:
    """The newest public reports (after `after_id`, oldest first when following the stream)."""
    stmt = (select(Report, ReportCategory, Building.name)
            .join(ReportCategory, ReportCategory.id == Report.category_id)
            .outerjoin(Building, Building.id == Report.building_id)
            .where(Report.community_id == community.id, ReportCategory.is_private.is_(False)))
    if after_id:
        rows = db.session.execute(stmt.where(Report.id > after_id)
                                  .order_by(Report.id).limit(limit)).all()
    else:
        rows = db.session.execute(stmt.order_by(Report.id.desc()).limit(limit)).all()
    return [report_item(r, c, b) for r, c, b in rows]


def latest_report_id(community: Community) -> int:
    """The id the stream starts after."""
    return db.session.scalar(select(func.max(Report.id)).where(
        Report.community_id == community.id)) or 0


@screen_section("reports")
def reports_section(community: Community, at: datetime) -> dict:
    """Today's counts by status and category, this month's resolution, the recent list."""
    today = local_day_start(community, at)
    rows = db.session.execute(
        select(Report.status, ReportCategory.name, func.count())
        .join(ReportCategory, ReportCategory.id == Report.category_id)
        .where(Report.community_id == community.id, ReportCategory.is_private.is_(False),
               Report.created_at >= today)
        .group_by(Report.status, ReportCategory.name)).all()
    by_status: dict[str, int] = {}
    by_category: dict[str, int] = {}
    for status, category, count in rows:
        by_status[str(status)] = by_status.get(str(status), 0) + count
        by_category[category] = by_category.get(category, 0) + count
    return {"today_total": sum(by_status.values()), "today_by_status": by_status,
            "today_by_category": by_category, "month": _month_resolution(community, at),
            "recent": recent_reports(community)}


def _month_resolution(community: Community, at: datetime) -> dict:
    """This month's resolution rate and median hours from report to resolution."""
    local = at.astimezone(ZoneInfo(community.timezone))
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    rows = db.session.execute(
        select(Report.status, Report.created_at, Report.resolved_at)
        .join(ReportCategory, ReportCategory.id == Report.category_id)
        .where(Report.community_id == community.id, ReportCategory.is_private.is_(False),
               Report.created_at >= start)).all()
    done = [r for r in rows if r.status in (ReportStatus.RESOLVED, ReportStatus.CLOSED)]
    hours = [(r.resolved_at - r.created_at) / timedelta(hours=1) for r in done if r.resolved_at]
    return {"received": len(rows), "resolved": len(done),
            "resolution_rate": round(len(done) / len(rows), 3) if rows else None,
            "median_hours_to_resolve": round(statistics.median(hours), 1) if hours else None}


@screen_section("overdue_by_org")
def overdue_section(community: Community, at: datetime) -> list[dict]:
    """Open overdue tickets per org."""
    open_states = (TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.IN_PROGRESS,
                   TicketStatus.REOPENED)
    rows = db.session.execute(
        select(Org.name, func.count(Ticket.id)).join(Org, Org.id == Ticket.org_id)
        .where(Ticket.community_id == community.id, Ticket.status.in_(open_states),
               (Ticket.overdue.is_(True)) | (Ticket.expected_at < at))
        .group_by(Org.name).order_by(func.count(Ticket.id).desc())).all()
    return [{"org": name, "overdue": count} for name, count in rows]


def sse(event: str, data: dict, event_id: int | None = None) -> str:
    """One Server-Sent Event."""
    import json

    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_events(community_id: int, *, last_id: int | None, poll_seconds: float = 1.0,
                  summary_every: float = 10.0, max_seconds: float = 3600.0):
    """SSE for the screen: new public reports as they arrive, the summary every few seconds.

    The database is polled once a second with an indexed query, and the session is released
    between polls so an open screen holds no connection. After `max_seconds` the stream ends
    and the browser's EventSource reconnects with Last-Event-ID.
    """
    import time

    community = db.session.get(Community, community_id)
    cursor = last_id if last_id is not None else latest_report_id(community)
    last_summary = time.monotonic()
    deadline = last_summary + max_seconds
    yield "retry: 3000\n\n"
    yield sse("summary", summary(community), cursor)
    while time.monotonic() < deadline:
        community = db.session.get(Community, community_id)
        for item in recent_reports(community, after_id=cursor, limit=50):
            cursor = item["id"]
            yield sse("report", item, cursor)
        if time.monotonic() - last_summary >= summary_every:
            last_summary = time.monotonic()
            yield sse("summary", summary(community), cursor)
        else:
            yield ": keep-alive\n\n"
        db.session.remove()
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))  # end on time


@screen_section("alarms")
def alarms_section(community: Community, at: datetime) -> list[dict]:
    """Open critical alarms (masked names), shown at the top until resolved."""
    from app.services.alarms import open_critical_alarms

    return [{"id": a["id"], "kind_label": a["kind_name"], "building": a["building"],
             "name": a["masked_name"], "status_label": a["status_label"],
             "raised_at": a["raised_at"]} for a in open_critical_alarms(community.id)]


@screen_section("canteen")
def canteen_section(community: Community, at: datetime) -> dict:
    """Today's orders and the share placed online (the rest at the counter)."""
    from app.models.canteen import Order, OrderChannel, OrderStatus

    today = at.astimezone(ZoneInfo(community.timezone)).date()
    rows = dict(db.session.execute(
        select(Order.channel, func.count(Order.id))
        .where(Order.community_id == community.id, Order.menu_date == today,
               Order.status != OrderStatus.CANCELLED)
        .group_by(Order.channel)).all())
    total = sum(rows.values())
    online = rows.get(OrderChannel.ONLINE, 0)
    return {"orders_today": total, "online_share": round(online / total, 3) if total else 0}


@screen_section("activities")
def activities_section(community: Community, at: datetime) -> list[dict]:
    """The next activities with seats left."""
    from app.services.bff import _upcoming_activities

    return [{"id": a["id"], "title": a["title"], "starts_at": a["starts_at"],
             "seats_left": a["seats_left"]} for a in _upcoming_activities(community.id, at)[:6]]


@screen_section("leaderboard")
def leaderboard_section(community: Community, at: datetime) -> list[dict]:
    """This month's volunteer-hour leaderboard (names shortened: 王**)."""
    from app.services.timebank import leaderboard

    board = leaderboard(community_id=community.id, period="month", limit=8)["items"]
    return [{"name": p["name"], "hours": p["hours"]} for p in board]
