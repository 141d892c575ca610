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


def test_several_values_in_one_round_trip_and_built_once(app, mgets):
    built = []
    first = cache.cached_many(entries(built))
    again = cache.cached_many(entries(built))
    assert again == first == [{"name": "a", "n": 1}, {"name": "b", "n": 1}, {"name": "c", "n": 1}]
    assert sorted(built) == ["a", "b", "c"]  # nothing rebuilt the second time
    assert len(mgets) == 2  # one MGET per call: generations and values together


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
