"""Platform operators see the jobs that failed for good and can requeue them; nobody else can.

The outbox belongs to the deployment: a failed job's arguments name rows of any community, so an
org's `admin` (whose reach is one community) must not list or requeue them.
"""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import OutboxMessage, OutboxStatus
from app.services import outbox
from tests import factories as f
from workers.jobs import job

ATTEMPTS: list[int] = []
FAILED = "/api/v1/admin/jobs/failed"


@job("tests.admin_flaky")
def flaky(fail: bool = True) -> None:
    """Fails while ATTEMPTS is short of 1 entry."""
    ATTEMPTS.append(1)
    if len(ATTEMPTS) < 2:
        raise RuntimeError("receiver down")


@pytest.fixture
def operator(app):
    return f.platform_operator()


@pytest.fixture
def failed_job(app) -> OutboxMessage:
    """A job of another community's report that exhausted its retries."""
    ATTEMPTS.clear()
    outbox.add_job("tests.admin_flaky")
    outbox.commit()  # runs in-process and fails
    row = db.session.scalar(db.select(OutboxMessage))
    assert row.status == OutboxStatus.FAILED
    return row


def status_of(row: OutboxMessage) -> OutboxStatus:
    db.session.expire_all()
    return db.session.get(OutboxMessage, row.id).status


def test_failed_job_is_listed_with_its_error_and_can_be_requeued(client, operator, failed_job):
    r = client.get(FAILED, headers=f.headers(operator))
    assert r.status_code == 200
    [item] = r.get_json()["items"]
    assert item["id"] == failed_job.id and item["job"] == "tests.admin_flaky"
    assert "receiver down" in item["last_error"]

    r = client.post(f"{FAILED}/{failed_job.id}/requeue", headers=f.headers(operator))
    assert r.status_code == 200
    assert status_of(failed_job) == OutboxStatus.DONE
    assert client.get(FAILED, headers=f.headers(operator)).get_json()["items"] == []
    r = client.post(f"{FAILED}/{failed_job.id}/requeue", headers=f.headers(operator))
    assert r.status_code == 409


@pytest.mark.parametrize("org_type", ["community_office", "property_company", "canteen"])
def test_an_org_admin_can_neither_list_nor_requeue(client, failed_job, org_type):
    admin = f.staff(f.org(f.community(), org_type), "admin")
    r = client.get(FAILED, headers=f.headers(admin))
    assert (r.status_code, r.get_json()["error"]["code"]) == (403, "forbidden_role")
    r = client.post(f"{FAILED}/{failed_job.id}/requeue", headers=f.headers(admin))
    assert (r.status_code, r.get_json()["error"]["code"]) == (403, "forbidden_role")
    assert status_of(failed_job) == OutboxStatus.FAILED


def test_managers_residents_and_anonymous_callers_are_refused(client, failed_job):
    clerk = f.staff(f.org(f.community()), "manager")
    assert client.get(FAILED, headers=f.headers(clerk)).status_code == 403
    assert client.get(FAILED, headers=f.headers(f.resident())).status_code == 403
    assert client.get(FAILED).status_code == 401
    assert status_of(failed_job) == OutboxStatus.FAILED


def test_a_resident_token_of_an_operator_is_not_the_platform_role(client, operator):
    # The role belongs to the staff sign-in; a WeChat token of the same user id is a resident's.
    r = client.get(FAILED, headers=f.headers(operator, kind="resident"))
    assert r.status_code == 403


def test_a_revoked_operator_loses_the_role_before_the_token_expires(client, operator, failed_job):
    headers = f.headers(operator)
    assert client.get(FAILED, headers=headers).status_code == 200
    operator.is_platform_operator = False
    db.session.commit()
    r = client.get(FAILED, headers=headers)
    assert (r.status_code, r.get_json()["error"]["code"]) == (403, "forbidden_role")
    r = client.post(f"{FAILED}/{failed_job.id}/requeue", headers=headers)
    assert r.status_code == 403 and status_of(failed_job) == OutboxStatus.FAILED


def test_a_disabled_operator_is_refused(client, operator):
    headers = f.headers(operator)
    operator.is_active = False
    db.session.commit()
    assert client.get(FAILED, headers=headers).status_code == 403


def test_the_operator_token_says_so_and_org_tokens_do_not(client, operator):
    from flask_jwt_extended import decode_token

    r = client.post("/api/v1/auth/staff-login",
                    json={"username": operator.username, "password": "correct-horse-1"})
    assert r.status_code == 200
    claims = decode_token(r.get_json()["access_token"])
    assert claims["platform_operator"] is True and claims["orgs"] == []
    admin = f.staff(f.org(f.community(), "community_office"), "admin")
    r = client.post("/api/v1/auth/staff-login",
                    json={"username": admin.username, "password": "correct-horse-1"})
    assert "platform_operator" not in decode_token(r.get_json()["access_token"])


def test_a_forged_claim_without_the_flag_is_refused(client, app):
    # A token that claims the role for a login without the flag (e.g. signed before a
    # revocation, or by a bug) is checked against the database.
    from flask_jwt_extended import create_access_token

    admin = f.staff(f.org(f.community(), "community_office"), "admin")
    token = create_access_token(identity=str(admin.id), additional_claims={
        "kind": "staff", "orgs": [], "platform_operator": True})
    r = client.get(FAILED, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_the_failed_jobs_operations_document_the_platform_role(client):
    spec = client.get("/openapi.json").get_json()["paths"]
    for path, method in ((FAILED, "get"), (FAILED + "/{message_id}/requeue", "post")):
        assert spec[path][method]["description"].endswith("Roles: platform_operator.")


def test_an_operator_sees_and_edits_their_own_profile(client, operator):
    # /me is every login's own page; the operator's has no org and no community (it was 403).
    headers = f.headers(operator)
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200
    me = r.get_json()
    assert (me["id"], me["is_platform_operator"], me["memberships"], me["community_id"]) == (
        operator.id, True, [], None)
    r = client.patch("/api/v1/me", json={"display_name": "值班运维"}, headers=headers)
    assert (r.status_code, r.get_json()["display_name"]) == (200, "值班运维")
    db.session.expire_all()
    assert db.session.get(type(operator), operator.id).display_name == "值班运维"


def test_other_logins_are_not_flagged_as_operators(client):
    admin = f.staff(f.org(f.community(), "community_office"), "admin")
    for user in (admin, f.resident()):
        r = client.get("/api/v1/me", headers=f.headers(user))
        assert (r.status_code, r.get_json()["is_platform_operator"]) == (200, False)
