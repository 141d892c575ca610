"""Schemas of service booking: catalogue, slots, bookings, and the provider's staff side."""

from __future__ import annotations

from datetime import timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.blueprints.common import page_of
from app.blueprints.me.schemas import mask_phone
from app.pagination import PageArgsSchema
from app.services.booking import EVENT_LABELS, STAFF_ACTIONS, STATUS_LABELS
from app.services.slots import minute_label

HHMM = validate.Regexp(r"^\d{2}:\d{2}$", error="时间格式为 HH:MM")


class ProviderRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class OpeningHoursSchema(Schema):
    weekday = fields.Integer(metadata={"description": "0 = Monday … 6 = Sunday"})
    opens = fields.Function(lambda h: minute_label(h.opens_minute))
    closes = fields.Function(lambda h: minute_label(h.closes_minute))


class ServiceExceptionSchema(Schema):
    id = fields.Integer()
    date = fields.Date(attribute="day")
    kind = fields.String(metadata={"description": "closed | open (extra hours)"})
    opens = fields.Function(lambda e: minute_label(e.opens_minute)
                            if e.opens_minute is not None else None, allow_none=True)
    closes = fields.Function(lambda e: minute_label(e.closes_minute)
                             if e.closes_minute is not None else None, allow_none=True)
    note = fields.String()


class BookableServiceSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    description = fields.String()
    location = fields.String(metadata={"description": "centre | home"})
    place = fields.String()
    provider = fields.Nested(ProviderRefSchema)
    capacity = fields.Integer(metadata={"description": "places per slot"})
    duration_minutes = fields.Integer()
    slot_interval_minutes = fields.Integer()
    min_notice_minutes = fields.Integer()
    horizon_days = fields.Integer()
    cancel_deadline_minutes = fields.Integer()
    max_open_per_resident = fields.Integer()
    min_age = fields.Integer(allow_none=True)
    max_age = fields.Integer(allow_none=True)
    requires_confirmation = fields.Boolean()
    reminder_minutes_before = fields.Integer(allow_none=True)
    urgent_visits = fields.Boolean()
    timezone = fields.Function(lambda s: s.community.timezone)
    opening_hours = fields.List(fields.Nested(OpeningHoursSchema), attribute="hours")


class BookableServiceDetailSchema(BookableServiceSchema):
    exceptions = fields.List(fields.Nested(ServiceExceptionSchema), attribute="upcoming_exceptions")


BookableServiceListSchema = page_of(BookableServiceSchema, "BookableServiceListSchema")


class BookingSlotArgsSchema(Schema):
    first = fields.Date(data_key="from", load_default=None,
                        metadata={"description": "YYYY-MM-DD (default today)"})
    last = fields.Date(data_key="to", load_default=None,
                       metadata={"description": "YYYY-MM-DD, at most 31 days in all"})


class BookingSlotSchema(Schema):
    start = fields.DateTime()
    end = fields.DateTime()
    capacity = fields.Integer()
    remaining = fields.Integer()


class BookingSlotListSchema(Schema):
    service_id = fields.Integer()
    items = fields.List(fields.Nested(BookingSlotSchema))
    next_cursor = fields.String(allow_none=True)


class BookingPersonRefSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()


class BookingServiceRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    location = fields.String()
    place = fields.String()
    capacity = fields.Integer()
    duration_minutes = fields.Integer()
    provider = fields.Function(lambda s: s.provider.name)


class BookingTimelineEntrySchema(Schema):
    id = fields.Integer()
    action = fields.String()
    label = fields.Function(lambda e: EVENT_LABELS.get(e.action, e.action))
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    note = fields.String()
    data = fields.Dict()
    created_at = fields.DateTime()


class BookingSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "slot | urgent"})
    urgent = fields.Function(lambda b: str(b.kind) == "urgent")
    status = fields.String()
    status_label = fields.Function(lambda b: STATUS_LABELS[str(b.status)])
    start = fields.DateTime()
    end = fields.DateTime()
    service = fields.Nested(BookingServiceRefSchema)
    for_member = fields.Nested(BookingPersonRefSchema, attribute="for_user")
    note = fields.String()
    address = fields.String()
    cancel_deadline = fields.Method("get_cancel_deadline", allow_none=True)
    accepted_by = fields.Nested(BookingPersonRefSchema, attribute="confirmed_by", allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    cancelled_at = fields.DateTime(allow_none=True)

    def get_cancel_deadline(self, booking):
        if str(booking.kind) == "urgent":
            return None
        deadline = booking.start - timedelta(minutes=booking.service.cancel_deadline_minutes)
        return deadline.isoformat()


class BookingDetailSchema(BookingSchema):
    timeline = fields.List(fields.Nested(BookingTimelineEntrySchema), attribute="events")


BookingPageSchema = page_of(BookingSchema, "BookingPageSchema")


class BookingCreateSchema(Schema):
    service_id = fields.Integer(required=True)
    start = fields.DateTime(required=True, metadata={"description": "a slot's `start`"})
    for_member_id = fields.Integer(load_default=None, allow_none=True,
                                   metadata={"description": "user id of a household member"})
    note = fields.String(load_default="", validate=validate.Length(max=500))
    address = fields.String(load_default=None, allow_none=True,
                            validate=validate.Length(max=200))


class BookingCancelSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=500))


class BookingRescheduleSchema(Schema):
    start = fields.DateTime(required=True)


class UrgentVisitSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=500))
    for_member_id = fields.Integer(load_default=None, allow_none=True)


class BookingHouseholdSchema(Schema):
    id = fields.Integer()
    label = fields.String()


class BookablePersonSchema(Schema):
    id = fields.Function(lambda p: p["user"].id)
    display_name = fields.Function(lambda p: p["user"].display_name)
    birth_year = fields.Function(lambda p: p["user"].birth_year)
    relation = fields.String(metadata={"description": "self, or the member's relation"})
    household = fields.Nested(BookingHouseholdSchema, allow_none=True)


class BookablePeopleSchema(Schema):
    items = fields.List(fields.Nested(BookablePersonSchema))
    next_cursor = fields.String(allow_none=True)


# --- staff ------------------------------------------------------------------------------------


class BookingStaffPersonSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    phone = fields.Function(lambda u: mask_phone(u.phone), allow_none=True)
    birth_year = fields.Integer(allow_none=True)


class StaffBookingSchema(BookingSchema):
    booked_by = fields.Nested(BookingStaffPersonSchema, attribute="user")
    for_member = fields.Nested(BookingStaffPersonSchema, attribute="for_user")
    household = fields.Function(lambda b: b.household.label if b.household else None,
                                allow_none=True)
    updated_at = fields.DateTime()


class StaffBookingDetailSchema(StaffBookingSchema):
    timeline = fields.List(fields.Nested(BookingTimelineEntrySchema), attribute="events")


StaffBookingPageSchema = page_of(StaffBookingSchema, "StaffBookingPageSchema")


class MyBookingsArgsSchema(PageArgsSchema):
    pass


class StaffBookingArgsSchema(PageArgsSchema):
    day = fields.Date(data_key="date", load_default=None,
                      metadata={"description": "YYYY-MM-DD (default today)"})
    service_id = fields.Integer(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(list(STATUS_LABELS)))
    kind = fields.String(load_default=None, validate=validate.OneOf(["slot", "urgent"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class BookingTransitionSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(STAFF_ACTIONS))
    note = fields.String(load_default="", validate=validate.Length(max=500))


class ServiceExceptionCreateSchema(Schema):
    day = fields.Date(data_key="date", required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["closed", "open"]))
    opens = fields.String(load_default=None, allow_none=True, validate=HHMM)
    closes = fields.String(load_default=None, allow_none=True, validate=HHMM)
    note = fields.String(load_default="", validate=validate.Length(max=200))


class CreatedServiceExceptionSchema(ServiceExceptionSchema):
    affected_bookings = fields.Integer(
        metadata={"description": "open bookings on a day now closed: contact these residents"})


class ServiceExceptionListSchema(Schema):
    items = fields.List(fields.Nested(ServiceExceptionSchema))
    next_cursor = fields.String(allow_none=True)


class StaffBookableServiceListSchema(Schema):
    items = fields.List(fields.Nested(BookableServiceSchema))
    next_cursor = fields.String(allow_none=True)


class BookingSlotAdjustSchema(Schema):
    start = fields.DateTime(required=True)
    blocked = fields.Boolean(load_default=None, allow_none=True)
    capacity = fields.Integer(load_default=None, allow_none=True,
                              validate=validate.Range(0, 1000))

    @validates_schema
    def something_to_change(self, data, **_kwargs):
        if data.get("blocked") is None and data.get("capacity") is None:
            raise ValidationError("请指定 blocked 或 capacity", field_name="blocked")


class StaffBookingSlotSchema(BookingSlotSchema):
    booked = fields.Integer()
    blocked = fields.Boolean()
