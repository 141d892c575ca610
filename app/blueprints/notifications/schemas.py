"""Schemas of the notification inbox and preferences."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.blueprints.common import page_of
from app.pagination import PageArgsSchema


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    title = fields.String()
    body = fields.String()
    data = fields.Dict()
    read = fields.Function(lambda n: n.read_at is not None)
    read_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class NotificationPageSchema(page_of(NotificationSchema, "NotificationListSchema")):
    unread_count = fields.Integer()


class InboxArgsSchema(PageArgsSchema):
    unread = fields.Boolean(load_default=False)


class MarkReadSchema(Schema):
    ids = fields.List(fields.Integer(), load_default=None, validate=validate.Length(max=500))
    all = fields.Boolean(load_default=False)

    @validates_schema
    def ids_or_all(self, data, **_kwargs):
        if not data["all"] and not data["ids"]:
            raise ValidationError("须提供 ids 或 all: true", field_name="ids")


class MarkReadResultSchema(Schema):
    marked = fields.Integer()
    unread_count = fields.Integer()


class PreferenceSchema(Schema):
    group = fields.String()
    label = fields.String()
    wechat = fields.Boolean()
    can_disable = fields.Boolean()


class PreferenceListSchema(Schema):
    items = fields.List(fields.Nested(PreferenceSchema))
    next_cursor = fields.String(allow_none=True)


class PreferenceUpdateSchema(Schema):
    wechat = fields.Dict(keys=fields.String(), values=fields.Boolean(), required=True,
                         metadata={"description": '{"report": true, "order": false}'})
