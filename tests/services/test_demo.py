"""The 总浦桥 demo community: what `seed_demo` creates; running it again changes nothing."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import (
    Building,
    ClaimStatus,
    Community,
    Grid,
    Household,
    HouseholdMember,
    Membership,
    MicroGrid,
    Org,
    Relation,
    Role,
    User,
)
from app.services import demo

DEMO_PASSWORD = "demo-pass-2024"
ORG_LOGINS = {"property": "zpq-property", "committee": "zpq-committee", "office": "zpq-office",
              "canteen": "zpq-canteen", "care": "zpq-care"}


@pytest.fixture(autouse=True)
def _no_demo_password(monkeypatch):
    """Tests decide themselves whether LINLI_DEMO_PASSWORD is set."""
    monkeypatch.delenv(demo.PASSWORD_ENV, raising=False)


@pytest.fixture
def seeded(monkeypatch):
    """The demo community, seeded with one known password (one hash: quick)."""
    monkeypatch.setenv(demo.PASSWORD_ENV, DEMO_PASSWORD)
    return demo.seed_demo()


def row_counts() -> dict[str, int]:
    """The number of rows in every table."""
    return {t.name: db.session.scalar(select(func.count()).select_from(t))
            for t in db.metadata.sorted_tables}


def demo_residents(app) -> list[User]:
    """The seeded WeChat residents."""
    return list(db.session.scalars(select(User).where(
        User.wx_appid == app.config["WX_APPID"], User.openid.like("demo-openid-%"))))


def test_community_is_modelled_on_zongpuqiao(seeded):
    community = db.session.scalar(select(Community).where(Community.code == "zpq"))
    assert community.name == "总浦桥社区"
    assert community.timezone == "Asia/Shanghai"
    assert community.center_lat == pytest.approx(31.1915, abs=0.01)
    assert community.center_lng == pytest.approx(121.4450, abs=0.01)
    assert 500 <= community.radius_m <= 1000
    assert seeded["community"] == {"id": community.id, "code": "zpq", "name": "总浦桥社区"}


def test_14_grids_split_into_27_micro_grids_each_with_its_own_grid_worker(seeded):
    assert db.session.scalar(select(func.count()).select_from(Grid)) == 14
    micro_grids = list(db.session.scalars(select(MicroGrid)))
    assert len(micro_grids) == 27
    assert {mg.grid_id for mg in micro_grids} == set(db.session.scalars(select(Grid.id)))
    worker_ids = [mg.grid_worker_id for mg in micro_grids]
    assert None not in worker_ids and len(set(worker_ids)) == 27
    workers = db.session.execute(
        select(User.username).join(Membership, Membership.user_id == User.id)
        .join(Org, Org.id == Membership.org_id)
        .where(User.id.in_(worker_ids), Membership.role == Role.GRID_WORKER,
               Org.code == "zpq-office")).scalars().all()
    assert sorted(workers) == [f"grid-{n:02d}" for n in range(1, 28)]
    assert seeded["counts"]["grids"] == 14 and seeded["counts"]["micro_grids"] == 27


def test_about_40_buildings_in_micro_grids_within_400_m_of_the_centre(seeded):
    buildings = list(db.session.scalars(select(Building)))
    assert sorted(int(b.number) for b in buildings) == list(range(1, 41))
    assert {b.micro_grid_id for b in buildings} == set(db.session.scalars(select(MicroGrid.id)))
    for b in buildings:
        north = (b.lat - 31.1915) * 111_320
        east = (b.lng - 121.4450) * 111_320 * math.cos(math.radians(31.1915))
        assert math.hypot(north, east) <= 420
        assert 1 <= b.units <= 4


def test_every_unit_has_rooms_101_to_602(seeded):
    rooms = {f"{floor}0{r}" for floor in range(1, 7) for r in (1, 2)}
    per_building = Counter()
    for household in db.session.scalars(select(Household)):
        assert household.room in rooms
        per_building[household.building_id] += 1
    for b in db.session.scalars(select(Building)):
        assert per_building[b.id] == b.units * len(rooms)
    assert seeded["counts"]["households"] == sum(per_building.values())


def test_about_200_residents_and_28_percent_of_them_aged_60_plus(app, seeded):
    residents = demo_residents(app)
    assert 180 <= len(residents) <= 220
    year = datetime.now(ZoneInfo("Asia/Shanghai")).year
    elders = [u for u in residents if year - u.birth_year >= 60]
    assert 0.25 <= len(elders) / len(residents) <= 0.31
    assert 0 < sum(u.phone is not None for u in residents) < len(residents)
    assert all("\u4e00" <= u.display_name[0] <= "\u9fff" for u in residents)
    assert seeded["counts"]["residents"] == len(residents)
    assert seeded["counts"]["residents_60_plus"] == len(elders)


def test_residents_have_approved_claims_some_households_several_and_a_few_pending(app, seeded):
    claims = list(db.session.scalars(select(HouseholdMember)))
    assert Counter(c.user_id for c in claims) == Counter(u.id for u in demo_residents(app))
    pending = [c for c in claims if c.status == ClaimStatus.PENDING]
    assert 1 <= len(pending) <= 10
    office = db.session.scalar(select(User).where(User.username == "office"))
    approved = [c for c in claims if c.status == ClaimStatus.APPROVED]
    assert all(c.decided_by_id == office.id and c.decided_at for c in approved)
    by_household = Counter(c.household_id for c in claims)
    assert any(n >= 2 for n in by_household.values())
    relations = {c.relation for c in claims if by_household[c.household_id] >= 2}
    assert {Relation.CHILD, Relation.GRANDCHILD} <= relations


def test_five_orgs_each_with_a_staff_login_that_can_sign_in(seeded):
    orgs = {o.code: str(o.type) for o in db.session.scalars(select(Org))}
    assert orgs == {"zpq-property": "property_company", "zpq-committee": "owners_committee",
                    "zpq-office": "community_office", "zpq-canteen": "canteen",
                    "zpq-care": "service_provider"}
    for username, org_code in ORG_LOGINS.items():
        user = db.session.scalar(select(User).where(User.username == username))
        roles = set(db.session.scalars(select(Membership.role).join(Org).where(
            Membership.user_id == user.id, Org.code == org_code)))
        assert roles, username
        assert check_password_hash(user.password_hash, DEMO_PASSWORD)
    office_roles = {r for r in db.session.scalars(select(Membership.role).join(User).where(
        User.username == "office"))}
    assert office_roles == {Role.MANAGER, Role.ADMIN}


def test_a_demo_login_works_through_the_api(client, seeded):
    r = client.post("/api/v1/auth/staff-login",
                    json={"username": "property", "password": DEMO_PASSWORD})
    assert r.status_code == 200


def test_generated_passwords_are_reported_and_match_the_stored_hashes(app):
    summary = demo.seed_demo()
    logins = {x["username"]: x for x in summary["logins"]}
    # other modules' seed steps may add logins of their own (a courier, a gateway key)
    assert set(ORG_LOGINS) | {f"grid-{n:02d}" for n in range(1, 28)} <= set(logins)
    org_passwords = [logins[u]["password"] for u in ORG_LOGINS]
    assert len(set(org_passwords)) == len(ORG_LOGINS) and min(map(len, org_passwords)) >= 12
    for username in [*ORG_LOGINS, "grid-01"]:
        user = db.session.scalar(select(User).where(User.username == username))
        assert check_password_hash(user.password_hash, logins[username]["password"])


def test_running_twice_changes_nothing_and_keeps_passwords(app):
    first = demo.seed_demo()
    before = row_counts()
    hashes = dict(db.session.execute(select(User.username, User.password_hash).where(
        User.username.is_not(None))).all())
    second = demo.seed_demo()
    assert row_counts() == before
    assert second["counts"] == first["counts"]
    assert not any(second["created"].values())
    assert {x["password"] for x in second["logins"]} == {demo.UNCHANGED}
    db.session.expire_all()
    assert dict(db.session.execute(select(User.username, User.password_hash).where(
        User.username.is_not(None))).all()) == hashes


def test_the_plan_is_deterministic():
    assert demo.build_plan() == demo.build_plan()
    assert demo.build_plan(1) != demo.build_plan(2)


def test_extra_seed_steps_run_with_the_community_and_report(monkeypatch, seeded):
    monkeypatch.setattr(demo, "SEED_STEPS", [])
    seen = []

    def seed_menus(community):
        seen.append(community.code)
        return {"menus": 3, "logins": [{"username": "courier", "org": "zpq-canteen",
                                        "roles": ["courier"], "password": "x"}]}

    assert demo.seed_step(seed_menus) is seed_menus
    demo.seed_step(seed_menus)
    summary = demo.seed_demo()
    assert seen == ["zpq"]
    assert summary["counts"]["menus"] == 3
    assert summary["logins"][-1]["username"] == "courier"
