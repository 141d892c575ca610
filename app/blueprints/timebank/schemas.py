"""Schemas of the time bank: balance, ledger, rewards, redemptions, leaderboard."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.blueprints.common import page_of
from app.blueprints.me.schemas import mask_phone
from app.models.timebank import RedemptionStatus
from app.pagination import PageArgsSchema
from app.services.timebank import PERIODS, REDEMPTION_STATUS_LABELS


class TimebankEntrySchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "credit | debit | reversal"})
    source = fields.String(metadata={"description": "volunteer | award | redemption"})
    points = fields.Integer(metadata={"description": "signed"})
    hours = fields.Function(lambda e: round(e.minutes / 60, 2))
    balance_after = fields.Integer()
    reason = fields.String()
    signup_id = fields.Integer(allow_none=True)
    redemption_id = fields.Integer(allow_none=True)
    reverses_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


EntryPageSchema = page_of(TimebankEntrySchema, "TimebankEntryPageSchema")


class TimebankAccountSchema(Schema):
    balance = fields.Integer()
    earned_total = fields.Integer()
    hours_total = fields.Float()
    points_per_hour = fields.Integer()
    entries = fields.List(fields.Nested(TimebankEntrySchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "for /timebank/entries"})


class RewardSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    description = fields.String()
    provider = fields.String()
    cost = fields.Integer(metadata={"description": "points"})
    stock = fields.Integer()
    is_active = fields.Boolean()


RewardPageSchema = page_of(RewardSchema, "RewardPageSchema")


class RewardRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    provider = fields.String()


class RedemptionEventSchema(Schema):
    id = fields.Integer()
    action = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.DateTime()


class RedemptionSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    reward = fields.Nested(RewardRefSchema)
    cost = fields.Integer()
    status = fields.String()
    status_label = fields.Function(lambda r: REDEMPTION_STATUS_LABELS[str(r.status)])
    cancel_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    fulfilled_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    timeline = fields.List(fields.Nested(RedemptionEventSchema), attribute="events")


RedemptionPageSchema = page_of(RedemptionSchema, "RedemptionPageSchema")


class RedeemerSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    phone = fields.Function(lambda u: mask_phone(u.phone))


class StaffRedemptionSchema(RedemptionSchema):
    resident = fields.Nested(RedeemerSchema, attribute="user")


StaffRedemptionPageSchema = page_of(StaffRedemptionSchema, "StaffRedemptionPageSchema")


class RedemptionCreateSchema(Schema):
    reward_id = fields.Integer(required=True)


class StaffRedemptionArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(
        [str(s) for s in RedemptionStatus]))


class RedemptionFulfilSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=500))


class CancelRedemptionSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class RewardPatchSchema(Schema):
    name = fields.String(validate=validate.Length(1, 60))
    description = fields.String(validate=validate.Length(max=2000))
    provider = fields.String(validate=validate.Length(max=100))
    cost = fields.Integer(validate=validate.Range(1, 100000))
    is_active = fields.Boolean()
    sort_order = fields.Integer()
    add_stock = fields.Integer(validate=validate.Range(-100000, 100000),
                               metadata={"description": "restock (+) or withdraw (-)"})


class RewardCreateSchema(Schema):
    community_id = fields.Integer(load_default=None)
    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,39}$"))
    name = fields.String(required=True, validate=validate.Length(1, 60))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    provider = fields.String(load_default="", validate=validate.Length(max=100))
    cost = fields.Integer(required=True, validate=validate.Range(1, 100000))
    stock = fields.Integer(required=True, validate=validate.Range(0, 100000))
    sort_order = fields.Integer(load_default=0)


class TimebankAwardSchema(Schema):
    user_id = fields.Integer(required=True)
    points = fields.Integer(required=True, validate=validate.Range(1, 1000))
    reason = fields.String(required=True, validate=validate.Length(1, 200))


class LeaderboardArgsSchema(Schema):
    period = fields.String(load_default="month", validate=validate.OneOf(PERIODS))
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 50))


class LeaderRowSchema(Schema):
    rank = fields.Integer()
    name = fields.String(metadata={"description": "shortened: 王**"})
    points = fields.Integer()
    hours = fields.Float()


class LeaderboardSchema(Schema):
    period = fields.String()
    since = fields.DateTime(allow_none=True)
    items = fields.List(fields.Nested(LeaderRowSchema))
