"""Tickets: the staff side of reports — list, detail, transitions, comments, SLA, stats."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import selectinload

from app.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from app.extensions import db
from app.models import Building, Membership, MicroGrid, Org, OrgType, User
from app.models.reports import (
    Report,
    ReportCategory,
    ReportEvent,
    ReportPhoto,
    ReportStatus,
    Ticket,
    TicketStatus,
)
from app.pagination import DEFAULT_LIMIT, keyset_page, page_of_found
from app.prepared import written
from app.services import outbox
from app.services.reports import (
    ensure_follower,
    load_report,
    move_report,
    now,
    record_event,
    sync_report_status,
)

TS = TicketStatus
TICKET_ALLOWED: dict[TicketStatus, dict[str, TicketStatus]] = {
    TS.NEW: {"accept": TS.ACCEPTED, "start": TS.IN_PROGRESS, "reject": TS.REJECTED,
             "transfer": TS.TRANSFERRED, "mark_duplicate": TS.DUPLICATE},
    TS.ACCEPTED: {"start": TS.IN_PROGRESS, "resolve": TS.RESOLVED, "reject": TS.REJECTED,
                  "transfer": TS.TRANSFERRED, "mark_duplicate": TS.DUPLICATE},
    TS.IN_PROGRESS: {"resolve": TS.RESOLVED, "transfer": TS.TRANSFERRED,
                     "mark_duplicate": TS.DUPLICATE},
    TS.RESOLVED: {"close": TS.CLOSED, "reopen": TS.REOPENED},
    TS.REOPENED: {"accept": TS.ACCEPTED, "start": TS.IN_PROGRESS, "resolve": TS.RESOLVED,
                  "transfer": TS.TRANSFERRED, "mark_duplicate": TS.DUPLICATE},
    TS.CLOSED: {},
    TS.REJECTED: {},
    TS.TRANSFERRED: {},
    TS.DUPLICATE: {},
}
STAFF_ACTIONS = ("accept", "start", "resolve", "reject", "transfer", "mark_duplicate")
OPEN_TICKET = (TS.NEW, TS.ACCEPTED, TS.IN_PROGRESS, TS.REOPENED)
# What the list shows, in its one statement: plain columns of the ticket and its report, org,
# category and building - no ORM objects to build (five per row with joinedloads, the bulk of
# the list's CPU). Built once: building select() per request showed up in the profile.
LIST_ROWS = (
    select(Ticket.id, Ticket.report_id, Ticket.status, Ticket.org_id,
           Org.code.label("org_code"), Org.name.label("org_name"),
           ReportCategory.code.label("category"), ReportCategory.name.label("category_name"),
           Report.description, Report.location_text, Building.name.label("building"),
           Ticket.building_id, Ticket.micro_grid_id, Ticket.assignee_id, Ticket.accept_by,
           Ticket.expected_at, Ticket.overdue, Ticket.created_at, Ticket.updated_at)
    .join(Report, Report.id == Ticket.report_id)
    .join(Org, Org.id == Ticket.org_id)
    .join(ReportCategory, ReportCategory.id == Ticket.category_id)
    .outerjoin(Building, Building.id == Report.building_id)
)

NEWEST = [Ticket.created_at, Ticket.id]
# The first page, newest first, of an org's tickets, built once: building the statement per
# request (its WHERE, ORDER BY, cache key, result metadata) cost a quarter of the list's CPU.
FIRST_PAGE = (LIST_ROWS.where(Ticket.org_id.in_(bindparam("org_ids", expanding=True)))
              .order_by(*[c.desc() for c in NEWEST]).limit(written(DEFAULT_LIMIT + 1)))


class Scope:
    """Which tickets a staff member works: their orgs' tickets, grid workers their micro-grids."""

    def __init__(self, *, user_id: int, orgs: list[dict]) -> None:
        self.user_id = user_id
        self.org_ids = {m["id"] for m in orgs if m["role"] != "grid_worker"}
        self.grid_org_ids = {m["id"] for m in orgs if m["role"] == "grid_worker"}
        self._micro_grids: set[int] | None = None

    @property
    def micro_grid_ids(self) -> set[int]:
        if self._micro_grids is None:
            self._micro_grids = set(db.session.scalars(select(MicroGrid.id).where(
                MicroGrid.grid_worker_id == self.user_id))) if self.grid_org_ids else set()
        return self._micro_grids

    def clause(self):
        """A WHERE clause selecting the tickets in scope."""
        parts = []
        if self.org_ids:
            parts.append(Ticket.org_id.in_(self.org_ids))
        if self.micro_grid_ids:
            parts.append(Ticket.micro_grid_id.in_(self.micro_grid_ids))
        return or_(*parts) if parts else Ticket.id.is_(None)

    def covers(self, ticket: Ticket) -> bool:
        """Whether the ticket is in scope."""
        return ticket.org_id in self.org_ids or (
            ticket.micro_grid_id is not None and ticket.micro_grid_id in self.micro_grid_ids)

    def can_act(self, ticket: Ticket) -> bool:
        """Whether the caller may move it: their own org's ticket (grid workers see more)."""
        return ticket.org_id in self.org_ids or (
            ticket.org_id in self.grid_org_ids and self.covers(ticket))


def move_ticket(ticket: Ticket, action: str, *, actor_id: int | None, note: str = "",
                public: bool = True, data: dict | None = None) -> ReportEvent:
    """Apply `action` to the ticket if TICKET_ALLOWED permits it, with a timeline row."""
    target = TICKET_ALLOWED[ticket.status].get(action)
    if target is None:
        raise InvalidTransition(details={"status": str(ticket.status), "action": action,
                                         "allowed": sorted(TICKET_ALLOWED[ticket.status])})
    before, ticket.status = ticket.status, target
    stamp = now()
    if target == TS.ACCEPTED or (target == TS.IN_PROGRESS and ticket.accepted_at is None):
        ticket.accepted_at = stamp
    if target == TS.RESOLVED:
        ticket.resolved_at = stamp
    if target in (TS.CLOSED, TS.REJECTED, TS.TRANSFERRED, TS.DUPLICATE):
        ticket.closed_at = stamp
    report = db.session.get(Report, ticket.report_id)
    return record_event(report, action, actor_id=actor_id, ticket=ticket,
                        from_status=str(before), to_status=str(target), note=note,
                        public=public, data=data)


def list_tickets(*, scope: Scope, status: str | None = None, category: str | None = None,
                 overdue: bool | None = None, building_id: int | None = None,
                 q: str | None = None, sort: str = "newest", cursor: str | None = None,
                 limit: int = DEFAULT_LIMIT) -> tuple[list, str | None]:
    """A page of the tickets in scope (rows of LIST_ROWS), newest or most overdue first."""
    if (sort == "newest" and limit == DEFAULT_LIMIT and scope.org_ids and not scope.grid_org_ids
            and not (status or category or q or cursor)
            and overdue is None and building_id is None):
        # The clerk's default view, and the busiest read of the API: one prebuilt statement.
        found = db.session.connection().execute(
            FIRST_PAGE, {"org_ids": sorted(scope.org_ids)}).all()
        return page_of_found(found, columns=NEWEST, limit=limit)
    stmt = LIST_ROWS.where(scope.clause())
    if status:
        stmt = stmt.where(Ticket.status == TicketStatus(status))
    if category:
        stmt = stmt.where(ReportCategory.code == category)
    if overdue is not None:
        stmt = stmt.where(Ticket.overdue.is_(overdue))
    if building_id is not None:
        stmt = stmt.where(Ticket.building_id == building_id)
    if q:
        stmt = stmt.where(Report.description.contains(q, autoescape=True)
                          | Report.location_text.contains(q, autoescape=True))
    if sort == "overdue":
        stmt = stmt.where(Ticket.status.in_(OPEN_TICKET))
        return keyset_page(stmt, columns=[Ticket.expected_at, Ticket.id], cursor=cursor,
                           limit=limit, descending=False, rows=True)
    return keyset_page(stmt, columns=NEWEST, cursor=cursor, limit=limit, rows=True)


def get_ticket(*, ticket_id: int, scope: Scope) -> Ticket:
    """A ticket in scope with its report, photos and full timeline; 404 otherwise."""
    ticket = db.session.scalar(select(Ticket).where(Ticket.id == ticket_id).options(
        selectinload(Ticket.org), selectinload(Ticket.category),
        selectinload(Ticket.report).selectinload(Report.building)))
    if ticket is None or not scope.covers(ticket):
        raise NotFound("找不到该工单", code="ticket_not_found")
    ticket.full_report = load_report(ticket.report_id)
    reporter = ticket.full_report.reporter_id
    ticket.reporter = db.session.get(User, reporter) if reporter else None
    return ticket


def _bad(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}})


def transition(*, ticket_id: int, scope: Scope, action: str, note: str = "",
               photo_ids: list[int] | None = None, assignee_id: int | None = None,
               to_org: str | None = None, of_report: int | None = None) -> Ticket:
    """A staff move on a ticket; the report follows, and the resident is told."""
    ticket = _ticket_for_update(ticket_id, scope)
    note = (note or "").strip()
    photos = _after_photos(scope.user_id, photo_ids or [])
    if action in ("reject",) and not note:
        raise _bad("note", "note_required", "请填写退回原因")
    if action == "resolve" and not note and not photos:
        raise _bad("note", "note_or_photo_required", "请填写处理说明或上传处理后照片")
    if assignee_id is not None:
        _assign(ticket, assignee_id, scope.user_id)
    if action == "transfer":
        _transfer(ticket, to_org, scope.user_id, note)
    elif action == "mark_duplicate":
        _mark_duplicate(ticket, of_report, scope.user_id, note)
    else:
        event = move_ticket(ticket, action, actor_id=scope.user_id, note=note)
        _attach_after_photos(ticket, event, photos)
        report = db.session.get(Report, ticket.report_id)
        tickets = list(db.session.scalars(select(Ticket).where(
            Ticket.report_id == report.id)))
        sync_report_status(report, tickets, actor_id=scope.user_id, note=note)
    outbox.commit()
    return get_ticket(ticket_id=ticket.id, scope=scope)


def _ticket_for_update(ticket_id: int, scope: Scope) -> Ticket:
    """The ticket row, locked (on PostgreSQL) so two clerks cannot move it at once."""
    ticket = db.session.scalar(select(Ticket).where(Ticket.id == ticket_id).with_for_update())
    if ticket is None or not scope.covers(ticket):
        raise NotFound("找不到该工单", code="ticket_not_found")
    if not scope.can_act(ticket):
        raise Forbidden("该工单由其他单位处理，您只能查看和留言", code="not_handler")
    return ticket


def _after_photos(user_id: int, photo_ids: list[int]):
    from app.services import uploads

    if len(photo_ids) > 9:
        raise _bad("photo_ids", "too_many_photos", "最多上传 9 张照片")
    return uploads.attachable(user_id, photo_ids)


def _attach_after_photos(ticket: Ticket, event: ReportEvent, photos) -> None:
    for position, upload in enumerate(photos):
        db.session.add(ReportPhoto(report_id=ticket.report_id, upload_id=upload.id,
                                   event_id=event.id, kind="after", position=100 + position))


def _assign(ticket: Ticket, assignee_id: int, actor_id: int) -> None:
    """Hand the ticket to a colleague in the same org."""
    colleague = db.session.scalar(select(Membership.id).where(
        Membership.user_id == assignee_id, Membership.org_id == ticket.org_id))
    if colleague is None:
        raise _bad("assignee_id", "assignee_not_in_org", "只能指派给本单位的同事")
    ticket.assignee_id = assignee_id
    report = db.session.get(Report, ticket.report_id)
    record_event(report, "assign", actor_id=actor_id, ticket=ticket, public=False,
                 data={"assignee_id": assignee_id})


def _transfer(ticket: Ticket, to_org: str | None, actor_id: int, note: str) -> None:
    """Close this ticket as transferred and open one for the other org."""
    target = db.session.scalar(select(Org).where(Org.code == (to_org or ""),
                                                 Org.community_id == ticket.community_id))
    if target is None:
        raise _bad("to_org", "unknown_org", "没有这个单位")
    if target.id == ticket.org_id or db.session.scalar(select(Ticket.id).where(
            Ticket.report_id == ticket.report_id, Ticket.org_id == target.id)):
        raise _bad("to_org", "already_assigned", "该单位已有此报告的工单")
    move_ticket(ticket, "transfer", actor_id=actor_id, note=note,
                data={"to_org": target.code})
    from app.services.routing import open_ticket

    report = db.session.get(Report, ticket.report_id)
    new = open_ticket(report, target, actor_id=actor_id, note=f"由{ticket_org_name(ticket)}转派")
    ticket.transferred_to_id = new.id
    sync_report_status(report, list(db.session.scalars(select(Ticket).where(
        Ticket.report_id == report.id))), actor_id=actor_id, note=note)


def ticket_org_name(ticket: Ticket) -> str:
    """The handling org's name."""
    return db.session.get(Org, ticket.org_id).name


def _mark_duplicate(ticket: Ticket, of_report: int | None, actor_id: int, note: str) -> None:
    """Close the report as a duplicate of another report in the same community."""
    original = db.session.get(Report, of_report) if of_report else None
    if original is None or original.community_id != ticket.community_id \
            or original.id == ticket.report_id or original.status == ReportStatus.DUPLICATE:
        raise _bad("of_report", "unknown_report", "原报告不存在")
    report = db.session.get(Report, ticket.report_id)
    # The acting ticket must allow the move itself (a transferred-away ticket does not).
    move_ticket(ticket, "mark_duplicate", actor_id=actor_id, note=note, public=False)
    for sibling in db.session.scalars(select(Ticket).where(Ticket.report_id == report.id,
                                                           Ticket.id != ticket.id)):
        if "mark_duplicate" in TICKET_ALLOWED[sibling.status]:
            move_ticket(sibling, "mark_duplicate", actor_id=actor_id, note=note, public=False)
    report.duplicate_of_id = original.id
    move_report(report, ReportStatus.DUPLICATE, actor_id=actor_id,
                note=note or f"与报告 #{original.id} 重复", data={"duplicate_of": original.id})
    if report.reporter_id and report.reporter_id != original.reporter_id:
        ensure_follower(original.id, report.reporter_id)


def comment(*, ticket_id: int, scope: Scope, body: str, internal: bool) -> ReportEvent:
    """A comment on the ticket's timeline; internal ones are never shown to residents."""
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None or not scope.covers(ticket):
        raise NotFound("找不到该工单", code="ticket_not_found")
    report = db.session.get(Report, ticket.report_id)
    event = record_event(report, "comment", actor_id=scope.user_id, ticket=ticket,
                         note=body.strip(), public=not internal)
    if not internal:
        outbox.add_job("notify_report_update", report_id=report.id, event_id=event.id)
    outbox.commit()
    return db.session.scalar(select(ReportEvent).where(ReportEvent.id == event.id)
                             .options(selectinload(ReportEvent.org)))


def escalate_overdue(*, limit: int = 500) -> int:
    """Flag tickets past their accept or resolve deadline and escalate each once."""
    stamp = now()
    late = list(db.session.scalars(select(Ticket).where(
        Ticket.escalated_at.is_(None),
        or_((Ticket.status.in_((TS.NEW, TS.REOPENED))) & (Ticket.accept_by < stamp),
            (Ticket.status.in_(OPEN_TICKET)) & (Ticket.expected_at < stamp)),
    ).order_by(Ticket.id).limit(limit).with_for_update(skip_locked=True)))
    for ticket in late:
        ticket.overdue, ticket.escalated_at = True, stamp
        report = db.session.get(Report, ticket.report_id)
        late_for = "受理" if ticket.status in (TS.NEW, TS.REOPENED) else "办结"
        event = record_event(report, "escalate", ticket=ticket, public=False,
                             note=f"超过{late_for}时限，已上报社区居委会")
        outbox.add_job("notify_escalation", ticket_id=ticket.id, event_id=event.id)
    outbox.commit()
    return len(late)


def stats(*, scope: Scope, start: datetime, end: datetime) -> list[dict]:
    """Per org and category: received, resolved, rate, median times, overdue, rating."""
    rows = db.session.execute(
        select(Ticket.org_id, Org.name, ReportCategory.code, ReportCategory.name,
               Ticket.status, Ticket.created_at, Ticket.accepted_at, Ticket.resolved_at,
               Ticket.overdue, Report.rating)
        .join(Org, Org.id == Ticket.org_id)
        .join(ReportCategory, ReportCategory.id == Ticket.category_id)
        .join(Report, Report.id == Ticket.report_id)
        .where(scope.clause(), Ticket.created_at >= start, Ticket.created_at < end)
    ).all()
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[(row[0], row[1], row[2], row[3])].append(row)
    return [_summarise(key, items) for key, items in sorted(groups.items())]


def _summarise(key: tuple, items: list) -> dict:
    org_id, org_name, code, name = key
    resolved = [r for r in items if r.resolved_at is not None]
    accept_h = [_hours(r.accepted_at - r.created_at) for r in items if r.accepted_at]
    resolve_h = [_hours(r.resolved_at - r.created_at) for r in resolved]
    ratings = [r.rating for r in items if r.rating is not None]
    return {
        "org_id": org_id, "org_name": org_name, "category": code, "category_name": name,
        "received": len(items), "resolved": len(resolved),
        "resolution_rate": round(len(resolved) / len(items), 3) if items else None,
        "median_hours_to_accept": _median(accept_h),
        "median_hours_to_resolve": _median(resolve_h),
        "overdue": sum(1 for r in items if r.overdue),
        "average_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
    }


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def office_org_ids(community_id: int) -> list[int]:
    """The community office(s) of a community: where escalations go."""
    return list(db.session.scalars(select(Org.id).where(
        Org.community_id == community_id, Org.type == OrgType.COMMUNITY_OFFICE)))


def count_open(org_ids: set[int]) -> int:
    """Open tickets of the orgs (for dashboards)."""
    return db.session.scalar(select(func.count()).select_from(Ticket).where(
        Ticket.org_id.in_(org_ids), Ticket.status.in_(OPEN_TICKET))) or 0
