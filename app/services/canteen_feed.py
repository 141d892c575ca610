"""The kitchen's order feed: every order event, read by a commit-safe cursor or streamed (SSE).

Why not `WHERE id > :cursor`: ids are drawn from a sequence at INSERT time, but transactions
commit in any order. A reader that sees id 11 committed while id 10's transaction is still open
moves its cursor past 10 and never sees it (Odoo's bus warns of exactly this).

What we do on PostgreSQL: every event row stores the id of the transaction that wrote it
(`txid`, from `pg_current_xact_id()`), the feed is ordered by (txid, id), and a read returns
only rows below a *horizon*: the oldest transaction of this database still in flight in the
statement's own snapshot (`pg_current_snapshot()`, evaluated inside the same SELECT), or the
snapshot's xmax when there is none. Every transaction of this database below the horizon has
ended, so those rows are final and visible; any event that can still appear belongs to a
transaction at or above it and therefore sorts after every cursor handed out. A slow
transaction delays the feed by its own duration but never loses an event.

The horizon is `pg_snapshot_xmin(pg_current_snapshot())` refined: in-flight transactions that
pg_stat_activity shows belong to *another* database cannot write our rows, so they are not
waited for (a transaction it cannot place - a finished backend, a hidden session - is waited
for, which is always safe). The price that remains: a long-running *writing* transaction in
this database holds the feed back until it ends (read-only ones have no id and do not count).

On SQLite, writes are serialised (a writer holds the database lock from its first write to its
commit), so rows commit in id order; txid is 0 there and the order is simply by id.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator

from sqlalchemy import (
    BigInteger,
    Text,
    cast,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import aliased, joinedload

from app.errors import ValidationFailed
from app.extensions import db
from app.models import Household
from app.models.canteen import Order, OrderEvent

FEED_MAX_LIMIT = 100
FeedPosition = tuple[int, int]


def _dialect() -> str:
    """The database in use (postgresql, sqlite)."""
    return db.session.get_bind().dialect.name


def current_txid():
    """SQL giving the writing transaction's id on PostgreSQL; 0 elsewhere."""
    if _dialect() == "postgresql":
        return cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    return literal(0, BigInteger)


# The oldest in-flight transaction of this database in the statement's snapshot (see above);
# xid8 values are compared as bigint, and pg_stat_activity's 32-bit xids by their low 32 bits.
HORIZON_SQL = """(SELECT coalesce(
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
      WHERE x::text::bigint % 4294967296 NOT IN (
            SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL AND datname <> current_database())),
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint))"""


def _released():
    """Rows whose writing transaction ended before every one of ours still in flight."""
    if _dialect() == "postgresql":
        return OrderEvent.txid < literal_column(HORIZON_SQL, BigInteger)
    return true()


def encode_cursor(position: FeedPosition) -> str:
    """The opaque cursor of a feed position (txid, event id)."""
    raw = json.dumps(list(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid(code: str, message: str) -> ValidationFailed:
    """A 422 about the cursor."""
    return ValidationFailed(message, code=code, details={"fields": {"cursor": [message]}})


def decode_cursor(cursor: str) -> FeedPosition:
    """The position in a cursor; 422 `invalid_cursor` if it is not one of ours."""
    try:
        raw = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except (ValueError, binascii.Error) as exc:
        raise _invalid("invalid_cursor", "无效的 cursor") from exc
    valid = (isinstance(raw, list) and len(raw) == 2
             and all(type(v) is int and 0 <= v < 2**63 for v in raw))
    if not valid:
        raise _invalid("invalid_cursor", "无效的 cursor")
    return raw[0], raw[1]


def check_cursor(*, org_ids: set[int], cursor: str | None) -> FeedPosition | None:
    """Decode a cursor and refuse one we can never have handed out (422
    `cursor_from_future`): beyond the newest released event, or naming an event id that
    does not exist yet."""
    if not cursor:
        return None
    position = decode_cursor(cursor)
    anyone = aliased(OrderEvent)  # the highest id of all, released or not, in the same SELECT
    newest = db.session.execute(
        select(OrderEvent.txid, OrderEvent.id, select(func.max(anyone.id)).scalar_subquery())
        .where(OrderEvent.org_id.in_(org_ids), _released())
        .order_by(OrderEvent.txid.desc(), OrderEvent.id.desc()).limit(1)).first()
    if newest is None or position > (newest[0], newest[1]) or position[1] > newest[2]:
        raise _invalid("cursor_from_future", "cursor 超出了已有的事件")
    return position


def _after(position: FeedPosition | None, org_ids: set[int], limit: int) -> list[OrderEvent]:
    """Released events of the orgs after `position`, oldest first, with their orders."""
    # the order, its household and building joined to the event (one row each), the items
    # in a second SELECT: two statements instead of five
    stmt = select(OrderEvent).where(OrderEvent.org_id.in_(org_ids), _released()).options(
        joinedload(OrderEvent.order, innerjoin=True).selectinload(Order.items),
        joinedload(OrderEvent.order, innerjoin=True).joinedload(Order.household)
        .joinedload(Household.building, innerjoin=True))
    if position is not None:
        stmt = stmt.where(tuple_(OrderEvent.txid, OrderEvent.id) > tuple_(
            literal(position[0], BigInteger), literal(position[1])))
    return list(db.session.scalars(
        stmt.order_by(OrderEvent.txid, OrderEvent.id).limit(limit)))


def read_feed(*, org_ids: set[int], cursor: str | None,
              limit: int) -> tuple[list[OrderEvent], str | None]:
    """Events after the cursor, oldest first; each carries its own `cursor`. The next cursor
    is the last event's, or the one given when nothing new is released yet."""
    position = check_cursor(org_ids=org_ids, cursor=cursor)
    events = _after(position, org_ids, limit)
    for event in events:
        event.cursor = encode_cursor((event.txid, event.id))
    return events, (events[-1].cursor if events else cursor)


def follow(*, org_ids: set[int], cursor: str | None, poll_seconds: float,
           heartbeat_seconds: float, max_seconds: float) -> Iterator[list[OrderEvent]]:
    """Yield batches of newly released events for `max_seconds` (call check_cursor first);
    an empty batch means "nothing new for heartbeat_seconds" (time for a keep-alive)."""
    position = decode_cursor(cursor) if cursor else None
    deadline = time.monotonic() + max_seconds
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        events = _after(position, org_ids, FEED_MAX_LIMIT)
        for event in events:
            event.cursor = encode_cursor((event.txid, event.id))
        if events or time.monotonic() - quiet_since >= heartbeat_seconds:
            yield events
            quiet_since = time.monotonic()
        if events:
            position = (events[-1].txid, events[-1].id)
        db.session.rollback()  # end the read: the connection goes back to the pool meanwhile
        if len(events) < FEED_MAX_LIMIT:
            time.sleep(poll_seconds)
