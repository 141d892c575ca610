"""Schemas of the admin endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields

from app.blueprints.common import page_of


class FailedJobSchema(Schema):
    id = fields.Integer()
    job = fields.String()
    args = fields.Dict()
    queue = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    in_failed_registry = fields.Boolean(metadata={"description": "RQ's failed registry has it"})
    created_at = fields.DateTime()
    enqueued_at = fields.DateTime(allow_none=True)


FailedJobPageSchema = page_of(FailedJobSchema, "FailedJobPageSchema")
