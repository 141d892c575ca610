"""Buildings for the pickers, /me, and household claims decided by the community office."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import HouseholdMember
from tests import factories as f


@pytest.fixture
def place(app):
    comm = f.community()
    bld = f.building(comm, number="3", units=2, rooms=("101", "102", "201"))
    office = f.org(comm, "community_office", code="office")
    return {"comm": comm, "bld": bld, "office": office,
            "clerk": f.staff(office, "staff"), "resident": f.resident()}


def claim(client, place, **kw):
    body = {"building_id": place["bld"].id, "unit": "2", "room": "201", "relation": "owner"}
    body.update(kw)
    return client.post("/api/v1/me/households", json=body, headers=f.headers(place["resident"]))


def claims_count():
    return db.session.scalar(select(func.count()).select_from(HouseholdMember))


def test_buildings_list_and_detail_with_units_and_rooms(client, place):
    r = client.get("/api/v1/community/buildings", headers=f.headers(place["resident"]))
    assert r.status_code == 200
    assert [b["number"] for b in r.get_json()["items"]] == ["3"]
    r = client.get(f"/api/v1/community/buildings/{place['bld'].id}",
                   headers=f.headers(place["resident"]))
    body = r.get_json()
    assert body["unit_list"] == [{"unit": "1", "rooms": ["101", "102", "201"]},
                                 {"unit": "2", "rooms": ["101", "102", "201"]}]
    assert body["micro_grid"]["code"].startswith("mg")
    assert body["lat"] and body["lng"]


def test_unknown_building_is_404(client, place):
    r = client.get("/api/v1/community/buildings/99999", headers=f.headers(place["resident"]))
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "building_not_found"


def test_claim_then_office_approves(client, place):
    r = claim(client, place)
    assert r.status_code == 201
    created = r.get_json()
    assert created["status"] == "pending"
    assert created["household"]["label"] == "3号楼2单元201"

    pending = client.get("/api/v1/staff/household-claims", headers=f.headers(place["clerk"]))
    assert [c["id"] for c in pending.get_json()["items"]] == [created["id"]]

    r = client.post(f"/api/v1/staff/household-claims/{created['id']}/approve", json={},
                    headers=f.headers(place["clerk"]))
    assert r.status_code == 200 and r.get_json()["status"] == "approved"

    me = client.get("/api/v1/me", headers=f.headers(place["resident"])).get_json()
    assert me["households"][0]["status"] == "approved"
    assert me["community_id"] == place["comm"].id


def test_reject_with_note_and_no_second_decision(client, place):
    created = claim(client, place).get_json()
    url = f"/api/v1/staff/household-claims/{created['id']}"
    r = client.post(url + "/reject", json={"note": "非本户成员"}, headers=f.headers(place["clerk"]))
    assert r.get_json()["status"] == "rejected" and r.get_json()["decision_note"] == "非本户成员"
    r = client.post(url + "/approve", json={}, headers=f.headers(place["clerk"]))
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "invalid_transition"


def test_claim_for_a_room_that_does_not_exist_writes_nothing(client, place):
    r = claim(client, place, room="999")
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "room_not_found"
    r = claim(client, place, building_id=424242)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "building_not_found"
    r = claim(client, place, relation="landlord")
    assert r.status_code == 422 and "relation" in r.get_json()["error"]["details"]["fields"]
    assert claims_count() == 0


def test_duplicate_claim_is_409(client, place):
    assert claim(client, place).status_code == 201
    r = claim(client, place)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "claim_exists"
    assert claims_count() == 1


def test_claim_is_idempotent_with_a_key(client, place):
    headers = {**f.headers(place["resident"]), "Idempotency-Key": "claim-1"}
    body = {"building_id": place["bld"].id, "unit": "1", "room": "101", "relation": "owner"}
    first = client.post("/api/v1/me/households", json=body, headers=headers)
    again = client.post("/api/v1/me/households", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/me/households", json={**body, "room": "102"}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert claims_count() == 1


def test_office_of_another_community_cannot_see_or_decide(client, place):
    created = claim(client, place).get_json()
    elsewhere = f.staff(f.org(f.community(), "community_office"), "manager")
    r = client.get("/api/v1/staff/household-claims", headers=f.headers(elsewhere))
    assert r.get_json()["items"] == []
    r = client.post(f"/api/v1/staff/household-claims/{created['id']}/approve", json={},
                    headers=f.headers(elsewhere))
    assert r.status_code == 404


def test_property_staff_cannot_decide_claims(client, place):
    created = claim(client, place).get_json()
    prop = f.staff(f.org(place["comm"], "property_company"), "manager")
    r = client.post(f"/api/v1/staff/household-claims/{created['id']}/approve", json={},
                    headers=f.headers(prop))
    assert r.status_code == 403


def test_me_shows_staff_memberships(client, place):
    me = client.get("/api/v1/me", headers=f.headers(place["clerk"])).get_json()
    assert me["memberships"] == [{"org_id": place["office"].id, "org_code": "office",
                                  "org_name": place["office"].name,
                                  "org_type": "community_office", "role": "staff"}]
    assert me["is_staff"] is True


def test_profile_update_sets_name_and_birth_year(client, place):
    me = place["resident"]
    r = client.patch("/api/v1/me", json={"display_name": "李阿姨", "birth_year": 1950},
                     headers=f.headers(me))
    assert r.status_code == 200
    assert (r.get_json()["display_name"], r.get_json()["birth_year"]) == ("李阿姨", 1950)
    r = client.patch("/api/v1/me", json={"birth_year": 1850}, headers=f.headers(me))
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "invalid_birth_year"
    db.session.expire_all()
    assert db.session.get(type(me), me.id).birth_year == 1950
