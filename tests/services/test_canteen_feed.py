"""The kitchen's order feed: every event once, oldest first, by a commit-safe cursor; the SSE
stream that resumes from Last-Event-ID and brings a new order within a second."""

from __future__ import annotations

import json
import queue
import re
import threading
import time

import pytest
from sqlalchemy import literal_column, select

from app.errors import ValidationFailed
from app.extensions import db
from app.models.canteen import OrderEvent
from app.services import canteen_feed, outbox
from tests import factories as f
from tests.canteen_fixtures import (
    build_place,
    clock_fixture,  # noqa: F401 - the `clock` fixture
    lines,
    order,
    walk,
)
from tests.sql_fixtures import statements

STREAM = "/api/v1/canteen/feed/stream"


@pytest.fixture
def place(app, clock):
    return build_place()


def feed(place, cursor=None, limit=50, org_ids=None):
    return canteen_feed.read_feed(org_ids=org_ids or {place.kitchen.id}, cursor=cursor,
                                  limit=limit)


def test_the_feed_has_every_order_event_oldest_first_and_pages_by_cursor(place):
    first, second = order(place), order(place, place.son)
    walk(place, first.id, "accept")
    events, cursor = feed(place, limit=2)
    assert [(e.order_id, e.action) for e in events] == [(first.id, "place"), (second.id, "place")]
    assert cursor == events[-1].cursor
    events, cursor = feed(place, cursor)
    assert [(e.order_id, e.action, e.to_status) for e in events] == [
        (first.id, "accept", "accepted")]
    assert events[0].order.items[0].dish_name == "红烧肉"
    assert feed(place, cursor) == ([], cursor)


def test_a_feed_page_is_three_statements_however_many_events(place):
    order(place)
    first_page, cursor = feed(place, limit=1)
    for user in (place.son, place.neighbour):
        order(place, user, fulfilment="delivery")
    kitchen_id, buildings = place.kitchen.id, [place.bld.id, place.bld2.id]
    with statements(expired=True) as seen:
        events, _ = feed(place, cursor, org_ids={kitchen_id})
    # the cursor's check; the events with their orders, households and buildings; the items
    assert len(seen) == 3, seen
    assert [e.order.household.building.id for e in events] == buildings  # son's, neighbour's
    assert all(e.order.items for e in events) and first_page


def test_the_feed_shows_only_the_callers_canteen(place):
    order(place)
    assert feed(place, org_ids={place.other_canteen.id}) == ([], None)


@pytest.mark.parametrize("cursor", ["not-base64!", "bm90IGpzb24", "WzFd", "WyJhIiwxXQ",
                                    "Wy0xLDFd", "W3RydWUsMV0"])
def test_a_malformed_cursor_is_422(place, cursor):
    with pytest.raises(ValidationFailed) as info:
        feed(place, cursor)
    assert info.value.code == "invalid_cursor"
    assert info.value.details["fields"]["cursor"]


def test_a_cursor_from_the_future_is_422(place):
    order(place)
    [event], cursor = feed(place)
    ahead = canteen_feed.encode_cursor((event.txid, event.id + 1))
    with pytest.raises(ValidationFailed) as info:
        feed(place, ahead)
    assert info.value.code == "cursor_from_future"
    with pytest.raises(ValidationFailed):
        feed(place, canteen_feed.encode_cursor((event.txid + 1, 1)))
    assert feed(place, cursor) == ([], cursor)


def test_follow_yields_new_events_and_keep_alive_ticks(place):
    order(place)
    batches = canteen_feed.follow(org_ids={place.kitchen.id}, cursor=None, poll_seconds=0.01,
                                  heartbeat_seconds=0.05, max_seconds=1)
    assert [e.action for e in next(batches)] == ["place"]
    assert next(batches) == []  # nothing new: a keep-alive tick
    walk(place, db.session.scalar(select(OrderEvent.order_id)), "accept")
    assert [e.action for e in next(batches)] == ["accept"]
    batches.close()


@pytest.mark.postgres
def test_an_event_committed_late_by_a_slow_transaction_is_not_skipped(app, place, monkeypatch):
    """The slow transaction takes the lower event id but commits after a later one: a reader
    going by `id > cursor` would skip it; the feed holds the later one back instead."""
    before = order(place, place.elder90, items=lines(place, 米饭=1))
    [seen], cursor = feed(place)
    assert seen.order_id == before.id
    inserted, release = threading.Event(), threading.Event()
    real_commit = outbox.commit

    def slow_commit(**options):
        if threading.current_thread().name == "slow-order":
            inserted.set()
            assert release.wait(20)
        real_commit(**options)

    monkeypatch.setattr(outbox, "commit", slow_commit)

    def place_slowly():
        with app.app_context():
            order(place, place.elder, items=lines(place, 红烧肉=1))
            db.session.remove()

    slow = threading.Thread(target=place_slowly, name="slow-order")
    slow.start()
    try:
        assert inserted.wait(20)
        fast = order(place, place.son, items=lines(place, 清炒时蔬=1))
        committed = list(db.session.scalars(select(OrderEvent.id).where(
            OrderEvent.id > seen.id)))
        assert committed == [events_of_order(fast.id)]  # a naive `id > cursor` read sees it…
        assert feed(place, cursor) == ([], cursor)  # …the feed holds it back
    finally:
        release.set()
        slow.join(20)
    events = wait_for(place, cursor, 2)
    assert [name for name, _, _ in events] == ["王秀英", "李伟"]
    (_, slow_id, slow_txid), (_, fast_id, fast_txid) = events
    assert slow_id < fast_id and slow_txid < fast_txid


@pytest.mark.postgres
def test_a_transaction_in_another_database_does_not_hold_the_feed_back(place):
    import psycopg

    url = db.engine.url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(url.render_as_string(hide_password=False)) as elsewhere:
        older = int(elsewhere.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        placed = order(place)
        [event], _ = feed(place)
        assert (event.order_id, older < event.txid) == (placed.id, True)
        plain_xmin = db.session.scalar(select(literal_column(
            "pg_snapshot_xmin(pg_current_snapshot())::text::bigint")))
        assert plain_xmin <= older  # the cluster-wide xmin alone would have held it back
        elsewhere.rollback()


def events_of_order(order_id: int) -> int:
    return db.session.scalar(select(OrderEvent.id).where(OrderEvent.order_id == order_id))


def wait_for(place, cursor, n: int, timeout: float = 10) -> list[tuple]:
    """(diner, event id, txid) of the feed after `cursor` once n events are released (the
    slow thread's commit may take a moment after it is let go)."""
    deadline = time.monotonic() + timeout
    while True:
        events = [(e.order.diner_name, e.id, e.txid) for e in feed(place, cursor)[0]]
        db.session.rollback()
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


# ---- the SSE stream ------------------------------------------------------------------------


def read_stream(response, into: queue.Queue) -> threading.Thread:
    """Iterate the streamed body in a thread, putting each chunk (then None) in a queue."""

    def run():
        for chunk in response.response:
            into.put(chunk.decode() if isinstance(chunk, bytes) else chunk)
        into.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def until(chunks: queue.Queue, needle: str, seconds: float) -> str | None:
    """The first chunk containing `needle` within `seconds`, else None."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            chunk = chunks.get(timeout=remaining)
        except queue.Empty:
            return None
        if chunk is None:
            return None
        if needle in chunk:
            return chunk
    return None


def test_a_new_order_reaches_a_connected_kitchen_within_a_second(app, client, place,
                                                                 monkeypatch):
    monkeypatch.setitem(app.config, "CANTEEN_STREAM_MAX_SECONDS", 2)
    response = client.get(STREAM, headers=f.headers(place.cook), buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    chunks: queue.Queue = queue.Queue()
    reader = read_stream(response, chunks)
    assert until(chunks, "retry: 1000", 2)
    time.sleep(0.2)  # the stream is connected and idle
    started = time.monotonic()
    placed = order(place, place.son)
    chunk = until(chunks, f'"order_id": {placed.id}', 1.0)
    assert chunk is not None, "the new order did not arrive within a second"
    assert time.monotonic() - started < 1.0
    assert chunk.startswith("id: ") and "\nevent: order\n" in chunk and '"action": "place"' in chunk
    reader.join(5)


def test_the_stream_resumes_after_last_event_id(app, client, place, monkeypatch):
    monkeypatch.setitem(app.config, "CANTEEN_STREAM_MAX_SECONDS", 0.3)
    first, second = order(place), order(place, place.son)
    [_, __], cursor = feed(place)
    third = order(place, place.neighbour)
    events, resume_from = feed(place, limit=1)
    response = client.get(STREAM, headers={**f.headers(place.cook),
                                           "Last-Event-ID": resume_from}, buffered=False)
    body = "".join(c.decode() for c in response.response)
    ids = [int(line.split('"order_id": ')[1].split(",")[0]) for line in body.splitlines()
           if line.startswith("data: ")]
    assert ids == [second.id, third.id] and first.id not in ids
    assert cursor  # the page cursor of two events is a valid Last-Event-ID too


def test_the_streams_events_are_what_the_openapi_document_says(app, client, place,
                                                               monkeypatch):
    monkeypatch.setitem(app.config, "CANTEEN_STREAM_MAX_SECONDS", 0.3)
    placed = order(place)
    walk(place, placed.id, "accept")
    spec = client.get("/openapi.json").get_json()
    stream = spec["paths"][STREAM]["get"]
    [documented] = stream["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    component = spec["components"]["schemas"]["CanteenFeedEvent"]
    assert documented["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/CanteenFeedEvent"}
    assert {(p["in"], p["name"]) for p in stream["parameters"]} == {
        ("header", "Last-Event-ID"), ("query", "cursor")}

    response = client.get(STREAM, headers=f.headers(place.cook), buffered=False)
    body = "".join(c.decode() for c in response.response)
    events = [dict(line.split(": ", 1) for line in block.splitlines())
              for block in body.split("\n\n") if block.startswith("id: ")]
    assert [e["event"] for e in events] == documented["properties"]["event"]["enum"] * 2
    for event in events:
        assert set(event) == set(documented["required"])  # id, event, data
        assert re.fullmatch(documented["properties"]["id"]["pattern"], event["id"])
        data = json.loads(event["data"])
        assert set(data) == set(component["properties"]) and data["cursor"] == event["id"]
        assert data["order_id"] == placed.id


@pytest.mark.parametrize("where", ["header", "query"])
def test_a_bad_last_event_id_is_422_before_the_stream_starts(client, place, where):
    headers = f.headers(place.cook) | ({"Last-Event-ID": "zzz"} if where == "header" else {})
    response = client.get(STREAM + ("?cursor=zzz" if where == "query" else ""), headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_cursor"
    assert response.mimetype == "application/json"  # the error shape, not a stream
