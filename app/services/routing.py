"""Routing: the first matching rule names the orgs that get a ticket for a report."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.inserts import NewId
from app.models import Building, MicroGrid, Org, OrgType
from app.models.reports import (
    Report,
    ReportStatus,
    RoutingRule,
    RoutingTarget,
    Ticket,
    TicketStatus,
)
from app.services import cache, outbox
from app.services.reports import category_by_id, new_event, now, synced_move_rows

MAX_ACCEPT_WINDOW = timedelta(hours=2)


class NoRouteError(RuntimeError):
    """Neither a rule nor the community office can take the report."""


def route_report(report_id: int) -> list[Ticket]:
    """Open one ticket per target org of the report, from its community's routing plan, and
    mark the report routed; a report routed already keeps its tickets (none is added). The
    tickets returned were written by plain INSERTs: they are not objects of the session."""
    report = db.session.scalar(select(Report).where(Report.id == report_id).with_for_update())
    if report is None:
        return []
    if report.status != ReportStatus.SUBMITTED:
        db.session.rollback()
        return list(db.session.scalars(select(Ticket).where(Ticket.report_id == report_id)))
    plan = routing_plan(report.community_id)
    micro_grid_id, grid_worker_id = plan.area_of(report.building_id)
    rule = plan.match(report, micro_grid_id)
    orgs = plan.targets(rule)
    if not orgs:
        raise NoRouteError(f"community {report.community_id} has no community office")
    copy_to = grid_worker_id if rule and rule.copy_grid_worker else None
    # The report is locked and still SUBMITTED: none of its tickets exists yet, so none is
    # looked for (the unique constraint on report and org would still fail the transaction).
    tickets, rows = [], []
    for org in orgs:
        tickets.append(new_ticket(report, org, micro_grid_id=micro_grid_id,
                                  grid_worker_id=copy_to))
        rows += ticket_rows(report, tickets[-1], org, actor_id=None)
    rows += synced_move_rows(report, tickets, actor_id=None,
                             note="已派发给" + "、".join(org.name for org in orgs)) or []
    outbox.write(*rows)
    outbox.commit()
    return tickets


class RuleView(NamedTuple):
    """An active routing rule as the plan keeps it."""

    category_id: int | None
    micro_grid_id: int | None
    building_id: int | None
    copy_grid_worker: bool
    targets: list  # [org_id, org_type] pairs, one of them None


class OrgView(NamedTuple):
    """What a ticket needs of its org."""

    id: int
    name: str
    webhook_url: str | None


class RoutingPlan:
    """A community's routing as the cache keeps it (v1): its active rules in order, its orgs
    and those the rules name, its buildings' micro-grids and the grid workers."""

    def __init__(self, data: dict) -> None:
        self.rules = [RuleView(*rule) for rule in data["rules"]]
        self.orgs = {int(k): OrgView(int(k), *v) for k, v in data["orgs"].items()}
        self.by_type: dict[str, list[int]] = data["by_type"]
        self.buildings = {int(k): v for k, v in data["buildings"].items()}
        self.grid_workers = {int(k): v for k, v in data["grid_workers"].items()}

    def area_of(self, building_id: int | None) -> tuple[int | None, int | None]:
        """The building's micro-grid and that micro-grid's grid worker. A building the plan
        does not know (added elsewhere since it was built) is read."""
        if building_id is None:
            return None, None
        if building_id in self.buildings:
            micro_grid_id = self.buildings[building_id]
            return micro_grid_id, self.grid_workers.get(micro_grid_id)
        row = db.session.execute(AREA.where(Building.id == building_id)).first()
        return (row.micro_grid_id, row.grid_worker_id) if row else (None, None)

    def match(self, report: Report, micro_grid_id: int | None) -> RuleView | None:
        """The first active rule (by position) matching the category and area (the report's
        building's micro-grid: `micro_grid_id`)."""
        for rule in self.rules:
            if rule.category_id not in (None, report.category_id):
                continue
            if rule.micro_grid_id not in (None, micro_grid_id):
                continue
            if rule.building_id not in (None, report.building_id):
                continue
            return rule
        return None

    def targets(self, rule: RuleView | None) -> list[OrgView]:
        """The rule's orgs (org types resolved in the community), each once; the office when
        nothing matches (none: no office either)."""
        ids: list[int] = []
        for org_id, org_type in (rule.targets if rule else []):
            ids += [org_id] if org_id is not None else self.by_type.get(org_type, [])
        orgs = [self.orgs[org_id] for org_id in dict.fromkeys(ids) if org_id in self.orgs]
        return orgs or [self.orgs[org_id]
                        for org_id in self.by_type.get(OrgType.COMMUNITY_OFFICE, [])]


# As the categories: a write whose generation bump was lost (Redis away) ages out within it.
ROUTING_PLAN_SECONDS = 60
cache.watch(RoutingRule, "routing")
cache.watch(RoutingTarget, "routing")
cache.watch(Org, "routing")
cache.watch(MicroGrid, "routing")  # buildings are watched as "places" (app.services.reports)


def routing_plan(community_id: int) -> RoutingPlan:
    """The community's routing plan, from the shared cache until a rule, a target, an org, a
    micro-grid or a building is written (app.services.cache: another process's write is seen
    within CACHE_LOCAL_SECONDS)."""
    return RoutingPlan(cache.cached(f"routing:community:{community_id}:v1", ROUTING_PLAN_SECONDS,
                                    lambda: _plan_of(community_id),
                                    depends_on=("routing", "places")))


# A building's micro-grid and grid worker (the plan's areas; a building it does not know).
AREA = (select(Building.id, Building.micro_grid_id, MicroGrid.grid_worker_id)
        .outerjoin(MicroGrid, MicroGrid.id == Building.micro_grid_id))


def _plan_of(community_id: int) -> dict:
    """A community's routing plan as the cache keeps it (see RoutingPlan)."""
    rules = list(db.session.scalars(
        select(RoutingRule).where(RoutingRule.community_id == community_id,
                                  RoutingRule.is_active.is_(True))
        .options(selectinload(RoutingRule.targets))
        .order_by(RoutingRule.position, RoutingRule.id)))
    named = {t.org_id for rule in rules for t in rule.targets if t.org_id is not None}
    orgs = db.session.execute(
        select(Org.id, Org.community_id, Org.type, Org.name, Org.webhook_url)
        .where(or_(Org.community_id == community_id, Org.id.in_(named))).order_by(Org.id)).all()
    by_type: dict[str, list[int]] = {}
    for org in orgs:
        if org.community_id == community_id:  # org types resolve within the community
            by_type.setdefault(str(org.type), []).append(org.id)
    areas = db.session.execute(AREA.where(Building.community_id == community_id)).all()
    return {
        "rules": [[rule.category_id, rule.micro_grid_id, rule.building_id,
                   bool(rule.copy_grid_worker),
                   [[t.org_id, t.org_type] for t in sorted(rule.targets, key=lambda t: t.id)]]
                  for rule in rules],
        "orgs": {org.id: [org.name, org.webhook_url] for org in orgs},
        "by_type": by_type,
        "buildings": {building_id: micro_grid_id for building_id, micro_grid_id, _ in areas},
        "grid_workers": {micro_grid_id: worker for _, micro_grid_id, worker in areas
                         if micro_grid_id is not None},
    }


def open_ticket(report: Report, org: Org, *, actor_id: int | None, note: str = "") -> Ticket:
    """The report's ticket for `org`, created once (unique on report and org) - for a transfer,
    which may meet a ticket of that org already. A new one is written by plain INSERTs and is
    not an object of the session."""
    existing = _ticket_for(report, org)
    if existing is not None:
        return existing
    micro_grid_id, _ = routing_plan(report.community_id).area_of(report.building_id)
    ticket = new_ticket(report, org, micro_grid_id=micro_grid_id)
    try:
        with db.session.begin_nested():
            outbox.write(*ticket_rows(report, ticket, org, actor_id=actor_id, note=note))
    except IntegrityError:
        existing = _ticket_for(report, org)  # another transaction opened it first
        if existing is None:  # not that: another constraint failed
            raise
        return existing
    return ticket


def _ticket_for(report: Report, org: Org) -> Ticket | None:
    return db.session.scalar(select(Ticket).where(Ticket.report_id == report.id,
                                                  Ticket.org_id == org.id))


def new_ticket(report: Report, org: Org | OrgView, *, micro_grid_id: int | None,
               grid_worker_id: int | None = None) -> Ticket:
    """A new ticket of the report for `org` (`micro_grid_id`: its building's; `grid_worker_id`:
    copied to), not written yet (ticket_rows)."""
    category = category_by_id(report.category_id)
    stamp, sla = now(), timedelta(hours=category.sla_hours)
    return Ticket(community_id=report.community_id, report_id=report.id, org_id=org.id,
                  category_id=report.category_id, building_id=report.building_id,
                  micro_grid_id=micro_grid_id, grid_worker_id=grid_worker_id,
                  status=TicketStatus.NEW, created_at=stamp,
                  accept_by=stamp + min(MAX_ACCEPT_WINDOW, sla / 4), expected_at=stamp + sla)


def ticket_rows(report: Report, ticket: Ticket, org: Org | OrgView, *, actor_id: int | None,
                note: str = "") -> list:
    """A new ticket's rows for outbox.write: the ticket, its `route` step and the org's
    notification, and its webhook delivery when the org has one."""
    event = new_event(report, "route", actor_id=actor_id, org_id=org.id,
                      to_status=str(ticket.status), note=note or f"已派发给{org.name}")
    event.ticket_id = NewId(ticket)
    rows = [ticket, event, outbox.new_job("notify_ticket_org", ticket_id=NewId(ticket),
                                          event_id=NewId(event))]
    if org.webhook_url:
        rows.append(outbox.new_job("deliver_webhook", queue="low", ticket_id=NewId(ticket),
                                   event_id=NewId(event)))
    return rows
