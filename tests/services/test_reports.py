"""The report services: filing, routing (idempotent), status following tickets, auto-close."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.errors import Conflict, ValidationFailed
from app.extensions import db
from app.models import MicroGrid, OrgType, OutboxMessage, OutboxStatus
from app.models.reports import Report, ReportEvent, Ticket
from app.services import outbox, reports, routing, tickets, uploads
from tests import factories as f
from tests.reports_fixtures import (
    HERE,
    build_place,
    count,
    jpeg_bytes,
    metres_north,
    notifications_of,
    ticket_for,
    written,
)
from workers import routing as routing_jobs


@pytest.fixture
def place(app):
    return build_place()


@pytest.fixture
def queue_down(monkeypatch):
    """Redis is unreachable: outbox rows stay pending after commit, nothing runs."""
    monkeypatch.setattr(outbox, "_put_on_queue", lambda *messages: False)


def file_report(place, category: str = "broken_facility", user=None, **kw) -> Report:
    """File a report through the service, with the reporter's own photo when one is needed."""
    user = user or place.resident
    if category in ("illegal_parking", "fire_lane_blocked", "garbage") and "photo_ids" not in kw:
        kw["photo_ids"] = [uploads.create_upload(owner_id=user.id, data=jpeg_bytes()).id]
    kw.setdefault("building_id", place.bld.id)
    if category == "elevator_fault":
        kw.setdefault("extra", {"trapped": "否"})  # its required field
    return reports.submit_report(reporter_id=user.id, category=category,
                                 description=kw.pop("description", "楼道扶手松动"),
                                 photo_ids=kw.pop("photo_ids", []), **kw)


def scope_of(staff, org) -> tickets.Scope:
    return tickets.Scope(user_id=staff.id, orgs=[{"id": org.id, "role": "staff"}])


def move(place, report_id: int, org, staff, *actions: str) -> None:
    """Staff of `org` walk its ticket for the report through `actions`."""
    ticket = ticket_for(report_id, org)
    for action in actions:
        tickets.transition(ticket_id=ticket.id, scope=scope_of(staff, org), action=action,
                           note="处理完毕" if action == "resolve" else "")


def fresh(report_id: int) -> Report:
    db.session.expire_all()
    return db.session.get(Report, report_id)


def ticket_events(report_id: int, action: str) -> list[ReportEvent]:
    """The timeline rows of the report's tickets (not the report's own moves) for `action`."""
    return list(db.session.scalars(select(ReportEvent).where(
        ReportEvent.report_id == report_id, ReportEvent.action == action,
        ReportEvent.ticket_id.is_not(None))))


# ---- filing -------------------------------------------------------------------------------

def test_filing_writes_the_report_and_its_routing_job_together(place, queue_down):
    report = file_report(place, location_text="3号楼2单元")
    assert report.status == "submitted"
    assert [e.action for e in report.events] == ["submit"]
    [message] = db.session.scalars(select(OutboxMessage))
    assert (message.job, message.queue, message.args) == (
        "route_report", "high", {"report_id": report.id})
    assert message.status == OutboxStatus.PENDING
    assert count(Ticket) == 0


def test_filing_keeps_photos_in_the_order_given(place):
    ids = [uploads.create_upload(owner_id=place.resident.id, data=jpeg_bytes()).id
           for _ in range(3)]
    report = file_report(place, "garbage", photo_ids=[ids[2], ids[0], ids[1]])
    assert [p.upload_id for p in report.photos] == [ids[2], ids[0], ids[1]]
    assert [p.position for p in report.photos] == [0, 1, 2]


def test_a_bad_report_writes_nothing(place):
    before = written()
    with pytest.raises(ValidationFailed) as exc:
        file_report(place, "illegal_parking", photo_ids=[])
    assert exc.value.code == "photo_required"
    assert written() == before


# ---- routing ------------------------------------------------------------------------------

@pytest.mark.parametrize(("category", "org_types"), [
    ("garbage", {"property_company"}),
    ("elevator_fault", {"property_company"}),
    ("fire_lane_blocked", {"property_company", "community_office"}),
    ("public_space_change", {"owners_committee"}),
    ("noise", {"community_office"}),
    ("other", {"community_office"}),
])
def test_routing_opens_one_ticket_per_target_org(place, queue_down, category, org_types):
    report = file_report(place, category)
    opened = routing.route_report(report.id)
    assert {t.org_id for t in opened} == {place.orgs[t].id for t in org_types}
    assert fresh(report.id).status == "routed"
    assert len(ticket_events(report.id, "route")) == len(org_types)


def test_ticket_deadlines_follow_the_category_sla(place):
    report = file_report(place, "illegal_parking")  # SLA 4 h: accept within 1 h
    ticket = ticket_for(report.id, place.property_company)
    assert ticket.expected_at - ticket.created_at == timedelta(hours=4)
    assert ticket.accept_by - ticket.created_at == timedelta(hours=1)
    slow = ticket_for(file_report(place, "greenery").id, place.property_company)  # 120 h
    assert slow.accept_by - slow.created_at == timedelta(hours=2)


def test_grid_worker_is_copied_when_the_rule_says_so(place):
    worker = f.resident(place.comm)
    db.session.get(MicroGrid, place.bld.micro_grid_id).grid_worker_id = worker.id
    db.session.commit()
    parking = file_report(place, "illegal_parking")
    assert ticket_for(parking.id, place.property_company).grid_worker_id == worker.id
    assert [n.kind for n in notifications_of(worker)] == ["ticket_copy"]
    committee = file_report(place, "elevator_installation")
    assert ticket_for(committee.id, place.orgs["owners_committee"]).grid_worker_id is None


def test_routing_again_changes_nothing(place):
    report = file_report(place, "fire_lane_blocked")
    assert fresh(report.id).status == "routed"
    before = written()

    again = routing.route_report(report.id)
    assert sorted(t.org_id for t in again) == sorted(
        [place.property_company.id, place.office.id])
    assert routing_jobs.route_report(report.id) == 2
    assert written() == before
    assert len(ticket_events(report.id, "route")) == 2


def test_a_job_run_twice_after_an_outage_routes_once(place, queue_down):
    report = file_report(place, "fire_lane_blocked")
    assert routing_jobs.route_report(report.id) == 2
    after_first = written()
    assert routing_jobs.route_report(report.id) == 2
    assert written() == after_first
    per_org = db.session.execute(select(Ticket.org_id).where(Ticket.report_id == report.id))
    assert sorted(row.org_id for row in per_org) == sorted(
        [place.property_company.id, place.office.id])
    assert fresh(report.id).status == "routed"


def test_routing_an_unknown_report_does_nothing(place):
    assert routing.route_report(424242) == []


def test_without_a_community_office_routing_fails_loudly(place, queue_down):
    report = file_report(place, "other")
    place.office.type = OrgType.SERVICE_PROVIDER
    db.session.commit()
    with pytest.raises(routing.NoRouteError):
        routing.route_report(report.id)


# ---- the report follows its tickets --------------------------------------------------------

def test_report_shows_the_least_advanced_ticket(place):
    report = file_report(place, "fire_lane_blocked")
    move(place, report.id, place.property_company, place.property_staff,
         "accept", "start", "resolve")
    assert fresh(report.id).status == "routed"  # the office has not even accepted
    move(place, report.id, place.office, place.office_staff, "accept")
    assert fresh(report.id).status == "accepted"
    move(place, report.id, place.office, place.office_staff, "resolve")
    assert fresh(report.id).status == "resolved"


def test_confirming_the_fix_closes_every_ticket(place):
    report = file_report(place, "fire_lane_blocked")
    move(place, report.id, place.property_company, place.property_staff, "accept", "resolve")
    move(place, report.id, place.office, place.office_staff, "accept", "resolve")
    closed = reports.feedback(report_id=report.id, user_id=place.resident.id, fixed=True,
                              rating=5, comment=None)
    assert closed.status == "closed"
    assert {t.status for t in closed.tickets} == {"closed"}


def test_not_fixed_sends_every_ticket_back(place):
    report = file_report(place, "fire_lane_blocked")
    move(place, report.id, place.property_company, place.property_staff, "accept", "resolve")
    move(place, report.id, place.office, place.office_staff, "accept", "resolve")
    reopened = reports.feedback(report_id=report.id, user_id=place.resident.id, fixed=False,
                                rating=2, comment="通道里还堆着杂物")
    assert reopened.status == "reopened"
    assert {t.status for t in reopened.tickets} == {"reopened"}
    assert [e.note for e in ticket_events(report.id, "reopen")] == ["通道里还堆着杂物"] * 2


# ---- the 7-day auto-close ------------------------------------------------------------------

def resolved_report(place, days_ago: float) -> Report:
    report = file_report(place)
    move(place, report.id, place.property_company, place.property_staff, "accept", "resolve")
    stored = fresh(report.id)
    stored.resolved_at = reports.now() - timedelta(days=days_ago)
    db.session.commit()
    return stored


def test_auto_close_closes_reports_resolved_over_7_days_ago(place):
    stale = resolved_report(place, days_ago=8)
    recent = resolved_report(place, days_ago=2)

    assert reports.auto_close_resolved() == 1
    closed = fresh(stale.id)
    assert closed.status == "closed" and closed.closed_at is not None
    assert closed.fixed is None and closed.feedback_at is None
    assert ticket_for(stale.id, place.property_company).status == "closed"
    notes = [e.note for e in db.session.scalars(select(ReportEvent).where(
        ReportEvent.report_id == stale.id, ReportEvent.action == "close"))]
    assert notes and all("自动结案" in n for n in notes)
    assert fresh(recent.id).status == "resolved"
    assert ticket_for(recent.id, place.property_company).status == "resolved"


def test_auto_close_twice_changes_nothing_more(place):
    resolved_report(place, days_ago=8)
    assert reports.auto_close_resolved() == 1
    before = written()
    assert reports.auto_close_resolved() == 0
    assert routing_jobs.auto_close_reports() == 0
    assert written() == before


def test_auto_closed_report_takes_no_late_feedback(place):
    stale = resolved_report(place, days_ago=8)
    reports.auto_close_resolved()
    with pytest.raises(Conflict) as exc:
        reports.feedback(report_id=stale.id, user_id=place.resident.id, fixed=False,
                         rating=1, comment=None)
    assert exc.value.code == "not_resolved"


# ---- nearby and distance -------------------------------------------------------------------

def test_distance_is_in_metres():
    north = metres_north(HERE, 100)
    assert reports.distance_m(*HERE, *north) == pytest.approx(100, rel=0.01)


def test_nearby_only_lists_open_reports(place):
    report = file_report(place, building_id=None, lat=HERE[0], lng=HERE[1])
    found = reports.nearby_reports(user_id=place.neighbour.id, category="broken_facility",
                                   lat=HERE[0], lng=HERE[1], building_id=None)
    assert [r.id for r in found] == [report.id]
    stored = fresh(report.id)
    stored.status = "rejected"
    db.session.commit()
    assert reports.nearby_reports(user_id=place.neighbour.id, category="broken_facility",
                                  lat=HERE[0], lng=HERE[1], building_id=None) == []


def test_a_category_by_id_comes_from_the_catalogue_unless_retired(place):
    from app.models.reports import ReportCategory
    from tests.sql_fixtures import statements

    lighting = db.session.scalar(select(ReportCategory).where(ReportCategory.code == "lighting"))
    lighting_id = lighting.id
    reports.active_categories()  # the catalogue cached
    db.session.expunge_all()
    with statements() as seen:
        assert reports.category_by_id(lighting_id).name == "路灯/楼道灯不亮"
    assert not seen
    retired = db.session.get(ReportCategory, lighting_id)
    retired.is_active = False
    db.session.commit()
    db.session.expunge_all()
    with statements() as seen:
        assert reports.category_by_id(lighting_id).code == "lighting"
    # the catalogue read afresh (a category was written), then this one, no longer in it
    assert "WHERE report_categories.id =" in seen[-1]


def test_a_report_is_followed_on_the_home_screen_while_it_can_still_move():
    from app.models.reports import FINAL_REPORT_STATES, FOLLOWED_REPORT_STATES
    from app.services.reports import REPORT_ALLOWED

    assert set(FOLLOWED_REPORT_STATES) == {state for state, moves in REPORT_ALLOWED.items()
                                           if moves}
    assert set(FINAL_REPORT_STATES) == {state for state, moves in REPORT_ALLOWED.items()
                                        if not moves}
