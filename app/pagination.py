"""Keyset pagination: `?cursor=...&limit=...` over a unique ordering key."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, literal, tuple_

from app.errors import ValidationFailed
from app.prepared import written

DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class PageArgsSchema(Schema):
    """Query arguments every list endpoint accepts."""

    cursor = fields.String(load_default=None, metadata={"description": "opaque, from next_cursor"})
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))


def encode_cursor(values: tuple) -> str:
    """An opaque cursor for the last row's key values."""
    raw = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, columns: list) -> tuple:
    """Turn a cursor back into typed key values; 422 `invalid_cursor` if it is not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(raw, list) or len(raw) != len(columns):
            raise ValueError("wrong arity")
        return tuple(_typed(v, col) for v, col in zip(raw, columns, strict=True))
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("分页参数无效", code="invalid_cursor",
                               details={"fields": {"cursor": ["无效的 cursor"]}}) from exc


def _typed(value, column):
    # A TypeDecorator (e.g. UTCDateTime) reports `object`; its impl knows the real type.
    python_type = getattr(column.type, "impl", column.type).python_type
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if value is not None and not isinstance(value, python_type):
        raise TypeError("cursor value of the wrong type")
    return value


def keyset_page(stmt: Select, *, columns: list, cursor: str | None, limit: int,
                descending: bool = True, rows: bool = False,
                session=None) -> tuple[list, str | None]:
    """One page of `stmt` ordered by `columns` (unique together) after `cursor`.

    The items are the first column's values (e.g. model objects), or whole rows with `rows`.
    """
    from app.extensions import db

    session = session or db.session
    if cursor:
        values = decode_cursor(cursor, columns)
        key = tuple_(*columns)
        bound = tuple_(*[literal(v, c.type) for v, c in zip(values, columns, strict=True)])
        stmt = stmt.where(key < bound if descending else key > bound)
    order = [c.desc() if descending else c.asc() for c in columns]
    stmt = stmt.order_by(*order).limit(written(limit + 1))
    if rows:  # columns only: SQLAlchemy Core on the session's connection, no ORM setup per run
        session.flush()
        found = session.connection().execute(stmt).all()
    else:
        found = session.scalars(stmt).all()
    return page_of_found(found, columns=columns, limit=limit)


def page_of_found(found: list, *, columns: list, limit: int) -> tuple[list, str | None]:
    """The page and its next cursor from up to `limit + 1` items read in key order."""
    items = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = items[-1]
        next_cursor = encode_cursor(tuple(getattr(last, c.key) for c in columns))
    return items, next_cursor
