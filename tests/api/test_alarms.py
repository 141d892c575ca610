"""Safety alarms, over HTTP: the signed ingest endpoint, the staff desk and registry, the family
side, and (on PostgreSQL) the races: retried batches, repeated events, double acknowledgement."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.errors import APIError
from app.extensions import db
from app.models import (
    Alarm,
    AlarmEvent,
    Device,
    DeviceEvent,
    EmergencyContact,
    Gateway,
    WatchedElder,
)
from app.services import alarm_registry, alarms
from tests import factories as f
from tests.alarms_fixtures import (
    DAUGHTER_PHONE,
    NOON,
    SECRET_B,
    alarms_of,
    build_place,
    count,
    event,
    install_clock,
    post_events,
    signed_headers,
    vitals,
    wechat_messages,
)

INGEST = "/api/v1/iot/events"


@pytest.fixture
def clock(monkeypatch):
    return install_clock(monkeypatch)


@pytest.fixture
def place(app, clock):
    return build_place()


def smoke_alarm_id(client, place) -> int:
    """Raise a smoke alarm through the endpoint; its id."""
    assert post_events(client, [event("smoke_alarm", "smoke")]).status_code == 202
    return alarms_of(place, "smoke")[-1].id


# --- ingest: signatures -----------------------------------------------------------------------


def test_a_signed_batch_is_stored_and_evaluated(client, place):
    r = post_events(client, [event("smoke_alarm", "smoke"), event("door_sensor", "opened")])
    assert r.status_code == 202
    body = r.get_json()
    assert (body["received"], body["accepted"], body["duplicate"], body["rejected"]) == (
        2, 2, 0, 0)
    assert [x["status"] for x in body["results"]] == ["accepted", "accepted"]
    assert count(DeviceEvent) == 2
    assert [a.kind for a in alarms_of(place)] == ["smoke"]


def _body(events=None) -> bytes:
    return json.dumps({"events": events or [event("smoke_alarm", "smoke")]}).encode()


@pytest.mark.parametrize("case", ["unsigned", "no_timestamp", "wrong_secret", "other_gateway_key",
                                  "unknown_gateway", "tampered", "stale", "future", "garbage"])
def test_bad_signatures_are_401_and_store_nothing(client, place, clock, case):
    body = _body()
    headers = signed_headers(body)
    if case == "unsigned":
        headers.pop("X-Linli-Signature")
    elif case == "no_timestamp":
        headers.pop("X-Linli-Timestamp")
    elif case == "wrong_secret":
        headers = signed_headers(body, secret="not-the-secret")
    elif case == "other_gateway_key":  # says gateway A, signs with gateway B's key
        headers = signed_headers(body, code="gw-a", secret=SECRET_B)
    elif case == "unknown_gateway":
        headers = signed_headers(body, code="gw-nobody")
    elif case == "tampered":
        body = body.replace(b"smoke", b"gas__")
    elif case == "stale":
        headers = signed_headers(body, timestamp=int(clock.at.timestamp()) - 301)
    elif case == "future":
        headers = signed_headers(body, timestamp=int(clock.at.timestamp()) + 301)
    elif case == "garbage":
        headers["X-Linli-Signature"] = "sha256=zz-not-hex-é"
    r = client.post(INGEST, data=body, headers=headers)
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["error"]["code"] in {"signature_missing", "signature_invalid",
                                             "signature_stale"}
    assert count(DeviceEvent) == 0 and count(Alarm) == 0


def test_each_gateway_signs_with_its_own_key_and_a_disabled_one_is_refused(client, place):
    assert post_events(client, [event("smoke_alarm", "smoke")], code="gw-b",
                       secret=SECRET_B).status_code == 202
    db.session.get(Gateway, place.gateway_b.id).is_active = False
    db.session.commit()
    r = post_events(client, [event("gas_alarm", "gas")], code="gw-b", secret=SECRET_B)
    assert r.status_code == 401 and count(DeviceEvent) == 1


def test_a_body_that_is_signed_but_not_a_batch_is_422_and_stores_nothing(client, place):
    for payload in ({"events": []}, {"events": "x"}, {"nope": 1},
                    {"events": [event("sos_button", "pressed")] * 501}):
        body = json.dumps(payload).encode()
        r = client.post(INGEST, data=body, headers=signed_headers(body))
        assert r.status_code == 422, payload
    assert count(DeviceEvent) == 0


# --- ingest: per-event results ----------------------------------------------------------------


def test_bad_events_are_rejected_one_by_one_and_the_rest_accepted(client, place, clock):
    naive = event("door_sensor", "opened")
    naive["at"] = "2026-03-10T12:00:00"
    cases = [
        (event("smoke_alarm", "smoke", serial="NO-SUCH-SERIAL"), "unknown_serial"),
        (event("smoke_alarm", "smoke", serial="OTHER-SMOKE"), "unknown_serial"),
        (event("smoke_alarm", "smoke", at=clock.at + timedelta(minutes=5)), "from_future"),
        (event("smoke_alarm", "smoke", at=clock.at - timedelta(hours=24, minutes=1)),
         "too_old"),
        (event("gas_alarm", "smoke", serial="SMOKE-1"), "wrong_kind"),
        (event("smoke_alarm", "pressed"), "unknown_type"),
        (event("bed_belt", "vitals", payload={"smoke": True}), "invalid_payload"),
        (event("bed_belt", "vitals", payload={"in_bed": True, "heart_rate": "70",
                                              "breath_rate": 16}), "invalid_payload"),
        (naive, "invalid_event"),
        ({**event("sos_button", "pressed"), "event_id": ""}, "invalid_event"),
        ("not an object", "invalid_event"),
    ]
    good = event("sos_button", "pressed")
    r = post_events(client, [c for c, _ in cases] + [good])
    assert r.status_code == 202
    results = r.get_json()["results"]
    assert [x.get("reason") for x in results] == [reason for _, reason in cases] + [None]
    assert all(x["status"] == "rejected" and x["message"] for x in results[:-1])
    assert results[-1] == {"event_id": good["event_id"], "status": "accepted"}
    assert list(db.session.scalars(select(DeviceEvent.event_id))) == [good["event_id"]]
    assert [a.kind for a in alarms_of(place)] == ["sos"]


def test_a_slightly_fast_gateway_clock_is_tolerated(client, place, clock):
    r = post_events(client, [event("sos_button", "pressed", at=clock.at + timedelta(seconds=30))])
    assert r.get_json()["accepted"] == 1


def test_a_retried_batch_stores_nothing_twice(client, place):
    batch = [event("smoke_alarm", "smoke"), event("door_sensor", "opened"),
             event("bed_belt", "heartbeat")]
    first = post_events(client, batch).get_json()
    again = post_events(client, batch + [batch[0]]).get_json()
    assert first["accepted"] == 3
    assert (again["accepted"], again["duplicate"]) == (0, 4)
    assert count(DeviceEvent) == 3
    [alarm] = alarms_of(place)
    assert alarm.event_count == 1


def test_the_same_event_id_twice_in_one_batch_is_a_duplicate(client, place):
    one = event("sos_button", "pressed")
    body = post_events(client, [one, one]).get_json()
    assert [x["status"] for x in body["results"]] == ["accepted", "duplicate"]
    assert count(DeviceEvent) == 1


def test_event_ids_are_per_gateway(client, place):
    one = event("sos_button", "pressed")
    post_events(client, [one])
    body = post_events(client, [one], code="gw-b", secret=SECRET_B).get_json()
    assert body["accepted"] == 1 and count(DeviceEvent) == 2


# --- the staff desk -----------------------------------------------------------------------------


def test_the_desk_lists_most_urgent_first_with_filters(client, place, clock):
    post_events(client, [vitals(heart_rate=0, breath_rate=0)])
    clock.advance(seconds=10)
    post_events(client, [event("smoke_alarm", "smoke")])
    clock.advance(seconds=10)
    post_events(client, [event("sos_button", "pressed")])
    sos = alarms_of(place, "sos")[0]
    alarms.transition(alarm_id=sos.id, scope=_scope(place.on_duty), action="acknowledge")
    headers = f.headers(place.off_duty)
    items = client.get("/api/v1/staff/alarms", headers=headers).get_json()["items"]
    assert [(i["kind"], i["status"]) for i in items] == [
        ("smoke", "raised"), ("sos", "acknowledged"), ("no_vital_signs", "raised")]
    smoke = items[0]
    assert smoke["severity_label"] == "紧急" and smoke["kind_name"] == "烟雾报警"
    assert smoke["address"] == "3号楼1单元101" and smoke["building"] == "3号楼"
    assert smoke["elder"] == {"id": place.elder.id, "name": "王秀英"}
    assert smoke["raised_at"] == (NOON + timedelta(seconds=10)).isoformat()
    r = client.get("/api/v1/staff/alarms?severity=warning", headers=headers)
    assert [i["kind"] for i in r.get_json()["items"]] == ["no_vital_signs"]
    r = client.get("/api/v1/staff/alarms?status=acknowledged", headers=headers)
    assert [i["kind"] for i in r.get_json()["items"]] == ["sos"]
    page = client.get("/api/v1/staff/alarms?limit=2", headers=headers).get_json()
    rest = client.get(f"/api/v1/staff/alarms?limit=2&cursor={page['next_cursor']}",
                      headers=headers).get_json()
    assert [i["kind"] for i in page["items"] + rest["items"]] == [
        "smoke", "sos", "no_vital_signs"]
    assert client.get("/api/v1/staff/alarms?status=bogus", headers=headers).status_code == 422


def statements_for(client, url, headers) -> int:
    """How many SQL statements one GET runs."""
    from sqlalchemy import event as sa_event

    seen = []

    def count(*_args):
        seen.append(1)

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert client.get(url, headers=headers).status_code == 200
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)


def test_list_queries_do_not_grow_with_the_page(client, place, clock):
    post_events(client, [event("smoke_alarm", "smoke")])
    staff, family = f.headers(place.on_duty), f.headers(place.daughter)
    one = (statements_for(client, "/api/v1/staff/alarms", staff),
           statements_for(client, "/api/v1/alarms/mine", family))
    for kind, type_ in (("gas_alarm", "gas"), ("sos_button", "pressed")):
        post_events(client, [event(kind, type_)])
    post_events(client, [vitals(heart_rate=0, breath_rate=0), vitals(heart_rate=150)])
    assert len(alarms_of(place)) == 5
    assert (statements_for(client, "/api/v1/staff/alarms", staff),
            statements_for(client, "/api/v1/alarms/mine", family)) == one


def _scope(user):
    return alarms.StaffScope(user_id=user.id, orgs=[{"community_id": user.community_id}])


def test_other_communities_and_residents_see_no_alarms(client, place):
    alarm_id = smoke_alarm_id(client, place)
    other = f.headers(place.other_clerk)
    assert client.get("/api/v1/staff/alarms", headers=other).get_json()["items"] == []
    r = client.get(f"/api/v1/staff/alarms/{alarm_id}", headers=other)
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "alarm_not_found"
    r = client.post(f"/api/v1/staff/alarms/{alarm_id}/transitions", headers=other,
                    json={"action": "acknowledge"})
    assert r.status_code == 404
    assert client.get("/api/v1/staff/alarms", headers=f.headers(place.daughter)).status_code \
        == 403


def test_the_detail_shows_full_phones_only_to_staff_on_duty_and_the_grid_worker(client, place):
    alarm_id = smoke_alarm_id(client, place)
    url = f"/api/v1/staff/alarms/{alarm_id}"
    for person, full in ((place.on_duty, True), (place.grid_worker, True),
                         (place.off_duty, False), (place.manager, False)):
        body = client.get(url, headers=f.headers(person)).get_json()
        assert body["phones_visible"] is full
        first = body["contacts"][0]
        assert first["phone"] == (DAUGHTER_PHONE if full else "138****5678")
        assert [c["name"] for c in body["contacts"]] == ["李敏", "李伟", "赵师傅"]
    assert body["elder_detail"]["name"] == "王秀英" and body["address"] == "3号楼1单元101"
    assert body["device"]["serial"] == "SMOKE-1"
    assert [e["type"] for e in body["device_events"]] == ["smoke"]
    assert [e["action"] for e in body["timeline"]] == ["raise", "notify"]


def test_transitions_over_http(client, place, clock):
    alarm_id = smoke_alarm_id(client, place)
    url = f"/api/v1/staff/alarms/{alarm_id}/transitions"
    headers = f.headers(place.on_duty)
    r = client.post(url, headers=headers, json={"action": "resolve", "cause": "cooking"})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "invalid_transition"
    assert r.get_json()["error"]["details"]["allowed"] == ["acknowledge"]
    clock.advance(seconds=40)
    r = client.post(url, headers=headers, json={"action": "acknowledge", "note": "已致电"})
    assert r.status_code == 200 and r.get_json()["status"] == "acknowledged"
    r = client.post(url, headers=headers, json={"action": "resolve"})
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "cause_required"
    r = client.post(url, headers=headers, json={"action": "resolve", "cause": "aliens"})
    assert r.status_code == 422 and "cause" in r.get_json()["error"]["details"]["fields"]
    r = client.post(url, headers=headers, json={"action": "teleport"})
    assert r.status_code == 422
    assert str(alarms_of(place)[0].status) == "acknowledged"
    clock.advance(minutes=3)
    r = client.post(url, headers=headers, json={"action": "resolve", "cause": "cooking",
                                                "note": "炒菜油烟"})
    body = r.get_json()
    assert (r.status_code, body["status"], body["cause_label"]) == (200, "resolved", "烹饪油烟")
    assert body["resolved_at"] == (NOON + timedelta(seconds=220)).isoformat()
    assert [e["action"] for e in body["timeline"]][-2:] == ["resolve", "notify"]


def test_stats_over_http(client, place, clock):
    alarm_id = smoke_alarm_id(client, place)
    headers = f.headers(place.on_duty)
    url = f"/api/v1/staff/alarms/{alarm_id}/transitions"
    clock.advance(seconds=60)
    client.post(url, headers=headers, json={"action": "acknowledge"})
    clock.advance(seconds=240)
    client.post(url, headers=headers, json={"action": "resolve", "cause": "false_alarm"})
    r = client.get("/api/v1/staff/alarms/stats", headers=headers)
    body = r.get_json()
    assert r.status_code == 200 and body["total"] == 1
    assert body["overall"]["acknowledge_seconds"] == {"median": 60.0, "p95": 60.0}
    assert body["overall"]["resolve_seconds"] == {"median": 300.0, "p95": 300.0}
    assert body["overall"]["within_10_min"]["share"] == 1.0
    assert body["by_cause"] == [{"cause": "false_alarm", "label": "误报", "count": 1}]
    r = client.get("/api/v1/staff/alarms/stats?from=2026-03-10T00:00:00&to=2026-03-11T00:00:00",
                   headers=headers)
    assert r.status_code == 422  # times need their offset
    r = client.get("/api/v1/staff/alarms/stats?from=2026-03-11T00:00:00%2B08:00"
                   "&to=2026-03-10T00:00:00%2B08:00", headers=headers)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "invalid_range"


def test_going_on_duty_decides_who_is_paged(client, place):
    headers = f.headers(place.off_duty)
    r = client.put("/api/v1/staff/alarms/duty", headers=headers, json={"on_duty": True})
    assert {e["user_id"] for e in r.get_json()["items"]} == {place.on_duty.id,
                                                             place.off_duty.id}
    client.put("/api/v1/staff/alarms/duty", headers=f.headers(place.on_duty),
               json={"on_duty": False})
    smoke_alarm_id(client, place)
    from tests.alarms_fixtures import notices

    assert len(notices(place.off_duty, "alarm_raised")) == 1
    assert notices(place.on_duty, "alarm_raised") == []


def test_the_rules_are_listed_as_data(client, place):
    items = client.get("/api/v1/staff/alarm-rules", headers=f.headers(place.on_duty)).get_json()[
        "items"]
    smoke = next(r for r in items if r["code"] == "smoke")
    assert (smoke["severity"], smoke["ack_within_seconds"], smoke["event_type"]) == (
        "critical", 180, "smoke")


# --- the registry -------------------------------------------------------------------------------


def test_staff_register_elders_and_devices(client, place):
    headers = f.headers(place.on_duty)
    home = f.household_of(place.bld, "2", "201")
    r = client.post("/api/v1/staff/watched-elders", headers=headers, json={
        "household_id": home.id, "name": "老周", "birth_year": 1938, "heart_rate_max": 100})
    assert r.status_code == 201, r.get_json()
    elder = r.get_json()
    assert (elder["address"], elder["heart_rate_min"], elder["heart_rate_max"]) == (
        "3号楼2单元201", 50, 100)
    retry = {**headers, "Idempotency-Key": "register-zhou-sos"}
    r = client.post("/api/v1/staff/devices", headers=retry, json={
        "serial": "ZHOU-SOS", "kind": "sos_button", "elder_id": elder["id"]})
    assert r.status_code == 201 and r.get_json()["installed_on"] == "2026-03-10"
    again = client.post("/api/v1/staff/devices", headers=retry, json={
        "serial": "ZHOU-SOS", "kind": "sos_button", "elder_id": elder["id"]})
    assert again.status_code == 201 and again.get_json() == r.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    r = client.post("/api/v1/staff/devices", headers=headers, json={
        "serial": "ZHOU-SOS", "kind": "sos_button", "elder_id": elder["id"]})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "serial_taken"
    r = client.post("/api/v1/staff/devices", headers=headers, json={
        "serial": "X", "kind": "toaster", "elder_id": elder["id"]})
    assert r.status_code == 422
    r = client.patch(f"/api/v1/staff/watched-elders/{elder['id']}", headers=headers,
                     json={"heart_rate_min": 120})
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "invalid_range"
    assert count(Device, Device.serial.startswith("ZHOU")) == 1
    r = client.post("/api/v1/staff/watched-elders", headers=f.headers(place.other_clerk),
                    json={"household_id": home.id, "name": "冒名"})
    assert r.status_code == 422 and count(WatchedElder) == 3
    r = client.post("/api/v1/staff/devices", headers=f.headers(place.grid_worker), json={
        "serial": "GW", "kind": "sos_button", "elder_id": elder["id"]})
    assert r.status_code == 403


def test_an_id_too_large_for_the_database_is_422_not_500(client, place):
    # Found by the fuzzer (tests/fuzz/): 2**70 reached the database (OverflowError on SQLite).
    r = client.post("/api/v1/staff/watched-elders", headers=f.headers(place.on_duty),
                    json={"household_id": 2**70, "name": "老周"})
    assert r.status_code == 422 and r.get_json()["error"]["code"]
    assert count(WatchedElder) == 2


def test_device_list_shows_who_is_offline(client, place, clock):
    clock.advance(hours=3)
    post_events(client, [event("sos_button", "heartbeat")])
    headers = f.headers(place.on_duty)
    body = client.get("/api/v1/staff/devices?offline=true", headers=headers).get_json()
    assert sorted(d["serial"] for d in body["items"]) == ["BED-1", "DOOR-1", "GAS-1", "SMOKE-1"]
    body = client.get("/api/v1/staff/devices?offline=false", headers=headers).get_json()
    assert [(d["serial"], d["online"]) for d in body["items"]] == [("SOS-1", True)]
    device_id = place.devices["gas_alarm"].id
    r = client.patch(f"/api/v1/staff/devices/{device_id}", headers=headers,
                     json={"is_active": False})
    assert r.get_json()["is_active"] is False
    assert client.get(f"/api/v1/staff/devices/{device_id}",
                      headers=f.headers(place.other_clerk)).status_code == 404


def test_a_decommissioned_device_is_an_unknown_serial(client, place):
    db.session.get(Device, place.devices["gas_alarm"].id).is_active = False
    db.session.commit()
    body = post_events(client, [event("gas_alarm", "gas")]).get_json()
    assert body["results"][0]["reason"] == "unknown_serial" and count(DeviceEvent) == 0


def test_gateway_secrets_are_shown_once_and_work(client, place):
    headers = f.headers(place.manager)
    r = client.post("/api/v1/staff/gateways", headers=headers,
                    json={"name": "3号楼网关", "code": "gw-bld3"})
    assert r.status_code == 201
    secret = r.get_json()["secret"]
    assert len(secret) >= 40
    listed = client.get("/api/v1/staff/gateways", headers=headers).get_json()["items"]
    assert {g["code"] for g in listed} == {"gw-a", "gw-b", "gw-bld3"}
    assert all("secret" not in g for g in listed) and secret not in json.dumps(listed)
    assert post_events(client, [event("sos_button", "pressed")], code="gw-bld3",
                       secret=secret).status_code == 202
    r = client.post("/api/v1/staff/gateways", headers=headers, json={"name": "x",
                                                                      "code": "gw-bld3"})
    assert r.status_code == 409
    assert client.post("/api/v1/staff/gateways", headers=f.headers(place.on_duty),
                       json={"name": "x"}).status_code == 403


def test_the_cli_creates_and_rotates_gateway_keys(app, place, clock):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["alarms", "create-gateway", "--community", "zpq",
                                 "--code", "gw-cli"])
    assert result.exit_code == 0, result.output
    secret = result.output.rsplit(": ", 1)[1].strip()
    gateway = db.session.scalar(select(Gateway).where(Gateway.code == "gw-cli"))
    assert gateway.secret == secret
    result = runner.invoke(args=["alarms", "rotate-gateway-key", "gw-cli"])
    new_secret = result.output.rsplit(": ", 1)[1].strip()
    assert new_secret != secret
    client = app.test_client()
    assert post_events(client, [event("sos_button", "pressed")], code="gw-cli",
                       secret=secret).status_code == 401
    assert post_events(client, [event("sos_button", "pressed")], code="gw-cli",
                       secret=new_secret).status_code == 202
    result = runner.invoke(args=["alarms", "create-gateway", "--community", "nowhere"])
    assert result.exit_code != 0 and "nowhere" in result.output


# --- the family side ----------------------------------------------------------------------------


def test_family_sees_their_elders_alarms_and_others_get_404(client, place):
    alarm_id = smoke_alarm_id(client, place)
    post_events(client, [event("smoke_alarm", "smoke", serial="OTHER-SMOKE")],
                code="gw-other", secret="secret-of-the-other-community")
    for person in (place.daughter, place.son):
        body = client.get("/api/v1/alarms/mine", headers=f.headers(person)).get_json()
        assert [i["id"] for i in body["items"]] == [alarm_id]
        detail = client.get(f"/api/v1/alarms/{alarm_id}", headers=f.headers(person)).get_json()
        assert [e["action"] for e in detail["timeline"]] == ["raise"]
        assert "data" not in detail["timeline"][0] and "actor_id" not in detail["timeline"][0]
    for outsider in (place.neighbour, place.other_resident):
        headers = f.headers(outsider)
        assert client.get("/api/v1/alarms/mine", headers=headers).get_json()["items"] == []
        r = client.get(f"/api/v1/alarms/{alarm_id}", headers=headers)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "alarm_not_found"
    assert client.get(f"/api/v1/alarms/{alarm_id}",
                      headers=f.headers(place.on_duty)).status_code == 403


def test_family_see_the_kit_and_household_members_edit_contacts(client, place):
    headers = f.headers(place.daughter)
    [elder] = client.get("/api/v1/alarms/elders", headers=headers).get_json()["items"]
    assert sorted(d["kind"] for d in elder["devices"]) == sorted(
        ["sos_button", "door_sensor", "gas_alarm", "smoke_alarm", "bed_belt"])
    url = f"/api/v1/alarms/elders/{elder['id']}/contacts"
    new = [{"name": "李伟", "phone": "13900001111", "relation": "儿子"},
           {"name": "李敏", "phone": DAUGHTER_PHONE, "relation": "女儿",
            "user_id": place.daughter.id}]
    r = client.put(url, headers=f.headers(place.son), json={"contacts": new})
    assert r.status_code == 403  # an emergency contact, not a member of the household
    r = client.put(url, headers=headers, json={"contacts": new})
    assert r.status_code == 200
    assert [(c["position"], c["name"]) for c in r.get_json()["contacts"]] == [
        (1, "李伟"), (2, "李敏")]
    before = [(c.position, c.name) for c in db.session.scalars(
        select(EmergencyContact).order_by(EmergencyContact.position))]
    bad_cases = [
        (place.daughter, [{"name": "某人", "phone": "12ab"}], 422),
        (place.daughter, [{"name": "陌生人", "phone": "13911112222",
                           "user_id": place.other_resident.id}], 422),
        (place.daughter, [{"name": f"人{i}", "phone": "13911112222"} for i in range(6)], 422),
        (place.neighbour, new, 404),
    ]
    for person, contacts, status in bad_cases:
        r = client.put(url, headers=f.headers(person), json={"contacts": contacts})
        assert r.status_code == status, (contacts, r.get_json())
    db.session.expire_all()
    assert [(c.position, c.name) for c in db.session.scalars(
        select(EmergencyContact).order_by(EmergencyContact.position))] == before


def test_family_can_say_the_elder_is_away(client, place, clock):
    url = f"/api/v1/alarms/elders/{place.elder.id}"
    r = client.patch(url, headers=f.headers(place.daughter), json={"at_home": False})
    assert r.status_code == 200 and r.get_json()["at_home"] is False
    clock.advance(hours=30)
    alarms.check_periodic_rules()
    assert alarms_of(place, "door_not_opened") == []
    assert client.patch(url, headers=f.headers(place.son),
                        json={"at_home": True}).status_code == 403


def test_first_contact_gets_the_subscribe_message_on_raise(client, place):
    smoke_alarm_id(client, place)
    [message] = wechat_messages(place.daughter)
    assert message["data"]["phrase2"]["value"] == "已报警"
    assert message["page"].startswith("pages/alarms/detail?id=")


# --- demo -------------------------------------------------------------------------------------


def test_the_demo_seed_adds_elders_with_kits_and_a_gateway_once(app, monkeypatch):
    from app.services.demo import seed_demo

    monkeypatch.setenv("LINLI_DEMO_PASSWORD", "demo-password-1")
    first = seed_demo()
    counts = first["counts"]
    assert counts["alarm_elders"] == alarm_registry.DEMO_ELDERS
    assert counts["alarm_devices"] == 5 * alarm_registry.DEMO_ELDERS
    [gateway] = [x for x in first["logins"] if x["username"] == "zpq-gw-01"]
    assert len(gateway["password"]) >= 40
    elder = db.session.scalar(select(WatchedElder).limit(1))
    assert len(alarm_registry.load_elder(elder.id).contacts) == 2
    second = seed_demo()
    assert second["counts"]["alarm_devices"] == counts["alarm_devices"]
    assert [x["password"] for x in second["logins"] if x["username"] == "zpq-gw-01"] == [
        "(unchanged)"]


# --- races (PostgreSQL) ---------------------------------------------------------------------------

THREADS = 200


def _race(app, work) -> tuple[list, list]:
    """Run `work(i)` in THREADS threads started together; (results, unexpected errors)."""
    barrier, results, errors, lock = threading.Barrier(THREADS), [], [], threading.Lock()

    def run(i):
        with app.app_context():
            barrier.wait()
            try:
                outcome = work(i)
            except APIError as exc:
                outcome = exc.code
            except Exception as exc:  # noqa: BLE001 - collected and asserted empty
                with lock:
                    errors.append(repr(exc))
                return
            finally:
                db.session.remove()
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


@pytest.mark.postgres
@pytest.mark.concurrency
def test_200_retries_of_one_event_store_it_once(app, place):
    one = event("smoke_alarm", "smoke")
    body = json.dumps({"events": [one]}).encode()
    headers = signed_headers(body)

    def work(_i):
        r = app.test_client().post(INGEST, data=body, headers=headers)
        return r.get_json()["results"][0]["status"] if r.status_code == 202 else r.status_code

    results, errors = _race(app, work)
    assert errors == []
    assert sorted(set(results)) == ["accepted", "duplicate"]
    assert results.count("accepted") == 1 and results.count("duplicate") == THREADS - 1
    db.session.expire_all()
    assert count(DeviceEvent) == 1
    [alarm] = alarms_of(place)
    assert alarm.event_count == 1


@pytest.mark.postgres
@pytest.mark.concurrency
def test_200_smoke_events_at_once_raise_one_alarm_and_attach_the_rest(app, place):
    events = [event("smoke_alarm", "smoke") for _ in range(THREADS)]

    def work(i):
        body = json.dumps({"events": [events[i]]}).encode()
        r = app.test_client().post(INGEST, data=body, headers=signed_headers(body))
        return r.get_json()["accepted"] if r.status_code == 202 else r.status_code

    results, errors = _race(app, work)
    assert errors == [] and results == [1] * THREADS
    [alarm] = alarms_of(place)
    assert alarm.event_count == THREADS
    actions = list(db.session.scalars(select(AlarmEvent.action).where(
        AlarmEvent.alarm_id == alarm.id)))
    assert actions.count("raise") == 1 and actions.count("attach") == THREADS - 1
    assert count(DeviceEvent, DeviceEvent.alarm_id == alarm.id) == THREADS
    assert len(wechat_messages(place.daughter)) == 1


@pytest.mark.postgres
@pytest.mark.concurrency
def test_200_clerks_acknowledging_at_once_one_wins(app, place):
    alarm_id = smoke_alarm_id(app.test_client(), place)
    clerk = place.on_duty

    def work(_i):
        return str(alarms.transition(alarm_id=alarm_id, scope=_scope(clerk),
                                     action="acknowledge").status)

    results, errors = _race(app, work)
    assert errors == []
    assert results.count("acknowledged") == 1
    assert results.count("invalid_transition") == THREADS - 1
    db.session.expire_all()
    assert count(AlarmEvent, AlarmEvent.alarm_id == alarm_id,
                 AlarmEvent.action == "acknowledge") == 1


def test_staff_can_link_any_resident_of_the_community_as_a_contact(client, place):
    url = f"/api/v1/staff/watched-elders/{place.elder.id}/contacts"
    headers = f.headers(place.on_duty)
    r = client.put(url, headers=headers, json={"contacts": [
        {"name": "李伟", "phone": "13900001111", "relation": "儿子", "user_id": place.son.id}]})
    assert r.status_code == 200 and r.get_json()["contacts"][0]["user_id"] == place.son.id
    r = client.put(url, headers=headers, json={"contacts": [
        {"name": "外人", "phone": "13900001111", "user_id": place.other_resident.id}]})
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "user_not_found"
    assert count(EmergencyContact, EmergencyContact.elder_id == place.elder.id) == 1
    assert client.put(url, headers=f.headers(place.other_clerk), json={"contacts": []}
                      ).status_code == 404
