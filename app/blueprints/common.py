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


def sse_event(name: str, payload: str, *, id_pattern: str, id_required: bool = True) -> dict:
    """One kind of Server-Sent Event of a text/event-stream response: its name, its id
    (matching `id_pattern`; sent with every such event unless `id_required` is False) and its
    data, the JSON of the component schema `payload`. Open API before 3.2 has no way to
    describe a stream's items, so a stream's response schema is the `oneOf` of its events;
    keep-alive comments and the `retry:` line carry no event."""
    return {"type": "object", "required": ["event", "data", *(["id"] if id_required else [])],
            "properties": {
                "event": {"type": "string", "enum": [name]},
                "id": {"type": "string", "pattern": id_pattern},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "contentSchema": {"$ref": f"#/components/schemas/{payload}"}}}}
