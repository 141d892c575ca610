"""Schemas of the safety-alarm API: ingest, alarms (staff and family), elders, devices."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.blueprints.common import page_of
from app.blueprints.me.schemas import mask_phone
from app.models import DeviceKind
from app.pagination import PageArgsSchema
from app.services import alarms
from app.services.alarm_registry import OFFLINE_AFTER, building_label

DEVICE_KINDS = [k.value for k in DeviceKind]
ALARM_STATUSES = [*alarms.STATUS_LABELS, "open"]


# --- ingest ----------------------------------------------------------------------------------


class IotIngestSchema(Schema):
    events = fields.List(fields.Raw(), required=True, validate=validate.Length(
        min=1, max=alarms.MAX_BATCH, error=f"每批须有 1 至 {alarms.MAX_BATCH} 条事件"),
        metadata={"description": "each {event_id, serial, kind, type, at, payload}"})


class IotIngestResultItemSchema(Schema):
    event_id = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "accepted | duplicate | rejected"})
    reason = fields.String(metadata={"description": "invalid_event, unknown_serial, "
                                     "wrong_kind, unknown_type, invalid_payload, "
                                     "from_future, too_old"})
    message = fields.String()


class IotIngestResultSchema(Schema):
    received = fields.Integer()
    accepted = fields.Integer()
    duplicate = fields.Integer()
    rejected = fields.Integer()
    results = fields.List(fields.Nested(IotIngestResultItemSchema))


# --- alarms ----------------------------------------------------------------------------------


class WatchedElderRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class SafetyDeviceRefSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    serial = fields.String()
    last_seen_at = fields.DateTime(allow_none=True)


class AlarmSummarySchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "the rule's code: smoke, sos, ..."})
    kind_name = fields.Function(lambda a: a.rule.name)
    severity = fields.String()
    severity_label = fields.Function(lambda a: alarms.SEVERITY_LABELS[str(a.severity)])
    status = fields.String()
    status_label = fields.Function(lambda a: alarms.STATUS_LABELS[str(a.status)])
    elder = fields.Nested(WatchedElderRefSchema, allow_none=True)
    address = fields.Function(lambda a: a.household.label)
    building = fields.Function(lambda a: building_label(a.household.building))
    device = fields.Nested(SafetyDeviceRefSchema)
    occurred_at = fields.DateTime()
    raised_at = fields.DateTime()
    ack_due_at = fields.DateTime(allow_none=True)
    acknowledged_at = fields.DateTime(allow_none=True)
    on_site_at = fields.DateTime(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    cause = fields.String(allow_none=True)
    cause_label = fields.Function(
        lambda a: alarms.CAUSE_LABELS[str(a.cause)] if a.cause else None)
    escalated = fields.Boolean()
    event_count = fields.Integer()
    last_event_at = fields.DateTime()


AlarmPageSchema = page_of(AlarmSummarySchema, "AlarmPageSchema")


class AlarmTimelineSchema(Schema):
    id = fields.Integer()
    action = fields.String()
    label = fields.Function(lambda e: alarms.EVENT_LABELS.get(e.action, e.action))
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.DateTime()


class AlarmStaffTimelineSchema(AlarmTimelineSchema):
    actor_id = fields.Integer(allow_none=True)
    device_event_id = fields.Integer(allow_none=True)
    data = fields.Dict()


class SafetyDeviceEventSchema(Schema):
    id = fields.Integer()
    event_id = fields.String()
    type = fields.String()
    at = fields.DateTime()
    payload = fields.Dict()


class EmergencyContactSchema(Schema):
    position = fields.Integer()
    name = fields.String()
    relation = fields.String()
    phone = fields.String()
    user_id = fields.Integer(allow_none=True)


class StaffAlarmDetailSchema(AlarmSummarySchema):
    resolution_note = fields.String()
    escalated_at = fields.DateTime(allow_none=True)
    acknowledged_by_id = fields.Integer(allow_none=True)
    resolved_by_id = fields.Integer(allow_none=True)
    grid_worker_id = fields.Integer(allow_none=True)
    phones_visible = fields.Boolean(attribute="viewer_sees_phones",
                                    metadata={"description": "full numbers for staff on duty "
                                              "and the elder's grid worker"})
    elder_detail = fields.Method("elder_info")
    contacts = fields.Method("contact_list")
    timeline = fields.List(fields.Nested(AlarmStaffTimelineSchema), attribute="events")
    device_events = fields.List(fields.Nested(SafetyDeviceEventSchema))

    def _phone(self, alarm, phone):
        return phone if alarm.viewer_sees_phones else mask_phone(phone)

    def elder_info(self, alarm):
        elder = alarm.elder
        if elder is None:
            return None
        return {"id": elder.id, "name": elder.name, "phone": self._phone(alarm, elder.phone),
                "birth_year": elder.birth_year, "lives_alone": elder.lives_alone,
                "at_home": elder.at_home}

    def contact_list(self, alarm):
        contacts = alarm.elder.contacts if alarm.elder is not None else []
        return [{"position": c.position, "name": c.name, "relation": c.relation,
                 "phone": self._phone(alarm, c.phone), "has_account": c.user_id is not None}
                for c in contacts]


class FamilyAlarmSchema(AlarmSummarySchema):
    resolution_note = fields.String()
    timeline = fields.Method("public_timeline")

    def public_timeline(self, alarm):
        """The steps a family sees (no internal notification bookkeeping, no staff ids)."""
        shown = [e for e in alarm.events if e.action != "notify"]
        return AlarmTimelineSchema(many=True).dump(shown)


FamilyAlarmPageSchema = page_of(AlarmSummarySchema, "FamilyAlarmPageSchema")


class AlarmListArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(ALARM_STATUSES))
    severity = fields.String(load_default=None, validate=validate.OneOf(
        list(alarms.SEVERITY_LABELS)))
    sort = fields.String(load_default="urgent", validate=validate.OneOf(["urgent", "newest"]))


class FamilyAlarmArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(ALARM_STATUSES))


class AlarmTransitionSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(alarms.STAFF_ACTIONS))
    cause = fields.String(load_default=None, validate=validate.OneOf(list(alarms.CAUSE_LABELS)))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class AlarmStatsArgsSchema(Schema):
    start = fields.AwareDateTime(data_key="from", load_default=None, default_timezone=None)
    end = fields.AwareDateTime(data_key="to", load_default=None, default_timezone=None)


class AlarmTimingSchema(Schema):
    median = fields.Float(allow_none=True)
    p95 = fields.Float(allow_none=True)


class AlarmPromiseSchema(Schema):
    eligible = fields.Integer()
    resolved_within = fields.Integer()
    share = fields.Float(allow_none=True)


class AlarmTimingsSchema(Schema):
    count = fields.Integer()
    acknowledged = fields.Integer()
    resolved = fields.Integer()
    acknowledge_seconds = fields.Nested(AlarmTimingSchema)
    resolve_seconds = fields.Nested(AlarmTimingSchema)
    within_10_min = fields.Nested(AlarmPromiseSchema)


class AlarmSeverityTimingsSchema(AlarmTimingsSchema):
    severity = fields.String()
    label = fields.String()


class AlarmKindCountSchema(Schema):
    kind = fields.String()
    name = fields.String()
    count = fields.Integer()


class AlarmCauseCountSchema(Schema):
    cause = fields.String()
    label = fields.String()
    count = fields.Integer()


class AlarmStatsSchema(Schema):
    start = fields.DateTime(data_key="from")
    end = fields.DateTime(data_key="to")
    total = fields.Integer()
    by_kind = fields.List(fields.Nested(AlarmKindCountSchema))
    by_cause = fields.List(fields.Nested(AlarmCauseCountSchema))
    overall = fields.Nested(AlarmTimingsSchema)
    by_severity = fields.List(fields.Nested(AlarmSeverityTimingsSchema))


class AlarmDutySchema(Schema):
    on_duty = fields.Boolean(required=True)
    community_id = fields.Integer(load_default=None)


class AlarmDutyEntrySchema(Schema):
    user_id = fields.Integer()
    display_name = fields.String()
    community_id = fields.Integer()
    since = fields.DateTime()


class AlarmDutyRosterSchema(Schema):
    items = fields.List(fields.Nested(AlarmDutyEntrySchema))
    next_cursor = fields.String(allow_none=True)


class AlarmRuleSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    severity = fields.String()
    trigger = fields.String()
    device_kind = fields.String(allow_none=True)
    event_type = fields.String(allow_none=True)
    condition = fields.Dict()
    params = fields.Dict()
    ack_within_seconds = fields.Integer(allow_none=True)
    is_active = fields.Boolean()


class AlarmRuleListSchema(Schema):
    items = fields.List(fields.Nested(AlarmRuleSchema))
    next_cursor = fields.String(allow_none=True)


# --- elders, contacts, devices, gateways ------------------------------------------------------


class SafetyDeviceSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    serial = fields.String()
    elder_id = fields.Integer(allow_none=True)
    household_id = fields.Integer()
    installed_on = fields.Date()
    is_active = fields.Boolean()
    last_seen_at = fields.DateTime(allow_none=True)
    last_opened_at = fields.DateTime(allow_none=True)
    out_of_bed_since = fields.DateTime(allow_none=True)
    online = fields.Method("is_online")

    def is_online(self, device):
        seen = device.last_seen_at or device.created_at
        return seen is not None and alarms.now() - seen < OFFLINE_AFTER


SafetyDevicePageSchema = page_of(SafetyDeviceSchema, "SafetyDevicePageSchema")


class WatchedElderSchema(Schema):
    id = fields.Integer()
    household_id = fields.Integer()
    address = fields.Function(lambda e: e.household.label)
    user_id = fields.Integer(allow_none=True)
    name = fields.String()
    phone = fields.String(allow_none=True)
    birth_year = fields.Integer(allow_none=True)
    lives_alone = fields.Boolean()
    at_home = fields.Boolean()
    at_home_since = fields.DateTime()
    heart_rate_min = fields.Integer()
    heart_rate_max = fields.Integer()
    breath_rate_min = fields.Integer()
    breath_rate_max = fields.Integer()
    note = fields.String()
    contacts = fields.List(fields.Nested(EmergencyContactSchema))
    devices = fields.List(fields.Nested(SafetyDeviceSchema))


WatchedElderPageSchema = page_of(WatchedElderSchema, "WatchedElderPageSchema")


class WatchedElderListSchema(Schema):
    items = fields.List(fields.Nested(WatchedElderSchema))
    next_cursor = fields.String(allow_none=True)


RATE = validate.Range(0, 300)


class WatchedElderUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=32))
    phone = fields.String(allow_none=True, validate=validate.Length(max=20))
    birth_year = fields.Integer(allow_none=True, validate=validate.Range(1900, 2100))
    lives_alone = fields.Boolean()
    at_home = fields.Boolean()
    note = fields.String(validate=validate.Length(max=200))
    heart_rate_min = fields.Integer(validate=RATE)
    heart_rate_max = fields.Integer(validate=RATE)
    breath_rate_min = fields.Integer(validate=RATE)
    breath_rate_max = fields.Integer(validate=RATE)


class WatchedElderCreateSchema(WatchedElderUpdateSchema):
    household_id = fields.Integer(required=True)
    user_id = fields.Integer(load_default=None)
    name = fields.String(required=True, validate=validate.Length(min=1, max=32))


class FamilyWatchedElderUpdateSchema(Schema):
    at_home = fields.Boolean(required=True)


class EmergencyContactInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=32))
    phone = fields.String(required=True, validate=validate.Length(min=6, max=20))
    relation = fields.String(load_default="", validate=validate.Length(max=20))
    user_id = fields.Integer(load_default=None)


class EmergencyContactsSchema(Schema):
    contacts = fields.List(fields.Nested(EmergencyContactInSchema), required=True)


class SafetyDeviceListArgsSchema(PageArgsSchema):
    elder_id = fields.Integer(load_default=None)
    household_id = fields.Integer(load_default=None)
    kind = fields.String(load_default=None, validate=validate.OneOf(DEVICE_KINDS))
    offline = fields.Boolean(load_default=None)


class SafetyDeviceCreateSchema(Schema):
    serial = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(required=True, validate=validate.OneOf(DEVICE_KINDS))
    elder_id = fields.Integer(required=True)
    installed_on = fields.Date(load_default=None)


class SafetyDeviceUpdateSchema(Schema):
    elder_id = fields.Integer()
    is_active = fields.Boolean()


class IotGatewayCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    code = fields.String(load_default=None, validate=validate.Regexp(
        r"^[a-z0-9][a-z0-9-]{2,39}$", error="编号须为 3-40 位小写字母、数字或连字符"))
    community_id = fields.Integer(load_default=None)


class IotGatewaySchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    community_id = fields.Integer()
    is_active = fields.Boolean()
    created_at = fields.DateTime()


class IotGatewayCreatedSchema(IotGatewaySchema):
    secret = fields.String(metadata={"description": "shown this once; store it in the gateway"})


class IotGatewayListSchema(Schema):
    items = fields.List(fields.Nested(IotGatewaySchema))
    next_cursor = fields.String(allow_none=True)
