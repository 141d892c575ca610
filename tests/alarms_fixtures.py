"""Shared set-up of the safety-alarm tests: a home with a kit, its family, the office, gateways.

Events go through the signed endpoint (or `alarms.ingest`), so evaluation and notifications run
in-process after commit exactly as the worker would run them. Time comes from a `Clock` that
replaces `app.services.alarms.now`.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import (
    Alarm,
    AlarmDuty,
    AlarmEvent,
    ClaimStatus,
    Device,
    DeviceKind,
    EmergencyContact,
    Gateway,
    HouseholdMember,
    Membership,
    MicroGrid,
    Notification,
    Org,
    OrgType,
    Relation,
    Role,
    User,
    WatchedElder,
)
from app.services import alarms
from app.services.alarm_rules import ensure_alarm_rules
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f

# 2026-03-10 12:00 in Shanghai: a weekday noon, far from the night window.
NOON = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
SECRET_A = "secret-of-gateway-a-0123456789"  # noqa: S105 - test fixture
SECRET_B = "secret-of-gateway-b-9876543210"  # noqa: S105 - test fixture
KIT = {"sos_button": "SOS-1", "door_sensor": "DOOR-1", "gas_alarm": "GAS-1",
       "smoke_alarm": "SMOKE-1", "bed_belt": "BED-1"}
DAUGHTER_PHONE = "13812345678"
STAFF_PASSWORD = "correct-horse-1"  # noqa: S105 - test fixture
PASSWORD_HASH = generate_password_hash(STAFF_PASSWORD, method="pbkdf2:sha256:1000")


class Clock:
    """A clock the tests move by hand; installed as app.services.alarms.now."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> datetime:
        """Move the clock forward by timedelta(**delta)."""
        self.at += timedelta(**delta)
        return self.at


def install_clock(monkeypatch, at: datetime = NOON) -> Clock:
    """Freeze `alarms.now` at `at`."""
    clock = Clock(at)
    monkeypatch.setattr(alarms, "now", clock)
    return clock


def build_place(*, other: bool = True, at: datetime = NOON) -> SimpleNamespace:
    """An elder living alone with a full kit, family and office; optionally another community.

    The other community (created first) has its own office, elder and kit, so that a query that
    forgets the community would find the wrong rows. Rows are flushed and committed once; the
    kit was last heard from (and the door opened) `at`.
    """
    ensure_alarm_rules()
    others = _other_community(at) if other else {}
    comm = f.community(code="zpq", name="总浦桥社区")
    bld = f.building(comm, number="3")
    office = _org(comm, "community_office", "office")
    grid_worker = staff(office, "grid_worker")
    db.session.get(MicroGrid, bld.micro_grid_id).grid_worker_id = grid_worker.id
    home = f.household_of(bld, "1", "101")
    elder_user = resident(comm, home, "王秀英", birth_year=1942)
    daughter = resident(comm, home, "李敏", relation="child", phone=DAUGHTER_PHONE)
    son = resident(comm, None, "李伟", phone="13900001111")
    neighbour = resident(comm, f.household_of(bld, "1", "102"), "赵师傅")
    elder = make_elder(comm, home, "王秀英", user=elder_user, at=at, contacts=[
        ("李敏", DAUGHTER_PHONE, "女儿", daughter), ("李伟", "13900001111", "儿子", son),
        ("赵师傅", "13700002222", "邻居", None)])
    devices = make_kit(elder, KIT, at=at)
    on_duty, off_duty = staff(office, "staff"), staff(office, "staff")
    db.session.add(AlarmDuty(community_id=comm.id, user_id=on_duty.id, since=at))
    place = SimpleNamespace(
        comm=comm, bld=bld, office=office, home=home, elder=elder, devices=devices,
        elder_user=elder_user, daughter=daughter, son=son, neighbour=neighbour,
        grid_worker=grid_worker, on_duty=on_duty, off_duty=off_duty,
        manager=staff(office, "manager"), gateway=make_gateway(comm, "gw-a", SECRET_A),
        gateway_b=make_gateway(comm, "gw-b", SECRET_B), **others)
    db.session.commit()
    return place


def _other_community(at: datetime) -> dict:
    """Another community with its office, an elder, a kit and a gateway."""
    comm = f.community(code="elsewhere", name="别处社区")
    bld = f.building(comm, number="9")
    office = _org(comm, "community_office", "other-office")
    home = f.household_of(bld, "1", "101")
    elder = make_elder(comm, home, "陈阿婆", contacts=[], at=at)
    make_kit(elder, {"smoke_alarm": "OTHER-SMOKE"}, at=at)
    return {"other_comm": comm, "other_elder": elder,
            "other_clerk": staff(office, "manager"),
            "other_resident": resident(comm, f.household_of(bld, "1", "102"), "孙先生"),
            "other_gateway": make_gateway(comm, "gw-other", "secret-of-the-other-community")}


_seq = itertools.count(1)


def _org(comm, type_: str, code: str) -> Org:
    org = Org(community_id=comm.id, code=code, name=code, type=OrgType(type_))
    db.session.add(org)
    db.session.flush()
    return org


def staff(org: Org, role: str) -> User:
    """A staff login with one role in `org` (flushed, not committed)."""
    n = next(_seq)
    user = User(username=f"alarm-staff{n}", display_name=f"员工{n}", password_hash=PASSWORD_HASH,
                community_id=org.community_id)
    db.session.add(user)
    db.session.flush()
    db.session.add(Membership(user_id=user.id, org_id=org.id, role=Role(role)))
    return user


def resident(comm, household, name: str, *, relation: str = "owner", **kw) -> User:
    """A WeChat user, with an approved claim on `household` if given (flushed)."""
    n = next(_seq)
    user = User(wx_appid="wx-dev-appid", openid=f"alarm-openid-{n}", display_name=name,
                community_id=comm.id, **kw)
    db.session.add(user)
    db.session.flush()
    if household is not None:
        db.session.add(HouseholdMember(community_id=comm.id, household_id=household.id,
                                       user_id=user.id, relation=Relation(relation),
                                       status=ClaimStatus.APPROVED))
    return user


def make_elder(comm, home, name: str, *, user=None, contacts=(),
               at: datetime = NOON) -> WatchedElder:
    """A watched elder of `home`, at home for 30 days before `at`, with ordered contacts."""
    elder = WatchedElder(community_id=comm.id, household_id=home.id, name=name,
                         user_id=user.id if user else None, phone="13600003333",
                         birth_year=1942, at_home=True,
                         at_home_since=at - timedelta(days=30))
    db.session.add(elder)
    db.session.flush()
    for position, (c_name, phone, relation, account) in enumerate(contacts, start=1):
        db.session.add(EmergencyContact(elder_id=elder.id, position=position, name=c_name,
                                        phone=phone, relation=relation,
                                        user_id=account.id if account else None))
    db.session.flush()
    return elder


def make_kit(elder: WatchedElder, serials: dict[str, str], *,
             at: datetime = NOON) -> dict[str, Device]:
    """Devices of the kit, seen and (doors) opened `at`, registered a month before."""
    devices = {}
    for kind, serial in serials.items():
        devices[kind] = Device(
            community_id=elder.community_id, household_id=elder.household_id,
            elder_id=elder.id, kind=DeviceKind(kind), serial=serial,
            installed_on=(at - timedelta(days=30)).date(), is_active=True,
            last_seen_at=at, last_opened_at=at if kind == "door_sensor" else None,
            created_at=at - timedelta(days=30))
        db.session.add(devices[kind])
    db.session.flush()
    return devices


def make_gateway(comm, code: str, secret: str) -> Gateway:
    """An active gateway of the community with a known secret."""
    gateway = Gateway(community_id=comm.id, code=code, name=code, secret=secret,
                      is_active=True)
    db.session.add(gateway)
    db.session.flush()
    return gateway


def event(kind: str, type_: str, *, at: datetime | None = None, payload=None,
          serial: str | None = None, event_id: str | None = None) -> dict:
    """One device event as a gateway sends it."""
    return {"event_id": event_id or uuid.uuid4().hex, "serial": serial or KIT[kind],
            "kind": kind, "type": type_, "at": (at or alarms.now()).isoformat(),
            "payload": {} if payload is None else payload}


def vitals(in_bed: bool = True, heart_rate: int = 70, breath_rate: int = 16, **kw) -> dict:
    """A bed-belt vitals event."""
    return event("bed_belt", "vitals", payload={"in_bed": in_bed, "heart_rate": heart_rate,
                                                "breath_rate": breath_rate}, **kw)


def signed_headers(body: bytes, *, code: str = "gw-a", secret: str = SECRET_A,
                   timestamp: int | None = None) -> dict:
    """The headers a gateway sends with `body`."""
    ts = str(int(alarms.now().timestamp()) if timestamp is None else timestamp)
    return {"X-Linli-Gateway": code, "X-Linli-Timestamp": ts,
            "X-Linli-Signature": "sha256=" + alarms.sign(secret, ts, body),
            "Content-Type": "application/json"}


def post_events(client, events: list[dict], **signing):
    """POST a signed batch to the ingest endpoint."""
    body = json.dumps({"events": events}).encode()
    return client.post("/api/v1/iot/events", data=body, headers=signed_headers(body, **signing))


def ingest(place, *events: dict) -> dict:
    """Store events through the service as gateway A (evaluated in-process after commit)."""
    return alarms.ingest(gateway_id=place.gateway.id, events=list(events))


def alarms_of(place, kind: str | None = None) -> list[Alarm]:
    """The place's alarms (of one rule), oldest first, fresh from the database."""
    db.session.expire_all()
    stmt = select(Alarm).where(Alarm.community_id == place.comm.id)
    if kind:
        stmt = stmt.where(Alarm.kind == kind)
    return list(db.session.scalars(stmt.order_by(Alarm.id)))


def timeline(alarm_id: int) -> list[str]:
    """The actions on an alarm's timeline, in order."""
    db.session.expire_all()
    return list(db.session.scalars(select(AlarmEvent.action).where(
        AlarmEvent.alarm_id == alarm_id).order_by(AlarmEvent.created_at, AlarmEvent.id)))


def notices(user, kind: str | None = None) -> list[Notification]:
    """A user's in-app notifications, oldest first."""
    stmt = select(Notification).where(Notification.user_id == user.id)
    if kind:
        stmt = stmt.where(Notification.kind == kind)
    return list(db.session.scalars(stmt.order_by(Notification.id)))


def wechat_messages(user) -> list[dict]:
    """Subscribe messages the mock WeChat server received for a user."""
    return shared_mock_app().extensions["mock_wechat"].messages(touser=user.openid)


def count(model, *where) -> int:
    """Rows in a table (matching `where`)."""
    return db.session.scalar(select(func.count()).select_from(model).where(*where))
