"""Routing: the first matching rule names the orgs that get a ticket for a report."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Building, MicroGrid, Org, OrgType
from app.models.reports import Report, ReportCategory, ReportStatus, RoutingRule, Ticket
from app.services import outbox
from app.services.reports import now, record_event, sync_report_status

MAX_ACCEPT_WINDOW = timedelta(hours=2)


class NoRouteError(RuntimeError):
    """Neither a rule nor the community office can take the report."""


def route_report(report_id: int) -> list[Ticket]:
    """Open one ticket per target org (idempotent), then mark the report routed."""
    report = db.session.scalar(select(Report).where(Report.id == report_id).with_for_update())
    if report is None:
        return []
    if report.status != ReportStatus.SUBMITTED:
        db.session.rollback()
        return list(db.session.scalars(select(Ticket).where(Ticket.report_id == report_id)))
    micro_grid_id = _micro_grid_of(report)  # the rule and every ticket need it: read once
    rule = match_rule(report, micro_grid_id)
    orgs = resolve_targets(report, rule)
    copy_grid_worker = bool(rule and rule.copy_grid_worker)
    # the report is locked and still SUBMITTED: none of its tickets exists yet (fresh)
    tickets = [open_ticket(report, org, actor_id=None, copy_grid_worker=copy_grid_worker,
                           fresh=True, micro_grid_id=micro_grid_id) for org in orgs]
    sync_report_status(report, tickets, actor_id=None,
                       note="已派发给" + "、".join(org.name for org in orgs))
    outbox.commit()
    return tickets


def match_rule(report: Report, micro_grid_id: int | None) -> RoutingRule | None:
    """The first active rule (by position) matching the category and area (the report's
    building's micro-grid: `micro_grid_id`)."""
    rules = db.session.scalars(
        select(RoutingRule).where(RoutingRule.community_id == report.community_id,
                                  RoutingRule.is_active.is_(True))
        .options(selectinload(RoutingRule.targets)).order_by(RoutingRule.position))
    for rule in rules:
        if rule.category_id not in (None, report.category_id):
            continue
        if rule.micro_grid_id not in (None, micro_grid_id):
            continue
        if rule.building_id not in (None, report.building_id):
            continue
        return rule
    return None


def _micro_grid_of(report: Report) -> int | None:
    """The micro-grid of the report's building."""
    if report.building_id is None:
        return None
    building = db.session.get(Building, report.building_id)
    return building.micro_grid_id if building else None


def resolve_targets(report: Report, rule: RoutingRule | None) -> list[Org]:
    """The rule's orgs (org types resolved in the community); the office when nothing matches."""
    targets: list[Org] = []
    for target in (rule.targets if rule else []):
        if target.org_id is not None:
            targets += [db.session.get(Org, target.org_id)]
        else:
            targets += _orgs_of_type(report.community_id, target.org_type)
    if not targets:
        targets = _orgs_of_type(report.community_id, OrgType.COMMUNITY_OFFICE)
    if not targets:
        raise NoRouteError(f"community {report.community_id} has no community office")
    unique = {org.id: org for org in targets if org is not None}
    return list(unique.values())


def _orgs_of_type(community_id: int, org_type: str) -> list[Org]:
    return list(db.session.scalars(select(Org).where(
        Org.community_id == community_id, Org.type == OrgType(org_type)).order_by(Org.id)))


_LOOK_UP = object()  # open_ticket's micro_grid_id when the caller has not read it


def open_ticket(report: Report, org: Org, *, actor_id: int | None, note: str = "",
                copy_grid_worker: bool = False, fresh: bool = False,
                micro_grid_id: int | None | object = _LOOK_UP) -> Ticket:
    """The report's ticket for `org`, created once (unique on report and org).

    `fresh`: the caller knows the report has no ticket yet (routing holds the report's row
    lock and found it unrouted): no look for an existing one and no savepoint - three round
    trips fewer a ticket; the unique constraint still fails the transaction if that is wrong.
    `micro_grid_id`: the report's building's micro-grid, when the caller has read it already.
    """
    if not fresh:
        existing = db.session.scalar(select(Ticket).where(Ticket.report_id == report.id,
                                                          Ticket.org_id == org.id))
        if existing is not None:
            return existing
    category = db.session.get(ReportCategory, report.category_id)
    if micro_grid_id is _LOOK_UP:
        micro_grid_id = _micro_grid_of(report)
    stamp, sla = now(), timedelta(hours=category.sla_hours)
    ticket = Ticket(community_id=report.community_id, report_id=report.id, org_id=org.id,
                    category_id=report.category_id, building_id=report.building_id,
                    micro_grid_id=micro_grid_id, created_at=stamp,
                    accept_by=stamp + min(MAX_ACCEPT_WINDOW, sla / 4), expected_at=stamp + sla,
                    grid_worker_id=_grid_worker(micro_grid_id) if copy_grid_worker else None)
    if fresh:
        db.session.add(ticket)
        db.session.flush()
    else:
        try:
            with db.session.begin_nested():
                db.session.add(ticket)
        except IntegrityError:  # another run of the job got there first
            return db.session.scalar(select(Ticket).where(Ticket.report_id == report.id,
                                                          Ticket.org_id == org.id))
    event = record_event(report, "route", actor_id=actor_id, ticket=ticket,
                         to_status=str(ticket.status), note=note or f"已派发给{org.name}")
    outbox.add_job("notify_ticket_org", ticket_id=ticket.id, event_id=event.id)
    if org.webhook_url:
        outbox.add_job("deliver_webhook", queue="low", ticket_id=ticket.id, event_id=event.id)
    return ticket


def _grid_worker(micro_grid_id: int | None) -> int | None:
    if micro_grid_id is None:
        return None
    micro_grid = db.session.get(MicroGrid, micro_grid_id)
    return micro_grid.grid_worker_id if micro_grid else None
