"""Sign-in, tokens and the token failures the mini-program and staff clients will meet."""

from __future__ import annotations

from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token
from sqlalchemy import func, select

from app.extensions import db
from app.models import User
from tests import factories as f


@pytest.fixture
def property_staff(app):
    comm = f.community()
    org = f.org(comm, "property_company", code="prop")
    return f.staff(org, "manager", username="wang", password="correct-horse-1")


def staff_login(client, username="wang", password="correct-horse-1", **kw):
    return client.post("/api/v1/auth/staff-login",
                       json={"username": username, "password": password}, **kw)


def test_staff_login_returns_token_pair_with_roles(client, property_staff):
    r = staff_login(client)
    assert r.status_code == 200
    body = r.get_json()
    assert body["access_token"] and body["refresh_token"]
    assert body["user"]["id"] == property_staff.id
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(property_staff.id)
    assert claims["kind"] == "staff"
    assert claims["orgs"][0]["code"] == "prop" and claims["orgs"][0]["role"] == "manager"


def test_wrong_password_and_unknown_user_get_the_same_answer(client, property_staff):
    wrong = staff_login(client, password="nope-nope-nope")
    unknown = staff_login(client, username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()
    assert wrong.get_json()["error"]["code"] == "invalid_credentials"


def test_repeated_failures_are_rate_limited_even_with_the_right_password(client, property_staff):
    for _ in range(5):
        assert staff_login(client, password="bad-password").status_code == 401
    r = staff_login(client)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.get_json()["error"]["code"] == "rate_limited"


def test_failures_from_one_ip_across_usernames_are_limited(client, property_staff):
    for i in range(20):
        staff_login(client, username=f"guess{i}", password="x")
    assert staff_login(client).status_code == 429


def test_refresh_gives_a_new_access_token(client, property_staff):
    pair = staff_login(client).get_json()
    r = client.post("/api/v1/auth/refresh",
                    headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert r.status_code == 200
    new = r.get_json()["access_token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_refresh_token_is_not_an_access_token_and_vice_versa(client, property_staff):
    pair = staff_login(client).get_json()
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_invalid"
    r = client.post("/api/v1/auth/refresh",
                    headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_invalid"


def test_logout_revokes_both_tokens(client, property_staff):
    pair = staff_login(client).get_json()
    auth = {"Authorization": f"Bearer {pair['access_token']}"}
    r = client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]},
                    headers=auth)
    assert r.status_code == 204
    r = client.get("/api/v1/me", headers=auth)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_revoked"
    r = client.post("/api/v1/auth/refresh",
                    headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_revoked"


def test_logout_with_someone_elses_refresh_token_is_refused(client, app, property_staff):
    other = f.staff(f.org(f.community()), username="li", password="correct-horse-2")
    theirs = staff_login(client, "li", "correct-horse-2").get_json()
    mine = staff_login(client).get_json()
    r = client.post("/api/v1/auth/logout", json={"refresh_token": theirs["refresh_token"]},
                    headers={"Authorization": f"Bearer {mine['access_token']}"})
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "invalid_refresh_token"
    ok = client.post("/api/v1/auth/refresh",
                     headers={"Authorization": f"Bearer {theirs['refresh_token']}"})
    assert ok.status_code == 200, other


def test_expired_token(client, app, property_staff):
    token = create_access_token(identity=str(property_staff.id),
                                expires_delta=timedelta(seconds=-5),
                                additional_claims={"kind": "staff"})
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_expired"


def test_forged_token(client, property_staff):
    forged = pyjwt.encode({"sub": str(property_staff.id), "type": "access", "kind": "staff",
                           "jti": "x", "exp": 4102444800}, "not-our-secret-0123456789abcdef01",
                          algorithm="HS256")
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_invalid"


def test_alg_none_token_is_refused(client, property_staff):
    token = pyjwt.encode({"sub": str(property_staff.id), "type": "access", "kind": "staff",
                          "jti": "x", "exp": 4102444800}, None, algorithm="none")
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_invalid"


def test_missing_token(client):
    r = client.get("/api/v1/me")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_missing"


def test_resident_calling_a_staff_endpoint_gets_403(client):
    comm = f.community()
    person = f.resident(comm)
    r = client.get("/api/v1/staff/household-claims", headers=f.headers(person))
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden_role"


def test_disabled_account_cannot_sign_in(client, property_staff):
    property_staff.is_active = False
    db.session.commit()
    assert staff_login(client).status_code == 401


def test_bad_login_bodies_write_nothing(client, property_staff):
    before = db.session.scalar(select(func.count()).select_from(User))
    assert staff_login(client, username="").status_code == 422
    r = client.post("/api/v1/auth/staff-login", data="username=wang", content_type="text/plain")
    assert r.status_code == 415
    r = client.post("/api/v1/auth/staff-login", data="{", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_json"
    r = client.post("/api/v1/auth/staff-login",
                    json={"username": "wang", "password": "x", "admin": True})
    assert r.status_code == 422
    assert r.get_json()["error"]["details"]["fields"]["admin"] == ["Unknown field."]
    assert db.session.scalar(select(func.count()).select_from(User)) == before


def wx_login(client, code):
    return client.post("/api/v1/auth/wx-login", json={"code": code})


def test_wx_login_creates_the_user_once_and_never_returns_session_key(client):
    first = wx_login(client, "alice-1")
    assert first.status_code == 200
    body = first.get_json()
    assert body["access_token"] and body["refresh_token"]
    assert "session_key" not in first.get_data(as_text=True)
    again = wx_login(client, "alice-1")  # a code works once
    assert again.status_code == 422 and again.get_json()["error"]["code"] == "wx_code_used"
    user = db.session.scalar(select(User).where(User.openid == "mock-openid-alice-1"))
    assert user.id == body["user"]["id"]
    # a fresh code for the same WeChat user signs into the same account? No: each code maps to
    # its own openid in the mock, so check the account count instead.
    assert db.session.scalar(select(func.count()).select_from(User)) == 1
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["kind"] == "resident"


@pytest.mark.parametrize("code, status, error", [
    ("bad-code", 422, "wx_code_invalid"),
    ("", 422, "validation_error"),
    (None, 422, "validation_error"),
])
def test_wx_login_bad_codes_write_nothing(client, code, status, error):
    r = client.post("/api/v1/auth/wx-login", json={} if code is None else {"code": code})
    assert r.status_code == status and r.get_json()["error"]["code"] == error
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_phone_number_is_stored_and_masked_elsewhere(client):
    token = wx_login(client, "bob-1").get_json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/v1/auth/phone", json={"code": "phone-bob"}, headers=auth)
    assert r.status_code == 200
    assert "****" in r.get_json()["phone"]
    me = client.get("/api/v1/me", headers=auth).get_json()
    assert me["phone"].startswith("138") and len(me["phone"]) == 11
    r = client.post("/api/v1/auth/phone", json={"code": "bad-phone"}, headers=auth)
    assert r.status_code == 422
    assert client.get("/api/v1/me", headers=auth).get_json()["phone"] == me["phone"]
