"""The generation-keyed Redis cache of shared screen data."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.extensions import db, redis_store
from app.models import Notice
from app.services import cache
from tests import factories as f


@pytest.fixture
def mgets(monkeypatch):
    """Count the client's MGET round trips."""
    calls = []
    client = redis_store.client
    real = client.mget
    monkeypatch.setattr(client, "mget", lambda keys: calls.append(list(keys)) or real(keys))
    return calls


def entries(built: list):
    def produce(name):
        return lambda: built.append(name) or {"name": name, "n": built.count(name)}
    return [("a", 60, produce("a"), ("notices",)), ("b", 60, produce("b"), ("notices", "menus")),
            ("c", 60, produce("c"), ())]


@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    return now


def test_several_values_in_one_round_trip_and_built_once(app, mgets, clock):
    built = []
    first = cache.cached_many(entries(built))
    clock[0] += app.config["CACHE_LOCAL_SECONDS"] + 0.1  # past the local copies: Redis again
    again = cache.cached_many(entries(built))
    assert again == first == [{"name": "a", "n": 1}, {"name": "b", "n": 1}, {"name": "c", "n": 1}]
    assert sorted(built) == ["a", "b", "c"]  # nothing rebuilt the second time
    assert len(mgets) == 2  # one MGET per call: generations and values together


def test_within_the_local_window_no_round_trip_and_each_caller_its_own_copy(app, mgets, clock):
    built = []
    first = cache.cached_many(entries(built))
    first[0]["name"] = "changed by a caller"
    clock[0] += app.config["CACHE_LOCAL_SECONDS"] / 2
    again = cache.cached_many(entries(built))
    assert again == [{"name": "a", "n": 1}, {"name": "b", "n": 1}, {"name": "c", "n": 1}]
    assert len(mgets) == 1 and sorted(built) == ["a", "b", "c"]


def test_a_write_in_this_process_is_seen_at_once(app, clock):
    built = []
    cache.cached_many(entries(built))
    db.session.add(Notice(community_id=f.community().id, title="停水通知", body="周三停水"))
    db.session.commit()  # bumps `notices` and drops the local copies
    assert [v["n"] for v in cache.cached_many(entries(built))] == [2, 2, 1]


def test_a_read_overtaken_by_a_write_here_is_not_kept(app, clock, monkeypatch):
    # Another thread's commit drops the copies while this read is at Redis with the old
    # generations: what it read must not be kept as fresh for the next second.
    client, real, calls = redis_store.client, redis_store.client.mget, []

    def mget_then_a_write_here(keys):
        raws = real(keys)
        if not calls:
            redis_store.client.incr(cache.GENERATION_PREFIX + "notices")
            cache.forget_local()
        calls.append(keys)
        return raws

    monkeypatch.setattr(client, "mget", mget_then_a_write_here)
    built = []
    cache.cached_many(entries(built))
    assert [v["n"] for v in cache.cached_many(entries(built))] == [2, 2, 1]  # asked Redis again
    assert len(calls) == 2


def test_another_process_write_is_seen_once_the_local_window_passes(app, clock):
    built = []
    cache.cached_many(entries(built))
    redis_store.client.incr(cache.GENERATION_PREFIX + "notices")  # as another process's commit
    clock[0] += app.config["CACHE_LOCAL_SECONDS"] + 0.1
    assert [v["n"] for v in cache.cached_many(entries(built))] == [2, 2, 1]


def test_no_local_copies_when_the_window_is_zero(app, mgets, monkeypatch):
    monkeypatch.setitem(app.config, "CACHE_LOCAL_SECONDS", 0)
    built = []
    cache.cached_many(entries(built))
    cache.cached_many(entries(built))
    assert len(mgets) == 2 and sorted(built) == ["a", "b", "c"]


def test_a_committed_write_makes_the_values_built_from_it_stale(app):
    built = []
    cache.cached_many(entries(built))
    comm = f.community()
    db.session.add(Notice(community_id=comm.id, title="停水通知", body="周三停水"))
    db.session.commit()  # bumps the `notices` generation
    again = cache.cached_many(entries(built))
    assert [v["n"] for v in again] == [2, 2, 1]  # a and b depend on notices, c does not


def test_values_stored_in_the_earlier_format_are_rebuilt(app):
    redis_store.client.set(cache.PREFIX + "a", b'{"name": "old"}')
    built = []
    assert cache.cached_many(entries(built))[0] == {"name": "a", "n": 1}


def test_redis_down_builds_every_value_and_fails_nothing(app, monkeypatch):
    def down(*_args, **_kwargs):
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(redis_store.client, "mget", down)
    built = []
    assert [v["name"] for v in cache.cached_many(entries(built))] == ["a", "b", "c"]
