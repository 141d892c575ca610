"""A short-lived JSON cache in Redis for data many screens share; writes invalidate it.

Each process also keeps what it last read from Redis for `CACHE_LOCAL_SECONDS` (default 1 s):
within that window a value is served without asking Redis. A commit in this process that
writes a watched table drops the local copies at once; a write by another process is seen
here within the window. So a category, an activity's seats left or a dish's portions on a
screen may be that much behind, and so may routing: a report the worker routes within that
window of a rule, org, micro-grid or building written by the web follows the plan before the
write (app.services.routing.routing_plan). A write whose generation bump failed (Redis away at
the commit) is seen when the values built before it expire (their ttl). No capacity check
reads this cache. One permission check does: a report's building in the caller's community
(app.services.reports.building_place) - a building or community written in this process is
seen at once, one written elsewhere within the window; a write must go through the session (a
commit bumps the generation) or bump it itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from flask import current_app
from redis.exceptions import RedisError

from app.extensions import redis_store

PREFIX = "linli:cache:"
log = logging.getLogger(__name__)

LOCAL_MAX_KEYS = 1000  # the local copies (RedisState.local_cache) are dropped beyond this


def _local_hits(keys: list[str]) -> list[bytes] | None:
    """The JSON of every key from this process's copies, or None if any is missing or old."""
    now = time.monotonic()
    local = redis_store.state.local_cache
    bodies = []
    for key in keys:
        entry = local.get(key)
        if entry is None or entry[0] < now:
            return None
        bodies.append(entry[1])
    return bodies


def _keep_local(bodies: dict[str, bytes], epoch: int) -> None:
    """Keep what a read found - unless the copies were dropped since it began (`epoch`): it may
    have read the generations before this process's own write bumped them."""
    seconds = current_app.config["CACHE_LOCAL_SECONDS"]
    if seconds > 0:
        until, state = time.monotonic() + seconds, redis_store.state
        with state.local_cache_lock:
            if state.local_cache_epoch != epoch:
                return
            if len(state.local_cache) > LOCAL_MAX_KEYS:  # e.g. a menu key a day: old ones stay
                state.local_cache.clear()
            state.local_cache.update((key, (until, body)) for key, body in bodies.items())


def forget_local() -> None:
    """Drop this process's copies (a watched table was written here, or Redis was flushed)."""
    state = redis_store.state
    with state.local_cache_lock:
        state.local_cache.clear()
        state.local_cache_epoch += 1


# --- generations: a write to a watched table makes every cached value built from it stale ---

GENERATION_PREFIX = "linli:gen:"
WATCHED: dict[type, str] = {}


def watch(model: type, generation: str) -> None:
    """Any committed write to `model` bumps `generation` (ORM objects and UPDATE statements)."""
    WATCHED[model] = generation


def cached(key: str, ttl_seconds: int, produce: Callable[[], object], *,
           depends_on: tuple[str, ...] = ()):
    """The value of `key` as built from the current generations of `depends_on`."""
    return cached_many([(key, ttl_seconds, produce, depends_on)])[0]


def cached_many(entries: list[tuple[str, int, Callable[[], object], tuple[str, ...]]]) -> list:
    """Several `cached` values in one Redis round trip; entries are (key, ttl_seconds, produce,
    depends_on).

    Each value is stored with the generations it was built from (`<generations>\n<json>`) and
    read in the same MGET as the current generations: a value built before a write is a miss.
    Values read or built are kept in the process for CACHE_LOCAL_SECONDS (see the module); every
    caller gets its own parsed copy.
    """
    client = redis_store.client
    names = sorted({name for *_head, depends_on in entries for name in depends_on})
    keys = [PREFIX + key for key, *_rest in entries]
    local = _local_hits(keys)
    if local is not None:
        return [json.loads(body) for body in local]
    epoch = redis_store.state.local_cache_epoch
    try:
        raws = client.mget([GENERATION_PREFIX + n for n in names] + keys)
    except RedisError as exc:  # the cache is an optimisation: never fail a read on it
        log.warning("cache read failed: %s", exc)
        return [produce() for _key, _ttl, produce, _deps in entries]
    numbers = dict(zip(names, raws[:len(names)], strict=True))
    values, missing, bodies = [], [], {}
    for (_key, ttl, produce, deps), key, raw in zip(entries, keys, raws[len(names):],
                                                    strict=True):
        built_from = ".".join((numbers[n] or b"0").decode() for n in deps).encode()
        stamp, _, body = (raw or b"").partition(b"\n")
        if raw is None or stamp != built_from:
            body = json.dumps(produce(), ensure_ascii=False, default=str).encode()
            missing.append((key, ttl, built_from + b"\n" + body))
        values.append(json.loads(body))  # a fresh copy, as every caller gets
        bodies[key] = body
    if missing:
        try:
            pipe = client.pipeline(transaction=False)
            for key, ttl, stored in missing:
                pipe.set(key, stored, ex=ttl)
            pipe.execute()
        except RedisError as exc:
            log.warning("cache write failed: %s", exc)
    _keep_local(bodies, epoch)
    return values


def _touched(session, generation: str) -> None:
    session.info.setdefault("linli_generations", set()).add(generation)


def install_session_hooks(session_class) -> None:
    """Track writes to watched tables per transaction; bump generations after commit."""
    from sqlalchemy import event

    @event.listens_for(session_class, "after_flush")
    def _after_flush(session, _context):
        for obj in (*session.new, *session.dirty, *session.deleted):
            if type(obj) in WATCHED:
                _touched(session, WATCHED[type(obj)])

    @event.listens_for(session_class, "do_orm_execute")
    def _bulk_writes(state):
        if state.is_update or state.is_delete or state.is_insert:
            mapper = state.bind_mapper
            if mapper is not None and mapper.class_ in WATCHED:
                _touched(state.session, WATCHED[mapper.class_])

    @event.listens_for(session_class, "after_commit")
    def _after_commit(session):
        names = session.info.pop("linli_generations", set())
        if names:
            try:
                pipe = redis_store.client.pipeline()
                for name in names:
                    pipe.incr(GENERATION_PREFIX + name)
                pipe.execute()
            except RedisError as exc:
                log.warning("cache generation bump failed: %s", exc)
            forget_local()  # after the bump: a read from now on sees the new generations

    @event.listens_for(session_class, "after_rollback")
    def _after_rollback(session):
        session.info.pop("linli_generations", None)
