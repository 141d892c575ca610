"""The big screen: token-protected summary and stream, and never anything personal."""

from __future__ import annotations

import json

import pytest

from app.services import screen
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from app.services.reports import submit_report
from tests import factories as f


@pytest.fixture
def place(app, runner):
    comm = f.community(code="scr")
    bld = f.building(comm, name="7号楼")
    f.org(comm, "property_company")
    f.org(comm, "community_office")
    ensure_categories()
    ensure_routing_rules(comm)
    person = f.resident(comm, display_name="王秀英", phone="13812345678")
    out = runner.invoke(args=["screen-token", "--community", "scr"])
    assert out.exit_code == 0, out.output
    token = out.output.split("screen token for scr: ")[1].split()[0]
    return {"comm": comm, "bld": bld, "person": person, "token": token}


def report(place, category="broken_facility", description="健身器材坏了"):
    return submit_report(reporter_id=place["person"].id, category=category,
                         description=description, photo_ids=[], building_id=place["bld"].id)


def test_summary_needs_the_token(client, place):
    r = client.get("/api/v1/screen/summary")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "screen_token_missing"
    r = client.get("/api/v1/screen/summary?token=wrong")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "screen_token_invalid"
    assert client.get("/screen?token=wrong").status_code == 401


def test_summary_counts_public_reports_and_shows_nothing_personal(client, place):
    report(place)
    report(place, "noise", "楼上装修太吵")
    report(place, "neighbour_dispute", "与邻居因漏水起争执")
    r = client.get(f"/api/v1/screen/summary?token={place['token']}")
    assert r.status_code == 200
    body = r.get_json()
    assert body["reports"]["today_total"] == 2
    assert set(body["reports"]["today_by_category"]) == {"公共设施损坏", "噪音扰民"}
    assert [i["category"] for i in body["reports"]["recent"]] == ["噪音扰民", "公共设施损坏"]
    assert body["reports"]["recent"][0]["building"] == "7号楼"
    text = r.get_data(as_text=True)
    for secret in ("王秀英", "13812345678", "邻里纠纷", "与邻居因漏水起争执", "楼上装修太吵"):
        assert secret not in text


def test_a_new_token_replaces_the_old(client, runner, place):
    runner.invoke(args=["screen-token", "--community", "scr"])
    assert client.get(f"/api/v1/screen/summary?token={place['token']}").status_code == 401


def test_stream_sends_the_summary_then_each_new_public_report(client, place, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda _s: None)
    r = client.get(f"/api/v1/screen/stream?token={place['token']}&max_seconds=30",
                   buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    events = (chunk.decode() for chunk in r.response)
    assert next(events).startswith("retry:")
    first = next(events)
    assert first.startswith("id: ") and "event: summary" in first

    report(place, "neighbour_dispute", "私事")
    new = report(place)
    chunk = next(events)
    while chunk.startswith(":"):
        chunk = next(events)
    assert f"id: {new.id}\n" in chunk and "event: report" in chunk
    data = json.loads(chunk.split("data: ", 1)[1])
    assert data["category"] == "公共设施损坏" and data["status_label"]
    r.close()


def test_the_documented_stream_events_carry_the_ids_the_stream_sends(client):
    spec = client.get("/openapi.json").get_json()
    response = spec["paths"]["/api/v1/screen/stream"]["get"]["responses"]["200"]
    events = {e["properties"]["event"]["enum"][0]: e
              for e in response["content"]["text/event-stream"]["schema"]["oneOf"]}
    # the summary is sent with an id (the newest report's) but may have none; a report always
    assert events["summary"]["properties"]["id"] == events["report"]["properties"]["id"] == {
        "type": "string", "pattern": "^[0-9]+$"}
    assert "id" not in events["summary"]["required"] and "id" in events["report"]["required"]


def test_stream_resumes_after_last_event_id(client, place, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda _s: None)
    missed = report(place)
    r = client.get(f"/api/v1/screen/stream?token={place['token']}&max_seconds=30",
                   headers={"Last-Event-ID": str(missed.id - 1)}, buffered=False)
    events = (chunk.decode() for chunk in r.response)
    next(events), next(events)
    assert f"id: {missed.id}\n" in next(events)
    r.close()


def test_page_is_served_with_a_valid_token(client, place):
    r = client.get(f"/screen?token={place['token']}")
    assert r.status_code == 200 and "社区数据大屏" in r.get_data(as_text=True)


def test_sections_are_registered():
    assert {"reports", "overdue_by_org"} <= set(screen.SECTIONS)


def test_summary_has_every_section_of_the_wall(client, place):
    body = client.get(f"/api/v1/screen/summary?token={place['token']}").get_json()
    assert {"reports", "overdue_by_org", "alarms", "canteen", "activities",
            "leaderboard"} <= set(body)
    assert body["canteen"] == {"orders_today": 0, "online_share": 0}
    assert body["alarms"] == [] and body["leaderboard"] == []


# --- found by fuzzing the screen with a valid token (tests/fuzz/) ----------------------------


@pytest.mark.parametrize(("query", "field"), [
    ("last_event_id=99999999999999999999", "last_event_id"),  # was a crash mid-stream (overflow)
    ("last_event_id=%C2%B2", "last_event_id"),  # "²".isdigit() but int("²") fails: was a 500
    ("last_event_id=-1", "last_event_id"),
    ("max_seconds=nan", "max_seconds"),
    ("max_seconds=0", "max_seconds"),
])
def test_stream_refuses_bad_parameters_with_a_422_before_streaming(client, place, query, field):
    r = client.get(f"/api/v1/screen/stream?token={place['token']}&{query}")
    assert r.status_code == 422 and r.mimetype == "application/json"
    error = r.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]["fields"]


@pytest.mark.parametrize("header", ["²", "99999999999999999999", "abc"])
def test_a_last_event_id_header_that_is_no_report_id_is_ignored(client, app, place, monkeypatch,
                                                               header):
    monkeypatch.setitem(app.config, "SCREEN_STREAM_MAX_SECONDS", 0.05)
    r = client.get(f"/api/v1/screen/stream?token={place['token']}",
                   headers={"Last-Event-ID": header})
    assert r.status_code == 200
    assert "event: summary" in r.get_data(as_text=True)


def test_a_bad_token_is_401_whatever_the_parameters(client, place):
    r = client.get("/api/v1/screen/stream?token=wrong&max_seconds=nan")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "screen_token_invalid"


def test_the_stream_ends_on_time_when_capped(client, app, place, monkeypatch):
    # The cap (SCREEN_STREAM_MAX_SECONDS) bounds every connection, whatever max_seconds asks;
    # the last poll sleeps only what is left, so a 0.2 s stream does not take the 1 s poll.
    import time

    monkeypatch.setitem(app.config, "SCREEN_STREAM_MAX_SECONDS", 0.2)
    started = time.monotonic()
    r = client.get(f"/api/v1/screen/stream?token={place['token']}&max_seconds=3600")
    assert r.status_code == 200 and "event: summary" in r.get_data(as_text=True)
    assert time.monotonic() - started < 0.9


def test_the_summary_schema_documents_every_section(app):
    from app.blueprints.screen.schemas import ScreenSummarySchema

    # The summary is dumped through the schema: a section it does not declare would vanish.
    assert set(screen.SECTIONS) <= set(ScreenSummarySchema().fields)
