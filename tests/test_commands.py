"""The account commands: `flask seed-demo`, `flask create-staff` and the platform operator's."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import Community, Membership, Org, User
from app.services.demo import PASSWORD_ENV
from tests import factories as f

GOOD = {"--username": "li", "--password": "long-enough-1", "--org": "zpq-property",
        "--role": "manager"}


def create_staff(runner, **overrides):
    """Invoke `flask create-staff` with the good arguments, some overridden."""
    options = GOOD | {f"--{k}": v for k, v in overrides.items()}
    return runner.invoke(args=["create-staff", *[x for kv in options.items() for x in kv]])


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def property_org(app):
    return f.org(f.community(code="zpq"), "property_company", code="zpq-property",
                 name="总浦桥物业")


def test_seed_demo_prints_the_counts_and_the_demo_logins(runner, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "demo-pass-2024")
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    assert "总浦桥社区 (zpq)" in result.output
    assert "DEMO-ONLY" in result.output
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["grids", "14"] for line in lines)
    assert any(line.split()[:2] == ["micro_grids", "27"] for line in lines)
    for username in ("property", "committee", "office", "canteen", "care", "grid-01..grid-27"):
        assert any(line.split()[:1] == [username] and line.endswith("demo-pass-2024")
                   for line in lines), username


def test_seed_demo_twice_reports_passwords_unchanged(runner):
    first = runner.invoke(args=["seed-demo"])
    users = count(User)
    second = runner.invoke(args=["seed-demo"])
    assert first.exit_code == second.exit_code == 0, second.output
    assert count(User) == users
    assert "(unchanged)" in second.output and "(unchanged)" not in first.output
    assert "new)" not in second.output


def test_seed_demo_refuses_to_run_in_production(app, runner, monkeypatch):
    monkeypatch.setitem(app.config, "LINLI_ENV", "production")
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code != 0
    assert "production" in result.output
    assert count(Community) == 0


def test_create_staff_creates_a_login_that_can_sign_in(runner, client, property_org):
    result = create_staff(runner, name="李经理")
    assert result.exit_code == 0, result.output
    assert "'li'" in result.output and "manager" in result.output
    user = db.session.scalar(select(User).where(User.username == "li"))
    assert user.display_name == "李经理" and user.community_id == property_org.community_id
    assert check_password_hash(user.password_hash, "long-enough-1")
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    assert (membership.org_id, str(membership.role)) == (property_org.id, "manager")
    r = client.post("/api/v1/auth/staff-login",
                    json={"username": "li", "password": "long-enough-1"})
    assert r.status_code == 200


def test_create_staff_adds_a_role_to_an_existing_login(runner, property_org):
    f.org(db.session.get(Community, property_org.community_id), "owners_committee",
          code="zpq-committee")
    assert create_staff(runner).exit_code == 0
    assert create_staff(runner, org="zpq-committee", role="staff").exit_code == 0
    assert count(User) == 1
    assert set(db.session.scalars(select(Org.code).join(Membership))) == {
        "zpq-property", "zpq-committee"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"org": "zpq-nowhere"}, "org_not_found"),
    ({"role": "boss"}, "'boss' is not one of"),
    ({"password": "short"}, "weak_password"),
])
def test_create_staff_rejects_bad_input_and_writes_nothing(runner, property_org, overrides,
                                                           message):
    result = create_staff(runner, **overrides)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert count(User) == 0 and count(Membership) == 0


def test_create_platform_operator_makes_a_login_that_reads_the_failed_jobs(runner, client):
    result = runner.invoke(args=["create-platform-operator", "--username", "ops",
                                 "--password", "long-enough-1", "--name", "平台运维"])
    assert result.exit_code == 0, result.output
    assert "'ops'" in result.output and "platform operator" in result.output
    user = db.session.scalar(select(User).where(User.username == "ops"))
    assert user.is_platform_operator and user.community_id is None
    assert user.display_name == "平台运维" and count(Membership) == 0
    r = client.post("/api/v1/auth/staff-login",
                    json={"username": "ops", "password": "long-enough-1"})
    token = r.get_json()["access_token"]
    jobs = client.get("/api/v1/admin/jobs/failed", headers={"Authorization": f"Bearer {token}"})
    assert jobs.status_code == 200

    result = runner.invoke(args=["revoke-platform-operator", "--username", "ops"])
    assert result.exit_code == 0, result.output
    jobs = client.get("/api/v1/admin/jobs/failed", headers={"Authorization": f"Bearer {token}"})
    assert jobs.status_code == 403  # at once, although the token still says so


def test_create_platform_operator_flags_an_existing_login_and_keeps_its_roles(runner,
                                                                             property_org):
    assert create_staff(runner).exit_code == 0
    result = runner.invoke(args=["create-platform-operator", "--username", "li",
                                 "--password", "long-enough-1"])
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.username == "li"))
    assert user.is_platform_operator and count(User) == 1 and count(Membership) == 1
    assert check_password_hash(user.password_hash, "long-enough-1")


def password_of(username: str) -> str:
    db.session.expire_all()
    return db.session.scalar(select(User.password_hash).where(User.username == username))


def test_a_role_for_an_existing_login_keeps_its_password(runner, client, property_org):
    # Adding a role to 李经理's login must not sign her out of it with whatever was typed: the
    # command wants her current password, or --reset-password to replace it on purpose.
    f.org(db.session.get(Community, property_org.community_id), "owners_committee",
          code="zpq-committee")
    assert create_staff(runner).exit_code == 0
    before = password_of("li")

    result = create_staff(runner, org="zpq-committee", role="staff", password="other-pass-2")
    assert result.exit_code != 0 and "password_mismatch" in result.output
    assert "Traceback" not in result.output
    assert password_of("li") == before and count(Membership) == 1

    result = create_staff(runner, org="zpq-committee", role="staff")  # her current password
    assert result.exit_code == 0, result.output
    assert password_of("li") == before and count(Membership) == 2
    r = client.post("/api/v1/auth/staff-login",
                    json={"username": "li", "password": "long-enough-1"})
    assert r.status_code == 200

    result = runner.invoke(args=["create-staff", *[x for kv in (GOOD | {
        "--password": "other-pass-2"}).items() for x in kv], "--reset-password"])
    assert result.exit_code == 0, result.output
    assert check_password_hash(password_of("li"), "other-pass-2")
    assert count(User) == 1 and count(Membership) == 2


def test_flagging_an_existing_login_as_operator_wants_its_password(runner, property_org):
    assert create_staff(runner).exit_code == 0
    before = password_of("li")
    operator = ["create-platform-operator", "--username", "li", "--password", "long-enough-2"]
    result = runner.invoke(args=operator)
    assert result.exit_code != 0 and "password_mismatch" in result.output
    user = db.session.scalar(select(User).where(User.username == "li"))
    assert not user.is_platform_operator and password_of("li") == before

    result = runner.invoke(args=[*operator, "--reset-password"])
    assert result.exit_code == 0, result.output
    assert check_password_hash(password_of("li"), "long-enough-2")
    assert db.session.scalar(select(User.is_platform_operator).where(User.username == "li"))


@pytest.mark.parametrize(("args", "message"), [
    (["create-platform-operator", "--username", "ops", "--password", "short"], "weak_password"),
    (["revoke-platform-operator", "--username", "nobody"], "user_not_found"),
])
def test_platform_operator_commands_reject_bad_input_and_write_nothing(runner, app, args,
                                                                       message):
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output
    assert count(User) == 0
