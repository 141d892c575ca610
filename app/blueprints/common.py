"""Schemas shared by every blueprint: the error shape and list pages."""

from __future__ import annotations

from collections.abc import Callable

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


RETRY_AFTER_HEADER = {"Retry-After": {
    "description": "Seconds until the limit's window resets and the call may be retried.",
    "schema": {"type": "integer", "minimum": 1}}}


def rate_limited(blp, what: str) -> Callable:
    """Document an operation's 429 `rate_limited`: the error shape and its Retry-After header.

    The limit itself is counted in Redis by the service (app/ratelimit.py), shared by every
    worker; this only declares it in the OpenAPI document.
    """
    return blp.alt_response(429, schema=ErrorSchema, headers=RETRY_AFTER_HEADER,
                            description=f"rate_limited: {what}")
