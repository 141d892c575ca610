"""Shared set-up of the staff-side ticket tests: a community with its orgs, staff and reports.

Reports are filed through `app.services.reports.submit_report`, so routing, notifications and
webhooks run exactly as they do after a resident's submit (in-process, after commit).
"""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import func, select

from app.extensions import db
from app.models import MicroGrid, Notification, OutboxMessage
from app.models.reports import Report, ReportCategory, ReportEvent, Ticket
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from app.services.reports import submit_report
from tests import factories as f

RESIDENT_PHONE = "13812345678"
MASKED_PHONE = "138****5678"
CENTRE = {"lat": 31.1915, "lng": 121.4450}


def build_place(*, webhook: dict | None = None) -> SimpleNamespace:
    """Two communities; the first with property company, committee, office, staff and rules.

    The other community and its property company are created first, so that a lookup of
    "the property company" that forgets the community would pick the wrong one.
    """
    ensure_categories()
    other_comm = f.community(code="elsewhere")
    other_prop = f.org(other_comm, "property_company", code="other-prop", name="别处物业")
    other_office = f.org(other_comm, "community_office", code="other-office", name="别处居委")
    comm = f.community(code="zpq", name="总浦桥社区")
    bld1 = f.building(comm, number="1")
    bld2 = f.building(comm, number="2")
    prop = f.org(comm, "property_company", code="prop", name="绿城物业", **(webhook or {}))
    committee = f.org(comm, "owners_committee", code="committee", name="业委会")
    office = f.org(comm, "community_office", code="office", name="社区居委会")
    grid_worker = f.staff(office, "grid_worker")
    db.session.get(MicroGrid, bld1.micro_grid_id).grid_worker_id = grid_worker.id
    ensure_routing_rules(comm)
    ensure_routing_rules(other_comm)
    db.session.commit()
    return SimpleNamespace(
        comm=comm, bld1=bld1, bld2=bld2, prop=prop, committee=committee, office=office,
        clerk=f.staff(prop, "staff"), clerk2=f.staff(prop, "staff"),
        member=f.staff(committee, "staff"), office_clerk=f.staff(office, "staff"),
        grid_worker=grid_worker,
        resident=f.resident(comm, phone=RESIDENT_PHONE, display_name="张阿姨"),
        neighbour=f.resident(comm, display_name="李师傅"),
        other_comm=other_comm, other_prop=other_prop, other_office=other_office,
        other_clerk=f.staff(other_prop, "manager"),
        other_resident=f.resident(other_comm),
    )


def submit(place, category: str = "lighting", *, building=True, reporter=None,
           description: str = "3单元楼道灯不亮", photo_ids=(), location_text: str = "") -> int:
    """File a report (routed in-process at once); returns its id.

    `building=True` means place.bld1, `None` a report by position only.
    """
    reporter = reporter or place.resident
    bld = place.bld1 if building is True else building
    location = {"building_id": bld.id} if bld is not None else dict(CENTRE)
    extra = {"trapped": "否"} if category == "elevator_fault" else {}  # its required field
    report = submit_report(reporter_id=reporter.id, category=category, description=description,
                           photo_ids=list(photo_ids), location_text=location_text, extra=extra,
                           **location)
    return report.id


def tickets_of(report_id: int) -> list[Ticket]:
    """The report's tickets, fresh from the database, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(Ticket).where(Ticket.report_id == report_id)
                                   .order_by(Ticket.id)))


def ticket_of(report_id: int, org=None) -> Ticket:
    """The report's ticket (for `org`, or its only one)."""
    rows = [t for t in tickets_of(report_id) if org is None or t.org_id == org.id]
    assert len(rows) == 1, rows
    return rows[0]


def report(report_id: int) -> Report:
    """The report, fresh from the database."""
    db.session.expire_all()
    return db.session.get(Report, report_id)


def events_of(report_id: int) -> list[ReportEvent]:
    """The report's timeline rows, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(ReportEvent).where(ReportEvent.report_id == report_id)
                                   .order_by(ReportEvent.id)))


def notifications_for(user, kind: str | None = None) -> list[Notification]:
    """In-app notifications a user has, oldest first."""
    stmt = select(Notification).where(Notification.user_id == user.id)
    if kind is not None:
        stmt = stmt.where(Notification.kind == kind)
    return list(db.session.scalars(stmt.order_by(Notification.id)))


def count(model) -> int:
    """Rows in a table."""
    return db.session.scalar(select(func.count()).select_from(model))


def outbox_rows(job: str) -> list[OutboxMessage]:
    """Outbox rows of one job, fresh from the database."""
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.job == job)
                                   .order_by(OutboxMessage.id)))


def category(code: str) -> ReportCategory:
    """A category of the catalogue by code."""
    return db.session.scalar(select(ReportCategory).where(ReportCategory.code == code))
