"""Demo data: a community modelled on 总浦桥社区 with grids, buildings, residents and staff.

`seed_demo()` first draws a complete plan from a seeded `random.Random` (so every run plans the
same rows), then creates only the rows still missing, looked up by their unique codes, and
commits once. Running it twice changes nothing.

Other modules add their own demo rows by appending a step to `SEED_STEPS` when they are
imported (a service module is imported by its blueprint, so the step is present whenever the app
is)::

    from app.services.demo import seed_step

    @seed_step
    def seed_menus(community: Community) -> dict | None:
        ...

A step receives the demo `Community`, adds its rows to `db.session` without committing (the one
commit comes at the end), must itself be idempotent, and may return a dict of extra counts to
report; a `"logins"` key in it (a list like `summary["logins"]`) is added to the logins table.
"""

from __future__ import annotations

import math
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

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
    OrgType,
    Relation,
    Role,
    User,
    utcnow,
)

SeedStep = Callable[[Community], dict | None]
SEED_STEPS: list[SeedStep] = []

DEMO_SEED = 20240601
PASSWORD_ENV = "LINLI_DEMO_PASSWORD"  # noqa: S105 - the variable name, not a password
UNCHANGED = "(unchanged)"
OPENID_PREFIX = "demo-openid-"

COMMUNITY_CODE = "zpq"
COMMUNITY_NAME = "总浦桥社区"
TIMEZONE = "Asia/Shanghai"
CENTER_LAT, CENTER_LNG = 31.1915, 121.4450
RADIUS_M = 800
BUILDING_SCATTER_M = 400
METRES_PER_DEGREE = 111_320

GRID_COUNT, MICRO_GRID_COUNT, BUILDING_COUNT = 14, 27, 40
FLOORS, ROOMS_PER_FLOOR = 6, 2
RESIDENT_COUNT, ELDER_SHARE, PENDING_CLAIMS, PHONE_SHARE = 200, 0.28, 6, 0.65
ELDER_AGE = 60

OFFICE_ORG = "zpq-office"
ORGS = (
    ("zpq-property", OrgType.PROPERTY_COMPANY, "总浦桥物业"),
    ("zpq-committee", OrgType.OWNERS_COMMITTEE, "业委会"),
    (OFFICE_ORG, OrgType.COMMUNITY_OFFICE, "总浦桥社区居委会"),
    ("zpq-canteen", OrgType.CANTEEN, "云享车轮食堂"),
    ("zpq-care", OrgType.SERVICE_PROVIDER, "助老服务中心"),
)
# (username, display name, org code, roles): one login per org.
STAFF_LOGINS = (
    ("property", "物业经理", "zpq-property", (Role.MANAGER,)),
    ("committee", "业委会委员", "zpq-committee", (Role.STAFF,)),
    ("office", "居委会主任", OFFICE_ORG, (Role.MANAGER, Role.ADMIN)),
    ("canteen", "食堂经理", "zpq-canteen", (Role.MANAGER,)),
    ("care", "助老服务中心主任", "zpq-care", (Role.MANAGER,)),
)

SURNAMES = "王李张刘陈杨黄赵周吴徐孙朱马胡郭林何高沈陆顾钱施姚蒋金范潘袁汪俞曹严唐龚丁"
GIVEN_NAMES = {  # (generation, female?) -> given names common for that generation
    ("elder", True): ("秀英", "桂英", "凤英", "玉兰", "淑珍", "美娣", "翠英", "桂芳", "惠英",
                      "兰英", "杏娣", "金妹", "月琴", "雅芬"),
    ("elder", False): ("建国", "国庆", "德明", "志强", "根宝", "福根", "宝康", "国华", "振华",
                       "永福", "金发", "荣生", "家骏", "鸿兴"),
    ("adult", True): ("敏", "静", "丽华", "海燕", "颖", "红梅", "丽娟", "春燕", "雪芳", "慧",
                      "晓雯", "佳琪", "琳", "蓓蕾"),
    ("adult", False): ("伟", "磊", "军", "勇", "晓明", "建华", "卫东", "志刚", "俊杰", "国栋",
                       "浩", "斌", "海峰", "立新"),
    ("young", True): ("欣怡", "诗雨", "佳怡", "雨桐", "嘉懿", "若汐", "子涵", "思琪", "梦洁"),
    ("young", False): ("梓轩", "浩然", "宇航", "一鸣", "思源", "天宇", "子墨", "俊熙", "晨曦"),
}


@dataclass(frozen=True)
class PersonPlan:
    """A demo resident: who they are and their claim on a home."""

    n: int
    name: str
    age: int
    phone: str | None
    relation: Relation
    pending: bool = False


@dataclass(frozen=True)
class BuildingPlan:
    """A demo building and the micro-grid it belongs to."""

    number: str
    units: int
    lat: float
    lng: float
    micro_grid: str


@dataclass(frozen=True)
class HomePlan:
    """A household (building, unit, room) and the residents who claim it."""

    key: tuple[str, str, str]
    people: tuple[PersonPlan, ...]


@dataclass(frozen=True)
class MicroGridPlan:
    """A micro-grid, its grid and its grid worker."""

    code: str
    name: str
    grid: str
    worker: str
    worker_name: str


@dataclass(frozen=True)
class DemoPlan:
    """Everything the demo community should contain, drawn from one seeded RNG."""

    micro_grids: tuple[MicroGridPlan, ...]
    buildings: tuple[BuildingPlan, ...]
    homes: tuple[HomePlan, ...]


@dataclass
class SeedRun:
    """The state of one seed_demo call: passwords to report and rows created."""

    fixed_password: str | None
    created: dict[str, int] = field(default_factory=dict)
    logins: list[dict] = field(default_factory=list)
    extra_counts: dict = field(default_factory=dict)
    _hashes: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _grid_password: str | None = field(default=None, init=False, repr=False)

    def new_password(self) -> str:
        """The demo password for a login created now."""
        return self.fixed_password or secrets.token_urlsafe(12)

    def grid_password(self) -> str:
        """One password shared by the grid workers created in this run."""
        if self._grid_password is None:
            self._grid_password = self.new_password()
        return self._grid_password

    def hash(self, password: str) -> str:
        """The password hash, computed once per password (hashing is deliberately slow)."""
        if password not in self._hashes:
            self._hashes[password] = generate_password_hash(password)
        return self._hashes[password]

    def count(self, name: str, n: int) -> None:
        """Record that `n` rows of kind `name` were created."""
        self.created[name] = self.created.get(name, 0) + n


def seed_step(fn: SeedStep) -> SeedStep:
    """Register `fn` as an extra demo seed step (once, however often its module is imported)."""
    if fn not in SEED_STEPS:
        SEED_STEPS.append(fn)
    return fn


def seed_demo(*, seed: int = DEMO_SEED) -> dict:
    """Create whatever is missing of the demo community and return a summary."""
    plan = build_plan(seed)
    run = SeedRun(fixed_password=os.environ.get(PASSWORD_ENV) or None)
    community = ensure_community(run)
    orgs = ensure_orgs(run, community)
    staff = ensure_staff_logins(run, community, orgs)
    workers = ensure_grid_workers(run, community, orgs[OFFICE_ORG], plan)
    micro_grids = ensure_grids(run, community, plan, workers)
    households = ensure_households(run, community, plan, micro_grids)
    ensure_residents(run, community, plan, households, decided_by=staff["office"])
    for step in SEED_STEPS:
        _merge_step_result(run, step(community))
    db.session.commit()
    return _summary(run, community)


def _merge_step_result(run: SeedRun, result: dict | None) -> None:
    """Fold an extra step's counts and logins into the run."""
    result = dict(result or {})
    run.logins.extend(result.pop("logins", []))
    run.extra_counts.update(result)


# --- the plan -------------------------------------------------------------------------------


def build_plan(seed: int = DEMO_SEED) -> DemoPlan:
    """Draw the whole demo community from `random.Random(seed)` (no database access)."""
    rng = random.Random(seed)
    micro_grids = _plan_micro_grids(rng)
    buildings = _plan_buildings(rng, micro_grids)
    homes = _plan_homes(rng, buildings)
    return DemoPlan(micro_grids=micro_grids, buildings=buildings, homes=homes)


def _plan_micro_grids(rng: random.Random) -> tuple[MicroGridPlan, ...]:
    """27 micro-grids spread over 14 grids (one or two each), each with a grid worker."""
    plans, per_grid = [], {}
    for m in range(MICRO_GRID_COUNT):
        g = m * GRID_COUNT // MICRO_GRID_COUNT + 1
        per_grid[g] = per_grid.get(g, 0) + 1
        plans.append(MicroGridPlan(
            code=f"mg{m + 1:02d}", name=f"第{g}网格第{per_grid[g]}微网格", grid=f"g{g:02d}",
            worker=f"grid-{m + 1:02d}", worker_name=chinese_name(rng, "adult"),
        ))
    return tuple(plans)


def _plan_buildings(rng: random.Random, micro_grids) -> tuple[BuildingPlan, ...]:
    """40 buildings within ~400 m, numbered clockwise from north so micro-grids are sectors."""
    points = [_scatter(rng) for _ in range(BUILDING_COUNT)]
    points.sort(key=lambda p: math.atan2(p[1], p[0]) % math.tau)
    plans = []
    for i, (north_m, east_m) in enumerate(points):
        lat = CENTER_LAT + north_m / METRES_PER_DEGREE
        lng = CENTER_LNG + east_m / (METRES_PER_DEGREE * math.cos(math.radians(CENTER_LAT)))
        plans.append(BuildingPlan(
            number=str(i + 1), units=rng.choice((1, 2, 2, 3, 3, 4)), lat=round(lat, 6),
            lng=round(lng, 6), micro_grid=micro_grids[i * MICRO_GRID_COUNT // BUILDING_COUNT].code,
        ))
    return tuple(plans)


def _scatter(rng: random.Random) -> tuple[float, float]:
    """A point (metres north, metres east) uniformly within the scatter radius."""
    r = BUILDING_SCATTER_M * math.sqrt(rng.random())
    angle = rng.uniform(0, math.tau)
    return r * math.cos(angle), r * math.sin(angle)


def household_keys(building: BuildingPlan) -> list[tuple[str, str, str]]:
    """Every (building, unit, room) of a building: units 1.., rooms 101..602."""
    return [(building.number, str(unit), f"{floor}{room:02d}")
            for unit in range(1, building.units + 1)
            for floor in range(1, FLOORS + 1)
            for room in range(1, ROOMS_PER_FLOOR + 1)]


# A member is (display name, age, relation, female?); a kind draws one household's members.
Member = tuple[str, int, Relation, bool]


def _plan_homes(rng: random.Random, buildings) -> tuple[HomePlan, ...]:
    """~200 residents in households, ~28% aged 60+, a few claims still pending."""
    groups, people = [], 0
    elders = 0
    while people < RESIDENT_COUNT:
        kind = _elder_kind(rng) if elders <= ELDER_SHARE * people else _younger_kind(rng)
        group = kind(rng)[: RESIDENT_COUNT - people]
        groups.append(group)
        people += len(group)
        elders += sum(age >= ELDER_AGE for _, age, _, _ in group)
    keys = rng.sample([k for b in buildings for k in household_keys(b)], len(groups))
    pending = set(rng.sample(range(1, RESIDENT_COUNT + 1), PENDING_CLAIMS))
    homes, n = [], 0
    for key, group in zip(keys, groups, strict=True):
        members = []
        for name, age, relation, _female in group:
            n += 1
            members.append(PersonPlan(n=n, name=name, age=age, phone=_phone(rng),
                                      relation=relation, pending=n in pending))
        homes.append(HomePlan(key=key, people=tuple(members)))
    return tuple(homes)


def _phone(rng: random.Random) -> str | None:
    """A mobile number for about two residents in three."""
    if rng.random() >= PHONE_SHARE:
        return None
    return f"1{rng.choice('35789')}{rng.randrange(10**9):09d}"


def _elder_kind(rng: random.Random) -> Callable[[random.Random], list[Member]]:
    """A household with someone aged 60+: alone, a couple, or with a child or grandchild."""
    return rng.choice((_elder_alone, _elder_couple, _elder_with_child, _elder_with_grandchild,
                       _elder_with_child))


def _younger_kind(rng: random.Random) -> Callable[[random.Random], list[Member]]:
    """A household of people under 60: single, couple, family or tenant."""
    return rng.choice((_single_owner, _couple, _family, _tenant))


def _person(rng: random.Random, generation: str, age: int, relation: Relation,
            surname: str | None = None, female: bool | None = None) -> Member:
    """One member of the given generation and age."""
    female = rng.random() < 0.5 if female is None else female
    return chinese_name(rng, generation, surname, female), age, relation, female


def _spouse(rng: random.Random, owner: Member, generation: str, age: int) -> Member:
    """The owner's husband or wife."""
    return _person(rng, generation, age, Relation.SPOUSE, female=not owner[3])


def _elder_alone(rng: random.Random) -> list[Member]:
    """An elder living alone (独居老人)."""
    return [_person(rng, "elder", rng.randint(65, 92), Relation.OWNER)]


def _elder_couple(rng: random.Random) -> list[Member]:
    """An elderly couple."""
    owner = _person(rng, "elder", rng.randint(60, 88), Relation.OWNER)
    return [owner, _spouse(rng, owner, "elder", max(ELDER_AGE, owner[1] + rng.randint(-4, 3)))]


def _elder_with_child(rng: random.Random) -> list[Member]:
    """An elder and a grown-up child who helps them."""
    elder = _person(rng, "elder", rng.randint(62, 92), Relation.OWNER)
    child_age = min(ELDER_AGE - 2, elder[1] - rng.randint(24, 32))
    return [elder, _person(rng, "adult", child_age, Relation.CHILD, _surname(elder[0]))]


def _elder_with_grandchild(rng: random.Random) -> list[Member]:
    """An elder and a grandchild who looks after them."""
    elder = _person(rng, "elder", rng.randint(68, 92), Relation.OWNER)
    age = min(elder[1] - 46, rng.randint(18, 30))
    return [elder, _person(rng, "young", age, Relation.GRANDCHILD, _surname(elder[0]))]


def _single_owner(rng: random.Random) -> list[Member]:
    """A single owner under 60."""
    return [_person(rng, "adult", rng.randint(28, 59), Relation.OWNER)]


def _couple(rng: random.Random) -> list[Member]:
    """A couple under 60."""
    owner = _person(rng, "adult", rng.randint(26, 57), Relation.OWNER)
    return [owner, _spouse(rng, owner, "adult", owner[1] + rng.randint(-3, 2))]


def _family(rng: random.Random) -> list[Member]:
    """Parents in their 40s or 50s with a grown-up child."""
    owner = _person(rng, "adult", rng.randint(45, 58), Relation.OWNER)
    return [owner, _spouse(rng, owner, "adult", owner[1] + rng.randint(-3, 1)),
            _person(rng, "young", owner[1] - rng.randint(24, 27), Relation.CHILD,
                    _surname(owner[0]))]


def _tenant(rng: random.Random) -> list[Member]:
    """A young tenant."""
    return [_person(rng, "young", rng.randint(22, 35), Relation.TENANT)]


def _surname(display_name: str) -> str:
    """The surname in a display name (also in nicknames like 老王, 王阿姨)."""
    return display_name[1] if display_name.startswith("老") else display_name[0]


def chinese_name(rng: random.Random, generation: str, surname: str | None = None,
                 female: bool | None = None) -> str:
    """A realistic display name; some elders go by 老王 / 王阿姨 as people call them."""
    female = rng.random() < 0.5 if female is None else female
    surname = surname or rng.choice(SURNAMES)
    if generation == "elder" and rng.random() < 0.2:
        return f"{surname}阿姨" if female else f"老{surname}"
    return surname + rng.choice(GIVEN_NAMES[(generation, female)])


# --- applying the plan ----------------------------------------------------------------------


def ensure_community(run: SeedRun) -> Community:
    """The 总浦桥 community row."""
    community = db.session.scalar(select(Community).where(Community.code == COMMUNITY_CODE))
    if community is None:
        community = Community(code=COMMUNITY_CODE, name=COMMUNITY_NAME, timezone=TIMEZONE,
                              center_lat=CENTER_LAT, center_lng=CENTER_LNG, radius_m=RADIUS_M)
        db.session.add(community)
        db.session.flush()
        run.count("communities", 1)
    return community


def ensure_orgs(run: SeedRun, community: Community) -> dict[str, Org]:
    """The five demo orgs, by code."""
    codes = [code for code, _, _ in ORGS]
    orgs = {o.code: o for o in db.session.scalars(select(Org).where(Org.code.in_(codes)))}
    missing = [Org(community_id=community.id, code=code, name=name, type=type_)
               for code, type_, name in ORGS if code not in orgs]
    db.session.add_all(missing)
    db.session.flush()
    run.count("orgs", len(missing))
    return orgs | {o.code: o for o in missing}


def ensure_staff_logins(run: SeedRun, community: Community,
                        orgs: dict[str, Org]) -> dict[str, User]:
    """One login per org, each with its own password (kept as is if the login exists)."""
    specs = [(username, name, orgs[code], roles, run.new_password)
             for username, name, code, roles in STAFF_LOGINS]
    return _ensure_logins(run, community, specs)


def ensure_grid_workers(run: SeedRun, community: Community, office: Org,
                        plan: DemoPlan) -> dict[str, User]:
    """A grid worker login (in the community office) for every micro-grid."""
    specs = [(mg.worker, mg.worker_name, office, (Role.GRID_WORKER,), run.grid_password)
             for mg in plan.micro_grids]
    return _ensure_logins(run, community, specs)


def _ensure_logins(run: SeedRun, community: Community, specs) -> dict[str, User]:
    """Create the missing logins and memberships of `specs`; report passwords of new ones."""
    usernames = [spec[0] for spec in specs]
    users = {u.username: u for u in db.session.scalars(
        select(User).where(User.username.in_(usernames)))}
    passwords = {}
    for username, name, _org, _roles, make_password in specs:
        if username not in users:
            passwords[username] = make_password()
            users[username] = User(username=username, display_name=name,
                                   community_id=community.id,
                                   password_hash=run.hash(passwords[username]))
            db.session.add(users[username])
    db.session.flush()
    run.count("staff_logins", len(passwords))
    _ensure_memberships(run, [(users[u], org, role) for u, _, org, roles, _ in specs
                              for role in roles])
    run.logins.extend({"username": u, "org": org.code, "roles": [str(r) for r in roles],
                       "password": passwords.get(u, UNCHANGED)}
                      for u, _, org, roles, _ in specs)
    return users


def _ensure_memberships(run: SeedRun, wanted: list[tuple[User, Org, Role]]) -> None:
    """Add the (user, org, role) memberships that do not exist yet."""
    user_ids = {user.id for user, _, _ in wanted}
    have = {tuple(row) for row in db.session.execute(
        select(Membership.user_id, Membership.org_id, Membership.role)
        .where(Membership.user_id.in_(user_ids)))}
    missing = [Membership(user_id=user.id, org_id=org.id, role=role)
               for user, org, role in wanted if (user.id, org.id, role) not in have]
    db.session.add_all(missing)
    run.count("memberships", len(missing))


def ensure_grids(run: SeedRun, community: Community, plan: DemoPlan,
                 workers: dict[str, User]) -> dict[str, MicroGrid]:
    """The 14 grids and 27 micro-grids (a new micro-grid gets its planned grid worker)."""
    grids = _existing_by_code(Grid, community)
    new_grids = [Grid(community_id=community.id, code=code, name=f"第{int(code[1:])}网格")
                 for code in dict.fromkeys(mg.grid for mg in plan.micro_grids)
                 if code not in grids]
    db.session.add_all(new_grids)
    db.session.flush()
    grids |= {g.code: g for g in new_grids}
    micro_grids = _existing_by_code(MicroGrid, community)
    new_micro = [MicroGrid(community_id=community.id, grid_id=grids[mg.grid].id, code=mg.code,
                           name=mg.name, grid_worker_id=workers[mg.worker].id)
                 for mg in plan.micro_grids if mg.code not in micro_grids]
    db.session.add_all(new_micro)
    db.session.flush()
    run.count("grids", len(new_grids))
    run.count("micro_grids", len(new_micro))
    return micro_grids | {mg.code: mg for mg in new_micro}


def _existing_by_code(model, community: Community) -> dict:
    """Rows of `model` in the community, keyed by their code."""
    rows = db.session.scalars(select(model).where(model.community_id == community.id))
    return {row.code: row for row in rows}


def ensure_households(run: SeedRun, community: Community, plan: DemoPlan,
                      micro_grids: dict[str, MicroGrid]) -> dict[tuple[str, str, str], int]:
    """The buildings and all their rooms; returns household ids by (building, unit, room)."""
    buildings = {b.number: b for b in db.session.scalars(
        select(Building).where(Building.community_id == community.id))}
    new_buildings = [Building(community_id=community.id, number=b.number, name=f"{b.number}号楼",
                              units=b.units, lat=b.lat, lng=b.lng,
                              micro_grid_id=micro_grids[b.micro_grid].id)
                     for b in plan.buildings if b.number not in buildings]
    db.session.add_all(new_buildings)
    db.session.flush()
    buildings |= {b.number: b for b in new_buildings}
    numbers = {b.id: number for number, b in buildings.items()}
    existing = {(numbers[bid], unit, room): hid for hid, bid, unit, room in db.session.execute(
        select(Household.id, Household.building_id, Household.unit, Household.room)
        .where(Household.community_id == community.id))}
    new_households = [Household(community_id=community.id, building_id=buildings[key[0]].id,
                                unit=key[1], room=key[2])
                      for b in plan.buildings for key in household_keys(b) if key not in existing]
    db.session.add_all(new_households)
    db.session.flush()
    run.count("buildings", len(new_buildings))
    run.count("households", len(new_households))
    return existing | {(numbers[h.building_id], h.unit, h.room): h.id for h in new_households}


def ensure_residents(run: SeedRun, community: Community, plan: DemoPlan,
                     households: dict[tuple[str, str, str], int], decided_by: User) -> None:
    """The WeChat residents and their household claims (approved, a few pending)."""
    appid = current_app.config["WX_APPID"]
    people = [(home, person) for home in plan.homes for person in home.people]
    users = _existing_residents(appid)
    year = datetime.now(ZoneInfo(TIMEZONE)).year
    new_users = [User(wx_appid=appid, openid=f"{OPENID_PREFIX}{p.n}", display_name=p.name,
                      phone=p.phone, birth_year=year - p.age,
                      community_id=None if p.pending else community.id)
                 for _, p in people if f"{OPENID_PREFIX}{p.n}" not in users]
    db.session.add_all(new_users)
    db.session.flush()
    users |= {u.openid: u.id for u in new_users}
    run.count("residents", len(new_users))
    claims = [(households[home.key], users[f"{OPENID_PREFIX}{p.n}"], p) for home, p in people]
    _ensure_claims(run, community, claims, decided_by)


def _existing_residents(appid: str) -> dict[str, int]:
    """Ids of the demo residents already present, by openid."""
    rows = db.session.execute(select(User.openid, User.id).where(
        User.wx_appid == appid, User.openid.startswith(OPENID_PREFIX, autoescape=True)))
    return {openid: user_id for openid, user_id in rows}


def _ensure_claims(run: SeedRun, community: Community, claims, decided_by: User) -> None:
    """Add the missing household claims; approved ones as decided by the community office."""
    user_ids = {user_id for _, user_id, _ in claims}
    have = {tuple(row) for row in db.session.execute(
        select(HouseholdMember.household_id, HouseholdMember.user_id)
        .where(HouseholdMember.user_id.in_(user_ids)))}
    now = utcnow()
    missing = [HouseholdMember(
        community_id=community.id, household_id=hid, user_id=uid, relation=p.relation,
        status=ClaimStatus.PENDING if p.pending else ClaimStatus.APPROVED,
        decided_by_id=None if p.pending else decided_by.id,
        decided_at=None if p.pending else now,
    ) for hid, uid, p in claims if (hid, uid) not in have]
    db.session.add_all(missing)
    run.count("household_claims", len(missing))


# --- the summary ----------------------------------------------------------------------------


def _summary(run: SeedRun, community: Community) -> dict:
    """Row counts of the demo community, what this run created, and the demo logins."""
    return {
        "community": {"id": community.id, "code": community.code, "name": community.name},
        "counts": demo_counts(community) | run.extra_counts,
        "created": run.created,
        "logins": run.logins,
    }


def demo_counts(community: Community) -> dict[str, int]:
    """How many rows of each kind the demo community has."""
    in_community = {
        "grids": Grid, "micro_grids": MicroGrid, "buildings": Building, "households": Household,
        "orgs": Org,
    }
    counts = {name: _count(model, model.community_id == community.id)
              for name, model in in_community.items()}
    year = datetime.now(ZoneInfo(community.timezone)).year
    demo_user = (User.wx_appid == current_app.config["WX_APPID"],
                 User.openid.startswith(OPENID_PREFIX, autoescape=True))
    counts["residents"] = _count(User, *demo_user)
    counts["residents_60_plus"] = _count(User, *demo_user, User.birth_year <= year - ELDER_AGE)
    counts["claims_approved"] = _claims(community, ClaimStatus.APPROVED)
    counts["claims_pending"] = _claims(community, ClaimStatus.PENDING)
    counts["staff_logins"] = _count(User, User.community_id == community.id,
                                    User.username.is_not(None))
    return counts


def _count(model, *where) -> int:
    """SELECT count(*) FROM model WHERE ..."""
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _claims(community: Community, status: ClaimStatus) -> int:
    """Household claims of the community in `status`."""
    return _count(HouseholdMember, HouseholdMember.community_id == community.id,
                  HouseholdMember.status == status)

