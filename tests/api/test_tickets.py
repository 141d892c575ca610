"""The ticket API as property staff, committee members, grid workers and the office use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import current_app

from app.extensions import db
from app.models import Notification
from app.models.reports import Report, ReportFollower, ReportPhoto, Ticket
from app.services.tickets import escalate_overdue
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f
from tests.sql_fixtures import statements
from tests.tickets_fixtures import (
    MASKED_PHONE,
    RESIDENT_PHONE,
    build_place,
    count,
    events_of,
    notifications_for,
    report,
    submit,
    ticket_of,
    tickets_of,
)

TICKETS = "/api/v1/tickets"


@pytest.fixture
def place(app):
    return build_place()


# ---- helpers -------------------------------------------------------------------------------

def settled(response):
    """The response as is: the app's error handlers roll back whatever a failed request
    flushed, so the "nothing written" checks below see exactly what production would."""
    return response


def get(client, user, url, **params):
    return settled(client.get(url, query_string=params, headers=f.headers(user)))


def listed(client, user, **params) -> list[int]:
    r = get(client, user, TICKETS, **params)
    assert r.status_code == 200, r.get_json()
    return [t["id"] for t in r.get_json()["items"]]


def move(client, user, ticket_id: int, action: str, **body):
    return settled(client.post(f"{TICKETS}/{ticket_id}/transitions",
                               json={"action": action, **body}, headers=f.headers(user)))


def comment(client, user, ticket_id: int, body: str, internal: bool):
    return settled(client.post(f"{TICKETS}/{ticket_id}/comments",
                               json={"body": body, "internal": internal},
                               headers=f.headers(user)))


def resident_view(client, user, report_id: int):
    return settled(client.get(f"/api/v1/reports/{report_id}", headers=f.headers(user)))


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def messages_to(user) -> list[dict]:
    return shared_mock_app().extensions["mock_wechat"].messages(touser=user.openid)


def shown_status(message: dict) -> str:
    return message["data"]["phrase2"]["value"]


def snapshot(report_id: int) -> tuple:
    """Everything a transition could change about a report, to prove nothing was."""
    r = report(report_id)
    return (str(r.status), r.rejected_reason, r.duplicate_of_id,
            [(t.id, t.org_id, str(t.status), t.assignee_id, t.transferred_to_id)
             for t in tickets_of(report_id)],
            len(events_of(report_id)), count(ReportPhoto), count(ReportFollower),
            count(Notification), count(Ticket))


def upload(user, colour=(200, 40, 40)) -> int:
    from app.services.uploads import create_upload
    from tests.services.test_uploads import photo

    return create_upload(owner_id=user.id, data=photo(colour=colour)).id


def set_ticket(ticket_id: int, **values) -> None:
    db.session.execute(db.update(Ticket).where(Ticket.id == ticket_id).values(**values))
    db.session.commit()


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)




# ---- GET /api/v1/tickets: who sees what ----------------------------------------------------

def test_staff_see_only_their_own_orgs_tickets(client, place):
    lighting = ticket_of(submit(place, "lighting")).id
    installation = ticket_of(submit(place, "elevator_installation",
                                    description="3号楼申请加装电梯")).id
    noise = ticket_of(submit(place, "noise", description="楼上夜里装修")).id

    assert listed(client, place.clerk) == [lighting]
    assert listed(client, place.member) == [installation]
    assert listed(client, place.office_clerk) == [noise]
    assert listed(client, place.other_clerk) == []

    item = get(client, place.clerk, TICKETS).get_json()["items"][0]
    assert item["report_id"] == db.session.get(Ticket, lighting).report_id
    assert item["status"] == "new" and item["status_label"] == "待受理"
    assert item["org"] == {"id": place.prop.id, "code": "prop", "name": "绿城物业"}
    assert item["category"] == "lighting" and item["description"] == "3单元楼道灯不亮"
    assert item["expected_at"].endswith("+00:00")


def test_a_property_clerk_cannot_open_the_committees_ticket(client, place):
    installation = ticket_of(submit(place, "elevator_installation")).id
    r = get(client, place.clerk, f"{TICKETS}/{installation}")
    assert r.status_code == 404 and error_code(r) == "ticket_not_found"
    r = get(client, place.other_clerk, f"{TICKETS}/{installation}")
    assert r.status_code == 404
    r = get(client, place.member, f"{TICKETS}/999999")
    assert r.status_code == 404


def test_grid_workers_see_only_the_tickets_of_their_micro_grids(client, place):
    lighting_here = ticket_of(submit(place, "lighting", building=place.bld1)).id
    noise_here = ticket_of(submit(place, "noise", building=place.bld1)).id
    lighting_there = ticket_of(submit(place, "lighting", building=place.bld2)).id
    other_by_gps = ticket_of(submit(place, "other", building=None)).id

    assert sorted(listed(client, place.grid_worker)) == sorted([lighting_here, noise_here])
    assert get(client, place.grid_worker, f"{TICKETS}/{lighting_here}").status_code == 200
    assert get(client, place.grid_worker, f"{TICKETS}/{lighting_there}").status_code == 404
    assert sorted(listed(client, place.office_clerk)) == sorted([noise_here, other_by_gps])


def test_grid_workers_act_only_on_their_own_orgs_tickets(client, place):
    property_ticket = ticket_of(submit(place, "lighting", building=place.bld1)).id
    office_ticket = ticket_of(submit(place, "noise", building=place.bld1)).id
    r = move(client, place.grid_worker, property_ticket, "accept")
    assert r.status_code == 403 and error_code(r) == "not_handler"
    assert get(client, place.clerk, f"{TICKETS}/{property_ticket}").get_json()["status"] == "new"
    r = move(client, place.grid_worker, office_ticket, "accept")
    assert r.status_code == 200 and r.get_json()["status"] == "accepted"


def test_a_resident_token_is_refused(client, place):
    ticket = ticket_of(submit(place)).id
    r = get(client, place.resident, TICKETS)
    assert r.status_code == 403 and error_code(r) == "forbidden_role"
    assert get(client, place.resident, f"{TICKETS}/{ticket}").status_code == 403
    assert client.get(TICKETS).status_code == 401


def test_filters_status_category_overdue_building_and_text(client, place):
    dark = ticket_of(submit(place, "lighting", building=place.bld1,
                            description="1号楼楼道灯不亮")).id
    leak = ticket_of(submit(place, "water_leak", building=place.bld2,
                            description="地下室管道漏水")).id
    flicker = ticket_of(submit(place, "lighting", building=place.bld2,
                               description="路灯一直闪", location_text="西门停车场")).id
    assert move(client, place.clerk, dark, "accept").status_code == 200
    set_ticket(leak, overdue=True)

    assert listed(client, place.clerk, status="accepted") == [dark]
    assert sorted(listed(client, place.clerk, status="new")) == sorted([leak, flicker])
    assert listed(client, place.clerk, category="water_leak") == [leak]
    assert sorted(listed(client, place.clerk, category="lighting")) == sorted([dark, flicker])
    assert listed(client, place.clerk, overdue="true") == [leak]
    assert sorted(listed(client, place.clerk, overdue="false")) == sorted([dark, flicker])
    assert sorted(listed(client, place.clerk, building_id=place.bld2.id)) == sorted(
        [leak, flicker])
    assert listed(client, place.clerk, q="漏水") == [leak]
    assert listed(client, place.clerk, q="西门") == [flicker]
    assert listed(client, place.clerk, q="100%") == []
    assert listed(client, place.clerk, category="water_leak", building_id=place.bld1.id) == []

    r = get(client, place.clerk, TICKETS, status="lost")
    assert r.status_code == 422 and "status" in r.get_json()["error"]["details"]["fields"]


def test_sixty_tickets_page_by_keyset_in_a_constant_number_of_statements(client, place,
                                                                        monkeypatch):
    monkeypatch.setitem(current_app.config, "REPORT_RATE_LIMIT", 1000)
    sixty = [ticket_of(submit(place, "lighting", building=place.bld2,
                              description=f"第{i}盏灯不亮")).id for i in range(60)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        body = get(client, place.clerk, TICKETS, **params).get_json()
        assert len(body["items"]) <= 7
        seen += [t["id"] for t in body["items"]]
        cursor, pages = body["next_cursor"], pages + 1
        if cursor is None:
            break
    assert pages == 9
    assert len(seen) == len(set(seen)) == 60
    assert seen == sorted(sixty, reverse=True)  # newest first

    counts = {}
    for limit in (5, 50):
        db.session.expire_all()
        with statements() as run:
            r = client.get(TICKETS, query_string={"limit": limit},
                           headers=f.headers(place.clerk))
        assert r.status_code == 200 and len(r.get_json()["items"]) == limit
        counts[limit] = len(run)
    assert counts[5] == counts[50], counts

    r = get(client, place.clerk, TICKETS, cursor="not-a-cursor")
    assert r.status_code == 422 and error_code(r) == "invalid_cursor"
    assert get(client, place.clerk, TICKETS, limit=0).status_code == 422
    assert get(client, place.clerk, TICKETS, limit=101).status_code == 422


def test_the_default_first_page_is_the_same_page_the_filtered_path_builds(client, place,
                                                                         monkeypatch):
    monkeypatch.setitem(current_app.config, "REPORT_RATE_LIMIT", 1000)
    made = [ticket_of(submit(place, "lighting", building=place.bld2,
                             description=f"第{i}盏灯不亮")).id for i in range(25)]
    first = get(client, place.clerk, TICKETS).get_json()  # the prebuilt statement
    assert [t["id"] for t in first["items"]] == sorted(made, reverse=True)[:20]
    rest = get(client, place.clerk, TICKETS, cursor=first["next_cursor"]).get_json()
    assert [t["id"] for t in first["items"] + rest["items"]] == sorted(made, reverse=True)
    assert rest["next_cursor"] is None
    # the same page through the general path (a filter that keeps every ticket)
    general = get(client, place.clerk, TICKETS, category="lighting").get_json()
    assert general == first


def test_grid_worker_list_is_also_a_constant_number_of_statements(client, place, monkeypatch):
    monkeypatch.setitem(current_app.config, "REPORT_RATE_LIMIT", 1000)
    for i in range(12):
        submit(place, "lighting", description=f"灯{i}")
    counts = {}
    for limit in (2, 10):
        db.session.expire_all()
        with statements() as seen:
            r = client.get(TICKETS, query_string={"limit": limit},
                           headers=f.headers(place.grid_worker))
        assert len(r.get_json()["items"]) == limit
        counts[limit] = len(seen)
    assert counts[2] == counts[10], counts


def test_each_listed_ticket_is_its_detail_in_brief(client, place):
    from app.blueprints.tickets.schemas import TicketSummarySchema

    long = ticket_of(submit(place, "lighting", description="灯" * 300, location_text="东门")).id
    by_position = ticket_of(submit(place, "water_leak", building=None)).id
    ticket_of(submit(place, "broken_facility", building=place.bld2))
    assert move(client, place.clerk, long, "accept", assignee_id=place.clerk.id).status_code \
        == 200
    set_ticket(by_position, overdue=True)

    for params in ({}, {"sort": "overdue"}):
        items = get(client, place.clerk, TICKETS, **params).get_json()["items"]
        assert len(items) == 3
        for item in items:
            assert set(item) == set(TicketSummarySchema().fields)
            detail = get(client, place.clerk, f"{TICKETS}/{item['id']}").get_json()
            assert item == {key: detail[key] for key in item}
    shown = {t["id"]: t for t in items}
    assert len(shown[long]["description"]) == 120 and shown[long]["assignee_id"] == place.clerk.id
    assert shown[by_position]["building"] is None and shown[by_position]["overdue"] is True


def test_sort_overdue_puts_the_earliest_deadline_first(client, place):
    lighting = ticket_of(submit(place, "lighting")).id            # 48 h
    elevator = ticket_of(submit(place, "elevator_fault")).id      # 4 h
    facility = ticket_of(submit(place, "broken_facility")).id     # 72 h
    leak = ticket_of(submit(place, "water_leak")).id              # 24 h
    done = ticket_of(submit(place, "elevator_fault")).id
    assert move(client, place.clerk, done, "resolve", note="已修好").status_code == 409
    assert move(client, place.clerk, done, "accept").status_code == 200
    assert move(client, place.clerk, done, "resolve", note="已修好").status_code == 200

    body = get(client, place.clerk, TICKETS, sort="overdue").get_json()
    assert [t["id"] for t in body["items"]] == [elevator, leak, lighting, facility]
    deadlines = [parse(t["expected_at"]) for t in body["items"]]
    assert deadlines == sorted(deadlines)

    first = get(client, place.clerk, TICKETS, sort="overdue", limit=2).get_json()
    rest = get(client, place.clerk, TICKETS, sort="overdue", limit=2,
               cursor=first["next_cursor"]).get_json()
    assert [t["id"] for t in first["items"] + rest["items"]] == [elevator, leak, lighting,
                                                                 facility]
    assert rest["next_cursor"] is None
    assert listed(client, place.clerk)[0] == done  # newest first by default


# ---- GET /api/v1/tickets/<id> --------------------------------------------------------------

def test_detail_has_report_photos_full_timeline_and_a_masked_phone(client, place):
    photo = upload(place.resident)
    report_id = submit(place, "garbage", photo_ids=[photo], description="楼下垃圾堆了三天")
    ticket = ticket_of(report_id).id
    assert comment(client, place.clerk, ticket, "先联系保洁", internal=True).status_code == 201
    assert comment(client, place.clerk, ticket, "明天上午清运", internal=False).status_code == 201

    r = get(client, place.clerk, f"{TICKETS}/{ticket}")
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == ticket and body["report_id"] == report_id
    assert body["report"]["description"] == "楼下垃圾堆了三天"
    assert body["report"]["status"] == "routed"
    assert [p["id"] for p in body["report"]["photos"]] == [photo]
    assert body["report"]["photos"][0]["url"].startswith("/media/")
    assert body["reporter"] == {"id": place.resident.id, "display_name": "张阿姨",
                                "phone": MASKED_PHONE}
    timeline = [(e["action"], e["public"], e["note"]) for e in body["timeline"]]
    assert ("comment", False, "先联系保洁") in timeline
    assert ("comment", True, "明天上午清运") in timeline
    assert timeline[0][0] == "submit"
    assert [t["org"] for t in body["tickets"]] == ["绿城物业"]
    assert RESIDENT_PHONE not in r.get_data(as_text=True)


def test_only_the_assigned_handler_sees_the_full_phone(client, place):
    ticket = ticket_of(submit(place)).id
    r = move(client, place.clerk, ticket, "accept", assignee_id=place.clerk2.id)
    assert r.status_code == 200
    assert r.get_json()["assignee_id"] == place.clerk2.id
    assert r.get_json()["reporter"]["phone"] == MASKED_PHONE  # the clerk is not the assignee

    mine = get(client, place.clerk2, f"{TICKETS}/{ticket}").get_json()
    assert mine["reporter"]["phone"] == RESIDENT_PHONE
    assert get(client, place.clerk, f"{TICKETS}/{ticket}").get_json()["reporter"][
        "phone"] == MASKED_PHONE
    assign = [e for e in mine["timeline"] if e["action"] == "assign"]
    assert len(assign) == 1 and assign[0]["public"] is False
    assert assign[0]["data"] == {"assignee_id": place.clerk2.id}


# ---- POST /api/v1/tickets/<id>/transitions -------------------------------------------------

def test_accept_start_resolve_moves_the_report_and_tells_the_resident(client, place):
    report_id = submit(place, "lighting")
    ticket = ticket_of(report_id).id
    assert [shown_status(m) for m in messages_to(place.resident)] == ["已派单"]

    steps = [("accept", {}, "accepted", "accepted", "已受理"),
             ("start", {"note": "电工已出发"}, "in_progress", "in_progress", "处理中"),
             ("resolve", {"note": "已更换灯泡"}, "resolved", "resolved", "已处理")]
    for action, extra, ticket_status, report_status, label in steps:
        before = len(events_of(report_id))
        r = move(client, place.clerk, ticket, action, **extra)
        assert r.status_code == 200, r.get_json()
        assert r.get_json()["status"] == ticket_status
        assert r.get_json()["report"]["status"] == report_status
        assert report(report_id).status == report_status
        new = events_of(report_id)[before:]
        assert (action, ticket) in [(e.action, e.ticket_id) for e in new]
        assert any(e.to_status == report_status and e.ticket_id is None for e in new)
        assert shown_status(messages_to(place.resident)[-1]) == label

    assert [shown_status(m) for m in messages_to(place.resident)] == [
        "已派单", "已受理", "处理中", "已处理"]
    assert messages_to(place.resident)[-1]["template_id"] == "tmpl-report-resolved"
    row = ticket_of(report_id)
    assert row.accepted_at is not None and row.resolved_at is not None

    seen = resident_view(client, place.resident, report_id).get_json()
    assert seen["status"] == "resolved"
    assert [e["action"] for e in seen["timeline"]] == ["submit", "route", "accept", "start",
                                                       "resolve"]
    assert seen["timeline"][-1]["note"] == "已更换灯泡"
    assert seen["timeline"][-1]["org"] == "绿城物业"


def test_resolve_needs_a_note_or_an_after_photo(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    assert move(client, place.clerk, ticket, "accept").status_code == 200
    before = snapshot(report_id)
    for body in ({}, {"note": "   "}, {"note": "", "photo_ids": []}):
        r = move(client, place.clerk, ticket, "resolve", **body)
        assert r.status_code == 422 and error_code(r) == "note_or_photo_required"
        assert "note" in r.get_json()["error"]["details"]["fields"]
    assert snapshot(report_id) == before


def test_after_photos_attached_on_resolve_reach_the_resident(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    after = [upload(place.clerk, (10, 160, 10)), upload(place.clerk, (10, 10, 160))]
    assert move(client, place.clerk, ticket, "start").status_code == 200
    r = move(client, place.clerk, ticket, "resolve", photo_ids=after)
    assert r.status_code == 200
    assert [(p["id"], p["kind"]) for p in r.get_json()["report"]["photos"]] == [
        (after[0], "after"), (after[1], "after")]

    seen = resident_view(client, place.resident, report_id).get_json()
    assert seen["status"] == "resolved"
    assert [p["id"] for p in seen["after_photos"]] == after
    assert seen["photos"] == []
    assert all(p["url"].startswith("/media/") for p in seen["after_photos"])


def test_someone_elses_upload_cannot_be_an_after_photo(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    move(client, place.clerk, ticket, "accept")
    before = snapshot(report_id)
    r = move(client, place.clerk, ticket, "resolve", note="好了",
             photo_ids=[upload(place.clerk2)])
    assert r.status_code == 422 and error_code(r) == "photo_not_found"
    assert snapshot(report_id) == before


@pytest.mark.parametrize("setup, action", [([], "resolve"), (["accept"], "accept"),
                                           (["accept", "start"], "accept"),
                                           (["accept", "start"], "reject")],
                         ids=["resolve-from-new", "accept-twice", "accept-in-progress",
                              "reject-in-progress"])
def test_moves_the_state_does_not_allow_are_409(client, place, setup, action):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    for step in setup:
        assert move(client, place.clerk, ticket, step).status_code == 200
    before = snapshot(report_id)
    r = move(client, place.clerk, ticket, action, note="理由", assignee_id=place.clerk2.id)
    assert r.status_code == 409 and error_code(r) == "invalid_transition"
    assert action not in r.get_json()["error"]["details"]["allowed"]
    assert snapshot(report_id) == before


def test_an_unknown_action_is_422(client, place):
    ticket = ticket_of(submit(place)).id
    for action in ("close", "reopen", "explode"):
        r = move(client, place.clerk, ticket, action)
        assert r.status_code == 422 and "action" in r.get_json()["error"]["details"]["fields"]


def test_reject_needs_a_reason(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    r = move(client, place.clerk, ticket, "reject")
    assert r.status_code == 422 and error_code(r) == "note_required"
    assert snapshot(report_id) == before


def test_reject_of_the_only_ticket_rejects_the_report_with_the_reason(client, place):
    report_id = submit(place, "other", description="隔壁小区的路灯坏了")
    ticket = ticket_of(report_id).id
    r = move(client, place.office_clerk, ticket, "reject", note="不属于本社区，请向邻近社区反映")
    assert r.status_code == 200 and r.get_json()["status"] == "rejected"
    seen = resident_view(client, place.resident, report_id).get_json()
    assert seen["status"] == "rejected" and seen["closed_at"]  # an end: no more moves
    assert seen["rejected_reason"] == "不属于本社区，请向邻近社区反映"
    assert shown_status(messages_to(place.resident)[-1]) == "不予受理"


def test_reject_by_one_of_two_orgs_leaves_the_report_with_the_other(client, place):
    photo = upload(place.resident)
    report_id = submit(place, "fire_lane_blocked", photo_ids=[photo])
    office_ticket = ticket_of(report_id, place.office).id
    r = move(client, place.office_clerk, office_ticket, "reject", note="由物业处理即可")
    assert r.status_code == 200
    assert report(report_id).status == "routed"
    assert report(report_id).rejected_reason is None
    assert ticket_of(report_id, place.prop).status == "new"


def test_transfer_closes_the_old_ticket_and_opens_one_for_the_other_org(client, place):
    report_id = submit(place, "broken_facility", description="小花园长椅坏了，想改造成休息区")
    old = ticket_of(report_id).id
    assert move(client, place.clerk, old, "accept").status_code == 200
    assert report(report_id).status == "accepted"

    r = move(client, place.clerk, old, "transfer", to_org="committee", note="属公共空间改造")
    assert r.status_code == 200
    assert r.get_json()["status"] == "transferred"
    old_row, new_row = tickets_of(report_id)
    assert (old_row.id, old_row.status, old_row.transferred_to_id) == (old, "transferred",
                                                                        new_row.id)
    assert (new_row.org_id, new_row.status) == (place.committee.id, "new")
    assert report(report_id).status == "routed"
    assert listed(client, place.member) == [new_row.id]
    assert len(notifications_for(place.member, "ticket")) == 1
    seen = resident_view(client, place.resident, report_id).get_json()
    assert [h["org_code"] for h in seen["handlers"]] == ["committee"]
    assert move(client, place.member, new_row.id, "accept").status_code == 200
    assert report(report_id).status == "accepted"


@pytest.mark.parametrize("to_org", ["no-such-org", "other-prop"])
def test_transfer_to_an_unknown_org_is_422(client, place, to_org):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    r = move(client, place.clerk, ticket, "transfer", to_org=to_org)
    assert r.status_code == 422 and error_code(r) == "unknown_org"
    assert snapshot(report_id) == before
    r = move(client, place.clerk, ticket, "transfer")
    assert r.status_code == 422 and "to_org" in r.get_json()["error"]["details"]["fields"]


def test_transfer_to_an_org_that_already_has_the_report_is_422(client, place):
    report_id = submit(place, "fire_lane_blocked", photo_ids=[upload(place.resident)])
    ticket = ticket_of(report_id, place.prop).id
    before = snapshot(report_id)
    for to_org in ("prop", "office"):
        r = move(client, place.clerk, ticket, "transfer", to_org=to_org)
        assert r.status_code == 422 and error_code(r) == "already_assigned"
        assert snapshot(report_id) == before


def test_a_transferred_ticket_can_no_longer_be_moved(client, place):
    original = submit(place, "lighting", reporter=place.neighbour)
    report_id = submit(place, "lighting")
    old = ticket_of(report_id).id
    assert move(client, place.clerk, old, "transfer", to_org="office").status_code == 200
    before = snapshot(report_id)
    for action, body in (("accept", {}), ("reject", {"note": "不是我们的"}),
                         ("transfer", {"to_org": "committee"}),
                         ("mark_duplicate", {"of_report": original})):
        r = move(client, place.clerk, old, action, **body)
        assert r.status_code == 409 and error_code(r) == "invalid_transition", (action,
                                                                                r.get_json())
        assert snapshot(report_id) == before


def test_mark_duplicate_links_the_report_and_the_reporter_follows_the_original(client, place):
    original = submit(place, "lighting", reporter=place.neighbour, description="1号楼灯坏了")
    report_id = submit(place, "lighting", description="楼道灯又不亮了")
    ticket = ticket_of(report_id).id
    assert resident_view(client, place.resident, original).status_code == 404

    r = move(client, place.clerk, ticket, "mark_duplicate", of_report=original)
    assert r.status_code == 200 and r.get_json()["status"] == "duplicate"
    seen = resident_view(client, place.resident, report_id).get_json()
    assert seen["status"] == "duplicate" and seen["duplicate_of_id"] == original
    assert seen["closed_at"]
    assert shown_status(messages_to(place.resident)[-1]) == "重复反映"
    assert resident_view(client, place.resident, original).status_code == 200

    # the resident now hears about the original's progress
    before = len(messages_to(place.resident))
    assert move(client, place.clerk, ticket_of(original).id, "accept").status_code == 200
    assert len(messages_to(place.resident)) == before + 1
    assert shown_status(messages_to(place.resident)[-1]) == "已受理"


def test_mark_duplicate_of_a_report_in_another_community_is_422(client, place):
    elsewhere = submit(place, "lighting", reporter=place.other_resident,
                       building=f.building(place.other_comm))
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    for of_report in (elsewhere, report_id, 999999):
        r = move(client, place.clerk, ticket, "mark_duplicate", of_report=of_report)
        assert r.status_code == 422 and error_code(r) == "unknown_report"
        assert snapshot(report_id) == before


def test_staff_of_another_org_get_404_and_change_nothing(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    for user in (place.member, place.office_clerk, place.other_clerk):
        r = move(client, user, ticket, "accept")
        assert r.status_code == 404 and error_code(r) == "ticket_not_found"
        r = comment(client, user, ticket, "我来看看", internal=True)
        assert r.status_code == 404
    assert snapshot(report_id) == before


def test_an_assignee_outside_the_tickets_org_is_422(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    for outsider in (place.member, place.other_clerk, place.resident):
        r = move(client, place.clerk, ticket, "accept", assignee_id=outsider.id)
        assert r.status_code == 422 and error_code(r) == "assignee_not_in_org"
        assert snapshot(report_id) == before


def test_a_resident_cannot_move_tickets(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    r = move(client, place.resident, ticket, "accept")
    assert r.status_code == 403
    r = comment(client, place.resident, ticket, "快点", internal=False)
    assert r.status_code == 403
    assert snapshot(report_id) == before


# ---- POST /api/v1/tickets/<id>/comments ----------------------------------------------------

def test_internal_comments_stay_internal_public_ones_reach_the_resident(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    messages = len(messages_to(place.resident))

    r = comment(client, place.clerk, ticket, "住户脾气大，注意沟通", internal=True)
    assert r.status_code == 201 and r.get_json()["action"] == "comment"
    assert len(messages_to(place.resident)) == messages

    r = comment(client, place.clerk, ticket, "师傅下午两点上门", internal=False)
    assert r.status_code == 201
    assert len(messages_to(place.resident)) == messages + 1

    notes = [e["note"] for e in resident_view(client, place.resident, report_id)
             .get_json()["timeline"] if e["action"] == "comment"]
    assert notes == ["师傅下午两点上门"]
    staff_notes = [e["note"] for e in get(client, place.clerk, f"{TICKETS}/{ticket}")
                   .get_json()["timeline"] if e["action"] == "comment"]
    assert staff_notes == ["住户脾气大，注意沟通", "师傅下午两点上门"]


def test_an_empty_comment_is_422(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    before = snapshot(report_id)
    r = comment(client, place.clerk, ticket, "", internal=False)
    assert r.status_code == 422 and "body" in r.get_json()["error"]["details"]["fields"]
    assert snapshot(report_id) == before


# ---- SLA escalation ------------------------------------------------------------------------

def test_a_ticket_not_accepted_in_time_is_escalated_once(client, place):
    report_id = submit(place)
    ticket = ticket_of(report_id).id
    fresh = ticket_of(submit(place, "water_leak")).id
    set_ticket(ticket, accept_by=datetime.now(UTC) - timedelta(minutes=1))

    assert escalate_overdue() == 1
    row = ticket_of(report_id)
    assert row.overdue is True and row.escalated_at is not None
    assert db.session.get(Ticket, fresh).overdue is False
    escalations = [e for e in events_of(report_id) if e.action == "escalate"]
    assert len(escalations) == 1 and escalations[0].public is False
    assert "受理" in escalations[0].note
    office_notes = notifications_for(place.office_clerk, "ticket_overdue")
    assert len(office_notes) == 1 and office_notes[0].data["ticket_id"] == ticket
    assert len(notifications_for(place.clerk, "ticket_overdue")) == 1

    before = snapshot(report_id)
    assert escalate_overdue() == 0
    assert snapshot(report_id) == before
    assert listed(client, place.clerk, overdue="true") == [ticket]
    assert get(client, place.clerk, f"{TICKETS}/{ticket}").get_json()["overdue"] is True


def test_a_ticket_not_resolved_in_time_is_escalated_but_a_resolved_one_is_not(client, place):
    late = submit(place)
    done = submit(place, "water_leak")
    assert move(client, place.clerk, ticket_of(late).id, "accept").status_code == 200
    assert move(client, place.clerk, ticket_of(done).id, "accept").status_code == 200
    assert move(client, place.clerk, ticket_of(done).id, "resolve",
                note="已修复").status_code == 200
    past = datetime.now(UTC) - timedelta(hours=1)
    for report_id in (late, done):
        set_ticket(ticket_of(report_id).id, accept_by=past - timedelta(hours=1),
                   expected_at=past)

    assert escalate_overdue() == 1
    assert ticket_of(late).overdue is True
    assert ticket_of(done).overdue is False
    [escalation] = [e for e in events_of(late) if e.action == "escalate"]
    assert "办结" in escalation.note
    assert len(notifications_for(place.office_clerk, "ticket_overdue")) == 1
    assert escalate_overdue() == 0
    assert len(notifications_for(place.office_clerk, "ticket_overdue")) == 1


# ---- GET /api/v1/tickets/stats -------------------------------------------------------------

def at(day: int, hour: float = 0, month: int = 1, year: int = 2024) -> datetime:
    return datetime(year, month, day, tzinfo=UTC) + timedelta(hours=hour)


def backdate(report_id: int, *, created: datetime, accepted: float | None = None,
             resolved: float | None = None, overdue: bool = False,
             rating: int | None = None) -> None:
    """Put a ticket's timestamps (hours after `created`) and its report's rating in place."""
    ticket = ticket_of(report_id)
    set_ticket(ticket.id, created_at=created, overdue=overdue,
               accepted_at=created + timedelta(hours=accepted) if accepted is not None else None,
               resolved_at=created + timedelta(hours=resolved) if resolved is not None else None,
               status="resolved" if resolved is not None else "new")
    db.session.execute(db.update(Report).where(Report.id == report_id).values(rating=rating))
    db.session.commit()


JANUARY = {"from": "2024-01-01T00:00:00+08:00", "to": "2024-02-01T00:00:00+08:00"}


def test_stats_per_org_and_category(client, place, monkeypatch):
    monkeypatch.setitem(current_app.config, "REPORT_RATE_LIMIT", 1000)
    backdate(submit(place, "lighting"), created=at(10, 2), accepted=1, resolved=10, rating=4)
    backdate(submit(place, "lighting"), created=at(11), accepted=2, resolved=20, rating=5)
    backdate(submit(place, "lighting"), created=at(12), accepted=4, overdue=True)
    backdate(submit(place, "water_leak"), created=at(15))
    # outside January in Shanghai time: 23:00 on 31 Dec and 00:30 on 1 Feb
    backdate(submit(place, "lighting"), created=at(31, 15, month=12, year=2023), accepted=1,
             resolved=1, rating=1)
    backdate(submit(place, "lighting"), created=at(31, 16.5), accepted=1, resolved=1, rating=1)
    backdate(submit(place, "elevator_installation"), created=at(20), accepted=24)

    r = get(client, place.clerk, f"{TICKETS}/stats", **JANUARY)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["items"] == [
        {"org_id": place.prop.id, "org_name": "绿城物业", "category": "lighting",
         "category_name": "路灯/楼道灯不亮", "received": 3, "resolved": 2,
         "resolution_rate": 0.667, "median_hours_to_accept": 2.0,
         "median_hours_to_resolve": 15.0, "overdue": 1, "average_rating": 4.5},
        {"org_id": place.prop.id, "org_name": "绿城物业", "category": "water_leak",
         "category_name": "漏水渗水", "received": 1, "resolved": 0, "resolution_rate": 0.0,
         "median_hours_to_accept": None, "median_hours_to_resolve": None, "overdue": 0,
         "average_rating": None},
    ]
    committee = get(client, place.member, f"{TICKETS}/stats", **JANUARY).get_json()["items"]
    assert [(s["category"], s["received"], s["median_hours_to_accept"]) for s in committee] == [
        ("elevator_installation", 1, 24.0)]
    assert get(client, place.other_clerk, f"{TICKETS}/stats", **JANUARY).get_json()[
        "items"] == []


def test_stats_need_a_valid_range(client, place):
    r = get(client, place.clerk, f"{TICKETS}/stats")
    assert r.status_code == 422
    assert {"from", "to"} <= set(r.get_json()["error"]["details"]["fields"])
    r = get(client, place.clerk, f"{TICKETS}/stats", **{"from": JANUARY["to"],
                                                       "to": JANUARY["from"]})
    assert r.status_code == 422 and error_code(r) == "invalid_range"
    r = get(client, place.clerk, f"{TICKETS}/stats", **{"from": "yesterday",
                                                       "to": JANUARY["to"]})
    assert r.status_code == 422
