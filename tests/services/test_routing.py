"""Routing a report to the orgs that must act on it: rules, tickets, notices and webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Building, MicroGrid, Notification, Org, OutboxMessage, OutboxStatus
from app.models.reports import (
    Report,
    ReportEvent,
    ReportStatus,
    RoutingRule,
    RoutingTarget,
    Ticket,
)
from app.services.routing import route_report
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f
from tests.sql_fixtures import statements
from tests.tickets_fixtures import (
    build_place,
    category,
    count,
    events_of,
    notifications_for,
    outbox_rows,
    report,
    submit,
    ticket_of,
    tickets_of,
)
from workers import routing as routing_jobs
from workers import webhooks

WEBHOOK = {"webhook_url": "https://pms.example.com/linli/hooks", "webhook_secret": "s3cret-key"}


@pytest.fixture
def place(app):
    return build_place()


def add_rule(place, position: int, code: str, *, targets, building=None, micro_grid_id=None,
             copy_grid_worker: bool = False) -> RoutingRule:
    """A routing rule; targets are orgs or org-type names."""
    rule = RoutingRule(community_id=place.comm.id, position=position,
                       category_id=category(code).id, micro_grid_id=micro_grid_id,
                       building_id=building.id if building else None,
                       copy_grid_worker=copy_grid_worker)
    rule.targets = [RoutingTarget(org_type=t) if isinstance(t, str) else RoutingTarget(org_id=t.id)
                    for t in targets]
    db.session.add(rule)
    db.session.commit()
    return rule


def org_ids(report_id: int) -> list[int]:
    return [t.org_id for t in tickets_of(report_id)]


# ---- which org gets the ticket -------------------------------------------------------------

def test_a_seeded_rule_sends_lighting_to_the_property_company(place):
    report_id = submit(place, "lighting")
    assert org_ids(report_id) == [place.prop.id]
    assert report(report_id).status == ReportStatus.ROUTED


def test_a_building_rule_placed_first_wins_only_in_that_building(place):
    add_rule(place, 1, "lighting", targets=[place.committee], building=place.bld1)
    in_bld1 = submit(place, "lighting", building=place.bld1)
    in_bld2 = submit(place, "lighting", building=place.bld2)
    by_position = submit(place, "lighting", building=None)
    assert org_ids(in_bld1) == [place.committee.id]
    assert org_ids(in_bld2) == [place.prop.id]
    assert org_ids(by_position) == [place.prop.id]


def test_a_micro_grid_rule_placed_first_wins_only_in_that_micro_grid(place):
    add_rule(place, 1, "water_leak", targets=["community_office"],
             micro_grid_id=place.bld2.micro_grid_id)
    assert org_ids(submit(place, "water_leak", building=place.bld2)) == [place.office.id]
    assert org_ids(submit(place, "water_leak", building=place.bld1)) == [place.prop.id]


def test_an_area_rule_placed_after_the_general_one_never_matches(place):
    add_rule(place, 10_000, "lighting", targets=[place.committee], building=place.bld1)
    assert org_ids(submit(place, "lighting", building=place.bld1)) == [place.prop.id]


def test_an_inactive_rule_is_skipped(place):
    rule = add_rule(place, 1, "lighting", targets=[place.committee])
    rule.is_active = False
    db.session.commit()
    assert org_ids(submit(place, "lighting")) == [place.prop.id]


def test_org_types_resolve_within_the_reports_community(place):
    report_id = submit(place, "fire_lane_blocked", photo_ids=[upload(place.resident)])
    tickets = tickets_of(report_id)
    assert sorted(t.org_id for t in tickets) == sorted([place.prop.id, place.office.id])
    assert place.other_prop.id not in org_ids(report_id)
    assert {t.community_id for t in tickets} == {place.comm.id}


def test_shared_fund_matters_go_to_the_owners_committee(place):
    assert org_ids(submit(place, "elevator_installation")) == [place.committee.id]


def test_no_matching_rule_goes_to_the_community_office(place):
    report_id = submit(place, "other", description="小区门口井盖松动")
    assert org_ids(report_id) == [place.office.id]
    route = [e for e in events_of(report_id) if e.action == "route" and e.public]
    assert len(route) == 1 and place.office.name in route[0].note


def test_a_rule_naming_an_org_type_the_community_lacks_goes_to_the_office(place):
    add_rule(place, 1, "lighting", targets=["canteen"])  # the community has no canteen
    assert org_ids(submit(place, "lighting")) == [place.office.id]


def test_a_community_without_rules_sends_everything_to_its_office(place):
    db.session.execute(db.delete(RoutingTarget))
    db.session.execute(db.delete(RoutingRule))
    db.session.commit()
    assert org_ids(submit(place, "lighting")) == [place.office.id]


def test_a_building_the_cached_plan_does_not_know_is_read(place):
    # A building added by another process within the cache's window (or whose generation bump
    # was lost) is not in the plan: routing reads it rather than route without its area.
    submit(place, "lighting", building=place.bld1)  # the plan is cached now
    added = db.session.connection().execute(  # no session event: no generation bumped
        Building.__table__.insert().values(
            community_id=place.comm.id, micro_grid_id=place.bld1.micro_grid_id, number="9",
            name="9号楼", units=1, lat=31.1916, lng=121.4451)
        .returning(Building.__table__.c.id)).scalar_one()
    db.session.commit()
    ticket = ticket_of(submit(place, "lighting", building=db.session.get(Building, added)))
    assert ticket.micro_grid_id == place.bld1.micro_grid_id
    assert ticket.grid_worker_id == place.grid_worker.id  # the lighting rule copies them


def test_a_transfer_meeting_a_ticket_opened_meanwhile_gets_that_one(place, monkeypatch):
    # Two transactions open the report's ticket for one org: the second's INSERT fails on the
    # unique constraint, its savepoint takes back its rows and their jobs, and it returns the
    # first's ticket.
    from app.services import outbox, routing

    report_id = submit(place, "lighting")
    existing, jobs, events = ticket_of(report_id).id, count(OutboxMessage), count(ReportEvent)
    looks = iter([None])  # the first look misses it: not committed yet when it looked
    real = routing._ticket_for
    monkeypatch.setattr(routing, "_ticket_for", lambda r, o: next(looks, None) or real(r, o))
    ticket = routing.open_ticket(db.session.get(Report, report_id), place.prop, actor_id=None)
    assert ticket.id == existing
    assert db.session.info.get(outbox.SESSION_KEY, []) == []  # no job left to enqueue
    db.session.commit()
    assert (count(Ticket), count(OutboxMessage), count(ReportEvent)) == (1, jobs, events)


# ---- what the ticket carries ---------------------------------------------------------------

def test_expected_at_is_created_plus_the_category_sla(place):
    for code, hours in (("lighting", 48), ("water_leak", 24), ("elevator_fault", 4)):
        ticket = ticket_of(submit(place, code))
        assert category(code).sla_hours == hours
        assert ticket.expected_at - ticket.created_at == timedelta(hours=hours)
        assert ticket.created_at < ticket.accept_by <= ticket.expected_at
        assert ticket.status == "new" and ticket.overdue is False


def test_copy_grid_worker_sets_and_notifies_the_micro_grids_grid_worker(place):
    report_id = submit(place, "lighting", building=place.bld1)
    ticket = ticket_of(report_id)
    assert ticket.micro_grid_id == place.bld1.micro_grid_id
    assert ticket.grid_worker_id == place.grid_worker.id
    copies = notifications_for(place.grid_worker, "ticket_copy")
    assert len(copies) == 1 and copies[0].data["ticket_id"] == ticket.id
    assert f"#{ticket.id}" in copies[0].title


def test_notifying_the_org_and_the_grid_worker_reads_the_ticket_and_its_step_once(place):
    from workers.notify import notify_ticket_org

    submit(place, "lighting", building=place.bld1)  # its jobs ran: notifications kept
    [row] = outbox_rows("notify_ticket_org")
    with statements(expired=True) as seen:
        notify_ticket_org(**row.args)  # a retry: nothing new, but the same reads
    reads = [s.split(",")[0].split()[1] for s in seen if s.lstrip().startswith("SELECT")]
    assert reads.count("tickets.id") == 1 and reads.count("report_events.id") == 1
    assert len(notifications_for(place.grid_worker, "ticket_copy")) == 1


def test_routing_reads_the_building_once_however_many_ask(place, monkeypatch):
    from app.services import outbox

    monkeypatch.setattr(outbox, "_put_on_queue", lambda *messages: False)  # no worker yet
    report_id = submit(place, "lighting", building=place.bld1)
    grid_worker_id = place.grid_worker.id
    db.session.expunge_all()  # as in the worker: no building held in the session
    with statements() as seen:
        [ticket] = route_report(report_id)  # the rule and the ticket both need the micro-grid
    assert ticket.grid_worker_id == grid_worker_id
    assert len([s for s in seen if "FROM buildings" in s]) == 1


def test_routing_writes_its_tickets_without_looking_for_them_first(place, monkeypatch):
    # The report is locked and unrouted: none of its tickets can exist, so no SELECT of them
    # and no savepoint per ticket (a transfer, which may meet an existing one, still looks).
    # The tickets, their steps and notices and the report's step: one statement on PostgreSQL.
    from app.services import outbox

    monkeypatch.setattr(outbox, "_put_on_queue", lambda *messages: False)  # no worker yet
    report_id = submit(place, "fire_lane_blocked", photo_ids=[upload(place.resident)])
    with statements(expired=True) as seen:
        tickets = route_report(report_id)
    assert len(tickets) == 2 and report(report_id).status == ReportStatus.ROUTED
    assert not [s for s in seen if "SAVEPOINT" in s.upper()]
    assert not [s for s in seen if s.lstrip().startswith("SELECT") and "FROM tickets" in s]
    inserts = [s for s in seen if s.lstrip().startswith(("INSERT", "WITH"))]
    if db.engine.dialect.name == "postgresql":
        assert len(inserts) == 1 and inserts[0].count("INSERT INTO tickets") == 2
        assert inserts[0].count("INSERT INTO outbox") == 3  # two orgs' notices, the reporter's
    else:
        assert len([s for s in inserts if s.startswith("INSERT INTO tickets")]) == 2
    assert len(events_of(report_id)) == 4  # submit, a route step per ticket, routed


def test_a_second_report_is_routed_from_the_cached_plan(place, monkeypatch):
    # The community's rules, orgs, buildings and grid workers are read once, then kept in the
    # shared cache: routing the next report reads only that report (locked).
    from app.services import outbox

    submit(place, "lighting", building=place.bld1)  # routed: the plan is cached
    monkeypatch.setattr(outbox, "_put_on_queue", lambda *messages: False)  # no worker yet
    report_id = submit(place, "lighting", building=place.bld1)
    prop_id, grid_worker_id = place.prop.id, place.grid_worker.id
    db.session.expunge_all()  # as in the worker
    with statements() as seen:
        [ticket] = route_report(report_id)
    reads = [s for s in seen if s.lstrip().startswith("SELECT")]
    assert len(reads) == 1 and "FROM reports" in reads[0]
    assert ticket.org_id == prop_id and ticket.grid_worker_id == grid_worker_id


def test_a_rule_written_after_routing_applies_to_the_next_report(place):
    assert org_ids(submit(place, "lighting")) == [place.prop.id]  # the plan is cached now
    rule = add_rule(place, 1, "lighting", targets=[place.committee])
    target_id = db.session.scalar(select(RoutingTarget.id).where(RoutingTarget.rule_id == rule.id))
    assert org_ids(submit(place, "lighting")) == [place.committee.id]
    db.session.get(RoutingTarget, target_id).org_id = place.office.id
    db.session.commit()
    assert org_ids(submit(place, "lighting")) == [place.office.id]
    db.session.get(RoutingRule, rule.id).is_active = False
    db.session.commit()
    assert org_ids(submit(place, "lighting")) == [place.prop.id]


def test_orgs_and_areas_written_after_routing_apply_to_the_next_report(place):
    assert ticket_of(submit(place, "lighting", building=place.bld2)).grid_worker_id is None
    db.session.get(Org, place.prop.id).name = "新物业公司"
    db.session.commit()
    report_id = submit(place, "lighting", building=place.bld2)
    [route] = [e for e in events_of(report_id) if e.action == "route" and e.public]
    assert route.note == "已派发给新物业公司"
    db.session.get(Building, place.bld2.id).micro_grid_id = place.bld1.micro_grid_id
    db.session.commit()
    assert ticket_of(submit(place, "lighting", building=place.bld2)).grid_worker_id == \
        place.grid_worker.id  # bld1's micro-grid now, with its grid worker
    newcomer = f.staff(place.office, "grid_worker")
    db.session.get(MicroGrid, place.bld1.micro_grid_id).grid_worker_id = newcomer.id
    db.session.commit()
    assert ticket_of(submit(place, "lighting", building=place.bld2)).grid_worker_id == newcomer.id


def test_no_grid_worker_copy_without_the_flag_or_without_a_grid_worker(place):
    assert ticket_of(submit(place, "elevator_installation")).grid_worker_id is None  # rule off
    assert ticket_of(submit(place, "lighting", building=place.bld2)).grid_worker_id is None
    assert notifications_for(place.grid_worker) == []


def test_the_target_orgs_staff_get_an_in_app_notification(place):
    report_id = submit(place, "lighting")
    ticket = ticket_of(report_id)
    for clerk in (place.clerk, place.clerk2):
        notes = notifications_for(clerk, "ticket")
        assert len(notes) == 1
        assert notes[0].data == {"ticket_id": ticket.id, "report_id": report_id,
                                 "event_id": notes[0].data["event_id"]}
        assert "路灯" in notes[0].title
    assert notifications_for(place.member) == []
    assert notifications_for(place.office_clerk) == []
    assert notifications_for(place.other_clerk) == []


def test_the_reporter_hears_that_the_report_was_routed(place):
    report_id = submit(place, "lighting")
    messages = shared_mock_app().extensions["mock_wechat"].messages(touser=place.resident.openid)
    assert len(messages) == 1
    assert messages[0]["data"]["phrase2"]["value"] == "已派单"
    assert messages[0]["page"] == f"pages/reports/detail?id={report_id}"
    timeline = [(e.action, e.to_status) for e in events_of(report_id)]
    assert timeline[0] == ("submit", "submitted")
    assert ("route", "new") in timeline and ("route", "routed") in timeline


def test_a_reporter_who_refused_subscribe_messages_is_recorded_not_an_error(place):
    shared_mock_app().extensions["mock_wechat"].unsubscribe(place.resident.openid)
    report_id = submit(place, "lighting")
    assert report(report_id).status == ReportStatus.ROUTED
    notes = notifications_for(place.resident)
    assert [n.wx_status for n in notes] == ["not_subscribed"]
    assert {m.status for m in outbox_rows("notify_report_update")} == {OutboxStatus.DONE}


# ---- idempotence ---------------------------------------------------------------------------

def test_routing_twice_creates_nothing_new(place):
    report_id = submit(place, "fire_lane_blocked", photo_ids=[upload(place.resident)])
    tickets = {t.org_id: t.id for t in tickets_of(report_id)}
    events, notes = len(events_of(report_id)), count(Notification)
    again = route_report(report_id)
    assert {t.org_id: t.id for t in again} == tickets
    assert routing_jobs.route_report(report_id) == 2
    assert {t.org_id: t.id for t in tickets_of(report_id)} == tickets
    assert len(events_of(report_id)) == events
    assert count(Notification) == notes
    assert count(Ticket) == 2


def test_routing_a_missing_report_does_nothing(place):
    assert route_report(987654) == []
    assert count(Ticket) == 0


# ---- webhooks ------------------------------------------------------------------------------

@pytest.fixture
def hooked(app):
    return build_place(webhook=WEBHOOK)


@pytest.fixture
def receiver(monkeypatch):
    """Capture webhook POSTs; `answer` may be a status code or an exception to raise."""
    calls: list[dict] = []
    state = {"answer": 200}

    def fake_post(url, *, content, headers, timeout):
        calls.append({"url": url, "body": content, "headers": headers})
        request = httpx.Request("POST", url)
        if isinstance(state["answer"], Exception):
            raise state["answer"]
        return httpx.Response(state["answer"], request=request)

    monkeypatch.setattr(webhooks.httpx, "post", fake_post)
    return SimpleReceiver(calls, state)


class SimpleReceiver:
    def __init__(self, calls, state):
        self.calls, self.state = calls, state

    def answer(self, value) -> None:
        self.state["answer"] = value


def test_an_org_with_a_webhook_gets_a_signed_post(hooked, receiver):
    report_id = submit(hooked, "lighting")
    ticket = ticket_of(report_id)
    assert len(receiver.calls) == 1
    call = receiver.calls[0]
    assert call["url"] == WEBHOOK["webhook_url"]
    headers, body = call["headers"], call["body"]
    timestamp = headers["X-Linli-Timestamp"]
    expected = hmac.new(WEBHOOK["webhook_secret"].encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Linli-Signature"] == expected
    assert webhooks.signature(WEBHOOK["webhook_secret"], timestamp, body) == expected
    assert webhooks.signature("wrong-secret", timestamp, body) != expected
    sent = json.loads(body)
    assert sent["ticket"]["id"] == ticket.id and sent["ticket"]["report_id"] == report_id
    assert sent["event"]["action"] == "route"
    assert [m.status for m in outbox_rows("deliver_webhook")] == [OutboxStatus.DONE]


def test_orgs_without_a_webhook_get_no_post(place, receiver):
    submit(place, "lighting")
    assert receiver.calls == []
    assert outbox_rows("deliver_webhook") == []


@pytest.mark.parametrize("answer", [500, httpx.ConnectError("connection refused")],
                         ids=["http-500", "unreachable"])
def test_a_failing_webhook_is_visible_on_the_outbox_and_the_ticket_stays(hooked, receiver,
                                                                        answer):
    receiver.answer(answer)
    report_id = submit(hooked, "lighting")
    assert len(receiver.calls) == 1
    [row] = outbox_rows("deliver_webhook")
    assert row.status == OutboxStatus.FAILED
    assert row.attempts == 1
    assert "WebhookFailed" in row.last_error and "prop" in row.last_error
    assert ("HTTP 500" if answer == 500 else "ConnectError") in row.last_error
    ticket = ticket_of(report_id, hooked.prop)
    assert ticket.status == "new"
    assert report(report_id).status == ReportStatus.ROUTED
    assert len(notifications_for(hooked.clerk, "ticket")) == 1
    assert db.session.get(ReportEvent, row.args["event_id"]).ticket_id == ticket.id
    # the failure stays with the webhook: the other jobs ran and the reporter was told
    others = [outbox_rows(job) for job in ("route_report", "notify_ticket_org",
                                           "notify_report_update")]
    assert [[m.status for m in rows] for rows in others] == [[OutboxStatus.DONE]] * 3
    messages = shared_mock_app().extensions["mock_wechat"].messages(touser=hooked.resident.openid)
    assert [m["data"]["phrase2"]["value"] for m in messages] == ["已派单"]


def upload(user) -> int:
    """A photo uploaded by `user`; returns its upload id."""
    from app.services.uploads import create_upload
    from tests.services.test_uploads import photo

    return create_upload(owner_id=user.id, data=photo()).id
