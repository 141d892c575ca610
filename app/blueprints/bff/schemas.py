"""Schemas of the BFF screens (documented shapes; the service builds plain dicts)."""

from __future__ import annotations

from marshmallow import Schema, fields


class HomeHouseholdSchema(Schema):
    household_id = fields.Integer()
    status = fields.String()
    relation = fields.String()
    label = fields.String()


class HomeUserSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    birth_year = fields.Integer(allow_none=True)
    community_id = fields.Integer(allow_none=True)
    households = fields.List(fields.Nested(HomeHouseholdSchema))


class HomeStepSchema(Schema):
    action = fields.String()
    label = fields.String()
    note = fields.String()
    at = fields.String()


class HomeReportSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    status_label = fields.String()
    category_name = fields.String()
    created_at = fields.String()
    latest_step = fields.Nested(HomeStepSchema, allow_none=True)


class HomeBookingSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    status_label = fields.String()
    service = fields.String()
    start = fields.String()
    end = fields.String()
    for_user_id = fields.Integer()


class HomeSignupStateSchema(Schema):
    status = fields.String()
    status_label = fields.String()


class HomeActivitySchema(Schema):
    id = fields.Integer()
    title = fields.String()
    place = fields.String()
    starts_at = fields.String()
    signup_closes_at = fields.String()
    seats_left = fields.Integer()
    my_signup = fields.Nested(HomeSignupStateSchema, allow_none=True)


class HomeMenuItemSchema(Schema):
    dish_id = fields.Integer()
    name = fields.String()
    price = fields.Integer(metadata={"description": "fen"})
    tags = fields.List(fields.String())
    portions_left = fields.Integer()


class HomeMenuSchema(Schema):
    id = fields.Integer()
    meal = fields.String()
    cutoff_at = fields.String()
    items = fields.List(fields.Nested(HomeMenuItemSchema))


class HomeOrderSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    status_label = fields.String()
    meal = fields.String()
    fulfilment = fields.String()
    pickup_code = fields.String(allow_none=True)
    total = fields.Integer(metadata={"description": "fen"})


class HomeCanteenSchema(Schema):
    menus = fields.List(fields.Nested(HomeMenuSchema))
    my_order = fields.Nested(HomeOrderSchema, allow_none=True)


class HomeNoticeSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    pinned = fields.Boolean()
    published_at = fields.String()
    expires_at = fields.String(allow_none=True)


class HomeSchema(Schema):
    user = fields.Nested(HomeUserSchema)
    unread_notifications = fields.Integer()
    reports = fields.List(fields.Nested(HomeReportSchema))
    bookings = fields.List(fields.Nested(HomeBookingSchema))
    activities = fields.List(fields.Nested(HomeActivitySchema))
    canteen = fields.Nested(HomeCanteenSchema, allow_none=True)
    notices = fields.List(fields.Nested(HomeNoticeSchema))
