"""Safety alarms (安全守护): signed ingest, evaluation by rules, the alarm lifecycle, lists, stats.

Gateways post batches of device events; the request only authenticates, checks and stores them
(idempotent by the gateway's event_id) in one commit. The stored events are their own outbox:
`processed_at IS NULL` is the work list. After the commit the request queues one evaluation job
unless one is already waiting (a Redis flag), and the 30-second `alarm_watch` job evaluates
whatever is left (Redis was down, a job was lost) — the relay. So a burst of single-event
requests costs one commit each, and one job evaluates hundreds of events per transaction.

Evaluation applies each event to its device's state and to the rules of `alarm_rules` (see
app.services.alarm_rules): a matching rule raises an alarm, or attaches the event to the alarm
still open for the same device and rule. `alarm_watch` also checks the rules that watch for
something NOT happening (door idle, device silent, out of bed at night) and escalates alarms not
acknowledged in time. Notifications go through the outbox.

Every time comes from `now()`, the one clock tests freeze.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError
from sqlalchemy import case, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.errors import InvalidTransition, NotFound, Unauthorized, ValidationFailed
from app.extensions import URGENT_QUEUE, db, redis_store
from app.inserts import insert_or_skip
from app.models import (
    Alarm,
    AlarmCause,
    AlarmDuty,
    AlarmEvent,
    AlarmRule,
    AlarmSeverity,
    AlarmStatus,
    Building,
    ClaimStatus,
    Community,
    Device,
    DeviceEvent,
    EmergencyContact,
    Gateway,
    Household,
    HouseholdMember,
    MicroGrid,
    WatchedElder,
)
from app.pagination import keyset_page
from app.services import alarm_rules, outbox

log = logging.getLogger(__name__)

AS = AlarmStatus
ALARM_ALLOWED: dict[AlarmStatus, dict[str, AlarmStatus]] = {
    AS.RAISED: {"acknowledge": AS.ACKNOWLEDGED},
    AS.ACKNOWLEDGED: {"arrive": AS.ON_SITE, "resolve": AS.RESOLVED},
    AS.ON_SITE: {"resolve": AS.RESOLVED},
    AS.RESOLVED: {},
}
STAFF_ACTIONS = ("acknowledge", "arrive", "resolve")
SEVERITY_RANK = {AlarmSeverity.CRITICAL: 0, AlarmSeverity.WARNING: 1, AlarmSeverity.WELFARE: 2}
SEVERITY_LABELS = {"critical": "紧急", "warning": "预警", "welfare": "关怀"}
STATUS_LABELS = {"raised": "待接警", "acknowledged": "已接警", "on_site": "已到场",
                 "resolved": "已处置"}
CAUSE_LABELS = {"false_alarm": "误报", "cooking": "烹饪油烟", "fall": "跌倒", "medical": "身体不适",
                "fire": "火情", "other": "其他"}
EVENT_LABELS = {"raise": "触发报警", "attach": "再次触发", "notify": "已通知",
                "acknowledge": "已接警", "arrive": "已到场", "resolve": "已处置",
                "escalate": "超时升级"}
SIGNATURE_STALE_AFTER = timedelta(minutes=5)
FUTURE_TOLERANCE = timedelta(minutes=1)
MAX_EVENT_AGE = timedelta(hours=24)
MAX_BATCH = 500
RESPONSE_PROMISE = timedelta(minutes=10)
SIGNATURE_PREFIX = "sha256="
EVALUATION_FLAG = "linli:alarms:evaluation-queued"
EVALUATION_JOB = "workers.alarms.run_evaluation"
EVALUATION_CHUNK = 500
EVALUATION_BUDGET_SECONDS = 20.0
_NO_SECRET = "no-such-gateway"  # noqa: S105 - signs nothing; keeps the failure path uniform


def now() -> datetime:
    """The current UTC time: the one clock of this module (tests freeze it)."""
    return datetime.now(UTC)


# --- signed ingest ---------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a gateway sends: over `<X-Linli-Timestamp>.<raw body>`."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def authenticate_gateway(*, code: str | None, timestamp: str | None, signature: str | None,
                         body: bytes) -> Gateway:
    """The active gateway whose secret signed this body within 5 minutes; 401 otherwise."""
    if not code or not timestamp or not signature:
        raise Unauthorized("缺少网关签名", code="signature_missing")
    gateway = db.session.scalar(select(Gateway).where(Gateway.code == code,
                                                      Gateway.is_active.is_(True)))
    expected = sign(gateway.secret if gateway else _NO_SECRET, timestamp, body)
    given = signature.strip().removeprefix(SIGNATURE_PREFIX).lower()
    if gateway is None or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Unauthorized("网关签名无效", code="signature_invalid")
    try:
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise Unauthorized("时间戳无效", code="signature_stale") from exc
    if abs(now() - signed_at) > SIGNATURE_STALE_AFTER:
        raise Unauthorized("签名已过期（超过 5 分钟）", code="signature_stale")
    return gateway


def ingest(*, gateway_id: int, events: list) -> dict:
    """Store a batch (each event accepted, duplicate or rejected) and queue its evaluation."""
    gateway = db.session.get(Gateway, gateway_id)
    stamp = now()
    serials = {e.get("serial") for e in events if isinstance(e, dict)}
    devices = _devices_by_serial(gateway.community_id, {s for s in serials if isinstance(s, str)})
    results, rows, seen = [], [], set()
    for raw in events:
        row, result = _check_event(raw, devices, stamp)
        if row is not None and row["event_id"] in seen:
            result = {"event_id": row["event_id"], "status": "duplicate"}
        elif row is not None:
            seen.add(row["event_id"])
            rows.append(row | {"gateway_id": gateway.id, "received_at": stamp})
        results.append(result)
    stored = _insert_new(rows)
    for result in results:
        if result["status"] == "accepted" and result["event_id"] not in stored:
            result["status"] = "duplicate"
    db.session.commit()
    if stored:
        request_evaluation()
    return {"received": len(events), "results": results,
            **{k: sum(r["status"] == k for r in results)
               for k in ("accepted", "duplicate", "rejected")}}


def _devices_by_serial(community_id: int, serials: set[str]) -> dict[str, Device]:
    """The community's devices with these serials (one query)."""
    if not serials:
        return {}
    return {d.serial: d for d in db.session.scalars(select(Device).where(
        Device.community_id == community_id, Device.serial.in_(serials)))}


def _rejected(event_id, reason: str, message: str) -> tuple[None, dict]:
    return None, {"event_id": event_id if isinstance(event_id, str) else None,
                  "status": "rejected", "reason": reason, "message": message}


def _check_event(raw, devices: dict[str, Device], stamp: datetime) -> tuple[dict | None, dict]:
    """An insertable row and an `accepted` result, or a `rejected` result with its reason."""
    if not isinstance(raw, dict):
        return _rejected(None, "invalid_event", "事件须为对象")
    event_id, serial = raw.get("event_id"), raw.get("serial")
    for name, value in (("event_id", event_id), ("serial", serial)):
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            return _rejected(event_id, "invalid_event", f"{name} 须为 1-64 个字符")
    at = _parse_time(raw.get("at"))
    if at is None:
        return _rejected(event_id, "invalid_event", "at 须为带时区的 ISO 8601 时间")
    device = devices.get(serial)
    if device is None or not device.is_active:
        return _rejected(event_id, "unknown_serial", "未登记的设备序列号")
    kind, event_type, payload = raw.get("kind"), raw.get("type"), raw.get("payload", {})
    if kind != str(device.kind):
        return _rejected(event_id, "wrong_kind", f"该设备是 {device.kind}，不是 {kind}")
    if event_type not in alarm_rules.EVENT_TYPES[str(device.kind)]:
        return _rejected(event_id, "unknown_type", f"{kind} 设备没有 {event_type} 类事件")
    problem = alarm_rules.payload_problem(kind, event_type, payload)
    if problem:
        return _rejected(event_id, "invalid_payload", problem)
    if at > stamp + FUTURE_TOLERANCE:
        return _rejected(event_id, "from_future", "事件时间晚于当前时间")
    if at < stamp - MAX_EVENT_AGE:
        return _rejected(event_id, "too_old", "事件发生于 24 小时之前")
    row = {"community_id": device.community_id, "device_id": device.id, "event_id": event_id,
           "kind": kind, "type": event_type, "at": at, "payload": payload,
           "processed_at": None, "alarm_id": None}
    return row, {"event_id": event_id, "status": "accepted"}


def _parse_time(value) -> datetime | None:
    """An aware datetime from ISO 8601 text; None when missing, naive or malformed."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def _insert_new(rows: list[dict]) -> dict[str, int]:
    """Insert the rows, skipping event ids the gateway sent before; {event_id: id} of new ones."""
    if not rows:
        return {}
    table = DeviceEvent.__table__
    # One cached statement, executed for many rows (SQLAlchemy batches them as multi-VALUES).
    stmt = (insert_or_skip(table, index_elements=["gateway_id", "event_id"])
            .returning(table.c.event_id, table.c.id))
    return {event_id: row_id for event_id, row_id in db.session.execute(stmt, rows).all()}


# --- evaluation ------------------------------------------------------------------------------


def request_evaluation() -> bool:
    """Queue an evaluation job unless one is waiting; a Redis failure is left to the relay."""
    try:
        if not redis_store.client.set(EVALUATION_FLAG, b"1", nx=True, ex=120):
            return False
        redis_store.queue(URGENT_QUEUE).enqueue(EVALUATION_JOB, result_ttl=60,
                                            description="alarms: evaluate stored device events")
    except RedisError as exc:
        log.warning("could not queue alarm evaluation (%s); alarm_watch will pick it up", exc)
        return False
    return True


def evaluate_pending(*, chunk: int = EVALUATION_CHUNK,
                     budget_seconds: float = EVALUATION_BUDGET_SECONDS) -> int:
    """Evaluate the stored events not yet evaluated, oldest first; returns how many."""
    try:
        redis_store.client.delete(EVALUATION_FLAG)  # events stored from now on queue a new run
    except RedisError:
        log.warning("could not clear the alarm evaluation flag", exc_info=True)
    started, total = time.monotonic(), 0
    while time.monotonic() - started < budget_seconds:
        ids = list(db.session.scalars(
            select(DeviceEvent.id).where(DeviceEvent.processed_at.is_(None))
            .order_by(DeviceEvent.id).limit(chunk)
            .with_for_update(skip_locked=True, key_share=True)))
        if not ids:
            db.session.rollback()
            return total
        total += evaluate_events(ids)
    # out of time: hand the rest to the next run - on the urgent queue too: while gateways send
    # more than a worker can evaluate, alarms come before routing and everything else
    request_evaluation()
    return total


def evaluate_events(event_ids: list[int]) -> int:
    """Apply stored events to their devices and the rules (each once); how many were new."""
    events = list(db.session.scalars(
        select(DeviceEvent).where(DeviceEvent.id.in_(event_ids),
                                  DeviceEvent.processed_at.is_(None))
        .order_by(DeviceEvent.at, DeviceEvent.id).with_for_update(key_share=True)))
    if not events:
        db.session.rollback()
        return 0
    # FOR NO KEY UPDATE (key_share): ingest's inserts hold FOR KEY SHARE on these device rows
    # through their foreign keys; a plain FOR UPDATE would deadlock with them.
    devices = {d.id: d for d in db.session.scalars(
        select(Device).where(Device.id.in_({e.device_id for e in events}))
        .order_by(Device.id).with_for_update(key_share=True)
        .options(selectinload(Device.elder)))}
    rules = alarm_rules.event_rules(alarm_rules.active_rules())
    for event in events:
        device = devices[event.device_id]
        apply_to_device(device, event)
        for rule in rules.get((event.kind, event.type), []):
            if alarm_rules.matches(rule.condition, event.payload, device.elder):
                event.alarm_id = raise_or_attach(rule, device, event).id
        event.processed_at = now()
    outbox.commit()
    return len(events)


def apply_to_device(device: Device, event: DeviceEvent) -> None:
    """What an event tells about its device: alive, door opened, in or out of bed."""
    device.last_seen_at = max(filter(None, (device.last_seen_at, event.at)))
    if event.type == "opened":
        device.last_opened_at = max(filter(None, (device.last_opened_at, event.at)))
    in_bed = {"in_bed": True, "out_of_bed": False}.get(event.type)
    if event.type == "vitals":
        in_bed = bool(event.payload.get("in_bed"))
    if in_bed is None or (device.bed_state_at and event.at < device.bed_state_at):
        return  # not a bed reading, or older than the one already applied
    device.bed_state_at = event.at
    if in_bed:
        device.out_of_bed_since = None
    elif device.out_of_bed_since is None:
        device.out_of_bed_since = event.at


def open_key(device_id: int, rule_id: int) -> str:
    """The key held by the one open alarm of a device and rule."""
    return f"{device_id}:{rule_id}"


def raise_or_attach(rule: AlarmRule, device: Device, event: DeviceEvent) -> Alarm:
    """Raise an alarm for the event, or attach the event to the one still open."""
    key = open_key(device.id, rule.id)
    alarm = db.session.scalar(select(Alarm).where(Alarm.open_key == key))
    if alarm is not None:
        return attach(alarm, event)
    try:
        with db.session.begin_nested():
            alarm = new_alarm(rule, device, occurred_at=event.at)
    except IntegrityError:  # another worker raised it first: attach to theirs
        return attach(db.session.scalar(select(Alarm).where(Alarm.open_key == key)), event)
    announce(alarm, note=f"{rule.name}（{event.type}）", device_event_id=event.id)
    return alarm


def new_alarm(rule: AlarmRule, device: Device, *, occurred_at: datetime,
              episode_key: str | None = None) -> Alarm:
    """Insert a raised alarm for the device's home (inside the caller's savepoint)."""
    stamp = now()
    household = db.session.get(Household, device.household_id)
    ack_due = stamp + timedelta(seconds=rule.ack_within_seconds) \
        if rule.ack_within_seconds else None
    alarm = Alarm(community_id=device.community_id, household_id=household.id,
                  building_id=household.building_id, elder_id=device.elder_id,
                  device_id=device.id, rule_id=rule.id, kind=rule.code, severity=rule.severity,
                  status=AS.RAISED, occurred_at=occurred_at, raised_at=stamp, ack_due_at=ack_due,
                  last_event_at=occurred_at, event_count=1, escalated=False,
                  resolution_note="", open_key=open_key(device.id, rule.id),
                  episode_key=episode_key)
    alarm.urgency = urgency(alarm)
    db.session.add(alarm)
    db.session.flush()
    return alarm


def announce(alarm: Alarm, *, note: str, device_event_id: int | None = None) -> None:
    """The `raise` step on the timeline, and the notification job (same transaction)."""
    record_event(alarm, "raise", to_status=str(AS.RAISED), note=note,
                 device_event_id=device_event_id)
    outbox.add_job("notify_alarm_raised", queue=URGENT_QUEUE, alarm_id=alarm.id)


def attach(alarm: Alarm, event: DeviceEvent) -> Alarm:
    """Count a repeated event on the open alarm, with a timeline row."""
    later = case((Alarm.last_event_at < event.at, event.at), else_=Alarm.last_event_at)
    db.session.execute(update(Alarm).where(Alarm.id == alarm.id).values(
        event_count=Alarm.event_count + 1, last_event_at=later)
        .execution_options(synchronize_session=False))
    db.session.expire(alarm, ["event_count", "last_event_at"])
    record_event(alarm, "attach", device_event_id=event.id, note=event.type,
                 data={"payload": event.payload, "at": event.at.isoformat()})
    return alarm


def urgency(alarm: Alarm) -> int:
    """Sort key of the staff list: open before resolved, severity, unacknowledged first."""
    closed = 100 if alarm.status == AS.RESOLVED else 0
    return closed + SEVERITY_RANK[AlarmSeverity(alarm.severity)] * 10 + (
        0 if alarm.status == AS.RAISED else 1)


def record_event(alarm: Alarm, action: str, *, actor_id: int | None = None,
                 from_status: str | None = None, to_status: str | None = None,
                 note: str = "", data: dict | None = None,
                 device_event_id: int | None = None) -> AlarmEvent:
    """Append one row to the alarm's timeline (in the caller's transaction)."""
    event = AlarmEvent(alarm_id=alarm.id, action=action, actor_id=actor_id,
                       from_status=from_status, to_status=to_status, note=note or "",
                       data=data or {}, device_event_id=device_event_id, created_at=now())
    db.session.add(event)
    db.session.flush()
    return event


# --- periodic rules and escalation -----------------------------------------------------------


def check_periodic_rules() -> int:
    """Raise the alarms of rules about something NOT happening; returns how many were raised."""
    stamp = now()
    raised = 0
    for rule in alarm_rules.active_rules():
        if rule.trigger in PERIODIC_CHECKS:
            found = list(PERIODIC_CHECKS[rule.trigger](rule, stamp))
            raised += _raise_periodic(rule, found)
    outbox.commit()
    return raised


def _door_idle(rule: AlarmRule, stamp: datetime):
    """Door sensors of elders at home not opened for `hours` (since install or return home)."""
    cutoff = stamp - timedelta(hours=rule.params.get("hours", 24))
    rows = db.session.execute(select(Device, WatchedElder.at_home_since).join(
        WatchedElder, WatchedElder.id == Device.elder_id).where(
        Device.kind == (rule.device_kind or "door_sensor"), Device.is_active.is_(True),
        WatchedElder.at_home.is_(True), WatchedElder.at_home_since <= cutoff,
        func.coalesce(Device.last_opened_at, Device.created_at) <= cutoff)).all()
    for device, home_since in rows:
        reference = max(device.last_opened_at or device.created_at, home_since)
        yield device, reference, reference + (stamp - cutoff)


def _device_silent(rule: AlarmRule, stamp: datetime):
    """Active devices with no event (heartbeat or other) for `hours`."""
    cutoff = stamp - timedelta(hours=rule.params.get("hours", 2))
    stmt = select(Device).where(Device.is_active.is_(True),
                                func.coalesce(Device.last_seen_at, Device.created_at) <= cutoff)
    if rule.device_kind:
        stmt = stmt.where(Device.kind == rule.device_kind)
    for device in db.session.scalars(stmt):
        reference = device.last_seen_at or device.created_at
        yield device, reference, reference + (stamp - cutoff)


def _out_of_bed(rule: AlarmRule, stamp: datetime):
    """Bed belts whose elder (at home) has been out of bed `minutes` within the night window."""
    minutes = timedelta(minutes=rule.params.get("minutes", 30))
    rows = db.session.execute(select(Device, Community.timezone).join(
        Community, Community.id == Device.community_id).join(
        WatchedElder, WatchedElder.id == Device.elder_id).where(
        Device.kind == "bed_belt", Device.is_active.is_(True), WatchedElder.at_home.is_(True),
        Device.out_of_bed_since.is_not(None), Device.out_of_bed_since <= stamp - minutes)).all()
    for device, tz in rows:
        crossed = alarm_rules.night_crossing(
            device.out_of_bed_since, tz, rule.params.get("night_start", "23:00"),
            rule.params.get("night_end", "06:00"), minutes)
        if crossed <= stamp:
            yield device, device.out_of_bed_since, crossed


PERIODIC_CHECKS = {"door_idle": _door_idle, "device_silent": _device_silent,
                   "out_of_bed": _out_of_bed}


def _raise_periodic(rule: AlarmRule, found: list) -> int:
    """One alarm per episode (device, rule, since when), none while one is still open."""
    if not found:
        return 0
    episodes = {f"{rule.code}:{d.id}:{ref.astimezone(UTC):%Y%m%dT%H%M%S}": (d, occurred)
                for d, ref, occurred in found}
    taken = set(db.session.scalars(select(Alarm.open_key).where(
        Alarm.open_key.in_([open_key(d.id, rule.id) for d, _ in episodes.values()]))))
    taken |= set(db.session.scalars(select(Alarm.episode_key).where(
        Alarm.episode_key.in_(list(episodes)))))
    raised = 0
    for episode, (device, occurred_at) in episodes.items():
        if episode in taken or open_key(device.id, rule.id) in taken:
            continue
        try:
            with db.session.begin_nested():
                alarm = new_alarm(rule, device, occurred_at=occurred_at, episode_key=episode)
        except IntegrityError:
            continue  # raised by a concurrent tick
        announce(alarm, note=rule.name)
        raised += 1
    return raised


def escalate_unacknowledged(*, limit: int = 200) -> int:
    """Escalate, once, the alarms still not acknowledged by their deadline."""
    stamp = now()
    due = list(db.session.scalars(select(Alarm).where(
        Alarm.status == AS.RAISED, Alarm.escalated.is_(False), Alarm.ack_due_at.is_not(None),
        Alarm.ack_due_at <= stamp).order_by(Alarm.ack_due_at, Alarm.id).limit(limit)
        .with_for_update(skip_locked=True, key_share=True)))
    for alarm in due:
        alarm.escalated, alarm.escalated_at = True, stamp
        waited = math.ceil((stamp - alarm.raised_at).total_seconds() / 60)
        record_event(alarm, "escalate", note=f"{waited} 分钟内无人接警，已升级通知")
        outbox.add_job("notify_alarm_escalated", queue=URGENT_QUEUE, alarm_id=alarm.id)
    outbox.commit()
    return len(due)


# --- staff: scope, lifecycle, lists ----------------------------------------------------------


class StaffScope:
    """The communities whose alarms a community-office member works."""

    def __init__(self, *, user_id: int, orgs: list[dict]) -> None:
        self.user_id = user_id
        self.community_ids = {m["community_id"] for m in orgs if m.get("community_id")}

    def covers(self, community_id: int) -> bool:
        """Whether the community is in scope."""
        return community_id in self.community_ids


def _bad(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}})


def transition(*, alarm_id: int, scope: StaffScope, action: str, cause: str | None = None,
               note: str = "") -> Alarm:
    """A staff move through ALARM_ALLOWED, with its timeline row, in one transaction."""
    alarm = db.session.scalar(select(Alarm).where(Alarm.id == alarm_id)
                              .with_for_update(key_share=True))
    if alarm is None or not scope.covers(alarm.community_id):
        raise NotFound("找不到该报警", code="alarm_not_found")
    target = ALARM_ALLOWED[alarm.status].get(action)
    if target is None:
        raise InvalidTransition(details={"status": str(alarm.status), "action": action,
                                         "allowed": sorted(ALARM_ALLOWED[alarm.status])})
    note = (note or "").strip()
    if target == AS.RESOLVED:
        _check_resolution(cause, note)
    before = alarm.status
    _stamp(alarm, target, scope.user_id, cause, note)
    record_event(alarm, action, actor_id=scope.user_id, from_status=str(before),
                 to_status=str(target), note=note, data={"cause": cause} if cause else None)
    if target == AS.RESOLVED:
        outbox.add_job("notify_alarm_resolved", queue="high", alarm_id=alarm.id)
    outbox.commit()
    return get_alarm(alarm_id=alarm.id, scope=scope)


def _check_resolution(cause: str | None, note: str) -> None:
    """A resolution needs a known cause; `other` also needs a note."""
    if cause not in CAUSE_LABELS:
        raise _bad("cause", "cause_required", "请选择报警原因")
    if cause == AlarmCause.OTHER and not note:
        raise _bad("note", "note_required", "原因为“其他”时请填写说明")


def _stamp(alarm: Alarm, target: AlarmStatus, actor_id: int, cause: str | None,
           note: str) -> None:
    """Set the new status and who/when columns of the move."""
    stamp = now()
    alarm.status = target
    if target == AS.ACKNOWLEDGED:
        alarm.acknowledged_at, alarm.acknowledged_by_id = stamp, actor_id
    elif target == AS.ON_SITE:
        alarm.on_site_at = stamp
    elif target == AS.RESOLVED:
        alarm.resolved_at, alarm.resolved_by_id = stamp, actor_id
        alarm.cause, alarm.resolution_note = AlarmCause(cause), note
        alarm.open_key = None  # a new event now raises a new alarm
    alarm.urgency = urgency(alarm)


def _list_options():
    return (selectinload(Alarm.elder), selectinload(Alarm.rule), selectinload(Alarm.device),
            selectinload(Alarm.household).selectinload(Household.building))


def list_alarms(*, scope: StaffScope, status: str | None = None, severity: str | None = None,
                sort: str = "urgent", cursor: str | None = None,
                limit: int = 20) -> tuple[list[Alarm], str | None]:
    """A page of the alarms in scope, most urgent (or newest) first."""
    stmt = select(Alarm).where(Alarm.community_id.in_(scope.community_ids)).options(
        *_list_options())
    if status == "open":
        stmt = stmt.where(Alarm.status != AS.RESOLVED)
    elif status:
        stmt = stmt.where(Alarm.status == AlarmStatus(status))
    if severity:
        stmt = stmt.where(Alarm.severity == AlarmSeverity(severity))
    if sort == "newest":
        return keyset_page(stmt, columns=[Alarm.raised_at, Alarm.id], cursor=cursor,
                           limit=limit)
    return keyset_page(stmt, columns=[Alarm.urgency, Alarm.raised_at, Alarm.id], cursor=cursor,
                       limit=limit, descending=False)


def get_alarm(*, alarm_id: int, scope: StaffScope) -> Alarm:
    """An alarm in scope with elder, address, contacts, device, timeline and device events."""
    alarm = _load_alarm(alarm_id)
    if alarm is None or not scope.covers(alarm.community_id):
        raise NotFound("找不到该报警", code="alarm_not_found")
    alarm.device_events = list(db.session.scalars(
        select(DeviceEvent).where(DeviceEvent.alarm_id == alarm.id)
        .order_by(DeviceEvent.at.desc(), DeviceEvent.id.desc()).limit(50)))
    worker_id = grid_worker_id(alarm.building_id)
    alarm.grid_worker_id = worker_id
    alarm.viewer_sees_phones = scope.user_id == worker_id or is_on_duty(
        community_id=alarm.community_id, user_id=scope.user_id)
    return alarm


def _load_alarm(alarm_id: int) -> Alarm | None:
    """The alarm with everything its detail screens show (constant number of queries)."""
    return db.session.scalar(select(Alarm).where(Alarm.id == alarm_id).options(
        *_list_options(), selectinload(Alarm.elder).selectinload(WatchedElder.contacts),
        selectinload(Alarm.events)))


def grid_worker_id(building_id: int) -> int | None:
    """The grid worker of the building's micro-grid."""
    return db.session.scalar(select(MicroGrid.grid_worker_id).join(
        Building, Building.micro_grid_id == MicroGrid.id).where(Building.id == building_id))


def is_on_duty(*, community_id: int, user_id: int) -> bool:
    """Whether the user is on alarm duty in the community."""
    return db.session.scalar(select(exists().where(
        AlarmDuty.community_id == community_id, AlarmDuty.user_id == user_id)))


# --- family ----------------------------------------------------------------------------------


def family_households(user_id: int):
    """Households the user is an approved member of (a subquery)."""
    return select(HouseholdMember.household_id).where(
        HouseholdMember.user_id == user_id, HouseholdMember.status == ClaimStatus.APPROVED)


def family_elders(user_id: int):
    """Elders the user may follow: of their households, or naming them as a contact."""
    return select(WatchedElder.id).where(or_(
        WatchedElder.household_id.in_(family_households(user_id)),
        WatchedElder.id.in_(select(EmergencyContact.elder_id).where(
            EmergencyContact.user_id == user_id))))


def _family_clause(user_id: int):
    return or_(Alarm.household_id.in_(family_households(user_id)),
               Alarm.elder_id.in_(family_elders(user_id)))


def my_alarms(*, user_id: int, status: str | None = None, cursor: str | None = None,
              limit: int = 20) -> tuple[list[Alarm], str | None]:
    """Alarms about the caller's elders, newest first."""
    stmt = select(Alarm).where(_family_clause(user_id)).options(*_list_options())
    if status == "open":
        stmt = stmt.where(Alarm.status != AS.RESOLVED)
    elif status:
        stmt = stmt.where(Alarm.status == AlarmStatus(status))
    return keyset_page(stmt, columns=[Alarm.raised_at, Alarm.id], cursor=cursor, limit=limit)


def alarm_for_family(*, alarm_id: int, user_id: int) -> Alarm:
    """An alarm about one of the caller's elders; 404 for anyone else's."""
    visible = db.session.scalar(select(Alarm.id).where(Alarm.id == alarm_id,
                                                       _family_clause(user_id)))
    if visible is None:
        raise NotFound("找不到该报警", code="alarm_not_found")
    return _load_alarm(alarm_id)


# --- the big screen and stats ----------------------------------------------------------------


def mask_name(name: str | None) -> str:
    """王** for 王秀英 (also for 老王 and 王阿姨): the surname, never the rest."""
    if not name:
        return "**"
    surname = name[1] if name.startswith("老") and len(name) > 1 else name[0]
    return f"{surname}**"


def open_critical_alarms(community_id: int) -> list[dict]:
    """Critical alarms not yet resolved, oldest first: building, masked name, raised_at."""
    rows = db.session.execute(
        select(Alarm.id, Alarm.kind, Alarm.status, Alarm.raised_at, Building.number,
               WatchedElder.name, AlarmRule.name)
        .join(Building, Building.id == Alarm.building_id)
        .join(AlarmRule, AlarmRule.id == Alarm.rule_id)
        .outerjoin(WatchedElder, WatchedElder.id == Alarm.elder_id)
        .where(Alarm.community_id == community_id, Alarm.severity == AlarmSeverity.CRITICAL,
               Alarm.status != AS.RESOLVED)
        .order_by(Alarm.raised_at, Alarm.id)).all()
    return [{"id": row[0], "kind": row[1], "kind_name": row[6], "status": str(row[2]),
             "status_label": STATUS_LABELS[str(row[2])], "building": f"{row[4]}号楼",
             "masked_name": mask_name(row[5]), "raised_at": row[3].isoformat()}
            for row in rows]


def stats(*, scope: StaffScope, start: datetime, end: datetime) -> dict:
    """Alarms by kind and cause; median / p95 time to acknowledge and to resolve; 10-min share."""
    rows = db.session.execute(
        select(Alarm.kind, AlarmRule.name, Alarm.severity, Alarm.cause, Alarm.raised_at,
               Alarm.acknowledged_at, Alarm.resolved_at)
        .join(AlarmRule, AlarmRule.id == Alarm.rule_id)
        .where(Alarm.community_id.in_(scope.community_ids), Alarm.raised_at >= start,
               Alarm.raised_at < end)).all()
    kinds = Counter((r.kind, r.name) for r in rows)
    causes = Counter(str(r.cause) for r in rows if r.cause)
    return {
        "from": start, "to": end, "total": len(rows),
        "by_kind": [{"kind": k, "name": n, "count": c} for (k, n), c in sorted(kinds.items())],
        "by_cause": [{"cause": c, "label": CAUSE_LABELS[c], "count": causes[c]}
                     for c in CAUSE_LABELS if causes[c]],
        "overall": _timings(rows),
        "by_severity": [{"severity": s, "label": SEVERITY_LABELS[s]} | _timings(
            [r for r in rows if str(r.severity) == s]) for s in SEVERITY_LABELS],
    }


def _timings(rows: list) -> dict:
    """Counts, median and p95 seconds to acknowledge and resolve, and the 10-minute share."""
    ack = [(r.acknowledged_at - r.raised_at).total_seconds() for r in rows if r.acknowledged_at]
    res = [(r.resolved_at - r.raised_at).total_seconds() for r in rows if r.resolved_at]
    stamp = now()
    # An alarm counts once its 10 minutes are over or it is resolved.
    due = [r for r in rows if r.resolved_at or stamp - r.raised_at >= RESPONSE_PROMISE]
    inside = [r for r in due if r.resolved_at and r.resolved_at - r.raised_at <= RESPONSE_PROMISE]
    return {
        "count": len(rows), "acknowledged": len(ack), "resolved": len(res),
        "acknowledge_seconds": {"median": _median(ack), "p95": percentile(ack, 95)},
        "resolve_seconds": {"median": _median(res), "p95": percentile(res, 95)},
        "within_10_min": {"eligible": len(due), "resolved_within": len(inside),
                          "share": round(len(inside) / len(due), 3) if due else None},
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 1)


def local_time(community_id: int, at: datetime) -> datetime:
    """`at` in the community's time zone."""
    tz = db.session.scalar(select(Community.timezone).where(Community.id == community_id))
    return at.astimezone(ZoneInfo(tz or "Asia/Shanghai"))
