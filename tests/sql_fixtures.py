"""Counting the SQL a block of code runs (statements per request or job must not grow)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from app.extensions import db


@contextmanager
def statements(*, expired: bool = False) -> Iterator[list[str]]:
    """The SQL statements run inside the block; `expired=True` first expires the session, as a
    request or a job starts in production."""
    seen: list[str] = []
    if expired:
        db.session.expire_all()

    def note(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
