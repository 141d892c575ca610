"""Routing: the first matching rule names the orgs that get a ticket for a report."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Building, MicroGrid, Org, OrgType
from app.models.reports import Report, ReportStatus, RoutingRule, Ticket
from app.services import outbox
from app.services.reports import category_by_id, now, record_event, sync_report_status

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
    # the report is locked and still SUBMITTED: none of its tickets exists yet
    tickets = [new_ticket(report, org, actor_id=None, micro_grid_id=micro_grid_id,
                          copy_grid_worker=copy_grid_worker) for org in orgs]
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


def open_ticket(report: Report, org: Org, *, actor_id: int | None, note: str = "") -> Ticket:
    """The report's ticket for `org`, created once (unique on report and org): a transfer,
    which may meet one of that org already, or a second run of itself."""
    existing = _ticket_for(report, org)
    if existing is not None:
        return existing
    try:
        with db.session.begin_nested():
            return new_ticket(report, org, actor_id=actor_id, note=note,
                              micro_grid_id=_micro_grid_of(report))
    except IntegrityError:  # another run got there first
        return _ticket_for(report, org)


def _ticket_for(report: Report, org: Org) -> Ticket | None:
    return db.session.scalar(select(Ticket).where(Ticket.report_id == report.id,
                                                  Ticket.org_id == org.id))


def new_ticket(report: Report, org: Org, *, actor_id: int | None, micro_grid_id: int | None,
               note: str = "", copy_grid_worker: bool = False) -> Ticket:
    """A new ticket of the report for `org` (`micro_grid_id`: its building's), with its `route`
    step and the org's notification. The caller knows there is none yet - routing holds the
    report's row lock and found it unrouted, so no look for one and no savepoint (three round
    trips a ticket); the unique constraint still fails the transaction if that is wrong."""
    category = category_by_id(report.category_id)
    stamp, sla = now(), timedelta(hours=category.sla_hours)
    ticket = Ticket(community_id=report.community_id, report_id=report.id, org_id=org.id,
                    category_id=report.category_id, building_id=report.building_id,
                    micro_grid_id=micro_grid_id, created_at=stamp,
                    accept_by=stamp + min(MAX_ACCEPT_WINDOW, sla / 4), expected_at=stamp + sla,
                    grid_worker_id=_grid_worker(micro_grid_id) if copy_grid_worker else None)
    db.session.add(ticket)
    db.session.flush()
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
