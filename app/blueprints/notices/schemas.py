"""Schemas of community notices."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class NoticeSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    body = fields.String()
    pinned = fields.Boolean()
    published_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)


class NoticeListSchema(Schema):
    items = fields.List(fields.Nested(NoticeSchema))
    next_cursor = fields.String(allow_none=True)


class NoticeCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=60))
    body = fields.String(load_default="", validate=validate.Length(max=5000))
    pinned = fields.Boolean(load_default=False)
    published_at = fields.AwareDateTime(load_default=None)
    expires_at = fields.AwareDateTime(load_default=None)


class NoticeQuerySchema(Schema):
    community_id = fields.Integer(load_default=None)
