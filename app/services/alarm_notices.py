"""Who hears about an alarm, and when: run from jobs only (never in a request).

- raised: the on-duty staff of the community office (everyone in the office but the grid
  workers when nobody is on duty) and the micro-grid's grid worker, in-app; the family's first
  emergency contact by WeChat subscribe message.
- escalated (not acknowledged in time): the grid worker again, the next family contact
  (subscribe message) and the community office's managers.
- resolved: the contacts told before get the outcome.

Every message has a dedupe key per alarm, stage and person, so a retried job sends nothing twice.
"""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import (
    Alarm,
    AlarmDuty,
    Household,
    Membership,
    Org,
    OrgType,
    Role,
    WatchedElder,
)
from app.services import alarms, notifications

OFFICE_STAFF_ROLES = (Role.STAFF, Role.MANAGER, Role.ADMIN)


def _brief(alarm_id: int) -> SimpleNamespace | None:
    """What the messages need, read once: sending commits, and committed rows expire."""
    alarm = db.session.scalar(select(Alarm).where(Alarm.id == alarm_id).options(
        selectinload(Alarm.elder).selectinload(WatchedElder.contacts),
        selectinload(Alarm.rule), selectinload(Alarm.household).selectinload(Household.building)))
    if alarm is None:
        return None
    contacts = list(alarm.elder.contacts) if alarm.elder is not None else []
    return SimpleNamespace(
        id=alarm.id, community_id=alarm.community_id, building_id=alarm.building_id,
        kind=alarm.kind, severity=str(alarm.severity), status=str(alarm.status),
        rule_name=alarm.rule.name, address=alarm.household.label, raised_at=alarm.raised_at,
        who=alarm.elder.name if alarm.elder is not None else alarm.household.label,
        contacts=[SimpleNamespace(user_id=c.user_id, position=c.position) for c in contacts],
        escalated=alarm.escalated, cause=str(alarm.cause) if alarm.cause else None)


def on_duty_ids(community_id: int) -> list[int]:
    """Staff on alarm duty in the community."""
    return list(db.session.scalars(select(AlarmDuty.user_id).where(
        AlarmDuty.community_id == community_id).order_by(AlarmDuty.user_id)))


def office_member_ids(community_id: int, roles=OFFICE_STAFF_ROLES) -> list[int]:
    """Members of the community office(s) holding one of `roles`."""
    return list(db.session.scalars(select(Membership.user_id).join(
        Org, Org.id == Membership.org_id).where(
        Org.community_id == community_id, Org.type == OrgType.COMMUNITY_OFFICE,
        Membership.role.in_(roles)).distinct().order_by(Membership.user_id)))


def _staff_message(alarm: SimpleNamespace, stage: str) -> tuple[str, str]:
    """Title and body of an in-app message to staff."""
    severity = alarms.SEVERITY_LABELS[alarm.severity]
    at = alarms.local_time(alarm.community_id, alarm.raised_at).strftime("%H:%M")
    title = f"【{severity}】{alarm.address} {alarm.rule_name}"
    if stage == "escalated":
        title = f"【升级】{alarm.address} {alarm.rule_name}未接警"
    return title, f"{alarm.who}（{alarm.address}）{at} {alarm.rule_name}，请立即处置。"


def _notify_staff(alarm: SimpleNamespace, user_ids: list[int], stage: str) -> list[int]:
    """In-app messages to staff; the ids that were new."""
    title, body = _staff_message(alarm, stage)
    data = {"alarm_id": alarm.id, "severity": alarm.severity, "kind": alarm.kind}
    return [uid for uid in dict.fromkeys(user_ids) if uid and notifications.notify_user(
        user_id=uid, kind=f"alarm_{stage}", title=title, body=body, data=data,
        dedupe_key=f"alarm:{alarm.id}:{stage}:u{uid}")]


def _notify_family(alarm: SimpleNamespace, contact: SimpleNamespace | None, stage: str,
                   phrase: str, detail: str) -> int | None:
    """A subscribe message to a family contact with a Linli account; their user id if new."""
    if contact is None or contact.user_id is None:
        return None
    when = alarms.local_time(alarm.community_id, alarm.raised_at)
    title = f"{alarm.who}家{alarm.rule_name}"
    sent = notifications.notify_user(
        user_id=contact.user_id, kind=f"alarm_{stage}", title=title,
        body=f"{alarm.address}：{detail}", dedupe_key=f"alarm:{alarm.id}:{stage}:u"
        f"{contact.user_id}", data={"alarm_id": alarm.id, "status": alarm.status},
        wx_data={"thing1": title[:20], "phrase2": phrase[:5],
                 "time3": when.strftime("%Y-%m-%d %H:%M"), "thing4": detail[:20]},
        page=f"pages/alarms/detail?id={alarm.id}")
    return contact.user_id if sent else None


def _record_notice(alarm: SimpleNamespace, stage: str, staff: list[int], family: list[int | None],
                   note: str = "") -> None:
    """One `notify` timeline row saying who was told (only when someone new was)."""
    family = [uid for uid in family if uid]
    if staff or family:
        alarms.record_event(db.session.get(Alarm, alarm.id), "notify", note=note,
                            data={"stage": stage, "staff": staff, "family": family})
    db.session.commit()


def notify_raised(alarm_id: int) -> int:
    """Tell the on-duty staff, the grid worker and the first family contact."""
    alarm = _brief(alarm_id)
    if alarm is None:
        return 0
    duty = on_duty_ids(alarm.community_id) or office_member_ids(alarm.community_id)
    staff = _notify_staff(alarm, [*duty, alarms.grid_worker_id(alarm.building_id)], "raised")
    contacts = alarm.contacts
    first = contacts[0] if contacts else None
    family = _notify_family(alarm, first, "raised", "已报警", "社区已收到报警，正在处置")
    note = "" if first is None or first.user_id else "首位紧急联系人未绑定小程序，请电话通知"
    _record_notice(alarm, "raised", staff, [family], note)
    return len(staff) + bool(family)


def notify_escalated(alarm_id: int) -> int:
    """Tell the grid worker, the next family contact and the office managers."""
    alarm = _brief(alarm_id)
    if alarm is None:
        return 0
    managers = office_member_ids(alarm.community_id, (Role.MANAGER,))
    staff = _notify_staff(alarm, [alarms.grid_worker_id(alarm.building_id), *managers],
                          "escalated")
    contacts = alarm.contacts
    following = contacts[1] if len(contacts) > 1 else None
    family = _notify_family(alarm, following, "escalated", "待响应", "社区正在联系，请尽快联系老人")
    _record_notice(alarm, "escalated", staff, [family])
    return len(staff) + bool(family)


def notify_resolved(alarm_id: int) -> int:
    """Tell the family contacts who heard of the alarm how it ended."""
    alarm = _brief(alarm_id)
    if alarm is None or alarm.cause is None:
        return 0
    contacts = alarm.contacts[: 2 if alarm.escalated else 1]
    detail = f"原因：{alarms.CAUSE_LABELS[alarm.cause]}"
    family = [_notify_family(alarm, c, "resolved", "已处置", detail) for c in contacts]
    _record_notice(alarm, "resolved", [], family)
    return sum(1 for uid in family if uid)
