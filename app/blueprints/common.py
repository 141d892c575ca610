"""Schemas shared by every blueprint: the error shape and list pages."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "slot_full"})
    message = fields.String(required=True, metadata={"example": "该时段已约满"})
    details = fields.Dict()


class ErrorSchema(Schema):
    """Every non-2xx JSON response."""

    error = fields.Nested(ErrorBodySchema, required=True)


def page_of(item_schema: type[Schema], name: str | None = None) -> type[Schema]:
    """A `{"items": [...], "next_cursor": ...}` schema for `item_schema`."""
    return Schema.from_dict(
        {"items": fields.List(fields.Nested(item_schema)), "next_cursor": fields.String(
            allow_none=True)},
        name=name or f"{item_schema.__name__.removesuffix('Schema')}PageSchema",
    )
