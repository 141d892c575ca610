"""Schemas of buildings and the staff side of household claims."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.blueprints.me.schemas import HouseholdClaimSchema, UserSchema


class MicroGridSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class BuildingSchema(Schema):
    id = fields.Integer()
    community_id = fields.Integer()
    number = fields.String()
    name = fields.String()
    units = fields.Integer()
    lat = fields.Float(allow_none=True)
    lng = fields.Float(allow_none=True)
    micro_grid_id = fields.Integer(allow_none=True)


class UnitSchema(Schema):
    unit = fields.String()
    rooms = fields.List(fields.String())


class BuildingDetailSchema(BuildingSchema):
    micro_grid = fields.Nested(MicroGridSchema, allow_none=True)
    unit_rooms = fields.List(fields.Nested(UnitSchema), data_key="unit_list")


class BuildingListSchema(Schema):
    items = fields.List(fields.Nested(BuildingSchema))
    next_cursor = fields.String(allow_none=True)


class BuildingQuerySchema(Schema):
    community_id = fields.Integer(load_default=None)


class StaffClaimSchema(HouseholdClaimSchema):
    user = fields.Nested(UserSchema)


class StaffClaimListSchema(Schema):
    items = fields.List(fields.Nested(StaffClaimSchema))
    next_cursor = fields.String(allow_none=True)


class ClaimDecisionSchema(Schema):
    note = fields.String(load_default=None, validate=validate.Length(max=200))
