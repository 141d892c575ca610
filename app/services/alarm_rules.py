"""The alarm rules as data, the event payloads devices may send, and the rule evaluator.

A rule row says WHICH events (device kind + event type + a condition over the payload) or WHICH
periodic check (`trigger`: door_idle, device_silent, out_of_bed) raises an alarm, how severe it
is and how soon it must be acknowledged before it escalates. Changing a threshold, a severity or
a deadline is a change of data (a row of `alarm_rules`), not of code.

Conditions are small JSON trees: {"all": [...]}, {"any": [...]}, or a leaf
{"field": "heart_rate", "<op>": value} with op among eq, ne, gt, ge, lt, le, and
{"field": "heart_rate", "outside": "heart_rate"}: outside the elder's own heart_rate_min..max.
"""

from __future__ import annotations

import operator
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from app.extensions import db
from app.models import AlarmRule, AlarmSeverity

CRITICAL_ACK_SECONDS = 3 * 60
WARNING_ACK_SECONDS = 30 * 60
IN_BED = {"field": "in_bed", "eq": True}

DEFAULT_RULES: list[dict] = [
    {"code": "sos", "name": "紧急呼叫", "severity": "critical", "trigger": "event",
     "device_kind": "sos_button", "event_type": "pressed", "condition": {},
     "ack_within_seconds": CRITICAL_ACK_SECONDS},
    {"code": "smoke", "name": "烟雾报警", "severity": "critical", "trigger": "event",
     "device_kind": "smoke_alarm", "event_type": "smoke", "condition": {},
     "ack_within_seconds": CRITICAL_ACK_SECONDS},
    {"code": "gas", "name": "燃气泄漏", "severity": "critical", "trigger": "event",
     "device_kind": "gas_alarm", "event_type": "gas", "condition": {},
     "ack_within_seconds": CRITICAL_ACK_SECONDS},
    {"code": "no_vital_signs", "name": "在床无生命体征", "severity": "warning",
     "trigger": "event", "device_kind": "bed_belt", "event_type": "vitals",
     "condition": {"all": [IN_BED, {"any": [{"field": "heart_rate", "eq": 0},
                                            {"field": "breath_rate", "eq": 0}]}]},
     "ack_within_seconds": WARNING_ACK_SECONDS},
    {"code": "heart_rate_abnormal", "name": "心率异常", "severity": "warning",
     "trigger": "event", "device_kind": "bed_belt", "event_type": "vitals",
     "condition": {"all": [IN_BED, {"field": "heart_rate", "gt": 0},
                           {"field": "heart_rate", "outside": "heart_rate"}]},
     "ack_within_seconds": WARNING_ACK_SECONDS},
    {"code": "breath_rate_abnormal", "name": "呼吸异常", "severity": "warning",
     "trigger": "event", "device_kind": "bed_belt", "event_type": "vitals",
     "condition": {"all": [IN_BED, {"field": "breath_rate", "gt": 0},
                           {"field": "breath_rate", "outside": "breath_rate"}]},
     "ack_within_seconds": WARNING_ACK_SECONDS},
    {"code": "out_of_bed_at_night", "name": "夜间离床未归", "severity": "warning",
     "trigger": "out_of_bed", "device_kind": "bed_belt",
     "params": {"minutes": 30, "night_start": "23:00", "night_end": "06:00"},
     "ack_within_seconds": WARNING_ACK_SECONDS},
    {"code": "door_not_opened", "name": "24小时未开门", "severity": "welfare",
     "trigger": "door_idle", "device_kind": "door_sensor", "params": {"hours": 24},
     "ack_within_seconds": None},
    {"code": "device_offline", "name": "设备离线", "severity": "welfare",
     "trigger": "device_silent", "device_kind": None, "params": {"hours": 2},
     "ack_within_seconds": None},
]
PERIODIC_TRIGGERS = ("door_idle", "device_silent", "out_of_bed")

# What each kind of device may send: event type -> {payload field: (type, required)}.
HEARTBEAT = {"battery": ("number", False)}
EVENT_TYPES: dict[str, dict[str, dict[str, tuple[str, bool]]]] = {
    "sos_button": {"pressed": {}, "heartbeat": HEARTBEAT},
    "door_sensor": {"opened": {}, "closed": {}, "heartbeat": HEARTBEAT},
    "gas_alarm": {"gas": {"ppm": ("number", False)}, "cleared": {}, "heartbeat": HEARTBEAT},
    "smoke_alarm": {"smoke": {"obscuration": ("number", False)}, "cleared": {},
                    "heartbeat": HEARTBEAT},
    "bed_belt": {"vitals": {"in_bed": ("bool", True), "heart_rate": ("int", True),
                            "breath_rate": ("int", True)},
                 "in_bed": {}, "out_of_bed": {}, "heartbeat": HEARTBEAT},
}
VALUE_CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 300,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
OPERATORS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
             "lt": operator.lt, "le": operator.le}


def payload_problem(kind: str, event_type: str, payload: object) -> str | None:
    """Why a payload does not fit its device kind and event type; None when it fits."""
    fields = EVENT_TYPES.get(kind, {}).get(event_type)
    if fields is None:
        return f"{kind} 设备没有 {event_type} 类事件"
    if not isinstance(payload, dict):
        return "payload 须为对象"
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        return f"payload 含有 {kind}/{event_type} 不应有的字段：{', '.join(unknown)}"
    for name, (value_type, required) in fields.items():
        if name not in payload:
            if required:
                return f"payload 缺少字段 {name}"
            continue
        if not VALUE_CHECKS[value_type](payload[name]):
            return f"payload 字段 {name} 须为 {value_type}"
    return None


def matches(condition: dict, payload: dict, elder) -> bool:
    """Whether a rule's condition holds for an event's payload (and the elder's ranges)."""
    if not condition:
        return True
    if "all" in condition:
        return all(matches(part, payload, elder) for part in condition["all"])
    if "any" in condition:
        return any(matches(part, payload, elder) for part in condition["any"])
    value = payload.get(condition["field"])
    if value is None:
        return False
    if "outside" in condition:
        return _outside_range(value, condition["outside"], elder)
    op = next(name for name in OPERATORS if name in condition)
    return OPERATORS[op](value, condition[op])


def _outside_range(value, name: str, elder) -> bool:
    """Whether `value` lies outside the elder's configured `<name>_min..<name>_max`."""
    if elder is None:
        return False
    return not getattr(elder, f"{name}_min") <= value <= getattr(elder, f"{name}_max")


def night_windows(since: datetime, tz: str, start: str, end: str, *, days: int):
    """The nightly windows (local start..end) from the night before `since`, `days` of them."""
    zone = ZoneInfo(tz)
    day = since.astimezone(zone).date() - timedelta(days=1)
    for _ in range(days):
        window_start = datetime.combine(day, time.fromisoformat(start), zone)
        window_end = datetime.combine(day, time.fromisoformat(end), zone)
        if window_end <= window_start:
            window_end += timedelta(days=1)
        yield window_start, window_end
        day += timedelta(days=1)


def night_overlap(since: datetime, until: datetime, tz: str, start: str, end: str) -> timedelta:
    """How much of [since, until] falls inside the nightly window start..end (local time)."""
    days = (until - since).days + 3
    return sum((max(min(until, we) - max(since, ws), timedelta(0))
                for ws, we in night_windows(since, tz, start, end, days=days)), timedelta(0))


def night_crossing(since: datetime, tz: str, start: str, end: str,
                   needed: timedelta) -> datetime:
    """The moment when `needed` time after `since` has been spent inside the night window."""
    spent = timedelta(0)
    for window_start, window_end in night_windows(since, tz, start, end, days=400):
        begin = max(since, window_start)
        if window_end <= begin:
            continue
        if spent + (window_end - begin) >= needed:
            return begin + (needed - spent)
        spent += window_end - begin
    raise ValueError("the night window never adds up to the time needed")


def ensure_alarm_rules() -> int:
    """Create the default rules that are missing (edited rows are left alone); how many."""
    existing = set(db.session.scalars(select(AlarmRule.code)))
    created = 0
    for position, spec in enumerate(DEFAULT_RULES):
        if spec["code"] in existing:
            continue
        db.session.add(AlarmRule(
            code=spec["code"], name=spec["name"], severity=AlarmSeverity(spec["severity"]),
            trigger=spec["trigger"], device_kind=spec.get("device_kind"),
            event_type=spec.get("event_type"), condition=spec.get("condition") or {},
            params=spec.get("params") or {}, ack_within_seconds=spec["ack_within_seconds"],
            position=position, is_active=True))
        created += 1
    db.session.flush()
    return created


def active_rules() -> list[AlarmRule]:
    """The active rules in order; the defaults are created first if the table was never filled."""
    rules = list(db.session.scalars(select(AlarmRule).order_by(AlarmRule.position,
                                                               AlarmRule.id)))
    if not rules:
        ensure_alarm_rules()
        return active_rules()
    return [rule for rule in rules if rule.is_active]


def event_rules(rules: list[AlarmRule]) -> dict[tuple[str, str], list[AlarmRule]]:
    """The event-triggered rules by (device kind, event type)."""
    by_event: dict[tuple[str, str], list[AlarmRule]] = {}
    for rule in rules:
        if rule.trigger == "event":
            by_event.setdefault((rule.device_kind, rule.event_type), []).append(rule)
    return by_event
