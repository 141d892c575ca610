"""The safety-kit registry: watched elders, emergency contacts, devices, gateways, duty roster.

Community-office staff manage it; family members of the household see their elders' kits and
edit the emergency contacts. Also the demo seed step (a few elders living alone with kits and a
gateway whose key the seed prints once).
"""

from __future__ import annotations

import re
import secrets
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.extensions import db
from app.models import (
    AlarmDuty,
    Building,
    ClaimStatus,
    Community,
    Device,
    DeviceKind,
    EmergencyContact,
    Gateway,
    Household,
    HouseholdMember,
    User,
    WatchedElder,
)
from app.pagination import keyset_page
from app.services import alarms
from app.services.alarm_rules import ensure_alarm_rules
from app.services.demo import OPENID_PREFIX, UNCHANGED, seed_step

PHONE_RE = re.compile(r"^\+?[0-9][0-9-]{5,19}$")
MAX_CONTACTS = 5
OFFLINE_AFTER = timedelta(hours=2)
RANGE_FIELDS = ("heart_rate", "breath_rate")
ELDER_FIELDS = ("name", "phone", "birth_year", "lives_alone", "at_home", "note",
                "heart_rate_min", "heart_rate_max", "breath_rate_min", "breath_rate_max")


def _bad(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}})


def _elder_options():
    return (selectinload(WatchedElder.contacts), selectinload(WatchedElder.devices),
            selectinload(WatchedElder.household).selectinload(Household.building))


def load_elder(elder_id: int) -> WatchedElder | None:
    """An elder with contacts, devices and address."""
    return db.session.scalar(select(WatchedElder).where(WatchedElder.id == elder_id)
                             .options(*_elder_options()))


# --- staff: elders and devices --------------------------------------------------------------


def staff_elder(elder_id: int, scope: alarms.StaffScope) -> WatchedElder:
    """An elder of a community in scope; 404 otherwise."""
    elder = load_elder(elder_id)
    if elder is None or not scope.covers(elder.community_id):
        raise NotFound("找不到该老人", code="elder_not_found")
    return elder


def list_elders(*, scope: alarms.StaffScope, cursor: str | None,
                limit: int) -> tuple[list[WatchedElder], str | None]:
    """The watched elders of the communities in scope, by id."""
    stmt = select(WatchedElder).where(WatchedElder.community_id.in_(scope.community_ids))
    return keyset_page(stmt.options(*_elder_options()), columns=[WatchedElder.id],
                       cursor=cursor, limit=limit, descending=False)


def create_elder(*, scope: alarms.StaffScope, household_id: int, **fields) -> WatchedElder:
    """Put an elder of a household in scope under watch."""
    household = db.session.get(Household, household_id)
    if household is None or not scope.covers(household.community_id):
        raise _bad("household_id", "household_not_found", "房屋不存在")
    _check_user(fields.get("user_id"), household.community_id)
    elder = WatchedElder(community_id=household.community_id, household_id=household.id,
                         at_home_since=alarms.now(), **fields)
    _check_ranges(elder)
    db.session.add(elder)
    db.session.commit()
    return load_elder(elder.id)


def update_elder(elder: WatchedElder, changes: dict) -> WatchedElder:
    """Change an elder's details; going home (again) restarts the door-idle clock."""
    for name, value in changes.items():
        if name not in ELDER_FIELDS:
            continue
        if name == "at_home" and value and not elder.at_home:
            elder.at_home_since = alarms.now()
        setattr(elder, name, value)
    _check_ranges(elder)
    db.session.commit()
    return load_elder(elder.id)


def _check_ranges(elder: WatchedElder) -> None:
    """Each vital range must have its minimum below its maximum."""
    for name in RANGE_FIELDS:
        low, high = getattr(elder, f"{name}_min"), getattr(elder, f"{name}_max")
        if low is not None and high is not None and low >= high:
            raise _bad(f"{name}_min", "invalid_range", "下限须小于上限")


def _check_user(user_id: int | None, community_id: int) -> None:
    """An elder's own account must exist (and not belong to another community)."""
    if user_id is None:
        return
    user = db.session.get(User, user_id)
    if user is None or (user.community_id not in (None, community_id)):
        raise _bad("user_id", "user_not_found", "用户不存在")


def register_device(*, scope: alarms.StaffScope, serial: str, kind: str,
                    elder_id: int, installed_on: date | None = None) -> Device:
    """Register a kit device for a watched elder's home; a serial is registered once."""
    elder = staff_elder(elder_id, scope)
    serial = serial.strip()
    if db.session.scalar(select(Device.id).where(Device.serial == serial)) is not None:
        raise Conflict("该序列号已登记", code="serial_taken",
                       details={"fields": {"serial": ["该序列号已登记"]}})
    device = Device(community_id=elder.community_id, household_id=elder.household_id,
                    elder_id=elder.id, kind=DeviceKind(kind), serial=serial,
                    installed_on=installed_on or alarms.local_time(
                        elder.community_id, alarms.now()).date(), is_active=True)
    db.session.add(device)
    db.session.commit()
    return load_device(device.id)


def load_device(device_id: int) -> Device | None:
    """A device with its elder."""
    return db.session.scalar(select(Device).where(Device.id == device_id)
                             .options(selectinload(Device.elder)))


def staff_device(device_id: int, scope: alarms.StaffScope) -> Device:
    """A device of a community in scope; 404 otherwise."""
    device = load_device(device_id)
    if device is None or not scope.covers(device.community_id):
        raise NotFound("找不到该设备", code="device_not_found")
    return device


def update_device(device: Device, *, scope: alarms.StaffScope, elder_id: int | None = None,
                  is_active: bool | None = None) -> Device:
    """Move a device to another elder of the same community, or take it out of service."""
    if elder_id is not None:
        elder = staff_elder(elder_id, scope)
        if elder.community_id != device.community_id:
            raise _bad("elder_id", "elder_not_found", "找不到该老人")
        device.elder_id, device.household_id = elder.id, elder.household_id
    if is_active is not None:
        device.is_active = is_active
    db.session.commit()
    return load_device(device.id)


def list_devices(*, scope: alarms.StaffScope, elder_id: int | None = None,
                 household_id: int | None = None, kind: str | None = None,
                 offline: bool | None = None, cursor: str | None = None,
                 limit: int = 20) -> tuple[list[Device], str | None]:
    """Devices in scope, filtered; `offline` means silent for over 2 hours."""
    stmt = select(Device).where(Device.community_id.in_(scope.community_ids)).options(
        selectinload(Device.elder))
    if elder_id is not None:
        stmt = stmt.where(Device.elder_id == elder_id)
    if household_id is not None:
        stmt = stmt.where(Device.household_id == household_id)
    if kind:
        stmt = stmt.where(Device.kind == DeviceKind(kind))
    if offline is not None:
        cutoff = alarms.now() - OFFLINE_AFTER
        silent = func.coalesce(Device.last_seen_at, Device.created_at) <= cutoff
        stmt = stmt.where(silent if offline else ~silent)
    return keyset_page(stmt, columns=[Device.id], cursor=cursor, limit=limit, descending=False)


# --- contacts --------------------------------------------------------------------------------


def replace_contacts(elder: WatchedElder, contacts: list[dict], *,
                     allowed_user_ids: set[int] | None) -> WatchedElder:
    """Replace the elder's ordered contacts; `allowed_user_ids` None lets staff link anyone."""
    if len(contacts) > MAX_CONTACTS:
        raise _bad("contacts", "too_many_contacts", f"最多 {MAX_CONTACTS} 位紧急联系人")
    for i, contact in enumerate(contacts):
        _check_contact(i, contact, allowed_user_ids, elder.community_id)
    for old in list(elder.contacts):
        db.session.delete(old)
    db.session.flush()
    for position, contact in enumerate(contacts, start=1):
        db.session.add(EmergencyContact(
            elder_id=elder.id, position=position, name=contact["name"].strip(),
            phone=contact["phone"].strip(), relation=(contact.get("relation") or "").strip(),
            user_id=contact.get("user_id")))
    db.session.commit()
    db.session.expire(elder)
    return load_elder(elder.id)


def _check_contact(i: int, contact: dict, allowed_user_ids: set[int] | None,
                   community_id: int) -> None:
    """A name, a phone number, and (optionally) an account the editor may link."""
    if not (contact.get("name") or "").strip():
        raise _bad(f"contacts.{i}.name", "name_required", "请填写联系人姓名")
    if not PHONE_RE.match((contact.get("phone") or "").strip()):
        raise _bad(f"contacts.{i}.phone", "invalid_phone", "电话号码格式不正确")
    user_id = contact.get("user_id")
    if user_id is None:
        return
    if allowed_user_ids is not None and user_id not in allowed_user_ids:
        raise _bad(f"contacts.{i}.user_id", "user_not_linkable",
                   "只能关联本户成员或您本人的账号")
    user = db.session.get(User, user_id)
    if user is None or user.community_id not in (None, community_id):
        raise _bad(f"contacts.{i}.user_id", "user_not_found", "用户不存在")


# --- family ----------------------------------------------------------------------------------


def my_elders(user_id: int) -> list[WatchedElder]:
    """The elders the caller follows, with their kits and contacts."""
    return list(db.session.scalars(select(WatchedElder).where(
        WatchedElder.id.in_(alarms.family_elders(user_id))).options(*_elder_options())
        .order_by(WatchedElder.id)))


def family_elder(elder_id: int, user_id: int, *, edit: bool = False) -> WatchedElder:
    """An elder the caller follows (404 otherwise); editing needs household membership (403)."""
    visible = db.session.scalar(select(WatchedElder.id).where(
        WatchedElder.id == elder_id, WatchedElder.id.in_(alarms.family_elders(user_id))))
    if visible is None:
        raise NotFound("找不到该老人", code="elder_not_found")
    elder = load_elder(elder_id)
    if edit and user_id not in household_member_ids(elder.household_id):
        raise Forbidden("只有本户成员可以修改", code="not_household_member")
    return elder


def household_member_ids(household_id: int) -> set[int]:
    """Approved members of a household."""
    return set(db.session.scalars(select(HouseholdMember.user_id).where(
        HouseholdMember.household_id == household_id,
        HouseholdMember.status == ClaimStatus.APPROVED)))


def family_replace_contacts(*, elder_id: int, user_id: int, contacts: list[dict]):
    """A household member edits the contacts (linking only members or themselves)."""
    elder = family_elder(elder_id, user_id, edit=True)
    allowed = household_member_ids(elder.household_id) | {user_id}
    return replace_contacts(elder, contacts, allowed_user_ids=allowed)


def family_set_at_home(*, elder_id: int, user_id: int, at_home: bool) -> WatchedElder:
    """A household member says the elder is away (or back home)."""
    return update_elder(family_elder(elder_id, user_id, edit=True), {"at_home": at_home})


# --- gateways and duty -----------------------------------------------------------------------


def create_gateway(*, community_id: int, name: str, code: str | None = None,
                   ) -> tuple[Gateway, str]:
    """A gateway with a fresh secret; the secret is returned this once only."""
    code = (code or f"gw-{secrets.token_hex(4)}").strip()
    if db.session.scalar(select(Gateway.id).where(Gateway.code == code)) is not None:
        raise Conflict("网关编号已存在", code="gateway_code_taken",
                       details={"fields": {"code": ["网关编号已存在"]}})
    secret = secrets.token_urlsafe(32)
    gateway = Gateway(community_id=community_id, code=code, name=name, secret=secret,
                      is_active=True, created_at=alarms.now())
    db.session.add(gateway)
    db.session.commit()
    return gateway, secret


def rotate_gateway_secret(code: str) -> tuple[Gateway, str]:
    """Replace a gateway's secret (the old one stops working at once); returns the new one."""
    gateway = db.session.scalar(select(Gateway).where(Gateway.code == code))
    if gateway is None:
        raise NotFound("找不到该网关", code="gateway_not_found")
    gateway.secret = secrets.token_urlsafe(32)
    db.session.commit()
    return gateway, gateway.secret


def community_id_by_code(code: str) -> int | None:
    """The id of the community with this code."""
    return db.session.scalar(select(Community.id).where(Community.code == code))


def list_gateways(scope: alarms.StaffScope) -> list[Gateway]:
    """The gateways of the communities in scope (never with their secrets)."""
    return list(db.session.scalars(select(Gateway).where(
        Gateway.community_id.in_(scope.community_ids)).order_by(Gateway.id)))


def set_on_duty(*, scope: alarms.StaffScope, community_id: int | None,
                on_duty: bool) -> list[dict]:
    """Go on or off alarm duty in a community in scope; returns the roster."""
    community_id = community_id or min(scope.community_ids, default=None)
    if community_id is None or not scope.covers(community_id):
        raise _bad("community_id", "community_not_in_scope", "不在您的社区范围内")
    row = db.session.scalar(select(AlarmDuty).where(AlarmDuty.community_id == community_id,
                                                    AlarmDuty.user_id == scope.user_id))
    if on_duty and row is None:
        db.session.add(AlarmDuty(community_id=community_id, user_id=scope.user_id,
                                 since=alarms.now()))
    elif not on_duty and row is not None:
        db.session.delete(row)
    db.session.commit()
    return duty_roster(scope)


def duty_roster(scope: alarms.StaffScope) -> list[dict]:
    """Who is on alarm duty in the communities in scope."""
    rows = db.session.execute(select(AlarmDuty, User.display_name).join(
        User, User.id == AlarmDuty.user_id).where(
        AlarmDuty.community_id.in_(scope.community_ids)).order_by(AlarmDuty.since)).all()
    return [{"user_id": duty.user_id, "display_name": name, "community_id": duty.community_id,
             "since": duty.since} for duty, name in rows]


# --- demo ------------------------------------------------------------------------------------

DEMO_GATEWAY = "zpq-gw-01"
DEMO_ELDERS = 4
KIT = (("sos_button", "SOS"), ("door_sensor", "DOOR"), ("gas_alarm", "GAS"),
       ("smoke_alarm", "SMOKE"), ("bed_belt", "BED"))


@seed_step
def seed_alarms(community: Community) -> dict:
    """A few demo elders living alone with a full kit and two contacts, a gateway, the rules."""
    ensure_alarm_rules()
    elders = _demo_elders(community)
    helpers = _demo_helpers(community, len(elders))
    stamp = alarms.now()
    for i, (user, household_id) in enumerate(elders):
        elder = db.session.scalar(select(WatchedElder).where(
            WatchedElder.household_id == household_id, WatchedElder.user_id == user.id))
        if elder is None:
            elder = _demo_elder(community, user, household_id, helpers[i] if helpers else None)
        _demo_kit(elder, stamp)
    logins = _demo_gateway(community)
    _demo_duty(community)
    db.session.flush()
    return {"alarm_elders": _count(WatchedElder, community),
            "alarm_devices": _count(Device, community),
            "alarm_gateways": _count(Gateway, community), "logins": logins}


def _count(model, community: Community) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(
        model.community_id == community.id))


def _demo_elders(community: Community) -> list[tuple[User, int]]:
    """Demo residents aged 65+ who are the only approved member of their household."""
    year = datetime.now(ZoneInfo(community.timezone)).year
    alone = select(HouseholdMember.household_id).where(
        HouseholdMember.community_id == community.id,
        HouseholdMember.status == ClaimStatus.APPROVED).group_by(
        HouseholdMember.household_id).having(func.count() == 1)
    rows = db.session.execute(select(User, HouseholdMember.household_id).join(
        HouseholdMember, HouseholdMember.user_id == User.id).where(
        HouseholdMember.household_id.in_(alone), User.birth_year <= year - 65,
        User.openid.startswith(OPENID_PREFIX, autoescape=True))
        .order_by(HouseholdMember.household_id).limit(DEMO_ELDERS)).all()
    return [(user, household_id) for user, household_id in rows]


def _demo_helpers(community: Community, n: int) -> list[User]:
    """Younger demo residents with a phone, who stand in as the elders' children."""
    year = datetime.now(ZoneInfo(community.timezone)).year
    return list(db.session.scalars(select(User).where(
        User.community_id == community.id, User.birth_year > year - 60,
        User.phone.is_not(None), User.openid.startswith(OPENID_PREFIX, autoescape=True))
        .order_by(User.id).limit(n)))


def _demo_elder(community: Community, user: User, household_id: int,
                helper: User | None) -> WatchedElder:
    """The elder row with two emergency contacts (the first with a Linli account)."""
    elder = WatchedElder(community_id=community.id, household_id=household_id, user_id=user.id,
                         name=user.display_name, phone=user.phone, birth_year=user.birth_year,
                         lives_alone=True, at_home=True, at_home_since=alarms.now())
    db.session.add(elder)
    db.session.flush()
    if helper is not None:
        db.session.add(EmergencyContact(elder_id=elder.id, position=1, name=helper.display_name,
                                        phone=helper.phone, relation="子女", user_id=helper.id))
    db.session.add(EmergencyContact(elder_id=elder.id, position=2,
                                    name=f"{user.display_name[0]}先生",
                                    phone=f"139{household_id:08d}", relation="亲属"))
    return elder


def _demo_kit(elder: WatchedElder, stamp: datetime) -> None:
    """The five devices of a kit, registered once (serials from the household id)."""
    for kind, tag in KIT:
        serial = f"ZPQ-{tag}-{elder.household_id:05d}"
        if db.session.scalar(select(Device.id).where(Device.serial == serial)) is None:
            db.session.add(Device(community_id=elder.community_id,
                                  household_id=elder.household_id, elder_id=elder.id,
                                  kind=DeviceKind(kind), serial=serial,
                                  installed_on=stamp.date(), is_active=True, last_seen_at=stamp,
                                  last_opened_at=stamp if kind == "door_sensor" else None))


def _demo_gateway(community: Community) -> list[dict]:
    """The demo gateway; its secret is printed only by the run that creates it."""
    if db.session.scalar(select(Gateway.id).where(Gateway.code == DEMO_GATEWAY)) is not None:
        secret = UNCHANGED
    else:
        secret = secrets.token_urlsafe(32)
        db.session.add(Gateway(community_id=community.id, code=DEMO_GATEWAY, name="演示网关",
                               secret=secret, is_active=True, created_at=alarms.now()))
    return [{"username": DEMO_GATEWAY, "org": "iot-gateway", "roles": ["hmac-key"],
             "password": secret}]


def _demo_duty(community: Community) -> None:
    """The office director's demo login is on alarm duty."""
    office = db.session.scalar(select(User).where(User.username == "office"))
    if office is not None and db.session.scalar(select(AlarmDuty.id).where(
            AlarmDuty.community_id == community.id, AlarmDuty.user_id == office.id)) is None:
        db.session.add(AlarmDuty(community_id=community.id, user_id=office.id,
                                 since=alarms.now()))


def building_label(building: Building | None) -> str | None:
    """3号楼."""
    return f"{building.number}号楼" if building is not None else None
